"""Estimates whose intervals cover training-seed variance and shared test items.

Why this shape: every number of the analysis (a language's gain, a task score, a category,
overall XTREME-R, a slope over sizes, the XXL forecast) is a LINEAR function of per-example
scores (micro-F1 after linearisation, `pseudo_values`). So each estimate carries its
contributions z[r, k] to the point, per training seed r (the r-th seed of every arm: pairing
baseline seed r with condition seed r is an arbitrary but valid labelling, the runs are
independent) and per test-item cluster k. Translated targets (XNLI, XQuAD, XCOPA, LAReQA) put
the same item of every language in one cluster (their files are parallel, so the position is
the English source item); elsewhere each language's items are their own clusters (MLQA's
partial parallelism is not identifiable from positional ids and is treated as independent).

Var(point) comes from the two-way crossed random-effects decomposition of z, strata = the
independently sampled item sets (a translated target, or one language of another target):

    V = V_seed + V_item - V_int   (= R*K*(MS_seed + MS_item - MS_int) with one stratum)

with the item term V_item - V_int clipped at 0 (V_seed, from the R seed totals, is unbiased
for the variance given the items, with R - 1 df) and a t multiplier with R - 1 df, which is
what keeps 2-3 seeds calibrated (proven by `python -m study simulate`).
One seed leaves seed variance unestimable: no interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

TRANSLATED = ("xnli", "xquad", "xcopa", "lareqa")
ONE_SEED = "no interval: one seed"


def pseudo_values(scores: np.ndarray, aggregation: str) -> np.ndarray:
    """Per-example values whose mean is the metric and whose sum is linear in the examples.

    'mean': the scores. 'f1_counts' (micro-F1 = 200 C / (P + G)): the first-order influence
    F + (200 c_i - F (p_i + g_i)) / mean(p + g), exact for the point, linear for the variance.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if aggregation == "mean":
        return scores
    if aggregation == "f1_counts":
        denom = scores[:, 1] + scores[:, 2]
        if denom.sum() <= 0:
            return np.zeros(len(scores))
        f1 = 200.0 * scores[:, 0].sum() / denom.sum()
        return f1 + (200.0 * scores[:, 0] - f1 * denom) / denom.mean()
    raise ValueError(f"aggregation {aggregation!r}; expected 'mean' or 'f1_counts'")


def stratum(target: str, language: str) -> str:
    """The independently sampled item set an example belongs to."""
    return target if target in TRANSLATED else f"{target}/{language}"


def cluster(target: str, example_id: str) -> str:
    """An example's item cluster inside its stratum: the id without its 'lang:' prefix for
    translated targets (position i is the same source item in every language)."""
    return example_id.split(":", 1)[-1] if target in TRANSLATED else example_id


@dataclasses.dataclass(frozen=True)
class Missing:
    """An incomplete or unavailable number, with the reason shown in the report."""

    reason: str

    @property
    def incomplete(self) -> bool:
        """True for a number the study should have but does not (yet); False for n/a."""
        return self.reason.startswith("incomplete")


@dataclasses.dataclass(frozen=True)
class Est:
    """A point with its per-(seed, item-cluster) contributions, one [R, K_h] block per item
    stratum (sum of all blocks == point); blocks None with `why` when no interval exists."""

    point: float
    blocks: Mapping[str, np.ndarray] | None = None
    why: str | None = None

    def __sub__(self, other: Est) -> Est:
        return combine([self, other], [1.0, -1.0])

    def __add__(self, other: Est) -> Est:
        return combine([self, other], [1.0, 1.0])

    @property
    def seeds(self) -> int | None:
        if not self.blocks:
            return None
        return next(iter(self.blocks.values())).shape[0]

    def spread(self) -> Spread | None:
        if self.blocks is None:
            return None
        return spread(self.blocks)

    def ci(self, level: float = 0.95) -> tuple[float, float] | None:
        s = self.spread()
        if s is None:
            return None
        half = s.t(level) * math.sqrt(s.var)
        return self.point - half, self.point + half

    def p_value(self) -> float | None:
        """Two-sided p of 'the true value is 0'."""
        s = self.spread()
        if s is None:
            return None
        from scipy import special

        if s.var <= 0:
            return 0.0 if self.point != 0 else 1.0
        return float(2 * special.stdtr(s.df, -abs(self.point) / math.sqrt(s.var)))

    def no_interval(self) -> str:
        return self.why or ""


