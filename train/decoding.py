"""Model-agnostic autoregressive search: greedy and beam search over a token callback.

Both searches run one `jax.lax.while_loop` over fixed-shape state, so a jitted caller compiles
once per (batch, beam, length, vocabulary) and never syncs with the host per token. The loop
stops early once every sequence has emitted EOS (greedy) or every beam set is complete (beam).

The model is reached only through

    tokens_to_logits(token_ids [n, 1] int32, cache, step_index int32 scalar)
        -> (logits [n, vocab], new_cache)

where `cache` is any pytree whose non-scalar leaves carry the batch (or batch * beam) on axis 0;
scalar leaves (for example a flax `cache_index`) are shared and never gathered.

Conventions (t5x): token 0 is padding and the decoder start id, EOS is emitted into the output,
every position after EOS is 0. Scores are summed log-probabilities; beam search divides them by
the brevity penalty ((5 + length) / 6) ** alpha, where length counts tokens up to and including
EOS (or the full length for sequences cut at `max_decode_len`).

Beam search keeps `beam_size` live (EOS-free) hypotheses like t5x, but admits a hypothesis that
ends in EOS to the finished set only when it ranks within the top `beam_size` candidates of its
step, and a batch entry is done once it has `beam_size` finished hypotheses (fairseq's rule).
With one beam this is exactly greedy search, scores included (divided by the penalty).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Cache = Any
TokensToLogits = Callable[[jax.Array, Cache, jax.Array], tuple[jax.Array, Cache]]


def brevity_penalty(alpha: float, length: jax.Array | int) -> jax.Array:
    """GNMT length normalisation used by t5x: ((5 + length) / 6) ** alpha."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _check_lengths(batch_size: int, max_decode_len: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_decode_len < 1:
        raise ValueError(f"max_decode_len must be >= 1, got {max_decode_len}")


def _check_logits(logits: jax.Array, n: int) -> jax.Array:
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(
            f"tokens_to_logits must return logits of shape [{n}, vocab], got {logits.shape}"
        )
    return logits.astype(jnp.float32)


def _log_probs(logits: jax.Array, n: int) -> jax.Array:
    return jax.nn.log_softmax(_check_logits(logits, n), axis=-1)


