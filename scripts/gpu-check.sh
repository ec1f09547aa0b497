#!/usr/bin/env bash
# The GPU proof in one call: `resnet-study compare` on the GPU (lightning, keras-jax, keras-torch;
# ResNet-20 and -56; fp32 and bf16; torch.compile on and off), a GPU study slice (digits, depths 8 and
# 20, plain and residual, 2 seeds, 2 epochs, with its verdicts; the local runner's GPU placement with
# --runs-per-gpu 2: two workers share the one GPU) and a training run through the --devices path, each
# step under its own time limit. Everything lands in $OUT (default
# ./gpu-check-out): summary.md, compare.md, compare.json, and gpu-check.tar.gz with every log.
#
#   scripts/gpu-check.sh                 # on the GPU machine (about 8 minutes)
#   scripts/gpu-check.sh --device cpu --quick   # the rehearsal the test suite runs (tiny sizes, bf16 only:
#                                               # `compare`'s fp32 rows are tested on their own; the study
#                                               # slice's one GPU declared, CUDA_VISIBLE_DEVICES=0)
#
# On the GPU, wheels carried in .whl/ (scripts/gpu-wheels.sh fetches Keras and what it needs) are
# installed into /tmp/site first; the repository itself is put on PYTHONPATH (nothing is installed into the image).
set -u
DEVICE=gpu
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "gpu-check: unknown argument $1 (use --device gpu|cpu, --quick)" >&2; exit 2 ;;
  esac
done
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$PWD/gpu-check-out}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT" || exit 2
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")" || exit 2
START=$(date +%s)

if [ "$DEVICE" = gpu ] && compgen -G "$REPO/.whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$REPO"/.whl/*.whl > "$WORK/wheels.log" 2>&1 || echo "gpu-check: installing the carried wheels failed" >&2
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 WANDB_MODE=disabled TF_CPP_MIN_LOG_LEVEL=2

# Time limits (s): the whole check stays within 8 minutes on the GPU; each compare worker gets a third
# of compare's, and a worker stopped at its limit keeps the rows it finished (compiled rows run last).
if [ "$QUICK" = 1 ]; then  # the rehearsal: every command and flag of the real check, at tiny sizes
  SPECS=resnet8; PRECISIONS=bf16; SIZES="--batch 8 --steps 2 --repeats 1 --train-steps 1"; DEPTHS=8; EPOCHS=1
  LIMIT=540; STUDY_LIMIT=240; DEVICES_LIMIT=90  # generous: the test suite runs it beside other tests
else
  SPECS=resnet20,resnet56; PRECISIONS=32,bf16; SIZES=""; DEPTHS=8,20; EPOCHS=2
  LIMIT=300; STUDY_LIMIT=120; DEVICES_LIMIT=45
fi
BACKENDS=lightning,keras-jax,keras-torch
STUDY_BACKENDS=lightning
# The study slice places its workers on the GPUs, two per GPU. The CPU rehearsal declares one GPU (its
# twins see none and train on the CPU), so the same placement runs there.
STUDY_DEVICE="$DEVICE"; STUDY_ENV=()
if [ "$DEVICE" = cpu ]; then STUDY_DEVICE=auto; STUDY_ENV=(env CUDA_VISIBLE_DEVICES=0); fi
if KERAS_BACKEND=jax "$PY" -c "import keras, jax" > /dev/null 2>&1; then STUDY_BACKENDS=lightning,keras-jax; fi

printf 'step\texit\tseconds\n' > "$WORK/steps.tsv"
FAILED=0
step() {  # step NAME SECONDS COMMAND...: one step under its own time limit, its output in NAME.log
  local name="$1" limit="$2"; shift 2
  local begin=$(date +%s)
  echo "gpu-check: $name (limit ${limit} s) ..."
  timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1
  local code=$?
  printf '%s\t%s\t%s\n' "$name" "$code" "$(( $(date +%s) - begin ))" >> "$WORK/steps.tsv"
  if [ "$code" != 0 ]; then
    FAILED=$((FAILED + 1))
    echo "gpu-check: $name exited with $code$([ "$code" = 124 ] && echo ' (time limit)'); last lines:"
    tail -n 5 "$WORK/$name.log" | sed 's/^/  /'
  fi
}

step environment 20 bash -c "nvidia-smi; '$PY' -c 'import sys; print(sys.version)'; \
  '$PY' -m pip list 2>/dev/null | grep -iE '^(torch|pytorch-lightning|lightning|torchmetrics|jax|jaxlib|keras|tensorflow|numpy|wandb) '"
step compare "$LIMIT" "$PY" -m study compare --device "$DEVICE" --backends "$BACKENDS" --specs "$SPECS" \
  --precisions "$PRECISIONS" --compile $SIZES --timeout $(( (LIMIT - 30) / 3 )) --wandb disabled --out "$WORK/compare"
step study "$STUDY_LIMIT" "${STUDY_ENV[@]}" "$PY" -m study run --dataset digits --depths "$DEPTHS" --archs plain,resnet \
  --seeds 0,1 --epochs "$EPOCHS" --warmup-epochs 0 --backends "$STUDY_BACKENDS" --device "$STUDY_DEVICE" \
  --runs-per-gpu 2 --wandb disabled --out "$WORK/study"
step devices "$DEVICES_LIMIT" "$PY" -m study train resnet8 --backend lightning --dataset digits --epochs 1 --warmup-epochs 0 \
  --device "$DEVICE" --devices 1 --wandb disabled --out "$WORK/devices"

{
  echo "# GPU check: $(hostname), device $DEVICE$([ "$QUICK" = 1 ] && echo ', quick rehearsal')"
  echo
  echo "Commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown); $(( $(date +%s) - START )) s in all; $FAILED step(s) failed."
  echo
  echo '| step | exit | seconds |'
  echo '| --- | ---: | ---: |'
  tail -n +2 "$WORK/steps.tsv" | awk -F'\t' '{print "| " $1 " | " $2 " | " $3 " |"}'
  echo
  if [ -f "$WORK/study/verdict.json" ]; then
    echo "## Study slice verdicts"
    echo
    "$PY" -c "import json,sys; v=json.load(open(sys.argv[1])); [print(f'- {k}: {v[k][\"verdict\"]}') for k in v if isinstance(v[k], dict) and 'verdict' in v[k]]" "$WORK/study/verdict.json"
    "$PY" -c "
import glob, json, sys
runs = [json.load(open(p)) for p in glob.glob(sys.argv[1] + '/runs/*/summary.json')]
placed = sorted({(r['placement']['pid'], r['placement']['cuda_visible_devices']) for r in runs}, key=str)
print(f'- placement: {len(runs)} runs on device {sorted({r[\"device\"] for r in runs})} in {len(placed)} workers, '
      + ', '.join(f'pid {pid}: CUDA_VISIBLE_DEVICES={gpu}' for pid, gpu in placed))" "$WORK/study"
    echo
  fi
  if [ -f "$WORK/compare/compare.md" ]; then
    echo "## Comparison"
    echo
    cat "$WORK/compare/compare.md"
  fi
} > "$WORK/summary.md"

for name in summary.md compare/compare.md compare/compare.json; do
  [ -f "$WORK/$name" ] && cp "$WORK/$name" "$OUT/"
done
tar -czf "$OUT/gpu-check.tar.gz" -C "$WORK" . 2>/dev/null
echo "gpu-check: $FAILED step(s) failed; summary in $OUT/summary.md"
[ "$FAILED" = 0 ]