@dataclasses.dataclass(frozen=True)
class Spread:
    var: float
    df: float

    def t(self, level: float) -> float:
        if not 0.0 < level < 1.0:
            raise ValueError(f"confidence level {level}; expected a number in (0, 1)")
        from scipy import special

        return float(special.stdtrit(self.df, 0.5 + level / 2))


def combine(ests: Sequence[Est], coefs: Sequence[float]) -> Est:
    """sum_i coefs[i] * ests[i], blocks included."""
    point = float(sum(c * e.point for c, e in zip(coefs, ests)))
    why = next((e.why for e in ests if e.blocks is None), None)
    if why is not None:
        return Est(point, None, why)
    out: dict[str, np.ndarray] = {}
    for c, e in zip(coefs, ests):
        if c == 0:
            continue
        for key, block in e.blocks.items():
            if key not in out:
                out[key] = c * block
                continue
            if out[key].shape != block.shape:
                rows = sorted({out[key].shape[0], block.shape[0]})
                if rows[0] != rows[1]:
                    return Est(point, None, f"no interval: arms with {rows[0]} and {rows[1]} "
                               f"seeds ({key})")
                return Est(point, None, f"no interval: arms scored on different items ({key})")
            out[key] = out[key] + c * block
    seeds = {b.shape[0] for b in out.values()}
    if len(seeds) > 1:
        fewest = sorted(k for k, b in out.items() if b.shape[0] == min(seeds))
        return Est(point, None, f"no interval: {', '.join(fewest)} with {min(seeds)} seed(s) "
                   f"beside parts with {max(seeds)} (seed r must be present in every part)")
    if seeds == {1}:
        return Est(point, None, ONE_SEED)
    return Est(point, out)


def mean_of(ests: Sequence[Est]) -> Est:
    if not ests:
        raise ValueError("mean_of: no estimates to average")
    return combine(list(ests), [1.0 / len(ests)] * len(ests))


def spread(blocks: Mapping[str, np.ndarray]) -> Spread:
    """Variance of sum(blocks) and its degrees of freedom (see the module docstring)."""
    z_seed = sum(b.sum(axis=1) for b in blocks.values())      # [R] seed totals
    r = len(z_seed)
    v_seed = r * float(np.var(z_seed, ddof=1))
    v_item = v_int = 0.0
    for b in blocks.values():
        n = b.shape[1]
        if n < 2:
            continue
        totals = b.sum(axis=0)                                  # [K_h] item totals
        v_item += n * float(np.var(totals, ddof=1))
        resid = (b - b.mean(axis=1, keepdims=True) - b.mean(axis=0, keepdims=True) + b.mean())
        v_int += r * n * float((resid ** 2).sum()) / ((r - 1) * (n - 1))
    # V_seed alone is unbiased for Var(point | items) with exactly R - 1 df (the seed totals
    # are independent given the items); the item term adds the items' main effects, clipped
    # at 0. The df stay R - 1: Satterthwaite's df, computed from the same noisy components,
    # grow exactly when V_seed happens to come out small, and simulated studies showed the
    # resulting intervals too narrow (coverage 92.5-92.8%).
    return Spread(v_seed + max(0.0, v_item - v_int), float(r - 1))


def arm_blocks(per_seed: Sequence[Sequence[tuple[str, np.ndarray, np.ndarray]]],
               widths: Mapping[str, int], scale: float) -> dict[str, np.ndarray]:
    """Blocks of one arm's score: per_seed[r] = [(stratum, column of each example's cluster,
    pseudo-values)], each value contributing value * scale / (n * R) to its column."""
    r_count = len(per_seed)
    out: dict[str, np.ndarray] = {}
    for r, parts in enumerate(per_seed):
        for strat, cols, values in parts:
            block = out.setdefault(strat, np.zeros((r_count, widths[strat])))
            np.add.at(block[r], cols, values * (scale / (len(values) * r_count)))
    return out
