"""Dual encoder: the mT5 encoder tree loads unchanged, the contrastive loss equals a numpy
reference, pretrained/slot/scan conversions, the feature converter, and sharded training on the
shipped Mewsli-X English pairs reduces the loss."""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
import tensorflow as tf
from jax.sharding import NamedSharding, PartitionSpec

from train import dual_encoder as de
from train import embedding, network, optimizer, partitioning, train_state, train_step
from train.config import MT5Config

TINY = MT5Config(vocab_size=2048, emb_dim=32, num_heads=2, head_dim=8, mlp_dim=64,
                 num_encoder_layers=2, num_decoder_layers=1, dtype="float32")
MODEL = de.DualEncoderModel(TINY, projection_dim=16)


@pytest.fixture(scope="module")
def released():
    """A randomly initialised encoder-decoder tree, standing in for a released checkpoint."""
    return network.init_params(TINY, jax.random.key(0))


def _tokens(rng, rows, length, vocab=TINY.vocab_size):
    t = rng.integers(3, vocab, (rows, length)).astype(np.int32)
    t[:, length - 2:] = 0
    return jnp.asarray(t)


def test_tree_is_the_mt5_encoder_plus_a_projection(released):
    shapes = jax.tree.map(lambda x: x.shape, MODEL.abstract_params())
    want = {k: jax.tree.map(lambda x: x.shape, released[k])
            for k in ("token_embedder", "encoder")}
    assert shapes == {**want, "projection": {"kernel": (32, 16)}}
    axes = MODEL.param_axes()
    assert axes["projection"]["kernel"] == ("embed", "mlp")
    assert axes["encoder"] == network.param_axes(TINY)["encoder"]


def test_from_pretrained_embeds_like_the_released_encoder(released):
    params = MODEL.from_pretrained(released, jax.random.key(1))
    assert "decoder" not in params
    tokens = _tokens(np.random.default_rng(0), 4, 9)
    got = jax.jit(MODEL.embed)(params, tokens)
    pooled = embedding.encoder_embeddings(TINY, released, tokens)
    want = np.asarray(pooled) @ np.asarray(params["projection"]["kernel"])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="final layer only"):
        MODEL.embed(params, tokens, layer=1)


def test_from_pretrained_slot_tree_matches_a_fresh_adafactor_state(released):
    tx = optimizer.adafactor(1e-3, network.param_axes(TINY))
    released_slots = jax.eval_shape(tx.init, released).param_states
    slots = MODEL.from_pretrained(released_slots, slots=True)
    params = MODEL.abstract_params()
    fresh = jax.eval_shape(optimizer.adafactor(1e-3, MODEL.param_axes()).init, params)
    shape = lambda t: jax.tree.map(lambda x: x.shape, t)  # noqa: E731
    assert shape(slots) == shape(fresh.param_states)
    with pytest.raises(ValueError, match="slots=False"):
        MODEL.from_pretrained(released_slots, jax.random.key(0))


def test_scanned_model_loads_scans_and_unscans(released):
    scanned_model = dataclasses.replace(MODEL, config=dataclasses.replace(TINY,
                                                                          scan_layers=True))
    params = MODEL.from_pretrained(released, jax.random.key(1))
    scanned = scanned_model.scan(params)
    assert (jax.tree.map(lambda x: x.shape, scanned)
            == jax.tree.map(lambda x: x.shape, scanned_model.abstract_params()))
    back = scanned_model.unscan(scanned)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(2)
    batch = {de.LEFT: _tokens(rng, 4, 8), de.RIGHT: _tokens(rng, 4, 6)}
    loss_a, _ = jax.jit(MODEL.eval_loss_fn())(params, batch)
    loss_b, _ = jax.jit(scanned_model.eval_loss_fn())(scanned, batch)
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)


