"""Cost of the trainer's finite-parameter check (gs_vq.health.check_finite) against one training step.

    python -m bench.finite_check            # about a minute on 2 CPU cores

For N Gaussians at SH degree 3 (59 floats each): the median time of check_finite (one float64 sum
per tensor, one sync), of the element-wise ``isfinite().all()`` it avoids, and of one training
step of the CPU rasterizer on a 200x200 view (forward + backward + Adam), and the check's share of
a step when it runs every CHECK_EVERY steps. Prints a table; writes bench/results/finite_check.json.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as gs_vq does, before torch loads

import torch  # noqa: E402

from bench.report import ROOT, markdown, write_json  # noqa: E402
from gs_vq.health import CHECK_EVERY, check_finite  # noqa: E402
from gs_vq.splats import make_optimizers, make_param_dict, render_splats  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def random_splats(n: int, g: torch.Generator):
    return {"means": torch.randn(n, 3, generator=g) * 0.5, "scales": torch.full((n, 3), -4.0),
            "quats": torch.randn(n, 4, generator=g), "opacities": torch.zeros(n),
            "sh0": torch.rand(n, 1, 3, generator=g), "shN": torch.zeros(n, 15, 3)}


def train_step_ms(splats, repeats: int) -> float:
    params = make_param_dict(splats, "cpu")
    opts = make_optimizers(params, {k: 1e-3 for k in params})
    viewmat = torch.eye(4)[None]
    viewmat[0, 2, 3] = 3.0
    K = torch.tensor([[[200.0, 0, 100], [0, 200.0, 100], [0, 0, 1]]])
    gt = torch.rand(1, 200, 200, 3)

    def step():
        out = render_splats(dict(params.items()), viewmat, K, 200, 200, 3, None)
        (out.rgb - gt).abs().mean().backward()
        for o in opts.values():
            o.step()
            o.zero_grad(set_to_none=True)

    return median_ms(step, repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[50_000, 300_000])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "finite_check.json"))
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    rows, records = [], []
    for n in args.sizes:
        splats = random_splats(n, g)
        check = median_ms(lambda: check_finite(splats, 0), args.repeats)
        naive = median_ms(lambda: all(bool(torch.isfinite(t).all()) for t in splats.values()), args.repeats)
        step = train_step_ms(splats, max(3, args.repeats // 3))
        share = 100.0 * check / CHECK_EVERY / step
        records.append({"gaussians": n, "check_ms": round(check, 2), "isfinite_all_ms": round(naive, 2),
                        "train_step_ms": round(step, 1), "check_every": CHECK_EVERY, "share_percent": round(share, 3),
                        "threads": torch.get_num_threads()})
        rows.append([f"{n:,}", f"{check:.2f}", f"{naive:.2f}", f"{step:.0f}", CHECK_EVERY, f"{share:.2f}%"])
    head = ["Gaussians", "check_finite ms", "isfinite().all() ms", "train step ms", "every", "share of training"]
    print(markdown(head, rows))
    write_json(args.out, records)


if __name__ == "__main__":
    main()
