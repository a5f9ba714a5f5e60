"""Greedy and beam search on toy callbacks whose logits depend on a per-row cache."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import decoding

VOCAB = 6
EOS = 1


def _toy(seed: int, eos_bias: float = 0.0):
    """A Markov-ish model whose state (sum of fed tokens) lives in the cache, per row."""
    rng = np.random.default_rng(seed)
    trans = rng.normal(size=(VOCAB, VOCAB)).astype(np.float32) * 2.0
    state_term = rng.normal(size=(17, VOCAB)).astype(np.float32) * 2.0
    step_eos = np.arange(32, dtype=np.float32) * eos_bias

    def tokens_to_logits(token_ids, cache, step):
        token = token_ids[:, 0]
        acc = cache["acc"] + token
        logits = jnp.asarray(trans)[token] + jnp.asarray(state_term)[acc % 17]
        logits = logits.at[:, EOS].add(jnp.asarray(step_eos)[step])
        return logits, {"acc": acc, "index": cache["index"] + 1}

    def replay_logprobs(start_acc: int, prefix: list[int]) -> np.ndarray:
        """Log-probs of the next token after `prefix`, recomputed from scratch (no cache)."""
        acc, fed = start_acc, [0, *prefix]
        for tok in fed:
            acc += tok
        logits = trans[fed[-1]] + state_term[acc % 17]
        logits = logits.copy()
        logits[EOS] += step_eos[len(prefix)]
        return np.asarray(jax.nn.log_softmax(jnp.asarray(logits)))

    return tokens_to_logits, replay_logprobs


def _cache(batch: int):
    return {"acc": jnp.arange(batch, dtype=jnp.int32) * 5, "index": jnp.array(0, jnp.int32)}


def _sequence_logprob(replay, start_acc: int, tokens: np.ndarray) -> tuple[float, int]:
    """Summed log-prob of tokens up to EOS (or the end) and that length."""
    total, prefix = 0.0, []
    for tok in tokens:
        total += float(replay(start_acc, prefix)[tok])
        prefix.append(int(tok))
        if tok == EOS:
            break
    return total, len(prefix)


def _reference_greedy(replay, start_acc: int, length: int) -> tuple[list[int], float]:
    prefix, total = [], 0.0
    while len(prefix) < length:
        logp = replay(start_acc, prefix)
        tok = int(np.argmax(logp))
        total += float(logp[tok])
        prefix.append(tok)
        if tok == EOS:
            break
    return prefix + [0] * (length - len(prefix)), total


@pytest.mark.parametrize("eos_bias", [0.0, 0.8])
def test_greedy_matches_uncached_reference(eos_bias):
    ttl, replay = _toy(0, eos_bias)
    batch, length = 5, 9
    tokens, logprobs = jax.jit(
        lambda c: decoding.greedy_decode(ttl, c, batch, length, eos_id=EOS)
    )(_cache(batch))
    finished = 0
    for row in range(batch):
        ref_tokens, ref_logp = _reference_greedy(replay, 5 * row, length)
        np.testing.assert_array_equal(np.asarray(tokens[row]), ref_tokens)
        np.testing.assert_allclose(float(logprobs[row]), ref_logp, rtol=1e-5, atol=1e-5)
        finished += EOS in ref_tokens
    if eos_bias:
        assert finished == batch  # padding after EOS is checked by the equality above


@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("eos_bias", [0.0, 0.8])
def test_one_beam_equals_greedy(alpha, eos_bias):
    ttl, _ = _toy(1, eos_bias)
    batch, length = 4, 8
    g_tokens, g_logp = decoding.greedy_decode(ttl, _cache(batch), batch, length, eos_id=EOS)
    b_tokens, b_scores = decoding.beam_search(
        ttl, _cache(batch), batch, 1, length, alpha=alpha, eos_id=EOS
    )
    np.testing.assert_array_equal(np.asarray(b_tokens[:, 0]), np.asarray(g_tokens))
    lengths = np.array([
        list(row).index(EOS) + 1 if EOS in row else length for row in np.asarray(g_tokens)
    ])
    expected = np.asarray(g_logp) / ((5.0 + lengths) / 6.0) ** alpha
    np.testing.assert_allclose(np.asarray(b_scores[:, 0]), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("eos_bias", [0.0, 0.5])
def test_beam_scores_match_uncached_rescoring(eos_bias):
    """Every returned beam's score is its own replayed log-prob: the cache followed its beam."""
    ttl, replay = _toy(2, eos_bias)
    batch, beams, length, alpha = 3, 4, 7, 0.6
    tokens, scores = jax.jit(
        lambda c: decoding.beam_search(ttl, c, batch, beams, length, alpha=alpha, eos_id=EOS)
    )(_cache(batch))
    tokens, scores = np.asarray(tokens), np.asarray(scores)
    assert tokens.shape == (batch, beams, length) and scores.shape == (batch, beams)
    _, g_logp = decoding.greedy_decode(ttl, _cache(batch), batch, length, eos_id=EOS)
    for row in range(batch):
        assert np.all(np.diff(scores[row]) <= 0), "beams must come best first"
        assert len({tuple(t) for t in tokens[row]}) == beams, "beams must be distinct"
        for beam in range(beams):
            seq = tokens[row, beam]
            logp, n = _sequence_logprob(replay, 5 * row, seq)
            assert np.all(seq[n:] == 0), "tokens after EOS must be padding"
            expected = logp / ((5.0 + n) / 6.0) ** alpha
            np.testing.assert_allclose(scores[row, beam], expected, rtol=1e-5, atol=1e-5)


