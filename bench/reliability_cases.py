"""Hostile-user cases through the real CLIs: what each gives (exit code, first error line, checks).

    python -m bench.reliability_cases                        # this checkout, ~10 minutes on 2 cores
    python -m bench.reliability_cases --old /path/to/old     # also an older checkout, side by side

Each case builds its input in a scratch folder (a 32x32 demo scene, a copy of ../shared/data/fern
with its images linked, broken YAML / checkpoint / ply files), runs ``train.py`` or ``render.py``
(2 iterations, ``GS_VQ_NO_EXT=1``, a time limit), and reports the exit status, the last
stderr line and, where the case is about a silent result, what it checked (e.g. "code ran").
Prints a Markdown table; writes bench/results/reliability_cases.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.report import markdown, write_json

ROOT = Path(__file__).resolve().parents[1]
FERN = ROOT.parent / "shared" / "data" / "fern"

TINY = ["--quiet", "--config", "TINY"]
TINY_YAML = ("iterations: 2\nmax_init_points: 300\ninit_num_points: 300\nsh_degree: 1\nsh_degree_interval: 1\n"
             "checkpoint_every: 0\nstrategy: {refine_start_iter: 100, refine_stop_iter: 100}\n")


class Env:
    """A scratch folder with the shared inputs of the cases."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True)
        (root / "tiny.yaml").write_text(TINY_YAML)
        self.demo = root / "demo"
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from gs_vq.data import generate_demo_scene; "
                f"generate_demo_scene(__import__('pathlib').Path({str(self.demo)!r}), n_train=4, n_test=2, size=32)")
        subprocess.run([sys.executable, "-c", code], check=True)

    def yaml(self, name: str, text: str) -> str:
        path = self.root / name
        path.write_text(f"base: {self.root / 'tiny.yaml'}\n{text}\n")
        return str(path)

    def demo_with(self, name: str, **meta) -> str:
        """A copy of the demo scene whose transforms files get ``meta`` merged in."""
        dst = self.root / name
        shutil.copytree(self.demo, dst)
        for split in ("train", "test"):
            p = dst / f"transforms_{split}.json"
            p.write_text(json.dumps({**json.loads(p.read_text()), **meta}))
        return str(dst)

    def fern(self, name: str, cut_file=None, cut=0, images=None) -> str:
        dst = self.root / name
        (dst / "sparse" / "0").mkdir(parents=True)
        for f in (FERN / "sparse" / "0").iterdir():
            shutil.copy(f, dst / "sparse" / "0" / f.name)
            os.chmod(dst / "sparse" / "0" / f.name, 0o644)
        if cut_file:
            p = dst / "sparse" / "0" / cut_file
            data = p.read_bytes()
            p.write_bytes(data[:cut] if cut >= 0 else data[: len(data) + cut])
        if images is None:
            (dst / "images").symlink_to(FERN / "images")
        else:
            images(dst / "images")
        return str(dst)


def square_images(folder: Path) -> None:
    from PIL import Image

    folder.mkdir()
    for f in sorted((FERN / "images").iterdir()):
        Image.open(f).resize((504, 504)).save(folder / f.name)


def crafted_checkpoint(path: Path, marker: Path) -> None:
    code = (f"import os, torch\nclass E:\n    def __reduce__(self): return (os.mkdir, ({str(marker)!r},))\n"
            f"torch.save({{'splats': E()}}, {str(path)!r})")
    subprocess.run([sys.executable, "-c", code], check=True)


