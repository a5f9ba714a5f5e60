"""A synthetic results database with known true scores, for the analysis and report tests."""

from collections.abc import Callable

import numpy as np

from study.analysis import TARGET_METRICS
from study.db import CellRecord, PerExample, Result, ResultsDB, aggregate

# target -> a small language set (two per target keeps tests fast)
LANGS = {"xnli": ("en", "sw"), "xcopa": ("sw", "th"), "udpos": ("en", "de"),
         "wikiann": ("en", "sw"), "xquad": ("en", "de"), "mlqa": ("en", "de"),
         "tydiqa": ("en", "sw"), "mewslix": ("en", "de"), "lareqa": ("en", "th"),
         "tatoeba": ("de", "sw")}


def _per_example(rng, target: str, metric: str, p: float, n: int) -> tuple[np.ndarray, str]:
    """Scores whose expected metric is 100 * p."""
    if target in ("udpos", "wikiann"):
        gold = rng.integers(1, 4, size=n)
        correct = rng.binomial(gold, p)
        return np.stack([correct, gold, gold], axis=1).astype(float), "f1_counts"
    return 100.0 * rng.binomial(1, p, size=n).astype(float), "mean"


def build(path, *, sizes: dict[str, int], conditions: tuple[str, ...],
          truth: Callable[[str, str, str, str], float], n: int = 200, seeds=(0,),
          targets=tuple(LANGS), incomplete: tuple[str, str, str] | None = None,
          data_source: str = "sample", seed: int = 0, langs=None,
          recipe: str = "official") -> ResultsDB:
    """truth(size, condition, target, lang) -> probability in (0, 1) (score / 100).

    `incomplete` = (size, condition, target) recorded as a failed cell."""
    rng = np.random.default_rng(seed)
    db = ResultsDB(path)
    with db.batch():
        _fill(db, rng, sizes, conditions, truth, n, seeds, targets, incomplete, data_source,
              langs or LANGS, recipe)
    return db


def _fill(db, rng, sizes, conditions, truth, n, seeds, targets, incomplete, data_source, langs,
          recipe):
    for size, params in sizes.items():
        for cond in ("baseline", *conditions):
            for target in targets:
                for s in seeds:
                    cell_id = f"{size}/{cond}/{target}/s{s}" + ("/raw" if recipe == "raw" else "")
                    db.upsert_cell(CellRecord(cell_id, "target", size, s, cond, target,
                                              params_count=params, data_source=data_source,
                                              recipe=recipe))
                    if incomplete == (size, cond, target):
                        db.mark_failed(cell_id, "RuntimeError: synthetic failure")
                        continue
                    results, per_example = [], []
                    for lang in langs[target]:
                        p = truth(size, cond, target, lang)
                        for metric in TARGET_METRICS[target]:
                            scores, agg = _per_example(rng, target, metric, p, n)
                            value = aggregate(scores, agg)
                            ids = [f"{lang}:{i}" for i in range(n)]
                            results.append(Result(lang, metric, value, n))
                            per_example.append(PerExample(lang, metric, ids, scores, agg))
                    db.record_results(cell_id, results, per_example, checkpoint_step=10,
                                      code_commit="synthetic")