def _table_model(step_probs):
    """Next-token probabilities by last token, as logits; the cache only counts steps."""

    def tokens_to_logits(token_ids, cache, step):
        logits = jnp.log(jnp.asarray(step_probs, jnp.float32))[token_ids[:, 0]]
        return logits, {"n": cache["n"] + 1}

    return tokens_to_logits


# Rows: previous token 0 (start), 1 (EOS), 2, 3; columns: next token 0, EOS, 2, 3.
HAND_PROBS = [
    [1e-9, 0.40, 0.35, 0.25],
    [0.25, 0.25, 0.25, 0.25],
    [1e-9, 0.90, 0.05, 0.05],
    [1e-9, 0.90, 0.05, 0.05],
]


@pytest.mark.parametrize(
    "alpha,expected_tokens,expected_scores",
    [
        # alpha 0: [EOS] (log 0.4) beats [2, EOS] (log 0.35 * 0.9).
        (0.0, [[1, 0, 0], [2, 1, 0]], [math.log(0.4), math.log(0.315)]),
        # alpha 2: log 0.315 / (7/6)^2 = -0.849 beats log 0.4 / 1 = -0.916.
        (2.0, [[2, 1, 0], [1, 0, 0]], [math.log(0.315) / (7 / 6) ** 2, math.log(0.4)]),
    ],
)
def test_alpha_changes_the_best_sequence(alpha, expected_tokens, expected_scores):
    ttl = _table_model(HAND_PROBS)
    tokens, scores = decoding.beam_search(
        ttl, {"n": jnp.zeros((2,), jnp.int32)}, 2, 2, 3, alpha=alpha, eos_id=EOS
    )
    for row in range(2):
        np.testing.assert_array_equal(np.asarray(tokens[row]), expected_tokens)
        np.testing.assert_allclose(np.asarray(scores[row]), expected_scores, rtol=1e-5)


def test_early_stop_does_not_run_to_max_length():
    """Every row emits EOS at step 0, so the loop body runs once however long L is."""
    calls = []

    def ttl(token_ids, cache, step):
        jax.debug.callback(lambda s: calls.append(int(s)), step)
        logits = jnp.zeros((token_ids.shape[0], VOCAB)).at[:, EOS].set(5.0)
        return logits, cache

    tokens, _ = decoding.greedy_decode(ttl, {"x": jnp.zeros((3,))}, 3, 50, eos_id=EOS)
    jax.effects_barrier()
    assert calls == [0]
    np.testing.assert_array_equal(np.asarray(tokens[:, 0]), [EOS] * 3)
    assert not np.any(np.asarray(tokens[:, 1:]))
    calls.clear()
    decoding.beam_search(ttl, {"x": jnp.zeros((3,))}, 3, 2, 50, eos_id=EOS)
    jax.effects_barrier()
    assert calls == [0, 1]  # the second beam needs one more step to finish


def test_bad_arguments_are_named():
    ttl, _ = _toy(0)
    with pytest.raises(ValueError, match="beam_size"):
        decoding.beam_search(ttl, _cache(2), 2, 0, 4)
    with pytest.raises(ValueError, match="max_decode_len"):
        decoding.greedy_decode(ttl, _cache(2), 2, 0)


def test_greedy_choice_is_argmax_with_its_log_softmax_and_first_id_on_ties():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.standard_normal((5, 97)), jnp.float32)
    logits = logits.at[0, 10].set(9.0).at[0, 40].set(9.0)  # a tie: argmax takes id 10
    token, logp = decoding._greedy_choice(logits, 5)
    np.testing.assert_array_equal(np.asarray(token), np.asarray(jnp.argmax(logits, -1)))
    assert int(token[0]) == 10
    want = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), token[:, None], -1)[:, 0]
    np.testing.assert_allclose(np.asarray(logp), np.asarray(want), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \[4, vocab\]"):
        decoding._greedy_choice(logits, 4)
