"""``python -m gs_vq.cli.lift -m RGB_MODEL -o OUT``: the training-free semantic field of a finished
RGB model (:func:`gs_vq.semantics.lift.lift_model`); prints its statistics as one JSON line."""

import argparse
import json

from . import OneLineParser, guarded
from ..semantics.labels import LABEL_METHODS
from ..semantics.lift import lift_model


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m gs_vq.cli.lift",
                      description="Training-free semantic field: lift 2D feature maps onto an RGB model.")
    p.add_argument("-m", "--model_path", required=True, help="finished RGB model folder (cfg.yaml, point_cloud.ply)")
    p.add_argument("-o", "--out", required=True, help="output model folder (the RGB model is not changed)")
    p.add_argument("--features", help="2D feature maps folder (default: label maps in the gs_vq cache, made if absent)")
    p.add_argument("--map_downscale", type=int, default=2,
                   help="label maps made on demand are 1/this of the full-resolution images (default 2; "
                        "training uses 4)")
    p.add_argument("--feature_dim", type=int, default=16)
    p.add_argument("--num_codes", type=int, default=64)
    p.add_argument("--tau", type=float, default=60.0, help="decoder temperature (per unit cosine)")
    p.add_argument("--labels", dest="label_method", choices=list(LABEL_METHODS), default="direct",
                   help="per-Gaussian labels stored with the field (default: decode each lifted feature)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the model is lifted (auto: CUDA when available, gsplat's rasterizer there)")
    p.add_argument("--backend", choices=["auto", "gsplat", "cpp", "torch"], default="auto")
    return p


@guarded
def main(argv=None) -> None:
    a = build_parser().parse_args(argv)
    print(json.dumps(lift_model(a.model_path, a.out, a.features, a.map_downscale, a.feature_dim, a.num_codes, a.tau,
                                a.label_method, a.device, a.backend)))


if __name__ == "__main__":
    main()
