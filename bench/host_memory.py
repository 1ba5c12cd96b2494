"""Host memory of the training images at 1.6K: gs-vq's uint8 storage against float32.

    python -m bench.host_memory                    # 16 views of 1600x1066, scaled to 185 views
    python -m bench.host_memory --views 32 --width 1600 --height 1066

Writes a NeRF-synthetic scene of ``--views`` RGB images (smooth random colour fields, PNG) to a
temporary folder and loads it through ``gs_vq.data.load_scene`` at ``-r 1`` in a fresh process,
once as gs-vq stores it (uint8 pixels) and once with every image converted to float32 [0, 1] (what
the loader kept before), holding all views. It reports the tensor bytes per view and the growth
of the process's resident memory over the loading (views held, the loader's copies freed), per view and scaled to a Mip-NeRF 360
scene of 185 views. Results go to bench/results/host_memory.json.
"""

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile

import numpy as np

from bench.report import ROOT, markdown, markdown_row, write_json

MODES = ("uint8", "float32")


def write_scene(root: str, views: int, width: int, height: int) -> None:
    """``views`` images on a circle of cameras, as a transforms_train.json scene."""
    from PIL import Image

    os.makedirs(os.path.join(root, "train"), exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(views):
        phase = rng.uniform(0, 2 * math.pi, 3)
        img = np.stack([127 + 120 * np.sin(xx / (40 + 7 * c) + yy / (55 + 5 * c) + phase[c]) for c in range(3)], -1)
        Image.fromarray(img.astype(np.uint8)).save(os.path.join(root, "train", f"r_{i}.png"))
        a = 2 * math.pi * i / views
        c2w = [[math.cos(a), 0, math.sin(a), 4 * math.sin(a)], [0, 1, 0, 0],
               [-math.sin(a), 0, math.cos(a), 4 * math.cos(a)], [0, 0, 0, 1]]
        frames.append({"file_path": f"train/r_{i}", "transform_matrix": c2w})
    with open(os.path.join(root, "transforms_train.json"), "w") as f:
        json.dump({"camera_angle_x": 0.8, "frames": frames}, f)


def rss_bytes() -> int:
    """The process's resident set now (Linux /proc; peak RSS where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(root: str, mode: str) -> dict:
    """Load the scene (in this process) and hold its images as ``mode``; sizes in bytes."""
    import torch

    from gs_vq.data import load_scene

    before = rss_bytes()
    scene = load_scene(root, resolution=1, cache_dir=os.path.join(root, "cache"))
    held = [c.pixels if mode == "uint8" else c.image for c in scene.train_cameras]  # float32 [H, W, 3]
    for c in scene.train_cameras:
        c.image = None  # only what `held` holds stays
    gc.collect()
    after = rss_bytes()
    cam = scene.train_cameras[0]
    return {"mode": mode, "views": len(held), "width": cam.width, "height": cam.height,
            "dtype": str(held[0].dtype).replace("torch.", ""),
            "tensor_bytes_per_view": int(sum(t.numel() * t.element_size() for t in held) / len(held)),
            "rss_growth_bytes": int(after - before), "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--views", type=int, default=16)
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=1066)
    p.add_argument("--scale_to", type=int, default=185, help="views of the scene to extrapolate to")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "host_memory.json"))
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_scene(tmp, args.views, args.width, args.height)
        for mode in MODES:  # each in a fresh process: its peak RSS is its own
            out = subprocess.run([sys.executable, "-m", "bench.host_memory", "--child", tmp, mode], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(markdown(["images held as", "view", "tensor MB / view", "resident MB / view",
                    f"{args.scale_to} views, GB (tensors)"]))
    for r in rows:
        per_view = r["tensor_bytes_per_view"]
        print(markdown_row([r["dtype"], f"{r['width']}x{r['height']}", f"{per_view / 1e6:.2f}",
                        f"{r['rss_growth_bytes'] / r['views'] / 1e6:.2f}", f"{per_view * args.scale_to / 1e9:.2f}"]))
    ratio = rows[1]["tensor_bytes_per_view"] / rows[0]["tensor_bytes_per_view"]
    print(f"float32 holds {ratio:.1f}x the bytes of uint8 ({args.views} views loaded, scaled to {args.scale_to})")
    write_json(args.out, {"views": args.views, "scale_to": args.scale_to, "rows": rows})


if __name__ == "__main__":
    main()
