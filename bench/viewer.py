"""Frame rate of the browser viewer's render function (``gs_vq.viewer.ViewRenderer.render``).

    python -m bench.viewer                          # 50k random Gaussians, 2 threads
    python -m bench.viewer --ply MODEL/point_cloud.ply --threads 1,2
    python -m bench.viewer -m MODEL                  # a model folder (its first training view)

Times what the viewer does for one frame: project, composite (gsplat on CUDA, the C++ or torch
CPU rasterizer otherwise) and convert to uint8, at the sizes the viewer renders: the low
resolutions nerfview picks while the camera moves (it aims at 30 frames per second from the last
frames' rays per second, at least 30 pixels high) and ``view.py``'s default resting size on CPU
(384 on the long side), plus larger ones. Aspect 4:3. Median of ``--repeats`` runs after one
warm-up; *cpu ms* is the process CPU time of a frame (all threads), which a busy machine
inflates less than the wall time. A semantic model is also timed in its "semantic PCA" mode (features rendered with RGB,
then decoded). The scene without ``-m``/``--ply`` is ``gs_vq.render.synthetic.random_scene``:
Gaussians filling the view at depths 2 to 6, footprints 0.3 to 2 px at 200 px (larger at the
bigger sizes). Results go to bench/results/viewer.json.
"""

import argparse
import math
import os
import platform
import statistics
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench.report import markdown, markdown_row, write_json

SIZES = [(64, 48), (128, 96), (256, 192), (384, 288), (512, 384), (768, 576)]


def random_model(n: int, device: str):
    """A :class:`ViewerModel` of ``n`` random Gaussians and the pose of the scene's camera."""
    import numpy as np
    import torch

    from gs_vq.render.synthetic import random_scene
    from gs_vq.viewer.model import ViewerModel

    s = random_scene(n, width=200, height=200, sh_degree=3, seed=0)
    splats = {"means": s["means"], "scales": torch.log(s["scales"]), "quats": s["quats"],
              "opacities": torch.logit(s["opacities"]), "sh0": s["colors"][:, :1].contiguous(),
              "shN": s["colors"][:, 1:].contiguous()}
    splats = {k: v.to(device) for k, v in splats.items()}
    facts = {"file": f"random_scene({n})", "gaussians": n}
    c2w = torch.linalg.inv(s["viewmats"][0].double()).numpy()
    fov_y = 2 * math.atan(100.0 / float(s["Ks"][0, 1, 1]))
    return ViewerModel(splats, device, facts), c2w, fov_y, np.array([0.0, -1.0, 0.0])


def file_model(model_path, ply, device):
    from gs_vq.viewer.app import look_at_c2w, start_pose
    from gs_vq.viewer.model import load_viewer_model

    m = load_viewer_model(model_path, ply, device)
    pos, look_at, up, fov = start_pose(m)
    return m, look_at_c2w(pos, look_at, up), fov, up


def time_frames(renderer, c2w, fov, w, h, opts, repeats: int):
    """Median ``(wall seconds, process CPU seconds)`` of one frame."""
    renderer.render(c2w, fov, w, h, opts)  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        renderer.render(c2w, fov, w, h, opts)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), statistics.median(cpu)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-m", "--model_path")
    p.add_argument("--ply")
    p.add_argument("-n", "--num", type=int, default=50_000, help="random Gaussians without -m/--ply")
    p.add_argument("--threads", default="2", help="comma-separated torch/OpenMP thread counts")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="auto")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "viewer.json"))
    args = p.parse_args(argv)

    import torch

    from gs_vq.render import resolve_backend
    from gs_vq.viewer.render import ViewOptions, ViewRenderer

    if args.model_path or args.ply:
        model, c2w, fov, _ = file_model(args.model_path, args.ply, args.device)
    else:
        model, c2w, fov, _ = random_model(args.num, args.device)
    backend = resolve_backend(args.backend, args.device == "cuda")
    renderer = ViewRenderer(model)
    modes = ["rgb"] + (["pca"] if model.semantic else [])
    head = ["scene", "Gaussians", "backend", "threads", "mode", "image", "ms / frame", "frames / s", "cpu ms / frame"]
    print(markdown(head))
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for mode in modes:
            for w, h in SIZES:
                opts = ViewOptions(mode=mode, backend=args.backend)
                sec, cpu = time_frames(renderer, c2w, fov, w, h, opts, args.repeats)
                row = {"scene": model.facts["file"], "gaussians": model.num_gaussians, "backend": backend,
                       "threads": threads, "mode": mode, "width": w, "height": h, "seconds": sec,
                       "cpu_seconds": cpu, "load_average": os.getloadavg()[0]}
                rows.append(row)
                print(markdown_row([row["scene"], f"{row['gaussians']:,}", backend, threads, mode, f"{w}x{h}",
                                    f"{1000 * sec:.1f}", f"{1 / sec:.1f}", f"{1000 * cpu:.1f}"]), flush=True)
    write_json(args.out, {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                      "torch": torch.__version__}, "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
