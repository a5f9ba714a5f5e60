"""Fixtures shared by the trainer tests."""
import contextlib
from collections.abc import Iterator

import jax
import pytest
from jax._src import compilation_cache

_KEYS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
         "jax_persistent_cache_min_entry_size_bytes")


@contextlib.contextmanager
def scoped_compilation_cache(directory: str) -> Iterator[None]:
    """JAX's persistent cache in `directory` for every compile inside the block, and for none
    after it. JAX initializes its cache once per process, from the directory configured at
    that moment, and keeps it: setting the option back does not turn it off, and setting
    another directory later is ignored. So the cache is reset on entry and on exit."""
    saved = {k: getattr(jax.config, k) for k in _KEYS}
    compilation_cache.reset_cache()
    jax.config.update(_KEYS[0], directory)
    jax.config.update(_KEYS[1], 0.0)
    jax.config.update(_KEYS[2], 0)
    try:
        yield
    finally:
        for k, v in saved.items():
            jax.config.update(k, v)
        compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def persistent_compilation_cache(tmp_path_factory):
    """Runs that compile the same programs (reference, resume) share them through JAX's
    persistent cache, which keeps a test file fast; only this module's compiles use it."""
    with scoped_compilation_cache(str(tmp_path_factory.mktemp("jax_cache"))):
        yield
