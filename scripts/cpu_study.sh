#!/usr/bin/env bash
# The toy study end to end on the CPU, on the shipped synthetic sample data:
#   1. set up a virtual environment (skipped when .venv exists),
#   2. run the grid of gin/study/study_cpu.gin (2 tiny sizes x the baseline and the multi-task
#      mixture x all ten XTREME-R targets, two seeds each; MNLI on XNLI and XQuAD; X-STILTs' two
#      alternatives on XNLI: 114 cells) as the real study runs: two coordinators at once, one
#      per size, each with its own database, copied to STUDY_DIR/databases/ as cells end;
#      resumable: killed and re-run, each skips finished cells,
#   3. merge the two databases into STUDY_DIR/results.sqlite (refused if they were made under
#      different recipes),
#   4. write the report (Markdown + PNG plots) from the merged database.
# Its numbers come from toy models on synthetic data and mean nothing; the report says so.
# Usage: [WORKERS=1] bash scripts/cpu_study.sh [STUDY_DIR]   (default /tmp/xitt_cpu_study;
# a worker process peaks at about 2 GB: WORKERS=1 halves the memory and takes longer)
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
mkdir -p "$STUDY_DIR"

# Two worker processes per coordinator: a cell spends much of its time waiting (checkpoint
# writes, input pipelines starting), so four processes keep 2 cores busier than two do.
WORKERS=${WORKERS:-2}
coordinator() {  # one coordinator: its sizes, $WORKERS worker processes
  python -m study run "$EXPERIMENT" --study_dir "$STUDY_DIR" --sizes "$1" \
    --local_dir "$STUDY_DIR/coordinators/$1" --workers "$WORKERS"
}
status=0
coordinator tiny > "$STUDY_DIR/coordinator-tiny.log" 2>&1 &
first=$!
coordinator tiny2 || status=$?
wait "$first" || { status=$?; echo "the tiny coordinator failed: see $STUDY_DIR/coordinator-tiny.log" >&2; }
python -m study merge "$EXPERIMENT" --study_dir "$STUDY_DIR"
# The report marks failed or missing cells instead of averaging over them.
python -m study report --study_dir "$STUDY_DIR"
exit $status
