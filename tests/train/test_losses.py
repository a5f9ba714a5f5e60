"""Cross-entropy, z-loss, label smoothing, normalisation modes: hand-computed on a 3-id vocab."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import losses

# p = [1, 2, 3] / 6.
LOGITS = jnp.log(jnp.array([[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]]))  # [1, 2, 3]
TARGETS = jnp.array([[2, 0]])


def test_cross_entropy_with_logits_hand_computed():
    onehot = jax.nn.one_hot(TARGETS, 3)
    loss, z = losses.cross_entropy_with_logits(LOGITS, onehot, z_loss=1e-2)
    log_z = math.log(6.0)
    np.testing.assert_allclose(z, [[1e-2 * log_z**2] * 2], rtol=1e-6)
    np.testing.assert_allclose(loss, [[math.log(2.0) + 1e-2 * log_z**2,
                                       math.log(6.0) + 1e-2 * log_z**2]], rtol=1e-6)


def test_weighted_sum_and_z_loss():
    weights = jnp.array([[1.0, 0.0]])
    total, total_z, weight_sum = losses.compute_weighted_cross_entropy(
        LOGITS, TARGETS, weights, z_loss=1e-4)
    assert float(weight_sum) == 1.0
    assert float(total_z) == pytest.approx(1e-4 * math.log(6.0) ** 2, rel=1e-6)
    assert float(total) == pytest.approx(math.log(2.0) + 1e-4 * math.log(6.0) ** 2, rel=1e-6)


def test_normalisation_modes():
    weights = jnp.array([[1.0, 1.0]])
    plain = math.log(2.0) + math.log(6.0)
    total, _, ws = losses.compute_weighted_cross_entropy(LOGITS, TARGETS, weights)
    assert float(total) == pytest.approx(plain, rel=1e-6) and float(ws) == 2.0
    total, _, _ = losses.compute_weighted_cross_entropy(
        LOGITS, TARGETS, weights, loss_normalizing_factor=234496)
    assert float(total) == pytest.approx(plain / 234496, rel=1e-6)
    total, _, _ = losses.compute_weighted_cross_entropy(
        LOGITS, TARGETS, weights, loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
    assert float(total) == pytest.approx(plain / 2, rel=1e-6)
    # No real tokens: 0, not NaN.
    total, _, _ = losses.compute_weighted_cross_entropy(
        LOGITS, TARGETS, jnp.zeros((1, 2)), loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
    assert float(total) == 0.0
    with pytest.raises(ValueError, match="NUM_TOKENS"):
        losses.compute_weighted_cross_entropy(LOGITS, TARGETS, weights,
                                              loss_normalizing_factor="NUM_TOKENS")


def test_label_smoothing_t5x_style():
    ls = 0.3
    total, _, _ = losses.compute_weighted_cross_entropy(
        LOGITS[:, :1], TARGETS[:, :1], None, label_smoothing=ls)
    conf, low = 0.7, 0.15
    log_p = [math.log(1 / 6), math.log(2 / 6), math.log(3 / 6)]
    cross = -(conf * log_p[2] + low * log_p[0] + low * log_p[1])
    entropy = -(conf * math.log(conf) + 2 * low * math.log(low))
    assert float(total) == pytest.approx(cross - entropy, rel=1e-5)
    # Equal to the soft one-hot path of cross_entropy_with_logits.
    soft = jnp.full((1, 1, 3), low).at[0, 0, 2].set(conf)
    ref, _ = losses.cross_entropy_with_logits(LOGITS[:, :1], soft, 0.0)
    assert float(total) == pytest.approx(float(ref[0, 0]) - entropy, rel=1e-5)
    # A model predicting exactly the smoothed target scores 0.
    perfect = jnp.log(soft)
    total, _, _ = losses.compute_weighted_cross_entropy(perfect, TARGETS[:, :1], None,
                                                        label_smoothing=ls)
    assert abs(float(total)) < 1e-6


def test_large_logits_are_stable_and_bf16_is_upcast():
    logits = jnp.array([[[1e4, 0.0, -1e4]]], jnp.bfloat16)
    total, _, _ = losses.compute_weighted_cross_entropy(logits, jnp.array([[0]]), None)
    assert np.isfinite(float(total)) and float(total) == pytest.approx(0.0, abs=1e-6)
    grad = jax.grad(lambda x: losses.compute_weighted_cross_entropy(
        x, jnp.array([[1]]), None, z_loss=1e-4)[0])(logits.astype(jnp.float32))
    assert np.all(np.isfinite(grad))


def test_compute_metrics_counts():
    logits = jnp.array([[[0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0]]])
    metrics = losses.compute_metrics(logits, jnp.array([[1, 2, 2]]), jnp.array([[1.0, 1.0, 0.0]]))
    assert float(metrics["accuracy_correct"]) == 1.0
    assert float(metrics["weight_sum"]) == 2.0
    assert float(metrics["num_tokens"]) == 2.0
    assert float(metrics["accuracy"]) == 0.5


def test_accuracy_counts_a_tie_for_the_maximum_as_correct():
    logits = jnp.array([[[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [1.0, 3.0, 3.0]]])
    metrics = losses.compute_metrics(logits, jnp.array([[0, 1, 0]]), None)
    assert float(metrics["accuracy_correct"]) == 2.0  # both tied ids count; 1.0 < 3.0 does not


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"logits \(1, 2, 3\) and targets \(1, 3\)"):
        losses.compute_weighted_cross_entropy(LOGITS, jnp.zeros((1, 3), jnp.int32), None)
