"""gcloud argv lists for multi-host Cloud TPU VM slices, and the remote shell commands they run.

Everything here returns argv lists (never a shell string to run locally); the one string is
the remote `--command`, built from argv lists with `shlex.join` / `shlex.quote`, so run names
and paths holding spaces, quotes or `$(...)` reach the remote process as literal text.
Multi-host: `--worker=all` runs the same command on every host of the slice at once, which is
what a JAX program on a pod needs (each host runs one process; `jax.distributed.initialize()`
finds its peers from the TPU metadata).
"""
from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Sequence

from tpu_scripts import topology

_TPU_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
REMOTE_DIR = "~/xitt"           # the checkout on every host
REMOTE_VENV = "~/xitt-venv"
REMOTE_LOGS = "~/xitt-logs"
EXIT_MARKER = "xitt-exit"


def check_tpu_name(name: str) -> str:
    """GCP resource names: lowercase letter, then letters, digits, '-', at most 63."""
    if not _TPU_NAME.fullmatch(name or ""):
        raise ValueError(f"TPU name {name!r}: expected lowercase letters, digits and '-', "
                         "starting with a letter, at most 63 characters (GCP resource name)")
    return name


@dataclasses.dataclass(frozen=True)
class SliceSpec:
    """Where and how a slice is booked."""

    name: str
    slice: topology.Slice
    project: str
    zone: str
    spot: bool = False
    queued: bool = True       # queued resources: wait for capacity instead of failing

    def __post_init__(self) -> None:
        check_tpu_name(self.name)
        if not self.project:
            raise ValueError("--project is required (the GCP project that books the TPU)")

    def _where(self) -> list[str]:
        return [f"--project={self.project}", f"--zone={self.zone}"]


def create(spec: SliceSpec) -> list[str]:
    accel = [f"--accelerator-type={spec.slice.accelerator_type}",
             f"--runtime-version={spec.slice.chip.runtime_version}"]
    spot = ["--spot"] if spec.spot else []
    if spec.queued:
        return ["gcloud", "compute", "tpus", "queued-resources", "create", spec.name,
                f"--node-id={spec.name}", *spec._where(), *accel, *spot]
    return ["gcloud", "compute", "tpus", "tpu-vm", "create", spec.name, *spec._where(),
            f"--accelerator-type={spec.slice.accelerator_type}",
            f"--version={spec.slice.chip.runtime_version}", *spot]


def describe_state(spec: SliceSpec) -> list[str]:
    """Prints the node's state (READY, PREEMPTED, ...); fails when the node does not exist."""
    return ["gcloud", "compute", "tpus", "tpu-vm", "describe", spec.name, *spec._where(),
            "--format=value(state)"]


def describe_queued(spec: SliceSpec) -> list[str]:
    return ["gcloud", "compute", "tpus", "queued-resources", "describe", spec.name,
            *spec._where(), "--format=value(state.state)"]


def delete(spec: SliceSpec) -> list[str]:
    if spec.queued:
        return ["gcloud", "compute", "tpus", "queued-resources", "delete", spec.name,
                *spec._where(), "--force", "--quiet"]
    return ["gcloud", "compute", "tpus", "tpu-vm", "delete", spec.name, *spec._where(),
            "--quiet"]


def ssh_all(spec: SliceSpec, remote_command: str) -> list[str]:
    """Run `remote_command` (a shell string) on every host of the slice."""
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", spec.name, *spec._where(),
            "--worker=all", f"--command={remote_command}"]


# ---------------------------------------------------------------------------- remote commands

def _home(path: str) -> str:
    """`~/x` stays expandable by the remote shell; the rest is quoted."""
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)


def setup_command(repo: str, ref: str) -> str:
    """Idempotent: clone once, then fetch + check out `ref`; venv once; install (a no-op when
    already satisfied). Safe to rerun after a preemption recreated the hosts."""
    d, v = _home(REMOTE_DIR), _home(REMOTE_VENV)
    return " && ".join([
        "set -e",
        f"mkdir -p {_home(REMOTE_LOGS)}",
        f"(test -d {d}/.git || git clone -q {shlex.quote(repo)} {d})",
        f"git -C {d} fetch -q origin",
        f"git -C {d} checkout -q {shlex.quote(ref)}",
        f"(test -x {v}/bin/python || python3 -m venv {v})",
        f"{v}/bin/pip install -q -c {d}/constraints.txt -e {d}'[tpu]'",
    ])


def detached(argv: Sequence[str], log_name: str) -> str:
    """`argv` started in the checkout on each host, detached from ssh (survives the session),
    output appended to ~/xitt-logs/<log_name>.log, which ends with 'xitt-exit <status>' when
    the process does. `log_name` is quoted, never interpreted."""
    log = f"{_home(REMOTE_LOGS)}/{shlex.quote(log_name + '.log')}"
    return (f"mkdir -p {_home(REMOTE_LOGS)} && cd {_home(REMOTE_DIR)} && "
            f"(nohup {shlex.join(list(argv))}; echo {EXIT_MARKER} $?) >> {log} 2>&1 "
            "< /dev/null &")


def stop_cells() -> str:
    """Stop any study cell still running on a host (a slice taken over from a coordinator that
    was killed), given 15 s to exit before it is killed; `[s]` keeps the pattern from matching
    this command's own shell."""
    return ("pkill -f '[s]tudy run-cell' && sleep 15; pkill -KILL -f '[s]tudy run-cell'; "
            "true")


def foreground(argv: Sequence[str]) -> str:
    return f"cd {_home(REMOTE_DIR)} && {shlex.join(list(argv))}"


def tail_log(log_name: str, lines: int = 20) -> str:
    return f"tail -n {int(lines)} {_home(REMOTE_LOGS)}/{shlex.quote(log_name + '.log')}"


def gin_string(value: str) -> str:
    """A gin string literal (double-quoted, escaped) for --gin.NAME=VALUE flags."""
    return json.dumps(value, ensure_ascii=False)


def python(*args: str) -> list[str]:
    """The venv's python, as seen from the checkout (commands run after `cd ~/xitt`)."""
    return ["../xitt-venv/bin/python", *args]
