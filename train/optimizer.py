"""Adafactor with t5x semantics, factored along logical axes, state laid out like t5x's.

Why not `optax.adafactor`: it picks the factored dims by size, so a scanned
`(layers, embed, mlp)` kernel is factored across layers, and its state tree is not t5x's
`state/param_states/<param path>/{v_row, v_col, v}`. Here the logical axes decide which dims are
batch (`layers`), which may be factored (rows: `embed`; columns: `vocab`, `mlp`, `joined_kv`,
`heads`, `kv`) and which may not (`relpos_buckets`, ...); per-parameter statistics, update
clipping and parameter scale are computed within each layer of a scanned stack.

Which of the two factored dims is stored as the row does not change the update (the rank-1
estimate r_i c_j / mean(r) is symmetric); it fixes only the checkpoint layout. Like t5x (whose
rank-2 parameters fall back to its size heuristic) the smaller dim is the row, the earlier one
on a tie: `[embed, vocab]` and `[vocab, embed]` keep `v_row` over embed, mT5-Small's
`[embed=512, joined_kv=384]` query keeps it over joined_kv. Then released t5x statistics load by
renaming, and a scanned stack's statistics are the layers' statistics stacked.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from train import partitioning, tree_paths

ROW, COLUMN, BATCH, NONE = "row", "column", "batch", "none"

STANDARD_FACTOR_RULES: tuple[tuple[str, str], ...] = (
    ("embed", ROW),
    ("vocab", COLUMN), ("mlp", COLUMN), ("joined_kv", COLUMN), ("heads", COLUMN), ("kv", COLUMN),
    ("layers", BATCH), ("stack", BATCH),
    ("relpos_buckets", NONE), ("abspos_buckets", NONE), ("length", NONE),
    ("mlp_activations", NONE),
)
SLOTS = ("v_row", "v_col", "v")
DUMMY_SHAPE = (1,)


class AdafactorState(NamedTuple):
    """`count`: steps applied (int32 scalar); `param_states`: the param tree, each leaf a dict
    `{'v_row', 'v_col', 'v'}` (+ `'m'` with momentum); unused slots are zeros((1,))."""

    count: jax.Array
    param_states: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class AdafactorConfig:
    """t5x's mT5 fine-tuning defaults (mt5.md).

    `step_offset` is subtracted from the step in the second-moment decay
    beta2_t = 1 - (step - step_offset + 1)^-decay_rate: set it to the pretraining step when the
    statistics are reset but the step counter is not. Steps before the offset count as its
    first step (t5x would compute a negative power there).
    """

    decay_rate: float = 0.8
    step_offset: int = 0
    beta1: float | None = None
    clipping_threshold: float | None = 1.0
    multiply_by_parameter_scale: bool = True
    epsilon1: float = 1e-30
    epsilon2: float = 1e-3
    min_dim_size_to_factor: int = 128
    weight_decay_rate: float | None = None
    factor_rules: tuple[tuple[str, str], ...] = STANDARD_FACTOR_RULES

    def __post_init__(self) -> None:
        if not 0 < self.decay_rate <= 1:
            raise ValueError(f"AdafactorConfig.decay_rate={self.decay_rate!r}: expected (0, 1]")
        if self.beta1 is not None and not 0 <= self.beta1 < 1:
            raise ValueError(f"AdafactorConfig.beta1={self.beta1!r}: expected None or [0, 1)")
        if self.clipping_threshold is not None and self.clipping_threshold <= 0:
            raise ValueError(f"AdafactorConfig.clipping_threshold={self.clipping_threshold!r}: "
                             "expected None or > 0")
        if self.min_dim_size_to_factor < 1:
            raise ValueError("AdafactorConfig.min_dim_size_to_factor="
                             f"{self.min_dim_size_to_factor!r}: expected >= 1")
        for name, kind in self.factor_rules:
            if kind not in (ROW, COLUMN, BATCH, NONE):
                raise ValueError(f"AdafactorConfig.factor_rules[{name!r}]={kind!r}: expected "
                                 f"one of {(ROW, COLUMN, BATCH, NONE)}")


@dataclasses.dataclass(frozen=True)
class Factoring:
    """How one parameter is treated: `row`/`col` empty means unfactored."""

    averaging_dims: tuple[int, ...]
    row: tuple[int, ...] = ()
    col: tuple[int, ...] = ()

    @property
    def factored(self) -> bool:
        return bool(self.row)


def factoring(path: str, shape: tuple[int, ...], axes: tuple[str | None, ...],
              config: AdafactorConfig) -> Factoring:
    """Batch, row and column dims of one parameter from its logical axes (see module doc)."""
    if len(axes) != len(shape):
        raise ValueError(f"{path}: logical axes {axes} do not match shape {shape}")
    table = dict(config.factor_rules)
    kinds = []
    for dim, name in enumerate(axes):
        if name is not None and name not in table:
            raise ValueError(f"{path} dim {dim}: logical axis {name!r} has no Adafactor factor "
                             f"rule (known: {sorted(table)})")
        kinds.append(NONE if name is None else table[name])
    averaging = tuple(d for d, k in enumerate(kinds) if k != BATCH)
    rows = tuple(d for d, k in enumerate(kinds) if k == ROW)
    cols = tuple(d for d, k in enumerate(kinds) if k == COLUMN)
    if rows and cols and NONE in kinds:
        raise ValueError(f"{path}: axes {axes} mix factored dims with unfactorable ones "
                         f"({dict(zip(axes, kinds))}); give every dim a row/column/batch rule")
    if not (rows and cols):
        return Factoring(averaging)
    if min(math.prod(shape[d] for d in rows),
           math.prod(shape[d] for d in cols)) < config.min_dim_size_to_factor:
        return Factoring(averaging)
    if len(rows) == 1 and len(cols) == 1:
        # t5x layout: the smaller dim is the row, the earlier one on a tie.
        first, second = sorted((rows[0], cols[0]))
        if shape[second] < shape[first]:
            first, second = second, first
        rows, cols = (first,), (second,)
    return Factoring(averaging, rows, cols)


def _drop(values: tuple, dims: tuple[int, ...]) -> tuple:
    return tuple(v for d, v in enumerate(values) if d not in dims)


def _flat_axes(param_axes: Mapping[str, Any]) -> dict[str, tuple]:
    return {p: tuple(a) for p, a in partitioning.flatten_paths(param_axes).items()}


def _plans(param_axes: Mapping[str, Any], params: Mapping[str, Any],
           config: AdafactorConfig) -> dict[str, Factoring]:
    axes = _flat_axes(param_axes)
    flat = partitioning.flatten_paths(params)
    tree_paths.require_same_paths(axes, flat, "Adafactor param_axes do not match the params",
                                  "axes", "param")
    return {p: factoring(p, tuple(flat[p].shape), axes[p], config) for p in flat}


def _slot_shapes(shape: tuple[int, ...], plan: Factoring, momentum: bool) -> dict[str, tuple]:
    slots = {k: DUMMY_SHAPE for k in SLOTS}
    if plan.factored:
        slots["v_row"] = _drop(shape, plan.col)
        slots["v_col"] = _drop(shape, plan.row)
    else:
        slots["v"] = shape
    if momentum:
        slots["m"] = shape
    return slots


def _mean(x: jax.Array, dims: tuple[int, ...]) -> jax.Array:
    """Mean over `dims` (dropped) as products with a ones vector, at full float32 precision.

    XLA:CPU emits a partial reduction of a large matrix as a slow loop: the two factored
    statistics of mT5's [512, 250112] output kernel took 0.92 s per step as reductions and
    0.18 s as these matrix-vector products (`BENCHMARKS.md`). Elsewhere they are equally
    memory-bound either way.
    """
    for d in sorted(dims, reverse=True):
        ones = jnp.ones((x.shape[d],), x.dtype)
        x = jnp.tensordot(x, ones, axes=([d], [0]), precision=jax.lax.Precision.HIGHEST)
        x = x / ones.shape[0]
    return x


def _rms(x: jax.Array, dims: tuple[int, ...]) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.square(x), axis=dims, keepdims=True))


def _update_one(grad, param, slots, plan: Factoring, decay, lr, config: AdafactorConfig):
    grad = grad.astype(jnp.float32)
    param32 = param.astype(jnp.float32)
    mixing = 1.0 - decay
    grad_sqr = jnp.square(grad) + config.epsilon1
    new = {k: jnp.zeros(DUMMY_SHAPE, jnp.float32) for k in SLOTS}
    if plan.factored:
        v_row = decay * slots["v_row"] + mixing * _mean(grad_sqr, plan.col)
        v_col = decay * slots["v_col"] + mixing * _mean(grad_sqr, plan.row)
        new["v_row"], new["v_col"] = v_row, v_col
        row_in_v_row = tuple(d - sum(c < d for c in plan.col) for d in plan.row)
        row_factor = jax.lax.rsqrt(v_row / jnp.mean(v_row, axis=row_in_v_row, keepdims=True))
        y = (grad * jnp.expand_dims(row_factor, plan.col)
             * jnp.expand_dims(jax.lax.rsqrt(v_col), plan.row))
    else:
        v = decay * slots["v"] + mixing * grad_sqr
        new["v"] = v
        y = grad * jax.lax.rsqrt(v)
    if config.clipping_threshold is not None:
        y = y / jnp.maximum(1.0, _rms(y, plan.averaging_dims) / config.clipping_threshold)
    scale = lr
    if config.multiply_by_parameter_scale:
        scale = scale * jnp.maximum(_rms(param32, plan.averaging_dims), config.epsilon2)
    step = scale * y
    if config.beta1 is not None:
        step = config.beta1 * slots["m"] + (1.0 - config.beta1) * step
        new["m"] = step
    update = -step
    if config.weight_decay_rate is not None:
        update = update - config.weight_decay_rate * param32
    return update.astype(param.dtype), new


def adafactor(learning_rate: float | Callable[[jax.Array], jax.Array],
              param_axes: Mapping[str, Any],
              config: AdafactorConfig = AdafactorConfig()) -> optax.GradientTransformation:
    """Adafactor as an optax transformation; `update` needs `params` (parameter scale).

    `learning_rate` is a number or a schedule of the absolute step (the state's `count`).
    """
    schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)
    momentum = config.beta1 is not None

    def init(params):
        plans = _plans(param_axes, params, config)
        flat = partitioning.flatten_paths(params)
        states = {p: {k: jnp.zeros(s, jnp.float32)
                      for k, s in _slot_shapes(tuple(flat[p].shape), plans[p], momentum).items()}
                  for p in flat}
        return AdafactorState(jnp.zeros((), jnp.int32), partitioning.unflatten_paths(states))

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("Adafactor.update needs params (multiply_by_parameter_scale and "
                             "weight decay read them)")
        plans = _plans(param_axes, params, config)
        flat_p = partitioning.flatten_paths(params)
        flat_g = partitioning.flatten_paths(grads)
        slots_flat = partitioning.flatten_paths(state.param_states)
        names = (*SLOTS, "m") if momentum else SLOTS
        flat_s = {p: {k: slots_flat[f"{p}/{k}"] for k in names} for p in flat_p}
        t = jnp.maximum(state.count - config.step_offset, 0).astype(jnp.float32) + 1.0
        decay = 1.0 - t ** (-config.decay_rate)
        lr = schedule(state.count)
        updates, new_states = {}, {}
        for p, param in flat_p.items():
            updates[p], new_states[p] = _update_one(
                flat_g[p], param, flat_s[p], plans[p], decay, lr, config)
        return (partitioning.unflatten_paths(updates),
                AdafactorState(state.count + 1, partitioning.unflatten_paths(new_states)))

    return optax.GradientTransformation(init, update)


def adafactor_state_axes(param_axes: Mapping[str, Any], param_shapes: Mapping[str, Any],
                         config: AdafactorConfig = AdafactorConfig()) -> AdafactorState:
    """Logical axes of every state leaf: a statistic keeps its parameter's axes minus the
    reduced dim; dummies (1,) and the step count are replicated (None axes)."""
    plans = _plans(param_axes, param_shapes, config)
    axes = _flat_axes(param_axes)
    out = {}
    for p, plan in plans.items():
        slots: dict[str, tuple] = {k: (None,) for k in SLOTS}
        if plan.factored:
            slots["v_row"] = _drop(axes[p], plan.col)
            slots["v_col"] = _drop(axes[p], plan.row)
        else:
            slots["v"] = axes[p]
        if config.beta1 is not None:
            slots["m"] = axes[p]
        out[p] = slots
    return AdafactorState((), partitioning.unflatten_paths(out))


def adafactor_state_shapes(param_shapes: Mapping[str, Any], param_axes: Mapping[str, Any],
                           config: AdafactorConfig = AdafactorConfig()) -> AdafactorState:
    """`jax.ShapeDtypeStruct`s of the state, without allocating it."""
    plans = _plans(param_axes, param_shapes, config)
    flat = partitioning.flatten_paths(param_shapes)
    out = {p: {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in _slot_shapes(
        tuple(flat[p].shape), plans[p], config.beta1 is not None).items()} for p in flat}
    return AdafactorState(jax.ShapeDtypeStruct((), jnp.int32), partitioning.unflatten_paths(out))


def optimizer_state_shardings(param_axes: Mapping[str, Any], param_shapes: Mapping[str, Any],
                              mesh: jax.sharding.Mesh, rules: partitioning.Rules,
                              config: AdafactorConfig = AdafactorConfig()) -> AdafactorState:
    """NamedShardings for the state, each statistic sharded like its parameter (explicitly:
    left to the compiler it comes out replicated)."""
    axes = adafactor_state_axes(param_axes, param_shapes, config)
    shapes = adafactor_state_shapes(param_shapes, param_axes, config)
    shardings = partitioning.logical_to_sharding(
        {"param_states": axes.param_states}, {"param_states": shapes.param_states}, mesh, rules)
    return AdafactorState(partitioning.replicated(mesh), shardings["param_states"])
