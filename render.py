"""Render and evaluate a model: ``python render.py -m MODEL [--split test] [--ply FILE] [--query TEXT]``."""

from gs_vq.cli.render import main

if __name__ == "__main__":
    main()
