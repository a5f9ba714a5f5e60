"""The training iterator is closable: the trainer releases tf.data before exiting, and a data
error surfaces on the first next() in the caller's thread."""
import jax
import pytest

from tests.train import testing_tasks
from train import input_pipeline, partitioning


def _cfg(**kw):
    args = {"mixture_or_task_name": testing_tasks.COPY_TASK,
            "task_feature_lengths": {"inputs": 32, "targets": 32}, "split": "train",
            "global_batch_size": 8, "seed": 3}
    return input_pipeline.DatasetConfig(**{**args, **kw})


def test_close_releases_the_iterator_and_stops_it():
    mesh = partitioning.create_mesh(devices=jax.devices()[:1])
    with input_pipeline.train_iterator(_cfg(), mesh) as it:
        assert next(it)["encoder_input_tokens"].shape == (8, 32)
        assert it._it is not None
    assert it._it is None
    with pytest.raises(StopIteration):
        next(it)
    it.close()  # idempotent


def test_errors_surface_on_first_next_not_at_creation():
    mesh = partitioning.create_mesh(devices=jax.devices()[:1])
    it = input_pipeline.train_iterator(_cfg(mixture_or_task_name="no_such_task"), mesh)
    with pytest.raises(ValueError, match="'no_such_task' is not registered"):
        next(it)
    it.close()
