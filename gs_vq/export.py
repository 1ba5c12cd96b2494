"""Export a model for other splat viewers: ``python -m gs_vq.export -m MODEL --format FORMAT [-o PATH]``.

Formats (the source is ``MODEL/point_cloud.ply``, or ``--ply FILE``: any ply gs-vq reads,
``MODEL/compressed.ply`` included, which only gs-vq opens):

==================  ====================  ==============================================
``--format``        default file          written by / opens in
==================  ====================  ==============================================
``ply``             ``<stem>.ply``        gsplat's exporter; the Inria 3DGS ply, every viewer
``splat``           ``<stem>.splat``      gsplat's exporter; antimatter15's viewer (degree-0 colour)
``ply_compressed``  ``<stem>.compressed.ply``  gsplat's exporter; SuperSplat / PlayCanvas
``spz``             ``<stem>.spz``        :mod:`gs_vq.io.spz` (Niantic's layout, version 3)
==================  ====================  ==============================================

Default files go to ``MODEL/export/``; ``<stem>`` is ``point_cloud`` for a standard source and
``vq`` for gs-vq's ``compressed.ply``. Semantic features are not carried: viewers have no use
for them. Every written file is read back (:func:`gs_vq.io.load_splats`) and its count printed.
"""

import argparse
import json
import os
import sys
from typing import Dict

from torch import Tensor

from .errors import GsVqError

from .files import atomic_path, output_file
from .model_dir import model_splat_file

FORMATS = {"ply": ".ply", "splat": ".splat", "ply_compressed": ".compressed.ply", "spz": ".spz"}


def default_output(model_path: str, source: str, fmt: str) -> str:
    """``MODEL/export/<stem><suffix>``: stem ``vq`` for a gs-vq compressed source, else ``point_cloud``."""
    from .io.compressed import is_compressed_ply

    stem = "vq" if is_compressed_ply(source) else "point_cloud"
    return os.path.join(model_path, "export", stem + FORMATS[fmt])


def export_bytes(splats: Dict[str, Tensor], fmt: str) -> bytes:
    """Raw splats -> the bytes of ``fmt`` (gsplat's ``export_splats`` for ply / splat /
    ply_compressed, :func:`gs_vq.io.spz.splats_to_spz` for spz)."""
    if fmt not in FORMATS:
        raise GsVqError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "spz":
        from .io.spz import splats_to_spz

        return splats_to_spz(splats)
    from gsplat.exporter import export_splats

    s = {k: splats[k].detach().float().cpu() for k in ("means", "scales", "quats", "opacities", "sh0", "shN")}
    return export_splats(s["means"], s["scales"], s["quats"], s["opacities"], s["sh0"], s["shN"], format=fmt)


def export_file(splats: Dict[str, Tensor], fmt: str, path: str) -> int:
    """Write ``splats`` as ``fmt`` to ``path`` (atomically). Returns the file size in bytes."""
    data = export_bytes(splats, fmt)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return os.path.getsize(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gs_vq.export",
                                description="Write a trained model in a format other splat viewers open.")
    p.add_argument("-m", "--model_path", required=True, help="model folder written by train.py")
    p.add_argument("--format", required=True, choices=list(FORMATS), help="output format")
    p.add_argument("-o", "--output", help="output file (default: MODEL/export/<stem><suffix>)")
    p.add_argument("--ply", help="source file instead of MODEL/point_cloud.ply (e.g. MODEL/compressed.ply)")
    return p


def main(argv=None) -> None:
    from .console import guarded

    guarded(_main)(argv)


def _main(argv=None) -> None:
    from .io import load_splats

    args = build_parser().parse_args(argv)
    source = model_splat_file(args.model_path, args.ply)
    out = output_file(args.output or default_output(args.model_path, source, args.format))
    splats = load_splats(source)
    if not out.lower().endswith(FORMATS[args.format]):
        raise GsVqError(f"a {args.format} file must end in {FORMATS[args.format]} (viewers pick the reader by it): {out}")
    if os.path.abspath(out) == os.path.abspath(source):
        raise GsVqError(f"refusing to overwrite the source {source}: give another -o")
    size = export_file(splats, args.format, out)
    back = load_splats(out)
    print(json.dumps({"format": args.format, "source": source, "output": out, "bytes": size,
                      "num_gaussians": int(splats["means"].shape[0]),
                      "num_gaussians_written": int(back["means"].shape[0])}))


if __name__ == "__main__":
    main(sys.argv[1:])
