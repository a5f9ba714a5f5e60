"""The multi-host code paths on one machine: 2 local processes joined by `jax.distributed`
(gloo CPU collectives), 4 CPU devices each, one 2x4 mesh over all 8.

What is compared with what, honestly: each process reads its own seqio shard
(`ShardInfo(process, 2)`, every other example, shuffled per shard), so the multi-process global
batch is [4 examples of shard 0; 4 of shard 1], not the first 8 examples of the unsharded
single-process stream (asserted below). The single-process reference therefore reads the same
two shards with the production `host_dataset` and lays them out the same way; against it the
per-step losses and final parameters must agree to 1e-5.
"""
import glob
import json
import os

import jax
import numpy as np
import pytest

from tests.train import multiprocess_worker as worker
from tests.train import testing_tasks  # noqa: F401  (registers the copy task)
from train import (
    checkpoints,
    input_pipeline,
    network,
    partitioning,
    run_identity,
    settings,
    trainer,
)

TIMEOUT_S = 300
# About 80 s on 2 cores for the encoder-decoder cluster (two processes train three times);
# the dual-encoder cluster and its single-process reference: see its test.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> tuple[str, list[dict]]:
    """Run both workers once; their reports, ordered by process index."""
    workdir = str(tmp_path_factory.mktemp("multiprocess"))
    try:
        return workdir, worker.launch("tests.train.multiprocess_worker", workdir,
                                      timeout_s=TIMEOUT_S)
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def dual_cluster(tmp_path_factory) -> tuple[str, list[dict]]:
    """Both workers train the dual encoder and restore its checkpoint."""
    workdir = str(tmp_path_factory.mktemp("multiprocess_dual"))
    try:
        return workdir, worker.launch("tests.train.multiprocess_worker", workdir,
                                      ["dual_encoder"], timeout_s=TIMEOUT_S)
    except RuntimeError as e:
        pytest.fail(str(e))


def _mesh():
    return partitioning.create_mesh(data_axis_size=2, model_axis_size=worker.LOCAL_DEVICES)


def _shard_datasets(cfg, mesh, start_step=0):
    """Each process's host dataset, built here by the production code as that process would."""
    out = []
    for p in range(worker.NUM_PROCESSES):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(jax, "process_index", lambda p=p: p)
            mp.setattr(jax, "process_count", lambda: worker.NUM_PROCESSES)
            ds = input_pipeline.host_dataset(cfg, mesh, repeat=True)
        out.append(ds.skip(start_step) if start_step else ds)
    return out


class _TwoShardIterator:
    """Global batches laid out as with two processes: shard p in rows [4p, 4p + 4). Stands in
    for `input_pipeline.train_iterator` in a run that is never resumed, so it saves no state."""

    def __init__(self, cfg, mesh, start_step=0, restore_dir=None):
        assert restore_dir is None
        self.mesh = mesh
        self.its = [ds.as_numpy_iterator() for ds in _shard_datasets(cfg, mesh, start_step)]

    def __next__(self):
        parts = [next(it) for it in self.its]
        return input_pipeline.to_global(
            {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}, self.mesh)

    def save(self, step_dir):
        return None

    def close(self):
        pass


