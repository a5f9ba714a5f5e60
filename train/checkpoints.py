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
Validation metrics of saved steps are kept in `<model_dir>/checkpoint_metrics.json` (strict
JSON: a step whose metrics hold NaN or inf is refused, not saved).

Input state: `save(..., data_state=fn)` calls `fn(directory)` on every process inside Orbax's
temporary directory, after the arrays and before the commit, so each process's input iterator
state (`train_ds-<process>-of-<count>`, t5x's name) is committed with the step and covered by
its checksum manifest.

Integrity (`train.checkpoint_integrity`): each save ends with a checksum manifest; a restore
checks it, reads Orbax's metadata and checks every restored array for NaN/inf. A damaged step
raises `CorruptCheckpointError`; `latest_intact_step` / `restore_latest_intact` skip it, say so
in one line, and use the newest intact step instead.
"""
from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from train import checkpoint_integrity as integrity
from train import scan
from train.formats import report

PREFIX = "checkpoint_"
METRICS_FILE = "checkpoint_metrics.json"
_MARKERS = ("_CHECKPOINT_METADATA", "commit_success.txt")
_STEP_DIR = re.compile(r"^checkpoint_(\d+)$")


class NonFiniteStateError(FloatingPointError):
    """The state holds NaN or inf; it is never written."""


class NonFiniteMetricsError(NonFiniteStateError):
    """Validation metrics hold NaN or inf; the checkpoint they belong to is never written."""


class CorruptCheckpointError(ValueError):
    """A committed checkpoint whose files or arrays are damaged."""


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
    return bool(_all_finite(leaves))


@jax.jit
def _all_finite(leaves: list[jax.Array]) -> jax.Array:
    # One jitted function (compiled once per tree shape): a fresh jit per save traced it again.
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def stored_meta(step_dir: epath.Path) -> dict[str, report.Meta]:
    """Flat '/'-named (shape, dtype) of what a checkpoint holds, read from its metadata."""
    try:
        tree = ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).metadata(
            step_dir).item_metadata.tree
        return {n: report.meta_of(m) for n, m in report.flatten(tree).items()}
    except Exception as e:  # noqa: BLE001  (orbax raises ValueError, AttributeError, KeyError...)
        raise CorruptCheckpointError(
            f"damaged checkpoint {step_dir}: Orbax's _METADATA is unreadable "
            f"({type(e).__name__}: {_one_line(e)})") from e


def _one_line(e: Exception | str, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + " ..."


# Manifests already verified in this process: (step_dir, manifest sha256). A resume checks a
# step when choosing it and again when restoring it; the second check is then free.
_VERIFIED: set[tuple[str, str]] = set()


def check_intact(step_dir: epath.Path) -> None:
    """Raise CorruptCheckpointError (one line: the directory and what is wrong) unless the
    step's files match its checksum manifest and its Orbax metadata reads. Arrays are checked
    for NaN/inf when restored (`restore_tree`), not here."""
    step_dir = epath.Path(step_dir)
    if not is_committed(step_dir):
        raise CorruptCheckpointError(
            f"damaged checkpoint {step_dir}: not a complete checkpoint (no "
            f"{' / '.join(_MARKERS)}: an interrupted save?)")
    key = (str(step_dir), integrity.manifest_digest(step_dir) or "")
    if key[1] and key in _VERIFIED:
        return
    problem = integrity.verify(step_dir)
    if problem is not None:
        raise CorruptCheckpointError(f"damaged checkpoint {step_dir}: {problem}")
    stored_meta(step_dir)
    if key[1]:
        _VERIFIED.add(key)


def latest_intact_step(model_dir: str) -> tuple[int | None, list[str]]:
    """The newest committed step whose files are intact, and one line per newer step that was
    skipped as damaged. (None, problems) when no step is intact: a caller that resumes must then
    stop rather than start afresh over damaged checkpoints when `problems` is not empty."""
    problems = []
    for step in reversed(committed_steps(model_dir)):
        try:
            check_intact(checkpoint_path(model_dir, step))
            return step, problems
        except CorruptCheckpointError as e:
            problems.append(str(e))
    return None, problems


def _warn(line: str) -> None:
    if jax.process_index() == 0:
        print(f"WARNING: {line}", file=sys.stderr, flush=True)


def restore_latest_intact(model_dir: str, abstract_tree: Mapping[str, Any],
                          shardings: Any | None = None
                          ) -> tuple[int | None, dict[str, Any] | None, list[str]]:
    """(step, tree, problems) of the newest step that restores intact (checksums, metadata,
    finite arrays), newest first; each damaged step skipped is printed as one WARNING line and
    returned in `problems`. (None, None, []) for a model directory without checkpoints.

    Raises CorruptCheckpointError when checkpoints exist but none is intact (never a silent
    fresh start), and ValueError when an intact checkpoint does not fit `abstract_tree`.
    """
    problems: list[str] = []
    for step in reversed(committed_steps(model_dir)):
        try:
            tree = restore_tree(checkpoint_path(model_dir, step), abstract_tree, shardings)
        except CorruptCheckpointError as e:
            problems.append(str(e))
            _warn(f"{e}; trying the previous checkpoint")
            continue
        if problems:
            _warn(f"restored {checkpoint_path(model_dir, step)} instead of the newer damaged "
                  f"checkpoint(s) above")
        return step, tree, problems
    if problems:
        raise CorruptCheckpointError(
            f"every checkpoint in {model_dir} is damaged: " + " | ".join(problems))
    return None, None, problems


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
    (each process reads only its shards). Leaves without a sharding land on device 0.

    Damage (checksums, metadata, unreadable or non-finite arrays) raises
    CorruptCheckpointError; a tree of another shape raises ValueError naming the parameters.
    """
    check_intact(step_dir)
    check_compatible(step_dir, abstract_tree)
    target = _abstract(abstract_tree, shardings)
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda x: x if x.sharding is not None else
        jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=default), target)
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    ckptr = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
    try:
        tree = ckptr.restore(step_dir, args=ocp.args.PyTreeRestore(
            item=target, restore_args=restore_args, partial_restore=True))
    except (ValueError, OSError, KeyError, AttributeError, TypeError) as e:
        raise CorruptCheckpointError(
            f"damaged checkpoint {step_dir}: Orbax cannot read its arrays "
            f"({type(e).__name__}: {_one_line(e)})") from e
    if not all_finite(tree):
        raise CorruptCheckpointError(
            f"damaged checkpoint {step_dir}: restored arrays hold NaN or inf (saves refuse "
            "non-finite states, so its bytes changed after the save)")
    return tree


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


