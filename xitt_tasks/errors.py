"""Errors raised while reading benchmark files.

A malformed record must say where it is and what was expected, so a user with a broken
download can fix it without reading the reader's source.
"""

import os


class DataFormatError(ValueError):
    """A record of a data file does not have the expected form.

    The message reads `<path>:<line>: expected <form>, got <what>`.
    """

    def __init__(self, path: str | os.PathLike, line: int | None, expected: str, got: str):
        self.path = os.fspath(path)
        self.line = line
        self.expected = expected
        self.got = got
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: expected {expected}, got {got}")


def missing_file(path: str | os.PathLike, hint: str = "") -> FileNotFoundError:
    """A FileNotFoundError naming the expected path and, optionally, the expected layout."""
    message = f"expected data file not found: {os.fspath(path)}"
    if hint:
        message += f" ({hint})"
    return FileNotFoundError(2, message, os.fspath(path))
