#!/usr/bin/env bash
# Build seqio's offline cache of xitt tasks with Apache Beam (seqio.scripts.cache_tasks_main),
# from a separate virtual environment: no apache-beam release installs beside the project's pins
# (constraints.txt: protobuf 7, pillow 13, pyarrow 26), so .venv-beam holds apache-beam, seqio
# and TensorFlow resolved together (scripts/beam-requirements.txt) and imports xitt_tasks from
# this checkout. The trainer (project venv) reads the cache once its directory is one of seqio's
# cache dirs (seqio.add_global_cache_dirs): use_cached=None (the default) takes it when every
# task of the mixture is cached (or name it with --seqio_additional_cache_dirs). Unshuffled,
# cached and uncached batches are identical; a shuffled cached read loads the host's cache files
# and draws the file sources' full per-epoch permutation (train/cached_source.py).
#
# Usage: bash scripts/seqio_cache_beam.sh OUTPUT_CACHE_DIR TASK[,TASK...] [cache_tasks_main flags]
#   locally (DirectRunner, the default):
#     bash scripts/seqio_cache_beam.sh /tmp/xitt_cache xitt.xnli.train.en --min_shards=1
#   the full data on Dataflow (XITT_DATA_DIR and the cache dir on gs://):
#     XITT_DATA_DIR=gs://bucket/xtreme bash scripts/seqio_cache_beam.sh gs://bucket/cache \
#       xitt.inter.mnli --pipeline_options=--runner=DataflowRunner,--project=P,--region=R,\
#       --temp_location=gs://bucket/tmp,--requirements_file=scripts/beam-requirements.txt
# The venv is created on first use (XITT_BEAM_VENV overrides its path; about 2 GB).
set -euo pipefail
if [ $# -lt 2 ]; then
  awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"
  exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${XITT_BEAM_VENV:-$ROOT/.venv-beam}
OUT=$1
TASKS=$2
shift 2
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -r "$ROOT/scripts/beam-requirements.txt"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu} TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
exec "$VENV/bin/python" -m seqio.scripts.cache_tasks_main --module_import=xitt_tasks \
  --tasks="$TASKS" --output_cache_dir="$OUT" "$@"
