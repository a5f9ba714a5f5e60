"""The analysis: gains over the baseline, their paired-bootstrap CIs, the trend with size.

Reads only the results database (numpy, no JAX). Levels: language -> target (task score) ->
category -> overall XTREME-R, for each intermediate condition and for the best single task
per target (X-STILTs). A (size, condition, target) whose cells are not all done with every
language is *incomplete*: it is reported as `Missing(reason)` and every level above it is
Missing too; nothing is ever averaged over what is there.

Score definitions are eval/xtreme_r.py's (a task score is the mean over its languages of its
metric; QA: (mean F1 + mean EM) / 2; category means; overall = mean of the four category
means), restated here on bootstrap-carrying estimates so that this module stays numpy-only
(importing eval pulls in TensorFlow); tests/study/test_analysis.py pins the two as equal.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import zlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from study import bootstrap as bs
from study.bootstrap import Est
from study.db import CellRecord, ResultsDB

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
MT5_PARAMS = {"small": 300.2e6, "base": 582.4e6, "large": 1229.6e6, "xl": 3742.6e6,
              "xxl": 12921.1e6}
BASELINE, MULTITASK, BEST = "baseline", "multitask", "best"
OVERALL = "overall"
FORECAST_SIZE = "xxl"
MC4_FILE = pathlib.Path(__file__).parent / "data" / "mc4_language_sizes.tsv"


@dataclasses.dataclass(frozen=True)
class Missing:
    """An incomplete or unavailable number, with the reason shown in the report."""

    reason: str

    @property
    def incomplete(self) -> bool:
        """True for a number the study should have but does not (yet); False for n/a."""
        return self.reason.startswith("incomplete")


Value = Est | Missing


@dataclasses.dataclass(frozen=True)
class Trend:
    """Gain against log10(parameters): slope per 10x, and the forecast of the XXL gain."""

    slope: Est
    intercept: float
    sizes: tuple[str, ...]
    excluded: tuple[str, ...]
    forecast: Est | None
    forecast_interval: tuple[float, float] | None
    forecast_note: str


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
    scores: dict[tuple[str, str, str], Value]             # absolute task scores
    lang_gains: dict[tuple[str, str, str, str], Est]      # (size, cond, target, lang)
    gains: dict[tuple[str, str, str], Value]              # (size, cond|best, level)
    best_task: dict[tuple[str, str], str]                 # (size, target) -> condition
    trends: dict[tuple[str, str], Trend | Missing]        # (cond|best, level)
    answer: str
    toy: bool
    sample_data: bool
    notes: list[str]
    level: float
    n_boot: int

    @property
    def levels(self) -> list[str]:
        return [*self.targets, *CATEGORIES, OVERALL]

    def language_view(self, size: str, condition: str) -> dict[str, Value]:
        """Per language, the gain averaged over the targets evaluated in it; Missing when one
        of those targets is incomplete at this size for this condition."""
        out: dict[str, Value] = {}
        for lang in sorted({lg for langs in self.languages.values() for lg in langs}):
            targets = [t for t in self.targets if lang in self.languages[t]]
            bad = [t for t in targets if (size, condition, t, lang) not in self.lang_gains]
            out[lang] = (Missing(f"incomplete target(s): {', '.join(bad)}") if bad else
                         bs.mean_of([self.lang_gains[(size, condition, t, lang)]
                                     for t in targets]))
        return out


def task_metrics(target: str) -> tuple[str, ...]:
    if target not in TARGET_METRICS:
        raise ValueError(f"unknown XTREME-R target {target!r}; expected one of "
                         f"{sorted(TARGET_METRICS)}")
    return TARGET_METRICS[target]


def analyse(db: ResultsDB, *, n_boot: int = bs.DEFAULT_BOOT, seed: int = 0,
            level: float = 0.95, prefer: str = "official") -> Analysis:
    """Every gain, CI, trend and forecast of the study in `db`.

    A target run under both recipes (XCOPA with/without SIQA, Tatoeba with the SQuAD-trained
    or the pretrained encoder) is analysed under `prefer`; one run under one recipe, under it.
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
    metric_ests = _metric_estimates(db, [c for key in complete for c in grid[key]], expected,
                                    rows, n_boot, seed, notes)
    lang_scores: dict[tuple[str, str, str], dict[str, Est]] = {
        key: _language_scores(grid[key], key[2], expected[key[2]], metric_ests)
        for key in complete}
    scores = {key: (_mean_over_langs(lang_scores[key]) if key in lang_scores else status[key])
              for key in status}

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
                gains[(size, cond, t)] = _mean_over_langs(per_lang)
    best_task = _best_per_target(sizes, conds, targets, gains, lang_gains)
    for size in sizes:
        for cond in [*conds, BEST]:
            _aggregate_levels(gains, size, cond, targets)

    trends = {(cond, lvl): _trend(sizes, params, gains, cond, lvl, level)
              for cond in [*conds, BEST] for lvl in [*targets, *CATEGORIES, OVERALL]}
    toy = (db.meta().get("toy", "").lower() == "true"
           or any(s.lower() not in MT5_PARAMS for s in sizes))
    sample = (db.meta().get("data_source") == "sample"
              or any(c.data_source == "sample" for c in cells))
    both = sorted(t for t, rs in have.items() if len(rs) > 1)
    return Analysis(sizes, expected, recipes, both, params, conds, targets, dict(grid), status,
                    scores, lang_gains, gains, best_task, trends, answer_sentence(trends, level),
                    toy, sample, notes, level, n_boot)


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


