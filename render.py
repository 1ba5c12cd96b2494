"""Render and evaluate a model: ``python render.py -m MODEL [--split test] [--ply FILE] [--query TEXT]``."""

import os

# Passive OpenMP waiting: busy-waiting threads stall badly on shared or oversubscribed CPUs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gs_vq.cli.render import main

if __name__ == "__main__":
    main()
