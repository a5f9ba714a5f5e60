"""Quiet start-up for command-line entry points that import TensorFlow, seqio or the tasks.

TF's C++ start-up lines (printed before its log level is read) and sentencepiece's vocabulary
messages (printed when `xitt_tasks` registers its tasks) go to fd 2 directly, so they are
silenced by pointing fd 2 at /dev/null while those modules are imported; Python-level errors
raised during the import still reach the terminal (fd 2 is restored first).
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator


@contextlib.contextmanager
def silenced_fd2() -> Iterator[None]:
    """fd 2 to /dev/null inside the block (C++ start-up lines no log level reaches); restored
    before an exception leaves it, so Python errors still reach the terminal."""
    err = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(err, 2)
        os.close(devnull)
        os.close(err)


def quiet_imports(tasks: bool = True) -> None:
    """Import TF and (with `tasks`) `xitt_tasks` with their start-up noise discarded; library
    loggers to ERROR."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("NO_GCE_CHECK", "true")
    with silenced_fd2():
        import absl.logging
        import tensorflow as tf

        if tasks:
            import xitt_tasks  # noqa: F401  (registers the tasks: sentencepiece messages)

        tf.config.set_visible_devices([], "GPU")
        tf.get_logger().setLevel("ERROR")
        absl.logging.set_verbosity(absl.logging.ERROR)
    for name in ("absl", "tensorflow", "seqio", "etils"):
        logging.getLogger(name).setLevel(logging.ERROR)
