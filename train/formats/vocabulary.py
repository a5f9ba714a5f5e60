"""The SentencePiece vocabulary that goes with a checkpoint, checked against the model.

A vocabulary larger than the embedding table indexes past it (silently, on TPU); one much
smaller usually means the wrong vocabulary (mT5's 250,100 ids fit its 250,112 rows, padded
to a multiple of 128).
"""
from __future__ import annotations

import os
import warnings
from typing import Any

MT5_EXTRA_IDS = 100
MT5_VOCABULARY = "gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model"
_SLACK = 128  # rows of padding that are normal (vocab sizes round up to a multiple of 128)


def _exists(path: str) -> bool:
    if path.startswith("gs://"):
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return os.path.isfile(path)


def check_vocab_size(vocab_size: int, model_vocab_size: int, path: str) -> None:
    """Error when ids would overflow the embedding; warning when many rows go unused."""
    if vocab_size > model_vocab_size:
        raise ValueError(
            f"{path}: the vocabulary has {vocab_size} ids (with extra ids) but the model's "
            f"vocab_size is {model_vocab_size}; ids >= {model_vocab_size} have no embedding. "
            "Use the checkpoint's vocabulary or a config with a larger vocab_size."
        )
    if model_vocab_size - vocab_size > _SLACK:
        warnings.warn(
            f"{path}: the vocabulary has {vocab_size} ids, far fewer than the model's "
            f"vocab_size {model_vocab_size}: is this the vocabulary the checkpoint was "
            "trained with?",
            stacklevel=3,
        )


def load_vocabulary(
    path: str,
    *,
    extra_ids: int = MT5_EXTRA_IDS,
    model_vocab_size: int | None = None,
) -> Any:
    """A seqio.SentencePieceVocabulary from a local or gs:// path (read via tf.io.gfile).

    With `model_vocab_size` (config.vocab_size), checks that every id has an embedding row.
    """
    import seqio

    path = os.fspath(path)
    if not _exists(path):
        raise FileNotFoundError(f"{path}: no SentencePiece model file here.")
    vocab = seqio.SentencePieceVocabulary(path, extra_ids=extra_ids)
    try:
        size = vocab.vocab_size
    except Exception as e:  # noqa: BLE001  (sentencepiece raises RuntimeError/OSError)
        raise ValueError(f"{path}: not a readable SentencePiece model ({e}).") from e
    if model_vocab_size is not None:
        check_vocab_size(size, model_vocab_size, path)
    return vocab
