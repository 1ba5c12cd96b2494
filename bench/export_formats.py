"""Size and quality of each export format (``python -m gs_vq.export``) next to gs-vq's compressed.ply.

    python -m bench.export_formats -m output/lego_vq          # a --vq model of a scene with test views

For each source (``MODEL/point_cloud.ply`` and, when present, gs-vq's ``MODEL/compressed.ply``),
writes the four export formats to a temporary folder, reads each back with gs-vq's readers
(:func:`gs_vq.io.load_splats`) and renders the decoded Gaussians on the scene's test views (the
model's ``cfg.yaml``: scene, resolution, background), as ``render.py`` does. The rows with format
``(source)`` render the source file itself. Results go to bench/results/export_formats.json.
"""

import argparse
import os
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench.report import markdown, markdown_row, write_json


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-m", "--model_path", required=True)
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "export_formats.json"))
    args = p.parse_args(argv)

    import torch

    from gs_vq.evaluate import evaluate
    from gs_vq.export import FORMATS, export_file
    from gs_vq.io import load_splats
    from gs_vq.model_dir import load_model_scene
    from gs_vq.data import background_of

    scene = load_model_scene(args.model_path)
    cameras = scene.test_cameras if args.split == "test" else scene.train_cameras
    sources = [os.path.join(args.model_path, n) for n in ("point_cloud.ply", "compressed.ply")]
    sources = [s for s in sources if os.path.isfile(s)]
    head = ["source", "format", "file", "size (kB)", "bits / Gaussian", "Gaussians read back",
            f"{args.split} PSNR", f"{args.split} SSIM", "export s"]
    print(markdown(head))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            splats = load_splats(source)
            n_source = int(splats["means"].shape[0])
            stem = "vq" if os.path.basename(source) == "compressed.ply" else "point_cloud"
            for fmt in ["(source)"] + list(FORMATS):
                t = time.perf_counter()
                if fmt == "(source)":
                    path = source
                else:
                    path = os.path.join(tmp, stem + FORMATS[fmt])
                    export_file(splats, fmt, path)
                seconds = time.perf_counter() - t if fmt != "(source)" else None
                back = load_splats(path)
                with torch.no_grad():
                    scores = evaluate(back, cameras, background_of(scene), "cpu", progress=False)
                size = os.path.getsize(path)
                n = int(back["means"].shape[0])
                row = {"source": os.path.basename(source), "format": fmt, "file": os.path.basename(path),
                       "bytes": size, "bits_per_gaussian": 8.0 * size / n_source, "gaussians": n,
                       "source_gaussians": n_source, "psnr": scores["psnr"], "ssim": scores["ssim"],
                       "export_seconds": seconds}
                rows.append(row)
                print(markdown_row([row["source"], fmt, row["file"], f"{size / 1e3:.1f}",
                                    f"{row['bits_per_gaussian']:.1f}", f"{n:,}", f"{scores['psnr']:.2f}",
                                    f"{scores['ssim']:.4f}", "-" if seconds is None else f"{seconds:.1f}"]),
                      flush=True)
    write_json(args.out, {"model": os.path.abspath(args.model_path), "split": args.split,
                          "num_views": len(cameras), "rows": rows})


if __name__ == "__main__":
    main()
