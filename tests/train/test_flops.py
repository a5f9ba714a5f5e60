"""train.flops pins: the closed-form FLOP count equals an independent count of every matmul in
the traced train-step gradient (dot_general FLOPs summed over the jaxpr), and XLA's own cost
analysis of the unscanned compiled step (matmuls + elementwise work) is at least as large."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import flops, network, objectives
from train.config import MT5Config

TINY = MT5Config(vocab_size=512, emb_dim=32, num_heads=2, head_dim=8, mlp_dim=48,
                 num_encoder_layers=2, num_decoder_layers=3, dtype="float32")
B, LI, LT = 2, 7, 5


def _dot_flops(jaxpr) -> int:
    """2 * (output elements) * (contracted size) of every dot_general, sub-jaxprs included."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lc, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            out = eqn.outvars[0].aval.shape
            total += 2 * math.prod(out) * math.prod(lhs[d] for d in lc)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += _dot_flops(inner)
    return total


def _batch():
    rng = np.random.default_rng(0)
    targets = jnp.asarray(rng.integers(2, TINY.vocab_size, (B, LT)), jnp.int32)
    return {"encoder_input_tokens": jnp.asarray(rng.integers(2, TINY.vocab_size, (B, LI)),
                                                jnp.int32),
            "decoder_input_tokens": jnp.pad(targets[:, :-1], ((0, 0), (1, 0))),
            "decoder_target_tokens": targets,
            "decoder_loss_weights": jnp.ones((B, LT), jnp.float32)}


def _grad_fn():
    loss_fn = objectives.seq2seq_loss_fn(network.Transformer(TINY))
    return jax.grad(lambda p, b: loss_fn(p, b, None)[0])


def test_closed_form_equals_matmul_count_of_traced_gradient():
    params = network.abstract_params(TINY)
    jaxpr = jax.make_jaxpr(_grad_fn())(params, _batch())
    assert flops.train_step_flops(TINY, B, LI, LT) == _dot_flops(jaxpr.jaxpr)
    forward = jax.make_jaxpr(lambda p, b: objectives.seq2seq_loss_fn(
        network.Transformer(TINY))(p, b, None)[0])(params, _batch())
    assert flops.forward_flops(TINY, B, LI, LT).total == _dot_flops(forward.jaxpr)


def test_per_token_figures_reproduce_the_batch_count():
    per_in, per_out = flops.per_token_train(TINY, LI, LT)
    assert B * LI * per_in + B * LT * per_out == flops.train_step_flops(TINY, B, LI, LT)
    split = flops.forward_flops(TINY, B, LI, LT)
    assert split.output_layer == B * LT * 2 * TINY.emb_dim * TINY.vocab_size
    assert 0 < split.attention_scores < split.encoder + split.decoder
    six_n = 6 * network.num_params(TINY) * B * (LI + LT)  # the rule counts the embedding
    assert flops.train_step_flops(TINY, B, LI, LT) != six_n


def test_xla_cost_analysis_is_at_least_the_matmul_count():
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), network.abstract_params(TINY))
    compiled = jax.jit(_grad_fn()).lower(params, _batch()).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    ours = flops.train_step_flops(TINY, B, LI, LT)
    assert ours <= cost["flops"] < 3 * ours, (ours, cost["flops"])


def test_decode_flops_and_bad_input():
    assert flops.decode_flops(TINY, 1, LI, LT) > flops.forward_flops(TINY, 1, LI, 1).total
    with pytest.raises(ValueError, match="batch_size=0"):
        flops.train_step_flops(TINY, 0, LI, LT)


def test_summaries_log_mfu_with_the_exact_count():
    from train import summaries

    class Writer:
        def write_scalars(self, step, scalars):
            self.last = dict(scalars)

        def flush(self):
            pass

        def close(self):
            pass

    logger = summaries.TrainSummaries(
        "/nonexistent", log_every=1, encoder_params=1, decoder_params=1, num_devices=1,
        device_kind="cpu", peak_flops=1e12, writer=Writer(),
        model_config=TINY, feature_lengths={"inputs": LI, "targets": LT})
    metrics = {"loss": jnp.float32(1.0), "num_input_tokens": jnp.float32(B * LI),
               "num_target_tokens": jnp.float32(B * LT)}
    logger.add(0, metrics)
    scalars = logger.add(1, metrics)
    seconds = scalars["seconds_per_step"]
    want = flops.train_step_flops(TINY, B, LI, LT) / seconds
    assert scalars["model_flops_per_second"] == pytest.approx(want, rel=1e-6)
    assert scalars["mfu"] == pytest.approx(want / 1e12, rel=1e-6)


def test_importing_summaries_does_not_load_tensorflow():
    import subprocess
    import sys

    code = ("import sys, train.summaries, train.flops; "
            "sys.exit(1 if 'tensorflow' in sys.modules or 'clu' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
