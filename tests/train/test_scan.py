"""Layer scan and remat: layout conversion and numerically identical models."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import network
from train.config import MT5Config
from train.scan import scan_params, unscan_params

TINY = MT5Config(vocab_size=512, emb_dim=32, num_heads=2, head_dim=8, mlp_dim=64,
                 num_encoder_layers=2, num_decoder_layers=3, dtype="float32")
SCANNED = dataclasses.replace(TINY, scan_layers=True)


def _shapes(tree):
    return jax.tree.map(lambda x: (tuple(x.shape), x.dtype), tree)


@pytest.fixture(scope="module")
def params():
    return network.init_params(TINY, jax.random.key(0))


def test_scan_layout_matches_scanned_model(params):
    scanned = scan_params(params, TINY)
    assert _shapes(scanned) == _shapes(network.abstract_params(SCANNED))
    assert _shapes(scan_params(network.abstract_params(TINY), TINY)) == _shapes(scanned)
    assert scan_params(network.param_axes(TINY), TINY) == network.param_axes(SCANNED)
    assert unscan_params(network.param_axes(SCANNED), TINY) == network.param_axes(TINY)
    assert scanned["decoder"]["layers"]["mlp"]["wo"]["kernel"].shape == (3, 64, 32)
    np.testing.assert_array_equal(scanned["decoder"]["layers"]["mlp"]["wo"]["kernel"][2],
                                  params["decoder"]["layers_2"]["mlp"]["wo"]["kernel"])
    back = unscan_params(scanned, TINY)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_scan_adafactor_like_slot_dicts(params):
    """Leaves that are {v_row, v_col, v} dicts; (1,) placeholders are shared, not stacked."""
    rng = np.random.default_rng(0)

    def slots(x):
        dummy = np.zeros((1,), np.float32)
        if x.ndim == 2:
            return {"v_row": rng.normal(size=x.shape[:1]), "v_col": rng.normal(size=x.shape[1:]),
                    "v": dummy}
        return {"v_row": dummy, "v_col": dummy, "v": rng.normal(size=x.shape)}

    state = jax.tree.map(slots, params)
    scanned = scan_params(state, TINY)
    mlp = scanned["encoder"]["layers"]["mlp"]["wi_0"]["kernel"]
    assert mlp["v_row"].shape == (2, 32) and mlp["v_col"].shape == (2, 64)
    assert mlp["v"].shape == (1,)
    norm = scanned["decoder"]["layers"]["pre_mlp_layer_norm"]["scale"]
    assert norm["v"].shape == (3, 32) and norm["v_row"].shape == (1,)
    np.testing.assert_array_equal(
        mlp["v_col"][1], state["encoder"]["layers_1"]["mlp"]["wi_0"]["kernel"]["v_col"])
    back = unscan_params(scanned, TINY)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_conversion_errors_name_the_problem(params):
    broken = {**params, "encoder": {k: v for k, v in params["encoder"].items()
                                    if k != "layers_1"}}
    with pytest.raises(ValueError, match="encoder.*missing \\['layers_1'\\]"):
        scan_params(broken, TINY)
    with pytest.raises(ValueError, match="encoder/layers"):
        unscan_params(params, TINY)
    scanned = scan_params(params, TINY)
    with pytest.raises(ValueError, match="leading layer axis of 4"):
        unscan_params(scanned, dataclasses.replace(TINY, num_decoder_layers=4))


def _loss_and_logits(cfg: MT5Config):
    model = network.Transformer(cfg)
    rng = np.random.default_rng(1)
    enc = jnp.asarray(rng.integers(3, cfg.vocab_size, (2, 7)), jnp.int32).at[1, 5:].set(0)
    tgt = jnp.asarray(rng.integers(3, cfg.vocab_size, (2, 5)), jnp.int32).at[0, 4:].set(0)
    inp = jnp.concatenate([jnp.zeros((2, 1), jnp.int32), tgt[:, :-1]], axis=1)

    def loss(p):
        logits = model.apply({"params": p}, enc, inp, tgt, enable_dropout=False)
        ll = jnp.take_along_axis(jax.nn.log_softmax(logits), tgt[..., None], -1)[..., 0]
        return -jnp.sum(ll * (tgt > 0)), logits

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


@pytest.fixture(scope="module")
def reference(params):
    return _loss_and_logits(TINY)(params)


@pytest.mark.parametrize("scan, remat", [(True, "none"), (True, "full"), (False, "minimal")])
def test_scan_and_remat_give_same_logits_and_gradients(params, reference, scan, remat):
    (ref_loss, ref_logits), ref_grads = reference
    cfg = dataclasses.replace(TINY, scan_layers=scan, remat_policy=remat)
    p = scan_params(params, TINY) if scan else params
    (loss, logits), grads = _loss_and_logits(cfg)(p)
    grads = unscan_params(grads, TINY) if scan else grads
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    assert jax.tree.structure(grads) == jax.tree.structure(ref_grads)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-4)
