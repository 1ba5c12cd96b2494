"""compressed.ply format v1 against v2 on a trained VQ model: bits per Gaussian by part, and the
quality cost of coarser positions and codebooks.

    python -m bench.codec --model output/lego_vq              # lego -r 4, --config vq
    python -m bench.codec --model output/lego_vq --pos_bits 14 12 11 --mantissa 7 5 --joint 11 5
    python -m bench.codec --model output/lego_vq --step shN 8 --step shN 9 --pos_bits --mantissa --shrink

1. Reads MODEL/compressed.ply (any version), rewrites it as version 2 (3 for a contracted grid; the
   "v2" columns) with the same grid and
   codebooks and checks that the loaded splats are identical (bit-exact, same order).
2. Prints the bits per Gaussian of each part (positions, opacities, each attribute's index
   streams and codebooks, header) for the original and the v2 file, and the bytes / ratio
   against MODEL/point_cloud.ply.
3. For each ``--pos_bits`` (per-axis grids; also isotropic ones with ``--isotropic``) and each ``--mantissa`` (float16
   codebook mantissa bits kept), re-encodes, loads back and renders the scene's test views:
   bytes, bits per Gaussian and PSNR against the original file's PSNR.
Writes bench/results/codec.json. Data: ../shared/data beside the project (``--scene``).
"""

import argparse
import copy
import dataclasses
import math
import os
import tempfile
import time

import torch

from bench.report import ROOT, markdown, write_json
from gs_vq.io import streams as S
from gs_vq.io.compressed import describe_compressed, read_compressed, write_compressed
from gs_vq.io.scene import round_mantissa, round_step


