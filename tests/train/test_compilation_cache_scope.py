"""The trainer tests' persistent compilation cache is scoped to their module: before the fix,
JAX kept the cache of the first module that set it for the rest of the session (the option set
back did not turn it off) and a second module's directory was ignored, so every later test's
slow compiles went through a disk cache or not depending on order and on how long they took."""
import os

import jax
import jax.numpy as jnp

from tests.train.conftest import scoped_compilation_cache


def _compile(k: float) -> None:
    jax.jit(lambda x: x * k + 1.0)(jnp.ones(3)).block_until_ready()


def test_each_scope_writes_to_its_own_directory_and_nothing_writes_after(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    _compile(1.0)  # a compile before any scope (the cache was checked once, unset)
    with scoped_compilation_cache(str(first)):
        _compile(2.0)
    assert len(os.listdir(first)) == 1
    with scoped_compilation_cache(str(second)):
        _compile(3.0)
    assert len(os.listdir(second)) == 1 and len(os.listdir(first)) == 1
    key = "jax_persistent_cache_min_compile_time_secs"
    saved = getattr(jax.config, key)
    jax.config.update(key, 0.0)
    try:  # even a compile that would qualify for the cache goes nowhere after the scopes
        _compile(4.0)
    finally:
        jax.config.update(key, saved)
    assert len(os.listdir(first)) == 1 and len(os.listdir(second)) == 1
