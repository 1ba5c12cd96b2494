"""``python -m gs_vq.cli.features -s SCENE``: compute a scene's 2D semantic feature maps
(:mod:`gs_vq.semantics.features`: label maps from masks + labels.json, or dense open_clip features)."""

import argparse
import time

from . import OneLineParser, guarded
from ..errors import GsVqError
from ..semantics.encoders import EncoderSpec
from ..semantics.features import compute_clip_features, compute_label_features, default_features_dir


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m gs_vq.cli.features",
                      description="Compute 2D semantic feature maps for a scene's views.")
    p.add_argument("-s", "--source_path", required=True, help="scene folder (COLMAP or NeRF-synthetic)")
    p.add_argument("--features", help="output folder (default: <gs_vq cache>/features/<scene>-<hash>/<source>; "
                                      "the cache is $GS_VQ_CACHE or ~/.cache/gs_vq)")
    p.add_argument("--source", choices=["labels", "clip"], default="labels",
                   help="labels: mask ids + labels.json texts (MiniLM); clip: dense open_clip image features")
    p.add_argument("-r", "--resolution", type=int, default=1, help="image downscale used to load the scene")
    p.add_argument("--downscale", type=int, default=4, help="feature maps are (H // d) x (W // d)")
    p.add_argument("--split", choices=["train", "test", "all"], default="train")
    p.add_argument("--eval", action="store_true", help="hold out test views as train.py --eval does (COLMAP)")
    p.add_argument("--white_background", action="store_true")
    p.add_argument("--clip-model", dest="clip_model", default="ViT-B-16",
                   help="open_clip config name or JSON config file (--source clip)")
    p.add_argument("--clip-checkpoint", dest="clip_checkpoint", help="local open_clip weights file (--source clip)")
    p.add_argument("--clip-mode", dest="clip_mode", choices=["patch", "crops"], default="patch")
    p.add_argument("--device", default="cpu")
    return p


@guarded
def main(argv=None) -> None:
    from ..data import load_scene

    args = build_parser().parse_args(argv)
    scene = load_scene(args.source_path, resolution=args.resolution, eval=args.eval,
                       white_background=args.white_background)
    out = args.features or default_features_dir(scene.source_path, args.source)
    t0 = time.perf_counter()
    if args.source == "labels":
        meta = compute_label_features(scene, out, args.downscale, args.split)
    else:
        if not args.clip_checkpoint:
            raise GsVqError("--source clip needs --clip-checkpoint FILE (a local open_clip weights file)")
        meta = compute_clip_features(scene, out, args.clip_model, args.clip_checkpoint, args.downscale,
                                     args.clip_mode, args.split, args.device)
    first = next(iter(meta["views"].values()))  # the size of one map
    print(f"[gs-vq] {len(meta['views'])} feature maps {first['size'][0]}x{first['size'][1]}x{meta['dim']} "
          f"({EncoderSpec.from_dict(meta['encoder']).name}) in {out} ({time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    main()
