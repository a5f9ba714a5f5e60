"""The analysis: gains over the baseline, their intervals, the trend with size, the answer.

Reads only the results database (numpy, no JAX). Levels: language -> target (task score) ->
category -> overall XTREME-R, for each intermediate condition and for the best single task
per target (X-STILTs; exploratory: chosen on the data it is scored on). A (size, condition,
target) whose cells are not all done with every language is *incomplete*: it is reported as
`Missing(reason)` and every level above it is Missing too; nothing is ever averaged over what
is there.

The answer speaks of the experiment's declared primary endpoint only (the runner records it
in the database's meta under PRIMARY_META and refuses to change it once a cell has finished);
every other trend is a secondary, exploratory family with Holm-adjusted p-values.
Intervals: study/variance.py (training seeds and shared test items, t multipliers), proven
calibrated by study/simulate.py.

Score definitions are eval/xtreme_r.py's (a task score is the mean over its languages of its
metric; QA: (mean F1 + mean EM) / 2; category means; overall = mean of the four category
means), restated here so that this module stays numpy-only (importing eval pulls in
TensorFlow); tests/study/test_analysis.py pins the two as equal.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from study import language_share
from study import variance as va
from study.db import CellRecord, ResultsDB
from study.variance import Est, Missing, combine

TARGET_METRICS: dict[str, tuple[str, ...]] = {
    "xnli": ("accuracy",), "xcopa": ("accuracy",), "udpos": ("f1",), "wikiann": ("f1",),
    "xquad": ("f1", "exact_match"), "mlqa": ("f1", "exact_match"),
    "tydiqa": ("f1", "exact_match"), "mewslix": ("map@20",), "lareqa": ("map@20",),
    "tatoeba": ("accuracy",),
}
CATEGORIES: dict[str, tuple[str, ...]] = {
    "classification": ("xnli", "xcopa"), "structured_prediction": ("udpos", "wikiann"),
    "qa": ("xquad", "mlqa", "tydiqa"), "retrieval": ("mewslix", "lareqa", "tatoeba"),
}
# Exact parameter counts of the released mT5 sizes (shared/reference/mt5.md).
MT5_PARAMS = {"small": 300_176_768, "base": 582_401_280, "large": 1_229_581_312,
              "xl": 3_742_619_648, "xxl": 12_921_057_280}
BASELINE, MULTITASK, BEST = "baseline", "multitask", "best"
OVERALL = "overall"
FORECAST_SIZE = "xxl"
PRIMARY_META = "primary_endpoint"
CORRECTION = "Holm"

Value = Est | Missing
# The per-language share view lives in study/language_share.py; re-exported for the report.
MC4_FILE, MC4Size, ShareFit = (language_share.MC4_FILE, language_share.MC4Size,
                               language_share.ShareFit)
load_mc4_sizes, gain_vs_share = language_share.load_mc4_sizes, language_share.gain_vs_share


@dataclasses.dataclass(frozen=True)
class Trend:
    """Gain against log10(parameters) by OLS: slope per 10x, and the forecast of the XXL gain
    from the other sizes (selected by size name, never by a parameter threshold)."""

    slope: Est
    intercept: float
    sizes: tuple[str, ...]
    excluded: tuple[str, ...]
    forecast: Est | None
    forecast_note: str
    p_value: float | None = None
    p_adjusted: float | None = None     # Holm over the secondary family; None for the primary

    @property
    def forecast_interval(self) -> tuple[float, float] | None:
        return self.forecast.ci() if self.forecast is not None else None


@dataclasses.dataclass
class Analysis:
    sizes: list[str]                       # ordered by parameter count
    languages: dict[str, tuple[str, ...]]  # target -> languages a complete cell reports
    recipes: dict[str, str]                # target -> recipe analysed ('official' | 'raw')
    both_recipes: list[str]                # targets the study ran under both recipes
    params: dict[str, float]
    conditions: list[str]                  # intermediate conditions (no baseline)
    targets: list[str]
    cells: dict[tuple[str, str, str], list[CellRecord]]   # (size, condition, target)
    status: dict[tuple[str, str, str], Missing | None]    # None: complete
    scores: dict[tuple[str, str, str], Value]             # (size, cond|baseline, level)
    lang_gains: dict[tuple[str, str, str, str], Est]      # (size, cond, target, lang)
    gains: dict[tuple[str, str, str], Value]              # (size, cond|best, level)
    rer: dict[tuple[str, str, str], Value]                # relative error reduction, %
    best_task: dict[tuple[str, str], str]                 # (size, target) -> condition
    trends: dict[tuple[str, str], Trend | Missing]        # (cond|best, level)
    primary: tuple[str, str] | None                       # (condition, level) declared
    primary_note: str
    answer: str
    toy: bool
    sample_data: bool
    notes: list[str]
    level: float

    @property
    def levels(self) -> list[str]:
        return [*self.targets, *CATEGORIES, OVERALL]

    @property
    def view_condition(self) -> str:
        """The series the per-language view shows: the primary condition when declared."""
        if self.primary and self.primary[0] in self.conditions:
            return self.primary[0]
        return self.conditions[-1] if self.conditions else BEST

    def language_view(self, size: str, condition: str) -> dict[str, Value]:
        """Per language, the gain averaged over the targets evaluated in it; Missing when one
        of those targets is incomplete at this size for this condition."""
        out: dict[str, Value] = {}
        for lang in sorted({lg for langs in self.languages.values() for lg in langs}):
            targets = [t for t in self.targets if lang in self.languages[t]]
            bad = [t for t in targets if (size, condition, t, lang) not in self.lang_gains]
            out[lang] = (Missing(f"incomplete target(s): {', '.join(bad)}") if bad else
                         va.mean_of([self.lang_gains[(size, condition, t, lang)]
                                     for t in targets]))
        return out


def task_metrics(target: str) -> tuple[str, ...]:
    if target not in TARGET_METRICS:
        raise ValueError(f"unknown XTREME-R target {target!r}; expected one of "
                         f"{sorted(TARGET_METRICS)}")
    return TARGET_METRICS[target]


def _declared_primary(db: ResultsDB, primary) -> tuple[tuple[str, str] | None, str]:
    raw = primary or db.meta().get(PRIMARY_META)
    if raw is None:
        return None, "the database records no primary endpoint"
    spec = json.loads(raw) if isinstance(raw, str) else dict(raw)
    if spec.get("measure") != "overall_gain":
        return None, f"unknown primary measure {spec.get('measure')!r}"
    cond = spec["condition"]
    prefix = "xitt.inter."
    return (cond[len(prefix):] if cond.startswith(prefix) else cond, OVERALL), ""


def analyse(db: ResultsDB, *, level: float = 0.95, prefer: str = "official",
            primary: dict[str, str] | None = None) -> Analysis:
    """Every gain, interval, trend and forecast of the study in `db`.

    A target run under both recipes (XCOPA with/without SIQA, Tatoeba with the SQuAD-trained
    or the pretrained encoder) is analysed under `prefer`; one run under one recipe, under it.
    `primary` overrides the primary endpoint recorded in the database.
    """
    scored = [c for c in db.cells() if c.target is not None]
    if not scored:
        raise ValueError(f"results database {db.path} has no cells with a target")
    have: dict[str, set[str]] = defaultdict(set)
    for c in scored:
        have[c.target].add(c.recipe)
    recipes = {t: prefer if prefer in rs else sorted(rs)[0] for t, rs in have.items()}
    cells = [c for c in scored if c.recipe == recipes[c.target]]
    for c in cells:
        task_metrics(c.target)
    params = _params(cells)
    sizes = sorted({c.size for c in cells}, key=lambda s: (params.get(s, math.inf), s))
    conds = sorted({c.condition for c in cells} - {BASELINE},
                   key=lambda c: (c == MULTITASK, c))
    targets = [t for t in TARGET_METRICS if any(c.target == t for c in cells)]
    grid: dict[tuple[str, str, str], list[CellRecord]] = defaultdict(list)
    for c in cells:
        grid[(c.size, c.condition, c.target)].append(c)
    rows = defaultdict(dict)
    for cell_id, r in db.results():
        rows[cell_id][(r.language, r.metric)] = r
    expected = {t: _expected_languages(t, cells, rows) for t in targets}
    notes: list[str] = []
    status = {key: _completeness(key, grid.get(key, []), expected[key[2]], rows)
              for key in _all_keys(sizes, [BASELINE, *conds], targets)}

    complete = [key for key, missing in status.items() if missing is None]
    lang_scores = _language_scores(db, {key: grid[key] for key in complete}, expected, rows,
                                   notes)
    scores: dict[tuple[str, str, str], Value] = {
        key: (va.mean_of([lang_scores[key][lg] for lg in sorted(lang_scores[key])])
              if key in lang_scores else status[key]) for key in status}
    lang_gains, gains = _gains(sizes, conds, targets, expected, status, lang_scores)
    best_task = _best_per_target(sizes, conds, targets, gains, lang_gains)
    for size in sizes:
        for cond in [BASELINE, *conds]:
            _aggregate_levels(scores, size, cond, targets)
        for cond in [*conds, BEST]:
            _aggregate_levels(gains, size, cond, targets)
    rer = {(s, c, lvl): relative_error_reduction(scores[(s, c, lvl)], scores[(s, BASELINE, lvl)])
           for s in sizes for c in conds for lvl in [*targets, *CATEGORIES, OVERALL]}
    primary_key, primary_note = _declared_primary(db, primary)
    trends = {(cond, lvl): _trend(sizes, params, gains, cond, lvl)
              for cond in [*conds, BEST] for lvl in [*targets, *CATEGORIES, OVERALL]}
    holm_adjust(trends, exclude=primary_key)
    toy = (db.meta().get("toy", "").lower() == "true"
           or any(s.lower() not in MT5_PARAMS for s in sizes))
    sample = (db.meta().get("data_source") == "sample"
              or any(c.data_source == "sample" for c in cells))
    both = sorted(t for t, rs in have.items() if len(rs) > 1)
    answer = answer_sentence(trends, gains, rer, primary_key, primary_note, level)
    return Analysis(sizes, expected, recipes, both, params, conds, targets, dict(grid), status,
                    scores, lang_gains, gains, rer, best_task, trends, primary_key,
                    primary_note, answer, toy, sample, notes, level)


# ------------------------------------------------------------------ completeness


def _params(cells: Sequence[CellRecord]) -> dict[str, float]:
    found: dict[str, set[int]] = defaultdict(set)
    for c in cells:
        if c.params_count is not None:
            found[c.size].add(int(c.params_count))
    params = {}
    for size in {c.size for c in cells}:
        counts = found.get(size, set())
        if len(counts) > 1:
            raise ValueError(f"size {size!r}: cells disagree on params_count {sorted(counts)}")
        if counts:
            params[size] = float(counts.pop())
        elif size.lower() in MT5_PARAMS:
            params[size] = MT5_PARAMS[size.lower()]
    return params


def _all_keys(sizes, conds, targets):
    return [(s, c, t) for s in sizes for c in conds for t in targets]


def _expected_languages(target: str, cells, rows) -> tuple[str, ...]:
    """Languages a complete cell of this target must have: all any done cell of it reports."""
    langs = {lang for c in cells if c.target == target and c.status == "done"
             for (lang, _m) in rows.get(c.cell_id, {})}
    return tuple(sorted(langs))


def _completeness(key, group: list[CellRecord], langs, rows) -> Missing | None:
    size, cond, target = key
    if not group:
        return Missing(f"no cell for {size}/{cond}/{target} in the study")
    not_done = [c for c in group if c.status != "done"]
    if not_done:
        return Missing("incomplete: " + "; ".join(
            f"{c.cell_id} {c.status}" + (f" ({c.error})" if c.error else "") for c in not_done))
    if not langs:
        return Missing(f"incomplete: no results recorded for {target}")
    for c in group:
        have = rows.get(c.cell_id, {})
        lacking = [f"{lang}/{m}" for lang in langs for m in task_metrics(target)
                   if (lang, m) not in have]
        if lacking:
            return Missing(f"incomplete: {c.cell_id} lacks {', '.join(lacking)}")
    return None


# ------------------------------------------------------------------ scores and gains


def _language_scores(db, arms, expected, rows, notes) -> dict[tuple, dict[str, Est]]:
    """Per complete arm (size, condition, target) and language: the score (QA: (F1+EM)/2)
    averaged over seeds, carrying its per-(seed, item cluster) contributions."""
    loaded: dict[tuple[str, str, str], tuple[str, list[str], np.ndarray] | None] = {}
    columns: dict[str, dict[str, int]] = defaultdict(dict)
    index: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
    for group in arms.values():
        for c in group:
            for lang in expected[c.target]:
                for metric in task_metrics(c.target):
                    pe = db.per_example(c.cell_id, lang, metric)
                    if pe is None:
                        notes.append(f"{c.cell_id} {lang}/{metric}: no per-example scores, "
                                     "no interval")
                        loaded[(c.cell_id, lang, metric)] = None
                        continue
                    strat = va.stratum(c.target, lang)
                    if (strat, pe.example_ids) not in index:
                        cols = columns[strat]
                        index[(strat, pe.example_ids)] = np.array(
                            [cols.setdefault(va.cluster(c.target, i), len(cols))
                             for i in pe.example_ids], dtype=np.int64)
                    loaded[(c.cell_id, lang, metric)] = (
                        strat, index[(strat, pe.example_ids)],
                        va.pseudo_values(pe.scores, pe.aggregation))
    out: dict[tuple, dict[str, Est]] = {}
    for key, group in arms.items():
        target = key[2]
        metrics = task_metrics(target)
        group = sorted(group, key=lambda c: c.seed)
        out[key] = {}
        for lang in expected[target]:
            point = float(np.mean([rows[c.cell_id][(lang, m)].value for c in group
                                   for m in metrics]))
            parts = [[loaded[(c.cell_id, lang, m)] for m in metrics] for c in group]
            if any(p is None for seed in parts for p in seed):
                out[key][lang] = Est(point, None, "no interval: no per-example scores")
                continue
            blocks = va.arm_blocks(parts, {k: len(v) for k, v in columns.items()},
                                   1.0 / len(metrics))
            out[key][lang] = (Est(point, blocks) if len(group) > 1
                              else Est(point, None, va.ONE_SEED))
    return out


def _gains(sizes, conds, targets, expected, status, lang_scores):
    lang_gains: dict[tuple[str, str, str, str], Est] = {}
    gains: dict[tuple[str, str, str], Value] = {}
    for size in sizes:
        for cond in conds:
            for t in targets:
                base, arm = (size, BASELINE, t), (size, cond, t)
                if status[base] or status[arm]:
                    gains[(size, cond, t)] = status[arm] or status[base]
                    continue
                per_lang = {lang: lang_scores[arm][lang] - lang_scores[base][lang]
                            for lang in expected[t]}
                lang_gains.update({(size, cond, t, lg): e for lg, e in per_lang.items()})
                gains[(size, cond, t)] = va.mean_of([per_lang[lg] for lg in sorted(per_lang)])
    return lang_gains, gains


def relative_error_reduction(score: Value, base: Value) -> Value:
    """100 * (score - base) / (100 - base): the share of the baseline's remaining error the
    condition removes (absolute gains mislead near the ceiling); delta-method interval."""
    if isinstance(score, Missing) or isinstance(base, Missing):
        return score if isinstance(score, Missing) else base
    room = 100.0 - base.point
    if room <= 0:
        return Missing("n/a: the baseline scores 100")
    lin = combine([score, base], [100.0 / room, 100.0 * (score.point - 100.0) / room ** 2])
    point = 100.0 * (score.point - base.point) / room
    return Est(point, lin.blocks, lin.why)


def _best_per_target(sizes, conds, targets, gains, lang_gains) -> dict[tuple[str, str], str]:
    """X-STILTs' best single task per target, chosen by point estimate on the evaluation data
    (exploratory: biased upward by the choice, which its interval does not pay for)."""
    singles = [c for c in conds if c != MULTITASK]
    best = {}
    for size in sizes:
        for t in targets:
            ests = {c: gains[(size, c, t)] for c in singles}
            missing = [f"{c}: {v.reason}" for c, v in ests.items() if isinstance(v, Missing)]
            if not singles or missing:
                reason = ("incomplete: " + "; ".join(missing) if missing
                          else "no single intermediate task")
                gains[(size, BEST, t)] = Missing(reason)
                continue
            name = max(singles, key=lambda c: ests[c].point)
            best[(size, t)] = name
            gains[(size, BEST, t)] = ests[name]
            for (s, c, tt, lang), est in list(lang_gains.items()):
                if s == size and c == name and tt == t:
                    lang_gains[(size, BEST, t, lang)] = est
    return best


def _aggregate_levels(values, size, cond, targets) -> None:
    """Category and overall levels from target levels, in place; Missing propagates."""
    for cat, members in CATEGORIES.items():
        absent = [t for t in members if t not in targets]
        if absent:
            values[(size, cond, cat)] = Missing(f"targets {', '.join(absent)} not in the study")
            continue
        parts = [values[(size, cond, t)] for t in members]
        bad = [t for t, p in zip(members, parts) if isinstance(p, Missing)]
        values[(size, cond, cat)] = (Missing(f"incomplete target(s): {', '.join(bad)}") if bad
                                     else va.mean_of(parts))
    parts = [values[(size, cond, cat)] for cat in CATEGORIES]
    bad = [cat for cat, p in zip(CATEGORIES, parts) if isinstance(p, Missing)]
    values[(size, cond, OVERALL)] = (Missing(f"incomplete categories: {', '.join(bad)}") if bad
                                     else va.mean_of(parts))


# ------------------------------------------------------------------ trend and forecast


def ols_weights(x: Sequence[float]) -> np.ndarray:
    """w with slope = sum_s w_s * y_s for the OLS line through (x_s, y_s)."""
    x = np.asarray(x, dtype=np.float64)
    sxx = ((x - x.mean()) ** 2).sum()
    if sxx <= 0:
        raise ValueError("ols_weights: all x values are equal; a slope needs two distinct sizes")
    return (x - x.mean()) / sxx


def fit_trend(x: Sequence[float], ests: Sequence[Est], x_new: float | None = None
              ) -> tuple[Est, float, Est | None]:
    """OLS of gain on x (log10 params): the slope, the intercept and the line's value at
    x_new, each a linear combination of the per-size gains (so their intervals carry seed and
    item variance; they do not cover departures from a straight line)."""
    x = np.asarray(x, dtype=np.float64)
    w = ols_weights(x)
    slope = combine(list(ests), list(w))
    intercept = float(np.mean([e.point for e in ests]) - slope.point * x.mean())
    if x_new is None:
        return slope, intercept, None
    coefs = 1.0 / len(x) + w * (x_new - x.mean())
    return slope, intercept, combine(list(ests), list(coefs))


def _trend(sizes, params, gains, cond, lvl) -> Trend | Missing:
    used, excluded = [], []
    for s in sizes:
        value = gains.get((s, cond, lvl))
        if s not in params:
            excluded.append(f"{s} (no parameter count)")
        elif isinstance(value, Missing) or value is None:
            excluded.append(f"{s} ({value.reason if value else 'absent'})")
        else:
            used.append(s)
    if len(used) < 2:
        return Missing(f"needs two complete sizes; have {len(used)}"
                       + (f"; excluded: {'; '.join(excluded)}" if excluded else ""))
    x = np.log10([params[s] for s in used])
    slope, intercept, _ = fit_trend(x, [gains[(s, cond, lvl)] for s in used])
    # By size NAME: the forecast of XXL never includes XXL, whatever its recorded count.
    smaller = [s for s in used if s.lower() != FORECAST_SIZE]
    forecast = None
    note = f"fewer than two complete sizes other than {FORECAST_SIZE.upper()}: no forecast"
    if len(smaller) >= 2:
        xxl = next((params[s] for s in params if s.lower() == FORECAST_SIZE),
                   MT5_PARAMS[FORECAST_SIZE])
        _, _, forecast = fit_trend(np.log10([params[s] for s in smaller]),
                                   [gains[(s, cond, lvl)] for s in smaller],
                                   x_new=math.log10(xxl))
        note = (f"from {', '.join(smaller)}; the interval covers seeds and items, not "
                "curvature in log-parameters")
    return Trend(slope, intercept, tuple(used), tuple(excluded), forecast, note,
                 slope.p_value())


def holm_adjust(trends: dict, exclude: tuple[str, str] | None) -> None:
    """Holm's step-down adjustment of the slope p-values of every trend but the primary (the
    secondary family), in place; family-wise error <= 5% at adjusted p < 0.05."""
    family = sorted((t.p_value, key) for key, t in trends.items()
                    if isinstance(t, Trend) and key != exclude and t.p_value is not None)
    m, running = len(family), 0.0
    for i, (p, key) in enumerate(family):
        running = max(running, min(1.0, (m - i) * p))
        trends[key] = dataclasses.replace(trends[key], p_adjusted=running)


def _interval_text(est: Value, level: float, unit: str = "") -> str:
    """'+1.23 [+0.40, +2.91]' (with a unit after each number), or why there is no interval."""
    if isinstance(est, Missing):
        return est.reason
    ci = est.ci(level)
    if ci is None:
        return f"{est.point:+.2f}{unit} ({est.no_interval()})"
    return f"{est.point:+.2f}{unit} [{ci[0]:+.2f}{unit}, {ci[1]:+.2f}{unit}]"


def answer_sentence(trends: dict, gains: dict, rer: dict, primary: tuple[str, str] | None,
                    primary_note: str = "", level: float = 0.95) -> str:
    """The plain-sentence answer: the declared primary endpoint's trend, nothing else."""
    if primary is None:
        return (f"No answer: {primary_note or 'no primary endpoint declared'}; the tables "
                "below are all exploratory.")
    cond, lvl = primary
    what = f"the {lvl} XTREME-R gain of intermediate task {cond} (the declared primary endpoint)"
    trend = trends.get((cond, lvl))
    if trend is None or isinstance(trend, Missing):
        why = trend.reason if isinstance(trend, Missing) else "no such series in the study"
        return f"Not answerable yet for {what}: {why}."
    b = trend.slope.point
    verb = "shrinks" if b < 0 else "grows"
    head = (f"Across {len(trend.sizes)} sizes ({', '.join(trend.sizes)}), {what} {verb} by "
            f"{abs(b):.2f} points per 10x parameters")
    if trend.excluded:
        head += f" ({'; '.join(s.split(' ')[0] for s in trend.excluded)} left out: incomplete)"
    largest = trend.sizes[-1]
    at = (f"; at {largest} the gain is {_interval_text(gains[(largest, cond, lvl)], level)} "
          "points, a relative error reduction of "
          f"{_interval_text(rer[(largest, cond, lvl)], level, '%')}")
    ci = trend.slope.ci(level)
    if ci is None:
        return f"{head}; {trend.slope.no_interval()}, so no conclusion{at}."
    lo, hi = ci
    pct = f"{100 * level:g}%"
    support = "do" if hi < 0 else "do not"
    tail = (f" (slope {b:+.2f}, {pct} CI [{lo:+.2f}, {hi:+.2f}]); the data {support} support "
            "a shrinking gain")
    if lo > 0:
        tail += " (they support a growing one)"
    elif hi >= 0:
        tail += " (the interval includes zero or growth)"
    return head + tail + at + "."