def identical(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def render_psnr(splats, scene) -> float:
    from bench.rd import score

    return score(splats, scene)["psnr"]


def shrink(attr, factor: int):
    """A copy of a one-codebook attribute with ``K / factor`` entries: usage-weighted k-means of
    its codebook, each Gaussian remapped to the nearest new entry (no retraining: a pessimistic
    stand-in for training with the smaller codebook)."""
    from gs_vq.quant.kmeans import kmeans

    cb, codes = attr.codebooks[0], attr.codes[:, 0]
    counts = torch.bincount(codes, minlength=cb.shape[0]).float()
    res = kmeans(cb, max(1, cb.shape[0] // factor), iters=25, weights=counts, seed=0)
    table = res.centroids.half().float() if attr.precision == "float16" else res.centroids
    return dataclasses.replace(attr, codebooks=[table], codes=res.assignments[codes][:, None])


def variant(base, pos_bits=None, isotropic=False, mantissa=10, shrink_factor=1, shrink_attrs=(), steps=None):
    """A copy of ``base`` with a refitted position grid (contracted as the stored one is), rounded
    float16 codebooks (``mantissa`` bits; ``steps``: {attribute: power of two} to round to multiples
    of first) and/or smaller one-level codebooks."""
    scene = copy.copy(base)
    scene.attributes = [shrink(a, shrink_factor) if a.name in shrink_attrs and len(a.codebooks) == 1
                        else a for a in base.attributes]
    if pos_bits is not None:
        warp = (base.grid.center, base.grid.radius) if base.grid is not None and base.grid.radius > 0 else None
        scene.grid = S.PositionGrid.fit(base.means.numpy(), pos_bits, isotropic=isotropic, contraction=warp)
    if mantissa < 10 or steps:
        scene.attributes = [copy.copy(a) for a in scene.attributes]
        for a in scene.attributes:
            if a.precision == "float16":
                step = (steps or {}).get(a.name)
                a.codebooks = [round_mantissa(round_step(cb, step) if step else cb, mantissa) for cb in a.codebooks]
    return scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="output/lego_vq")
    ap.add_argument("--scene", default="lego", help="scene of ../shared/data to render (bench/scenes.py)")
    ap.add_argument("--pos_bits", type=int, nargs="*", default=[14, 13, 12, 11])
    ap.add_argument("--mantissa", type=int, nargs="*", default=[7, 5, 3])
    ap.add_argument("--shrink", type=int, nargs="*", default=[2, 4],
                    help="divide the sizes of the one-level codebooks of --shrink_attrs by these")
    ap.add_argument("--shrink_attrs", nargs="*", default=["sh0", "quats"])
    ap.add_argument("--joint", type=int, nargs=2, action="append", default=[], metavar=("POS_BITS", "MANTISSA"),
                    help="also one variant with both a position grid and codebook mantissa bits (repeatable)")
    ap.add_argument("--step", nargs=2, action="append", default=[], metavar=("ATTR", "BITS"),
                    help="also ATTR's codebook rounded to multiples of 2**-BITS (vq.attributes.ATTR.codebook_step)")
    ap.add_argument("--step_mantissa", type=int, default=5, help="float16 mantissa bits kept in --step rows")
    ap.add_argument("--isotropic", action="store_true", help="also isotropic grids (one step for all axes)")
    ap.add_argument("--no_render", action="store_true", help="sizes only")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "codec.json"))
    args = ap.parse_args()

    src = os.path.join(args.model, "compressed.ply")
    std = os.path.join(args.model, "point_cloud.ply")
    std_bytes = os.path.getsize(std) if os.path.isfile(std) else None
    tmp = tempfile.mkdtemp(prefix="codec_")
    v2 = os.path.join(tmp, "v2.ply")

    t = time.perf_counter()
    base = read_compressed(src)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    write_compressed(v2, base)
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    again = read_compressed(v2)
    read2_s = time.perf_counter() - t
    same = identical(base.to_splats(), again.to_splats())
    d1, d2 = describe_compressed(src), describe_compressed(v2)
    n = d1["count"]
    parts = list(dict.fromkeys([*d1["bits_per_gaussian"], *d2["bits_per_gaussian"]]))
    parts = [p for p in parts if p != "total"] + ["total"]
    rows = [[p, d1["bits_per_gaussian"].get(p, 0.0), d2["bits_per_gaussian"].get(p, 0.0)] for p in parts]
    print(f"{src}: {n} Gaussians, version {d1['version']}; rewritten as version {d2['version']}: "
          f"splats identical = {same}; read {read_s:.2f} s, write v2 {write_s:.2f} s, read v2 {read2_s:.2f} s")
    print(markdown(["part (bits / Gaussian)", f"v{d1['version']}", "v2"],
                   [[p, f"{a:.2f}", f"{b:.2f}"] for p, a, b in rows]))
    ratio = lambda b: round(std_bytes / b, 2) if std_bytes else None  # noqa: E731
    print(markdown(["file", "bytes", "ratio to point_cloud.ply"],
                   [[f"v{d1['version']}", d1["bytes"], ratio(d1["bytes"])], ["v2", d2["bytes"], ratio(d2["bytes"])]]))
    result = {"model": args.model, "count": n, "standard_bytes": std_bytes, "identical": same,
              "seconds": {"read_v1": round(read_s, 3), "write_v2": round(write_s, 3), "read_v2": round(read2_s, 3)},
              "v1": d1, "v2": d2, "variants": []}

    variants = [dict(pos_bits=None, mantissa=10)]
    variants += [dict(pos_bits=b, isotropic=iso) for b in args.pos_bits
                 for iso in ((False, True) if args.isotropic else (False,))]
    variants += [dict(mantissa=m) for m in args.mantissa]
    variants += [dict(shrink_factor=f, shrink_attrs=tuple(args.shrink_attrs)) for f in args.shrink]
    variants += [dict(pos_bits=p, mantissa=m) for p, m in args.joint]
    variants += [dict(steps={attr: 2.0 ** -int(b)}, mantissa=args.step_mantissa) for attr, b in args.step]
    scene = None
    if not args.no_render:
        from bench.vq_scene import scene_of

        scene = scene_of(args.scene)
        result["psnr_original"] = render_psnr(base.to_splats(), scene)
        print(f"PSNR of the original file on {args.scene}'s test views: {result['psnr_original']} dB")
    head = ["positions", "codebooks", "codebook sizes", "bytes", "bits / Gaussian", "ratio", "PSNR", "dPSNR"]
    table = []
    for v in variants:
        sc = variant(base, **v)
        path = os.path.join(tmp, "variant.ply")
        write_compressed(path, sc)
        info = describe_compressed(path)
        loaded = read_compressed(path)
        grid = loaded.grid
        row = {**v, "steps": v.get("steps"), "bytes": info["bytes"], "bits_per_gaussian": info["bits_per_gaussian"],
               "grid_bits": grid.bits if grid else None, "precision": list(grid.precision) if grid else None}
        if scene is not None:
            row["psnr"] = render_psnr(loaded.to_splats(), scene)
        result["variants"].append(row)
        pos = "as stored" if v.get("pos_bits") is None else \
            f"{v['pos_bits']} bits{' isotropic' if v.get('isotropic') else ''}"
        psnr = row.get("psnr")
        sizes = ", ".join(f"{a.name} {a.codebooks[0].shape[0]}" for a in loaded.attributes
                          if a.name in args.shrink_attrs)
        row["codebook_sizes"] = sizes
        steps = "".join(f", {a} in steps of 2^{int(math.log2(st))}" for a, st in (v.get("steps") or {}).items())
        table.append([pos, f"float16, {v.get('mantissa', 10)} mantissa bits{steps}", sizes, info["bytes"],
                      f"{info['bits_per_gaussian']['total']:.2f}", ratio(info["bytes"]),
                      psnr if psnr is not None else "-",
                      f"{psnr - result['psnr_original']:+.3f}" if psnr is not None else "-"])
        print(markdown(head, table[-1:]).splitlines()[-1] if len(table) > 1 else markdown(head, table), flush=True)
    write_json(args.out, result)
    os.remove(v2)


if __name__ == "__main__":
    main()
