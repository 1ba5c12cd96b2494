"""``python view.py -m MODEL``: look at a model in the browser (viser + nerfview)."""

import argparse

from . import guarded
from ..errors import GsVqError
from ..render import resolve_device


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Interactive viewer of a gs-vq model in the browser.")
    p.add_argument("-m", "--model_path", help="model folder written by train.py")
    p.add_argument("--ply", help="show this file instead of MODEL/point_cloud.ply: a standard 3DGS ply, gs-vq's "
                                 "compressed.ply, a SuperSplat .compressed.ply, .splat or .spz")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080); a port in use is an error")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    p.add_argument("--max_res", type=int, help="pixels on the long side when the camera rests "
                                               "(default 384 on CPU, 1024 with CUDA)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--backend", choices=["auto", "gsplat", "cpp", "torch"], default="auto")
    return p


@guarded
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if not args.model_path and not args.ply:
        raise GsVqError("give a model folder (-m MODEL) or a file (--ply FILE)")
    from ..viewer.app import check_port_free, serve
    from ..viewer.model import load_viewer_model

    check_port_free(args.host, args.port)  # before the (slow) model load
    device = resolve_device(args.device)
    model = load_viewer_model(args.model_path, args.ply, device)
    max_res = args.max_res or (1024 if device == "cuda" else 384)
    if max_res < 16:
        raise GsVqError(f"--max_res must be at least 16, got {max_res}")
    serve(model, args.host, args.port, max_res, args.backend)


if __name__ == "__main__":
    main()
