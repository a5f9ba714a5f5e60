"""The study report: Markdown + PNG plots from the results database alone.

Every number is traceable: each table names the cells it comes from, the Cells section lists
their provenance, and `rows.tsv` beside the report holds every database row used (the task
score of a cell is the mean over its languages of those rows; QA: (mean F1 + mean EM) / 2).
The report carries no timestamp, so a re-run over the same database gives identical files.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections import Counter

from study import analysis as an
from study import baselines, plots
from study.analysis import BEST, CATEGORIES, OVERALL, Analysis, Missing
from study.db import ResultsDB
from study.experiment import SPLIT_RULES
from study.variance import ONE_SEED, Est

REPORT_FILE = "report.md"
ROWS_FILE = "rows.tsv"


def write_report(db_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                 level: float = 0.95, mc4_path: str | os.PathLike | None = None,
                 primary: dict[str, str] | None = None) -> pathlib.Path:
    """Analyse the database at db_path and write report.md, its PNGs and rows.tsv to out_dir.
    `primary` overrides the primary endpoint the database records."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mc4 = an.load_mc4_sizes(mc4_path or an.MC4_FILE)
    with ResultsDB(db_path, create=False) as db:
        result = an.analyse(db, level=level, primary=primary)
        raw = (an.analyse(db, level=level, prefer="raw", primary=primary)
               if result.both_recipes else None)
        cells = db.cells()
        rows = db.results()
        schema = db.schema_version
        published = baselines.published_table(db)  # None for toy studies
    figures = {
        "gain_vs_size": plots.gain_vs_size(result, out / "gain_vs_size.png"),
        "categories": plots.category_summary(result, out / "category_summary.png"),
    }
    share_fits = {s: an.gain_vs_share(result.language_view(s, result.view_condition), mc4)
                  for s in result.sizes}
    for size in result.sizes:
        figures[f"heatmap_{size}"] = plots.language_heatmap(
            result, size, out / f"language_heatmap_{size}.png", mc4)
        figures[f"share_{size}"] = plots.gain_vs_share_plot(
            result, size, out / f"gain_vs_share_{size}.png", mc4, share_fits[size])
    _atomic_write(out / ROWS_FILE, _rows_tsv(rows, {c.cell_id: c for c in cells}))
    text = render(result, cells, db_path, schema, share_fits, mc4, figures, raw)
    text = text + "\n" + published if published else text
    _atomic_write(out / REPORT_FILE, text)
    return out / REPORT_FILE


def _atomic_write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _rows_tsv(rows, cells) -> str:
    lines = ["cell_id\tsize\tcondition\ttarget\tseed\tlanguage\tmetric\tvalue\tnum_examples"]
    for cell_id, r in rows:
        c = cells[cell_id]
        lines.append(f"{cell_id}\t{c.size}\t{c.condition}\t{c.target}\t{c.seed}\t{r.language}"
                     f"\t{r.metric}\t{r.value!r}\t{r.num_examples}")
    return "\n".join(lines) + "\n"


