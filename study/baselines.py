"""Published mT5 zero-shot numbers beside the study's own baseline cells.

Why: a real-scale study's baseline (no intermediate task) should land near what the mT5 paper
published for the same size and target; a large gap points at the recipe, not at the
question. The published numbers live in `study/data/published_baselines.tsv` (sources in its
header and in docs/baselines.md). The mT5 paper averaged over XTREME's language sets (WikiANN in
40 languages, XQuAD in 11), so our number is averaged over the same languages only, and the
table says which languages it left out or lacked. It also selected checkpoints on
target-language dev sets, which this study does not: the table says so beside the numbers.

Reads only the results database (no JAX, no TensorFlow), like study.analysis.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from study.analysis import MT5_PARAMS
from study.db import CellRecord, ResultsDB

PUBLISHED_FILE = pathlib.Path(__file__).parent / "data" / "published_baselines.tsv"
COLUMNS = ("source", "size", "target", "metric", "value", "language_set", "split", "selection",
           "note")
SOURCES = ("mt5_paper", "mt5_paper_earlier", "xtreme_r_paper")
HEADLINE_SOURCE = "mt5_paper"
SIZES = tuple(MT5_PARAMS)  # small .. xxl, in parameter order
ALL_SIZES = "all"
MISSING = "missing"
SPLITS = ("test", "dev")
SELECTIONS = ("target_dev", "en_dev", "last")
# The metric each published column reports, per target (the mT5 paper: accuracy or F1).
TARGET_METRICS: dict[str, tuple[str, ...]] = {
    "xnli": ("accuracy",), "pawsx": ("accuracy",), "xcopa": ("accuracy",),
    "udpos": ("f1",), "wikiann": ("f1",), "xquad": ("f1", "exact_match"),
    "mlqa": ("f1", "exact_match"), "tydiqa": ("f1", "exact_match"), "mewslix": ("map@20",),
    "lareqa": ("map@20",), "tatoeba": ("accuracy",),
}
HEADLINE_METRIC = {t: ms[0] for t, ms in TARGET_METRICS.items()}

# XTREME's language sets (Hu et al. 2020), which the mT5 paper evaluated on: the XTREME
# repository's scripts (scripts/download_data.sh, scripts/train_xnli.sh) and jiant's XTREME
# configuration (jiant/scripts/benchmarks/xtreme/xtreme_runconfig_writer.py, LANGS_DICT).
# XTREME-R adds qu pl uk az lt pa gu ro to WikiANN and ro to XQuAD; XNLI, MLQA and TyDiQA
# are unchanged. 'xtreme_r' rows use the study's own (XTREME-R) lists: no restriction here.
XTREME_LANGUAGES: dict[str, tuple[str, ...]] = {
    "xnli": ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur",
             "vi", "zh"),
    "pawsx": ("de", "en", "es", "fr", "ja", "ko", "zh"),
    "wikiann": ("ar", "he", "vi", "id", "jv", "ms", "tl", "eu", "ml", "ta", "te", "af", "nl",
                "en", "de", "el", "bn", "hi", "mr", "ur", "fa", "fr", "it", "pt", "es", "bg",
                "ru", "ja", "ka", "ko", "th", "sw", "yo", "my", "zh", "kk", "tr", "et", "fi",
                "hu"),
    "xquad": ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"),
    "mlqa": ("ar", "de", "en", "es", "hi", "vi", "zh"),
    "tydiqa": ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te"),
}
LANGUAGE_SETS = ("xtreme", "xtreme_r")


class BaselinesError(ValueError):
    """One line: file, line, field, value, what was expected."""


@dataclasses.dataclass(frozen=True)
class Published:
    """One published number (value None: the source does not report it)."""

    source: str
    size: str
    target: str
    metric: str
    value: float | None
    language_set: str
    split: str
    selection: str
    note: str
    line: int

    @property
    def languages(self) -> tuple[str, ...] | None:
        """The languages the number averages over; None: the study's own lists."""
        return XTREME_LANGUAGES.get(self.target) if self.language_set == "xtreme" else None


