"""Nearest-code search (the VQ plugin's refresh): gs_vq.quant.assign against faiss's flat index.

    python -m bench.nearest                 # a minute or so, 1 thread
    python -m bench.nearest --threads 2

For each shape (points N, codes K, dims D, the sizes of a small scene's attributes), the
median of --repeats runs of: ours with the compiled kernel (D <= 16), ours by matrix products
(the kernel disabled), and faiss.IndexFlatL2.search(k=1) (index built outside the timing), all
on the same float32 data. "agree" is the share of points given the same code as faiss (float
near-ties may differ). Prints a table; writes bench/results/nearest.json.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as gs_vq does, before torch / faiss load

import faiss
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench.report import markdown, markdown_row, write_json
from gs_vq.quant import assign, ext

SHAPES = [  # (N, K, D): DC colour / scales, rotations, semantic features, wider vectors, shN
    (50_000, 4096, 3), (50_000, 4096, 4), (50_000, 256, 8), (50_000, 256, 16),
    (200_000, 4096, 3), (50_000, 512, 45),
]


def median_time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def matrix_products(x, codes):
    with ext.KERNEL.disabled("disabled for the benchmark"):
        return assign(x, codes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "nearest.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    kernel = ext.load() is not None
    print(f"threads {args.threads}, kernel {'built' if kernel else 'unavailable: ' + str(ext.KERNEL.failed)}, "
          f"torch {torch.__version__}, faiss {faiss.__version__}")
    print(markdown(["N", "K", "D", "kernel ms", "matrix products ms", "faiss flat ms", "ours / faiss (time)",
                    "agree"]))
    rows = []
    for n, k, d in SHAPES:
        g = torch.Generator().manual_seed(n + k + d)
        x, codes = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
        index = faiss.IndexFlatL2(d)
        index.add(codes.numpy())
        ref, t_faiss = median_time(lambda: index.search(x.numpy(), 1)[1][:, 0], args.repeats)
        mine, t_mm = median_time(lambda: matrix_products(x, codes), args.repeats)
        t_kernel = None
        if kernel and d <= ext.MAX_DIM:
            mine, t_kernel = median_time(lambda: assign(x, codes), args.repeats)
        agree = float((mine.numpy() == ref).mean())
        row = {"n": n, "k": k, "d": d, "kernel_s": t_kernel, "matrix_products_s": t_mm, "faiss_s": t_faiss,
               "agree": round(agree, 5)}
        rows.append(row)
        best = t_kernel if t_kernel is not None else t_mm
        kernel_ms = f"{1e3 * t_kernel:.1f}" if t_kernel is not None else "-"
        print(markdown_row([n, k, d, kernel_ms, f"{1e3 * t_mm:.1f}", f"{1e3 * t_faiss:.1f}",
                            f"{best / t_faiss:.2f}x", f"{agree:.4f}"]), flush=True)
    write_json(args.out, {"threads": args.threads, "kernel": kernel, "rows": rows})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