def fmt(value: Est | Missing | None, level: float, *, ci: bool = True) -> str:
    """'+1.23 [-0.40, +2.91]', or the marker of a number that is not there."""
    if value is None:
        return "-"
    if isinstance(value, Missing):
        return "**incomplete**" if value.incomplete else "n/a"
    text = f"{value.point:+.2f}"
    interval = value.ci(level) if ci else None
    return text + (f" [{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else "")


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _banner(result: Analysis, cells) -> str:
    parts = []
    if result.toy:
        toy = [s for s in result.sizes if s.lower() not in an.MT5_PARAMS]
        parts.append(f"toy model sizes ({', '.join(toy)}; "
                     + ", ".join(f"{s}: {result.params[s]:,.0f} parameters" for s in toy
                                 if s in result.params) + "), not released mT5 checkpoints")
    if result.sample_data:
        parts.append("the shipped sample data (a few examples per language), not the official "
                     "evaluation sets")
    if not parts:
        return ""
    return ("> **These results come from " + " and from ".join(parts) + ".** They exercise "
            "the pipeline end to end; the numbers say nothing about mT5 or XTREME-R.\n")


def render(result: Analysis, cells, db_path, schema, share_fits, mc4, figures,
           raw: Analysis | None = None) -> str:
    lv = result.level
    pct = f"{100 * lv:g}%"
    status = Counter(c.status for c in cells)
    out = ["# Does English intermediate-task training still help as mT5 grows?", ""]
    banner = _banner(result, cells)
    if banner:
        out += [banner]
    out += [f"Database: `{db_path}` (schema version {schema}); {len(cells)} cells: "
            + ", ".join(f"{status[s]} {s}" for s in ("done", "running", "pending", "failed")
                        if status[s]) + ".",
            f"Intervals: {pct} t intervals from the variance components of training seeds "
            "and test items (seed r of every arm paired; translated targets' items clustered "
            "across languages), t with R - 1 degrees of freedom for R seeds; their calibration "
            "is shown by simulation in docs/analysis.md. With one seed there is no interval.",
            "Recipes: " + ", ".join(f"{t} {result.recipes[t]}" for t in result.targets)
            + " (raw: XCOPA trained on COPA only / Tatoeba embedded with each condition's own "
            "encoder, X-STILTs' variant).", ""]
    out += _design(cells)
    one_seed = [v.why == ONE_SEED for v in result.gains.values() if isinstance(v, Est)]
    if one_seed and all(one_seed):
        out += ["One seed per arm: no interval anywhere (seed variance cannot be estimated "
                "from one seed); the numbers below are point estimates only.", ""]
    elif any(one_seed):
        out += ["Series run with one seed have no interval (seed variance cannot be estimated "
                "from one seed): point estimates only, marked so.", ""]
    out += ["## Answer", "", result.answer, ""]
    out += _secondary(result)
    out += _completeness(result, cells)
    out += _gain_tables(result)
    out += _score_tables(result)
    out += _trend_section(result, figures)
    out += ["## Per category", "", f"![gain per category]({figures['categories'].name})", ""]
    out += _language_section(result, share_fits, mc4, figures)
    if raw is not None:
        out += _raw_section(raw)
    out += _splits_section(result, cells)
    out += _cells_section(result, cells)
    if result.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in sorted(set(result.notes))] + [""]
    return "\n".join(out)


def _secondary(result: Analysis) -> list[str]:
    """Every other series: exploratory, the family and its correction named."""
    lv = result.level
    out = ["### Secondary series (exploratory)", "",
           f"Family: the size trend of every other series (each condition and the best task "
           f"per target, at every level: the trend table below); p-values of 'slope = 0' "
           f"{an.CORRECTION}-adjusted over that family. The best task per target is chosen on "
           "the evaluation data it is scored on (as X-STILTs reports it), which biases its "
           "gain upward; no interval pays for that choice.", ""]
    for cond in result.conditions:
        t = result.trends.get((cond, OVERALL))
        if (cond, OVERALL) == result.primary:
            continue
        if t is None or isinstance(t, Missing):
            out.append(f"- {cond}, overall: n/a ({t.reason if t else 'no series'})")
            continue
        p = "-" if t.p_adjusted is None else f"{t.p_adjusted:.3g}"
        out.append(f"- {cond}, overall: slope {fmt(t.slope, lv)} per 10x; "
                   f"{an.CORRECTION}-adjusted p {p} (exploratory)")
    return out + [""]


def _short(condition: str) -> str:
    return condition.removeprefix("xitt.inter.")


def _design(cells) -> list[str]:
    """Which targets and seeds each condition ran, where that is not the full grid (a toy
    study runs extra seeds and conditions on a subset of targets to fit its time budget)."""
    scored = [c for c in cells if c.target is not None and c.kind != "stage"]
    targets = sorted({c.target for c in scored})
    seeds = sorted({c.seed for c in scored})
    ran: dict[str, dict[int, set[str]]] = {}
    for c in scored:
        ran.setdefault(c.condition, {}).setdefault(c.seed, set()).add(c.target)
    partial = {cond: by_seed for cond, by_seed in ran.items()
               if sorted(by_seed) != seeds or any(sorted(t) != targets for t in by_seed.values())}
    if not partial:
        return [f"Design: every condition on every target ({len(targets)}) with every seed "
                f"({', '.join(map(str, seeds))}).", ""]
    body = [[cond, str(seed), "all" if sorted(t) == targets else ", ".join(sorted(t))]
            for cond, by_seed in sorted(ran.items()) for seed, t in sorted(by_seed.items())]
    return ["Design: not every condition ran on every target with every seed (a toy study "
            "fits its time budget this way); each series is computed from what its condition "
            "ran, and a number that would need a missing cell is marked, never imputed:", "",
            _table(["condition", "seed", "targets"], body), ""]


