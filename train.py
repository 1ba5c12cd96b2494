"""Train a 3DGS scene: ``python train.py -s SCENE [--vq] [--semantic] [--config cpu]``."""

import os

# Passive OpenMP waiting: busy-waiting threads stall badly on shared or oversubscribed CPUs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gs_vq.cli.train import main

if __name__ == "__main__":
    main()
