"""Generic helpers below both the tasks and the runtime (see `columns`)."""