def cases(env: Env):
    """(name, setup() -> (script, args, check() -> str or None))."""
    r, demo = env.root, str(env.demo)

    def train(*args):
        return "train.py", ["-s", demo, *args]

    def yaml_case(text):
        return lambda: (*train("-m", str(r / "m_yaml"), *TINY[:-1], env.yaml("c.yaml", text)), None)

    yield "YAML iterations: \"abc\"", yaml_case('iterations: "abc"')
    yield "YAML strategy: 5", yaml_case("strategy: 5")
    yield "YAML sh_degree: -1", yaml_case("sh_degree: -1")
    yield "YAML sh_degree_interval: 0", yaml_case("sh_degree_interval: 0")
    yield "YAML scales_lr: -0.01", yaml_case("scales_lr: -0.01")
    yield "YAML means_lr: 1000", yaml_case("means_lr: 1000")
    yield "YAML vq codebook_size: 0", yaml_case("vq: {attributes: {sh0: {type: vq, codebook_size: 0}}}")
    def base_loop():
        (r / "loop.yaml").write_text(f"base: {r / 'loop.yaml'}\n")
        return (*train("-m", str(r / "m_loop"), "--config", str(r / "loop.yaml")), None)

    yield "YAML base: loop", base_loop
    yield "-m names an existing file", lambda: (*train("-m", str(r / "tiny.yaml"), *TINY), None)
    yield "-m under a file", lambda: (*train("-m", str(r / "tiny.yaml" / "m"), *TINY), None)

    def garbage_ckpt():
        (r / "m_garbage").mkdir()
        (r / "m_garbage" / "ckpt.pt").write_bytes(os.urandom(4000))
        return (*train("-m", str(r / "m_garbage"), "--resume", *TINY), None)

    yield "--resume with a garbage ckpt.pt", garbage_ckpt

    def truncated_ckpt():
        subprocess.run([sys.executable, "-c", f"import torch; torch.save({{'splats': {{'means': torch.zeros(9, 3)}}, "
                        f"'step': 1}}, {str(r / 'full.pt')!r})"], check=True)
        (r / "m_trunc").mkdir()
        data = (r / "full.pt").read_bytes()
        (r / "m_trunc" / "ckpt.pt").write_bytes(data[: len(data) // 2])
        return (*train("-m", str(r / "m_trunc"), "--resume", *TINY), None)

    yield "--resume with a truncated ckpt.pt", truncated_ckpt

    def crafted():
        marker = r / "code_ran"
        crafted_checkpoint(r / "evil.pt", marker)
        return (*train("-m", str(r / "m_evil"), "--start_checkpoint", str(r / "evil.pt"), *TINY),
                lambda: "code ran" if marker.exists() else "no code ran")

    yield "--start_checkpoint crafted to run code", crafted
    yield "camera_angle_x: 0", lambda: ("train.py", ["-s", env.demo_with("d0", camera_angle_x=0), "-m",
                                                     str(r / "m_a0"), *TINY], None)
    yield "camera_angle_x: \"wide\"", lambda: ("train.py", ["-s", env.demo_with("ds", camera_angle_x="wide"), "-m",
                                                            str(r / "m_as"), *TINY], None)
    yield "camera_angle_x: -0.5", lambda: ("train.py", ["-s", env.demo_with("dn", camera_angle_x=-0.5), "-m",
                                                        str(r / "m_an"), *TINY], None)
    if FERN.is_dir():
        for f, n in (("cameras.bin", 10), ("cameras.bin", 55), ("images.bin", 100), ("images.bin", -1000),
                     ("points3D.bin", 0), ("points3D.bin", -100)):
            yield f"fern {f} cut to {n} bytes" if n >= 0 else f"fern {f} minus its last {-n} bytes", (
                lambda f=f, n=n: ("train.py", ["-s", env.fern(f"f_{f}_{n}", f, n), "-r", "8", "-m",
                                               str(r / f"m_{f}_{n}"), *TINY], None))
        yield "fern images 504x504 (model 504x378)", lambda: (
            "train.py", ["-s", env.fern("f_square", images=square_images), "-r", "8", "-m", str(r / "m_sq"), *TINY],
            None)

    def stale():
        m = r / "m_stale"
        m.mkdir()
        for n in ("compressed.ply", ".tmp-abc.ply", "results.json"):
            (m / n).write_text("old")
        old_mask = os.umask(0o022)
        os.umask(old_mask)

        def check():
            left = sorted(n for n in ("compressed.ply", ".tmp-abc.ply", "results.json") if (m / n).exists())
            mode = oct((m / "point_cloud.ply").stat().st_mode & 0o777) if (m / "point_cloud.ply").exists() else "-"
            return f"left: {', '.join(left) or 'none'}; point_cloud.ply {mode}"
        return (*train("-m", str(m), *TINY), check)

    yield "plain run into a folder with an old compressed.ply, .tmp-* file, results.json", stale

    def rerender():
        m = r / "m_stale"  # trained by the case above
        (m / "results.json").write_text(json.dumps({"miou": 0.9}))
        return ("render.py", ["-m", str(m), "--quiet", "--ply", str(m / "point_cloud.ply")],
                lambda: "miou kept" if "miou" in json.loads((m / "results.json").read_text()) else "fresh results")

    yield "render --ply after a render that wrote miou", rerender

    def relative_source():
        m = r / "m_rel"
        proc = subprocess.run([sys.executable, str(env.checkout / "train.py"), "-s", "demo", "-m", "m_rel",
                               *tiny_args(env)],
                              cwd=r, capture_output=True, text=True, env=run_env())
        assert proc.returncode == 0, proc.stderr[-500:]
        return ("render.py", ["-m", str(m), "--quiet"], None)

    yield "render.py from another folder, trained with a relative -s", relative_source

    def empty_ply():
        names = "x y z f_dc_0 f_dc_1 f_dc_2 opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3".split()
        subprocess.run([sys.executable, "-c", "from plyfile import PlyData, PlyElement; import numpy as np; "
                        f"PlyData([PlyElement.describe(np.zeros(0, dtype=[(n, 'f4') for n in {names!r}]), "
                        f"'vertex')]).write({str(r / 'empty.ply')!r})"], check=True)
        return ("render.py", ["-m", str(r / "m_stale"), "--quiet", "--ply", str(r / "empty.ply")], None)

    yield "render --ply with 0 vertices", empty_ply


def tiny_args(env: Env):
    return [a if a != "TINY" else str(env.root / "tiny.yaml") for a in TINY]


def run_env():
    return {**os.environ, "GS_VQ_NO_EXT": "1", "OMP_NUM_THREADS": "1"}


def run_case(checkout: Path, env: Env, setup, timeout: int):
    script, args, check = setup()
    args = [a if a != "TINY" else str(env.root / "tiny.yaml") for a in args]
    try:
        p = subprocess.run([sys.executable, str(checkout / script), *args], capture_output=True, text=True,
                           cwd=str(env.root.parent), timeout=timeout, env=run_env())
        lines = p.stderr.strip().splitlines()
        last = (lines[-1] if lines else "").replace(str(env.root), "$W")  # $W: the scratch folder
        tb = "Traceback" in p.stderr
        outcome = f"exit {p.returncode}" + (" (traceback)" if tb else "")
        text = last[:160]
    except subprocess.TimeoutExpired:
        outcome, text = f"still running after {timeout} s", ""
    extra = check() if check else None
    return {"outcome": outcome, "message": text, "check": extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", help="an older checkout of gs-vq to run the same cases on")
    p.add_argument("--timeout", type=int, default=120)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "reliability_cases.json"))
    args = p.parse_args()
    checkouts = {"now": ROOT, **({"old": Path(args.old)} if args.old else {})}
    records = []
    for label, checkout in checkouts.items():
        with tempfile.TemporaryDirectory(prefix="gsvq-cases-") as tmp:
            env = Env(Path(tmp) / "work")
            env.checkout = checkout  # the checkout whose train.py prepares cases that need a trained model
            for name, setup in cases(env):
                res = run_case(checkout, env, setup, args.timeout)
                records.append({"case": name, "checkout": label, **res})
                print(f"[{label}] {name}: {res}", file=sys.stderr, flush=True)
    names = list(dict.fromkeys(r["case"] for r in records))

    def cell(name, label):
        rec = next((r for r in records if r["case"] == name and r["checkout"] == label), None)
        if rec is None:
            return "-"
        return "; ".join(x for x in (rec["outcome"], rec["check"], rec["message"].replace("|", "/")) if x)

    head = ["case"] + (["before (--old)"] if args.old else []) + ["now"]
    rows = [[n] + ([cell(n, "old")] if args.old else []) + [cell(n, "now")] for n in names]
    print(markdown(head, rows))
    write_json(args.out, records)


if __name__ == "__main__":
    main()
