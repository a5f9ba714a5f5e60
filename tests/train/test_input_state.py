"""The training iterator's state is saved with a checkpoint and restored on resume: the resumed
stream is the uninterrupted one from that step on, and the source is not read again from the
start (no replay). Without a saved state a resume replays, saying so in one line."""
import numpy as np
import pytest
import seqio
import tensorflow as tf

from tests.train import testing_tasks
from train import input_pipeline, partitioning

COUNTED_TASK = "xitt_test_copy_counted"
LENGTHS = {"inputs": 32, "targets": 32}
PRODUCED = [0]  # examples the counted task's source has produced in this process


def _count(text):
    PRODUCED[0] += 1
    return text


def _register() -> None:
    def fn(split, shuffle_files, seed=None):
        del shuffle_files, seed
        src = testing_tasks.sentences(split)
        ds = tf.data.Dataset.from_tensor_slices({"inputs": src, "targets": src})
        return ds.map(lambda ex: {**ex, "inputs": tf.ensure_shape(
            tf.numpy_function(_count, [ex["inputs"]], tf.string, stateful=False), [])})

    if COUNTED_TASK not in seqio.TaskRegistry.names():
        features = {k: seqio.Feature(testing_tasks.VOCAB, add_eos=True)
                    for k in ("inputs", "targets")}
        seqio.TaskRegistry.add(
            COUNTED_TASK, source=seqio.FunctionDataSource(fn, splits=("train",)),
            preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
            output_features=features, shuffle_buffer_size=1000)


_register()

RANDOM_TASK = "xitt_test_copy_random_crop"


def _register_random() -> None:
    def crop(ds):  # a stateful random op: its draws are not part of a saved iterator state
        return ds.map(lambda ex: {**ex, "inputs": tf.strings.substr(
            ex["inputs"], 0, tf.random.uniform([], 2, 12, tf.int32))})

    if RANDOM_TASK not in seqio.TaskRegistry.names():
        features = {k: seqio.Feature(testing_tasks.VOCAB, add_eos=True)
                    for k in ("inputs", "targets")}
        fn = lambda split, shuffle_files, seed=None: tf.data.Dataset.from_tensor_slices(
            {"inputs": testing_tasks.sentences(split), "targets": testing_tasks.sentences(split)})
        seqio.TaskRegistry.add(
            RANDOM_TASK, source=seqio.FunctionDataSource(fn, splits=("train",)),
            preprocessors=[crop, seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
            output_features=features, shuffle_buffer_size=1000)


_register_random()


def _cfg(name=COUNTED_TASK, **kw) -> input_pipeline.DatasetConfig:
    return input_pipeline.DatasetConfig(name, kw.pop("lengths", LENGTHS), "train",
                                        kw.pop("batch", 8), seed=3, **kw)


def _host(batch) -> dict:
    return {k: np.asarray(v) for k, v in batch.items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _mesh():
    import jax
    return partitioning.create_mesh(devices=jax.devices()[:1])


def test_restored_stream_continues_exactly_without_replay(tmp_path):
    mesh, k, more = _mesh(), 60, 4  # 60 packed batches: past the end of the first epoch
    with input_pipeline.train_iterator(_cfg(), mesh) as it:
        stream = [_host(next(it)) for _ in range(k + more)]
    PRODUCED[0] = 0
    with input_pipeline.train_iterator(_cfg(), mesh) as it:
        next(it)
        fresh_first = PRODUCED[0]  # fills seqio's 1,000-example shuffle window first
        for _ in range(k - 1):
            next(it)
        prefix = it.save(tmp_path)
        replay_needs = PRODUCED[0]
    assert prefix == str(tmp_path / "train_ds-000-of-001")
    assert (tmp_path / "train_ds-000-of-001.index").exists()

    PRODUCED[0] = 0
    with input_pipeline.train_iterator(_cfg(), mesh, start_step=k, restore_dir=tmp_path) as it:
        resumed = [_host(next(it)) for _ in range(more)]
        assert it.restored_from == prefix and it.replayed_batches == 0
    for got, want in zip(resumed, stream[k:]):
        _assert_same(got, want)
    # The restored iterator read only what its next batches need (and prefetch): far less
    # than a fresh start's first batch, let alone the k batches a replay re-reads.
    assert fresh_first >= 1000 and replay_needs > fresh_first
    assert PRODUCED[0] < fresh_first // 2, (PRODUCED[0], fresh_first, replay_needs)


def test_missing_state_replays_with_one_warning(tmp_path, capsys):
    mesh = _mesh()
    with input_pipeline.train_iterator(_cfg(), mesh) as it:
        stream = [_host(next(it)) for _ in range(4)]
    with input_pipeline.train_iterator(_cfg(), mesh, start_step=3, restore_dir=tmp_path) as it:
        _assert_same(_host(next(it)), stream[3])
        assert it.replayed_batches == 3 and it.restored_from is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no saved input state" in err[0] and "replaying 3 batches" in err[0]


def test_state_of_another_pipeline_falls_back_to_replay(tmp_path, capsys):
    mesh = _mesh()
    with input_pipeline.train_iterator(_cfg(pack=False), mesh) as it:
        next(it)
        it.save(tmp_path)
    with input_pipeline.train_iterator(_cfg(), mesh) as it:
        want = [_host(next(it)) for _ in range(2)][1]
    with input_pipeline.train_iterator(_cfg(), mesh, start_step=1, restore_dir=tmp_path) as it:
        _assert_same(_host(next(it)), want)
        assert it.replayed_batches == 1
    assert "does not restore" in capsys.readouterr().err


def test_pipeline_with_external_state_is_not_saved(tmp_path, capsys):
    mesh = _mesh()
    with input_pipeline.train_iterator(_cfg(RANDOM_TASK), mesh) as it:
        next(it)
        assert it.save(tmp_path) is None
    assert list(tmp_path.iterdir()) == []
    err = capsys.readouterr().err
    assert "input state not saved" in err and "is stateful" in err and "will replay" in err


# The project's own training pipelines (file sources with their stateless permutation, the
# formatters' numpy_function, seqio's shuffle window, packing, mixture sampling), on the
# shipped sample data: tf.data can save them and the restored stream is the same.
@pytest.mark.parametrize("name", ["xitt.xnli.train.en", "xitt.inter.multitask"])
def test_project_training_pipelines_restore_exactly(name, tmp_path):
    import xitt_tasks  # noqa: F401  (registers the tasks; tests sit above xitt_tasks)

    mesh, k = _mesh(), 5
    cfg = _cfg(name, lengths={"inputs": 64, "targets": 16}, batch=4)
    with input_pipeline.train_iterator(cfg, mesh) as it:
        for _ in range(k):
            next(it)
        it.save(tmp_path)
        want = [_host(next(it)) for _ in range(3)]
    with input_pipeline.train_iterator(cfg, mesh, start_step=k, restore_dir=tmp_path) as it:
        got = [_host(next(it)) for _ in range(3)]
        assert it.replayed_batches == 0
    for a, b in zip(got, want):
        _assert_same(a, b)
