"""The trainer saves each process's input iterator state inside every checkpoint (committed and
checksummed with it) and resumes from it without replaying the stream; a checkpoint without
one (an older run's) is resumed by replay, said in one line. Both give the uninterrupted run's
parameters exactly."""
import dataclasses
import json

import jax
import numpy as np
import pytest

from tests.train import testing_tasks
from train import checkpoint_integrity, checkpoints, input_pipeline, network, settings, trainer
from train.config import MT5Config

TINY = MT5Config(vocab_size=512, emb_dim=32, mlp_dim=64, num_heads=4, head_dim=8,
                 num_encoder_layers=1, num_decoder_layers=1, dtype="float32", dropout_rate=0.1)
STATE = "train_ds-000-of-001"


pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


def _train(model_dir, **kw):
    args = dict(model_dir=str(model_dir), mixture_or_task_name=testing_tasks.COPY_TASK,
                task_feature_lengths={"inputs": 32, "targets": 32}, model_config=TINY,
                train_steps=6, batch_size=8, learning_rate=1e-2, save_every=3,
                keep_checkpoints=5, eval_split=None, log_every=1,
                loss_normalizing_factor="NUM_REAL_TARGET_TOKENS", devices=jax.devices()[:1])
    return trainer.train(**settings.from_keywords(**{**args, **kw}))


def _params(model_dir):
    return checkpoints.load_params(str(model_dir), network.abstract_params(TINY))


def _assert_equal_trees(a, b):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("uninterrupted")
    _train(model_dir)
    return model_dir


@pytest.fixture()
def iterators(monkeypatch):
    """Every TrainIterator the trainer makes."""
    made = []
    real = input_pipeline.train_iterator

    def spy(*args, **kw):
        made.append(real(*args, **kw))
        return made[-1]

    monkeypatch.setattr(input_pipeline, "train_iterator", spy)
    return made


def test_resume_restores_the_input_state_without_replay(reference, tmp_path, iterators):
    _train(tmp_path, train_steps=3)
    step_dir = checkpoints.checkpoint_path(str(tmp_path), 3)
    assert (step_dir / f"{STATE}.index").exists()
    manifest = json.loads((step_dir / checkpoint_integrity.MANIFEST).read_text())["files"]
    assert f"{STATE}.index" in manifest  # committed and checksummed with the step
    _train(tmp_path)
    resumed = iterators[-1]
    assert resumed.restored_from == str(step_dir / STATE)
    assert resumed.replayed_batches == 0
    _assert_equal_trees(_params(tmp_path), _params(reference))


def test_checkpoint_without_input_state_resumes_by_replay(reference, tmp_path, iterators,
                                                          capsys):
    _train(tmp_path, train_steps=3)
    step_dir = checkpoints.checkpoint_path(str(tmp_path), 3)
    for f in step_dir.glob(f"{STATE}*"):  # as an older run's checkpoint
        f.unlink()
    checkpoint_integrity.write_manifest(step_dir)
    capsys.readouterr()
    _train(tmp_path)
    assert iterators[-1].replayed_batches == 3 and iterators[-1].restored_from is None
    warnings = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "replaying 3 batches" in warnings[0], warnings
    _assert_equal_trees(_params(tmp_path), _params(reference))


def test_damaged_input_state_is_a_damaged_checkpoint(tmp_path):
    _train(tmp_path, train_steps=3, save_every=1, model_config=dataclasses.replace(
        TINY, dropout_rate=0.0))
    step_dir = checkpoints.checkpoint_path(str(tmp_path), 3)
    data = next(step_dir.glob(f"{STATE}.data-*"))
    data.write_bytes(data.read_bytes()[:-1] + b"\0")
    step, problems = checkpoints.latest_intact_step(str(tmp_path))
    assert step == 2 and STATE in problems[0]


_KILLED_RUN = """
import sys, time
from tests.train import test_resume_input_state as t
from train import checkpoints
save = checkpoints.Checkpoints.save
def save_then_hang(self, step, *args, **kw):
    path = save(self, step, *args, **kw)
    if step == 3:
        print("saved", flush=True)
        time.sleep(3600)  # killed here, with the input pipeline running ahead
    return path
checkpoints.Checkpoints.save = save_then_hang
t._train(sys.argv[1])
"""


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_then_resume_is_exact(reference, tmp_path, iterators):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(tmp_path)], cwd=root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        lines = iter(proc.stdout.readline, "")
        assert any(line.strip() == "saved" for line in lines), "the run ended before step 3"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert checkpoints.committed_steps(str(tmp_path)) == [3]
    _train(tmp_path)
    assert iterators[-1].replayed_batches == 0 and iterators[-1].restored_from
    _assert_equal_trees(_params(tmp_path), _params(reference))
