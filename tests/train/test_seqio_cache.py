"""The trainer reads seqio's offline cache when every task has one (`use_cached=None`).

Apache Beam cannot be installed beside the pinned stack (every apache-beam release needs
protobuf<7 and pillow<13; constraints.txt pins protobuf 7.36.2 and pillow 13.0.0), so the cache
here is written without Beam, in the layout `seqio.scripts.cache_tasks_main` writes and with
the same seqio calls its `PreprocessTask` and `WriteExampleTfRecord` make per source shard
(`source.get_dataset(shard_info=...)`, `task.preprocess_precache`, `seqio.dict_to_tfexample`),
plus `info.<split>.json`, `stats.<split>.json` and `COMPLETED`. What is tested is the reading
side: a cached task gives the trainer the same batches as the uncached one.
"""
import json
import os

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf

from tests.train import testing_tasks
from train import input_pipeline, partitioning

TASK = "xitt_test_copy_cacheable"
LENGTHS = {"inputs": 32, "targets": 32}


def _register() -> seqio.Task:
    seqio.TaskRegistry.remove(TASK)

    def fn(split, shuffle_files, seed=None):
        del shuffle_files, seed
        src = testing_tasks.sentences(split)
        return tf.data.Dataset.from_tensor_slices({"inputs": src, "targets": src})

    features = {k: seqio.Feature(testing_tasks.VOCAB, add_eos=True)
                for k in ("inputs", "targets")}
    return seqio.TaskRegistry.add(
        TASK, source=seqio.FunctionDataSource(fn, splits=("train", "validation")),
        preprocessors=[seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                       seqio.preprocessors.append_eos_after_trim],
        output_features=features)


def write_cache(task: seqio.Task, cache_root: str, split: str, num_files: int = 1) -> str:
    """TFRecord shards, info, stats and COMPLETED as cache_tasks_main lays them out; with
    several files the examples go to them in contiguous runs, in source order."""
    out = os.path.join(cache_root, seqio.get_task_dir_from_name(task.name))
    tf.io.gfile.makedirs(out)
    shards = task.source.list_shards(split)
    prefix = seqio.get_cached_tfrecord_prefix(out, split)
    examples = []
    for index in range(len(shards)):
        ds = task.source.get_dataset(split=split, shuffle=False, seed=None,
                                     shard_info=seqio.ShardInfo(index, len(shards)))
        examples.extend(task.preprocess_precache(ds).as_numpy_iterator())
    for i, part in enumerate(np.array_split(np.arange(len(examples)), num_files)):
        with tf.io.TFRecordWriter(f"{prefix}-{i:05d}-of-{num_files:05d}") as writer:
            for j in part:
                writer.write(seqio.dict_to_tfexample(examples[j]).SerializeToString())
    features = {k: {"shape": [None] if np.ndim(v) else [],
                    "dtype": np.asarray(v).dtype.name if np.ndim(v) else "string"}
                for k, v in examples[0].items()}
    with open(seqio.get_cached_info_path(out, split), "w") as f:
        json.dump({"num_shards": num_files, "features": features,
                   "seqio_version": seqio.__version__}, f)
    with open(seqio.get_cached_stats_path(out, split), "w") as f:
        json.dump({"examples": len(examples)}, f)
    with open(os.path.join(out, "COMPLETED"), "w") as f:
        f.write("")
    return out


@pytest.fixture()
def cache_dirs():
    before = list(seqio.utils.get_global_cache_dirs())
    yield
    seqio.utils.set_global_cache_dirs(before)


def _batches(use_cached, count=4):
    mesh = partitioning.create_mesh(devices=jax.devices()[:1])
    cfg = input_pipeline.DatasetConfig(TASK, LENGTHS, "train", 8, shuffle=False, pack=False,
                                       use_cached=use_cached)
    with input_pipeline.train_iterator(cfg, mesh) as it:
        return [{k: np.asarray(v) for k, v in next(it).items()} for _ in range(count)]


def test_cached_task_gives_the_same_batches(tmp_path, cache_dirs):
    task = _register()
    assert input_pipeline.resolve_use_cached(TASK, None) is False  # no cache yet
    with pytest.raises(ValueError, match=rf"use_cached=True but {TASK} .* no completed seqio "
                                         "cache"):
        input_pipeline.resolve_use_cached(TASK, True)
    uncached = _batches(use_cached=False)

    out = write_cache(task, str(tmp_path), "train")
    seqio.add_global_cache_dirs([str(tmp_path)])
    assert task.cache_dir == out
    assert input_pipeline.resolve_use_cached(TASK, None) is True
    cached = _batches(use_cached=None)
    for a, b in zip(uncached, cached, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_tasks_without_a_cache_placeholder_read_on_the_fly():
    assert input_pipeline.resolve_use_cached(testing_tasks.COPY_TASK, None) is False
    with pytest.raises(ValueError, match="CacheDatasetPlaceholder"):
        input_pipeline.resolve_use_cached(testing_tasks.COPY_TASK, True)
