"""The retrieval targets of XTREME-R scored from an embedding function.

- Tatoeba: each x -> en file; every source line's nearest English line (cosine) over that
  file's English side; accuracy; prediction = index of the matched English line.
- Mewsli-X: each language's WikiNews mentions against the candidate entity pool
  (`xitt.mewslix.candidates`, embedded once); mAP@20 as `xitt_tasks.metrics.retrieval`
  computes it; prediction = the 20 best entity ids.
- LAReQA: each language's questions against the multilingual answer-sentence pool
  (`xitt.lareqa.candidates`, all 11 languages, embedded once); mAP@20 (LAReQA definition).

`embed(params, tokens [b, L]) -> [b, d]` is any embedding (`model.embed` of a
`train.models` model with the layer and pooling bound); rows are L2-normalised here, so the
inner-product search of `train.retrieval_search` ranks by cosine. Every row (query or
candidate) is embedded at one length (`length` tokens, trimmed by the task's preprocessors)
in batches of `batch_size` (the last one zero-padded), so one compilation of `embed` serves
every language and pool. A pool is padded to a multiple of devices x block rows with the
block min(block_size, next power of two of its rows per device), so the search compiles once
per pool size bucket, not per language.

Several processes (a multi-host job): every process reads the same rows and passes the same
[batch_size, length] batch; it becomes one global array sharded over the mesh's `data` axis,
so each process's devices embed only their own rows (the shard of this process), and the
embeddings come back replicated: every process holds every row, once per batch. The search
then runs on every process with the same inputs (`train.retrieval_search` shards the pool over
all devices), so every process computes the same rankings and metrics; only the caller's
process 0 writes files (`python -m eval`). Reading the (small) token rows on every process is
what keeps this simple: no per-process bookkeeping of which rows came from where.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import seqio
from etils import epath
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import xitt_tasks  # noqa: F401  (registers the tasks)
from eval import example_scores, leaderboard, predict, xtreme_r
from eval.target_result import LanguageResult
from train import partitioning, retrieval_search
from xitt_tasks import languages as xlanguages

EmbedFn = Callable[[Any, jax.Array], jax.Array]
TARGETS = ("tatoeba", "mewslix", "lareqa")
POOLS = {"mewslix": "xitt.mewslix.candidates", "lareqa": "xitt.lareqa.candidates"}
METRICS = {"tatoeba": "accuracy", "mewslix": "map@20", "lareqa": "map@20"}
TOP_K = 20


@dataclasses.dataclass
class LanguageRun:
    """One language: the task, its raw examples (split order), the postprocessed predictions
    (Tatoeba: int index; others: ranked id list) and the task's metrics."""

    task: seqio.Task
    examples: list[dict[str, Any]]
    predictions: list[Any]
    top_scores: np.ndarray
    metrics: dict[str, float]


