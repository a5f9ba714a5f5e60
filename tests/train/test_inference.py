"""Cached decoding and scoring on the tiny mT5 against uncached teacher-forced recomputation."""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import decoding, inference, network
from train.config import MT5Config

TINY = MT5Config(vocab_size=2048, emb_dim=64, num_heads=4, head_dim=16, mlp_dim=128,
                 num_encoder_layers=2, num_decoder_layers=2, dtype="float32",
                 param_dtype="float32")
EOS = 1
LENGTH = 6


@pytest.fixture(scope="module")
def model_and_params():
    model = network.Transformer(TINY)
    return model, network.init_params(TINY, jax.random.key(0))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    inputs = rng.integers(3, TINY.vocab_size, size=(3, 10)).astype(np.int32)
    inputs[0, 7:] = 0  # padded encoder rows exercise the cross-attention mask
    inputs[2, 4:] = 0
    return {"encoder_input_tokens": jnp.asarray(inputs)}


@pytest.fixture(scope="module")
def stepper(model_and_params):
    """Jitted (encode + init cache) and one cached decoder step, shared by the tests."""
    model, _ = model_and_params

    @jax.jit
    def start(params, inputs):
        encoded = inference.encode(model, params, inputs)
        return encoded, inference.init_cache(model, params, encoded, inputs, LENGTH)

    @jax.jit
    def step(params, encoded, inputs, token_ids, cache):
        fn = inference.make_tokens_to_logits(model, params, encoded, inputs, LENGTH)
        return fn(token_ids, cache, jnp.int32(0))

    return start, step


@pytest.fixture(scope="module")
def greedy(model_and_params, batch):
    model, params = model_and_params
    predict = jax.jit(functools.partial(inference.predict_batch, model, max_decode_len=LENGTH,
                                        return_scores=True))
    return predict(params, batch)


def _teacher_forced(tokens: np.ndarray) -> dict:
    """Decoder features for scoring `tokens` (0 after EOS) as targets."""
    inputs = np.zeros_like(tokens)
    inputs[:, 1:] = tokens[:, :-1]
    return {"decoder_input_tokens": jnp.asarray(inputs),
            "decoder_target_tokens": jnp.asarray(tokens),
            "decoder_loss_weights": jnp.asarray((tokens > 0).astype(np.float32))}


def _lengths(tokens: np.ndarray) -> np.ndarray:
    return np.array([list(r).index(EOS) + 1 if EOS in r else len(r) for r in tokens])


def _assert_no_inner_padding(tokens: np.ndarray) -> None:
    """Scoring masks target 0, so a decoded 0 before EOS would make the comparison moot."""
    for row, n in zip(tokens, _lengths(tokens)):
        assert np.all(row[:n] != 0), row


def test_cached_greedy_equals_uncached_recomputation(model_and_params, batch, stepper, greedy):
    model, params = model_and_params
    inputs = batch["encoder_input_tokens"]
    b = inputs.shape[0]
    full = jax.jit(lambda p, d: model.apply({"params": p}, inputs, d, jnp.ones_like(d),
                                            enable_dropout=False))
    # Reference: re-run the whole teacher-forced decoder on the prefix at every step.
    ref_tokens = np.zeros((b, LENGTH), np.int32)
    ref_logits = []
    done = np.zeros(b, bool)
    for i in range(LENGTH):
        dec_in = np.zeros((b, LENGTH), np.int32)
        dec_in[:, 1:i + 1] = ref_tokens[:, :i]
        logits = np.asarray(full(params, jnp.asarray(dec_in)))[:, i]
        ref_logits.append(logits)
        tok = np.where(done, 0, logits.argmax(-1))
        ref_tokens[:, i] = tok
        done |= tok == EOS

    # Cached path, one step at a time through the public callback.
    start, step = stepper
    encoded, cache = start(params, inputs)
    for i in range(LENGTH):
        prev = np.zeros((b, 1), np.int32) if i == 0 else ref_tokens[:, i - 1:i]
        logits, cache = step(params, encoded, inputs, jnp.asarray(prev), cache)
        np.testing.assert_allclose(np.asarray(logits), ref_logits[i], atol=1e-5, rtol=1e-5)

    np.testing.assert_array_equal(np.asarray(greedy[0]), ref_tokens)  # predict_batch, jitted


