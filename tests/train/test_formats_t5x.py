"""t5x checkpoints: a legacy checkpoint written here straight from the format description
(msgpack + zarr via tensorstore, independent of the writer) loads identically, optimizer
statistics included; our writer's output reads back bit-identically; sharded reads; Orbax."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import tensorstore as ts
from flax import serialization
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from train import checkpoints, network, optimizer
from train.config import MT5Config
from train.formats import detect_format, load_checkpoint, report, t5x_legacy, t5x_orbax
from train.formats.result import local_indices

TINY = MT5Config(vocab_size=2048, emb_dim=64, num_heads=4, head_dim=16, mlp_dim=128,
                 num_encoder_layers=2, num_decoder_layers=2, dtype="float32")
STEP = 1_000_123


@pytest.fixture(scope="module")
def params():
    return jax.tree.map(np.asarray, network.init_params(TINY, jax.random.key(0)))


@pytest.fixture(scope="module")
def param_states(params):
    """Adafactor statistics in the optimizer's own layout, filled with distinct values."""
    state = optimizer.adafactor(1e-3, network.param_axes(TINY)).init(params)
    rng = np.random.default_rng(1)
    return jax.tree.map(lambda x: rng.random(x.shape).astype(np.float32), state.param_states)


def _write_reference_checkpoint(root, params, param_states, step):
    """A legacy t5x checkpoint built from mt5.md's description alone: every array a zarr
    (gzip) directory named by its path with '/' -> '.', the spec's kvstore path relative;
    the (1,) momentum placeholder t5x writes; bfloat16 stored natively for one array."""
    ckpt = os.path.join(root, f"checkpoint_{step}")
    os.makedirs(ckpt)
    flat = {f"target/{n}": v for n, v in report.flatten(params).items()}
    flat.update({f"state/param_states/{n}": v for n, v in report.flatten(param_states).items()})
    flat["state/param_states/decoder/decoder_norm/scale/m"] = np.zeros((1,), np.float32)
    flat["target/encoder/encoder_norm/scale"] = flat["target/encoder/encoder_norm/scale"].astype(
        ml_dtypes.bfloat16)
    written = {}
    for name, value in flat.items():
        rel = name.replace("/", ".")
        if value.size == 1:  # small leaves inline, as numpy (flax msgpack ext type)
            written[name] = value
            continue
        chunks = list(value.shape)
        chunks[0] = max(1, chunks[0] // 2)  # several chunk files per array
        meta = {"compressor": {"id": "gzip"}, "shape": list(value.shape), "chunks": chunks}
        spec = {"driver": "zarr", "dtype": np.dtype(value.dtype).name,
                "kvstore": {"driver": "file", "path": rel}, "metadata": meta}
        store = ts.open({**spec, "kvstore": {"driver": "file", "path": os.path.join(ckpt, rel)}},
                        create=True).result()
        store.write(value).result()
        written[name] = spec
    tree = {"version": 3, "optimizer": report.unflatten(
        {**written, "state/step": np.asarray(step, np.int32)})}
    with open(os.path.join(ckpt, "checkpoint"), "wb") as f:
        f.write(serialization.msgpack_serialize(tree))
    return ckpt


@pytest.fixture(scope="module")
def reference(tmp_path_factory, params, param_states):
    root = tmp_path_factory.mktemp("legacy")
    return _write_reference_checkpoint(str(root), params, param_states, STEP)


def _assert_trees_equal(got, want):
    got, want = report.flatten(got), report.flatten(want)
    assert sorted(got) == sorted(want)
    for name in want:
        g, w = np.asarray(got[name]), np.asarray(want[name])
        assert g.shape == w.shape and g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)


def test_reference_checkpoint_loads_identically(reference, params, param_states):
    loaded = t5x_legacy.read_t5x_legacy(reference)
    assert (loaded.step, loaded.optimizer_state, loaded.decay_step_offset) == (
        STEP, "restore", 0)
    want = dict(params)
    want["encoder"] = {**params["encoder"], "encoder_norm": {
        "scale": params["encoder"]["encoder_norm"]["scale"].astype(ml_dtypes.bfloat16)}}
    _assert_trees_equal(loaded.params, want)  # bf16 comes back as bf16 (native v3 storage)
    _assert_trees_equal(loaded.param_states, param_states)  # 'm' placeholder dropped


def test_target_checks_casts_and_validates_optimizer_state(reference, params, param_states):
    target = network.abstract_params(TINY)
    shapes = optimizer.adafactor_state_shapes(target, network.param_axes(TINY)).param_states
    loaded = load_checkpoint(reference, target, state_target=shapes)
    assert loaded.format == "t5x_legacy"
    assert loaded.params["encoder"]["encoder_norm"]["scale"].dtype == np.float32
    _assert_trees_equal(loaded.param_states, param_states)
    reset = load_checkpoint(reference, target, optimizer_state="reset")
    assert (reset.param_states, reset.optimizer_state, reset.decay_step_offset) == (
        None, "reset", STEP)
    _assert_trees_equal(reset.params, loaded.params)