def _greedy_choice(logits: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """(argmax token int32 [n], its log-probability [n]) of logits [n, vocab].

    The first index of the row maximum, found by a max and a min reduction, and the token's
    log-probability as its logit minus logsumexp: XLA:CPU fuses these two passes, where
    argmax over a log_softmax'd row is a (value, index) reduction plus a materialised
    [n, vocab] array (mT5-Small decoding 10% faster, `BENCHMARKS.md`). Ties go to the first
    id, as with argmax.
    """
    logits = _check_logits(logits, n)
    vocab = logits.shape[-1]
    top = jnp.max(logits, axis=-1, keepdims=True)
    ids = jnp.arange(vocab, dtype=jnp.int32)
    token = jnp.min(jnp.where(logits == top, ids, vocab), axis=-1)
    token = jnp.minimum(token, vocab - 1)  # a NaN row matches nothing; keep the id in range
    token_logit = jnp.take_along_axis(logits, token[:, None], axis=-1)[:, 0]
    return token, token_logit - jax.nn.logsumexp(logits, axis=-1)


def greedy_decode(
    tokens_to_logits: TokensToLogits,
    cache: Cache,
    batch_size: int,
    max_decode_len: int,
    eos_id: int = 1,
    decoder_start_id: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Argmax decoding. Returns (tokens int32 [b, L], summed log-probs float32 [b])."""
    _check_lengths(batch_size, max_decode_len)
    b, length = batch_size, max_decode_len

    def cond(state):
        i, _, _, _, done, _ = state
        return (i < length) & ~jnp.all(done)

    def body(state):
        i, last, tokens, logprobs, done, cache = state
        logits, cache = tokens_to_logits(last[:, None], cache, i)
        token, token_logp = _greedy_choice(logits, b)
        token = jnp.where(done, 0, token)
        logprobs = logprobs + jnp.where(done, 0.0, token_logp)
        tokens = tokens.at[:, i].set(token)
        done = done | (token == eos_id)
        return i + 1, token, tokens, logprobs, done, cache

    state = (
        jnp.array(0, jnp.int32),
        jnp.full((b,), decoder_start_id, jnp.int32),
        jnp.zeros((b, length), jnp.int32),
        jnp.zeros((b,), jnp.float32),
        jnp.zeros((b,), bool),
        cache,
    )
    _, _, tokens, logprobs, _, _ = jax.lax.while_loop(cond, body, state)
    return tokens, logprobs


def _expand_cache(cache: Cache, beam_size: int) -> Cache:
    """[b, ...] -> [b * beam, ...], each batch row repeated beam_size times (row-major)."""
    return jax.tree.map(lambda x: x if x.ndim == 0 else jnp.repeat(x, beam_size, axis=0), cache)


def _gather_cache(cache: Cache, flat_index: jax.Array) -> Cache:
    return jax.tree.map(lambda x: x if x.ndim == 0 else jnp.take(x, flat_index, axis=0), cache)


def beam_search(
    tokens_to_logits: TokensToLogits,
    cache: Cache,
    batch_size: int,
    beam_size: int,
    max_decode_len: int,
    alpha: float = 0.6,
    eos_id: int = 1,
    decoder_start_id: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Beam search. Returns (tokens int32 [b, beam, L], scores float32 [b, beam]), best first.

    `cache` has batch size b; it is expanded to b * beam once. Rows of the callback's batch are
    ordered batch-major (row = batch_index * beam + beam_index). Empty result slots (an entry
    with fewer distinct hypotheses than beams) score -inf.
    """
    _check_lengths(batch_size, max_decode_len)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    b, k, length = batch_size, beam_size, max_decode_len
    batch_pos = jnp.arange(b)[:, None]
    rank = jnp.arange(2 * k)[None, :]
    neg_inf = jnp.array(-jnp.inf, jnp.float32)

    def cond(state):
        i, done = state[0], state[7]
        return (i < length) & ~jnp.all(done)

    def body(state):
        i, last, live_tokens, live_logp, fin_tokens, fin_scores, fin_count, done, cache = state
        logits, cache = tokens_to_logits(last.reshape(b * k, 1), cache, i)
        logp = _log_probs(logits, b * k)
        vocab = logp.shape[-1]
        cand = (live_logp[:, :, None] + logp.reshape(b, k, vocab)).reshape(b, k * vocab)
        top_logp, top_idx = jax.lax.top_k(cand, 2 * k)
        src_beam = top_idx // vocab
        token = (top_idx % vocab).astype(jnp.int32)
        cand_tokens = live_tokens[batch_pos, src_beam].at[:, :, i].set(token)
        is_eos = token == eos_id

        # Finished set: EOS candidates ranked within the step's top k, until the entry is done.
        admit = is_eos & (rank < k) & ~done[:, None]
        new_scores = jnp.where(admit, top_logp / brevity_penalty(alpha, i + 1), neg_inf)
        all_scores = jnp.concatenate([fin_scores, new_scores], axis=1)
        all_tokens = jnp.concatenate([fin_tokens, cand_tokens], axis=1)
        fin_scores, keep = jax.lax.top_k(all_scores, k)
        fin_tokens = all_tokens[batch_pos, keep]
        fin_count = fin_count + jnp.sum(admit, axis=1)
        done = fin_count >= k

        # Live set: the best k candidates that did not end in EOS; reorder the cache once.
        live_logp, sel = jax.lax.top_k(jnp.where(is_eos, neg_inf, top_logp), k)
        live_tokens = cand_tokens[batch_pos, sel]
        last = token[batch_pos, sel]
        cache = _gather_cache(cache, (batch_pos * k + src_beam[batch_pos, sel]).reshape(b * k))
        return i + 1, last, live_tokens, live_logp, fin_tokens, fin_scores, fin_count, done, cache

    state = (
        jnp.array(0, jnp.int32),
        jnp.full((b, k), decoder_start_id, jnp.int32),
        jnp.zeros((b, k, length), jnp.int32),
        # Only beam 0 is alive at the start, so the first step does not pick k copies.
        jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, neg_inf)[None, :], (b, 1)),
        jnp.zeros((b, k, length), jnp.int32),
        jnp.full((b, k), neg_inf),
        jnp.zeros((b,), jnp.int32),
        jnp.zeros((b,), bool),
        _expand_cache(cache, k),
    )
    state = jax.lax.while_loop(cond, body, state)
    _, _, live_tokens, live_logp, fin_tokens, fin_scores, _, done, _ = state
    # Entries still open ran to max_decode_len: their live beams compete as cut sequences.
    live_scores = jnp.where(done[:, None], neg_inf, live_logp / brevity_penalty(alpha, length))
    scores, order = jax.lax.top_k(jnp.concatenate([fin_scores, live_scores], axis=1), k)
    tokens = jnp.concatenate([fin_tokens, live_tokens], axis=1)[batch_pos, order]
    return tokens, scores
