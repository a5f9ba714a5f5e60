"""Paired bootstrap over evaluation examples: estimates that carry their resamples.

Why this shape: every number of the analysis (a language's gain, a task score, a category,
overall XTREME-R, the best task, a slope) is a function of per-language metric values. If each
per-language value carries its B resampled values, drawn with the SAME example indices for every
arm (baseline, each intermediate task, each size), then any function of them applied resample by
resample gives a paired bootstrap distribution for free. Indices are a deterministic function of
(seed, task, language, n), so two arms evaluated on the same examples are always paired, and
aggregate levels resample each language/task independently, as required.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from study.db import aggregate

DEFAULT_BOOT = 1000


@dataclasses.dataclass(frozen=True)
class Est:
    """A point estimate with its bootstrap replicates (None when no per-example scores)."""

    point: float
    reps: np.ndarray | None = None

    def ci(self, level: float = 0.95) -> tuple[float, float] | None:
        return percentile_ci(self.reps, level) if self.reps is not None else None

    def __sub__(self, other: Est) -> Est:
        return combine([self, other], lambda a, b: a - b)


def combine(ests: Sequence[Est], fn: Callable[..., np.ndarray | float]) -> Est:
    """fn applied to the points and, resample by resample, to the replicates."""
    point = float(fn(*[e.point for e in ests]))
    if any(e.reps is None for e in ests):
        return Est(point, None)
    return Est(point, np.asarray(fn(*[e.reps for e in ests]), dtype=np.float64))


def mean_of(ests: Sequence[Est]) -> Est:
    if not ests:
        raise ValueError("mean_of: no estimates to average")
    return combine(list(ests), lambda *xs: sum(xs) / len(xs))


def max_of(ests: Sequence[Est]) -> Est:
    """The best of several arms, re-selected in every resample (so the CI pays for selection)."""
    return combine(list(ests), lambda *xs: np.maximum.reduce(np.broadcast_arrays(*xs)))


def percentile_ci(reps: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level {level}; expected a number in (0, 1)")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(reps, dtype=np.float64), [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def resample_indices(n: int, n_boot: int, seed: int, *key: str) -> np.ndarray:
    """[n_boot, n] indices with replacement; the same for every arm sharing (seed, key, n)."""
    if n <= 0:
        raise ValueError(f"resample_indices: {n} examples for {'/'.join(key)}; expected > 0")
    stream = zlib.crc32("\x1f".join((*key, str(n))).encode("utf-8"))
    rng = np.random.default_rng([seed, stream])
    return rng.integers(0, n, size=(n_boot, n), dtype=np.int64)


def resample_weights(n: int, n_boot: int, seed: int, *key: str) -> np.ndarray:
    """[n_boot, n] counts: how often each example is drawn in each resample.

    A resampled sum is then one matrix-vector product (counts @ scores), which is what makes
    a full study (tens of thousands of per-language metrics, 1000 resamples) cheap.
    """
    idx = resample_indices(n, n_boot, seed, *key)
    flat = (idx + np.arange(n_boot, dtype=np.int64)[:, None] * n).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def replicate(scores: np.ndarray, aggregation: str, weights: np.ndarray) -> np.ndarray:
    """The metric of each resample: [n_boot] from per-example scores and [n_boot, n] counts."""
    scores = np.asarray(scores, dtype=np.float64)
    if weights.shape[1] != scores.shape[0]:
        raise ValueError(f"replicate: {scores.shape[0]} scores for resamples of "
                         f"{weights.shape[1]} examples")
    if aggregation == "mean":
        return weights @ scores / scores.shape[0]
    if aggregation == "f1_counts":
        sums = weights @ scores
        denom = sums[:, 1] + sums[:, 2]
        return np.where(denom > 0, 200.0 * sums[:, 0] / np.where(denom > 0, denom, 1.0), 0.0)
    aggregate(scores, aggregation)  # raises the one clear error
    raise AssertionError("unreachable")


def estimate(scores: np.ndarray, aggregation: str, weights: np.ndarray | None) -> Est:
    reps = replicate(scores, aggregation, weights) if weights is not None else None
    return Est(aggregate(scores, aggregation), reps)


def paired_difference(a: np.ndarray, b: np.ndarray, *, n_boot: int = DEFAULT_BOOT,
                      seed: int = 0, level: float = 0.95,
                      aggregation: str = "mean") -> tuple[float, tuple[float, float]]:
    """metric(a) - metric(b) and its paired-bootstrap CI; a and b aligned example by example."""
    if len(a) != len(b):
        raise ValueError(f"paired_difference: arms of {len(a)} and {len(b)} examples; "
                         "expected the same examples in both")
    weights = resample_weights(len(a), n_boot, seed, "paired_difference")
    diff = estimate(a, aggregation, weights) - estimate(b, aggregation, weights)
    return diff.point, diff.ci(level)


def wls_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of weighted least squares; y may be [k] or [k, n_boot]."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sw = w.sum()
    xm = (w * x).sum() / sw
    ym = np.tensordot(w, y, axes=(0, 0)) / sw
    sxx = (w * (x - xm) ** 2).sum()
    if sxx <= 0:
        raise ValueError("wls_fit: all x values are equal; a slope needs two distinct sizes")
    slope = np.tensordot(w * (x - xm), y, axes=(0, 0)) / sxx
    return ym - slope * xm, slope
