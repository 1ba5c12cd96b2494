"""``python render.py -m MODEL``: render a split, score it, write ``MODEL/results.json``."""

import argparse
import json
import os

from . import OneLineParser, guarded, quiet_libraries
from .semantic_render import add_render_args, run_selection, run_semantic_render, wants_selection, wants_semantics
from ..camera_path import TRAJ_KINDS, PathConfig
from ..errors import GsVqError
from ..files import atomic_path, existing_file, existing_folder, output_file, read_json
from ..evaluate import evaluate
from ..io import load_splats
from ..io.inria import clear_renders, render_dir
from ..metrics import LPIPS_NETS
from ..model_dir import load_model_scene, model_config, open_model_dir
from ..data import background_of
from ..render import resolve_device
from ..video import VideoConfig, check_video_path, render_video


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description="Render and evaluate a trained gs-vq model.")
    p.add_argument("-m", "--model_path", required=True, help="model folder written by train.py")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--ply", help="render this file instead of MODEL/point_cloud.ply: a standard 3DGS ply, gs-vq's own "
                                 "compressed.ply (a format only gs-vq reads), or a viewer export (.splat, .spz, "
                                 "SuperSplat .compressed.ply)")
    p.add_argument("-s", "--source_path", help="override the scene folder recorded in MODEL/cfg.yaml")
    p.add_argument("-r", "--resolution", type=int, choices=[1, 2, 4, 8],
                   help="image downscale factor (default: the one the model was trained at)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--backend", choices=["auto", "gsplat", "cpp", "torch"], default="auto")
    p.add_argument("--lpips_net", choices=list(LPIPS_NETS), default="vgg",
                   help="LPIPS backbone: vgg (Inria's metrics.py, the default) or alex (gsplat's simple_trainer)")
    p.add_argument("--traj", choices=list(TRAJ_KINDS),
                   help="instead of scoring a split, render a camera path through the training cameras to an mp4")
    p.add_argument("--traj_frames", type=int, default=120,
                   help="frames of the --traj video (interp: the multiple of (training cameras - 1) nearest to it)")
    p.add_argument("--fps", type=int, default=30, help="frames per second of the --traj video")
    p.add_argument("--video", help="the --traj video's path (default: MODEL/videos/traj_<kind>.mp4)")
    p.add_argument("--quiet", action="store_true")
    add_render_args(p)  # --query, --semantic, --eval-queries, --mask-rule, --threshold, --extract, --remove
    return p


def read_json_or_empty(path: str) -> dict:
    """A model's JSON side file (train_stats.json, results.json); {} when there is none."""
    return read_json(path) if os.path.isfile(path) else {}


def check_paths(args) -> None:
    """One line for a path option of the wrong kind (a folder for a file, a file for a folder)."""
    if args.source_path:
        existing_folder(args.source_path, "-s/--source_path")
    if args.ply:
        existing_file(args.ply, "--ply")
    if getattr(args, "eval_queries", None):
        existing_file(args.eval_queries, "--eval-queries")
    for flag in ("extract", "remove"):
        if getattr(args, flag, None):
            output_file(getattr(args, flag), f"--{flag}")


@guarded
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.quiet:
        quiet_libraries()
    model = args.model_path
    cfg = model_config(model)
    check_paths(args)  # before minutes of loading and rendering
    device = resolve_device(args.device)
    if args.traj:
        video = args.video or os.path.join(model, "videos", f"traj_{args.traj}.mp4")
        check_video_path(video)  # before minutes of loading
        if args.traj_frames < 1 or args.fps < 1:
            raise GsVqError("--traj_frames and --fps must be at least 1")
    open_model_dir(model)  # no train.py or render.py writing here at the same time
    scene = load_model_scene(model, cfg, source_path=args.source_path, resolution=args.resolution)
    ply_path = args.ply or os.path.join(model, "point_cloud.ply")
    if wants_selection(args):  # --extract / --remove: write plys, render nothing
        splats = load_splats(ply_path, device=device)
        print(json.dumps(run_selection(args, model, splats, scene.train_cameras, device, args.backend)))
        return
    if args.traj:  # the video only: no scores, results.json untouched
        cfg_video = VideoConfig(PathConfig(args.traj, n_frames=args.traj_frames), fps=args.fps)
        info = render_video(load_splats(ply_path, device=device), scene.train_cameras, video, cfg_video,
                            background_of(scene), device, args.backend, progress=not args.quiet)
        print(json.dumps(info))
        return
    cameras = scene.test_cameras if args.split == "test" else scene.train_cameras
    if not cameras:
        raise GsVqError(f"the scene has no {args.split} views (train with --eval to hold some out)")
    splats = load_splats(ply_path, device=device)
    stats = read_json_or_empty(os.path.join(model, "train_stats.json"))
    clear_renders(model, args.split)  # an earlier render's folders: one method for Inria's metrics.py
    out_dir = render_dir(model, args.split, stats.get("iterations"))  # Inria's <split>/ours_<N>/
    scores = evaluate(splats, cameras, background_of(scene), device, out_dir=out_dir,
                      backend=args.backend, progress=not args.quiet, lpips_net=args.lpips_net)
    semantic = {}
    if wants_semantics(args):
        semantic = run_semantic_render(args, model, out_dir, splats, cameras, scene.source_path,
                                       background_of(scene), device, args.backend, progress=not args.quiet,
                                       train_cameras=scene.train_cameras)
    standard_ply = os.path.join(model, "point_cloud.ply")
    results = {
        **{k: (round(v, 4) if v is not None else None) for k, v in scores.items()},
        "lpips_net": args.lpips_net,
        "num_gaussians": int(splats["means"].shape[0]),
        "ply_bytes": os.path.getsize(standard_ply) if os.path.isfile(standard_ply) else None,
        "rendered_ply": os.path.abspath(ply_path),
        "rendered_ply_bytes": os.path.getsize(ply_path),
        "iterations": stats.get("iterations"),
        "train_seconds": stats.get("train_seconds"),
        "split": args.split,
        "num_views": len(cameras),
        "resolution": args.resolution or cfg.resolution,
        **semantic,
    }
    compressed = os.path.join(model, "compressed.ply")
    if os.path.isfile(compressed) and results["ply_bytes"]:
        from ..io.compressed import describe_compressed

        info = describe_compressed(compressed)
        results.update(compressed_bytes=info["bytes"],
                       compression_ratio=round(results["ply_bytes"] / info["bytes"], 3),
                       bits_per_gaussian=info["bits_per_gaussian"])
    results_path = os.path.join(model, "results.json")
    with atomic_path(results_path) as tmp, open(tmp, "w") as f:
        json.dump(results, f, indent=2)  # fresh: nothing of an earlier render of another ply
    print(json.dumps(results))


if __name__ == "__main__":
    main()
