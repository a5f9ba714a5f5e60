#!/usr/bin/env bash
# The whole pipeline that exists today, at toy scale on the CPU, on the shipped sample data:
#   1. set up a virtual environment (skipped when .venv exists),
#   2. intermediate-task training of a tiny mT5-shaped model on English QQP,
#   3. target-task training on XNLI's English training data, starting from phase 2's checkpoint,
#   4. zero-shot decoding and scoring of every XNLI language from the final checkpoint.
# Usage: bash scripts/cpu_pipeline.sh [WORK_DIR]   (default /tmp/xitt_cpu_pipeline)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/xitt_cpu_pipeline}
INTER_STEPS=${INTER_STEPS:-60}
TARGET_STEPS=${TARGET_STEPS:-60}

if [ ! -d .venv ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q -c constraints.txt -e .
fi
. .venv/bin/activate
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu} TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}

run_train() {  # model_dir task steps [extra gin flags...]
  local dir=$1 task=$2 steps=$3; shift 3
  python -m train --gin_file=gin/models/mt5_tiny.gin --gin_file=gin/runs/finetune.gin \
    --gin_file=gin/runs/cpu_tiny.gin --gin.MODEL_DIR="'$dir'" \
    --gin.MIXTURE_OR_TASK_NAME="'$task'" --gin.MIXTURE_OR_TASK_MODULE="'xitt_tasks'" \
    --gin.TRAIN_STEPS="$steps" --gin.SAVE_EVERY=20 "$@"
}

echo "== phase 1: intermediate task (xitt.inter.qqp), $INTER_STEPS steps"
run_train "$WORK/inter" xitt.inter.qqp "$INTER_STEPS"

echo "== phase 2: target task (xitt.xnli.train.en) from the intermediate checkpoint"
run_train "$WORK/target" xitt.xnli.train.en "$((INTER_STEPS + TARGET_STEPS))" \
  --gin.INITIAL_CHECKPOINT_PATH="'$WORK/inter/checkpoint_$INTER_STEPS'"

echo "== phase 3: zero-shot evaluation on every XNLI language"
python -m eval --gin_file=gin/models/mt5_tiny.gin --checkpoint="$WORK/target" \
  --task=xitt.xnli.all_langs --split=validation --mode=decode \
  --feature_lengths=inputs=64,targets=16 --batch_size=8 \
  --mixture_or_task_module=xitt_tasks --output_dir="$WORK/eval"

python - "$WORK/eval" <<'PY'
import json, pathlib, sys
rows = sorted(pathlib.Path(sys.argv[1]).glob("checkpoint_*/*/metrics.json"))
for p in rows:
    m = json.loads(p.read_text())
    print(f"{m['task']:<22} n={m['num_examples']:<3} accuracy={m['metrics']['accuracy']:.1f}")
print(f"{len(rows)} languages scored; predictions and metrics under {sys.argv[1]}")
PY
