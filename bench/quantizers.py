"""Benchmark gs_vq.quant against faiss-cpu: reconstruction MSE and fit / encode time.

    python -m bench.quantizers                      # random data + the trained scene's attributes
    python -m bench.quantizers --ply scene.ply      # a given 3DGS .ply (f_dc, f_rest, scale, rot)
    python -m bench.quantizers --quick              # small sizes, a minute or so

At equal bits per vector, ours against faiss's counterpart:
  k-means (VQ)  ours kmeans (random and k-means++ init) vs faiss.Kmeans, same iterations, all points
                (faiss's max_points_per_centroid raised so that it does not subsample);
  PQ            ProductQuantizer vs faiss.ProductQuantizer (all points, same iterations);
  RVQ           ResidualQuantizer vs faiss.ResidualQuantizer (beam 5 both, same k-means iterations);
  AQ            AdditiveQuantizer vs faiss.LocalSearchQuantizer (each with its default schedule).
MSE is per coordinate, on the training data. For k-means, "fit" includes the final assignment pass
on both sides (ours returns assignments; faiss's train is followed by index.search).

Data: 200k x 48 N(0, 1) samples, plus the SH (45-d), DC colour, scale and rotation of a trained
scene: --ply, else the newest output/**/*.ply, else (no trained scene yet) the colours of fern's
COLMAP points as DC coefficients. PQ / RVQ / AQ use M codebooks of 8 bits on a 50k-row subsample.
Both libraries get the same thread count (--threads, default torch's); on a loaded machine
OpenMP timings with 2+ threads swing by several times, so compare at --threads 1 there.
The full run takes ~10 minutes on 2 cores (longer with a ply: four more attributes).
Writes bench/results/quantizers.json and bench/results/quantizers.md (a table for the README),
including the issue's acceptance checks. faiss is a dependency of this benchmark only.
"""

import argparse
import glob
import os
import platform
import struct
import subprocess
import sys
import time

# As gs_vq itself does on import: passive OpenMP waiting, set before torch and faiss load OpenMP
# (busy waiting stalls every parallel op on a shared CPU), the same for both libraries.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch


from gs_vq.render.projection import SH_C0
from gs_vq.quant import (
    AdditiveQuantizer, ProductQuantizer, ResidualQuantizer, assign, kmeans,
)
from bench.report import write_json, write_text

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


# ---- data ------------------------------------------------------------------------------------
def load_ply_attributes(path):
    """``{"sh": [N, 45], "dc": [N, 3], "scale": [N, 3], "rot": [N, 4]}`` of a standard 3DGS ply."""
    from plyfile import PlyData

    v = PlyData.read(path)["vertex"]
    names = [p.name for p in v.properties]

    def cols(prefix):
        keys = [n for n in names if n.startswith(prefix)]
        keys.sort(key=lambda n: int(n.split("_")[-1]))
        if not keys:
            return None
        return np.stack([np.asarray(v[k], dtype=np.float32) for k in keys], axis=1)

    rot = cols("rot_")
    if rot is not None:
        rot = rot / np.maximum(np.linalg.norm(rot, axis=1, keepdims=True), 1e-12)
    out = {"sh": cols("f_rest_"), "dc": cols("f_dc_"), "scale": cols("scale_"), "rot": rot}
    return {k: np.ascontiguousarray(a) for k, a in out.items() if a is not None and a.shape[1]}


def colmap_point_colours(path):
    """RGB of a COLMAP points3D.bin as SH DC coefficients ``[N, 3]`` (real, if small, data)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        rgb = np.empty((n, 3), np.float32)
        for i in range(n):
            _, _, _, _, r, g, b, _, track = struct.unpack("<QdddBBBdQ", f.read(51))
            f.seek(8 * track, 1)
            rgb[i] = (r, g, b)
    return (rgb / 255.0 - 0.5) / SH_C0


def default_ply():
    """Newest ``*.ply`` under output/ (the training pipeline's), or None."""
    found = glob.glob(os.path.join(ROOT, "output", "**", "*.ply"), recursive=True)
    return max(found, key=os.path.getmtime) if found else None


def datasets(args):
    rng = np.random.default_rng(0)
    out = [("random", rng.standard_normal((args.n, 48)).astype(np.float32), "N(0, 1) samples")]
    ply = args.ply or default_ply()
    if ply:
        for name, arr in load_ply_attributes(ply).items():
            out.append((name, rows(arr, args.n), os.path.relpath(ply, ROOT)))
    else:
        pts = os.path.join(ROOT, "..", "shared", "data", "fern", "sparse", "0", "points3D.bin")
        if os.path.exists(pts):
            out.append(("fern_sparse_dc", colmap_point_colours(pts), "fern points3D.bin colours"))
    return out


# ---- runs ------------------------------------------------------------------------------------
def timed(fn):
    t = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t


def mse(a, b):
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def rows(x, cap, seed=0):
    if cap is None or x.shape[0] <= cap:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(x.shape[0], cap, replace=False))]


