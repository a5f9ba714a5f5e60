"""Score a leaderboard folder against gold labels: per language, task, category and overall.

    python -m eval.score --predictions DIR --labels DIR [--split test|local|...] [--json]
                         [--allow_missing_languages] [--verbose]
    python -m eval.score --task_scores FILE.json [--json]

Both folders use the layout of `eval.leaderboard` (`<folder>/<split>-<lang>.<ext>`; with
`--split local` each task's own local scoring split, e.g. `xnli/validation-de.tsv` beside
`xquad/test-de.json`, as `python -m eval --target` writes them). Metrics
are the official ones of `xitt_tasks.metrics`: accuracy (XNLI, XCOPA, Tatoeba), seqeval F1
(UD-POS, WikiANN), SQuAD v1.1 EM/F1 (XQuAD, TyDiQA) and MLQA's (MLQA) on raw strings, mAP@20
(Mewsli-X's MRR@20 over the first gold; LAReQA's AP@20). As in the official scorers, a gold QA
id (or retrieval query) with no prediction counts 0 and ids absent from the gold are ignored;
both are counted (`num_unanswered`, `num_extra`).

Missing things are stated, never averaged over: a task folder absent from the predictions is a
missing task (its category and the overall score are then not computed); a missing language
file in a present task folder is an error naming it, or with --allow_missing_languages a
missing language (the task score is then not computed). Bad input (unknown task folder,
malformed JSON, wrong number of lines, missing gold file, ...) is one line on stderr naming the
file, exit status 2 (--verbose: the traceback). `--task_scores` scores published-style
per-task numbers (`{"xnli": 66.5, "xquad": [F1, EM], ...}`), e.g. to check the formula
against the published averages (mBERT 54.1, XLM-R Large 65.3).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # before TF/seqio/the tasks are imported: no start-up noise
    from xitt_common.quiet import entry_point

    entry_point(own_flag=True)

from eval import leaderboard, xtreme_r
from eval.leaderboard import LeaderboardError, Parsed
from eval.xtreme_r import TaskSpec
from xitt_tasks.metrics import classification, mlqa, retrieval, squad, tagging


def _qa_scores(spec: TaskSpec, lang: str, pred: Parsed, gold: Parsed) -> dict[str, float]:
    metric: Callable[..., dict[str, float]] = (
        mlqa.mlqa_metrics(lang) if spec.name == "mlqa" else squad.squad_v1)
    golds: dict[str, list[str]] = gold.values
    answered = [qid for qid in golds if qid in pred.values]
    out = {"exact_match": 0.0, "f1": 0.0}
    if answered:
        scores = metric([golds[q] for q in answered], [pred.values[q] for q in answered])
        out = {k: scores[k] * len(answered) / len(golds) for k in out}
    out["num_unanswered"] = float(len(golds) - len(answered))
    out["num_extra"] = float(len(set(pred.values) - set(golds)))
    return out


def _ranking_scores(spec: TaskSpec, pred: Parsed, gold: Parsed) -> dict[str, float]:
    golds: dict[str, list[str]] = gold.values
    metric = retrieval.mewslix_map_at_20 if spec.name == "mewslix" else retrieval.lareqa_map_at_20
    ids = list(golds)
    out = dict(metric([golds[q] for q in ids], [pred.values.get(q, []) for q in ids]))
    out["num_unanswered"] = float(sum(q not in pred.values for q in ids))
    out["num_extra"] = float(len(set(pred.values) - set(golds)))
    return out


def score_language(spec: TaskSpec, lang: str, pred: Parsed, gold: Parsed) -> dict[str, float]:
    """The official metric(s) of one task-language, percent."""
    leaderboard.check_aligned(pred, gold)
    if not gold.values:
        raise LeaderboardError(f"{gold.path}: no gold examples; expected at least one")
    try:
        if spec.category == "qa":
            return _qa_scores(spec, lang, pred, gold)
        if spec.name in ("mewslix", "lareqa"):
            return _ranking_scores(spec, pred, gold)
        if spec.name in ("udpos", "wikiann"):
            return tagging.seqeval_scores(gold.values, pred.values)
        if spec.name == "tatoeba":
            return retrieval.tatoeba_accuracy(gold.values, pred.values)
        return classification.accuracy(gold.values, pred.values)
    except (TypeError, ValueError) as e:
        raise LeaderboardError(f"{pred.path}: {e}") from e


def _check_folders(predictions: Path, labels: Path, split: str) -> list[TaskSpec]:
    for what, path in (("--predictions", predictions), ("--labels", labels)):
        if not path.is_dir():
            raise LeaderboardError(f"{path}: {what} folder not found")
    present = []
    for sub in sorted(p for p in predictions.iterdir() if not p.name.startswith(".")):
        if not sub.is_dir():
            continue
        if sub.name not in xtreme_r.BY_FOLDER:
            hint = " (WikiANN's folder is 'panx')" if sub.name == "wikiann" else ""
            raise LeaderboardError(f"{sub}: unknown task folder{hint}; expected folders among "
                                   f"{', '.join(t.folder for t in xtreme_r.TASKS)}")
        spec = xtreme_r.BY_FOLDER[sub.name]
        prefix = leaderboard.split_for(spec.name, split)
        expected = {leaderboard.file_name(spec.name, lang, split) for lang in spec.languages}
        for f in sorted(sub.glob(f"{prefix}-*")):
            if f.name not in expected:
                raise LeaderboardError(
                    f"{f}: unexpected file; expected {prefix}-<lang>.{spec.ext} with <lang> one "
                    f"of {' '.join(spec.languages)}")
        if not (labels / sub.name).is_dir():
            raise LeaderboardError(f"{labels / sub.name}: gold label folder not found for the "
                                   f"predictions in {sub}")
        present.append(spec)
    return sorted(present, key=xtreme_r.TASKS.index)


def score_folder(predictions: str | Path, labels: str | Path, split: str = "test", *,
                 allow_missing_languages: bool = False) -> dict[str, Any]:
    """Every task folder of `predictions` scored against `labels`; the XTREME-R summary."""
    predictions, labels = Path(predictions), Path(labels)
    present = _check_folders(predictions, labels, split)
    tasks: dict[str, dict[str, Any]] = {}
    reasons: dict[str, str] = {}
    for spec in present:
        per_lang: dict[str, dict[str, float]] = {}
        for lang in spec.languages:
            pred_path = leaderboard.file_path(predictions, spec.name, lang, split)
            gold_path = leaderboard.file_path(labels, spec.name, lang, split)
            if not pred_path.is_file():
                if allow_missing_languages:
                    continue
                raise LeaderboardError(
                    f"{pred_path}: missing language file ({spec.folder} needs all "
                    f"{len(spec.languages)} languages: {' '.join(spec.languages)}; "
                    "--allow_missing_languages reports the task as incomplete instead)")
            pred = leaderboard.read_file(pred_path, spec.name)
            gold = leaderboard.read_file(gold_path, spec.name, gold=True)
            per_lang[lang] = score_language(spec, lang, pred, gold)
        result = xtreme_r.task_score(spec.name, per_lang)
        if result.missing_languages:
            reasons[spec.name] = (f"missing languages {' '.join(result.missing_languages)} "
                                  f"({len(per_lang)}/{len(spec.languages)} present)")
        tasks[spec.name] = {"folder": spec.folder, "category": spec.category,
                            "metric_keys": list(spec.metric_keys), "languages": per_lang,
                            **result.as_dict()}
    for spec in xtreme_r.TASKS:
        if spec.name not in tasks:
            reasons[spec.name] = f"no {spec.folder}/ folder in {predictions}"
    summary = xtreme_r.summarize({n: t["score"] for n, t in tasks.items()}, reasons)
    return {"split": split, "predictions": str(predictions), "labels": str(labels),
            "tasks": tasks, "categories": summary.categories, "overall": summary.overall,
            "missing_tasks": summary.missing_tasks, "reasons": summary.reasons}


def score_task_numbers(numbers: dict[str, Any]) -> dict[str, Any]:
    summary = xtreme_r.score_from_task_numbers(numbers)
    tasks = {name: {"folder": xtreme_r.BY_NAME[name].folder,
                    "category": xtreme_r.BY_NAME[name].category, "score": score}
             for name, score in summary.tasks.items()}
    return {"tasks": tasks, "categories": summary.categories, "overall": summary.overall,
            "missing_tasks": summary.missing_tasks, "reasons": summary.reasons}


# ----------------------------------------------------------------------------- printing

def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_report(report: dict[str, Any], width: int = 100) -> str:
    lines: list[str] = []
    if "split" in report:
        lines.append(f"XTREME-R scores, split {report['split']}: {report['predictions']} "
                     f"against {report['labels']}")
        lines += ["", "Per language"]
        for task in report["tasks"].values():
            keys = task["metric_keys"]
            lines.append(f"  {task['folder']} ({' / '.join(keys)})")
            cells = [f"{lang} " + "/".join(_num(m.get(k)) for k in keys)
                     for lang, m in task["languages"].items()]
            row = "   "
            for cell in cells:
                if len(row) + len(cell) + 2 > width:
                    lines.append(row.rstrip())
                    row = "   "
                row += " " + cell + " "
            lines.append(row.rstrip())
            unanswered = [f"{lang} {int(m['num_unanswered'])}"
                          for lang, m in task["languages"].items() if m.get("num_unanswered")]
            if unanswered:
                lines.append(f"    gold ids without a prediction (scored 0): "
                             f"{', '.join(unanswered)}")
    lines += ["", "Per task", f"  {'task':9}{'category':23}{'languages':>10}{'score':>9}  metrics"]
    for spec in xtreme_r.TASKS:
        task = report["tasks"].get(spec.name)
        if task is None:
            lines.append(f"  {spec.folder:9}{spec.category:23}{'-':>10}{'-':>9}  missing")
            continue
        langs = (f"{len(task['languages'])}/{len(spec.languages)}"
                 if "languages" in task else "-")
        means = " ".join(f"{k} {_num(v)}" for k, v in task.get("metric_means", {}).items())
        lines.append(f"  {spec.folder:9}{spec.category:23}{langs:>10}{_num(task['score']):>9}"
                     f"  {means}".rstrip())
    lines += ["", "Per category"]
    lines += [f"  {c:32}{_num(v):>9}" for c, v in report["categories"].items()]
    lines += ["", f"  {'overall (mean of the categories)':32}{_num(report['overall']):>9}"]
    if report["reasons"]:
        lines += ["", "Missing (not averaged over):"] + [f"  {r}" for r in report["reasons"]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line

def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval.score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", help="leaderboard folder to score")
    parser.add_argument("--labels", help="gold labels in the same layout")
    parser.add_argument("--split", default="test",
                        help="file prefix: <split>-<lang>.<ext>; 'local': each task's local "
                             "scoring split (eval.leaderboard.LOCAL_SPLITS)")
    parser.add_argument("--task_scores", help="JSON of per-task numbers instead of folders")
    parser.add_argument("--allow_missing_languages", action="store_true")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--verbose", action="store_true", help="tracebacks on errors")
    args = parser.parse_args(list(argv))
    if args.task_scores is None and (args.predictions is None or args.labels is None):
        parser.error("give --predictions and --labels (or --task_scores)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.task_scores is not None:
            path = Path(args.task_scores)
            if not path.is_file():
                raise LeaderboardError(f"{path}: --task_scores file not found")
            try:
                numbers = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise LeaderboardError(f"{path}:{e.lineno}:{e.colno}: malformed JSON "
                                       f"({e.msg})") from None
            if not isinstance(numbers, dict):
                raise LeaderboardError(f"{path}: expected a JSON object {{task: number}}")
            try:
                report = score_task_numbers(numbers)
            except ValueError as e:
                raise LeaderboardError(f"{path}: {e}") from e
        else:
            report = score_folder(args.predictions, args.labels, args.split,
                                  allow_missing_languages=args.allow_missing_languages)
    except (LeaderboardError, ValueError, OSError) as e:
        if args.verbose:
            raise
        print(f"eval.score: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1, ensure_ascii=False) if args.json
          else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