def _restore_path(path: str, abstract_tree: Mapping[str, Any], shardings: Any | None
                  ) -> dict[str, Any]:
    """One `checkpoint_<step>` directory as asked, or a model directory's newest intact step."""
    p = epath.Path(path)
    if p.exists() and not _STEP_DIR.match(p.name):
        step, tree, _ = restore_latest_intact(path, abstract_tree, shardings)
        if step is not None:
            return tree
    return restore_tree(resolve(path), abstract_tree, shardings)


def load_params(path: str, abstract_params: Mapping[str, Any], shardings: Any | None = None,
                *, config: Any | None = None) -> dict[str, Any]:
    """Parameters (`target`) of a model directory's newest intact checkpoint (damaged newer
    ones are reported and skipped) or of one `checkpoint_<step>` directory.

    `abstract_params` (ShapeDtypeStruct leaves) and `shardings` describe the model's layout;
    for a layer-scanned model pass its `config` (`train.config.MT5Config`): the unscanned
    checkpoint is read layer by layer into the matching shards, then stacked.
    """
    if config is None or not config.scan_layers:
        shard_tree = None if shardings is None else {"target": shardings}
        return _restore_path(path, {"target": abstract_params}, shard_tree)["target"]
    per_layer = scan.unscan_params(abstract_params, config)
    shard_tree = (None if shardings is None
                  else {"target": _unscanned_shardings(shardings, per_layer)})
    params = _restore_path(path, {"target": per_layer}, shard_tree)["target"]
    return jax.jit(lambda p: scan.scan_params(p, config), out_shardings=shardings)(params)


# ---------------------------------------------------------------------------------- save

def clean_stale(model_dir: str) -> list[str]:
    """Remove interrupted-save and interrupted-prune leftovers (process 0); their names."""
    if jax.process_index() != 0:
        return []
    removed = integrity.clean_stale(model_dir)
    if removed:
        _warn(f"removed leftovers of interrupted saves in {model_dir}: {', '.join(removed)}")
    return removed


