"""The XTREME-R score: its ten tasks, their categories and metrics, and how numbers combine.

- Task score: the mean of the task's metric over its languages; a QA task scores
  (mean F1 + mean EM) / 2 (as XTREME's `evaluate.py` computes `avg_metric`).
- Category score: the mean of its task scores (classification = XNLI, XCOPA; structured
  prediction = UD-POS, WikiANN; QA = XQuAD, MLQA, TyDiQA-GoldP; retrieval = Mewsli-X, LAReQA,
  Tatoeba).
- Overall: the mean of the four category scores (reproduces the published averages,
  mBERT 54.1 and XLM-R Large 65.3, from their per-task numbers; see tests/eval).

Nothing is averaged over a partial set: a task with a missing language, a category with a
missing task, and the overall score with a missing category are None, and the `missing` /
`reasons` fields say what is absent. Languages are `xitt_tasks.languages` (the XTREME-R lists).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from xitt_tasks import languages as xlanguages

CATEGORIES = ("classification", "structured_prediction", "qa", "retrieval")
QA_KEYS = ("f1", "exact_match")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One XTREME-R task.

    `name` is the project's target name (`xitt.<name>.<lang>` tasks); `folder` the leaderboard
    folder (XTREME's `evaluate.py` names; WikiANN is `panx`); `metric_keys` the per-language
    metric(s) the task score averages; `ext` the leaderboard file extension.
    """

    name: str
    folder: str
    category: str
    metric_keys: tuple[str, ...]
    ext: str

    @property
    def languages(self) -> tuple[str, ...]:
        return xlanguages.languages(self.name)


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("xnli", "xnli", "classification", ("accuracy",), "tsv"),
    TaskSpec("xcopa", "xcopa", "classification", ("accuracy",), "jsonl"),
    TaskSpec("udpos", "udpos", "structured_prediction", ("f1",), "tsv"),
    TaskSpec("wikiann", "panx", "structured_prediction", ("f1",), "tsv"),
    TaskSpec("xquad", "xquad", "qa", QA_KEYS, "json"),
    TaskSpec("mlqa", "mlqa", "qa", QA_KEYS, "json"),
    TaskSpec("tydiqa", "tydiqa", "qa", QA_KEYS, "json"),
    TaskSpec("mewslix", "mewslix", "retrieval", ("map@20",), "json"),
    TaskSpec("lareqa", "lareqa", "retrieval", ("map@20",), "json"),
    TaskSpec("tatoeba", "tatoeba", "retrieval", ("accuracy",), "tsv"),
)
BY_NAME: dict[str, TaskSpec] = {t.name: t for t in TASKS}
BY_FOLDER: dict[str, TaskSpec] = {t.folder: t for t in TASKS}


def get_task(name_or_folder: str | TaskSpec) -> TaskSpec:
    """The task called `name_or_folder` (project name `wikiann` or folder `panx`); a TaskSpec
    is its own task (callers resolve a name once and pass the spec down)."""
    if isinstance(name_or_folder, TaskSpec):
        return name_or_folder
    spec = BY_NAME.get(name_or_folder) or BY_FOLDER.get(name_or_folder)
    if spec is None:
        raise ValueError(f"unknown XTREME-R task {name_or_folder!r}; expected one of "
                         f"{[t.folder for t in TASKS]} (or the project names "
                         f"{[t.name for t in TASKS]})")
    return spec


def tasks_in(category: str) -> tuple[TaskSpec, ...]:
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    return tuple(t for t in TASKS if t.category == category)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


@dataclasses.dataclass
class TaskScore:
    """One task's score from per-language metrics; `score` None when languages are missing."""

    task: str
    score: float | None
    metric_means: dict[str, float | None]
    missing_languages: list[str]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def task_score(task: str | TaskSpec, per_language: Mapping[str, Mapping[str, float]]) -> TaskScore:
    """Mean over the task's languages of each metric key; QA combines F1 and EM.

    `per_language[lang][key]` are percent values. Languages outside the task raise; missing
    languages (or a language lacking a metric key) make the score None and are listed.
    """
    spec = get_task(task)
    extra = sorted(set(per_language) - set(spec.languages))
    if extra:
        raise ValueError(f"{spec.name}: languages {extra} are not part of the task "
                         f"({' '.join(spec.languages)})")
    missing = [lang for lang in spec.languages
               if lang not in per_language
               or any(per_language[lang].get(k) is None for k in spec.metric_keys)]
    means: dict[str, float | None] = {}
    for key in spec.metric_keys:
        if missing:
            means[key] = None
        else:
            means[key] = _mean([float(per_language[lang][key]) for lang in spec.languages])
    score = None if missing else _mean([m for m in means.values() if m is not None])
    return TaskScore(spec.name, score, means, missing)


@dataclasses.dataclass
class Summary:
    """Category and overall XTREME-R scores from task scores, with what is missing."""

    tasks: dict[str, float | None]
    categories: dict[str, float | None]
    overall: float | None
    missing_tasks: list[str]
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summarize(task_scores: Mapping[str, float | None],
              reasons: Mapping[str, str] | None = None) -> Summary:
    """Category means and the overall mean of category means, never over a partial set.

    `task_scores` maps task names (or folders) to a score or None; absent tasks count as
    missing. `reasons[task]` explains why a task is missing (e.g. which languages).
    """
    scores: dict[str, float | None] = {t.name: None for t in TASKS}
    for name, value in task_scores.items():
        scores[get_task(name).name] = None if value is None else float(value)
    reasons = dict(reasons or {})
    missing = [t.name for t in TASKS if scores[t.name] is None]
    notes = [f"{name}: {reasons.get(name) or reasons.get(BY_NAME[name].folder) or 'no score'}"
             for name in missing]
    categories: dict[str, float | None] = {}
    for category in CATEGORIES:
        names = [t.name for t in tasks_in(category)]
        values = [scores[n] for n in names]
        if any(v is None for v in values):
            categories[category] = None
            absent = [n for n in names if scores[n] is None]
            notes.append(f"category {category}: not computed, missing {', '.join(absent)}")
        else:
            categories[category] = _mean(values)
    if any(v is None for v in categories.values()):
        overall = None
        notes.append("overall: not computed, categories "
                     f"{', '.join(c for c, v in categories.items() if v is None)} incomplete")
    else:
        overall = _mean(list(categories.values()))
    return Summary(scores, categories, overall, missing, notes)


def score_from_task_numbers(numbers: Mapping[str, Any]) -> Summary:
    """XTREME-R scores from published-style per-task numbers.

    Each value is one number (the task metric), or for a QA task an (F1, EM) pair or a
    mapping {'f1': F1, 'exact_match': EM} (QA task score = (F1 + EM) / 2).
    """
    scores: dict[str, float | None] = {}
    for name, value in numbers.items():
        spec = get_task(name)
        if spec.category == "qa":
            if isinstance(value, Mapping):
                missing_keys = [k for k in QA_KEYS if k not in value]
                if missing_keys:
                    raise ValueError(f"{name}: QA numbers lack {missing_keys}; expected "
                                     "{'f1': F1, 'exact_match': EM} or [F1, EM]")
                f1, em = value["f1"], value["exact_match"]
            elif isinstance(value, (list, tuple)) and len(value) == 2:
                f1, em = value
            else:
                raise ValueError(f"{name}: QA task needs F1 and EM, got {value!r}; expected "
                                 "[F1, EM] or {'f1': F1, 'exact_match': EM}")
            scores[spec.name] = (float(f1) + float(em)) / 2
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}: expected one number, got {value!r}")
            scores[spec.name] = float(value)
    return summarize(scores)
