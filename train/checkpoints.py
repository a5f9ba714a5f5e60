"""t5x-layout Orbax checkpoints: `<model_dir>/checkpoint_<step>/` holding
`{'target': params, 'state': {'step', 'param_states'}}` (unscanned, the released layout).

Why not `orbax.checkpoint.CheckpointManager`: it nests every item in a sub-directory
(`checkpoint_<step>/default/`), which is not the t5x layout, and its `best_fn` keeps the top-k
by metric only, while we keep the last K *and* the best. So each step is written by an Orbax
`Checkpointer` straight into `checkpoint_<step>/` (Orbax writes into a temporary directory and
renames it when complete, then leaves `commit_success.txt`), and retention is done here.

A step counts only when its directory is named exactly `checkpoint_<int>` and holds both
Orbax's `_CHECKPOINT_METADATA` and `commit_success.txt`; an interrupted save (a leftover
temporary directory, or a directory without those markers) is never restored.
Validation metrics of saved steps are kept in `<model_dir>/checkpoint_metrics.json`.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from train import scan
from train.formats import report

PREFIX = "checkpoint_"
METRICS_FILE = "checkpoint_metrics.json"
_MARKERS = ("_CHECKPOINT_METADATA", "commit_success.txt")
_STEP_DIR = re.compile(r"^checkpoint_(\d+)$")


class NonFiniteStateError(FloatingPointError):
    """The state holds NaN or inf; it is never written."""


def checkpoint_path(model_dir: str, step: int) -> epath.Path:
    return epath.Path(model_dir) / f"{PREFIX}{int(step)}"


def is_committed(path: epath.Path) -> bool:
    return bool(_STEP_DIR.match(path.name)) and all((path / m).exists() for m in _MARKERS)


def committed_steps(model_dir: str) -> list[int]:
    """Steps with a complete checkpoint, ascending; [] for a missing or empty directory."""
    root = epath.Path(model_dir)
    if not root.exists():
        return []
    steps = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and is_committed(child):
            steps.append(int(match.group(1)))
    return sorted(steps)


def latest_step(model_dir: str) -> int | None:
    steps = committed_steps(model_dir)
    return steps[-1] if steps else None


def resolve(path: str) -> epath.Path:
    """A `checkpoint_<step>` directory, or a model directory (its latest checkpoint)."""
    p = epath.Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint path {path} does not exist")
    if _STEP_DIR.match(p.name):
        if not is_committed(p):
            raise FileNotFoundError(
                f"{path} is not a complete checkpoint (no {' / '.join(_MARKERS)}: "
                "an interrupted save?)")
        return p
    step = latest_step(path)
    if step is None:
        raise FileNotFoundError(
            f"no complete checkpoint_<step> directory in {path} (expected a model directory "
            "written by train, or a checkpoint_<step> directory)")
    return checkpoint_path(path, step)


# ---------------------------------------------------------------------------------- checks

def all_finite(tree: Any) -> bool:
    """One device reduction over every floating leaf, one host sync."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    if not leaves:
        return True
    return bool(jax.jit(lambda xs: jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs])))(
        leaves))


def stored_meta(step_dir: epath.Path) -> dict[str, report.Meta]:
    """Flat '/'-named (shape, dtype) of what a checkpoint holds, read from its metadata."""
    tree = ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).metadata(step_dir).item_metadata.tree
    return {n: report.meta_of(m) for n, m in report.flatten(tree).items()}


def check_compatible(step_dir: epath.Path, abstract_tree: Mapping[str, Any]) -> None:
    """Raise one ValueError naming every mismatching parameter with both shapes."""
    expected = report.expected_meta(abstract_tree)
    tops = {name.split("/", 1)[0] for name in expected}
    found = {n: m for n, m in stored_meta(step_dir).items() if n.split("/", 1)[0] in tops}
    report.check(found, expected, source=str(step_dir))


# ---------------------------------------------------------------------------------- restore

def _abstract(tree: Any, shardings: Any | None) -> Any:
    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                           sharding=getattr(x, "sharding", None)),
                            tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, shardings)


def restore_tree(step_dir: epath.Path, abstract_tree: Mapping[str, Any],
                 shardings: Any | None = None) -> dict[str, Any]:
    """The sub-tree of a checkpoint that `abstract_tree` names, placed with its shardings
    (each process reads only its shards). Leaves without a sharding land on device 0."""
    check_compatible(step_dir, abstract_tree)
    target = _abstract(abstract_tree, shardings)
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda x: x if x.sharding is not None else
        jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=default), target)
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    ckptr = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
    return ckptr.restore(step_dir, args=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=True))


def _unscanned_shardings(shardings: Mapping[str, Any], abstract_unscanned: Mapping[str, Any]
                         ) -> dict[str, Any]:
    """Shardings of the per-layer leaves: the stacked leaf's spec without its layer axis."""
    flat = report.flatten(shardings)
    out = {}
    for name in report.flatten(abstract_unscanned):
        stacked = re.sub(r"/layers_\d+/", "/layers/", name, count=1)
        if stacked != name:
            s = flat[stacked]
            out[name] = jax.sharding.NamedSharding(s.mesh, jax.sharding.PartitionSpec(*s.spec[1:]))
        else:
            out[name] = flat[name]
    return report.unflatten(out)


