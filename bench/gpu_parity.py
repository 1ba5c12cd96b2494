"""gsplat's CUDA rasterizer against gs_vq's CPU rasterizer on the same random scenes.

    python -m bench.gpu_parity                                  # GPU machine: gsplat (CUDA) vs cpp (CPU)
    python -m bench.gpu_parity --candidate cpp --reference torch  # CPU only: our two CPU backends

Every case renders one random scene (``gs_vq.render.synthetic.random_scene``, 2 cameras) on both
sides from identical float32 inputs, backpropagates the same random weighting of the image and
alpha, and compares, within the tolerances in ``TOL``:

- images and alphas (max and mean absolute difference, relative to the largest value: depth);
- radii (entries that differ, visibility that differs, largest difference in pixels);
- the gradients of ``means2d`` (and ``means2d.absgrad`` when asked), means, quats, scales,
  opacities and colours (relative L2 error).

Cases: ``sh3`` (SH degree 3 colours), ``feat11`` (11 feature channels, which gsplat pads to 16),
``feat67`` (67 channels, which gsplat renders in chunks of 32), ``packed_absgrad`` (packed
outputs, aligned by camera and Gaussian id, with absolute gradients), ``rgb_ed`` (RGB+ED with
backgrounds) and ``feat35_absgrad`` (35 channels with absolute gradients: by default gsplat renders them in
chunks of 32 and each chunk's backward overwrites ``means2d.absgrad``; ``gs_vq.render.rasterize``
passes a ``channel_chunk`` that renders every channel in one pass when absgrad is on, so gsplat's
absgrad sums all channels as the CPU rasterizer's does; ``absgrad_vs_rgb`` reports, without a tolerance, how far the
candidate's absgrad is from the reference's for the RGB channels alone, the signal a densifying
strategy is meant to see). ``contrib1``, ``contrib17``, ``contrib65``: contribution-weighted sums
(``gs_vq.render.contribution.lift_view``, the backward pass behind significance pruning and
semantic lifting) of random per-pixel maps of 1, 17 and 65 channels (65: chunks of 32), compared
as ``grad_sums``. Then ``strategy``: five steps of gsplat's ``DefaultStrategy`` (packed, absgrad)
on each side's output, comparing the number of Gaussians after each step.

Prints a table (bench/report.py), writes bench/results/gpu_parity.json (CPU-only runs:
gpu_parity_cpu.json) and exits 1 on any mismatch, 2 when the candidate cannot run here.
"""

import argparse
import os
import platform
import sys
import time
from typing import Dict, Optional


import torch

from bench.report import ROOT, markdown, write_json
from gs_vq.render import rasterize
from gs_vq.render.synthetic import random_scene

CASES = {
    "sh3": dict(sh_degree=3),
    "feat11": dict(channels=11),
    "feat67": dict(channels=67),
    "packed_absgrad": dict(sh_degree=3, packed=True, absgrad=True),
    "rgb_ed": dict(sh_degree=3, render_mode="RGB+ED", background=True),
    "feat35_absgrad": dict(channels=35, absgrad=True, rgb_pass=True),
}
LIFTS = {"contrib1": 1, "contrib17": 17, "contrib65": 65}  # channels of the per-pixel map summed
NAMES = list(CASES) + list(LIFTS) + ["strategy"]
SCENE = dict(n=500, width=64, height=48, n_cameras=2, sigma_px=(0.5, 4.0))
# Tolerances. Both sides compute in float32 (gsplat with fast math and atomics); the rare pixels
# where a Gaussian crosses the 1/255 alpha cut-off or a radius rounds the other way differ by up
# to ~1/255 of a colour, hence a loose max and a tight mean.
TOL = {
    "image_max": 1e-2, "image_mean": 1e-4,  # absolute, relative to max(1, largest reference value)
    "radii_differ": 0.02, "radii_visibility": 0.005, "radii_max": 1,  # fractions of entries; pixels
    "grad_rel_l2": 2e-2,  # |g - g_ref| / |g_ref|
    "strategy_count": 0.02,  # relative difference of the number of Gaussians
}
PARAMS = ("means", "quats", "scales", "opacities", "colors")


def device_of(backend: str) -> str:
    return "cuda" if backend == "gsplat" else "cpu"


