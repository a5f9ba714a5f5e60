"""mT5 network: t5x parameter tree, masks under packing, cached decoding, relpos, gin sizes."""
from __future__ import annotations

import dataclasses
import pathlib

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from train import network
from train.config import MT5Config
from train.relpos import relative_position_bucket

GIN_DIR = pathlib.Path(__file__).resolve().parents[2] / "gin" / "models"
TINY = MT5Config(vocab_size=2048, emb_dim=64, num_heads=4, head_dim=16, mlp_dim=128,
                 num_encoder_layers=2, num_decoder_layers=2, dtype="float32")


def _flat(tree, is_leaf=None) -> dict[str, object]:
    leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=is_leaf)
    return {"/".join(k.key for k in path): leaf for path, leaf in leaves}


def _expected_t5x_tree(cfg: MT5Config) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    """The t5x layout of shared/reference/mt5.md, written out independently of the code."""
    e, m, jk, v = cfg.emb_dim, cfg.mlp_dim, cfg.num_heads * cfg.head_dim, cfg.vocab_size
    attn = {f"{p}/kernel": ((e, jk), ("embed", "joined_kv")) for p in ("query", "key", "value")}
    attn["out/kernel"] = ((jk, e), ("joined_kv", "embed"))
    mlp = {"mlp/wi_0/kernel": ((e, m), ("embed", "mlp")),
           "mlp/wi_1/kernel": ((e, m), ("embed", "mlp")),
           "mlp/wo/kernel": ((m, e), ("mlp", "embed"))}
    norm = ((e,), ("embed",))
    relpos = ((cfg.num_heads, 32), ("heads", "relpos_buckets"))
    out = {"token_embedder/embedding": ((v, e), ("vocab", "embed")),
           "encoder/relpos_bias/rel_embedding": relpos,
           "encoder/encoder_norm/scale": norm,
           "decoder/relpos_bias/rel_embedding": relpos,
           "decoder/decoder_norm/scale": norm,
           "decoder/logits_dense/kernel": ((e, v), ("embed", "vocab"))}
    for i in range(cfg.num_encoder_layers):
        p = f"encoder/layers_{i}"
        out |= {f"{p}/pre_attention_layer_norm/scale": norm, f"{p}/pre_mlp_layer_norm/scale": norm}
        out |= {f"{p}/attention/{k}": s for k, s in attn.items()}
        out |= {f"{p}/{k}": s for k, s in mlp.items()}
    for i in range(cfg.num_decoder_layers):
        p = f"decoder/layers_{i}"
        for n in ("pre_self_attention_layer_norm", "pre_cross_attention_layer_norm",
                  "pre_mlp_layer_norm"):
            out[f"{p}/{n}/scale"] = norm
        for a in ("self_attention", "encoder_decoder_attention"):
            out |= {f"{p}/{a}/{k}": s for k, s in attn.items()}
        out |= {f"{p}/{k}": s for k, s in mlp.items()}
    return out


@pytest.fixture(scope="module")
def params():
    return network.init_params(TINY, jax.random.key(0))


def _jit(model, *, rngs: bool = False, **static):
    """model.apply jitted with its flags bound (eager flax is slow on a busy CPU)."""
    if rngs:
        return jax.jit(lambda v, rng, *a: model.apply(v, *a, rngs={"dropout": rng}, **static))
    return jax.jit(lambda v, *a: model.apply(v, *a, **static))


def _batch(rng: np.random.Generator, b: int, l_in: int, l_out: int):
    enc = jnp.asarray(rng.integers(3, TINY.vocab_size, (b, l_in)), jnp.int32)
    tgt = jnp.asarray(rng.integers(3, TINY.vocab_size, (b, l_out)), jnp.int32)
    inp = jnp.concatenate([jnp.zeros((b, 1), jnp.int32), tgt[:, :-1]], axis=1)
    return enc, inp, tgt


def test_param_tree_names_shapes_axes_are_the_t5x_tree(params):
    expected = _expected_t5x_tree(TINY)
    axes = _flat(network.param_axes(TINY), is_leaf=lambda x: isinstance(x, tuple))
    abstract = _flat(network.abstract_params(TINY))
    real = _flat(params)
    assert sorted(axes) == sorted(expected) == sorted(abstract) == sorted(real)
    for path, (shape, names) in expected.items():
        assert axes[path] == names, path
        assert abstract[path].shape == real[path].shape == shape, path
        assert real[path].dtype == jnp.float32, path


def test_initialisers_follow_t5x(params):
    layer = params["encoder"]["layers_0"]["attention"]
    key_std = float(jnp.std(layer["key"]["kernel"]))
    query_std = float(jnp.std(layer["query"]["kernel"]))
    # fan-in scaling, and the query additionally scaled by 1/sqrt(head_dim) (no logit scaling)
    assert key_std == pytest.approx(TINY.emb_dim ** -0.5, rel=0.15)
    assert query_std == pytest.approx(key_std / TINY.head_dim ** 0.5, rel=0.15)
    assert float(jnp.std(params["token_embedder"]["embedding"])) == pytest.approx(1.0, rel=0.05)
    assert np.all(np.asarray(params["encoder"]["encoder_norm"]["scale"]) == 1.0)