def _completeness(result: Analysis, cells) -> list[str]:
    # A (condition, target) that no size or seed has a cell for is outside the design (the
    # Design line lists it), not missing.
    designed = {(_short(c.condition), c.target) for c in cells}
    missing = [(k, v) for k, v in sorted(result.status.items())
               if v is not None and (k[1], k[2]) in designed]
    out = ["## Completeness", ""]
    if not missing:
        return out + ["Every (size, condition, target) cell of the design is done with every "
                      "language.", ""]
    out += [f"{len(missing)} (size, condition, target) entries are incomplete; every number "
            "that depends on one is marked **incomplete** (or n/a), never averaged over what "
            "is there:", ""]
    body = [[s, c, t, v.reason.replace("|", "/")] for (s, c, t), v in missing]
    return out + [_table(["size", "condition", "target", "why"], body), ""]


def _gain_tables(result: Analysis) -> list[str]:
    lv = result.level
    out = ["## Gain over the baseline", "",
           "Points of the XTREME-R task score (QA: (F1 + EM) / 2), intermediate condition "
           f"minus no intermediate task, with {100 * lv:g}% CIs. Categories and overall "
           "follow XTREME-R (mean of the category means). Source: the cells "
           "`<size>/<condition>/<target>` in the Cells section and rows.tsv.", ""]
    for size in result.sizes:
        out += [f"### {size}", ""]
        for levels in (result.targets, [*CATEGORIES, OVERALL]):
            body = []
            for cond in [*result.conditions, BEST]:
                name = "**best task per target**" if cond == BEST else cond
                body.append([name] + [fmt(result.gains[(size, cond, lvl)], lv)
                                      for lvl in levels])
            out += [_table(["condition", *levels], body), ""]
        best = [result.best_task.get((size, t), "incomplete") for t in result.targets]
        out += [_table(["best task", *result.targets], [[size, *best]]), ""]
        out += ["Relative error reduction, % (the share of the baseline's remaining error the "
                "condition removes: near the ceiling a small absolute gain can be a large one):",
                "", _table(["condition", *CATEGORIES, OVERALL],
                           [[cond] + [fmt(result.rer[(size, cond, lvl)], lv)
                                      for lvl in [*CATEGORIES, OVERALL]]
                            for cond in result.conditions]), ""]
    return out


def _score_tables(result: Analysis) -> list[str]:
    out = ["## Task scores", "", "Absolute XTREME-R task scores (mean over languages; QA: "
           "(mean F1 + mean EM) / 2; mean over seeds), for checking against rows.tsv.", ""]
    header = ["size", "condition", *result.targets]
    body = []
    for size in result.sizes:
        for cond in [an.BASELINE, *result.conditions]:
            vals = [result.scores.get((size, cond, t)) for t in result.targets]
            body.append([size, cond] + [fmt(v, result.level, ci=False).lstrip("+")
                                        for v in vals])
    return out + [_table(header, body), ""]


def _trend_section(result: Analysis, figures) -> list[str]:
    lv = result.level
    out = ["## Trend with model size", "",
           "Gain regressed on log10(parameter count) by ordinary least squares; the slope is "
           "in points per 10x parameters, a linear combination of the per-size gains, so its "
           "interval carries seed and item variance. The "
           f"{an.FORECAST_SIZE.upper()} forecast extrapolates the line through every other "
           "size (chosen by size name). Role: the declared primary endpoint, or exploratory "
           f"with its {an.CORRECTION}-adjusted p-value over the secondary family.",
           "", f"![gain vs size]({figures['gain_vs_size'].name})", ""]
    body = []
    for cond in [*result.conditions, BEST]:
        for lvl in [OVERALL, *CATEGORIES, *(result.targets if cond == BEST else [])]:
            t = result.trends[(cond, lvl)]
            name = "best task per target" if cond == BEST else cond
            if isinstance(t, Missing):
                role = "**primary**" if (cond, lvl) == result.primary else "exploratory"
                body.append([name, lvl, role, "-", f"n/a: {t.reason}", "-", "-"])
                continue
            forecast = "-"
            if t.forecast is not None:
                forecast = f"{t.forecast.point:+.2f}" + (
                    f" [{t.forecast_interval[0]:+.2f}, {t.forecast_interval[1]:+.2f}]"
                    if t.forecast_interval else "")
            note = t.forecast_note + (f"; excluded {'; '.join(t.excluded)}" if t.excluded
                                      else "")
            role = ("**primary**" if (cond, lvl) == result.primary else
                    f"exploratory, p {t.p_adjusted:.3g}" if t.p_adjusted is not None
                    else "exploratory")
            body.append([name, lvl, role, ", ".join(t.sizes), fmt(t.slope, lv), forecast,
                         note.replace("|", "/")])
    header = ["series", "level", "role", "sizes", "slope per 10x [CI]",
              f"{an.FORECAST_SIZE.upper()} forecast [{100 * lv:g}% CI]", "note"]
    return out + [_table(header, body), ""]


