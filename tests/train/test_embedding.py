"""Sentence embeddings from encoder layer L: the Transformer's own encoder output at L = N,
an independent layer-by-layer recomputation below it, both param layouts, both poolings."""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import embedding, network, scan
from train.attention import mask_to_bias
from train.config import MT5Config
from train.network import EncoderLayer
from train.relpos import RelativePositionBias

TINY = MT5Config(vocab_size=256, emb_dim=32, num_heads=2, head_dim=8, mlp_dim=64,
                 num_encoder_layers=3, num_decoder_layers=1, dtype="float32")


_embed = jax.jit(embedding.encoder_embeddings, static_argnums=(0,),
                 static_argnames=("layer", "pooling"))


@pytest.fixture(scope="module")
def params():
    return network.init_params(TINY, jax.random.key(0))


@pytest.fixture(scope="module")
def tokens():
    rng = np.random.default_rng(0)
    t = rng.integers(3, TINY.vocab_size, (3, 7)).astype(np.int32)
    t[1, 4:] = 0  # padding
    return jnp.asarray(t)


def _manual_hidden(params, tokens, layer: int) -> np.ndarray:
    """Residual stream after `layer` encoder layers, layer by layer (no truncation code)."""
    x = jnp.take(params["token_embedder"]["embedding"], tokens, axis=0)
    pos = jnp.arange(tokens.shape[1])
    bias = RelativePositionBias(TINY.num_heads, 32, 128, bidirectional=True).apply(
        {"params": params["encoder"]["relpos_bias"]}, pos, pos)
    valid = tokens > 0
    mask = mask_to_bias(nn.make_attention_mask(valid, valid))
    apply = jax.jit(lambda p, x: EncoderLayer(TINY).apply({"params": p}, x, mask, bias))
    for i in range(layer):
        x = apply(params["encoder"][f"layers_{i}"], x)
    return np.asarray(x)


def _mean(hidden, tokens):
    w = (np.asarray(tokens) > 0)[..., None]
    return (hidden * w).sum(1) / w.sum(1)


def test_last_layer_is_the_transformers_encoder_output(params, tokens):
    encoded = jax.jit(lambda p, t: network.Transformer(TINY).apply(
        {"params": p}, t, enable_dropout=False, method="encode"))(params, tokens)
    got = _embed(TINY, params, tokens)
    np.testing.assert_allclose(got, _mean(np.asarray(encoded), tokens), rtol=1e-5, atol=1e-5)
    first = _embed(TINY, params, tokens, pooling="first")
    np.testing.assert_allclose(first, np.asarray(encoded)[:, 0], rtol=1e-5, atol=1e-5)
    assert got.dtype == jnp.float32 and got.shape == (3, TINY.emb_dim)


@pytest.mark.parametrize("layer", [1, 2])
def test_inner_layer_is_the_residual_stream_before_any_norm(params, tokens, layer):
    want = _mean(_manual_hidden(params, tokens, layer), tokens)
    np.testing.assert_allclose(_embed(TINY, params, tokens, layer=layer), want,
                               rtol=1e-5, atol=1e-5)


def test_padding_does_not_change_the_embedding(params, tokens):
    longer = jnp.concatenate([tokens, jnp.zeros((3, 5), jnp.int32)], axis=1)
    a = _embed(TINY, params, tokens, layer=1)
    b = _embed(TINY, params, longer, layer=1)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", [2, 3])
def test_scanned_layout_gives_the_same_embeddings(params, tokens, layer):
    cfg = dataclasses.replace(TINY, scan_layers=True)
    scanned = scan.scan_params(params, cfg)
    a = _embed(TINY, params, tokens, layer=layer)
    b = _embed(cfg, scanned, tokens, layer=layer)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bad_layer_and_pooling_are_named(params, tokens):
    with pytest.raises(ValueError, match=r"layer=0: expected an int in 1\.\.3"):
        embedding.encoder_embeddings(TINY, params, tokens, layer=0)
    with pytest.raises(ValueError, match=r"layer=4"):
        embedding.encoder_embeddings(TINY, params, tokens, layer=4)
    with pytest.raises(ValueError, match="pooling='max'"):
        embedding.encoder_embeddings(TINY, params, tokens, pooling="max")
    with pytest.raises(ValueError, match="no 'encoder'"):
        embedding.encoder_embeddings(TINY, {"token_embedder": {}}, tokens)
