"""The data root's lock file: the SHA-256 and size of every file downloaded into it.

Trust on first use: the first download of a URL records its checksum; every later download
must match it, so a changed upstream file is an error naming the URL (a user may commit the
lock file and pass it with --lock). A study cell records `lock_hash(root)` so a result says
which downloads it was computed on.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading

from xitt_common import fs

LOCK_NAME = "xitt-data.lock.json"
VERSION = 1


class ChecksumError(ValueError):
    """A download differs from the checksum its lock file recorded."""


def lock_path(root: str | os.PathLike) -> str:
    return fs.join(root, LOCK_NAME)


def lock_hash(root: str | os.PathLike) -> str | None:
    """SHA-256 of the lock file of data root `root` (None when it has none: the sample, or a
    root assembled by hand)."""
    p = lock_path(root)
    if not fs.is_file(p):
        return None
    return hashlib.sha256(fs.path(p).read_bytes()).hexdigest()


class Lock:
    """{url: {sha256, size}} read from and written back to `path` (atomically, per change)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.files: dict[str, dict[str, int | str]] = {}
        self._mutex = threading.Lock()
        if fs.is_file(self.path):
            try:
                doc = json.loads(fs.path(self.path).read_text())
                assert doc["version"] == VERSION and isinstance(doc["files"], dict)
                self.files = doc["files"]
            except (ValueError, KeyError, TypeError, AssertionError) as e:
                raise ValueError(f"{self.path}: not a lock file (expected JSON {{'version': "
                                 f"{VERSION}, 'files': {{url: {{sha256, size}}}}}}): {e!r}") from e

    def check(self, url: str, sha256: str, size: int) -> bool:
        """True when `url` is locked and matches; False when it is not locked yet; raises
        ChecksumError when it is locked with another checksum."""
        entry = self.files.get(url)
        if entry is None:
            return False
        if entry["sha256"] != sha256 or entry["size"] != size:
            raise ChecksumError(
                f"{url}: the download has SHA-256 {sha256} ({size} bytes) but the lock file "
                f"{self.path} recorded {entry['sha256']} ({entry['size']} bytes): the upstream "
                f"file changed. Check the release; if the change is expected, delete its entry "
                f"from the lock file and run again.")
        return True

    def verify_or_record(self, url: str, sha256: str, size: int) -> None:
        with self._mutex:
            if not self.check(url, sha256, size):
                self.files[url] = {"sha256": sha256, "size": size}
                text = json.dumps({"version": VERSION, "files": dict(sorted(self.files.items()))},
                                  indent=1) + "\n"
                fs.write_bytes_atomic(self.path, text.encode("utf-8"))
