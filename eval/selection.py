"""Model selection by the target's own metric, for the trainer's `selection_fn`.

At every validation step the selection set is decoded (or, for retrieval, embedded and ranked)
and scored with the target's XTREME-R metric: accuracy, F1, (EM + F1) / 2 or mAP@20. The best
checkpoint is kept by that number instead of by token loss.

Protocols (recorded with every result):
- 'en_dev': English dev only, strict zero-shot (default): the English training task's
  validation split (`english_dev_task`), or Mewsli-X's English WikiNews dev mentions;
- 'all_dev': every language's dev set, as the mT5 paper selected;
- 'last': no selection, the last checkpoint.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import seqio

from eval import predict, xtreme_r
from eval import targets as eval_targets

PROTOCOLS = ("en_dev", "all_dev", "last")
SELECTION_METRIC = "task_score"
# Targets with no dev set to rank: LAReQA has one (test) set per language, Tatoeba no training.
# A LAReQA dual encoder is selected by the trainer's validation in-batch retrieval accuracy on
# held-out SQuAD pairs instead, so `make_selection_fn` returns None for them.
NO_RANKED_DEV = ("lareqa", "tatoeba")


def english_dev_task(target: str) -> str:
    """The English selection set of a decoding target: its English training task's validation
    split (MNLI matched dev for XNLI, SQuAD dev for XQuAD/MLQA, COPA dev for XCOPA, ...)."""
    return "xitt.xcopa.train.copa" if target == "xcopa" else f"xitt.{target}.train.en"


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"selection protocol {protocol!r}: expected one of {PROTOCOLS}")
    return protocol


def selection_languages(target: str, protocol: str) -> tuple[str, ...]:
    """The languages whose dev sets select the checkpoint."""
    check_protocol(protocol)
    if protocol == "last":
        return ()
    if protocol == "en_dev":
        return ("en",)
    return eval_targets.target_languages(target)


def task_score(target: str | xtreme_r.TaskSpec,
               per_language: Mapping[str, Mapping[str, float]]) -> float:
    """The target's metric averaged over the given languages (QA: (F1 + EM) / 2)."""
    keys = xtreme_r.get_task(target).metric_keys
    values = [sum(float(m[k]) for k in keys) / len(keys) for m in per_language.values()]
    if not values:
        raise ValueError(f"no selection languages scored for {target!r}")
    return sum(values) / len(values)


def make_selection_fn(model: Any, target: str, protocol: str,
                      settings: eval_targets.TargetSettings, *, split: str = "validation",
                      mesh: Any = None, rules: Any = None, params_sharding: Any = None,
                      log: Callable[[str], None] | None = None,
                      batch_fn: predict.BatchFn | None = None
                      ) -> Callable[[Any, int], dict[str, float]] | None:
    """`selection_fn(params, step) -> {'task_score': ...}` for `train.trainer.train`, or None
    for the 'last' protocol. The English dev set is read once, at the first call; `batch_fn`
    reuses a compiled decoder (`predict.make_batch_fn` of the same settings)."""
    spec = xtreme_r.get_task(target)  # resolved once; the spec is passed down
    target = spec.name
    langs: Sequence[str] = selection_languages(target, protocol)
    if not langs or target in NO_RANKED_DEV:
        return None
    model = predict.as_model(model)
    eval_settings = predict.EvalSettings(
        feature_lengths=dict(settings.feature_lengths), split=split,
        batch_size=settings.batch_size, beam_size=settings.beam_size, alpha=settings.alpha,
        max_examples=settings.max_examples)
    retrieval = target in eval_targets.RETRIEVAL_TARGETS
    if batch_fn is None and not retrieval:
        batch_fn = predict.make_batch_fn(model, eval_settings, mesh, rules, params_sharding)
    english_dev: list[Any] = []  # (examples, host batches), read at the first call

    def selection_fn(params: Any, step: int) -> dict[str, float]:
        if protocol == "en_dev" and not retrieval:
            name = english_dev_task(target)
            if not english_dev:
                english_dev.append(predict.materialized_split(
                    seqio.get_mixture_or_task(name), eval_settings))
            out = predict.predict_task(name, params, batch_fn, eval_settings,
                                       split_data=english_dev[0])
            per_language = {"en": out.metrics}
        else:  # every language's dev set (or Mewsli-X's English WikiNews dev set)
            per_language = eval_targets.evaluate_target(
                model, params, spec, settings, split=split, languages=langs, mesh=mesh,
                rules=rules, params_sharding=params_sharding,
                batch_fn=batch_fn).per_language_metrics()
        score = task_score(spec, per_language)
        if log is not None:
            log(f"step {step}: selection ({protocol}, {split}) {target} {score:.2f}")
        return {SELECTION_METRIC: score}

    return selection_fn
