"""seqio task -> global data-sharded batches: shapes, sharding, deterministic resume,
padded evaluation and the errors."""
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from tests.train import testing_tasks
from train import input_pipeline, partitioning

LENGTHS = {"inputs": 32, "targets": 32}


def _cfg(**kw) -> input_pipeline.DatasetConfig:
    args = {"mixture_or_task_name": testing_tasks.COPY_TASK, "task_feature_lengths": LENGTHS,
            "split": "train", "global_batch_size": 8, "seed": 3}
    return input_pipeline.DatasetConfig(**{**args, **kw})


def _host(batch) -> dict:
    return {k: np.asarray(v) for k, v in batch.items()}


def test_global_batches_are_sharded_over_data():
    mesh = partitioning.create_mesh(data_axis_size=2, model_axis_size=4)
    batch = next(input_pipeline.train_iterator(_cfg(), mesh))
    assert set(batch) >= {"encoder_input_tokens", "decoder_input_tokens",
                          "decoder_target_tokens", "decoder_loss_weights",
                          "encoder_segment_ids", "decoder_segment_ids"}  # packed
    for x in batch.values():
        assert x.shape == (8, 32)
        assert x.sharding.spec == PartitionSpec("data")
    host = _host(batch)
    # decoder inputs are the targets shifted right within each packed segment
    first = host["decoder_target_tokens"][0]
    assert host["decoder_input_tokens"][0][0] == 0
    assert host["decoder_input_tokens"][0][1] == first[0]


def test_start_step_skips_exactly_that_many_batches():
    mesh = partitioning.create_mesh(devices=jax.devices()[:1])
    stream = input_pipeline.train_iterator(_cfg(), mesh)
    batches = [_host(next(stream)) for _ in range(3)]
    resumed = _host(next(input_pipeline.train_iterator(_cfg(), mesh, start_step=2)))
    for k in resumed:
        np.testing.assert_array_equal(resumed[k], batches[2][k])
    assert any((batches[0][k] != batches[1][k]).any() for k in resumed)
    other_seed = _host(next(input_pipeline.train_iterator(_cfg(seed=4), mesh)))
    assert any((other_seed[k] != batches[0][k]).any() for k in other_seed)


def test_eval_covers_the_split_once_with_weightless_padding():
    mesh = partitioning.create_mesh(data_axis_size=2, model_axis_size=4)
    cfg = _cfg(split="validation", shuffle=False, pack=False, global_batch_size=10)
    batches = list(input_pipeline.eval_host_batches(cfg, mesh))
    size = testing_tasks.SPLIT_SIZES["validation"]  # 48 -> 4 full batches + 8 real rows
    assert len(batches) == -(-size // 10)
    last = batches[-1]["decoder_loss_weights"]
    assert (last[size % 10:] == 0).all() and (last[: size % 10].sum(axis=1) > 0).all()
    # every target token of the split is counted exactly once (sentence bytes + EOS)
    expected = sum(len(s.encode()) + 1 for s in testing_tasks.sentences("validation"))
    assert sum(int(b["decoder_loss_weights"].sum()) for b in batches) == expected


def test_batch_must_split_over_the_data_axis():
    mesh = partitioning.create_mesh(data_axis_size=4, model_axis_size=2)
    with pytest.raises(ValueError, match=r"batch_size 6 is not divisible by the mesh's 'data' "
                                         r"axis \(4 ways"):
        next(input_pipeline.train_iterator(_cfg(global_batch_size=6), mesh))


def test_unknown_task_names_the_module_hint():
    mesh = partitioning.create_mesh(devices=jax.devices()[:1])
    with pytest.raises(ValueError, match="'no_such_task' is not registered.*"
                                         "MIXTURE_OR_TASK_MODULE"):
        next(input_pipeline.train_iterator(_cfg(mixture_or_task_name="no_such_task"), mesh))
