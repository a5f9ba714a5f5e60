"""t5x-layout Orbax checkpoints: sharded round trip, retention (last K + best), atomicity,
non-finite refusal, scanned restore and the error messages."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from train import checkpoints, network, partitioning
from train.config import MT5Config

TINY = MT5Config(vocab_size=256, emb_dim=32, mlp_dim=64, num_heads=4, head_dim=8,
                 num_encoder_layers=2, num_decoder_layers=2, dtype="float32")


def _tree(value: float, step: int = 0) -> dict:
    return {"target": {"dense": {"kernel": jnp.full((8, 4), value)}, "scale": jnp.ones(4)},
            "state": {"step": jnp.asarray(step, jnp.int32),
                      "param_states": {"dense": {"kernel": {"v": jnp.zeros((8, 4))}},
                                       "scale": {"v": jnp.zeros(4)}}}}


def _abstract_params() -> dict:
    return {"dense": {"kernel": jax.ShapeDtypeStruct((8, 4), jnp.float32)},
            "scale": jax.ShapeDtypeStruct((4,), jnp.float32)}


def test_round_trip_restores_into_target_shardings(tmp_path):
    mesh = partitioning.create_mesh(data_axis_size=2, model_axis_size=4)
    kernel = jnp.arange(32.0).reshape(8, 4)
    tree = _tree(0.0, 7)
    tree["target"]["dense"]["kernel"] = kernel
    checkpoints.Checkpoints(str(tmp_path)).save(7, tree)
    assert (tmp_path / "checkpoint_7" / "commit_success.txt").exists()
    shardings = {"dense": {"kernel": NamedSharding(mesh, PartitionSpec("data", "model"))},
                 "scale": NamedSharding(mesh, PartitionSpec())}
    params = checkpoints.load_params(str(tmp_path), _abstract_params(), shardings)
    np.testing.assert_array_equal(np.asarray(params["dense"]["kernel"]), np.asarray(kernel))
    assert params["dense"]["kernel"].sharding.spec == PartitionSpec("data", "model")
    # A checkpoint_<step> directory works as well as the model directory.
    again = checkpoints.load_params(str(tmp_path / "checkpoint_7"), _abstract_params())
    np.testing.assert_array_equal(np.asarray(again["scale"]), np.ones(4))


def test_keeps_last_k_and_the_best(tmp_path):
    ckpts = checkpoints.Checkpoints(str(tmp_path), keep=2, best_metric="loss", best_mode="min")
    losses = {1: 5.0, 2: 1.0, 3: 3.0, 4: 4.0, 5: 2.0}
    for step, loss in losses.items():
        ckpts.save(step, _tree(float(step), step), metrics={"loss": loss})
    assert checkpoints.committed_steps(str(tmp_path)) == [2, 4, 5]
    assert ckpts.best_step() == 2
    maxed = checkpoints.Checkpoints(str(tmp_path), keep=1, best_metric="loss", best_mode="max")
    maxed.save(6, _tree(6.0, 6), metrics={"loss": 0.5})
    assert checkpoints.committed_steps(str(tmp_path)) == [4, 6]  # 4: largest loss left


def test_interrupted_save_is_never_restored(tmp_path):
    ckpts = checkpoints.Checkpoints(str(tmp_path), keep=5)
    ckpts.save(5, _tree(5.0, 5))
    # A save killed mid-write leaves Orbax's temporary directory ...
    leftover = tmp_path / "checkpoint_6.orbax-checkpoint-tmp-1234567"
    leftover.mkdir()
    (leftover / "_METADATA").write_text("{}")
    # ... or a step directory without its commit markers.
    (tmp_path / "checkpoint_7").mkdir()
    (tmp_path / "checkpoint_7" / "_METADATA").write_text("{}")
    assert checkpoints.latest_step(str(tmp_path)) == 5
    params = checkpoints.load_params(str(tmp_path), _abstract_params())
    np.testing.assert_array_equal(np.asarray(params["dense"]["kernel"]), np.full((8, 4), 5.0))
    with pytest.raises(FileNotFoundError, match="checkpoint_7 is not a complete checkpoint"):
        checkpoints.load_params(str(tmp_path / "checkpoint_7"), _abstract_params())


def test_refuses_non_finite_state(tmp_path):
    ckpts = checkpoints.Checkpoints(str(tmp_path))
    ckpts.save(1, _tree(1.0, 1))
    with pytest.raises(checkpoints.NonFiniteStateError, match="checkpoint_2"):
        ckpts.save(2, _tree(float("nan"), 2))
    assert checkpoints.committed_steps(str(tmp_path)) == [1]
    assert not (tmp_path / "checkpoint_2").exists()


def test_missing_and_empty_model_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoints.load_params(str(tmp_path / "nope"), _abstract_params())
    with pytest.raises(FileNotFoundError, match="no complete checkpoint_<step> directory"):
        checkpoints.load_params(str(tmp_path), _abstract_params())


def test_incompatible_checkpoint_names_parameter_and_shapes(tmp_path):
    checkpoints.Checkpoints(str(tmp_path)).save(3, _tree(1.0, 3))
    wrong = _abstract_params()
    wrong["dense"]["kernel"] = jax.ShapeDtypeStruct((8, 6), jnp.float32)
    with pytest.raises(ValueError, match=r"dense/kernel: \[8, 4\] float32 -> \[8, 6\] float32"):
        checkpoints.load_params(str(tmp_path), wrong)


def test_scanned_model_loads_unscanned_checkpoint(tmp_path):
    params = network.init_params(TINY, jax.random.key(0))
    checkpoints.Checkpoints(str(tmp_path)).save(1, {"target": params,
                                                    "state": {"step": jnp.int32(1)}})
    scanned_cfg = MT5Config(**{**TINY.__dict__, "scan_layers": True})
    mesh = partitioning.create_mesh(data_axis_size=2, model_axis_size=4)
    rules = partitioning.standard_logical_axis_rules("2d")
    abstract = network.abstract_params(scanned_cfg)
    shardings = partitioning.logical_to_sharding(network.param_axes(scanned_cfg), abstract,
                                                 mesh, rules)
    loaded = checkpoints.load_params(str(tmp_path), abstract, shardings, config=scanned_cfg)
    kernel = loaded["encoder"]["layers"]["mlp"]["wi_0"]["kernel"]
    assert kernel.shape == (2, 32, 64)
    assert kernel.sharding.spec == shardings["encoder"]["layers"]["mlp"]["wi_0"][
        "kernel"].spec
    np.testing.assert_array_equal(np.asarray(kernel[1]),
                                  np.asarray(params["encoder"]["layers_1"]["mlp"]["wi_0"][
                                      "kernel"]))
