"""The quieting of entry points lives in `xitt_common.quiet` (one helper below every layer);
this keeps `eval.quiet`'s callers working and adds the tasks, which sit above xitt_common."""
from __future__ import annotations

import contextlib

from xitt_common import quiet
from xitt_common.quiet import silenced_fd2

__all__ = ["quiet_imports", "silenced_fd2"]


def quiet_imports(tasks: bool = True) -> None:
    """TF and seqio imported quietly (`xitt_common.quiet.quiet_imports`); with `tasks`,
    `xitt_tasks` too (registering them). Nothing is silenced under --verbose."""
    quiet.quiet_imports()
    if tasks:
        with contextlib.nullcontext() if quiet.verbose() else silenced_fd2():
            import xitt_tasks  # noqa: F401  (registers the tasks)
