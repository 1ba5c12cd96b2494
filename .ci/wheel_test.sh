#!/usr/bin/env bash
# CI: the wheel works on its own. Build it, install it (no deps) into a fresh venv that borrows the
# CI venv's installed packages, and run the console scripts from a folder outside the repository,
# so the presets, levels and kernel sources must come from the package data. About a minute.
# PYTHON: the CI venv's python (default: python on PATH). WHEEL_TEST_EXT=1 also builds the C++
# kernels from the installed sources (a minute or two more); by default they are skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# the CI venv's setuptools when it has one (no download), else pip's isolated build environment
ISOLATION="--no-build-isolation"
"$PY" -c "import setuptools" 2>/dev/null || ISOLATION=""
"$PY" -m pip wheel -q --no-deps $ISOLATION "$ROOT" -w "$WORK/dist" >/dev/null
WHEEL="$(ls "$WORK"/dist/gs_vq-*.whl)"
"$PY" - "$WHEEL" <<'PYEOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["gs_vq/configs/cpu.yaml", "gs_vq/configs/gpu.yaml", "gs_vq/configs/vq/default.yaml",
        "gs_vq/render/_ext/rasterize.cpp", "gs_vq/quant/_ext/nearest.cpp"]
missing = [n for n in need if n not in names]
if missing:
    sys.exit(f"wheel_test: the wheel lacks {', '.join(missing)}")
PYEOF

"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
# the CI venv's packages, after the fresh venv's own: a plain path line, so the CI venv's .pth
# files (its editable gs_vq among them) are not read
"$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > "$("$VPY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/_ci_deps.pth"
"$VPY" -m pip install -q --no-deps --no-index "$WHEEL"

cd "$WORK"  # outside the repository: nothing of the checkout is importable or readable by path
[ "${WHEEL_TEST_EXT:-0}" = 1 ] || export GS_VQ_NO_EXT=1
"$VPY" - <<'PYEOF'
import os, sys, gs_vq
venv = os.path.join(os.getcwd(), "venv")
if not os.path.abspath(gs_vq.__file__).startswith(venv):
    sys.exit(f"wheel_test: gs_vq imported from {gs_vq.__file__}, not from the wheel in {venv}")
PYEOF
"$WORK/venv/bin/gs-vq-train" -m "$WORK/model" --iterations 20 --eval --quiet
"$WORK/venv/bin/gs-vq-render" -m "$WORK/model" --quiet >/dev/null
"$WORK/venv/bin/gs-vq-render" -m "$WORK/model" --traj ellipse --traj_frames 4 --quiet >/dev/null
for f in point_cloud.ply cfg.yaml results.json videos/traj_ellipse.mp4; do
    [ -s "$WORK/model/$f" ] || { echo "wheel_test: $f was not written" >&2; exit 1; }
done
echo "wheel test: $(basename "$WHEEL") installed, trained, rendered and made a video outside the repo"