def _language_scores(group, target, langs, metric_ests) -> dict[str, Est]:
    """Per language, the score (QA: (F1+EM)/2) averaged over seeds."""
    out = {}
    for lang in langs:
        per_seed = [bs.mean_of([metric_ests[(c.cell_id, lang, m)] for m in task_metrics(target)])
                    for c in sorted(group, key=lambda c: c.seed)]
        out[lang] = bs.mean_of(per_seed)
    return out


def _metric_estimates(db, cells, expected, rows, n_boot, seed, notes
                      ) -> dict[tuple[str, str, str], Est]:
    """Every (cell, language, metric) value with its replicates, resampling once per
    (target, language, example-id set): arms scored on the same examples share the resamples
    (paired); arms scored on different examples are not pretended to be."""
    out: dict[tuple[str, str, str], Est] = {}
    for target in sorted({c.target for c in cells}):
        group = [c for c in cells if c.target == target]
        for lang in expected[target]:
            by_ids: dict[int, list] = defaultdict(list)
            for c in group:
                for metric in task_metrics(target):
                    value = float(rows[c.cell_id][(lang, metric)].value)
                    pe = db.per_example(c.cell_id, lang, metric)
                    if pe is None:
                        notes.append(f"{c.cell_id} {lang}/{metric}: no per-example scores, no CI")
                        out[(c.cell_id, lang, metric)] = Est(value)
                        continue
                    order = np.argsort(np.asarray(pe.example_ids, dtype=object), kind="stable")
                    ids = "\n".join(pe.example_ids[i] for i in order)
                    by_ids[zlib.crc32(ids.encode("utf-8"))].append(
                        (c.cell_id, metric, value, pe.scores[order], pe.aggregation))
            if len(by_ids) > 1:
                notes.append(f"{target}/{lang}: cells were scored on {len(by_ids)} different "
                             "example sets; their CIs are unpaired across those sets")
            for ids_key, members in sorted(by_ids.items()):
                n = len(members[0][3])
                weights = bs.resample_weights(n, n_boot, seed, target, lang, str(ids_key))
                for cell_id, metric, value, scores, aggregation in members:
                    out[(cell_id, lang, metric)] = Est(
                        value, bs.replicate(scores, aggregation, weights))
    return out


def _mean_over_langs(per_lang: dict[str, Est]) -> Est:
    return bs.mean_of([per_lang[lang] for lang in sorted(per_lang)])


