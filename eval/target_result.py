"""What evaluating an XTREME-R target takes and gives: its settings and per-language results.

Its own module so that both ways of scoring a target, decoding (`eval.targets`) and retrieval
(`eval.retrieval`), build the same result types without importing each other.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class TargetSettings:
    """How to evaluate: shapes, search and, for retrieval, which embedding."""

    feature_lengths: Mapping[str, int]
    batch_size: int = 32
    beam_size: int = 1
    alpha: float = 0.6
    max_examples: int | None = None
    retrieval_layer: int | None = None
    retrieval_pooling: str = "mean"


@dataclasses.dataclass(frozen=True)
class LanguageResult:
    language: str
    task: str
    metrics: dict[str, float]
    num_examples: int
    example_ids: tuple[str, ...]
    # metric -> (per-example scores, aggregation: 'mean' [n] or 'f1_counts' [n, 3])
    example_scores: dict[str, tuple[np.ndarray, str]]


@dataclasses.dataclass(frozen=True)
class TargetResult:
    target: str
    split: str
    languages: dict[str, LanguageResult]
    task_score: float | None
    info: dict[str, Any]

    def per_language_metrics(self) -> dict[str, dict[str, float]]:
        return {lang: r.metrics for lang, r in self.languages.items()}