def make_inputs(case: Dict, seed: int) -> Dict[str, torch.Tensor]:
    """The scene of a case on the CPU: Gaussians, cameras, colours / features, loss weights."""
    s = random_scene(SCENE["n"], SCENE["width"], SCENE["height"], n_cameras=SCENE["n_cameras"],
                     sh_degree=case.get("sh_degree") or 0, sigma_px=SCENE["sigma_px"], seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    if case.get("channels"):
        s["colors"] = torch.rand(SCENE["n"], case["channels"], generator=g)  # [N, D]
    depth_channel = case.get("render_mode", "RGB") in ("RGB+D", "RGB+ED")
    D = s["colors"].shape[-1] + depth_channel
    C, H, W = SCENE["n_cameras"], SCENE["height"], SCENE["width"]
    if case.get("background"):
        s["backgrounds"] = torch.rand(C, s["colors"].shape[-1], generator=g)  # [C, D]
    s["w_image"] = torch.randn(C, H, W, D, generator=g)  # loss weights
    s["w_alpha"] = torch.randn(C, H, W, 1, generator=g)
    return s


def forward_backward(backend: str, case: Dict, s: Dict, channels: Optional[int] = None):
    """Render one side and backpropagate the case's weighted loss; ``channels``: only the first
    this many colour channels (and their loss weights). Returns ``(render, alpha, info, params)``."""
    device = device_of(backend)
    params = {k: s[k].to(device).clone().requires_grad_(True) for k in PARAMS}
    colors, w_image = params["colors"], s["w_image"]
    if channels is not None:
        colors, w_image = colors[..., :channels], w_image[..., :channels]
    bg = s.get("backgrounds")
    render, alpha, info = rasterize(
        params["means"], params["quats"], params["scales"], params["opacities"], colors,
        s["viewmats"].to(device), s["Ks"].to(device), SCENE["width"], SCENE["height"],
        sh_degree=case.get("sh_degree"), packed=case.get("packed", False),
        backgrounds=None if bg is None else bg.to(device), render_mode=case.get("render_mode", "RGB"),
        absgrad=case.get("absgrad", False), backend=backend)
    info["means2d"].retain_grad()
    loss = (render * w_image.to(device)).sum() + (alpha * s["w_alpha"].to(device)).sum()
    loss.backward()
    return render, alpha, info, params


def render_side(backend: str, case: Dict, s: Dict) -> Dict[str, torch.Tensor]:
    """Render and backpropagate on one side; every output back on the CPU in float64, packed
    outputs scattered to dense ``[C, N, ...]`` (zeros where not visible)."""
    C, N = SCENE["n_cameras"], SCENE["n"]

    def dense(x: torch.Tensor, info: Dict) -> torch.Tensor:  # [nnz, ...] or [C, N, ...] -> [C, N, ...]
        x = x.detach().cpu()
        if not case.get("packed"):
            return x
        out = torch.zeros((C, N) + tuple(x.shape[1:]), dtype=x.dtype)
        out[info["camera_ids"].cpu().long(), info["gaussian_ids"].cpu().long()] = x
        return out

    render, alpha, info, params = forward_backward(backend, case, s)
    out = {"image": render.detach().cpu().double(), "alpha": alpha.detach().cpu().double(),
           "radii": dense(info["radii"], info).long(), "grad_means2d": dense(info["means2d"].grad, info).double()}
    if case.get("absgrad"):
        out["grad_absgrad"] = dense(info["means2d"].absgrad, info).double()
    for k in PARAMS:
        out[f"grad_{k}"] = params[k].grad.detach().cpu().double()
    if case.get("rgb_pass"):  # the RGB channels alone: the absgrad a strategy should see
        rgb_info = forward_backward(backend, case, s, channels=3)[2]
        out["rgb_absgrad"] = dense(rgb_info["means2d"].absgrad, rgb_info).double()
    return out


def lift_side(backend: str, s: Dict) -> torch.Tensor:
    """``lift_view`` of the maps ``s["w_image"] [C, H, W, D]`` summed over the cameras -> ``[N, D]``."""
    from gs_vq.render.contribution import lift_view

    device = device_of(backend)
    splats = {"means": s["means"], "quats": s["quats"], "scales": torch.log(s["scales"]),
              "opacities": torch.logit(s["opacities"])}  # raw, as in the ParameterDict
    splats = {k: v.to(device) for k, v in splats.items()}
    return sum(lift_view(splats, s["viewmats"][c], s["Ks"][c], SCENE["width"], SCENE["height"], s["w_image"][c],
                         backend).cpu().double() for c in range(SCENE["n_cameras"]))


def rel_l2(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).norm() / ref.norm().clamp_min(1e-12))