def _losses(model_dir) -> dict[int, float]:
    import tensorflow as tf

    out = {}
    for path in sorted(glob.glob(f"{model_dir}/train/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                if v.tag == "loss":
                    out[event.step] = float(tf.make_ndarray(v.tensor))
    return out


def _params(model_dir):
    config = worker.train_args("")["model_config"]
    return checkpoints.load_params(str(model_dir), network.abstract_params(config))


def _assert_trees_close(a, b, atol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def test_processes_see_eight_devices_over_two_hosts(cluster):
    _, reports = cluster
    for i, r in enumerate(reports):
        assert (r["process_index"], r["process_count"]) == (i, 2)
        assert (r["device_count"], r["local_device_count"]) == (8, 4)


def test_each_process_reads_only_its_shard(cluster):
    _, reports = cluster
    mesh = _mesh()
    expected = [[next(it) for _ in range(worker.INPUT_BATCHES)] for it in (
        ds.as_numpy_iterator() for ds in _shard_datasets(worker.data_config(8), mesh))]
    for p, r in enumerate(reports):
        for got, want in zip(r["host_batches"], expected[p], strict=True):
            assert sorted(got) == sorted(want)
            for k in want:
                np.testing.assert_array_equal(np.asarray(got[k]), want[k], err_msg=k)
                assert want[k].shape[0] == 4  # host batch = global 8 / 2 processes
    a, b = (np.asarray(r["host_batches"][0]["encoder_input_tokens"]) for r in reports)
    assert not np.array_equal(a, b), "both processes read the same examples"
    # to_global: process p's rows are [4p, 4p + 4) of a batch of the full global size.
    assert [r["local_row_starts"] for r in reports] == [[0], [4]]
    for r in reports:
        assert r["global_shape"] == [8, 32]
        np.testing.assert_array_equal(np.asarray(r["global_encoder_input_tokens"]),
                                      np.concatenate([a, b]))
    # Why the single-process reference below reads two shards: the unsharded stream's first
    # global batch is a different set of examples.
    unsharded = input_pipeline.host_dataset(worker.data_config(8), mesh, repeat=True)
    first = next(unsharded.as_numpy_iterator())["encoder_input_tokens"]
    assert not np.array_equal(first, np.concatenate([a, b]))


def test_training_completes_with_one_shared_checkpoint(cluster):
    workdir, reports = cluster
    for r in reports:
        assert r["runs"]["full"]["step"] == 4
        assert r["runs"]["full"]["checkpoint_steps"] == [2, 4]
    losses = [r["runs"]["full"]["train_metrics"]["loss"] for r in reports]
    assert losses[0] == losses[1]
    evals = [r["runs"]["full"]["eval_metrics"] for r in reports]
    assert evals[0] == evals[1] and np.isfinite(evals[0]["loss"]), evals
    full = f"{workdir}/full"
    assert checkpoints.committed_steps(full) == [2, 4]
    # One checkpoint directory per step, no leftover temporaries; one copy of each metadata
    # file (each process writes only its own array shards, under ocdbt.process_<i>).
    assert sorted(os.listdir(full)) == sorted([
        "checkpoint_2", "checkpoint_4", checkpoints.METRICS_FILE, trainer.ORIGIN_FILE,
        run_identity.IDENTITY_FILE, "train", "validation"])
    with open(f"{full}/{checkpoints.METRICS_FILE}") as f:
        assert json.load(f) == {"4": evals[0]}
    for step in (2, 4):
        names = os.listdir(f"{full}/checkpoint_{step}")
        for marker in ("_CHECKPOINT_METADATA", "_METADATA", "commit_success.txt"):
            assert names.count(marker) == 1
        assert {n for n in names if n.startswith("ocdbt.process_")} == {
            "ocdbt.process_0", "ocdbt.process_1"}
    # Only process 0 writes summaries.
    assert len(glob.glob(f"{full}/train/events.out.tfevents.*")) == 1
    assert _losses(full)[4] == pytest.approx(losses[0], abs=0)


def test_losses_match_a_single_process_run_reading_the_same_shards(cluster, tmp_path,
                                                                   monkeypatch):
    workdir, _ = cluster
    monkeypatch.setattr(input_pipeline, "train_iterator", _TwoShardIterator)
    args = worker.train_args(str(tmp_path))
    assert jax.process_count() == 1 and jax.device_count() == 8
    trainer.train(**settings.from_keywords(**args))
    ref, got = _losses(tmp_path), _losses(f"{workdir}/full")
    assert sorted(got) == sorted(ref) == [2, 3, 4]
    np.testing.assert_allclose([got[s] for s in ref], [ref[s] for s in ref], atol=1e-5)
    assert got[4] < got[2]
    _assert_trees_close(_params(f"{workdir}/full"), _params(tmp_path), 1e-5)


def test_multi_process_resume_continues_exactly(cluster):
    workdir, reports = cluster
    for r in reports:
        assert r["runs"]["first_half"]["checkpoint_steps"] == [2]
        assert r["runs"]["resumed"]["step"] == 4
    resumed, full = f"{workdir}/resumed", f"{workdir}/full"
    assert checkpoints.committed_steps(resumed) == [2, 4]
    with open(f"{workdir}/process_0.log") as f:
        assert f"resumed from {resumed}/checkpoint_2" in f.read()
    _assert_trees_close(_params(resumed), _params(full), 1e-6)
    np.testing.assert_allclose(_losses(resumed)[4], _losses(full)[4], atol=1e-6)



def test_dual_encoder_two_processes_equal_one_and_write_one_restorable_checkpoint(
        dual_cluster, tmp_path, monkeypatch):
    """The contrastive loss sees the whole global batch (in-batch negatives across both
    processes' rows), so two processes must equal one process reading the same two shards."""
    workdir, reports = dual_cluster
    model_dir = f"{workdir}/dual"
    for r in reports:
        assert r["result"]["step"] == 3 and r["result"]["checkpoint_steps"] == [3]
    for key in ("loss", "accuracy"):  # the timing metrics differ per process, these must not
        assert reports[0]["result"]["train_metrics"][key] == \
            reports[1]["result"]["train_metrics"][key], key
    assert checkpoints.committed_steps(model_dir) == [3]
    assert sorted(n for n in os.listdir(model_dir) if n.startswith("checkpoint")) == [
        "checkpoint_3"]
    names = os.listdir(f"{model_dir}/checkpoint_3")
    for marker in ("_CHECKPOINT_METADATA", "_METADATA", "commit_success.txt"):
        assert names.count(marker) == 1
    assert {n for n in names if n.startswith("ocdbt.process_")} == {
        "ocdbt.process_0", "ocdbt.process_1"}
    assert len(glob.glob(f"{model_dir}/train/events.out.tfevents.*")) == 1

    monkeypatch.setattr(input_pipeline, "train_iterator", _TwoShardIterator)
    args = worker.dual_encoder_args(str(tmp_path))
    trainer.train(**settings.from_keywords(**args))
    ref, got = _losses(tmp_path), _losses(model_dir)
    assert sorted(got) == sorted(ref) == [2, 3]  # (the trainer does not log step 1)
    np.testing.assert_allclose([got[s] for s in ref], [ref[s] for s in ref], atol=1e-6)
    model = args["model"].unscanned()
    ref_params = checkpoints.load_params(str(tmp_path), model.abstract_params())
    mp_params = checkpoints.load_params(model_dir, model.abstract_params())
    _assert_trees_close(mp_params, ref_params, 1e-6)
    # Both processes restored the same (sharded) checkpoint: gathered, it is what was written.
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_leaves_with_path(mp_params)}
    for r in reports:
        assert sorted(r["restored"]) == sorted(flat)
        for name, value in flat.items():
            np.testing.assert_array_equal(np.asarray(r["restored"][name], value.dtype), value,
                                          err_msg=name)