def run_kmeans(x, k, iters):
    import faiss

    xt = torch.from_numpy(x)
    out = []
    for init in ("random", "kmeans++"):
        r, fit = timed(lambda: kmeans(xt, k, iters=iters, init=init, seed=1))
        _, enc = timed(lambda: assign(xt, r.centroids))
        out.append(("ours", f"kmeans {init}", r.mse, fit, enc))

    def faiss_fit():
        km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=1, max_points_per_centroid=1 << 30)
        km.train(x)
        return km, km.index.search(x, 1)[1][:, 0]

    (km, idx), fit = timed(faiss_fit)
    _, enc = timed(lambda: km.index.search(x, 1))
    out.append(("faiss", "Kmeans random", mse(x, km.centroids[idx]), fit, enc))
    return out


def run_codec(kind, x, m, iters):
    """PQ / RVQ / AQ with m codebooks of 256 codes (8 bits each), ours then faiss."""
    import faiss

    d, xt = x.shape[1], torch.from_numpy(x)
    ours = {
        "pq": lambda: ProductQuantizer(d, m, 256, iters=iters),
        "rvq": lambda: ResidualQuantizer(d, m, 256, iters=iters, beam_size=5),
        "aq": lambda: AdditiveQuantizer(d, m, 256),
    }[kind]()
    _, fit = timed(lambda: ours.fit(xt))
    codes, enc = timed(lambda: ours.encode(xt))
    result = [("ours", type(ours).__name__, mse(x, ours.decode(codes).numpy()), fit, enc)]

    if kind == "pq":
        theirs = faiss.ProductQuantizer(d, m, 8)
        theirs.cp.niter = iters
    elif kind == "rvq":
        theirs = faiss.ResidualQuantizer(d, m, 8)
        theirs.cp.niter, theirs.max_beam_size = iters, 5
    else:
        theirs = faiss.LocalSearchQuantizer(d, m, 8)
    if kind != "aq":
        theirs.cp.max_points_per_centroid = 1 << 30
    _, fit = timed(lambda: theirs.train(x))
    codes, enc = timed(lambda: theirs.compute_codes(x))
    name = type(theirs).__name__
    result.append(("faiss", name, mse(x, theirs.decode(codes)), fit, enc))
    return result


def sub_books(d):
    """Number of 8-bit codebooks per vector: a divisor of D for PQ (faiss needs D % M == 0)."""
    for m in (4, 5, 3, 6, 2):
        if d % m == 0 and d >= m:
            return m
    return 1


def memory_check(n, k, iters):
    """Peak resident memory (MiB) of a fresh process running our k-means on n x 48 points.

    The kernel's peak-RSS mark is reset (``/proc/self/clear_refs``) once the data exist, so the
    peak is that of k-means itself on top of the data and the interpreter.
    """
    code = (
        "import torch\n"
        "from gs_vq.quant import kmeans\n"
        "def status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key): return int(line.split()[1])\n"
        "x = torch.randn(%d, 48)\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "base = status('VmRSS')\n"
        "kmeans(x, %d, iters=%d)\n"
        "print(base, status('VmHWM'))\n"
    ) % (n, k, iters)
    out, secs = timed(lambda: subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split())
    base, peak = (int(v) / 1024 for v in out)
    return {"n": n, "dim": 48, "k": k, "iters": iters, "peak_rss_mib": round(peak, 1),
            "rss_before_kmeans_mib": round(base, 1), "seconds": round(secs, 1)}


# ---- report ----------------------------------------------------------------------------------
def markdown(records, meta, memory):
    lines = [
        f"Quantizers vs faiss-cpu {meta['faiss']} ({meta['threads']} threads, {meta['cpu']}); "
        "MSE per coordinate on the fitted data, times in seconds.",
        "",
        "Data: " + "; ".join(f"{k} = {v}" for k, v in meta.get("sources", {}).items()) + ". "
        "k-means fit includes the final assignment pass on both sides.",
        "",
        "| data | N x D | method | bits | ours | faiss | MSE ours | MSE faiss | ratio "
        "| fit ours | fit faiss | encode ours | encode faiss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['data']} | {r['n']} x {r['dim']} | {r['method']} | {r['bits']} | {r['ours']} "
            f"| {r['faiss']} | {r['mse_ours']:.5g} | {r['mse_faiss']:.5g} | {r['mse_ratio']:.3f} "
            f"| {r['fit_ours']:.2f} | {r['fit_faiss']:.2f} | {r['enc_ours']:.2f} "
            f"| {r['enc_faiss']:.2f} |"
        )
    if memory:
        lines += ["", f"Peak memory of k-means at {memory['n']} x 48, K={memory['k']}: "
                  f"{memory['peak_rss_mib']:.0f} MiB resident (process total; "
                  f"{memory['rss_before_kmeans_mib']:.0f} MiB before k-means)."]
    return "\n".join(lines) + "\n"


