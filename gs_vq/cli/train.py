"""``python train.py``: Inria-style flags over :class:`gs_vq.config.TrainConfig` presets."""

import argparse
import json
import os

import torch

from . import OneLineParser, guarded, quiet_libraries
from .dotted import dotted_overrides
from ..config import make_config, merge, read_preset
from ..data import LENS_MODES, load_scene
from ..errors import GsVqError
from ..files import existing_file, existing_folder
from ..io.inria import remove_stale_layout, write_layout
from ..model_dir import open_model_dir, remove_stale_outputs, stale_render_folders
from ..vq.levels import DEFAULT_LEVEL, level_names


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description="Train a 3D Gaussian Splatting scene (optionally quantized / semantic).",
                      epilog="Every field of the config is also a flag, --SECTION.FIELD VALUE (the value read as "
                      "YAML): e.g. --vq.prune_fraction 0.5, --strategy.cap_max 1000000, "
                      "--vq.attributes.sh0.codebook_size 2048. cfg.yaml lists them all.")
    p.add_argument("-s", "--source_path", help="COLMAP or NeRF-synthetic folder (default: the built-in demo scene)")
    p.add_argument("-m", "--model_path", help="output folder (default: output/<scene>)")
    p.add_argument("--config", help="training preset: a name in gs_vq/configs/ (cpu, gpu, mcmc, semantic, ...) "
                   "or a YAML file (default: gpu on CUDA, cpu otherwise)")
    p.add_argument("--iterations", type=int)
    p.add_argument("--eval", action="store_const", const=True, help="hold out test views")
    p.add_argument("-i", "--images", help="image folder inside the scene folder (default: images)")
    p.add_argument("--lens", choices=list(LENS_MODES),
                   help="distorted COLMAP cameras (SIMPLE_RADIAL, OPENCV, ...): undistort the images at load "
                   "(default, gsplat's way), or keep them raw and render through the lens (CPU backends; "
                   "no resampling, the whole frame)")
    p.add_argument("-r", "--resolution", type=int,
                   help="downscale images by 1, 2, 4 or 8 (images_N/ when the scene has it), or a target width in "
                   "pixels; default -1: images wider than 1600 pixels are brought to 1600")
    p.add_argument("--white_background", action="store_const", const=True)
    p.add_argument("--sh_degree", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--backend", choices=["auto", "gsplat", "cpp", "torch"], help="rasterizer backend")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_const", const=True, help="continue from MODEL/ckpt.pt")
    p.add_argument("--start_checkpoint", help="start from a finished model's ckpt.pt or .ply")
    p.add_argument("--vq", nargs="?", const=DEFAULT_LEVEL, metavar="LEVEL",
                   help="quantization-aware training and MODEL/compressed.ply at a compression level: "
                   f"{', '.join(level_names())} (no LEVEL: {DEFAULT_LEVEL}; compact3d: Compact3D's own recipe); "
                   "composes with any --config")
    p.add_argument("--semantic", action="store_true", help="train per-Gaussian semantic features")
    p.add_argument("--features", help="folder of 2D feature maps for --semantic (default: beside the scene)")
    p.add_argument("--test_iterations", nargs="+", type=int, default=[], metavar="N",
                   help="after these steps, print L1 and PSNR on the test views (and log them to MODEL/tb)")
    p.add_argument("--save_iterations", nargs="+", type=int, default=[], metavar="N",
                   help="after these steps, save MODEL/point_cloud/iteration_N/point_cloud.ply "
                   "(the final step is always saved)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


STEP_FLAGS = ("test_iterations", "save_iterations")  # CLI-only: not fields of TrainConfig


def check_step_flags(args) -> None:
    for name in STEP_FLAGS:
        bad = [n for n in getattr(args, name) if n < 1]
        if bad:
            raise GsVqError(f"--{name} takes positive step counts, got {bad[0]}")


def parse_config(argv=None):
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        nested = dotted_overrides(rest)  # --vq.prune_fraction 0.5, --strategy.cap_max 1000000, ...
    except GsVqError as e:
        parser.error(str(e))
    check_step_flags(args)
    args.preset_note = None
    if not args.config:  # the device decides: gsplat's recipe on CUDA, the CPU preset otherwise
        from ..presets import default_preset
        from ..render import resolve_device

        args.config, reason = default_preset(resolve_device(args.device or "auto"))
        args.preset_note = f"[gs-vq] preset '{args.config}': {reason}"
    elif args.device != "cpu" and not os.path.exists(args.config):  # a named preset: its GPU form on CUDA
        from ..presets import device_form
        from ..render import resolve_device

        args.config, args.preset_note = device_form(args.config, resolve_device(args.device or "auto"))
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("config", "vq", "semantic", "features", "quiet", "preset_note", *STEP_FLAGS)}
    preset = read_preset(args.config) if args.config else {}
    if args.vq:  # the level, under the keys of the preset's own vq: section if it has one
        overrides["vq"] = {"level": args.vq}
    if args.semantic and preset.get("semantic") is None:
        overrides["semantic"] = {}
    if args.features:
        overrides["semantic"] = {**(overrides.get("semantic") or preset.get("semantic") or {}), "features_dir": args.features}
    return make_config(args.config, merge(overrides, nested)), args