def _numpy_loss(left, right, valid, scale, bidirectional):
    logits = scale * left @ right.T
    logits = np.where(valid[None, :], logits, -np.inf)
    idx = np.flatnonzero(valid)

    def ce(lg):
        lg = lg[idx][:, idx]
        lse = np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1)) + lg.max(1)
        return lse - np.diag(lg)

    per_row = ce(logits)
    if bidirectional:
        per_row = 0.5 * (per_row + ce(np.where(valid[None, :], scale * right @ left.T,
                                                -np.inf)))
    correct = (np.argmax(logits[idx], 1) == idx).sum()
    return per_row.mean(), correct, len(idx)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_loss_equals_numpy_in_batch_softmax_and_skips_padding_rows(released, bidirectional):
    model = dataclasses.replace(MODEL, logit_scale=7.0, bidirectional=bidirectional)
    params = model.from_pretrained(released, jax.random.key(1))
    rng = np.random.default_rng(3)
    left, right = np.array(_tokens(rng, 6, 8)), np.array(_tokens(rng, 6, 6))
    left[4] = 0  # a padding row (e.g. the padded tail of an eval batch)
    batch = {de.LEFT: jnp.asarray(left), de.RIGHT: jnp.asarray(right)}
    loss, aux = jax.jit(model.loss_fn())(params, batch, None)
    embed = jax.jit(model.embed)
    emb_l = np.asarray(embed(params, batch[de.LEFT]))
    emb_r = np.asarray(embed(params, batch[de.RIGHT]))
    valid = np.array([True] * 4 + [False, True])
    want, correct, n = _numpy_loss(emb_l, emb_r, valid, 7.0, bidirectional)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    assert float(aux["loss_normalizer"]) == n == float(aux["num_examples"])
    assert float(aux["accuracy_numerator"]) == correct
    assert float(aux["num_input_tokens"]) == float((left > 0).sum())


def test_feature_converter_maps_inputs_left_and_targets_right():
    ds = tf.data.Dataset.from_tensors({"inputs": tf.constant([5, 6, 7, 1], tf.int32),
                                       "targets": tf.constant([8, 1], tf.int32)})
    out = next(MODEL.feature_converter(False)(ds, {"inputs": 6, "targets": 3})
               .as_numpy_iterator())
    assert set(out) == {de.LEFT, de.RIGHT}
    np.testing.assert_array_equal(out[de.LEFT], [5, 6, 7, 1, 0, 0])
    np.testing.assert_array_equal(out[de.RIGHT], [8, 1, 0])
    with pytest.raises(ValueError, match="pack=True is not supported"):
        MODEL.feature_converter(True)


def _mewslix_pairs(rows: int, lengths: dict[str, int]) -> dict[str, np.ndarray]:
    import xitt_tasks  # noqa: F401  (registers the tasks; tests may sit above xitt_tasks)

    task = seqio.get_mixture_or_task("xitt.mewslix.train.en")
    ds = task.get_dataset(lengths, split="train", shuffle=False, num_epochs=1)
    ds = MODEL.feature_converter(False)(ds, lengths)
    return next(ds.batch(rows).as_numpy_iterator())


@pytest.mark.slow  # ~2 min on a busy 2-core CPU (compiling the sharded step dominates)
def test_sharded_training_on_mewslix_english_pairs_reduces_the_loss():
    model = dataclasses.replace(MODEL, logit_scale=20.0)
    batch = _mewslix_pairs(16, {"inputs": 32, "targets": 32})
    assert batch[de.LEFT].shape == (16, 32) and (batch[de.RIGHT] > 0).any(1).all()
    mesh = partitioning.create_mesh(num_partitions=2)  # 4 x 2 over the 8 CPU devices
    rules = partitioning.standard_logical_axis_rules()
    axes, shapes = model.param_axes(), model.abstract_params()
    p_shard = partitioning.logical_to_sharding(axes, shapes, mesh, rules)
    tx = optimizer.adafactor(1e-2, axes)
    o_shard = optimizer.optimizer_state_shardings(axes, shapes, mesh, rules)
    replicated = NamedSharding(mesh, PartitionSpec())
    state_shard = train_state.TrainState(replicated, p_shard, o_shard)
    batch_shard = NamedSharding(mesh, PartitionSpec("data"))
    step = jax.jit(train_step.make_train_step(model.loss_fn(), tx, num_microbatches=2),
                   in_shardings=(state_shard, batch_shard, replicated),
                   out_shardings=(state_shard, replicated), donate_argnums=0)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        params = model.init_params(jax.random.key(0))
        state = jax.device_put(
            train_state.TrainState(jnp.int32(0), params, tx.init(params)), state_shard)
        batch = jax.device_put(batch, batch_shard)
        losses = []
        for _ in range(8):
            state, metrics = step(state, batch, jax.random.key(1))
            losses.append(float(metrics["loss"]))
    assert state.params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"].sharding.spec == \
        PartitionSpec(None, "model")
    assert all(np.isfinite(losses)), losses
    print("contrastive loss per step:", [round(x, 3) for x in losses])
    assert losses[-1] < 0.5 * losses[0], losses