def _best_per_target(sizes, conds, targets, gains, lang_gains) -> dict[tuple[str, str], str]:
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
            gains[(size, BEST, t)] = bs.max_of([ests[c] for c in singles])
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
                                     else bs.mean_of(parts))
    parts = [values[(size, cond, cat)] for cat in CATEGORIES]
    bad = [cat for cat, p in zip(CATEGORIES, parts) if isinstance(p, Missing)]
    values[(size, cond, OVERALL)] = (Missing(f"incomplete categories: {', '.join(bad)}") if bad
                                     else bs.mean_of(parts))


# ------------------------------------------------------------------ trend and forecast


def fit_trend(x: np.ndarray, ests: Sequence[Est], level: float = 0.95,
              x_new: float | None = None) -> tuple[Est, float, Est | None, tuple | None, str]:
    """WLS of gain on x (log10 params), weights 1/bootstrap variance; slope CI by refitting
    every resample. The forecast at x_new adds the residual scatter around the line to the
    refitted predictions when there are >= 3 points (prediction, not confidence, interval)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.array([e.point for e in ests])
    has_reps = all(e.reps is not None for e in ests)
    var = np.array([e.reps.var() for e in ests]) if has_reps else np.ones(len(ests))
    # A size whose resamples barely vary (e.g. every example right) must not take all the
    # weight: variances are floored at 1% of their mean.
    w = (np.ones(len(ests)) if not has_reps or np.all(var == 0)
         else 1.0 / np.maximum(var, 0.01 * var.mean()))
    a, b = bs.wls_fit(x, y, w)
    reps = np.stack([e.reps for e in ests]) if has_reps else None
    slope = Est(float(b), None)
    a_reps = b_reps = None
    if reps is not None:
        a_reps, b_reps = bs.wls_fit(x, reps, w)
        slope = Est(float(b), b_reps)
    if x_new is None:
        return slope, float(a), None, None, ""
    pred_point = float(a + b * x_new)
    k = len(x)
    resid_sd = float(np.sqrt(((y - (a + b * x)) ** 2).sum() / (k - 2))) if k > 2 else 0.0
    note = ("2 sizes: the PI covers evaluation noise only, not curvature" if k == 2 else
            f"PI adds the residual sd {resid_sd:.2f} of {k} sizes")
    if a_reps is None:
        return slope, float(a), Est(pred_point), None, note + "; no per-example scores, no PI"
    pred_reps = a_reps + b_reps * x_new
    if resid_sd > 0:
        rng = np.random.default_rng(12345)
        pred_reps = pred_reps + rng.normal(0.0, resid_sd, size=pred_reps.shape)
    forecast = Est(pred_point, pred_reps)
    return slope, float(a), forecast, forecast.ci(level), note


def _trend(sizes, params, gains, cond, lvl, level) -> Trend | Missing:
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
    slope, intercept, *_ = fit_trend(x, [gains[(s, cond, lvl)] for s in used], level)
    smaller = [s for s in used if params[s] < MT5_PARAMS[FORECAST_SIZE]]
    forecast = interval = None
    note = f"fewer than two complete sizes below {FORECAST_SIZE.upper()}: no forecast"
    if len(smaller) >= 2:
        xs = np.log10([params[s] for s in smaller])
        _, _, forecast, interval, note = fit_trend(
            xs, [gains[(s, cond, lvl)] for s in smaller], level,
            x_new=math.log10(MT5_PARAMS[FORECAST_SIZE]))
    return Trend(slope, intercept, tuple(used), tuple(excluded), forecast, interval, note)


def answer_sentence(trends: dict, level: float = 0.95, cond: str = BEST,
                    lvl: str = OVERALL) -> str:
    """The plain-sentence answer to the study's question from one trend."""
    what = ("the best intermediate task per target" if cond == BEST
            else f"intermediate task {cond}")
    trend = trends.get((cond, lvl))
    if trend is None or isinstance(trend, Missing):
        why = trend.reason if isinstance(trend, Missing) else "no such series"
        return f"Not answerable yet for the {lvl} gain of {what}: {why}."
    b = trend.slope.point
    verb = "shrinks" if b < 0 else "grows"
    head = (f"Across {len(trend.sizes)} sizes ({', '.join(trend.sizes)}), the {lvl} gain of "
            f"{what} {verb} by {abs(b):.2f} points per 10x parameters")
    if trend.excluded:
        head = f"{head} ({'; '.join(s.split(' ')[0] for s in trend.excluded)} left out: " \
               "incomplete)"
    ci = trend.slope.ci(level)
    if ci is None:
        return head + "; no per-example scores, so no interval and no conclusion."
    lo, hi = ci
    pct = f"{100 * level:g}%"
    support = ("do" if hi < 0 else "do not")
    tail = f" (slope {b:+.2f}, {pct} CI [{lo:+.2f}, {hi:+.2f}]); the data {support} support a " \
           "shrinking gain"
    if lo > 0:
        tail += " (they support a growing one)"
    elif hi >= 0:
        tail += " (the interval includes zero or growth)"
    return head + tail + "."