def record_source_path(cfg) -> None:
    """Store the scene folder absolute (render.py may run elsewhere) and relative to the model
    folder (found again when both folders move together)."""
    if cfg.source_path is not None:
        cfg.source_path = os.path.abspath(os.path.expanduser(cfg.source_path))
        cfg.source_path_rel = os.path.relpath(cfg.source_path, os.path.abspath(cfg.model_path))


def report_stale(model_path: str, removed) -> None:
    if removed:
        print(f"[gs-vq] removed outputs of an earlier run in {model_path}: {', '.join(removed)}")
    folders = stale_render_folders(model_path)
    if folders:
        print(f"[gs-vq] note: {', '.join(f + '/' for f in folders)} in {model_path} hold renders of an earlier "
              "model until render.py runs again")


def check_input_paths(cfg) -> None:
    """One line for a path of the wrong kind among the inputs, before anything is written."""
    if cfg.source_path is not None:
        existing_folder(cfg.source_path, "source folder")
    if cfg.start_checkpoint:
        existing_file(cfg.start_checkpoint, "--start_checkpoint")
    features = getattr(cfg.semantic, "features_dir", None)
    if features and os.path.isfile(features):
        raise GsVqError(f"--features {features} is a file, not a folder")


def default_model_path(source_path) -> str:
    name = os.path.basename(os.path.normpath(source_path)) if source_path else "demo"
    return os.path.join("output", name)


@guarded
def main(argv=None) -> None:
    cfg, args = parse_config(argv)
    if args.quiet:
        quiet_libraries()
    from ..trainer import Trainer

    if args.preset_note:
        print(args.preset_note)

    model_path = cfg.model_path or default_model_path(cfg.source_path)
    cfg.model_path = model_path
    check_input_paths(cfg)  # before the model folder is made
    open_model_dir(model_path)  # a writable folder, locked for this run, no leftover temp files
    record_source_path(cfg)
    scene = load_scene(cfg.source_path, **cfg.scene_options())
    trainer = Trainer(cfg, scene, model_path)
    removed = remove_stale_outputs(model_path, cfg, cfg.resume, keep=[cfg.start_checkpoint])
    report_stale(model_path, removed + ([] if cfg.resume else remove_stale_layout(model_path)))
    print(f"[gs-vq] scene {scene.source_path} ({scene.kind}): {len(scene.train_cameras)} train / "
          f"{len(scene.test_cameras)} test views, {trainer.device} (training images: {trainer.images_at}), "
          f"{len(trainer.splats['means'])} initial Gaussians")
    from ..train_outputs import StepOutputs, StepOutputsConfig

    outputs = StepOutputs(StepOutputsConfig(args.save_iterations, args.test_iterations), trainer)
    trainer.train(progress=not args.quiet, on_step=outputs)
    sizes = trainer.export()
    write_layout(cfg, scene.train_cameras, model_path, trainer.step)  # Inria's files beside ours
    outputs.close(trainer.step, sizes)
    summary = {"model_path": model_path, "num_gaussians": len(trainer.splats["means"]),
               "train_seconds": round(trainer.train_seconds, 1), **sizes}
    if scene.test_cameras:
        from ..evaluate import evaluate

        with torch.no_grad():
            scores = evaluate(trainer.splats_to_render(), scene.test_cameras, trainer.background,
                              trainer.device, backend=cfg.backend, progress=False)
        summary["test_psnr"] = round(scores["psnr"], 3)
    print("[gs-vq] " + json.dumps(summary))


if __name__ == "__main__":
    main()
