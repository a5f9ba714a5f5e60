#!/usr/bin/env bash
# The toy study end to end on the CPU, on the shipped synthetic sample data:
#   1. set up a virtual environment (skipped when .venv exists),
#   2. run the grid of gin/study/study_cpu.gin (2 tiny sizes x baseline + 3 intermediate tasks +
#      the multi-task mixture x all ten XTREME-R targets, every sample language), resumable:
#      killed and re-run, it skips finished cells,
#   3. write the report (Markdown + PNG plots) from the results database.
# Its numbers come from toy models on synthetic data and mean nothing; the report says so.
# Usage: bash scripts/cpu_study.sh [STUDY_DIR]   (default /tmp/xitt_cpu_study)
set -euo pipefail
cd "$(dirname "$0")/.."
STUDY_DIR=${1:-/tmp/xitt_cpu_study}
EXPERIMENT=${EXPERIMENT:-gin/study/study_cpu.gin}

if [ ! -d .venv ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q -c constraints.txt -e .
fi
. .venv/bin/activate
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu} TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}

status=0
# two cells side by side (one worker process each): the 2 cores stay busy
python -m study run "$EXPERIMENT" --study_dir "$STUDY_DIR" --workers "${WORKERS:-2}" || status=$?
# The report marks failed or missing cells instead of averaging over them.
python -m study report --study_dir "$STUDY_DIR"
exit $status
