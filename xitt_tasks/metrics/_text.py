"""Decoding of the values seqio hands to metric functions (str, bytes, numpy scalars)."""

from collections.abc import Sequence
from typing import Any

import numpy as np


def to_text(value: Any, what: str) -> str:
    """Returns `value` as str; seqio targets built from TF tensors arrive as bytes."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return to_text(value.item(), what)
    raise TypeError(f"{what}: expected str or bytes, got {type(value).__name__} ({value!r:.80})")


def to_text_list(value: Any, what: str) -> list[str]:
    """Returns a sequence of str/bytes (list, tuple or 1-D numpy array) as list[str]."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(
            f"{what}: expected a list of strings, got {type(value).__name__} ({value!r:.80})")
    return [to_text(v, f"{what}[{i}]") for i, v in enumerate(value)]


def check_lengths(targets: Sequence[Any], predictions: Sequence[Any], metric: str) -> None:
    if len(targets) != len(predictions):
        raise ValueError(
            f"{metric}: got {len(targets)} targets but {len(predictions)} predictions; "
            "expected one prediction per target")
    if not targets:
        raise ValueError(f"{metric}: got no examples; expected at least one target")
