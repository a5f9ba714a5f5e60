"""Mesh construction (three t5x vocabularies), logical axis rules, divisibility errors."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from train import partitioning as part


def test_mesh_ways():
    assert dict(part.create_mesh().shape) == {"data": 8, "model": 1}
    assert dict(part.create_mesh(num_partitions=4).shape) == {"data": 2, "model": 4}
    assert dict(part.create_mesh(model_parallel_submesh=(1, 2, 1, 1)).shape) == {
        "data": 4, "model": 2}
    assert dict(part.create_mesh(data_axis_size=2, model_axis_size=4).shape) == {
        "data": 2, "model": 4}
    assert dict(part.create_mesh(model_axis_size=8).shape) == {"data": 1, "model": 8}
    mesh = part.create_mesh(num_partitions=2, devices=jax.devices()[:4])
    assert mesh.axis_names == ("data", "model") and mesh.devices.shape == (2, 2)
    # Model-parallel neighbours are consecutive devices (a plain reshape off TPU).
    assert [d.id for d in mesh.devices[0]] == [jax.devices()[0].id, jax.devices()[1].id]


@pytest.mark.parametrize("kwargs, message", [
    ({"num_partitions": 2, "model_parallel_submesh": (1, 1, 2, 1)}, "several ways"),
    ({"num_partitions": 2, "model_axis_size": 2}, "several ways"),
    ({"data_axis_size": 3, "model_axis_size": 4}, "mesh 3x4 needs 12 devices, have 8"),
    ({"num_partitions": 3}, "num_partitions=3 does not divide the 8 devices"),
    ({"num_partitions": 0}, "num_partitions=0: expected a positive int"),
    ({"model_axis_size": -2}, "model_axis_size=-2"),
    ({"model_parallel_submesh": (1, 3, 1, 1)}, r"\(3 devices per replica\) does not divide"),
    ({"model_parallel_submesh": (2, 2)}, "expected 4 ints"),
])
def test_mesh_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        part.create_mesh(**kwargs)


def test_submesh_tiles_are_physical_blocks():
    # A 4x2x1 grid with 2 cores per chip; ids encode coordinates (x, y, core).
    grid = np.arange(16).reshape(4, 2, 1, 2)
    tiles = part.tile_by_submesh(grid, (2, 1, 1, 2))
    assert tiles.shape == (4, 4)
    # First replica: x in {0, 1}, y = 0, both cores.
    assert sorted(tiles[0]) == sorted(grid[0:2, 0, 0, :].ravel())
    # Every device in exactly one tile.
    assert sorted(tiles.ravel()) == list(range(16))
    with pytest.raises(ValueError, match=r"dim 0 \(x=3\)"):
        part.tile_by_submesh(grid, (3, 1, 1, 1))


@dataclasses.dataclass
class _FakeTpu:
    id: int
    coords: tuple
    core_on_chip: int = 0
    platform: str = "tpu"


def test_physical_grid_from_tpu_coords():
    devices = [_FakeTpu(i, (i % 2, i // 2, 0)) for i in range(8)]
    grid = part._physical_grid(devices)
    assert grid.shape == (2, 4, 1, 1)
    assert grid[1, 2, 0, 0].id == 5
    tiles = part.tile_by_submesh(grid, (2, 2, 1, 1))
    assert sorted(d.id for d in tiles[0]) == [0, 1, 2, 3]


def test_rules_match_mt5_table():
    one = dict(part.standard_logical_axis_rules("1d"))
    two = dict(part.standard_logical_axis_rules("2d"))
    for name in ("vocab", "mlp", "heads", "joined_kv"):
        assert one[name] == two[name] == "model"
    assert one["batch"] == "data" and one["embed"] is None and two["embed"] == "data"
    for name in ("kv", "length", "layers", "relpos_buckets", "mlp_activations"):
        assert one[name] is None and two[name] is None
    with pytest.raises(ValueError, match="'3d'"):
        part.standard_logical_axis_rules("3d")


def test_first_free_mesh_axis_wins():
    rules = part.standard_logical_axis_rules("2d")
    assert part.logical_to_mesh_axes(("vocab", "embed"), rules) == P("model", "data")
    # Activations: batch already took 'data', so embed is replicated.
    assert part.logical_to_mesh_axes(("batch", "length", "embed"), rules) == P(
        "data", None, None)
    act2 = part.standard_logical_axis_rules("2d", activation_partitioning_dims=2)
    assert part.logical_to_mesh_axes(("batch", "length", "embed"), act2) == P(
        "data", None, "model")
    with pytest.raises(ValueError, match="w dim 1: logical axis 'bogus' has no rule"):
        part.logical_to_mesh_axes(("embed", "bogus"), rules, "w")


def test_logical_to_sharding_and_divisibility_error():
    mesh = part.create_mesh(data_axis_size=2, model_axis_size=4)
    rules = part.standard_logical_axis_rules("2d")
    axes = {"decoder": {"layers_0": {"mlp": {"wi_0": {"kernel": ("embed", "mlp")}}}},
            "norm": ("embed",)}
    shapes = {"decoder": {"layers_0": {"mlp": {"wi_0": {"kernel": (64, 256)}}}},
              "norm": jax.ShapeDtypeStruct((64,), jnp.float32)}
    out = part.logical_to_sharding(axes, shapes, mesh, rules)
    assert out["decoder"]["layers_0"]["mlp"]["wi_0"]["kernel"].spec == P("data", "model")
    assert out["norm"].spec == P("data")
    mesh3 = part.create_mesh(model_axis_size=3, devices=jax.devices()[:6])
    shapes["decoder"]["layers_0"]["mlp"]["wi_0"]["kernel"] = (64, 2816)
    with pytest.raises(ValueError, match=(
            r"decoder/layers_0/mlp/wi_0/kernel dim 1 \(mlp=2816\) is not divisible by mesh "
            r"axis 'model' of size 3")):
        part.logical_to_sharding(axes, shapes, mesh3, rules)
    with pytest.raises(ValueError, match=r"norm: logical axes \('embed',\) do not match"):
        part.logical_to_sharding({"norm": ("embed",)}, {"norm": (2, 2)}, mesh, rules)


def test_data_sharding_places_batch_rows():
    mesh = part.create_mesh(data_axis_size=2, model_axis_size=4)
    batch = jax.device_put(jnp.arange(8 * 3).reshape(8, 3), part.data_sharding(mesh))
    shard = batch.addressable_shards[0]
    assert shard.data.shape == (4, 3)
    assert part.bytes_per_device((8, 3), jnp.float32, P("data"), mesh) == 4 * 3 * 4


def test_real_network_shards_on_2x4():
    from train import network
    from train.config import MT5Config

    cfg = MT5Config(vocab_size=512, emb_dim=64, num_heads=4, head_dim=16, mlp_dim=128,
                    num_encoder_layers=1, num_decoder_layers=1)
    mesh = part.create_mesh(data_axis_size=2, model_axis_size=4)
    out = part.logical_to_sharding(network.param_axes(cfg), network.abstract_params(cfg), mesh,
                                   part.standard_logical_axis_rules("2d"))
    assert out["token_embedder"]["embedding"].spec == P("model", "data")
    assert out["encoder"]["layers_0"]["attention"]["out"]["kernel"].spec == P("model", "data")
    assert out["encoder"]["relpos_bias"]["rel_embedding"].spec == P("model", None)


@pytest.mark.parametrize("axes", [
    ("batch", "length", "embed"), ("embed", "batch"), ("vocab", "embed"),
    ("layers", "mlp", "embed"), ("batch", "length", "mlp"), ("heads", "relpos_buckets"),
])
@pytest.mark.parametrize("partitioning, act_dims", [("1d", 1), ("2d", 1), ("2d", 2)])
def test_resolution_agrees_with_flax(axes, partitioning, act_dims):
    import flax.linen as nn

    rules = part.standard_logical_axis_rules(partitioning, act_dims)
    assert part.logical_to_mesh_axes(axes, rules) == nn.logical_to_mesh_axes(axes, rules)