def load_published(path: str | os.PathLike = PUBLISHED_FILE) -> tuple[Published, ...]:
    """Every row of the published-baselines file, validated (one clear error per bad row)."""
    path = pathlib.Path(path)
    rows: list[Published] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    header_seen = False
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if not header_seen:
            if tuple(fields) != COLUMNS:
                raise BaselinesError(f"{path}:{lineno}: header {fields}; expected the "
                                     f"tab-separated columns {', '.join(COLUMNS)}")
            header_seen = True
            continue
        if len(fields) != len(COLUMNS):
            raise BaselinesError(f"{path}:{lineno}: {len(fields)} tab-separated fields; "
                                 f"expected {len(COLUMNS)} ({', '.join(COLUMNS)})")
        row = _parse_row(path, lineno, dict(zip(COLUMNS, fields)))
        key = (row.source, row.size, row.target, row.metric)
        if key in seen:
            raise BaselinesError(f"{path}:{lineno}: {key} is listed twice (first on line "
                                 f"{seen[key]})")
        seen[key] = lineno
        rows.append(row)
    if not header_seen:
        raise BaselinesError(f"{path}: no header line; expected {', '.join(COLUMNS)}")
    return tuple(rows)


def _parse_row(path: pathlib.Path, lineno: int, f: dict[str, str]) -> Published:
    def fail(field: str, expected: str) -> BaselinesError:
        return BaselinesError(f"{path}:{lineno}: field {field} = {f[field]!r}: expected "
                              f"{expected}")

    for field, choices in (("source", SOURCES), ("target", tuple(TARGET_METRICS)),
                           ("language_set", LANGUAGE_SETS), ("split", SPLITS),
                           ("selection", SELECTIONS)):
        if f[field] not in choices:
            raise fail(field, "one of " + ", ".join(choices))
    if f["metric"] not in TARGET_METRICS[f["target"]]:
        raise fail("metric", f"one of {', '.join(TARGET_METRICS[f['target']])} for "
                   f"{f['target']}")
    value: float | None = None
    if f["value"] != MISSING:
        try:
            value = float(f["value"])
        except ValueError:
            raise fail("value", f"a number of points or {MISSING!r}") from None
        if not 0.0 <= value <= 100.0:
            raise fail("value", "points in [0, 100]")
    if f["size"] not in SIZES and not (f["size"] == ALL_SIZES and value is None):
        raise fail("size", f"one of {', '.join(SIZES)} ({ALL_SIZES!r} only for a "
                   f"{MISSING!r} value)")
    if f["language_set"] == "xtreme" and value is not None and \
            f["target"] not in XTREME_LANGUAGES:
        raise fail("language_set", f"a set this module lists for {f['target']} (xtreme: "
                   f"{', '.join(XTREME_LANGUAGES)})")
    return Published(f["source"], f["size"], f["target"], f["metric"], value,
                     f["language_set"], f["split"], f["selection"], f["note"], lineno)


# ------------------------------------------------------------------ our side


@dataclasses.dataclass(frozen=True)
class Ours:
    """Our baseline's number on the published language set (value None: see reason)."""

    value: float | None
    reason: str                  # why there is no value ('' when there is one)
    compared: tuple[str, ...]    # languages averaged over
    lacking: tuple[str, ...]     # published languages the study did not evaluate
    extra: tuple[str, ...]       # languages the study evaluated beyond the published set
    seeds: int


def our_baseline(cells: Sequence[CellRecord], rows: Sequence[tuple[str, Any]], target: str,
                 metric: str, languages: Sequence[str] | None) -> Ours:
    """Mean over seeds of the mean over `languages` of the baseline cells' `metric` for
    `target` (every baseline cell of the target must be done; nothing is averaged over what
    happens to be there)."""
    mine = [c for c in cells if c.condition == "baseline" and c.target == target
            and c.recipe == "official"]
    if not mine:
        return Ours(None, "not run", (), (), (), 0)
    if any(c.status != "done" for c in mine):
        return Ours(None, "incomplete", (), (), (), 0)
    values: dict[str, dict[str, float]] = defaultdict(dict)
    ids = {c.cell_id for c in mine}
    for cell_id, r in rows:
        if cell_id in ids and r.metric == metric:
            values[cell_id][r.language] = r.value
    evaluated = set.intersection(*(set(values[c.cell_id]) for c in mine))
    wanted = tuple(languages) if languages is not None else tuple(sorted(evaluated))
    compared = tuple(lg for lg in wanted if lg in evaluated)
    lacking = tuple(lg for lg in wanted if lg not in evaluated)
    extra = tuple(sorted(evaluated - set(wanted)))
    if not compared:
        return Ours(None, f"no {metric} rows in the published languages", (), lacking, extra,
                    len(mine))
    per_seed = [sum(values[c.cell_id][lg] for lg in compared) / len(compared) for c in mine]
    return Ours(sum(per_seed) / len(per_seed), "", compared, lacking, extra, len(mine))


