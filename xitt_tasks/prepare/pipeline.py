"""`python -m xitt_tasks.prepare`: download, verify and convert what the selected tasks need.

The plan follows the task registry: the data-root files the selected (task, split) units read
(units.py), the releases that write them (releases.py) and the manual steps for the rest.
A release whose outputs all exist is skipped (outputs are written atomically, so existing
means complete): a killed run resumes where it stopped. Downloads run in parallel; a failed
one (HTTP error, retries exhausted, checksum mismatch) is reported by URL and writes nothing
to the data root, while the others complete.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from xitt_common import fs
from xitt_tasks.prepare import convert, download, lock, releases
from xitt_tasks.prepare.units import Unit, files_of


@dataclasses.dataclass(frozen=True)
class Options:
    data_dir: str
    cache_dir: str | None = None     # downloads; default: a folder beside a local data root
    lock_file: str | None = None     # default: <data_dir>/xitt-data.lock.json
    mirror: str | None = None        # http(s) prefix laid out as <mirror>/<host>/<path>
    jobs: int = 8
    attempts: int = 4
    timeout: float = 60.0
    backoff: float = 1.0
    progress: bool = True


@dataclasses.dataclass
class Report:
    written: list[str] = dataclasses.field(default_factory=list)
    present: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    manual: list[releases.Manual] = dataclasses.field(default_factory=list)
    unsourced: list[str] = dataclasses.field(default_factory=list)


def plan(needed: Sequence[str]) -> tuple[list[releases.Release], list[releases.Manual],
                                         list[str]]:
    """(releases trimmed to the needed outputs, manual steps, needed files nobody writes)."""
    want = set(needed)
    todo = []
    for r in releases.releases():
        outs = tuple(o for o in r.outputs if o.dest in want)
        if outs:
            todo.append(dataclasses.replace(r, outputs=outs))
    covered = {o.dest for r in todo for o in r.outputs}
    rest = sorted(want - covered)
    manual = [m for m in releases.MANUAL if any(f.startswith(m.prefixes) for f in rest)]
    unsourced = [f for f in rest if not any(f.startswith(m.prefixes) for m in manual)]
    return todo, manual, unsourced


def _url(url: str, mirror: str | None) -> str:
    return url if not mirror else mirror.rstrip("/") + "/" + url.split("://", 1)[1]


def _cache_dir(opts: Options) -> str:
    if opts.cache_dir:
        return opts.cache_dir
    if fs.is_local(opts.data_dir):
        return os.path.join(os.path.abspath(opts.data_dir) + ".downloads")
    return os.path.join(tempfile.gettempdir(), "xitt-downloads")


def _one(r: releases.Release, opts: Options, session, locked: lock.Lock, bar) -> list[str]:
    """Download (or reuse a verified cached copy), verify against the lock, convert."""
    cached = os.path.join(_cache_dir(opts), download.cache_name(r.url))
    if os.path.exists(cached):
        try:
            locked.check(r.url, *download.sha256_of(cached))
        except lock.ChecksumError:
            os.remove(cached)  # a stale or damaged copy: download again and check that
    if not os.path.exists(cached):
        download.fetch(session, _url(r.url, opts.mirror), cached, attempts=opts.attempts,
                       timeout=opts.timeout, backoff=opts.backoff, progress=bar)
    locked.verify_or_record(r.url, *download.sha256_of(cached))
    written = []
    for o in r.outputs:
        dest = fs.join(opts.data_dir, o.dest)
        convert.write_output(cached, r.archive, o.member, dest, o.transform)
        written.append(o.dest)
    return written


def prepare(selected: Sequence[Unit], opts: Options) -> Report:
    todo, manual, unsourced = plan(files_of(selected))
    report = Report(manual=manual, unsourced=unsourced)
    missing = []
    for r in todo:
        if all(fs.is_file(fs.join(opts.data_dir, o.dest)) for o in r.outputs):
            report.present += [o.dest for o in r.outputs]
        else:
            missing.append(r)
    locked = lock.Lock(opts.lock_file or lock.lock_path(opts.data_dir))
    session = download.session(opts.attempts - 1, opts.backoff)
    with tqdm(total=0, unit="B", unit_scale=True, desc="download", file=sys.stderr,
              disable=not opts.progress or None) as bar, \
            ThreadPoolExecutor(max(1, opts.jobs)) as pool:
        futures = {pool.submit(_one, r, opts, session, locked, bar): r for r in missing}
        for future, r in futures.items():
            try:
                report.written += future.result()
            except (download.DownloadError, lock.ChecksumError, convert.ConvertError,
                    OSError) as e:
                report.failed.append(f"{r.name}: {e}")
    return report


def summary(report: Report, data_dir: str) -> str:
    lines = [f"data root {data_dir}: {len(report.written)} file(s) written, "
             f"{len(report.present)} already present, {len(report.failed)} download(s) failed"]
    lines += [f"FAILED {f}" for f in report.failed]
    for m in report.manual:
        lines.append(f"MANUAL {m.name}: {m.steps}".replace("<data_dir>", data_dir))
    lines += [f"NO SOURCE {f} (no release or manual step writes it)" for f in report.unsourced]
    lines.append(f"next: python -m xitt_tasks.prepare --check --data_dir {data_dir}")
    return "\n".join(lines)
