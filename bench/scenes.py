"""The real scenes the benchmarks train on (../shared/data beside the project root) and their CPU settings."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
SCENES = {
    "lego": dict(resolution=4, white_background=True),
    "fern": dict(resolution=2, white_background=False),
}
