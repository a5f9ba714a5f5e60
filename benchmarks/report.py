"""BENCHMARKS.md: the generated results table between markers; prose outside them is kept."""
from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
from collections.abc import Sequence

START = "<!-- benchmarks:results:start -->"
END = "<!-- benchmarks:results:end -->"


@dataclasses.dataclass(frozen=True)
class Row:
    """One figure: what was compared, the measured value, the target and whether it is met."""

    section: str
    figure: str
    value: str
    target: str = ""
    met: bool | None = None
    detail: str = ""


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} at the start"
    return f"{cpu}, {os.cpu_count()} cores{mem}{load}; {platform.platform()}; " + versions()


def versions() -> str:
    out = [f"python {sys.version.split()[0]}"]
    for name in ("jax", "jaxlib", "flax", "torch", "transformers", "seqio"):
        try:
            from importlib import metadata

            out.append(f"{name} {metadata.version(name)}")
        except Exception:  # noqa: BLE001 - a missing optional package is just not listed
            continue
    return ", ".join(out)


def git_revision(ignore: Sequence[str] = ("BENCHMARKS.md",)) -> str:
    """HEAD, marked when tracked files differ from it; the results file the run itself
    rewrites (`ignore`) does not count."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", *(f":(exclude,top){p}" for p in ignore)],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(rows: Sequence[Row], command: str, machine: str, date: str, complete: bool) -> str:
    def met(r: Row) -> str:
        return "" if r.met is None else ("yes" if r.met else "**no**")

    lines = [START, "", f"Command: `{command}`  ", f"Date: {date} (UTC)  ",
             f"Machine: {machine}  ", f"Code: {git_revision()}",
             "" if complete else "\n**Partial: the run was still going or stopped early.**", "",
             "| section | figure | measured | target | met | detail |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.section} | {r.figure} | {r.value} | {r.target} | {met(r)} | "
                     f"{r.detail} |")
    lines += ["", END]
    return "\n".join(lines)


def write(path: str, table: str) -> None:
    """Replace the marked block of `path` (or append it), atomically."""
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + table + rest.split(END, 1)[1]
    else:
        text = (text or "# Benchmarks\n\n") + ("\n" if text else "") + table + "\n"
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
