"""Entry-point wrapper: a known error is one line on stderr and exit status 2, never a hang.

    if __name__ == "__main__":
        cli.run(main, prog="python -m train")

Known errors are those a user can fix from the message (bad input, a missing file, a bad gin
binding, a data-format error, a refused resume): `ValueError` (DataFormatError, gin's errors
and ChangedRunError derive from it), `OSError` (FileNotFoundError), `ImportError`, `SyntaxError`
(gin's parser) and TensorFlow's `OpError` (an error raised inside tf.data). Anything else is a
bug: the full traceback is printed and the exit status is 1. `--verbose` (removed from the
arguments before `main` sees them) prints the traceback for known errors too.

After an error the process leaves with `os._exit` once stdout and stderr are flushed: the
interpreter's normal teardown can hang joining tf.data's or Orbax's threads, and a failed run
on a pod must not hold its slice. Checkpoints and outputs are written atomically, so skipping
that teardown loses nothing that was complete.
"""
from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

VERBOSE_FLAG = "--verbose"
EXIT_KNOWN = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130
_KNOWN = (ValueError, OSError, ImportError, SyntaxError)
# The line of a TF error message that carries the Python exception raised inside tf.data.
_PY_ERROR_LINE = re.compile(r"^\s*(?:\w+\.)*(\w*Error): (.+)$")
_GIN_CONTEXT = re.compile(r"^\s*In call to configurable '[^']*' \(<")


def _is_tf_op_error(error: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.OpError)


def is_known(error: BaseException) -> bool:
    return isinstance(error, _KNOWN) or _is_tf_op_error(error)


def one_line(error: BaseException) -> str:
    """'error: <message>' on one line; an error raised inside tf.data is unwrapped."""
    if _is_tf_op_error(error):
        message = error.message
        # py_function / numpy_function errors embed the Python traceback: keep its last
        # 'XxxError: message' line.
        found = [m for m in map(_PY_ERROR_LINE.match, message.splitlines()) if m]
        if found:
            message = f"{found[-1].group(1)}: {found[-1].group(2)}"
    elif isinstance(error, OSError) and error.filename and error.strerror and \
            str(error.filename) not in str(error.strerror):
        message = f"{error.strerror}: {error.filename}"
    elif isinstance(error, OSError) and error.strerror:
        message = error.strerror
    else:
        message = str(error) or type(error).__name__
    if isinstance(error, SyntaxError) and error.msg:
        message = f"{error.msg} ({error.text.strip() if error.text else ''})"
    if isinstance(error, (KeyError, SyntaxError)) or not message:
        message = f"{type(error).__name__}: {message}"
    # gin appends "In call to configurable 'train' (<function ...>)": noise for a user.
    parts = [p.strip() for p in message.splitlines()
             if p.strip() and not _GIN_CONTEXT.match(p)]
    return "error: " + "; ".join(parts)


def strip_verbose(argv: Sequence[str]) -> tuple[list[str], bool]:
    args = list(argv)
    verbose = VERBOSE_FLAG in args
    return [a for a in args if a != VERBOSE_FLAG], verbose


DISTRIBUTED_ENV = "XITT_DISTRIBUTED"


def maybe_initialize_distributed() -> bool:
    """`jax.distributed.initialize()` (no arguments: Cloud TPU finds its peers) on every host
    of a multi-host slice, before any other JAX call; the launch scripts set
    XITT_DISTRIBUTED=1 there. Returns whether it initialised."""
    if os.environ.get(DISTRIBUTED_ENV, "") not in ("1", "true"):
        return False
    import jax

    jax.distributed.initialize()
    return True


def handle(main: Callable[[list[str]], Any], argv: Sequence[str], *,
           stderr: Any = None) -> int:
    """Call `main(argv)`; returns the exit status (errors reported on `stderr`)."""
    stderr = stderr or sys.stderr
    argv, verbose = strip_verbose(argv)
    try:
        maybe_initialize_distributed()
        result = main(argv)
    except SystemExit as e:  # argparse's usage errors and --help
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_KNOWN)
    except KeyboardInterrupt:
        print("error: interrupted", file=stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 (the point: every error ends here)
        if not is_known(e):
            traceback.print_exc(file=stderr)
            return EXIT_BUG
        if verbose:
            traceback.print_exc(file=stderr)
        print(one_line(e), file=stderr)
        if not verbose:
            print(f"(run again with {VERBOSE_FLAG} for the traceback)", file=stderr)
        return EXIT_KNOWN
    return result if isinstance(result, int) else 0


def run(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None, *,
        prog: str = "") -> NoReturn:
    """Run an entry point and exit; after an error exit without the interpreter's teardown."""
    del prog  # kept for call sites' readability
    code = handle(main, sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if code != 0:
        os._exit(code)
    sys.exit(0)