def test_dropout_flag(params):
    cfg = dataclasses.replace(TINY, dropout_rate=0.1)
    model = network.Transformer(cfg)
    enc, _, _ = _batch(np.random.default_rng(0), 2, 9, 6)
    on = _jit(model, rngs=True, enable_dropout=True, method=model.encode)
    off = _jit(model, rngs=True, enable_dropout=False, method=model.encode)

    def run(seed: int, enable: bool):
        return (on if enable else off)({"params": params}, jax.random.key(seed), enc)

    np.testing.assert_array_equal(run(1, False), run(2, False))
    np.testing.assert_array_equal(run(1, True), run(1, True))
    assert float(jnp.abs(run(1, True) - run(2, True)).max()) > 1e-3
    assert float(jnp.abs(run(1, True) - run(1, False)).max()) > 1e-3


def test_packed_row_equals_examples_alone(params):
    """Segment masks: two examples packed in one row behave exactly as each one alone."""
    model = network.Transformer(TINY)
    rng = np.random.default_rng(1)
    l_in, l_out = 12, 8
    (enc_a, in_a, tgt_a), (enc_b, in_b, tgt_b) = _batch(rng, 1, 5, 3), _batch(rng, 1, 4, 4)

    def pad(x, n):
        return jnp.pad(x, ((0, 0), (0, n - x.shape[1])))

    def seg(*lens, n):
        return pad(jnp.asarray([sum(([i + 1] * k for i, k in enumerate(lens)), [])]), n)

    enc_p = pad(jnp.concatenate([enc_a, enc_b], 1), l_in)
    in_p = pad(jnp.concatenate([in_a, in_b], 1), l_out)
    tgt_p = pad(jnp.concatenate([tgt_a, tgt_b], 1), l_out)
    enc_seg, dec_seg = seg(5, 4, n=l_in), seg(3, 4, n=l_out)
    pos = lambda s: jnp.asarray(np.concatenate([np.arange(k) for k in s]))[None]
    apply = _jit(model, enable_dropout=False)
    encode = _jit(model, enable_dropout=False, method=model.encode)
    packed = apply({"params": params}, enc_p, in_p, tgt_p, enc_seg, dec_seg,
                   pad(pos([5, 4]), l_in), pad(pos([3, 4]), l_out))
    encoded = encode({"params": params}, enc_p, enc_seg)
    for (enc, inp, tgt), e0, d0 in (((enc_a, in_a, tgt_a), 0, 0), ((enc_b, in_b, tgt_b), 5, 3)):
        n_in, n_out = enc.shape[1], tgt.shape[1]
        alone = apply({"params": params}, pad(enc, l_in), pad(inp, l_out), pad(tgt, l_out))
        alone_enc = encode({"params": params}, pad(enc, l_in))
        np.testing.assert_allclose(encoded[:, e0:e0 + n_in], alone_enc[:, :n_in], atol=1e-5)
        np.testing.assert_allclose(packed[:, d0:d0 + n_out], alone[:, :n_out], atol=1e-4)
    # and packing does change things when the segment ids are dropped (the test has teeth)
    unmasked = apply({"params": params}, enc_p, in_p, tgt_p)
    assert float(jnp.abs(unmasked[:, 3:7] - packed[:, 3:7]).max()) > 1e-3


@pytest.mark.parametrize("scan", [False, True])
def test_cached_decoding_equals_teacher_forcing(scan: bool):
    cfg = dataclasses.replace(TINY, scan_layers=scan)
    params = network.init_params(cfg, jax.random.key(3))
    model = network.Transformer(cfg)
    enc, inp, tgt = _batch(np.random.default_rng(2), 3, 10, 7)
    enc = enc.at[1, 6:].set(0)  # padded encoder row: cross-attention mask in decode mode
    full = _jit(model, enable_dropout=False)({"params": params}, enc, inp, tgt)
    encoded = _jit(model, enable_dropout=False, method=model.encode)({"params": params}, enc)
    _, init = jax.eval_shape(
        _jit(model, enable_dropout=False, decode=True, mutable=["cache"], method=model.decode),
        {"params": params}, encoded, enc, jnp.zeros_like(tgt), jnp.zeros_like(tgt))
    cache = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), init["cache"])  # as t5x does
    for leaf in jax.tree.leaves(cache):
        assert leaf.ndim == 0 or leaf.shape[0] == 3  # batch first: beam search reorders it

    @jax.jit
    def step(cache, token):
        logits, new = model.apply({"params": params, "cache": cache}, encoded, enc, token, token,
                                  enable_dropout=False, decode=True, mutable=["cache"],
                                  method=model.decode)
        return logits, new["cache"]

    steps = []
    for t in range(tgt.shape[1]):
        logits, cache = step(cache, inp[:, t:t + 1])
        assert logits.shape == (3, 1, cfg.vocab_size) and logits.dtype == jnp.float32
        steps.append(logits)
    assert int(cache["decoder"]["cache_index"]) == tgt.shape[1]
    assert float(jnp.abs(jnp.concatenate(steps, axis=1) - full).max()) < 1e-5