# ------------------------------------------------------------------ per-language view


@dataclasses.dataclass(frozen=True)
class MC4Size:
    """One row of the mT5 paper's mC4 table (see the data file's header for its source)."""

    language: str
    tokens_billions: float | None
    pages_millions: float | None
    mt5_percent: float | None
    confidence: str


def load_mc4_sizes(path: str | pathlib.Path = MC4_FILE) -> dict[str, MC4Size]:
    """The shipped per-language mC4 sizes; '-' marks a language mT5 was not trained on."""
    path = pathlib.Path(path)
    out: dict[str, MC4Size] = {}
    header = None
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if header is None:
            header = fields
            if header != ["language", "tokens_billions", "pages_millions", "mt5_percent",
                          "confidence"]:
                raise ValueError(f"{path}:{lineno}: header {header}; expected language, "
                                 "tokens_billions, pages_millions, mt5_percent, confidence")
            continue
        if len(fields) != len(header):
            raise ValueError(f"{path}:{lineno}: {len(fields)} fields; expected {len(header)}")
        lang, conf = fields[0], fields[4]
        if conf not in ("recalled", "uncertain", "absent"):
            raise ValueError(f"{path}:{lineno}: confidence {conf!r}; expected recalled, "
                             "uncertain or absent")
        nums = []
        for name, text in zip(header[1:4], fields[1:4]):
            try:
                nums.append(None if text == "-" else float(text))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: {name} {text!r}; expected a number or "
                                 "'-'") from None
        if (nums[2] is None) != (conf == "absent"):
            raise ValueError(f"{path}:{lineno}: mt5_percent {fields[3]!r} with confidence "
                             f"{conf!r}; '-' exactly when absent")
        if lang in out:
            raise ValueError(f"{path}:{lineno}: language {lang!r} listed twice")
        out[lang] = MC4Size(lang, *nums, conf)
    return out


@dataclasses.dataclass(frozen=True)
class ShareFit:
    """Per-language gain against log10 of the language's share of mT5 pre-training data."""

    slope: Est
    intercept: float
    languages: tuple[str, ...]
    excluded: tuple[str, ...]


def gain_vs_share(view: dict[str, Value], mc4: dict[str, MC4Size]) -> ShareFit | Missing:
    """WLS fit of the per-language gain on log10(mT5 %); slope = points per 10x more data."""
    used = [lang for lang, v in view.items()
            if isinstance(v, Est) and lang in mc4 and mc4[lang].mt5_percent]
    excluded = tuple(f"{lang} ({view[lang].reason})" if isinstance(view[lang], Missing)
                     else f"{lang} (not in mT5's pre-training data)"
                     for lang in view if lang not in used)
    if len({mc4[lang].mt5_percent for lang in used}) < 2:
        return Missing(f"needs two languages with distinct mC4 shares; have {len(used)}")
    x = np.log10([mc4[lang].mt5_percent for lang in used])
    slope, intercept, *_ = fit_trend(x, [view[lang] for lang in used])
    return ShareFit(slope, intercept, tuple(used), excluded)