def test_sharded_read_reads_only_the_shards(reference, params):
    mesh = jax.make_mesh((2, 4), ("data", "model"))
    sharding = NamedSharding(mesh, P("model", "data"))
    emb = jax.ShapeDtypeStruct((2048, 64), jnp.bfloat16, sharding=sharding)
    regions = local_indices(emb.shape, sharding)
    assert len(regions) == 8
    assert {tuple(s.stop - s.start for s in r) for r in regions} == {(512, 32)}
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                          network.abstract_params(TINY))
    target["token_embedder"]["embedding"] = emb
    loaded = t5x_legacy.read_t5x_legacy(reference, target, optimizer_state="reset")
    got = loaded.params["token_embedder"]["embedding"]
    assert isinstance(got, jax.Array) and got.sharding == sharding and got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(got), params["token_embedder"]["embedding"].astype(ml_dtypes.bfloat16))
    assert isinstance(loaded.params["decoder"]["logits_dense"]["kernel"], np.ndarray)


def test_writer_layout_and_identity(tmp_path, reference):
    loaded = t5x_legacy.read_t5x_legacy(reference)
    out = t5x_legacy.write_t5x_legacy(str(tmp_path), loaded.step, loaded.params,
                                      loaded.param_states)
    assert out == os.path.join(str(tmp_path), f"checkpoint_{STEP}")
    assert os.path.isfile(os.path.join(out, "target.encoder.layers_0.attention.query.kernel",
                                       ".zarray"))
    with open(os.path.join(out, "target.encoder.layers_0.attention.query.kernel",
                           ".zarray")) as f:
        assert json.load(f)["compressor"]["id"] == "gzip"
    raw = t5x_legacy.read_msgpack(out)
    assert raw["version"] == 3 and int(raw["optimizer"]["state"]["step"]) == STEP
    spec = raw["optimizer"]["target"]["decoder"]["logits_dense"]["kernel"]
    assert spec["kvstore"] == {"driver": "file", "path": "target.decoder.logits_dense.kernel"}
    assert not [d for d in os.listdir(str(tmp_path)) if ".tmp-" in d]
    again = t5x_legacy.read_t5x_legacy(out)
    assert again.step == STEP
    _assert_trees_equal(again.params, loaded.params)
    _assert_trees_equal(again.param_states, loaded.param_states)


def test_gcs_paths_map_to_the_gcs_kvstore():
    # No test can reach GCS: this pins only the path -> TensorStore spec mapping.
    ckpt = "gs://t5-data/pretrained_models/t5x/mt5_base/checkpoint_1000000"
    prefix = "pretrained_models/t5x/mt5_base/checkpoint_1000000"
    assert t5x_legacy.kvstore_spec(ckpt, "target.token_embedder.embedding") == {
        "driver": "gcs", "bucket": "t5-data", "path": f"{prefix}/target.token_embedder.embedding"}
    written_on_gcs = {"driver": "zarr", "kvstore": {"driver": "gcs", "bucket": "t5x-dummy-bucket"},
                      "path": "target.encoder.encoder_norm.scale", "metadata": {}}
    spec = t5x_legacy.resolve_spec(ckpt, written_on_gcs, "target/encoder/encoder_norm/scale")
    assert spec["kvstore"] == {
        "driver": "gcs", "bucket": "t5-data", "path": f"{prefix}/target.encoder.encoder_norm.scale"}
    assert spec["fill_missing_data_reads"] is False
    # detect_format reads the directory (no guess from the scheme): test_formats_fs.py.


def test_orbax_checkpoint_of_the_trainer(tmp_path, params, param_states):
    path = checkpoints.Checkpoints(str(tmp_path)).save(
        STEP, {"target": params, "state": {"step": np.asarray(STEP, np.int32),
                                            "param_states": param_states}})
    assert detect_format(str(path)) == "t5x_orbax"
    loaded = t5x_orbax.read_t5x_orbax(str(path))
    assert (loaded.step, loaded.optimizer_state) == (STEP, "restore")
    _assert_trees_equal(loaded.params, params)
    _assert_trees_equal(loaded.param_states, param_states)
    mesh = jax.make_mesh((2, 4), ("data", "model"))
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.bfloat16),
                          network.abstract_params(TINY))
    sharding = NamedSharding(mesh, P(None, "model"))
    target["decoder"]["logits_dense"]["kernel"] = jax.ShapeDtypeStruct(
        (64, 2048), jnp.bfloat16, sharding=sharding)
    reset = load_checkpoint(str(path), target, optimizer_state="reset")
    assert (reset.param_states, reset.decay_step_offset) == (None, STEP)
    kernel = reset.params["decoder"]["logits_dense"]["kernel"]
    assert kernel.sharding == sharding and kernel.dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(kernel), params["decoder"]["logits_dense"]["kernel"].astype(ml_dtypes.bfloat16))
