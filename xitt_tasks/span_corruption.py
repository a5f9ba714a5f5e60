"""Span corruption, T5's and mT5's pre-training objective, as a seqio preprocessor.

The algorithm is T5's (Raffel et al. 2020, section 3.1.4; `t5.data.preprocessors.span_corruption`,
which lives in the `t5` package this project cannot install): each chunk of `tokens_length`
tokens gets `round(tokens_length * 0.15)` noise tokens split into `round(noise / 3)` spans; the
span lengths and the gaps between them are uniform random segmentations, and the first span
starts after a non-noise gap. Every noise span is replaced in `inputs` by one sentinel, and
`targets` lists the sentinels each followed by the span it replaced. Sentinels are the last ids
of the vocabulary, in order: `<extra_id_0>` = vocab_size - 1, then vocab_size - 2, ... (the mT5
SentencePiece model and the CPU vocabulary with its 100 extra ids agree on this).

Pipeline (`span_corruption`, after `seqio.preprocessors.tokenize` and the cache placeholder, as
in mT5's `mc4` tasks): take one random chunk of at most 65,536 tokens of each document,
concatenate 128 documents, split the result into `tokens_length` pieces, corrupt each piece.
Randomness comes from seqio's map seeds (`seqio.map_seed_manager`), so a seeded dataset is
reproducible.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import seqio
import tensorflow as tf

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0
MAX_CHUNK = 65_536  # T5's select_random_chunk(max_length=65536)
CONCAT_DOCUMENTS = 128  # T5's reduce_concat_tokens(batch_size=128)


def lengths_after_corruption(tokens_length: int, noise_density: float = NOISE_DENSITY,
                             mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH
                             ) -> tuple[int, int]:
    """(inputs, targets) lengths, EOS included, of a corrupted chunk of `tokens_length`:
    the same float32, half-to-even arithmetic as `random_spans_noise_mask`."""
    f32 = np.float32
    noise = int(np.round(f32(tokens_length) * f32(noise_density)))
    noise = min(max(noise, 1), tokens_length - 1)
    spans = max(int(np.round(f32(noise) / f32(mean_noise_span_length))), 1)
    return tokens_length - noise + spans + 1, noise + spans + 1


def chunk_length(inputs_length: int, targets_length: int | None = None,
                 noise_density: float = NOISE_DENSITY,
                 mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> int:
    """The longest chunk whose corrupted inputs and targets fit the feature lengths.

    T5's `random_spans_helper` fits the inputs only (512 -> 568 tokens, targets 114) and
    rejects a targets length that is too short; fitting both lets an intermediate task's
    lengths (e.g. 1024 / 128) carry the objective with shorter chunks instead of failing.
    """
    fits = lambda n: all(got <= limit for got, limit in zip(
        lengths_after_corruption(n, noise_density, mean_noise_span_length),
        (inputs_length, targets_length or float("inf"))))
    if not fits(2):
        raise ValueError(f"span corruption needs longer features than inputs={inputs_length}, "
                         f"targets={targets_length}")
    n = 2
    while fits(n + 1):
        n += 1
    return n


def random_spans_noise_mask(length: tf.Tensor, seeds: tf.Tensor,
                            noise_density: float = NOISE_DENSITY,
                            mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> tf.Tensor:
    """A boolean noise mask of `length`: noise spans interleaved with non-noise gaps.

    `seeds` is a [2, 2] int tensor (one stateless seed per segmentation).
    """
    orig_length = length
    length = tf.maximum(length, 2)
    noise = tf.cast(tf.round(tf.cast(length, tf.float32) * noise_density), tf.int32)
    noise = tf.minimum(tf.maximum(noise, 1), length - 1)
    spans = tf.maximum(tf.cast(tf.round(tf.cast(noise, tf.float32) / mean_noise_span_length),
                               tf.int32), 1)

    def segmentation(num_items: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        # `spans` segments of `num_items`: choose spans - 1 of the num_items - 1 boundaries.
        first = tf.pad(seqio.utils.stateless_shuffle(
            tf.cast(tf.range(num_items - 1) < spans - 1, tf.int32), seed), [[1, 0]])
        segment = tf.cumsum(first)
        return tf.math.segment_sum(tf.ones_like(segment), segment)

    noise_lengths = segmentation(noise, seeds[0])
    gap_lengths = segmentation(length - noise, seeds[1])
    interleaved = tf.reshape(tf.stack([gap_lengths, noise_lengths], axis=1), [spans * 2])
    starts = tf.cumsum(interleaved)[:-1]
    start_indicator = tf.math.unsorted_segment_sum(tf.ones_like(starts), starts, length)
    is_noise = tf.equal(tf.cumsum(start_indicator) % 2, 1)
    return is_noise[:orig_length]


def spans_to_sentinels(tokens: tf.Tensor, mask: tf.Tensor, vocab_size: int) -> tf.Tensor:
    """Each run of masked tokens becomes one sentinel: vocab_size - 1, vocab_size - 2, ..."""
    previous = tf.pad(mask[:-1], [[1, 0]])
    first = tf.logical_and(mask, tf.logical_not(previous))
    later = tf.logical_and(mask, previous)
    sentinels = vocab_size - tf.cumsum(tf.cast(first, tokens.dtype))
    return tf.boolean_mask(tf.where(first, sentinels, tokens), tf.logical_not(later))


def corrupt(tokens: tf.Tensor, seeds: tf.Tensor, vocab_size: int,
            noise_density: float = NOISE_DENSITY,
            mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH
            ) -> tuple[tf.Tensor, tf.Tensor]:
    """(inputs, targets) of one token sequence: noise spans -> sentinels in the inputs,
    the other spans -> sentinels in the targets (so the targets list the noise spans)."""
    mask = random_spans_noise_mask(tf.size(tokens), seeds, noise_density,
                                   mean_noise_span_length)
    return (spans_to_sentinels(tokens, mask, vocab_size),
            spans_to_sentinels(tokens, tf.logical_not(mask), vocab_size))


@seqio.map_over_dataset(num_seeds=1)
def select_random_chunk(ex: Mapping[str, tf.Tensor], seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """One chunk of at most MAX_CHUNK tokens of the document, at a random chunk boundary."""
    tokens = ex["targets"]
    n = tf.size(tokens)
    chunks = (n + MAX_CHUNK - 1) // MAX_CHUNK
    start = MAX_CHUNK * tf.random.stateless_uniform([], seed, 0, tf.maximum(chunks, 1),
                                                    dtype=tf.int32)
    return {"targets": tokens[start:tf.minimum(start + MAX_CHUNK, n)]}


def concat_and_split(ds: tf.data.Dataset, length: int) -> tf.data.Dataset:
    """Concatenate CONCAT_DOCUMENTS documents and cut them into pieces of `length` tokens
    (the last piece of a group may be shorter), as T5's reduce_concat_tokens + split_tokens."""
    ds = ds.filter(lambda ex: tf.size(ex["targets"]) > 0)
    ds = ds.padded_batch(CONCAT_DOCUMENTS, padded_shapes={"targets": [-1]},
                         padding_values={"targets": tf.constant(-1, tf.int32)})

    def pieces(batch: Mapping[str, tf.Tensor]) -> tf.data.Dataset:
        flat = tf.reshape(batch["targets"], [-1])
        flat = tf.boolean_mask(flat, flat >= 0)
        pad = (-tf.size(flat)) % length
        rows = tf.reshape(tf.pad(flat, [[0, pad]], constant_values=-1), [-1, length])
        return tf.data.Dataset.from_tensor_slices(rows).map(
            lambda row: {"targets": tf.boolean_mask(row, row >= 0)})

    return ds.flat_map(pieces)


