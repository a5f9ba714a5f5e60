"""Fixtures shared by the trainer tests."""
import jax
import pytest


@pytest.fixture(scope="module")
def persistent_compilation_cache(tmp_path_factory):
    """Runs that compile the same programs (reference, resume) share them through JAX's
    persistent cache, which keeps a test file fast; restored afterwards."""
    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes")
    saved = {k: getattr(jax.config, k) for k in keys}
    jax.config.update(keys[0], str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update(keys[1], 0.0)
    jax.config.update(keys[2], 0)
    yield
    for k, v in saved.items():
        jax.config.update(k, v)
