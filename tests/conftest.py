"""Test-wide set-up: passive OpenMP waiting before torch loads (see gs_vq/__init__.py)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