def load_params(path: str, abstract_params: Mapping[str, Any], shardings: Any | None = None,
                *, config: Any | None = None) -> dict[str, Any]:
    """Parameters (`target`) of a model directory's latest checkpoint or of one
    `checkpoint_<step>` directory.

    `abstract_params` (ShapeDtypeStruct leaves) and `shardings` describe the model's layout;
    for a layer-scanned model pass its `config` (`train.config.MT5Config`): the unscanned
    checkpoint is read layer by layer into the matching shards, then stacked.
    """
    step_dir = resolve(path)
    if config is None or not config.scan_layers:
        shard_tree = None if shardings is None else {"target": shardings}
        return restore_tree(step_dir, {"target": abstract_params}, shard_tree)["target"]
    per_layer = scan.unscan_params(abstract_params, config)
    shard_tree = (None if shardings is None
                  else {"target": _unscanned_shardings(shardings, per_layer)})
    params = restore_tree(step_dir, {"target": per_layer}, shard_tree)["target"]
    return jax.jit(lambda p: scan.scan_params(p, config), out_shardings=shardings)(params)


# ---------------------------------------------------------------------------------- save

class Checkpoints:
    """Saves t5x trees under a model directory, keeping the last `keep` and the best one.

    best_metric / best_mode: a validation metric recorded with `save(..., metrics=...)`
    and whether larger ('max') or smaller ('min') is better; None keeps only the last `keep`.
    """

    def __init__(self, model_dir: str, *, keep: int = 3, best_metric: str | None = None,
                 best_mode: str = "min") -> None:
        if keep < 1:
            raise ValueError(f"keep={keep!r}: expected >= 1 (checkpoints to keep)")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode={best_mode!r}: expected 'min' or 'max'")
        self.model_dir = epath.Path(model_dir)
        self.keep, self.best_metric, self.best_mode = keep, best_metric, best_mode
        self._ckptr = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())

    # metrics ------------------------------------------------------------------------------
    def metrics(self) -> dict[int, dict[str, float]]:
        f = self.model_dir / METRICS_FILE
        if not f.exists():
            return {}
        try:
            return {int(k): v for k, v in json.loads(f.read_text()).items()}
        except (ValueError, AttributeError) as e:
            raise ValueError(f"{f}: not a JSON object of step -> metrics ({e})") from None

    def _write_metrics(self, metrics: Mapping[int, Mapping[str, float]]) -> None:
        if jax.process_index() != 0:
            return
        f = self.model_dir / METRICS_FILE
        tmp = self.model_dir / (METRICS_FILE + ".tmp")
        tmp.write_text(json.dumps({str(k): dict(v) for k, v in sorted(metrics.items())},
                                  indent=1))
        tmp.replace(f)

    def best_step(self) -> int | None:
        if self.best_metric is None:
            return None
        steps = set(committed_steps(str(self.model_dir)))
        scored = [(v[self.best_metric], s) for s, v in self.metrics().items()
                  if s in steps and self.best_metric in v and np.isfinite(v[self.best_metric])]
        if not scored:
            return None
        pick = min if self.best_mode == "min" else max
        return pick(scored, key=lambda vs: (vs[0], -vs[1]))[1]

    # save ---------------------------------------------------------------------------------
    def save(self, step: int, tree: Mapping[str, Any],
             metrics: Mapping[str, float] | None = None) -> epath.Path:
        """Write `checkpoint_<step>` atomically; refuse a state with NaN or inf."""
        if not all_finite(tree):
            raise NonFiniteStateError(
                f"refusing to save checkpoint_{step} in {self.model_dir}: the state holds NaN "
                "or inf values")
        path = checkpoint_path(str(self.model_dir), step)
        if jax.process_index() == 0:
            self.model_dir.mkdir(parents=True, exist_ok=True)
        self._ckptr.save(path, args=ocp.args.PyTreeSave(tree), force=True)
        if metrics:
            recorded = self.metrics()
            recorded[int(step)] = {k: float(v) for k, v in metrics.items()}
            self._write_metrics(recorded)
        self._prune()
        return path

    def record_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Attach validation metrics to an already saved step (then re-apply retention)."""
        recorded = self.metrics()
        recorded[int(step)] = {**recorded.get(int(step), {}),
                               **{k: float(v) for k, v in metrics.items()}}
        self._write_metrics(recorded)
        self._prune()

    def kept_steps(self) -> set[int]:
        steps = committed_steps(str(self.model_dir))
        keep = set(steps[-self.keep:])
        best = self.best_step()
        if best is not None:
            keep.add(best)
        return keep

    def _prune(self) -> None:
        if jax.process_index() != 0:
            return
        keep = self.kept_steps()
        for step in committed_steps(str(self.model_dir)):
            if step not in keep:
                path = checkpoint_path(str(self.model_dir), step)
                doomed = path.parent / f"{path.name}.deleting"
                path.rename(doomed)  # no longer a checkpoint_<int> name: never restored
                doomed.rmtree()
