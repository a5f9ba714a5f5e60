"""Downloads: requests with urllib3's Retry for HTTP statuses, a bounded retry loop for
connections that fail or reset mid-body, tqdm for progress, SHA-256 computed while writing.

Why these: requests, urllib3 and tqdm are already pinned dependencies (constraints.txt) and
each does one job well. TFDS's download manager was the other candidate; it ties checksums to
its own per-builder registry files and hides retries, while this project needs one lock file
per data root, a mirror for tests, and retry behaviour a test can pin.

A download is written to `<cache>/<key>.partial` and renamed when complete (its size checked
against Content-Length), so a killed run leaves no half file under a final name; the next try
(a retry, or the next run after a kill) continues the partial file with an HTTP Range request
where the server honours it. The SHA-256 is taken from the finished file.
"""
from __future__ import annotations

import hashlib
import os
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

RETRY_STATUSES = (429, 500, 502, 503, 504)


class DownloadError(RuntimeError):
    """A URL could not be downloaded (names the URL and the last failure)."""


def session(retries: int, backoff: float) -> requests.Session:
    """A session retrying `retries` times on the transient HTTP statuses (not on 404)."""
    s = requests.Session()
    retry = Retry(total=retries, connect=0, read=0, redirect=5, status=retries,
                  status_forcelist=RETRY_STATUSES, allowed_methods=("GET",),
                  backoff_factor=backoff, raise_on_status=True)
    adapter = HTTPAdapter(max_retries=retry)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def cache_name(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()[:12] + "-" + url.rstrip("/").rsplit("/", 1)[-1]


def sha256_of(path: str) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _attempt(s: requests.Session, url: str, partial: str, timeout: float, progress) -> None:
    """One GET into `partial`, continuing it with a Range request when it holds bytes (a killed
    run or a connection lost mid-body); a server that ignores the range restarts the file."""
    have = os.path.getsize(partial) if os.path.exists(partial) else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with s.get(url, stream=True, timeout=timeout, headers=headers) as r:
        if have and r.status_code == 416:  # the partial is not a prefix any more
            os.remove(partial)
            raise requests.ConnectionError(f"range {have}- not satisfiable; starting over")
        r.raise_for_status()
        resumed = bool(have) and r.status_code == 206 and r.headers.get(
            "Content-Range", "").startswith(f"bytes {have}-")
        expected = r.headers.get("Content-Length")
        if expected is not None and progress is not None:
            progress.total = (progress.total or 0) + int(expected)
            progress.refresh()
        n = 0
        with open(partial, "ab" if resumed else "wb") as f:
            for chunk in r.iter_content(1 << 16):
                f.write(chunk)
                n += len(chunk)
                if progress is not None:
                    progress.update(len(chunk))
        if expected is not None and n != int(expected):
            raise requests.ConnectionError(f"truncated: {n} of {expected} bytes")


def fetch(s: requests.Session, url: str, dest: str, *, attempts: int, timeout: float,
          backoff: float, progress=None) -> None:
    """Download `url` to `dest` (via `dest.partial`); DownloadError after `attempts` tries."""
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    partial = dest + ".partial"
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            _attempt(s, url, partial, timeout, progress)
            os.replace(partial, dest)
            return
        except requests.HTTPError as e:
            raise DownloadError(f"{url}: HTTP {e.response.status_code} "
                                f"{e.response.reason}") from e
        except requests.exceptions.RetryError as e:
            raise DownloadError(f"{url}: HTTP error persisted after retries ({e})") from e
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as e:
            last = e
            if attempt + 1 < attempts:
                time.sleep(backoff * 2 ** attempt)
    if os.path.exists(partial):
        os.remove(partial)
    raise DownloadError(f"{url}: failed {attempts} times; last error: {last}")
