"""Train a 3DGS scene: ``python train.py -s SCENE [--vq] [--semantic] [--config cpu]``."""

from gs_vq.cli.train import main

if __name__ == "__main__":
    main()
