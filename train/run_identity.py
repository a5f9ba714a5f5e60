"""What makes a run this run, recorded at its start and checked on every restart.

Resuming a model directory with another task, model, seed, batch size, feature lengths,
learning-rate schedule or data would silently continue a different experiment from someone
else's checkpoint. `check_or_record` writes `<model_dir>/run_identity.json` on the first start
and, on a restart, stops with every difference listed unless `allow_changed_run=True` (then the
differences are printed and the new identity is recorded, the old one kept beside it).

The identity is plain JSON: values that JSON cannot hold are described (a schedule by its
function and its values at a few steps, a dataclass by its fields).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from etils import epath

from train import schedules

IDENTITY_FILE = "run_identity.json"
# Steps at which a learning-rate schedule is sampled: warm-up, early, and t5x absolute steps.
SCHEDULE_PROBES = (0, 1, 100, 1_000, 10_000, 100_000, 1_000_000, 1_010_000)
# Model-config fields that change how the computation is laid out, not what it computes.
LAYOUT_ONLY_FIELDS = ("scan_layers", "remat_policy")


class ChangedRunError(ValueError):
    """A restart whose identity differs from the one recorded in the model directory."""


def describe_schedule(learning_rate: float | Callable[[Any], Any]) -> dict[str, Any]:
    """A constant, or a schedule's function name and its values at `SCHEDULE_PROBES`."""
    if not callable(learning_rate):
        return {"constant": float(learning_rate)}
    # A train.schedules.Schedule is named by the function it wraps, as before it was a value.
    fn = learning_rate.fn if isinstance(learning_rate, schedules.Schedule) else learning_rate
    name = f"{getattr(fn, '__module__', '?')}." \
           f"{getattr(fn, '__qualname__', type(fn).__name__)}"
    values = []
    for step in SCHEDULE_PROBES:
        value = float(learning_rate(step))
        values.append(value if math.isfinite(value) else repr(value))
    return {"function": name, "at_steps": dict(zip(map(str, SCHEDULE_PROBES), values))}


def _plain(value: Any) -> Any:
    """JSON-able form: dataclasses by fields, mappings sorted, sequences as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def make_identity(*, mixture_or_task_name: str, model_config: Any, seed: int, batch_size: int,
                  task_feature_lengths: Mapping[str, int],
                  learning_rate: float | Callable[[Any], Any],
                  data_fingerprint: Any = None, **extra: Any) -> dict[str, Any]:
    """The identity of a run; `extra` adds fields (e.g. pack, label_smoothing)."""
    config = _plain(model_config)
    if isinstance(config, dict):  # layout only: a scanned run may resume unscanned
        for name in LAYOUT_ONLY_FIELDS:
            config.pop(name, None)
    identity = {
        "mixture_or_task_name": mixture_or_task_name,
        "model_config": config,
        "seed": seed,
        "batch_size": batch_size,
        "task_feature_lengths": _plain(task_feature_lengths),
        "learning_rate": describe_schedule(learning_rate),
        "data": _plain(data_fingerprint),
    }
    for key, value in extra.items():
        identity[key] = _plain(value)
    return identity


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any],
                prefix: str = "") -> list[str]:
    """'field: recorded -> current' for every leaf that differs (dotted paths)."""
    out = []
    for key in sorted(set(recorded) | set(current)):
        path = f"{prefix}{key}"
        old, new = recorded.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            out.extend(differences(old, new, path + "."))
        elif old != new:
            out.append(f"{path}: {json.dumps(old)} -> {json.dumps(new)}")
    return out


def read_identity(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = epath.Path(model_dir) / IDENTITY_FILE
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); restore it or remove it to record "
                         "this run's identity afresh") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _write(path: epath.Path, identity: Mapping[str, Any]) -> None:
    tmp = path.parent / (path.name + ".tmp")
    tmp.write_text(json.dumps(identity, indent=1, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)


def check_or_record(model_dir: str | os.PathLike, identity: Mapping[str, Any], *,
                    resuming: bool = True, allow_changed_run: bool = False,
                    write: bool = True) -> list[str]:
    """Record `identity` on a first start; on a restart compare it with the recorded one.

    `resuming=False` (no checkpoint to continue from, e.g. a first attempt that died before
    its first save) records the identity afresh. Returns the differences (empty when the same
    run). Raises ChangedRunError listing them unless `allow_changed_run`; then the old identity
    is kept as `run_identity.<n>.json` and the new one recorded. `write=False` checks only
    (processes other than 0).
    """
    identity = json.loads(json.dumps(_plain(identity)))  # compare as it reads back
    directory = epath.Path(model_dir)
    path = directory / IDENTITY_FILE
    recorded = read_identity(directory) if resuming else None
    if recorded is None:
        if write:
            directory.mkdir(parents=True, exist_ok=True)
            _write(path, identity)
        return []
    diffs = differences(recorded, identity)
    if diffs and not allow_changed_run:
        listed = "\n  ".join(diffs)
        raise ChangedRunError(
            f"{directory} holds a different run ({IDENTITY_FILE}); differences (recorded -> "
            f"now):\n  {listed}\nUse a new model directory, or pass allow_changed_run=True "
            "(--gin.ALLOW_CHANGED_RUN=True) to continue it on purpose.")
    if diffs and write:
        n = 1
        while (directory / f"run_identity.{n}.json").exists():
            n += 1
        path.rename(directory / f"run_identity.{n}.json")
        _write(path, identity)
    return diffs
