"""gs-vq at gsplat's scale: a random scene of 1M Gaussians (CPU) or 3M (CUDA; 6M with --n when it
fits) at 1297x840, trained one step at a time with gsplat's 30k schedule and the default VQ level.

    python -m bench.scale                      # 1M on CPU, 3M on CUDA
    python -m bench.scale --n 200000           # a quick look
    python -m bench.scale --out DIR            # DIR/scale.json and DIR/scale.md (default docs/)

Two trainers run side by side on the same views in the same process: a plain one and one with
``--vq`` (the default level on ``--config gpu``: assignments refreshed every 100 steps from step
15k). Each measured step alternates between them, so both see the same machine load. Printed:

- ms per step: plain, VQ-update (codebooks follow their members' means) and VQ-refresh (every
  Gaussian reassigned) steps, and the VQ plugin's share of each (its timed hooks plus decoding
  the codes for the render);
- the window average ``(refresh + (every - 1) * update) / every`` of the hooks against a plain
  step, for the 30k schedule's interval and the CPU preset's;
- k-means refresh time per attribute; the first fit at ``vq_start``;
- significance (pruning's score) per view, and extrapolated to 200 views;
- compressed.ply finalize (snapping, the position-bits search), write and read times and size;
- peak memory: host RSS, and ``torch.cuda.max_memory_allocated`` on CUDA;
- on CUDA, the synchronisations one VQ-update step makes (``torch.cuda.set_sync_debug_mode``).

The scene is :func:`gs_vq.render.synthetic.random_scene` (footprints of 0.3-2 px); the targets
are its own renders and training starts from a copy with perturbed colours, so every gradient is
real. Timings are wall clock on a possibly shared machine: compare the columns of one run.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings

import torch

from gs_vq.config import make_config
from gs_vq.data.cameras import Camera, Scene
from gs_vq.devices import synchronize
from gs_vq.io.compressed import load_compressed_splats
from gs_vq.render import rasterize, resolve_device
from gs_vq.render.contribution import contribution
from gs_vq.render.synthetic import random_scene
from gs_vq.trainer import Trainer
from gs_vq.vq.codes import CodeTable
from gs_vq.vq.export import export_compressed
from gs_vq.vq.schedule import REFRESH, UPDATE

from bench.report import markdown, write_json, write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTH, HEIGHT, VIEWS = 1297, 840, 4


def make_scene(n: int, seed: int = 0) -> Scene:
    """The random scene as a training Scene: ``VIEWS`` cameras, uint8 targets rendered from it."""
    s = random_scene(n, WIDTH, HEIGHT, n_cameras=VIEWS, sh_degree=3, seed=seed)
    cams = []
    with torch.no_grad():
        for i in range(VIEWS):
            img, _, _ = rasterize(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"],
                                  s["viewmats"][i:i + 1], s["Ks"][i:i + 1], WIDTH, HEIGHT, sh_degree=3,
                                  packed=False)
            pixels = (img[0].clamp(0, 1) * 255).round().to(torch.uint8)  # [H, W, 3]
            cams.append(Camera(f"view{i}", pixels, s["viewmats"][i], s["Ks"][i], WIDTH, HEIGHT))
    scene = Scene(train_cameras=cams, test_cameras=cams[:1], points=s["means"],
                  points_rgb=torch.full((n, 3), 0.5), scene_scale=4.0, source_path="random", kind="demo")
    scene.extra["gaussians"] = s
    return scene


def make_trainer(scene: Scene, device: str, vq: bool, model_dir: str) -> Trainer:
    """A trainer on gsplat's 30k schedule whose splats are the scene's Gaussians, colours perturbed."""
    overrides = {"device": device, "max_init_points": 0, "log_every": 10**9, "checkpoint_every": 0}
    if vq:
        overrides["vq"] = {"level": "default"}
    trainer = Trainer(make_config("gpu", overrides), scene, model_dir)
    s, g = scene.extra["gaussians"], torch.Generator().manual_seed(1)
    values = {"quats": s["quats"], "scales": torch.log(s["scales"]),
              "opacities": torch.logit(s["opacities"]), "sh0": s["colors"][:, :1],
              "shN": s["colors"][:, 1:]}
    values["sh0"] = values["sh0"] + 0.3 * torch.randn(values["sh0"].shape, generator=g)
    with torch.no_grad():
        for k, v in values.items():
            trainer.splats[k].copy_(v.reshape(trainer.splats[k].shape))
    return trainer


def timed_step(trainer: Trainer, step: int, device: str):
    """One training step: (wall seconds, the VQ plugin's seconds in it)."""
    plugin = trainer.plugins.get("vq")
    before = sum(plugin.timings().values()) if plugin else 0.0
    cam = trainer.scene.train_cameras[step % VIEWS]
    synchronize(device)
    t0 = time.perf_counter()
    trainer.train_step(step, cam)
    synchronize(device)
    wall = time.perf_counter() - t0
    if plugin is None:
        return wall, 0.0
    with torch.no_grad():  # the decode in splats_to_render is the plugin's work too
        synchronize(device)
        t1 = time.perf_counter()
        plugin.splats_to_render(trainer.splats)
        synchronize(device)
        decode = time.perf_counter() - t1
    return wall, sum(plugin.timings().values()) - before + decode


def update_variants(x: torch.Tensor, codes: torch.Tensor, k: int, device: str, reps: int = 3) -> dict:
    """Per-codeword sums of ``x [N, D]`` over ``codes [N]`` (the codebook update between refreshes)
    three ways, ms each (best of ``reps``): ``index_add`` (what gs-vq does: atomic adds on CUDA),
    and with the sort order cached at the refresh (the codes change only there) ``segment_reduce``
    or a ``cumsum`` differenced at the segment ends. All three must agree."""
    order = torch.argsort(codes)  # cached at the refresh: not timed
    lengths = torch.bincount(codes, minlength=k)
    ends = torch.cumsum(lengths, 0)

    def index_add():
        return x.new_zeros(k, x.shape[1]).index_add_(0, codes, x)

    def segment_reduce():
        return torch.segment_reduce(x[order], "sum", lengths=lengths, axis=0, unsafe=True)

    def cumsum():
        c = torch.cumsum(x[order].double(), 0)  # float64: a float32 running sum over N rows drifts
        c = torch.cat([c.new_zeros(1, x.shape[1]), c])
        return (c[ends] - c[ends - lengths]).float()

    ref, out = index_add(), {}
    for name, fn in (("index_add", index_add), ("segment_reduce", segment_reduce), ("cumsum", cumsum)):
        best = float("inf")
        for _ in range(reps):
            synchronize(device)
            t = time.perf_counter()
            got = fn()
            synchronize(device)
            best = min(best, time.perf_counter() - t)
        assert torch.allclose(got, ref, rtol=1e-3, atol=1e-2), name
        out[name] = 1000 * best
    return out


def count_syncs(trainer: Trainer, step: int) -> int:
    """Host synchronisations in one CUDA training step, from torch's sync debug mode."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.train_step(step, trainer.scene.train_cameras[step % VIEWS])
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def run(n: int, device: str, reps: int, save=lambda out: None) -> dict:
    """All the measurements, in the order printed; ``save(out)`` is called after each phase with
    what is measured so far (a run stopped by a time limit keeps its finished parts)."""
    t0 = time.perf_counter()
    scene = make_scene(n)
    out = {"n": n, "device": device, "width": WIDTH, "height": HEIGHT, "scene_s": time.perf_counter() - t0,
           "complete": False}
    with tempfile.TemporaryDirectory() as tmp:
        plain = make_trainer(scene, device, False, os.path.join(tmp, "plain"))
        vq_trainer = make_trainer(scene, device, True, os.path.join(tmp, "vq"))
        plugin = vq_trainer.plugins["vq"]
        sched = plugin.schedule
        start, every = sched.vq_start, sched.vq_every
        out.update(vq_start=start, vq_every=every, cpu_vq_every=make_config("cpu", {"vq": {"level": "default"}})
                   .plugins["vq"].vq_every)
        for trainer in (plain, vq_trainer):  # warm-up: kernels built, caches filled (a plain step for both)
            trainer.train_step(start - 1, scene.train_cameras[0])
        synchronize(device)
        t = time.perf_counter()
        vq_trainer.train_step(start, scene.train_cameras[0])  # FIT
        synchronize(device)
        out["fit_s"] = time.perf_counter() - t
        save(out)
        rows = {"plain": [], "update": [], "refresh": []}
        steps = {"update": [start + 1 + i for i in range(reps)],
                 "refresh": [start + every * (i + 1) for i in range(reps)]}
        for kind in ("update", "refresh"):
            for step in steps[kind]:
                want = REFRESH if kind == "refresh" else UPDATE
                assert sched.action(step, True) == want and not sched.prunes_at(step), (kind, step)
                rows["plain"].append(timed_step(plain, step, device))
                rows[kind].append(timed_step(vq_trainer, step, device))
        for kind, r in rows.items():
            out[f"{kind}_ms"] = 1000 * sum(w for w, _ in r) / len(r)
            out[f"{kind}_hooks_ms"] = 1000 * sum(h for _, h in r) / len(r)
        for name, every_ in (("gpu", every), ("cpu", out["cpu_vq_every"])):
            window = (out["refresh_hooks_ms"] + (every_ - 1) * out["update_hooks_ms"]) / every_
            out[f"hooks_share_{name}"] = window / out["plain_ms"]
        if device == "cuda":
            out["syncs_update_step"] = count_syncs(vq_trainer, start + 2 + reps)
        save(out)
        splats = vq_trainer.splats
        with torch.no_grad():
            sh = plugin.state.slots["shN"]
            out["shN_sum_ms"] = update_variants(plugin._vectors(splats, "shN"),
                                                CodeTable.columns(splats, sh)[:, 0].contiguous(),
                                                sh.quantizer.codebooks[0].shape[0], device)
            out["refresh_s"] = {}
            for name, slot in plugin.state.slots.items():
                synchronize(device)
                t = time.perf_counter()
                plugin._reassign(splats, name, slot)
                synchronize(device)
                out["refresh_s"][name] = time.perf_counter() - t
            t = time.perf_counter()
            contribution(splats, scene.train_cameras[:2], plugin.significance_downscale)
            synchronize(device)
            out["significance_s_per_view"] = (time.perf_counter() - t) / 2
            out["significance_200_views_s"] = 200 * out["significance_s_per_view"]
            save(out)
            t = time.perf_counter()
            plugin.finalize(splats)
            synchronize(device)
            out["finalize_s"] = time.perf_counter() - t
        model = os.path.join(tmp, "vq")
        os.makedirs(model, exist_ok=True)
        t = time.perf_counter()
        report = export_compressed(plugin, splats, model)
        out["write_s"] = time.perf_counter() - t
        out["compressed_mb"] = report["compressed_bytes"] / 1e6
        t = time.perf_counter()
        loaded = load_compressed_splats(os.path.join(model, "compressed.ply"))
        out["read_s"] = time.perf_counter() - t
        out["read_n"] = int(loaded["means"].shape[0])
    out.update(_peak_memory(device), complete=True)
    save(out)
    return out


def _peak_memory(device: str) -> dict:
    out = {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
    if device == "cuda":
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def table(r: dict) -> str:
    rows = [["plain step", f"{r['plain_ms']:.0f}", "", ""],
            ["VQ-update step", f"{r['update_ms']:.0f}", f"{r['update_hooks_ms']:.0f}",
             f"{100 * r['update_hooks_ms'] / r['plain_ms']:.1f}%"],
            ["VQ-refresh step", f"{r['refresh_ms']:.0f}", f"{r['refresh_hooks_ms']:.0f}",
             f"{100 * r['refresh_hooks_ms'] / r['plain_ms']:.1f}%"]]
    lines = [markdown(["step", "ms", "VQ hooks ms", "hooks / plain step"], rows), ""]
    lines.append(f"hooks over the window / plain step: {100 * r['hooks_share_gpu']:.1f}% refreshing every "
                 f"{r['vq_every']} steps (30k schedule), {100 * r['hooks_share_cpu']:.1f}% every "
                 f"{r['cpu_vq_every']} (CPU preset)")
    lines.append("k-means refresh per attribute: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["refresh_s"].items())
                 + f"; first fit {r['fit_s']:.1f} s")
    lines.append("shN codeword sums between refreshes (one stage, N x 45): " + ", ".join(
        f"{k} {v:.0f} ms" for k, v in r["shN_sum_ms"].items()) + " (the last two with the sort order cached)")
    lines.append(f"significance: {r['significance_s_per_view']:.2f} s per view, "
                 f"{r['significance_200_views_s']:.0f} s for 200 views")
    lines.append(f"compressed.ply: finalize {r['finalize_s']:.1f} s, write {r['write_s']:.1f} s, "
                 f"read {r['read_s']:.1f} s, {r['compressed_mb']:.1f} MB")
    mem = f"peak host RSS {r['peak_rss_gb']:.1f} GB"
    if "peak_cuda_gb" in r:
        mem += f", peak CUDA {r['peak_cuda_gb']:.1f} GB; {r['syncs_update_step']} syncs in a VQ-update step"
    lines.append(mem)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None, help="Gaussians (default: 1M on CPU, 3M on CUDA)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--reps", type=int, default=3, help="measured steps of each kind")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"), help="folder for scale.json / scale.md (default docs/)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    n = args.n or (3_000_000 if device == "cuda" else 1_000_000)
    os.makedirs(args.out, exist_ok=True)
    r = run(n, device, args.reps, save=lambda out: write_json(os.path.join(args.out, "scale.json"),
                                                              {**out, **_peak_memory(device)}))
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    text = (f"# bench.scale: {n:,} Gaussians at {WIDTH}x{HEIGHT} on {where}\n\n"
            f"`python -m bench.scale {' '.join(sys.argv[1:])}`".rstrip() + " (wall clock: compare within this table)\n\n"
            f"{table(r)}\n")
    print(text)
    write_text(os.path.join(args.out, "scale.md"), text)


if __name__ == "__main__":
    main()
