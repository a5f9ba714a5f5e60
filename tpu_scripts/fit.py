"""Does a config fit its TPU slice? Compile the project's own steps for it, without a TPU.

    python -m tpu_scripts.fit --size xxl --slice v5e:4x8 --phase train_qa
    python -m tpu_scripts.fit --config gin/tpu/mt5_xl_v5e_4x4.gin      # every phase it lists
    python -m tpu_scripts.fit --all --markdown > docs/tpu_fit.md        # every shipped config

Per (config, phase): per-device memory of the compiled program (arguments, temporaries,
outputs not aliased to arguments, total = arguments + temporaries + outputs - aliases + code)
against the chip's usable HBM, the step's FLOPs, the ideal step time at the slice's peak bf16
FLOP/s and the MFU bound. The compiler refuses only temporaries beyond HBM, so the total is
compared here: a config over budget is reported with its figure. Needs libtpu
(`pip install -e '.[tpu]'`); compiles run one at a time (libtpu holds a lock), XL/XXL take
about a minute each on a 2-core machine. `--results FILE` keeps finished rows (JSON lines) so
an interrupted `--all` resumes where it stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tpu_scripts import configs, topology

HEADROOM_TARGET = 0.10  # a config "fits" with at least this fraction of HBM free
PENDING = "not compiled yet"
STALE = "stale"
# What decides the compiled program besides the config's own gin files: a stored row whose
# fingerprint over these differs was compiled from other code and is not reused.
PROGRAM_SOURCES = ("train", "xitt_common", "tpu_scripts/aot.py", "tpu_scripts/configs.py",
                   "tpu_scripts/topology.py", "constraints.txt")


@dataclasses.dataclass
class Row:
    """One (config, phase) result; plain values so it round-trips through JSON."""

    config: str
    size: str
    slice: str
    phase: str
    mesh: str
    settings: str
    hbm_gib: float
    arguments_gib: float = 0.0
    temporaries_gib: float = 0.0
    outputs_gib: float = 0.0      # outputs minus those aliased to (donated) arguments
    total_gib: float = 0.0
    model_flops: float = 0.0      # per step, all chips
    hardware_flops: float = 0.0   # with rematerialisation (train phases), else = model
    flops_source: str = ""
    peak_flops: float = 0.0       # slice, bf16
    compile_s: float = 0.0        # wall clock: lowering + compile
    compile_cpu_s: float = 0.0    # CPU time of this process over the same span (all threads);
                                  # on a shared machine the wall figure mostly measures waiting
    error: str = ""
    note: str = ""
    flops_key: str = ""           # rows with the same key share one FLOPs measurement
    fingerprint: str = ""         # program_fingerprint() of the config when compiled
    code: str = ""                # the git commit it was compiled from (for the reader)

    @property
    def headroom(self) -> float:
        return 1.0 - self.total_gib / self.hbm_gib if self.hbm_gib else 0.0

    @property
    def ideal_step_s(self) -> float:
        return self.model_flops / self.peak_flops if self.peak_flops else 0.0

    @property
    def mfu_bound(self) -> float:
        return self.model_flops / self.hardware_flops if self.hardware_flops else 0.0

    @property
    def verdict(self) -> str:
        if self.error in (PENDING, STALE):
            what = (PENDING if self.error == PENDING else
                    f"stale: compiled from other code or config ({self.code or 'unrecorded'})")
            return f"{what}; run python -m tpu_scripts.fit --config gin/tpu/{self.config}.gin"
        if self.error:
            return f"does not compile: {self.error}"
        if self.total_gib > self.hbm_gib:
            over = self.total_gib - self.hbm_gib
            return (f"DOES NOT FIT: {self.total_gib:.2f} GiB > {self.hbm_gib:.2f} GiB "
                    f"(over by {over:.2f} GiB, {over / self.hbm_gib:.1%})")
        if self.headroom < HEADROOM_TARGET:
            return f"fits, under {HEADROOM_TARGET:.0%} headroom ({self.headroom:.1%})"
        return f"fits ({self.headroom:.0%} headroom)"


def _gib(n: int | float) -> float:
    return n / topology.GIB


def program_fingerprint(path: str | Path, bindings: Sequence[str] = ()) -> str:
    """Hash of every source that decides what `path`'s phases compile to: its gin files and
    extra bindings, the runtime's Python, the compile driver and the pinned versions
    (constraints.txt)."""
    root = configs.REPO_ROOT
    names = list(configs.gin_files(path))
    for name in PROGRAM_SOURCES:
        p = root / name
        names += ([str(f.relative_to(root)) for f in sorted(p.rglob("*.py"))] if p.is_dir()
                  else [name])
    digest = hashlib.sha256()
    for name in names:  # the config's own file by content only: a copy elsewhere hashes alike
        label = Path(name).name if Path(name).is_absolute() else name
        digest.update(label.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    for binding in bindings:
        digest.update(b"binding\0" + binding.encode() + b"\0")
    return digest.hexdigest()[:16]


def code_version() -> str:
    """For the reader: the last commit that changed the program's sources (PROGRAM_SOURCES and
    gin/), `+modified` with local edits to them."""
    try:
        def git(*a: str) -> str:
            return subprocess.run(["git", *a], cwd=configs.REPO_ROOT, capture_output=True,
                                  text=True, check=True).stdout.strip()
        dirty = git("status", "--porcelain", "--", *PROGRAM_SOURCES, "gin")
        last = git("log", "-1", "--format=%h", "--", *PROGRAM_SOURCES, "gin")
        return (last or "uncommitted") + ("+modified" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def phase_batch_text(cfg: configs.TpuConfig, phase: str) -> str:
    if phase in configs.TRAIN_TARGET_LENGTHS:
        batch, micro = configs.train_batch(cfg, phase)
        return (f"batch {batch}, {cfg.input_length}/{configs.TRAIN_TARGET_LENGTHS[phase]}, "
                f"{micro} microbatch{'es' if micro > 1 else ''}")
    if phase == "decode":
        return f"greedy, batch {cfg.infer_batch_size}, {cfg.input_length}/{cfg.decode_length}"
    if phase == "score":
        return f"batch {cfg.infer_batch_size}, {cfg.input_length}/128"
    if phase == "retrieval_train":
        q, c = cfg.retrieval_lengths
        return f"batch {cfg.retrieval_batch_size}, query {q} / candidate {c}"
    return f"batch {cfg.embed_batch_size}, length {cfg.retrieval_lengths[1]}"


def _settings(cfg: configs.TpuConfig, phase: str) -> tuple[str, str]:
    mc = cfg.model_config
    if phase in ("decode", "score", "embed_candidates"):
        mesh = f"{cfg.infer_num_partitions}-way model, 1-D"
        return mesh, phase_batch_text(cfg, phase)
    mesh = (f"{cfg.mesh_text()}, {cfg.parameter_partitioning.upper()} params, "
            f"act dims {cfg.activation_partitioning_dims}")
    return mesh, (f"{phase_batch_text(cfg, phase)}; scan {'on' if mc.scan_layers else 'off'}, "
                  f"remat {mc.remat_policy}")


def _flops_key(cfg: configs.TpuConfig, phase: str) -> str:
    return f"{cfg.size}|{phase}|{phase_batch_text(cfg, phase)}|{cfg.model_config.remat_policy}"


def pending_row(cfg: configs.TpuConfig, phase: str, stale: Row | None = None) -> Row:
    """A row not compiled from the current code: analytic FLOPs only. `stale` is the stored row
    compiled from other code or config, whose memory figures no longer hold."""
    slice_ = topology.Slice.parse(cfg.slice_name)
    mesh, settings = _settings(cfg, phase)
    from tpu_scripts import aot

    model, hardware = aot.analytic_flops(cfg, phase)
    return Row(cfg.name, cfg.size, slice_.name, phase, mesh, settings,
               hbm_gib=_gib(slice_.chip.usable_hbm_bytes), peak_flops=slice_.peak_flops,
               error=PENDING if stale is None else STALE, model_flops=model,
               hardware_flops=hardware, flops_source="analytic (train.flops matmul count)",
               note=_note(cfg, phase, model, slice_),
               code="" if stale is None else stale.code)


def _note(cfg: configs.TpuConfig, phase: str, model_flops: float,
          slice_: topology.Slice) -> str:
    if phase != "embed_candidates":
        return ""
    steps = math.ceil(configs.MEWSLIX_CANDIDATES / cfg.embed_batch_size)
    return (f"{configs.MEWSLIX_CANDIDATES:,} candidates = {steps} steps, ideal "
            f"{steps * model_flops / slice_.peak_flops:.1f} s")


def run_one(cfg: configs.TpuConfig, phase: str, devices: list[Any],
            flops_cache: dict[str, tuple[float, float, str]],
            compiled_flops: bool = False, fingerprint: str = "") -> Row:
    """Compile `phase` of `cfg` on the described slice and fill a Row (`fingerprint`: its
    program_fingerprint, recorded with it)."""
    from tpu_scripts import aot

    slice_ = topology.Slice.parse(cfg.slice_name)
    mesh, settings = _settings(cfg, phase)
    row = Row(cfg.name, cfg.size, slice_.name, phase, mesh, settings,
              hbm_gib=_gib(slice_.chip.usable_hbm_bytes), peak_flops=slice_.peak_flops,
              fingerprint=fingerprint, code=code_version())
    start, cpu_start = time.perf_counter(), time.process_time()
    lowered = aot.lower_phase(cfg, phase, cfg.model_config, devices)
    result = aot.compile_lowered(lowered)
    row.compile_s = time.perf_counter() - start
    row.compile_cpu_s = time.process_time() - cpu_start
    if result.error:
        row.error = result.error
        return row
    m = result.memory
    row.arguments_gib, row.temporaries_gib = _gib(m.arguments), _gib(m.temporaries)
    row.outputs_gib = _gib(m.outputs - m.aliases)
    row.total_gib = _gib(m.total)

    key = row.flops_key = _flops_key(cfg, phase) + ("|compiled" if compiled_flops else "")
    if key not in flops_cache:
        flops_cache[key] = _measure_flops(cfg, phase, devices, compiled_flops)
    row.model_flops, row.hardware_flops, row.flops_source = flops_cache[key]
    row.note = _note(cfg, phase, row.model_flops, slice_)
    return row


def _measure_flops(cfg: configs.TpuConfig, phase: str, devices: list[Any],
                   compiled: bool) -> tuple[float, float, str]:
    from tpu_scripts import aot

    mc = cfg.model_config
    if not compiled or phase == "decode":
        model, hardware = aot.analytic_flops(cfg, phase)
        return model, hardware, "analytic (train.flops matmul count)"
    model = aot.extrapolated_flops(cfg, phase, devices, "none")
    hardware = model
    if (phase in configs.TRAIN_PHASES or phase == "retrieval_train") and \
            mc.remat_policy != "none":
        hardware = aot.extrapolated_flops(cfg, phase, devices, mc.remat_policy)
    return model, hardware, f"compiled 1-/2-layer unscanned variants on {cfg.slice_name}"


# ---------------------------------------------------------------------------------- output

def format_row(row: Row) -> str:
    lines = [f"{row.config} [{row.phase}] on {row.slice}: {row.mesh}; {row.settings}"]
    if row.error:
        lines.append(f"  verdict: {row.verdict}")
        return "\n".join(lines)
    lines.append(f"  per device: arguments {row.arguments_gib:.2f} GiB, temporaries "
                 f"{row.temporaries_gib:.2f} GiB, outputs (not aliased) {row.outputs_gib:.2f} "
                 f"GiB, total {row.total_gib:.2f} GiB of {row.hbm_gib:.2f} GiB "
                 f"({row.headroom:.1%} headroom)")
    lines.append(f"  FLOPs per step: {row.model_flops:.3e} model, {row.hardware_flops:.3e} "
                 f"with remat ({row.flops_source})")
    lines.append(f"  ideal step {row.ideal_step_s * 1e3:.1f} ms at {row.peak_flops / 1e12:,.0f} "
                 f"TFLOP/s peak bf16; MFU bound {row.mfu_bound:.0%} (model / hardware FLOPs)"
                 + (f"; {row.note}" if row.note else ""))
    cpu = f", {row.compile_cpu_s:.0f} s CPU" if row.compile_cpu_s else ""
    lines.append(f"  verdict: {row.verdict}   [compiled in {row.compile_s:.0f} s{cpu}]")
    return "\n".join(lines)


MARKDOWN_HEAD = """# TPU fit of every shipped config