def markdown_checks(checks):
    if not checks:
        return "\n(quick run: sizes below the issue's, no acceptance checks)\n"
    lines = ["", "| check | value | ok |", "|---|---|---|"]
    lines += [f"| {c['check']} | {c['value']} | {'yes' if c['ok'] else 'NO'} |" for c in checks]
    return "\n".join(lines) + "\n"


def criteria(records, memory):
    """The issue's acceptance checks, evaluated on this run's numbers."""
    out = []
    for r in records:
        where = f"{r['data']} {r['n']}x{r['dim']} {r['method']} ({r['ours']})"
        if r["method"] == "k-means":
            if r["data"] != "random":
                continue
            t_ratio = r["fit_ours"] / max(r["fit_faiss"], 1e-9)
            out.append(dict(check=f"{where}: MSE within 1% of faiss",
                            value=round(r["mse_ratio"], 4), ok=r["mse_ratio"] <= 1.01))
            out.append(dict(check=f"{where}: time <= 1.5x faiss", value=round(t_ratio, 3),
                            ok=t_ratio <= 1.5))
        else:
            out.append(dict(check=f"{where}: MSE within 5% of faiss",
                            value=round(r["mse_ratio"], 4), ok=r["mse_ratio"] <= 1.05))
    if memory:
        out.append(dict(check=f"k-means {memory['n']}x48 K={memory['k']}: peak RSS < 2 GiB",
                        value=memory["peak_rss_mib"], ok=memory["peak_rss_mib"] < 2048))
    return out


def pair_records(data_name, n, dim, method, bits, runs):
    """One record per 'ours' run, against the single faiss run of the method."""
    faiss_run = next(r for r in runs if r[0] == "faiss")
    return [
        dict(data=data_name, n=n, dim=dim, method=method, bits=bits, ours=o[1], faiss=faiss_run[1],
             mse_ours=o[2], mse_faiss=faiss_run[2], mse_ratio=o[2] / max(faiss_run[2], 1e-30),
             fit_ours=o[3], fit_faiss=faiss_run[3], enc_ours=o[4], enc_faiss=faiss_run[4])
        for o in runs if o[0] == "ours"
    ]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ply", help="3DGS .ply to take SH / DC / scale / rotation from")
    p.add_argument("--n", type=int, default=200_000,
                   help="random points, and at most this many rows of each ply attribute (k-means)")
    p.add_argument("--k", type=int, default=4096, help="k-means codebook size")
    p.add_argument("--iters", type=int, default=25, help="k-means iterations")
    p.add_argument("--codec-rows", type=int, default=50_000, help="rows for PQ / RVQ / AQ")
    p.add_argument("--methods", default="kmeans,pq,rvq,aq")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--memory-n", type=int, default=1_000_000, help="0 skips the memory check")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "quantizers.json"))
    args = p.parse_args()
    if args.quick:
        args.n, args.k, args.iters, args.codec_rows, args.memory_n = 20_000, 256, 10, 5_000, 0
    import faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    methods = args.methods.split(",")
    meta = dict(torch=torch.__version__, faiss=faiss.__version__, threads=args.threads,
                cpu=platform.processor() or platform.machine(), argv=sys.argv[1:],
                date=time.strftime("%Y-%m-%d %H:%M:%S"))
    records, sources = [], {}
    for name, x, source in datasets(args):
        sources[name] = source
        n, d = x.shape
        if "kmeans" in methods:
            k = min(args.k, max(2, n // 8))
            recs = pair_records(name, n, d, "k-means", int(np.ceil(np.log2(k))),
                                run_kmeans(x, k, args.iters))
            records += recs
            for r in recs:
                print_row(r)
        xc = rows(x, args.codec_rows)
        m = sub_books(d)
        for kind in ("pq", "rvq", "aq"):
            if kind in methods and xc.shape[0] >= 256 * 4:
                recs = pair_records(name, xc.shape[0], d, kind.upper(), 8 * m,
                                    run_codec(kind, xc, m, args.iters))
                records += recs
                for r in recs:
                    print_row(r)
    memory = memory_check(args.memory_n, args.k, 2) if args.memory_n else None
    if memory:
        print(f"memory: {memory}")
    meta["sources"] = sources
    checks = [] if args.quick else criteria(records, memory)  # quick sizes are below the issue's
    write_json(args.out, dict(meta=meta, results=records, memory=memory, checks=checks), indent=1)
    md = markdown(records, meta, memory) + markdown_checks(checks)
    write_text(os.path.splitext(args.out)[0] + ".md", md)
    print()
    print(md)


def print_row(r):
    print(f"{r['data']:>14} {r['method']:>7} {r['bits']:>3}b {r['ours']:>22} "
          f"mse {r['mse_ours']:.5g} vs {r['mse_faiss']:.5g} ({r['mse_ratio']:.3f})  "
          f"fit {r['fit_ours']:.2f}s vs {r['fit_faiss']:.2f}s  "
          f"enc {r['enc_ours']:.2f}s vs {r['enc_faiss']:.2f}s", flush=True)


if __name__ == "__main__":
    main()
