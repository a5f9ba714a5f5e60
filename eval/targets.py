"""Evaluate one XTREME-R target end to end: every language through one compiled function,
per-language metrics, the per-example scores behind them, and the leaderboard files.

`python -m eval --target=...`, the trainer's model selection (`eval.selection`) and the study's
cells all call `evaluate_target`, so a number in the study is the number `python -m eval` and
`python -m eval.score` print for the same checkpoint.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import seqio

from eval import example_scores, leaderboard, predict, xtreme_r
from eval.target_result import LanguageResult, TargetResult, TargetSettings
from xitt_tasks import languages as xlanguages

__all__ = ["DECODE_TARGETS", "RETRIEVAL_TARGETS", "LanguageResult", "TargetResult",
           "TargetSettings", "default_split", "evaluate_target", "language_scores",
           "target_languages"]

DECODE_TARGETS = ("xnli", "xcopa", "udpos", "wikiann", "xquad", "mlqa", "tydiqa")
RETRIEVAL_TARGETS = ("tatoeba", "mewslix", "lareqa")


def default_split(spec: xtreme_r.TaskSpec) -> str:
    """The split scored locally (XTREME strips most test labels: dev sets stand in)."""
    return leaderboard.LOCAL_SPLITS[spec.name]


def target_languages(target: str, languages: Sequence[str] | None = None) -> tuple[str, ...]:
    langs = xlanguages.languages(target)
    if languages is None:
        return langs
    unknown = [lang for lang in languages if lang not in langs]
    if unknown:
        raise ValueError(f"target {target!r} has no language(s) {unknown}; expected some of "
                         f"{list(langs)}")
    return tuple(languages)


def language_scores(target: str, lang: str, task: seqio.Task, examples: Sequence[Mapping],
                    outputs: Sequence[Any], metrics: Mapping[str, float]
                    ) -> dict[str, tuple[np.ndarray, str]]:
    """Per-example scores of every reported metric, checked to reproduce the corpus number."""
    targets = predict.target_texts(task, list(examples))
    (metric_fn,) = task.predict_metric_fns
    out = {}
    for metric in example_scores.MAIN_METRICS[target]:
        if metric not in metrics:
            raise ValueError(f"{task.name}: metric {metric!r} missing from {sorted(metrics)}")
        scores, aggregation = example_scores.per_example(target, metric, metric_fn, targets,
                                                         outputs)
        mine = example_scores.aggregate(scores, aggregation)
        if abs(mine - float(metrics[metric])) > 1e-6 * max(1.0, abs(float(metrics[metric]))):
            raise RuntimeError(f"{task.name} {metric}: per-example scores give {mine}, the "
                               f"task's metric {metrics[metric]}")
        out[metric] = (scores, aggregation)
    return out


def _decode_target(params: Any, spec: xtreme_r.TaskSpec, split: str, langs: Sequence[str],
                   settings: TargetSettings, batch_fn: predict.BatchFn,
                   output_dir: str | None, leaderboard_dir: str | None,
                   info: Mapping[str, Any]) -> dict[str, LanguageResult]:
    target = spec.name
    eval_settings = predict.EvalSettings(
        feature_lengths=dict(settings.feature_lengths), split=split, mode="decode",
        batch_size=settings.batch_size, beam_size=settings.beam_size, alpha=settings.alpha,
        max_examples=settings.max_examples)
    results = {}
    for lang in langs:
        name = f"xitt.{target}.{lang}"
        out = predict.predict_task(name, params, batch_fn, eval_settings)
        records = predict.example_records(out.examples, out.outputs, out.predictions)
        if output_dir is not None:
            predict.write_task_outputs(out, eval_settings, f"{output_dir}/{name}", info)
        if leaderboard_dir is not None:
            leaderboard.write_predictions(leaderboard_dir, name, records, split)
        outputs = [out.task.postprocess_fn(p, example=ex, is_target=False)
                   for ex, p in zip(out.examples, out.predictions)]
        scores = language_scores(target, lang, out.task, out.examples, outputs, out.metrics)
        results[lang] = LanguageResult(
            lang, name, {k: float(v) for k, v in out.metrics.items()
                         if isinstance(v, (int, float))},
            len(out.examples), tuple(f"{lang}:{i}" for i in range(len(out.examples))), scores)
    return results


def evaluate_target(model: Any, params: Any, target: str | xtreme_r.TaskSpec,
                    settings: TargetSettings, *,
                    split: str | None = None, languages: Sequence[str] | None = None,
                    mesh: Any = None, rules: Any = None, params_sharding: Any = None,
                    batch_fn: predict.BatchFn | None = None, output_dir: str | None = None,
                    leaderboard_dir: str | None = None,
                    info: Mapping[str, Any] | None = None) -> TargetResult:
    """Every language of `target` (a name or its `xtreme_r.TaskSpec`, resolved once here and
    passed down) on `split` (default: `default_split`).

    `model` is a `train.models` model; params in its in-memory layout. Decoding targets reuse
    `batch_fn` when given (one compilation for every target with the same shapes). Files:
    `output_dir/<task>/{predictions.jsonl,metrics.json}` and the XTREME-R submission layout
    under `leaderboard_dir`.
    """
    spec = xtreme_r.get_task(target)
    split = split or default_split(spec)
    langs = target_languages(spec.name, languages)
    model = predict.as_model(model)
    info = {"target": spec.name, "split": split, **dict(info or {})}
    if spec.name in RETRIEVAL_TARGETS:
        from eval import retrieval  # embeds and searches: loaded only for these targets

        info.update(retrieval_layer=settings.retrieval_layer,
                    retrieval_pooling=settings.retrieval_pooling)
        results = retrieval.evaluate_retrieval_target(
            model, params, spec, settings, split=split, languages=langs, mesh=mesh,
            rules=rules, params_sharding=params_sharding, leaderboard_dir=leaderboard_dir,
            output_dir=output_dir, info=info)
    else:
        if batch_fn is None:
            batch_fn = predict.make_batch_fn(
                model, predict.EvalSettings(feature_lengths=dict(settings.feature_lengths),
                                            split=split, batch_size=settings.batch_size,
                                            beam_size=settings.beam_size,
                                            alpha=settings.alpha),
                mesh, rules, params_sharding)
        results = _decode_target(params, spec, split, langs, settings, batch_fn,
                                 output_dir, leaderboard_dir, info)
    score = xtreme_r.task_score(spec, {lang: r.metrics for lang, r in results.items()})
    return TargetResult(spec.name, split, results, score.score, info)