Produced by `python -m tpu_scripts.fit --all --markdown > docs/tpu_fit.md` (deviceless
compiles of the project's own steps with libtpu on a CPU machine; docs/tpu.md explains); the
committed table is rendered from the stored rows without compiling: `python -m tpu_scripts.fit
--all --markdown --no_compile --results docs/tpu_fit.jsonl > docs/tpu_fit.md`.
Memory is per device: total = arguments + temporaries + outputs - aliases (+ code), against
usable HBM per chip:
{hbm}.
FLOPs are model FLOPs per step for the whole slice; ideal step = model FLOPs / (chips x peak
bf16 FLOP/s), peak per chip: {peaks}. MFU bound = model FLOPs / hardware FLOPs
(rematerialisation recomputes the forward pass). A config is required to leave at least
{target:.0%} of HBM free.
"""


def markdown(rows: Sequence[Row]) -> str:
    hbm = ", ".join(f"{c.generation} {_gib(c.usable_hbm_bytes):.2f} GiB"
                    for c in topology.CHIPS.values())
    peaks = ", ".join(f"{c.generation} {c.peak_bf16_flops / 1e12:.0f} TF"
                      for c in topology.CHIPS.values())
    out = [MARKDOWN_HEAD.format(hbm=hbm, peaks=peaks, target=HEADROOM_TARGET)]
    compiled = [r for r in rows if r.error not in (PENDING, STALE)]
    commits = sorted({r.code for r in compiled if r.code})
    summary = (f"**Compiled from the current code and configs: {len(compiled)} of {len(rows)} "
               "rows**" + (f" (commit {', '.join(commits)})" if commits else "") + ".")
    if len(compiled) < len(rows):
        summary += (" The others show the analytic FLOPs and ideal step time only; their memory "
                    "needs a compile (`python -m tpu_scripts.fit --config FILE`).")
    out.append(summary + "\n")
    out.append("| config | phase | mesh | settings | args GiB | temps GiB | total GiB | "
               "headroom | model FLOPs | ideal step | MFU bound | verdict |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        settings = r.settings
        memory = ("| | | |" if r.error else
                  f"| {r.arguments_gib:.2f} | {r.temporaries_gib:.2f} | {r.total_gib:.2f} |")
        headroom = "" if r.error else f"{r.headroom:.1%}"
        if r.model_flops:
            step = f"{r.ideal_step_s * 1e3:,.1f} ms" + (f" ({r.note})" if r.note else "")
            flops = f"{r.model_flops:.3e} | {step} | {r.mfu_bound:.0%}"
        else:
            flops = " | | "
        out.append(f"| {r.config} | {r.phase} | {r.mesh} | {settings} {memory} {headroom} | "
                   f"{flops} | {r.verdict} |")
    sources = sorted({r.flops_source for r in rows if r.flops_source})
    out.append("\nFLOPs sources: " + "; ".join(sources) + ".")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------- driver

def selected(args: argparse.Namespace) -> list[tuple[Path, list[str] | None]]:
    if args.all:
        return [(p, None) for p in configs.shipped_paths()]
    if args.config:
        return [(Path(args.config), args.phase and [args.phase])]
    if not (args.size and args.slice):
        raise ValueError("give --all, --config FILE, or --size and --slice")
    return [(configs.find(args.size, args.slice), args.phase and [args.phase])]


def _phases_of(path: Path) -> list[str]:
    import gin

    from train import gin_utils

    gin_utils.parse(configs.gin_files(path), [], (".", str(configs.REPO_ROOT)))
    phases = list(gin.query_parameter("%TPU_PHASES"))
    gin.clear_config()
    for p in phases:
        if p not in configs.PHASES:
            raise ValueError(f"{path}: TPU_PHASES has {p!r}; expected some of {configs.PHASES}")
    return phases


def _load_results(path: Path | None) -> list[Row]:
    if path is None or not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                fields = {f.name for f in dataclasses.fields(Row)}
                row = Row(**{k: v for k, v in json.loads(line).items() if k in fields})
            except (ValueError, TypeError) as err:
                raise ValueError(f"{path}:{n}: not a fit result row ({err})") from None
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tpu_scripts.fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="every gin/tpu/*.gin config")
    parser.add_argument("--config", help="one gin/tpu file")
    parser.add_argument("--size", choices=("base", "large", "xl", "xxl"))
    parser.add_argument("--slice", help="e.g. v5e:4x8, v4:2x2x4, v5p:2x2x2")
    parser.add_argument("--phase", choices=configs.PHASES,
                        help="one phase (default: the phases the config lists)")
    parser.add_argument("--binding", action="append", default=[],
                        help="extra gin binding 'NAME = VALUE' applied to the config")
    parser.add_argument("--compiled_flops", action="store_true",
                        help="FLOPs from compiled 1-/2-layer variants (4 more compiles per "
                             "phase) instead of the analytic count")
    parser.add_argument("--markdown", action="store_true", help="print one markdown table")
    parser.add_argument("--no_compile", action="store_true",
                        help="report only rows stored in --results; others as not compiled")
    parser.add_argument("--results", type=Path,
                        help="JSON-lines file of finished rows: reused and appended to")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    from tpu_scripts import aot

    if argv is None and not args.no_compile:
        env = aot.preload_env(dict(os.environ))
        if env is not None:  # run again with the faster malloc: same compile, less CPU
            os.execve(sys.executable, [sys.executable, "-m", "tpu_scripts.fit", *sys.argv[1:]],
                      env)
    aot.prepare_environment()
    from eval.quiet import quiet_imports, silenced_fd2

    quiet_imports(tasks=False)  # TF's start-up lines (seqio imports it through the gin files)
    try:
        chosen = selected(args)
        stored_rows = _load_results(args.results)
        done = {(r.config, r.phase, r.fingerprint): r for r in stored_rows}  # the last one wins
        latest = {(r.config, r.phase): r for r in stored_rows}
        rows: list[Row] = []
        flops_cache = {row.flops_key: (row.model_flops, row.hardware_flops, row.flops_source)
                       for row in stored_rows if row.flops_key and not row.error}
        for path, phases in chosen:
            phases = phases or _phases_of(path)
            if args.all and args.phase:  # every config, that one phase (where it lists it)
                phases = [p for p in phases if p == args.phase]
            cfg = configs.load(path, args.binding)
            fingerprint = program_fingerprint(path, args.binding)
            devices = None
            for phase in phases:
                if (cfg.name, phase, fingerprint) in done:
                    rows.append(done[(cfg.name, phase, fingerprint)])
                    continue
                if args.no_compile:
                    rows.append(pending_row(cfg, phase, stale=latest.get((cfg.name, phase))))
                    continue
                if devices is None:
                    with silenced_fd2():  # libtpu's start-up complaints: no TPU hosts here
                        devices = aot.topology_devices(topology.Slice.parse(cfg.slice_name))
                print(f"compiling {cfg.name} [{phase}] ...", file=sys.stderr, flush=True)
                row = run_one(cfg, phase, devices, flops_cache, args.compiled_flops,
                              fingerprint)
                rows.append(row)
                if args.results is not None:
                    with args.results.open("a") as f:
                        f.write(json.dumps(dataclasses.asdict(row)) + "\n")
                if not args.markdown:
                    print(format_row(row), flush=True)
        if args.markdown:
            print(markdown(rows), end="")
        elif len(rows) and all(done.get((r.config, r.phase, r.fingerprint)) is r
                               for r in rows):
            for row in rows:
                print(format_row(row))
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if all(not r.error and r.total_gib <= r.hbm_gib for r in rows
                    if r.error not in (PENDING, STALE)) else 1


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(libraries=False)  # first: no library lines unless --verbose
    sys.exit(main())
