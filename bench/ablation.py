"""Post-hoc ablation on a finished plain model: what each compression step costs alone.

    python -m bench.ablation --scene lego        # after bench.rd (it reads MODEL/point_cloud.ply)
    python -m bench.ablation --scene fern --only scales prune

Starting from the plain model bench.rd trained (``output/bench_rd/<scene>_cpu``), each row
changes one thing, with no training, and scores the held-out views:

* ``quantizer``: one attribute through a ``gs_vq.quant`` quantizer (fitted on all Gaussians);
  bits are the order-0 entropy of its index columns plus its codebooks at 11 bits per value
  (float16 with 5 mantissa bits), per Gaussian of the plain model;
* ``scales``: log-scales on a uniform grid of L levels per axis whose bottom is the ``clip_low``
  quantile (``ScalarQuantizer``), bits as above;
* ``prune``: the least significant Gaussians removed (LightGaussian's score rendered at
  ``significance_downscale`` 1 and 2), then SH degree 0 for half of the rest;
* ``views``: 60% pruned by significance from an evenly spaced subset of the training views
  (``significance_views``); the label gives the share of all views' significance that the kept
  Gaussians hold, a training-view measure (the default level's 34 was chosen on it);
* ``sh_drop``: SH degree 0 for a fraction of the Gaussians (least view-dependent first);
* ``bits``: positions on a grid of B bits per axis (uniform, and contracted as ``pos_contract``
  4 does), sigmoid(opacity) in B bits.

It shows the first-order price of each knob that the presets (configs/vq*.yaml) set; training
(bench.rd) recovers part of it. Prints a table; writes bench/results/ablation_<scene>.json.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

from gs_vq.io.ply import load_ply
from gs_vq.io.grid import camera_contraction
from gs_vq.io.sections.positions import encode_positions
from gs_vq.io.streams import PositionGrid, dequantize_opacity, morton_encode, quantize_opacity
from gs_vq.quant import build_quantizer
from gs_vq.render.contribution import contribution
from gs_vq.vq.attributes import from_vectors, to_vectors
from gs_vq.vq.importance import lowest, sh_drop_mask, view_subset
from gs_vq.vq.positions import camera_centers

from bench.rd import score
from bench.report import ROOT, markdown, write_json
from bench.scenes import SCENES
from bench.vq_scene import scene_of

CONTRACT = 4.0  # pos_contract of the contracted position rows (the presets' value)
CODEBOOK_BITS = 11  # float16 with codebook_mantissa 5: sign, exponent, 5 mantissa bits

QUANTIZERS = [  # (attribute, spec) for the "quantizer" rows
    ("sh0", {"type": "vq", "codebook_size": 4096}), ("sh0", {"type": "vq", "codebook_size": 1024}),
    ("shN", {"type": "rvq", "num_stages": 2, "codebook_size": 256}),
    ("shN", {"type": "rvq", "num_stages": 3, "codebook_size": 256}),
    ("shN", {"type": "vq", "codebook_size": 128}),
    ("quats", {"type": "vq", "codebook_size": 1024}), ("quats", {"type": "vq", "codebook_size": 4096}),
    ("quats", {"type": "rvq", "num_stages": 2, "codebook_size": 256}),
]
SCALE_GRIDS = [(levels, low) for levels in (48, 32, 16) for low in (0.0, 0.1, 0.2)]


def entropy_bits(codes: torch.Tensor) -> float:
    """Order-0 entropy of ``codes`` [N] in bits per symbol."""
    _, counts = torch.unique(codes, return_counts=True)
    p = counts.double() / counts.sum()
    return float(-(p * p.log2()).sum())


class Ablation:
    """Scores variants of one scene's plain model against the model itself."""

    def __init__(self, splats, scene):
        self.splats, self.scene = splats, scene  # raw tensors, as in point_cloud.ply
        self.n = int(self.splats["means"].shape[0])
        self.base = self.psnr(self.splats)
        self.rows = []
        self._significance = {}

    def psnr(self, splats) -> float:
        return score(splats, self.scene)["psnr"]

    def add(self, kind: str, what: str, splats, bits=None) -> None:
        row = {"kind": kind, "variant": what, "bits_per_gaussian": None if bits is None else round(bits, 2),
               "psnr_drop": round(self.base - self.psnr(splats), 3)}
        print(f"  {kind:9s} {what:48s} {'' if bits is None else f'{bits:6.2f} b/G'}  {-row['psnr_drop']:+.3f} dB",
              flush=True)
        self.rows.append(row)

    def with_(self, **changes):
        return {**self.splats, **changes}

    def significance(self, downscale: int) -> torch.Tensor:
        if downscale not in self._significance:
            self._significance[downscale] = contribution(self.splats, self.scene.train_cameras, downscale)  # [N]
        return self._significance[downscale]

    # ---------------------------------------------------------------- the row groups
    def quantizer(self) -> None:
        for attr, spec in QUANTIZERS:
            self._quantized(attr, spec, json.dumps(spec)[1:-1].replace('"', ""))

    def scales(self) -> None:
        for levels, low in SCALE_GRIDS:
            self._quantized("scales", {"type": "fsq", "levels": levels, "clip_low": low},
                            f"fsq {levels} levels, clip_low {low}")

    def _quantized(self, attr: str, spec: dict, label: str) -> None:
        x = to_vectors(attr, self.splats[attr].detach()).float()  # [N, d]
        torch.manual_seed(0)
        q = build_quantizer({**spec, "dim": x.shape[1]}).fit(x)
        codes = q.encode(x).reshape(x.shape[0], -1)  # [N, M]
        bits = sum(entropy_bits(codes[:, m]) for m in range(codes.shape[1]))
        if spec["type"] != "fsq":
            bits += sum(t.numel() for t in q.codebooks) * CODEBOOK_BITS / self.n
        decoded = from_vectors(q.decode(codes), tuple(self.splats[attr].shape[1:]))
        self.add("quantizer", f"{attr}: {label}", self.with_(**{attr: decoded}), bits)

    def prune(self) -> None:
        for downscale in (1, 2):
            sig = self.significance(downscale)
            for fraction in (0.2, 0.4, 0.5, 0.6):
                gone = lowest(sig, int(round(fraction * self.n)))  # [N]
                kept = {k: v[~gone] for k, v in self.splats.items()}
                self.add("prune", f"{fraction:.0%} at significance_downscale {downscale}", kept)
                if downscale == 1:
                    drop = sh_drop_mask(kept["shN"], sig[~gone], 0.5)
                    kept["shN"] = kept["shN"] * (~drop)[:, None, None]
                    self.add("prune", f"{fraction:.0%}, then SH degree 0 for half", kept)

    def views(self) -> None:
        cams, full = self.scene.train_cameras, self.significance(1)
        count = int(round(0.6 * self.n))
        for views in (0, 50, 34, 25, 17):
            sig = full if views == 0 else contribution(self.splats, view_subset(cams, views), 1)
            gone = lowest(sig, count)  # [N]
            share = float(full[~gone].sum() / full.sum())
            label = f"60% by significance of {len(view_subset(cams, views))} of {len(cams)} views, kept {share:.2%}"
            self.add("views", label, {k: v[~gone] for k, v in self.splats.items()})

    def sh_drop(self) -> None:
        for fraction in (0.5, 0.75, 1.0):
            drop = sh_drop_mask(self.splats["shN"], self.significance(1), fraction)
            self.add("sh_drop", f"SH degree 0 for {fraction:.0%}",
                     self.with_(shN=self.splats["shN"] * (~drop)[:, None, None]))

    def bits(self) -> None:
        means, logits = self.splats["means"].numpy(), self.splats["opacities"].numpy()
        centers = camera_centers(self.scene.train_cameras)  # [C, 3]
        for b in (12, 11, 10, 9):
            for contract in (0.0, CONTRACT):
                grid = PositionGrid.fit(means, b, contraction=camera_contraction(centers, contract) if contract else None)
                q = grid.quantize(means)
                order = np.argsort(morton_encode(q, b), kind="stable")
                payload = encode_positions(grid.dequantize(q[order]), grid)[1]
                self.add("bits", f"positions, {b} bits per axis" + (f", pos_contract {contract:g}" if contract else ""),
                         self.with_(means=torch.from_numpy(grid.dequantize(q)).float()), 8 * len(payload) / self.n)
        for b in (8, 6, 5):
            q = quantize_opacity(logits, b)
            self.add("bits", f"opacities, {b} bits", self.with_(
                opacities=torch.from_numpy(dequantize_opacity(q, b)).float()), entropy_bits(torch.from_numpy(q)))