def test_score_batch_equals_cached_teacher_forcing(model_and_params, batch, stepper):
    model, params = model_and_params
    inputs = batch["encoder_input_tokens"]
    rng = np.random.default_rng(1)
    targets = rng.integers(2, TINY.vocab_size, size=(3, LENGTH)).astype(np.int32)
    targets[0, 3], targets[0, 4:] = EOS, 0  # a short target: padding carries no weight
    features = dict(batch, **_teacher_forced(targets))
    scores = np.asarray(jax.jit(functools.partial(inference.score_batch, model))(params,
                                                                                  features))
    # Independent path: feed the targets through the cached decoder and sum log-softmax.
    start, step = stepper
    encoded, cache = start(params, inputs)
    expected = np.zeros(3)
    dec_in = np.asarray(features["decoder_input_tokens"])
    for i in range(LENGTH):
        logits, cache = step(params, encoded, inputs, jnp.asarray(dec_in[:, i:i + 1]), cache)
        logp = np.asarray(jax.nn.log_softmax(logits))
        expected += np.where(targets[:, i] > 0, logp[np.arange(3), targets[:, i]], 0.0)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(scores))
    with pytest.raises(ValueError, match="decoder_input_tokens"):
        inference.score_batch(model, params, batch)


def test_one_beam_equals_greedy_on_the_network(model_and_params, batch, greedy):
    model, params = model_and_params
    greedy_tokens, greedy_logp = (np.asarray(x) for x in greedy)

    @jax.jit
    def one_beam(params, inputs, alpha):
        encoded = inference.encode(model, params, inputs)
        cache = inference.init_cache(model, params, encoded, inputs, LENGTH)
        step = inference.make_tokens_to_logits(model, params, encoded, inputs, LENGTH)
        return decoding.beam_search(step, cache, 3, 1, LENGTH, alpha=alpha)

    for alpha in (0.0, 0.6):
        tokens, scores = one_beam(params, batch["encoder_input_tokens"], alpha)
        np.testing.assert_array_equal(np.asarray(tokens[:, 0]), greedy_tokens)
        penalty = ((5.0 + _lengths(greedy_tokens)) / 6.0) ** alpha
        np.testing.assert_allclose(np.asarray(scores[:, 0]), greedy_logp / penalty,
                                   rtol=1e-5, atol=1e-5)


def test_beam_search_scores_are_rescored_log_probs_and_beat_greedy(model_and_params, batch,
                                                                   greedy):
    model, params = model_and_params
    greedy_tokens, greedy_logp = greedy
    predict = jax.jit(functools.partial(inference.predict_batch, model, max_decode_len=LENGTH,
                                        beam_size=4, alpha=0.0, return_scores=True))
    tokens, scores = predict(params, batch)
    tokens = np.asarray(tokens)
    assert tokens.shape == (3, LENGTH)
    assert np.all(np.asarray(scores) >= np.asarray(greedy_logp) - 1e-5)
    assert np.any(tokens != np.asarray(greedy_tokens)), "beam search found nothing new"
    _assert_no_inner_padding(tokens)
    # The beam's score must be the teacher-forced log-likelihood of its own tokens, which
    # fails if the KV cache was not reordered with the beams.
    rescored = jax.jit(functools.partial(inference.score_batch, model))(
        params, dict(batch, **_teacher_forced(tokens)))
    np.testing.assert_allclose(np.asarray(scores), np.asarray(rescored), rtol=1e-5, atol=1e-4)


def _loop_layout_copies(hlo: str, min_elements: int) -> list[str]:
    """`transpose`/`copy` instructions of at least `min_elements` inside any while body (and
    the computations it calls) of an optimised HLO module's text."""
    comps: dict[str, list[str]] = {}
    name = None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if header:
            name = header.group(1)
            comps[name] = []
        elif name:
            comps[name].append(line)
    callee = re.compile(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)")
    todo = re.findall(r"body=%?([\w.\-]+)", hlo)
    seen: set[str] = set()
    while todo:
        comp = todo.pop()
        if comp not in seen and comp in comps:
            seen.add(comp)
            todo += [c for line in comps[comp] for c in callee.findall(line)]
    found = []
    for comp in seen:
        for line in comps[comp]:
            op = re.search(r"= \w+\[([\d,]*)\]\S* (transpose|copy)\(", line)
            if op and np.prod([int(d) for d in op.group(1).split(",") if d]) >= min_elements:
                found.append(line.strip())
    return found


def test_decode_loop_reads_the_caches_in_place(model_and_params):
    """The KV cache and the encoder keys/values are stored in the layouts the attention
    matmuls read, so no step of the search's while loop re-lays-out a cache-sized tensor
    (with [batch, length, joined_kv] caches, XLA:CPU copied every layer's four per token)."""
    model, params = model_and_params
    b, input_length = 8, 24
    predict = jax.jit(functools.partial(inference.predict_batch, model, max_decode_len=LENGTH))
    hlo = predict.lower(params, {"encoder_input_tokens": jnp.ones((b, input_length), jnp.int32)}
                        ).compile().as_text()
    assert re.search(r"body=", hlo), "no while loop found in the compiled decoder"
    cache_elements = b * TINY.num_heads * TINY.head_dim * LENGTH
    assert _loop_layout_copies(hlo, cache_elements) == []
