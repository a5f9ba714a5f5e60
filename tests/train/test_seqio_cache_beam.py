"""A training task cached by seqio's own Beam job (`seqio.scripts.cache_tasks_main`, DirectRunner,
run from .venv-beam by scripts/seqio_cache_beam.sh) is read by the trainer's input pipeline:
unshuffled, the cached batches are the uncached ones; shuffled, the cached stream is saved and
restored exactly like the uncached one. Slow (the Beam job takes about a minute), and skipped
where .venv-beam does not exist (`bash scripts/seqio_cache_beam.sh` creates it on first use)."""
import os
import subprocess
from pathlib import Path

import jax
import numpy as np
import pytest
import seqio

from train import input_pipeline, partitioning

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = Path(os.environ.get("XITT_BEAM_VENV", ROOT / ".venv-beam")) / "bin" / "python"
TASK = "xitt.xnli.train.en"
LENGTHS = {"inputs": 64, "targets": 8}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VENV_PYTHON.exists(), reason=(
        f"needs {VENV_PYTHON.parent.parent} (apache-beam cannot be installed beside the "
        "project's pins; `bash scripts/seqio_cache_beam.sh OUT TASK` creates it)")),
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    import xitt_tasks  # noqa: F401  (registers the tasks; tests sit above xitt_tasks)

    out = tmp_path_factory.mktemp("seqio_cache")
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "seqio_cache_beam.sh"), str(out), TASK,
         "--min_shards=1"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / TASK / "COMPLETED").exists()
    before = list(seqio.utils.get_global_cache_dirs())
    seqio.utils.set_global_cache_dirs([str(out)])
    seqio.get_mixture_or_task(TASK)._cache_dir = None  # forget a lookup made without it
    yield out
    seqio.utils.set_global_cache_dirs(before)
    seqio.get_mixture_or_task(TASK)._cache_dir = None


def _batches(count, start_step=0, restore_dir=None, save_dir=None, **kw):
    mesh = partitioning.create_mesh(devices=jax.devices()[:1])
    cfg = input_pipeline.DatasetConfig(TASK, LENGTHS, "train", 4, seed=0, **kw)
    with input_pipeline.train_iterator(cfg, mesh, start_step, restore_dir) as it:
        out = [{k: np.asarray(v) for k, v in next(it).items()} for _ in range(count)]
        if save_dir is not None:
            it.save(save_dir)
        return out, it.replayed_batches


def _assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_trainer_reads_the_beam_cache_as_the_uncached_task(cache_dir):
    assert input_pipeline.resolve_use_cached(TASK, None)
    for pack in (False, True):
        cached, _ = _batches(40, shuffle=False, pack=pack, use_cached=True)
        uncached, _ = _batches(40, shuffle=False, pack=pack, use_cached=False)
        _assert_same(cached, uncached)


def test_cached_stream_resumes_from_its_saved_state(cache_dir, tmp_path):
    stream, _ = _batches(12, use_cached=True)
    _batches(7, use_cached=True, save_dir=tmp_path)
    resumed, replayed = _batches(5, start_step=7, restore_dir=tmp_path, use_cached=True)
    assert replayed == 0
    _assert_same(resumed, stream[7:])


def _training_tasks() -> list[str]:
    """Every registered xitt training task: the intermediate tasks and each target's train
    tasks (mixtures are made of these)."""
    import xitt_tasks  # noqa: F401

    names = [n for n in seqio.TaskRegistry.names()
             if n.startswith("xitt.inter.") or (n.startswith("xitt.") and ".train." in n)]
    return sorted(n for n in names if seqio.get_mixture_or_task(n).supports_caching)


@pytest.fixture(scope="module")
def all_training_cache(tmp_path_factory):
    """One Beam job (DirectRunner) caching every training task on the shipped sample data."""
    tasks = _training_tasks()
    out = tmp_path_factory.mktemp("seqio_cache_all")
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "seqio_cache_beam.sh"), str(out), ",".join(tasks),
         "--min_shards=1"], capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stderr[-3000:]
    before = list(seqio.utils.get_global_cache_dirs())
    seqio.utils.set_global_cache_dirs([str(out)])
    for name in tasks:
        seqio.get_mixture_or_task(name)._cache_dir = None
    yield out, tasks
    seqio.utils.set_global_cache_dirs(before)
    for name in tasks:
        seqio.get_mixture_or_task(name)._cache_dir = None


def test_every_training_task_caches_with_beam_and_reads_back_unchanged(all_training_cache):
    out, tasks = all_training_cache
    assert len(tasks) >= 10, tasks  # 9 intermediate tasks and the targets' training tasks
    mesh = partitioning.create_mesh(devices=jax.devices()[:1])
    for name in tasks:
        assert (out / name / "COMPLETED").exists(), name
        assert input_pipeline.resolve_use_cached(name, None), name
        batches = {}
        for use_cached in (True, False):
            cfg = input_pipeline.DatasetConfig(name, LENGTHS, "train", 4, seed=0, shuffle=False,
                                               use_cached=use_cached)
            with input_pipeline.train_iterator(cfg, mesh, 0, None) as it:
                batches[use_cached] = [{k: np.asarray(v) for k, v in next(it).items()}
                                       for _ in range(3)]
        _assert_same(batches[True], batches[False])