GROUPS = ("quantizer", "scales", "prune", "views", "sh_drop", "bits")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", default="lego", choices=sorted(SCENES))
    p.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS))
    p.add_argument("--models", default=os.path.join(ROOT, "output", "bench_rd"))
    p.add_argument("--out", default=None, help="default: bench/results/ablation_<scene>.json")
    args = p.parse_args()
    path = os.path.join(args.models, f"{args.scene}_cpu", "point_cloud.ply")
    if not os.path.isfile(path):
        print(f"error: no plain model at {path}: run python -m bench.rd --scenes {args.scene} first", file=sys.stderr)
        raise SystemExit(2)
    ab = Ablation(load_ply(path), scene_of(args.scene))
    print(f"{args.scene}: plain model, {ab.n} Gaussians, PSNR {ab.base:.3f}", flush=True)
    for group in args.only:
        getattr(ab, group)()
    head = ["kind", "variant", "bits / Gaussian", "PSNR drop (dB)"]
    print("\n" + markdown(head, [[r["kind"], r["variant"], "-" if r["bits_per_gaussian"] is None
                                  else f"{r['bits_per_gaussian']:.2f}", f"{r['psnr_drop']:+.3f}"] for r in ab.rows]))
    out = args.out or os.path.join(ROOT, "bench", "results", f"ablation_{args.scene}.json")
    write_json(out, {"scene": args.scene, "num_gaussians": ab.n, "psnr": ab.base, "rows": ab.rows})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