def _language_section(result: Analysis, share_fits, mc4, figures) -> list[str]:
    out = ["## Per language", "",
           "Where does the gain persist? The gain of the primary endpoint's condition "
           f"({result.view_condition}; exploratory here), per language "
           "(averaged over the complete targets evaluated in that language), against the "
           "language's share of mT5's pre-training data (mC4 sizes from the mT5 paper, "
           "`study/data/mc4_language_sizes.tsv`, transcribed: see its header).", ""]
    uncertain = sorted(lg for lg, r in mc4.items() if r.confidence == "uncertain")
    if uncertain:
        out += [f"Shares marked uncertain in the data file: {', '.join(uncertain)}.", ""]
    body = []
    for size in result.sizes:
        fit = share_fits[size]
        if isinstance(fit, Missing):
            body.append([size, f"n/a: {fit.reason}", "-", "-"])
        else:
            body.append([size, fmt(fit.slope, result.level), str(len(fit.languages)),
                         "; ".join(fit.excluded) or "-"])
    out += [_table(["size", "gain per 10x share [CI]", "languages", "excluded"], body), ""]
    for size in reversed(result.sizes):
        view = result.language_view(size, result.view_condition)
        if view:
            rows = [[lg, f"{mc4[lg].mt5_percent:.2f}" if lg in mc4 and mc4[lg].mt5_percent
                     else "-", fmt(est, result.level)] for lg, est in view.items()]
            out += [f"### {size}", "", _table(["language", "mT5 %", "gain [CI]"], rows), ""]
        out += [f"![heat map {size}]({figures[f'heatmap_{size}'].name})",
                f"![gain vs share {size}]({figures[f'share_{size}'].name})", ""]
    return out


def _splits_section(result: Analysis, cells) -> list[str]:
    """Per target: the selection rule and reported set (docs/protocol.md section 4), with
    what the cells recorded (a split used for selection is never reported)."""
    out = ["## Splits and selection", "",
           "Checkpoints are selected on English dev only; the reported sets are never used for "
           "selection. Recorded: the cells' selection protocols and evaluated splits.", ""]
    body = []
    for target in result.targets:
        done = [c for c in cells if c.target == target and c.status == "done"]
        protocols = sorted({c.selection_protocol for c in done if c.selection_protocol})
        splits = sorted({json.loads(c.settings).get("eval.split", "?") for c in done
                         if c.settings})
        rule = SPLIT_RULES.get(target, ("?", "?"))
        body.append([target, rule[0], rule[1], ", ".join(splits) or "-",
                     ", ".join(protocols) or "-"])
    return out + [_table(["target", "selected on", "reported", "evaluated split (cells)",
                          "selection (cells)"], body), ""]


def _raw_section(raw: Analysis) -> list[str]:
    out = ["## Raw recipe variants", "",
           "The same gains for the targets also run under the raw recipe (XCOPA on COPA only; "
           "Tatoeba embedded with each condition's own encoder without target training, "
           "X-STILTs' variant: for the baseline, the pretrained model), which the tables above "
           "do not use.", ""]
    targets = raw.both_recipes
    body = [[size, cond if cond != BEST else "**best task per target**"]
            + [fmt(raw.gains[(size, cond, t)], raw.level) for t in targets]
            for size in raw.sizes for cond in [*raw.conditions, BEST]]
    return out + [_table(["size", "condition", *targets], body), ""]


def _cells_section(result: Analysis, cells) -> list[str]:
    out = ["## Cells", "", f"Every cell of the study and its provenance. All result rows: "
           f"`{ROWS_FILE}` (database query: `SELECT cell_id, language, metric, value, "
           "num_examples FROM results`).", ""]
    body = []
    for c in cells:
        body.append([c.cell_id, c.kind, c.size, c.condition, c.target or "-", str(c.seed),
                     c.recipe, c.status + (f": {c.error}" if c.error else ""),
                     str(c.checkpoint_step) if c.checkpoint_step is not None else "-",
                     f"{c.params_count:,}" if c.params_count else "-", c.device_kind or "-",
                     c.selection_protocol or "-",
                     f"{c.retrieval_layer}/{c.retrieval_pooling}" if c.retrieval_layer
                     is not None or c.retrieval_pooling else "-",
                     (c.code_commit or "-")[:12], (c.experiment_hash or "-")[:12]])
    body = [[cell.replace("|", "/").replace("\n", " ") for cell in row] for row in body]
    header = ["cell", "kind", "size", "condition", "target", "seed", "recipe", "status", "step",
              "params", "device", "selection", "retrieval layer/pooling", "commit",
              "experiment"]
    return out + [_table(header, body), ""]