def span_corruption(dataset: tf.data.Dataset, sequence_length: Mapping[str, int],
                    output_features: Mapping[str, seqio.Feature],
                    noise_density: float = NOISE_DENSITY,
                    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> tf.data.Dataset:
    """seqio preprocessor: tokenized documents in `targets` -> span-corrupted
    `inputs`/`targets` that fit `sequence_length` with EOS appended afterwards."""
    if not sequence_length or not sequence_length.get("inputs"):
        raise ValueError(f"span corruption cuts documents to the feature lengths; got "
                         f"sequence_length={sequence_length} (pass e.g. inputs=1024, targets=229)")
    length = chunk_length(sequence_length["inputs"], sequence_length.get("targets"),
                          noise_density, mean_noise_span_length)
    vocab_size = output_features["targets"].vocabulary.vocab_size
    ds = dataset.map(lambda ex: {"targets": tf.cast(ex["targets"], tf.int32)})
    ds = concat_and_split(select_random_chunk(ds), length)

    @seqio.map_over_dataset(num_seeds=2)
    def corrupt_piece(ex: Mapping[str, tf.Tensor], seeds: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs, targets = corrupt(ex["targets"], tf.stack(seeds), vocab_size, noise_density,
                                  mean_noise_span_length)
        return {"inputs": inputs, "targets": targets}

    return corrupt_piece(ds)