def real_scale(db: ResultsDB, cells: Sequence[CellRecord], experiment: Any = None) -> bool:
    """True for a study of released mT5 sizes on the official data (toy studies: False)."""
    if experiment is not None and (experiment.toy or experiment.data_source == "sample"):
        return False
    meta = db.meta()
    if meta.get("toy", "").lower() == "true" or meta.get("data_source") == "sample":
        return False
    scored = [c for c in cells if c.target is not None]
    return bool(scored) and all(c.size.lower() in SIZES and c.data_source != "sample"
                                for c in scored)


# ------------------------------------------------------------------ the table


def published_table(db: ResultsDB, experiment: Any = None, *,
                    path: str | os.PathLike = PUBLISHED_FILE) -> str | None:
    """A Markdown section: the mT5 paper's zero-shot numbers beside this study's baseline cells
    on the same language sets, per size and target; None for toy studies (their sizes and data
    are not mT5's). `experiment` (a study.experiment.Experiment), when given, names the split
    each target was evaluated on."""
    cells = db.cells()
    if not real_scale(db, cells, experiment):
        return None
    published = load_published(path)
    rows = db.results()
    sizes = [s for s in SIZES if any(c.size.lower() == s for c in cells)]
    order = list(TARGET_METRICS)
    targets = sorted({c.target for c in cells if c.target in TARGET_METRICS}, key=order.index)
    body, unpublished = [], []
    for target in targets:
        metric = HEADLINE_METRIC.get(target)
        for size in sizes:
            pub = _published_for(published, size, target, metric)
            if pub is None or pub.value is None:
                unpublished.append(target)
                continue
            size_cells = [c for c in cells if c.size.lower() == size]
            ours = our_baseline(size_cells, rows, target, metric, pub.languages)
            body.append(_row(size, target, metric, pub, ours, experiment))
    out = ["## Published mT5 baselines beside ours", "",
           "The mT5 paper's zero-shot numbers (Xue et al. 2021, English training data only; "
           "`study/data/published_baselines.tsv`, sources in docs/baselines.md) beside this "
           "study's baseline cells (no intermediate task), in the same metric (QA: F1, not the "
           "XTREME-R (F1 + EM) / 2). **The mT5 paper used XTREME's language sets and selected "
           "each checkpoint on validation data that included target-language dev sets; this "
           "study selects on English dev only**, so the published number is a reference "
           "point, not a matched arm. Ours is averaged over the published language set only "
           "(mean over seeds); the languages column says what was compared, left out or "
           "lacking.", ""]
    if body:
        header = ["size", "target", "metric", "mT5 paper", "ours (baseline)", "ours - paper",
                  "languages", "seeds", "our split"]
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in body]
        out.append("")
    missing = sorted(set(unpublished))
    if missing:
        out += [f"No published mT5 number for: {', '.join(missing)}.", ""]
    return "\n".join(out)


def _published_for(published: Sequence[Published], size: str, target: str,
                   metric: str | None) -> Published | None:
    for p in published:
        if p.source == HEADLINE_SOURCE and p.target == target and p.metric == metric and \
                p.size in (size, ALL_SIZES):
            return p
    return None


def _row(size: str, target: str, metric: str, pub: Published, ours: Ours,
         experiment: Any) -> list[str]:
    if ours.value is None:
        mine, delta = ("**incomplete**" if ours.reason == "incomplete" else
                       f"n/a ({ours.reason})"), "-"
    else:
        mine, delta = f"{ours.value:.2f}", f"{ours.value - pub.value:+.2f}"
    n = len(pub.languages) if pub.languages is not None else len(ours.compared)
    langs = f"{len(ours.compared)} of {n}"
    if ours.lacking:
        langs += f"; not evaluated: {' '.join(ours.lacking)}"
    if ours.extra:
        langs += f"; left out: {' '.join(ours.extra)}"
    split = "not recorded"
    if experiment is not None:
        split = experiment.split_for(target)
        if split != pub.split:
            split += f" (paper: {pub.split})"
    return [size, target, metric, f"{pub.value:.1f}", mine, delta, langs,
            str(ours.seeds) if ours.seeds else "-", split]