class _TreeAndDataState(ocp.PyTreeCheckpointHandler):
    """Orbax's PyTree handler that, after writing the arrays into the temporary directory,
    lets each process add its files there (`data_state`); Orbax's barrier and commit follow,
    so the step is committed with them or not at all."""

    def __init__(self) -> None:
        super().__init__()
        self.data_state: Callable[[epath.Path], Any] | None = None

    def save(self, directory: epath.Path, *args: Any, **kwargs: Any) -> None:
        super().save(directory, *args, **kwargs)
        if self.data_state is not None:
            self.data_state(epath.Path(directory))


# Orbax's Checkpointer takes a handler only with CheckpointArgs registered for its own class.
@ocp.args.register_with_handler(_TreeAndDataState, for_save=True)
class _TreeSave(ocp.args.PyTreeSave):
    pass


@ocp.args.register_with_handler(_TreeAndDataState, for_restore=True)
class _TreeRestore(ocp.args.PyTreeRestore):
    pass


class Checkpoints:
    """Saves t5x trees under a model directory, keeping the last `keep` and the best one.

    best_metric / best_mode: a validation metric recorded with `save(..., metrics=...)`
    and whether larger ('max') or smaller ('min') is better; None keeps only the last `keep`.
    checksums: write the checksum manifest after each save (it re-reads the step's files
      once on process 0; turn off only where that costs too much).
    Construction removes what interrupted saves and prunes left (`clean_stale`): make one
    `Checkpoints` per model directory, in the process that writes it.
    """

    def __init__(self, model_dir: str, *, keep: int = 3, best_metric: str | None = None,
                 best_mode: str = "min", checksums: bool = True) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep!r}: expected >= 1 (checkpoints to keep)")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode={best_mode!r}: expected 'min' or 'max'")
        self.model_dir = epath.Path(model_dir)
        self.keep, self.best_metric, self.best_mode = keep, best_metric, best_mode
        self.checksums = checksums
        self._handler = _TreeAndDataState()
        self._ckptr = ocp.Checkpointer(self._handler)
        self.removed_stale = clean_stale(str(self.model_dir))

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
                                  indent=1, allow_nan=False))
        tmp.replace(f)

    def _finite_metrics(self, step: int, metrics: Mapping[str, float]) -> dict[str, float]:
        values = {k: float(v) for k, v in metrics.items()}
        bad = {k: v for k, v in values.items() if not np.isfinite(v)}
        if bad:
            raise NonFiniteMetricsError(
                f"refusing to save checkpoint_{step} in {self.model_dir}: its validation "
                f"metrics are not finite ({', '.join(f'{k}={v}' for k, v in bad.items())})")
        return values

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
             metrics: Mapping[str, float] | None = None, *,
             data_state: Callable[[epath.Path], Any] | None = None) -> epath.Path:
        """Write `checkpoint_<step>` atomically, then its checksum manifest; refuse a state
        or metrics with NaN or inf (NonFiniteStateError / NonFiniteMetricsError).
        `data_state(directory)` (every process) writes its input state into the step before
        it is committed (`train.input_pipeline.TrainIterator.save`)."""
        values = self._finite_metrics(step, metrics) if metrics else None
        if not all_finite(tree):
            raise NonFiniteStateError(
                f"refusing to save checkpoint_{step} in {self.model_dir}: the state holds NaN "
                "or inf values")
        path = checkpoint_path(str(self.model_dir), step)
        if jax.process_index() == 0:
            self.model_dir.mkdir(parents=True, exist_ok=True)
        self._handler.data_state = data_state
        try:
            self._ckptr.save(path, args=_TreeSave(tree), force=True)
        finally:
            self._handler.data_state = None
        if jax.process_index() == 0 and self.checksums:
            integrity.write_manifest(path)
        if values:
            recorded = self.metrics()
            recorded[int(step)] = values
            self._write_metrics(recorded)
        self._prune()
        return path

    def record_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Attach validation metrics to an already saved step (then re-apply retention)."""
        values = self._finite_metrics(step, metrics)
        recorded = self.metrics()
        recorded[int(step)] = {**recorded.get(int(step), {}), **values}
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