def compare(cand: Dict[str, torch.Tensor], ref: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Differences of one case (see ``TOL`` for the limits)."""
    m = {}
    for k in ("image", "alpha"):
        scale = max(1.0, float(ref[k].abs().max()))
        diff = (cand[k] - ref[k]).abs() / scale
        m[f"{k}_max"], m[f"{k}_mean"] = float(diff.max()), float(diff.mean())
    vis_c, vis_r = (cand["radii"] > 0).all(-1), (ref["radii"] > 0).all(-1)  # [C, N]
    both = vis_c & vis_r
    rdiff = (cand["radii"] - ref["radii"]).abs()[both]  # [nb, 2]
    m["radii_visibility"] = float((vis_c != vis_r).float().mean())
    m["radii_differ"] = float((rdiff > 0).any(-1).float().mean()) if len(rdiff) else 0.0
    m["radii_max"] = int(rdiff.max()) if len(rdiff) else 0
    for k in ref:
        if k.startswith("grad_"):
            m[k] = rel_l2(cand[k], ref[k])
    if "rgb_absgrad" in ref:  # no tolerance: what the candidate's strategy would see, against the RGB pass
        m["absgrad_vs_rgb"] = rel_l2(cand["grad_absgrad"], ref["rgb_absgrad"])
    return m


def failures(m: Dict[str, float]) -> list:
    """Names of the metrics of ``m`` beyond their tolerance."""
    bad = []
    for k, v in m.items():
        limit = TOL["grad_rel_l2"] if k.startswith("grad_") else TOL.get(k)
        if limit is not None and not v <= limit:  # NaN fails too
            bad.append(k)
    return bad


def strategy_counts(backend: str, seed: int, steps: int = 5) -> list:
    """Number of Gaussians after each of ``steps`` DefaultStrategy steps (packed, absgrad) on
    one side; the growth threshold sits at the median of the first step's gradients."""
    from gsplat.strategy import DefaultStrategy

    device = device_of(backend)
    s = make_inputs({"sh_degree": 1}, seed)
    params = torch.nn.ParameterDict({
        "means": s["means"], "scales": torch.log(s["scales"]), "quats": s["quats"],
        "opacities": torch.logit(s["opacities"]), "sh0": s["colors"][:, :1], "shN": s["colors"][:, 1:4],
    }).to(device)
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    scales = torch.exp(params["scales"]).max(-1).values
    strategy = DefaultStrategy(refine_start_iter=2, refine_every=3, reset_every=10_000, absgrad=True,
                               grow_grad2d=2e-4, verbose=False)
    state = strategy.initialize_state(scene_scale=float(scales.median().detach()) / 0.01)  # half split, half duplicated
    target = torch.rand(SCENE["n_cameras"], SCENE["height"], SCENE["width"], 3,
                        generator=torch.Generator().manual_seed(seed)).to(device)
    counts = []
    for step in range(steps):
        render, _, info = rasterize(
            params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
            torch.cat([params["sh0"], params["shN"]], 1), s["viewmats"].to(device), s["Ks"].to(device),
            SCENE["width"], SCENE["height"], sh_degree=1, packed=True, absgrad=True, backend=backend)
        strategy.step_pre_backward(params, optimizers, state, step, info)
        (render - target).abs().mean().backward()
        strategy.step_post_backward(params, optimizers, state, step, info, packed=True)
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        counts.append(len(params["means"]))
    return counts


def run(candidate: str, reference: str, cases, seed: int) -> list:
    """One result row per case (and one for the strategy)."""
    rows = []
    for i, name in enumerate(c for c in cases if c != "strategy"):
        if name in LIFTS:
            s = make_inputs({"channels": LIFTS[name]}, seed + i)
            m = {"grad_sums": rel_l2(lift_side(candidate, s), lift_side(reference, s))}
        else:
            s = make_inputs(CASES[name], seed + i)
            m = compare(render_side(candidate, CASES[name], s), render_side(reference, CASES[name], s))
        rows.append({"case": name, "metrics": m, "failed": failures(m)})
    if "strategy" not in cases:
        return rows
    cand, ref = strategy_counts(candidate, seed), strategy_counts(reference, seed)
    rel = max(abs(a - b) / b for a, b in zip(cand, ref))
    grew = ref[-1] != ref[0]
    rows.append({"case": "strategy", "metrics": {"strategy_count": rel, "counts": cand, "counts_ref": ref},
                 "failed": ([] if rel <= TOL["strategy_count"] else ["strategy_count"])
                 + ([] if grew else ["strategy_did_not_refine"])})
    return rows


def table(rows) -> str:
    def fmt(m, k):
        return "" if k not in m else (f"{m[k]:.1e}" if isinstance(m[k], float) else str(m[k]))

    keys = ["image_max", "image_mean", "alpha_max", "radii_differ", "radii_max", "grad_means2d",
            "grad_absgrad", "absgrad_vs_rgb", "grad_sums", "grad_means", "grad_quats", "grad_scales", "grad_opacities", "grad_colors"]
    body = []
    for r in rows:
        m = r["metrics"]
        if r["case"] == "strategy":
            cells = [f"N {m['counts']} vs {m['counts_ref']}"] + [""] * (len(keys) - 1)
        else:
            cells = [fmt(m, k) for k in keys]
        body.append([r["case"]] + cells + ["FAIL: " + ", ".join(r["failed"]) if r["failed"] else "ok"])
    return markdown(["case"] + keys + ["result"], body)


def main(argv=None) -> int:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidate", choices=["gsplat", "cpp", "torch"], default="gsplat" if cuda else "cpp",
                   help="backend under test (gsplat runs on CUDA; default: gsplat when CUDA is available)")
    p.add_argument("--reference", choices=["cpp", "torch"], default=None,
                   help="CPU backend to compare with (default: cpp, or torch when the candidate is cpp)")
    p.add_argument("--cases", default=",".join(NAMES), help=f"comma-separated subset of {','.join(NAMES)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON path (default bench/results/gpu_parity[_cpu].json)")
    args = p.parse_args(argv)
    reference = args.reference or ("torch" if args.candidate == "cpp" else "cpp")
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in NAMES]
    if unknown or not cases:
        print(f"error: unknown case(s) {', '.join(unknown)}; expected some of {', '.join(NAMES)}", file=sys.stderr)
        return 2
    if args.candidate == "gsplat":
        if not cuda:
            print("error: --candidate gsplat needs a CUDA device; on a CPU-only machine run "
                  "--candidate cpp --reference torch", file=sys.stderr)
            return 2
        from gs_vq.errors import GsVqError
        from gs_vq.render.gsplat_cuda import load_gsplat_cuda

        try:
            load_gsplat_cuda()
        except GsVqError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if reference == args.candidate:
        print("error: --candidate and --reference are the same backend", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rows = run(args.candidate, reference, cases, args.seed)
    print(f"gpu_parity: {args.candidate} ({device_of(args.candidate)}) vs {reference} (cpu), "
          f"{SCENE['n']} Gaussians, {SCENE['n_cameras']} cameras of {SCENE['width']}x{SCENE['height']}")
    print(table(rows))
    failed = [r["case"] for r in rows if r["failed"]]
    suffix = "" if args.candidate == "gsplat" else "_cpu"
    out = args.out or os.path.join(ROOT, "bench", "results", f"gpu_parity{suffix}.json")
    write_json(out, {"candidate": args.candidate, "reference": reference, "scene": SCENE, "tolerances": TOL,
                     "rows": rows, "failed": failed, "seconds": time.perf_counter() - t0,
                     "torch": torch.__version__, "cuda": torch.version.cuda,
                     "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    print(f"wrote {os.path.relpath(out, ROOT)}")
    if failed:
        print(f"MISMATCH in {', '.join(failed)}", file=sys.stderr)
        return 1
    print("all cases within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