class Embedder:
    """`embed` jitted once; rows in fixed [batch_size, length] batches over the mesh's data
    axis; returns float32 L2-normalised numpy embeddings."""

    def __init__(self, embed: EmbedFn, params: Any, *, batch_size: int, length: int,
                 mesh: Mesh, rules: Any = None, params_sharding: Any = None) -> None:
        data = mesh.shape.get("data", 1)
        if batch_size < 1 or batch_size % data:
            raise ValueError(f"retrieval batch_size={batch_size}: expected a positive multiple "
                             f"of the mesh's data axis ({data})")
        self.params, self.batch_size, self.length = params, batch_size, length
        self.mesh, self.rules = mesh, rules
        self.batch_sharding = NamedSharding(mesh, PartitionSpec("data"))

        def normalised(p, tokens):
            x = embed(p, tokens).astype(jnp.float32)
            return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), 1e-12))

        # Replicated out: every process can read every row (several processes: docstring).
        kw: dict[str, Any] = {"out_shardings": NamedSharding(mesh, PartitionSpec())}
        if params_sharding is None:  # params from anywhere (one device, host): replicate them
            params_sharding = jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()),
                                           params)
            self.params = jax.device_put(params, params_sharding)
        kw["in_shardings"] = (params_sharding, self.batch_sharding)
        self.jitted = jax.jit(normalised, **kw)

    def _context(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(jax.set_mesh(self.mesh))
        if self.rules is not None:
            stack.enter_context(nn.logical_axis_rules(self.rules))
        return stack

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        n, out, pending = tokens.shape[0], [], None
        with self._context():
            for start in range(0, n, self.batch_size):
                batch = tokens[start:start + self.batch_size]
                real = batch.shape[0]
                if real < self.batch_size:
                    batch = np.concatenate(
                        [batch, np.zeros((self.batch_size - real, self.length), np.int32)])
                result = self.jitted(self.params, jax.device_put(batch, self.batch_sharding))
                if pending is not None:
                    out.append(np.asarray(pending[0])[:pending[1]])
                pending = (result, real)
            if pending is not None:
                out.append(np.asarray(pending[0])[:pending[1]])
        if not out:
            raise ValueError("no rows to embed")
        return np.concatenate(out).astype(np.float32)


# ----------------------------------------------------------------------------- data

def read_task(task_name: str, split: str, length: int, max_examples: int | None = None
              ) -> tuple[seqio.Task, list[dict[str, Any]]]:
    """(task, examples in split order); kept in memory under `predict.keep_splits_in_memory`."""
    return predict.kept(("retrieval", task_name, split, length, max_examples),
                        lambda: _read_task(task_name, split, length, max_examples))


def _read_task(task_name: str, split: str, length: int, max_examples: int | None
               ) -> tuple[seqio.Task, list[dict[str, Any]]]:
    task = seqio.get_mixture_or_task(task_name)
    if split not in task.splits:
        raise ValueError(f"task {task_name!r} has no split {split!r} (splits: "
                         f"{list(task.splits)})")
    ds = task.get_dataset({"inputs": length, "targets": length}, split=split, shuffle=False,
                          num_epochs=1, seed=None)
    if max_examples is not None:
        ds = ds.take(max_examples)
    examples = list(ds.as_numpy_iterator())
    if not examples:
        raise ValueError(f"split {split!r} of task {task_name!r} has no examples")
    return task, examples


def token_matrix(examples: Sequence[Mapping[str, Any]], feature: str, length: int
                 ) -> np.ndarray:
    out = np.zeros((len(examples), length), np.int32)
    for i, ex in enumerate(examples):
        row = np.asarray(ex[feature])[:length]
        out[i, :len(row)] = row
    return out


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# ----------------------------------------------------------------------------- search

def block_for(num: int, num_devices: int, block_size: int) -> int:
    """min(block_size, next power of two of the rows per device): small pools stay small and
    pools of similar size share a compiled search."""
    per_device = max(1, math.ceil(num / num_devices))
    return min(block_size, 1 << (per_device - 1).bit_length())


def search(queries: np.ndarray, pool: np.ndarray, k: int, mesh: Mesh, block_size: int,
           query_block: int) -> tuple[np.ndarray, np.ndarray]:
    cands = retrieval_search.shard_candidates(
        pool, mesh, block_for(pool.shape[0], mesh.devices.size, block_size))
    return retrieval_search.top_k_search(queries, cands, min(k, pool.shape[0]),
                                         query_block=query_block)


def run_target(target: str, embedder: Embedder, *, split: str,
               languages: Sequence[str] | None = None, block_size: int = 4096,
               query_block: int = 256, max_examples: int | None = None,
               progress: Callable[[str], None] | None = None) -> dict[str, LanguageRun]:
    """Embed, search and score every language of `target` (module docstring)."""
    if target not in TARGETS:
        raise ValueError(f"retrieval target {target!r}: expected one of {TARGETS}")
    langs = tuple(languages) if languages is not None else xlanguages.languages(target)
    length, mesh = embedder.length, embedder.mesh
    pool_ids: list[str] = []
    pool = None
    if target in POOLS:
        _, pool_examples = read_task(POOLS[target], split, length)
        pool_ids = [_text(ex["candidate_id"]) for ex in pool_examples]
        pool = embedder(token_matrix(pool_examples, "inputs", length))
        if progress:
            progress(f"{target}: embedded {len(pool_ids)} candidates")
    runs = {}
    for lang in langs:
        task, examples = read_task(f"xitt.{target}.{lang}", split, length, max_examples)
        queries = embedder(token_matrix(examples, "inputs", length))
        if target == "tatoeba":
            english = embedder(token_matrix(examples, "targets", length))
            scores, idx = search(queries, english, 1, mesh, block_size, query_block)
            predictions: list[Any] = [int(i) for i in idx[:, 0]]
        else:
            scores, idx = search(queries, pool, TOP_K, mesh, block_size, query_block)
            predictions = [[pool_ids[j] for j in row] for row in idx]
        targets = [task.postprocess_fn(_text(ex.get("targets_pretokenized", b"")),
                                       example=ex, is_target=True) for ex in examples]
        metrics: dict[str, float] = {}
        for fn in task.predict_metric_fns:
            metrics.update({k: float(v) for k, v in fn(targets, predictions).items()})
        runs[lang] = LanguageRun(task, examples, predictions, scores, metrics)
        if progress:
            progress(f"{task.name}: {METRICS[target]} {metrics[METRICS[target]]:.2f} "
                     f"({len(examples)} queries)")
    return runs


def _records(run: LanguageRun) -> list[dict[str, Any]]:
    """`predictions.jsonl` records (the leaderboard writer's input)."""
    out = []
    for i, (ex, pred) in enumerate(zip(run.examples, run.predictions)):
        record = {"index": i, "query_id": _text(ex["query_id"]),
                  "gold_ids": [_text(g) for g in ex["gold_ids"]], "prediction": pred,
                  "score": [float(s) for s in run.top_scores[i]]}
        out.append(record)
    return out


def per_example_scores(target: str, run: LanguageRun) -> np.ndarray:
    """[n] per-query values whose mean is the language's metric (0/100 correctness for
    Tatoeba, 100 x AP@20 for Mewsli-X / LAReQA), checked against the corpus number."""
    metric = METRICS[target]
    (fn,) = run.task.predict_metric_fns
    targets = [run.task.postprocess_fn("", example=ex, is_target=True) for ex in run.examples]
    scores = example_scores.mean_scores(fn, targets, run.predictions, metric)
    if abs(float(np.mean(scores)) - run.metrics[metric]) > 1e-6 * max(1.0, run.metrics[metric]):
        raise RuntimeError(f"{run.task.name}: per-example {metric} mean {np.mean(scores)} != "
                           f"{run.metrics[metric]}")
    return scores


# ----------------------------------------------------------------------------- entry points

def evaluate_retrieval(target: str, embed: EmbedFn, params: Any, *, split: str = "test",
                       languages: Sequence[str] | None = None, length: int = 64,
                       batch_size: int = 32, mesh: Mesh | None = None, rules: Any = None,
                       params_sharding: Any = None, block_size: int = 4096,
                       query_block: int = 256, max_examples: int | None = None,
                       layer: int | None = None, pooling: str | None = None,
                       output_dir: str | None = None) -> dict[str, Any]:
    """Score `target` with `embed`; a JSON-ready dict with the embedding choice recorded:
    `languages` {lang: metrics + num_queries}, `average`, `per_example` {lang: [scores]},
    `query_ids`, `predictions` {lang: Tatoeba [index per line] | {query_id: [ranked ids]}}.
    `layer` / `pooling` describe what `embed` computes (they are recorded, not applied).
    With `output_dir`, writes `<output_dir>/retrieval-<target>.json` atomically."""
    mesh = mesh if mesh is not None else partitioning.create_mesh()
    embedder = Embedder(embed, params, batch_size=batch_size, length=length, mesh=mesh,
                        rules=rules, params_sharding=params_sharding)
    runs = run_target(target, embedder, split=split, languages=languages,
                      block_size=block_size, query_block=query_block,
                      max_examples=max_examples)
    metric = METRICS[target]
    result: dict[str, Any] = {
        "target": target, "split": split, "metric": metric,
        "retrieval_layer": layer, "retrieval_pooling": pooling, "length": length,
        "languages": {lang: {**r.metrics, "num_queries": len(r.examples)}
                      for lang, r in runs.items()},
        "average": float(np.mean([r.metrics[metric] for r in runs.values()])),
        "per_example": {lang: per_example_scores(target, r).tolist()
                        for lang, r in runs.items()},
        "query_ids": {lang: [_text(ex["query_id"]) for ex in r.examples]
                      for lang, r in runs.items()},
        "predictions": {lang: (r.predictions if target == "tatoeba" else
                               {_text(ex["query_id"]): p
                                for ex, p in zip(r.examples, r.predictions)})
                        for lang, r in runs.items()},
    }
    if output_dir is not None:
        out = epath.Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        predict.atomic_write_text(out / f"retrieval-{target}.json",
                                  json.dumps(result, ensure_ascii=False) + "\n")
    return result


def evaluate_retrieval_target(model: Any, params: Any, spec: xtreme_r.TaskSpec,
                              settings: Any, *,
                              split: str, languages: Sequence[str], mesh: Mesh | None = None,
                              rules: Any = None, params_sharding: Any = None,
                              leaderboard_dir: str | None = None,
                              output_dir: str | None = None,
                              info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`eval.targets.evaluate_target`'s retrieval branch: {lang: LanguageResult}.

    Embeds with `model.embed(layer=settings.retrieval_layer,
    pooling=settings.retrieval_pooling)` at `settings.feature_lengths['inputs']` tokens;
    writes `<output_dir>/<task>/{predictions.jsonl,metrics.json}` and the leaderboard files.
    """
    target = spec.name

    def embed(p, tokens):
        return model.embed(p, tokens, layer=settings.retrieval_layer,
                           pooling=settings.retrieval_pooling)

    mesh = mesh if mesh is not None else partitioning.create_mesh()
    embedder = Embedder(embed, params, batch_size=settings.batch_size,
                        length=int(settings.feature_lengths["inputs"]), mesh=mesh, rules=rules,
                        params_sharding=params_sharding)
    runs = run_target(target, embedder, split=split, languages=languages,
                      max_examples=settings.max_examples, progress=_print)
    results = {}
    for lang, run in runs.items():
        records = _records(run)
        if output_dir is not None:
            out = epath.Path(output_dir) / run.task.name
            out.mkdir(parents=True, exist_ok=True)
            predict.atomic_write_text(out / predict.PREDICTIONS_FILE, "".join(
                json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            summary = {"task": run.task.name, "split": split, "num_examples": len(records),
                       "feature_lengths": dict(settings.feature_lengths), **dict(info or {}),
                       "metrics": run.metrics}
            predict.atomic_write_text(out / predict.METRICS_FILE,
                                      json.dumps(summary, indent=1) + "\n")
        if leaderboard_dir is not None:
            leaderboard.write_predictions(leaderboard_dir, run.task.name, records, split)
        metric = METRICS[target]
        results[lang] = LanguageResult(
            lang, run.task.name, dict(run.metrics), len(records),
            tuple(f"{lang}:{i}" for i in range(len(records))),
            {metric: (per_example_scores(target, run), "mean")})
    return results


def _print(message: str) -> None:
    print(message, flush=True)
