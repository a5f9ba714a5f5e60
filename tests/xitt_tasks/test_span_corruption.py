"""Span corruption as T5/mT5 define it: noise density 0.15, mean noise span length 3, sentinels
from the end of the vocabulary in order; statistics over many examples and exact outputs for a
fixed seed are pinned."""
import numpy as np
import pytest
import seqio
import tensorflow as tf

from xitt_tasks import span_corruption as sc
from xitt_tasks import vocab

VOCAB = 2048


def _spans(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True in `mask`."""
    runs, n = [], 0
    for m in mask.tolist() + [False]:
        if m:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


def _seeds(i: int) -> tf.Tensor:
    return tf.constant([[i, 1], [i, 2]])


# Traced once (eager op-by-op calls would dominate the run time of the loops below).
_SEEDS = tf.TensorSpec([2, 2], tf.int32)
_mask = tf.function(sc.random_spans_noise_mask,
                    input_signature=[tf.TensorSpec([], tf.int32), _SEEDS])
_corrupt = tf.function(lambda tokens, seeds: sc.corrupt(tokens, seeds, VOCAB),
                       input_signature=[tf.TensorSpec([None], tf.int32), _SEEDS])


def test_chunk_lengths_match_t5():
    # T5's random_spans_helper: 512 input tokens come from chunks of 568 (targets 114);
    # mT5's 1024 from 1137 (targets 229: the 1024 x 229 loss normaliser of mt5.md).
    assert sc.chunk_length(512) == 568 and sc.lengths_after_corruption(568) == (512, 114)
    assert sc.chunk_length(1024) == 1137 and sc.lengths_after_corruption(1137) == (1024, 229)
    n = sc.chunk_length(1024, 128)  # an intermediate task's lengths: both must fit
    assert sc.lengths_after_corruption(n)[1] <= 128 < sc.lengths_after_corruption(n + 1)[1]
    with pytest.raises(ValueError, match="longer features"):
        sc.chunk_length(2, 1)


def test_noise_density_and_span_lengths_over_many_examples():
    spans, densities = [], []
    for i in range(200):
        length = 100 + 5 * i
        mask = _mask(tf.constant(length), _seeds(i)).numpy()
        assert not mask[0]  # a non-noise gap always comes first, as in T5
        noise = int(mask.sum())
        # T5's arithmetic: float32, round half to even
        assert noise == int(np.round(np.float32(length) * np.float32(0.15)))
        assert len(_spans(mask)) == int(np.round(np.float32(noise) / np.float32(3.0)))
        assert sc.lengths_after_corruption(length) == (length - noise + len(_spans(mask)) + 1,
                                                       noise + len(_spans(mask)) + 1)
        densities.append(noise / length)
        spans += _spans(mask)
    assert abs(np.mean(densities) - 0.15) < 0.002
    assert abs(np.mean(spans) - 3.0) < 0.05
    # A uniform random segmentation: span lengths are close to geometric with mean 3,
    # P(k) ~ (1/3)(2/3)^(k-1): not fixed at 3.
    spans = np.array(spans)
    for k in (1, 2, 3, 4):
        assert abs(np.mean(spans == k) - (1 / 3) * (2 / 3) ** (k - 1)) < 0.02, k
    assert spans.max() >= 10


def test_sentinels_count_down_from_the_last_id_and_the_text_is_recoverable():
    for i in range(50):
        tokens = np.arange(3, 3 + 120 + i, dtype=np.int32)
        inputs, targets = (t.numpy() for t in _corrupt(tf.constant(tokens), _seeds(i)))
        in_sent = [t for t in inputs if t >= VOCAB - 100]
        out_sent = [t for t in targets if t >= VOCAB - 100]
        assert in_sent == list(range(VOCAB - 1, VOCAB - 1 - len(in_sent), -1))
        assert targets[0] == VOCAB - 1 and out_sent[:len(in_sent)] == in_sent
        # Replacing each input sentinel by what follows it in the targets restores the text.
        spans, current = {}, None
        for t in targets:
            if t >= VOCAB - 100:
                current = spans.setdefault(int(t), [])
            else:
                current.append(int(t))
        restored = [x for t in inputs for x in (spans[int(t)] if t >= VOCAB - 100 else [t])]
        assert restored == tokens.tolist()


def test_sentinels_are_the_vocabularies_extra_ids():
    cpu = vocab.get_vocabulary("cpu")
    for k in (0, 1, 99):
        assert cpu.decode([cpu.vocab_size - 1 - k]) == f"<extra_id_{k}>"


def test_exact_output_for_a_fixed_seed():
    inputs, targets = sc.corrupt(tf.range(3, 63), tf.constant([[1, 2], [3, 4]]), VOCAB)
    assert inputs.numpy().tolist() == [*range(3, 17), 2047, *range(21, 56), 2046, 59, 60, 2045]
    assert targets.numpy().tolist() == [2047, 17, 18, 19, 20, 2046, 56, 57, 58, 2045, 61, 62]


def test_preprocessor_concatenates_splits_and_corrupts_reproducibly():
    features = {k: seqio.Feature(seqio.PassThroughVocabulary(VOCAB)) for k in ("inputs",
                                                                               "targets")}
    docs = [list(range(3, 40)), list(range(100, 130))]

    def run():
        ds = tf.data.Dataset.from_generator(
            lambda: ({"targets": d} for d in docs),
            output_signature={"targets": tf.TensorSpec([None], tf.int32)})
        with seqio.map_seed_manager(7):
            return [{k: v.tolist() for k, v in ex.items()} for ex in sc.span_corruption(
                ds, {"inputs": 24, "targets": 12}, features).as_numpy_iterator()]

    out = run()
    assert out == run()
    assert out == [
        {"inputs": [*range(3, 25), 2047], "targets": [2047, 25, 26, 27, 28]},
        {"inputs": [*range(29, 40), *range(100, 111), 2047], "targets": [2047, *range(111, 115)]},
        {"inputs": [*range(115, 128), 2047], "targets": [2047, 128, 129]},
    ]
    for ex in out:  # with EOS still to come, both fit their feature lengths
        assert len(ex["inputs"]) < 24 and len(ex["targets"]) < 12


def test_preprocessor_needs_feature_lengths():
    features = {k: seqio.Feature(seqio.PassThroughVocabulary(VOCAB)) for k in ("inputs",
                                                                               "targets")}
    ds = tf.data.Dataset.from_tensors({"targets": tf.range(3, 20)})
    with pytest.raises(ValueError, match="feature lengths"):
        sc.span_corruption(ds, None, features)
