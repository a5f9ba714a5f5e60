"""A study with data_source='full' runs on a real data root and the mT5 vocabulary, never on
the shipped synthetic sample or the CPU vocabulary; every cell records which data it read.

`study_data(data_source)` is called by each cell before it starts (on the host that runs it,
so the settings checked are the ones the tasks will read: the TPU scripts forward them).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from xitt_common import fs
from xitt_common.data_env import DATA_DIR_ENV, VOCAB_ENV
from xitt_tasks import vocab
from xitt_tasks.prepare import lock
from xitt_tasks.sources import SAMPLE_ROOT


class SampleDataError(ValueError):
    """A full study was about to read the synthetic sample or the CPU vocabulary."""


def _same(a: str, b: os.PathLike | str) -> bool:
    return fs.is_local(a) and os.path.realpath(a) == os.path.realpath(b)


def problems(environ: Mapping[str, str] | None = None) -> list[str]:
    """Why these settings are not a full run's data (empty when they are)."""
    env = os.environ if environ is None else environ
    out = []
    root = env.get(DATA_DIR_ENV) or ""
    if not root:
        out.append(f"${DATA_DIR_ENV} is unset, so the tasks read the shipped synthetic sample")
    elif _same(root, SAMPLE_ROOT):
        out.append(f"${DATA_DIR_ENV}={root} is the shipped synthetic sample")
    elif not fs.path(root).is_dir():
        out.append(f"${DATA_DIR_ENV}={root} does not exist")
    spec = env.get(VOCAB_ENV) or vocab.DEFAULT_VOCAB
    if spec == "cpu" or _same(spec, vocab.CPU_MODEL_PATH):
        out.append(f"${VOCAB_ENV}={env.get(VOCAB_ENV) or '(unset)'} is the CPU vocabulary "
                   "trained on the sample")
    return out


def check_full_data(environ: Mapping[str, str] | None = None) -> None:
    found = problems(environ)
    if found:
        raise SampleDataError(
            "data_source='full' refuses to run: " + "; ".join(found) + ". Prepare a data root "
            "(python -m xitt_tasks.prepare --data_dir DIR, then --check), set "
            f"{DATA_DIR_ENV}=DIR and {VOCAB_ENV}=mt5 (the TPU scripts pass both to every host).")


def provenance(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The data root in force and the SHA-256 of its lock file (None: no lock file)."""
    env = os.environ if environ is None else environ
    root = env.get(DATA_DIR_ENV) or os.fspath(SAMPLE_ROOT)
    return {"data_root": root, "data_lock": lock.lock_hash(root)}


def study_data(data_source: str, environ: Mapping[str, str] | None = None
               ) -> dict[str, str | None]:
    """A cell's data provenance; raises SampleDataError for a full study on the sample."""
    if data_source == "full":
        check_full_data(environ)
    return provenance(environ)
