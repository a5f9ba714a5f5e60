"""Learning-rate schedules as optax schedules of the absolute step (t5x counts steps from
pretraining, so a fine-tuning run from checkpoint_1000000 starts at step 1,000,000)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A schedule equal to another with the same settings, so the trainer reuses its compiled
    steps when a process trains again with the same schedule (`train.steps.trainer_steps`)."""

    name: str
    settings: tuple[tuple[str, Any], ...]
    fn: Callable[[Any], Any] = dataclasses.field(compare=False, repr=False)

    def __call__(self, step: Any) -> Any:
        return self.fn(step)


def _check(name: str, value: float, *, allow_zero: bool = True) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}={value!r}: expected {'>= 0' if allow_zero else '> 0'}")


def constant(base_learning_rate: float) -> optax.Schedule:
    """The mT5 fine-tuning recipe: 1e-3 at every step."""
    _check("base_learning_rate", base_learning_rate)
    return Schedule("constant", (("base_learning_rate", base_learning_rate),),
                    optax.constant_schedule(base_learning_rate))


def rsqrt(base_learning_rate: float, warmup_steps: int = 10_000) -> optax.Schedule:
    """t5x/T5 pretraining: base / sqrt(max(step, warmup_steps)) (flat during warm-up)."""
    _check("base_learning_rate", base_learning_rate)
    _check("warmup_steps", warmup_steps, allow_zero=False)

    def schedule(step):
        return base_learning_rate * jnp.reciprocal(
            jnp.sqrt(jnp.maximum(jnp.asarray(step, jnp.float32), warmup_steps)))

    return Schedule("rsqrt", (("base_learning_rate", base_learning_rate),
                              ("warmup_steps", warmup_steps)), schedule)


def linear_warmup(base_learning_rate: float, warmup_steps: int, *, decay: str = "constant",
                  total_steps: int | None = None, final_learning_rate: float = 0.0,
                  start_step: int = 0) -> optax.Schedule:
    """Linear ramp from 0 at `start_step` to base over `warmup_steps`, then `decay`.

    decay: 'constant' (stay at base), 'rsqrt' (base * sqrt(warmup / steps since start)),
    'linear' (to `final_learning_rate` at `start_step + total_steps`, then flat).
    """
    _check("base_learning_rate", base_learning_rate)
    _check("warmup_steps", warmup_steps)
    if decay not in ("constant", "rsqrt", "linear"):
        raise ValueError(f"decay={decay!r}: expected 'constant', 'rsqrt' or 'linear'")
    if decay == "linear" and (total_steps is None or total_steps <= warmup_steps):
        raise ValueError(f"total_steps={total_steps!r}: linear decay needs total_steps > "
                         f"warmup_steps={warmup_steps}")
    if decay == "rsqrt" and warmup_steps == 0:
        raise ValueError("decay='rsqrt' needs warmup_steps > 0")

    def schedule(step):
        t = jnp.asarray(step, jnp.float32) - start_step
        ramp = base_learning_rate * jnp.clip(t / max(warmup_steps, 1), 0.0, 1.0)
        if warmup_steps == 0:
            ramp = jnp.full_like(t, base_learning_rate)
        if decay == "constant":
            after = jnp.full_like(t, base_learning_rate)
        elif decay == "rsqrt":
            after = base_learning_rate * jnp.sqrt(warmup_steps / jnp.maximum(t, warmup_steps))
        else:
            frac = jnp.clip((t - warmup_steps) / (total_steps - warmup_steps), 0.0, 1.0)
            after = base_learning_rate + frac * (final_learning_rate - base_learning_rate)
        return jnp.where(t < warmup_steps, ramp, after)

    return Schedule("linear_warmup", (
        ("base_learning_rate", base_learning_rate), ("warmup_steps", warmup_steps),
        ("decay", decay), ("total_steps", total_steps),
        ("final_learning_rate", final_learning_rate), ("start_step", start_step)), schedule)
