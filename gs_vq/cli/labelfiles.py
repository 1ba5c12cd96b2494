"""``python -m gs_vq.cli.labelfiles -m MODEL``: (re)store per-Gaussian semantic labels in a semantic
model's point_cloud.ply and compressed.ply (:func:`gs_vq.semantics.labelfiles.label_model`);
prints the sizes as one JSON line."""

import argparse
import json
import os
from typing import Optional

from . import OneLineParser, guarded
from ..errors import GsVqError
from ..semantics.labelfiles import label_model
from ..semantics.labels import LABEL_METHODS


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m gs_vq.cli.labelfiles",
                      description="Store per-Gaussian semantic labels in a model's ply files.")
    p.add_argument("-m", "--model_path", required=True, help="model folder trained with --semantic")
    p.add_argument("--method", choices=LABEL_METHODS, default="lift",
                   help="lift: contribution-weighted vote of the decoded training views (default); "
                        "direct: decode each Gaussian's own feature")
    p.add_argument("--downscale", type=int, help="lifting renders the training views this much smaller "
                   "(default: 4, or less to stay >= 64 pixels)")
    p.add_argument("-s", "--source_path", help="override the scene folder recorded in MODEL/cfg.yaml")
    p.add_argument("--backend", choices=["auto", "gsplat", "cpp", "torch"], default="auto")
    return p


def train_cameras(model_path: str, source_path: Optional[str] = None):
    """The training views of a model folder's scene (at the model's resolution)."""
    from ..model_dir import load_model_scene

    return load_model_scene(model_path, source_path=source_path).train_cameras


@guarded
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if not os.path.isdir(args.model_path):
        raise GsVqError(f"model folder not found: {args.model_path}")
    if args.downscale is not None and args.downscale < 1:
        raise GsVqError(f"--downscale must be >= 1, got {args.downscale}")
    cams = train_cameras(args.model_path, args.source_path) if args.method == "lift" else None
    print(json.dumps(label_model(args.model_path, cams, args.method, args.downscale, args.backend)))


if __name__ == "__main__":
    main()