def test_decode_step_rejects_more_than_one_token(params):
    model = network.Transformer(TINY)
    enc, inp, tgt = _batch(np.random.default_rng(0), 1, 4, 4)
    encoded = jnp.zeros((1, 4, TINY.emb_dim))
    decode = _jit(model, enable_dropout=False, decode=True, mutable=["cache"],
                  method=model.decode)
    _, init = jax.eval_shape(decode, {"params": params}, encoded, enc, inp, tgt)
    with pytest.raises(ValueError, match="one token"):
        jax.eval_shape(decode, {"params": params, "cache": init["cache"]}, encoded, enc, inp, tgt)


@pytest.mark.parametrize("bidirectional, offsets, buckets", [
    # key - query offsets; hand computed: exact below 8 (16 causal), then
    # max_exact + floor(log(n / max_exact) / log(128 / max_exact) * (buckets - max_exact))
    (True, [0, -1, -7, -20, -50, -100, -1000, 1, 3, 20, 200],
     [0, 1, 7, 10, 13, 15, 15, 17, 19, 26, 31]),
    (False, [0, -1, -15, -20, -100, -200, 3, 500],
     [0, 1, 15, 17, 30, 31, 0, 0]),
])
def test_relative_position_buckets(bidirectional, offsets, buckets):
    got = relative_position_bucket(jnp.asarray(offsets), bidirectional, 32, 128)
    assert got.tolist() == buckets


def test_bfloat16_activations_return_float32_logits():
    cfg = dataclasses.replace(TINY, dtype="bfloat16")
    params = network.abstract_params(cfg)
    model = network.Transformer(cfg)
    enc, inp, tgt = _batch(np.random.default_rng(0), 2, 5, 4)
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    encode = _jit(model, enable_dropout=False, method=model.encode)
    assert jax.eval_shape(encode, {"params": params}, enc).dtype == jnp.bfloat16
    logits = jax.eval_shape(_jit(model, enable_dropout=False), {"params": params}, enc, inp, tgt)
    assert logits.dtype == jnp.float32 and logits.shape == (2, 4, cfg.vocab_size)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="remat_policy"):
        MT5Config(remat_policy="some")
    with pytest.raises(ValueError, match="dtype"):
        MT5Config(dtype="float8")
    with pytest.raises(ValueError, match="num_heads"):
        MT5Config(num_heads=0)


@pytest.mark.parametrize("size, millions", [
    ("tiny", None), ("small", 300.2), ("base", 582.4), ("large", 1229.6), ("xl", 3742.6),
    ("xxl", 12921.1)])
def test_gin_model_files(size, millions):
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings([str(GIN_DIR / f"mt5_{size}.gin")],
                                            ["SCAN_LAYERS = True"])
        cfg = gin.query_parameter("%MODEL_CONFIG").scoped_configurable_fn()
    finally:
        gin.clear_config()
    assert isinstance(cfg, MT5Config) and cfg.scan_layers
    if millions is None:
        assert cfg == dataclasses.replace(TINY, scan_layers=True)
        return
    assert (cfg.vocab_size, cfg.head_dim, cfg.dtype) == (250112, 64, "bfloat16")
    assert round(network.num_params(cfg) / 1e6, 1) == millions


def test_runs_sharded_on_a_2x4_mesh_with_logical_rules(params):
    """Explicit 2-D kernels and activation constraints work inside a (data, model) mesh."""
    rules = [("batch", "data"), ("vocab", "model"), ("mlp", "model"), ("heads", "model"),
             ("joined_kv", "model"), ("embed", None), ("length", None),
             ("relpos_buckets", None)]
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    shardings = jax.tree.map(lambda a: NamedSharding(mesh, nn.logical_to_mesh_axes(a, rules)),
                             network.param_axes(TINY), is_leaf=lambda x: isinstance(x, tuple))
    model = network.Transformer(TINY)
    enc, inp, tgt = _batch(np.random.default_rng(4), 4, 6, 5)
    apply = _jit(model, enable_dropout=False)
    expected = apply({"params": params}, enc, inp, tgt)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        sharded = jax.device_put(params, shardings)
        batch = jax.device_put((enc, inp, tgt), NamedSharding(mesh, PartitionSpec("data")))
        logits = apply({"params": sharded}, *batch)
    kernel = sharded["decoder"]["logits_dense"]["kernel"]
    assert kernel.sharding.spec == PartitionSpec(None, "model")
    np.testing.assert_allclose(logits, expected, atol=1e-5)
