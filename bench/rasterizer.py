"""CPU rasterizer benchmark: forward + backward time and peak memory, torch path vs C++ path.

    python -m bench.rasterizer                 # default sizes, prints a table
    python -m bench.rasterizer --quick         # 10k and 50k at 200x200 only
    python -m bench.rasterizer --threads 1,2   # also compare OpenMP thread counts

On a machine shared with other busy processes, OpenMP's default active waiting makes every
parallel torch op wait for a time slice with 2 threads; ``OMP_WAIT_POLICY=PASSIVE python
bench/rasterizer.py --threads 1,2`` shows the difference (children inherit the environment).

Each (backend, size) runs in its own subprocess so peak RSS (``ru_maxrss``) belongs to that
configuration alone; ``base MB`` is the RSS after importing torch and building the scene, before
the first render. Scenes come from ``gs_vq.render.synthetic.random_scene`` (Gaussians in front of
the camera, footprints of 0.3-2 px sigma, opacities 0.1-0.9, sh_degree=3). Time is the median
of the timed repetitions after one warm-up, wall clock and process CPU time (all threads).
``pairs`` counts the (pixel, Gaussian) pairs that pass the 1/255 alpha test, the work unit of
both paths. Results go to bench/results/rasterizer.json.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIZES = [(10_000, 200, 200), (50_000, 200, 200), (100_000, 200, 200), (100_000, 800, 600)]
BACKENDS = ["torch", "cpp"]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def count_pairs(params, scene, width, height) -> int:
    """(pixel, Gaussian) pairs passing the alpha test: the work both paths composite."""
    import torch

    from gs_vq.render.composite import candidate_pairs, pair_alphas
    from gs_vq.render.projection import ALPHA_THRESHOLD, project_gaussians

    n = len(params["means"])
    with torch.no_grad():
        radii, means2d, depths, conics = project_gaussians(
            params["means"], params["quats"], params["scales"], scene["viewmats"], scene["Ks"],
            width, height, opacities=params["opacities"])
        gauss, pix = candidate_pairs(means2d[0], radii[0], depths[0],
                                     torch.zeros(n, dtype=torch.long), width, height)
        _, sigma, _, alpha = pair_alphas(means2d[0], conics[0], params["opacities"], gauss, pix,
                                         width, height)
        return int(((sigma >= 0) & (alpha >= ALPHA_THRESHOLD)).sum())


def run_one(backend: str, n: int, width: int, height: int, reps: int) -> dict:
    """Runs inside the child process: one configuration, returns its measurements."""
    import torch

    from gs_vq.render import rasterize
    from gs_vq.render.synthetic import random_scene

    if backend == "cpp":
        from gs_vq.render import ext

        assert ext.available(), "C++ kernel did not build"
    scene = random_scene(n, width, height, sh_degree=3)
    params = {k: scene[k].requires_grad_(True) for k in
              ("means", "quats", "scales", "opacities", "colors")}
    target = torch.rand(1, height, width, 3)
    base_mb = _rss_mb()

    def step():
        t0, c0 = time.perf_counter(), time.process_time()
        img, _, _ = rasterize(params["means"], params["quats"], params["scales"],
                              params["opacities"], params["colors"], scene["viewmats"],
                              scene["Ks"], width, height, sh_degree=3, packed=False, backend=backend)
        t1 = time.perf_counter()
        loss = (img - target).abs().mean()
        loss.backward()
        t2, c2 = time.perf_counter(), time.process_time()
        for p in params.values():
            p.grad = None
        return t1 - t0, t2 - t1, c2 - c0

    step()  # warm-up (and kernel load)
    runs = [step() for _ in range(reps)]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # before counting pairs
    pairs = count_pairs(params, scene, width, height)
    fwd, bwd = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    total = statistics.median(r[0] + r[1] for r in runs)
    return {
        "backend": backend, "n": n, "width": width, "height": height, "pairs": pairs,
        "fwd_s": fwd, "bwd_s": bwd, "total_s": total,
        "total_min_s": min(r[0] + r[1] for r in runs),
        "cpu_s": statistics.median(r[2] for r in runs),
        "pairs_per_s": pairs / total,
        "peak_rss_mb": peak_mb,
        "base_rss_mb": base_mb, "threads": torch.get_num_threads(), "reps": reps,
    }


def spawn(backend: str, n: int, width: int, height: int, reps: int, threads: str) -> dict:
    cmd = [sys.executable, "-m", "bench.rasterizer", "--child", backend, str(n), str(width),
           str(height), str(reps)]
    env = dict(os.environ)
    if threads != "default":
        env["OMP_NUM_THREADS"] = threads
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"backend": backend, "n": n, "width": width, "height": height, "error": err}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows) -> str:
    head = (f"{'backend':8} {'thr':>3} {'N':>7} {'image':>8} {'pairs':>9} {'fwd s':>7} "
            f"{'bwd s':>7} {'total s':>8} {'min s':>7} {'cpu s':>7} {'Mpairs/s':>9} "
            f"{'peak MB':>8} {'base MB':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        size = f"{r['width']}x{r['height']}"
        if "error" in r:
            lines.append(f"{r['backend']:8} {'':>3} {r['n']:>7} {size:>8}  error: {r['error']}")
            continue
        lines.append(
            f"{r['backend']:8} {r['threads']:>3} {r['n']:>7} {size:>8} {r['pairs']:>9} "
            f"{r['fwd_s']:>7.3f} "
            f"{r['bwd_s']:>7.3f} {r['total_s']:>8.3f} {r['total_min_s']:>7.3f} {r['cpu_s']:>7.3f} "
            f"{r['pairs_per_s'] / 1e6:>9.2f} {r['peak_rss_mb']:>8.0f} {r['base_rss_mb']:>8.0f}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 50k at 200x200 only")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per config")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--threads", default="default",
                        help="comma-separated OMP_NUM_THREADS values for the children, e.g. 1,2")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "rasterizer.json"))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backend, n, w, h, reps = args.child
        print(json.dumps(run_one(backend, int(n), int(w), int(h), int(reps))))
        return

    from bench.report import write_json  # bench/report.py
    from gs_vq.render import ext

    if "cpp" in args.backends:
        ext.load()  # build once here, not inside a timed child
    sizes = SIZES[:2] if args.quick else SIZES
    load_before = os.getloadavg()[0]
    rows = [spawn(b, n, w, h, args.reps, t) for n, w, h in sizes for t in args.threads.split(",")
            for b in args.backends.split(",")]
    print(table(rows))
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"load average before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores, OMP_WAIT_POLICY={wait_policy} (other processes inflate "
          f"wall times; cpu s does not)")
    report = {"rows": rows,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(),
                          "loadavg_before": load_before, "loadavg_after": os.getloadavg()[0],
                          "omp_wait_policy": wait_policy},
              "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(args.out, report)
    print(f"wrote {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
