"""Does a task's vocabulary fit the model? Checked before the first step.

Vocabularies are built in one place only, `xitt_tasks/vocab.py` (the mT5 SentencePiece model
already holds its 100 sentinels: 250,100 ids, with no extra ids added). The runtime never
builds one: it receives the seqio vocabulary object of a task (train/ does not import
xitt_tasks) and checks it here. A vocabulary larger than the embedding table indexes past it
(silently, on TPU); mT5's 250,100 ids fit its 250,112 rows (padded to a multiple of 128).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MT5_ROW_PADDING = 128  # rows of padding that are normal (vocab sizes round up to 128)


def describe(vocab: Any) -> str:
    """Where a seqio vocabulary comes from, for messages."""
    path = getattr(vocab, "sentencepiece_model_file", None)
    extra = getattr(vocab, "extra_ids", 0)
    name = path or type(vocab).__name__
    return f"{name} (+{extra} extra ids)" if extra else str(name)


def check_vocab_fits_model(vocab: Any, model_vocab_size: int, *,
                           max_unused_rows: int | None = None, what: str = "the vocabulary"
                           ) -> int:
    """Raise ValueError unless every id of `vocab` (a seqio.Vocabulary) has an embedding row;
    returns its size.

    max_unused_rows: also refuse a vocabulary that leaves more rows unused (a pretrained
      checkpoint with another vocabulary: pass `MT5_ROW_PADDING`); None for models trained
      from scratch, whose tables may be larger than their vocabulary.
    """
    try:
        size = int(vocab.vocab_size)
    except Exception as e:  # noqa: BLE001  (sentencepiece raises RuntimeError/OSError)
        raise ValueError(f"{what} {describe(vocab)}: not a readable vocabulary "
                         f"({type(e).__name__}: {e})") from e
    if size > model_vocab_size:
        raise ValueError(
            f"{what} {describe(vocab)} has {size} ids but the model's vocab_size is "
            f"{model_vocab_size}: ids >= {model_vocab_size} have no embedding row. Use the "
            "checkpoint's vocabulary (for mT5: its SentencePiece model with no extra ids, "
            "250,100 ids) or a model config with a larger vocab_size.")
    if max_unused_rows is not None and model_vocab_size - size > max_unused_rows:
        raise ValueError(
            f"{what} {describe(vocab)} has {size} ids, {model_vocab_size - size} fewer than the "
            f"model's vocab_size {model_vocab_size} (at most {max_unused_rows} rows of padding "
            "expected): is this the vocabulary the checkpoint was trained with?")
    return size


def check_task_vocabularies(mixture_or_task_name: str, model_vocab_size: int, *,
                            max_unused_rows: int | None = None) -> dict[str, int]:
    """check_vocab_fits_model for every output feature of a registered seqio task or
    mixture; returns {feature: vocabulary size}."""
    import seqio

    task = seqio.get_mixture_or_task(mixture_or_task_name)
    features: Mapping[str, Any] = task.output_features
    return {name: check_vocab_fits_model(
        feature.vocabulary, model_vocab_size, max_unused_rows=max_unused_rows,
        what=f"task {mixture_or_task_name!r} feature {name!r}: vocabulary")
        for name, feature in features.items()}
