"""`python -m tpu_scripts.fit`: verdicts and the table from figures, the shipped configs as gin
reads them, and (with libtpu installed) deviceless compiles of the project's own steps.

The compiles need libtpu (`pip install -e '.[tpu]'`, docs/tpu.md) and are skipped without it.
libtpu allows one process at a time on a machine: run these tests with no other compile going.
"""
import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tpu_scripts import configs, fit, topology

REPO = Path(__file__).resolve().parents[2]
TINY = Path(__file__).with_name("mt5_tiny_v5e_2x2.gin")
needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason="libtpu not installed (pip install -e '.[tpu]')")


def row(total, hbm=15.75, error=""):
    return fit.Row("mt5_x", "xxl", "v5e:4x8", "train_qa", "m", "s", hbm_gib=hbm,
                   arguments_gib=total / 2, temporaries_gib=total / 2, total_gib=total,
                   model_flops=2e15, hardware_flops=2.5e15, peak_flops=32 * 197e12,
                   error=error)


def test_verdicts_name_the_figure():
    assert row(11.3).verdict == "fits (28% headroom)"
    assert row(15.0).verdict == "fits, under 10% headroom (4.8%)"
    assert row(16.5).verdict == ("DOES NOT FIT: 16.50 GiB > 15.75 GiB (over by 0.75 GiB, 4.8%)")
    refused = row(0, error="RESOURCE_EXHAUSTED: HLO temporaries (33.95G) exceeds available HBM")
    assert refused.verdict.startswith("does not compile: RESOURCE_EXHAUSTED")
    r = row(8.0)
    assert r.ideal_step_s == pytest.approx(2e15 / (32 * 197e12))
    assert r.mfu_bound == pytest.approx(0.8)


def test_markdown_table_has_one_line_per_row_and_states_the_peaks():
    text = fit.markdown([row(11.3), row(16.5)])
    assert "v4 275 TF, v5e 197 TF, v5p 459 TF" in text
    lines = [line for line in text.splitlines() if line.startswith("| mt5_x")]
    assert len(lines) == 2 and "DOES NOT FIT: 16.50 GiB" in lines[1]


def test_compile_time_is_recorded_in_cpu_seconds_too():
    r = dataclasses.replace(row(11.3), compile_s=600.0, compile_cpu_s=75.0)
    assert "[compiled in 600 s, 75 s CPU]" in fit.format_row(r)
    # rows stored before the CPU figure existed still load
    old = {k: v for k, v in dataclasses.asdict(r).items() if k != "compile_cpu_s"}
    assert fit.Row(**old).compile_cpu_s == 0.0


def test_faster_malloc_is_preloaded_only_when_installed_and_wanted(monkeypatch):
    from tpu_scripts import aot

    monkeypatch.setattr(aot, "fast_allocator", lambda: "libtcmalloc_minimal.so.4")
    env = aot.preload_env({"PATH": "/bin"})
    assert env["LD_PRELOAD"] == "libtcmalloc_minimal.so.4" and env["PATH"] == "/bin"
    assert aot.preload_env(env) is None  # the re-run does not loop
    assert aot.preload_env({"LD_PRELOAD": "/x/libjemalloc.so.2"}) is None
    assert aot.preload_env({aot.MALLOC_ENV: "system"}) is None
    assert aot.preload_env({"LD_PRELOAD": "libfoo.so"})["LD_PRELOAD"] == \
        "libtcmalloc_minimal.so.4 libfoo.so"
    monkeypatch.setattr(aot, "fast_allocator", lambda: None)
    assert aot.preload_env({"PATH": "/bin"}) is None


def test_every_shipped_config_parses_and_divides_its_slice():
    paths = configs.shipped_paths()
    sizes = {configs._size_of(p) for p in paths}
    assert sizes == {"base", "large", "xl", "xxl"}
    for path in paths:
        cfg = configs.load(path)
        s = topology.Slice.parse(cfg.slice_name)
        assert path.stem == f"mt5_{cfg.size}_{s.generation}_{'x'.join(map(str, s.dims))}"
        model = (cfg.num_partitions or 1) if cfg.model_parallel_submesh is None else \
            math.prod(cfg.model_parallel_submesh)
        assert s.num_chips % model == 0, path
        assert cfg.batch_size % (s.num_chips // model) == 0, path
        assert cfg.batch_size % cfg.num_microbatches == 0, path
        assert cfg.infer_batch_size % (s.num_chips // cfg.infer_num_partitions) == 0, path
        assert cfg.model_config.remat_policy == "full" and cfg.model_config.scan_layers
        assert (cfg.batch_size * cfg.input_length) == 2**17
        # the mT5 script's tokens per step: XNLI 2^20 (8x the config's batch, 8x its
        # microbatches: the same microbatch), NER 2^16 at 1024/1024 (64 sequences)
        assert configs.train_batch(cfg, "train_xnli") == (1024, 8 * cfg.num_microbatches)
        ner, ner_micro = configs.train_batch(cfg, "train_ner")
        assert ner == 64 and ner % ner_micro == 0 and ner // ner_micro <= 128 // \
            cfg.num_microbatches
        assert ner % (s.num_chips // model) == 0 or ner_micro == 1, path
    # a config's NUM_MICROBATCHES is for its batch at 512 targets: the tiny overlay's 4 are
    # 2 for its 256/128 classification step (one microbatch compiles to no temporaries)
    assert configs.train_batch(configs.load(TINY), "train_cls") == (8, 2)


def test_shipped_model_defaults_are_fixed():
    """The defaults the issue found wrong: remat 'none' and an unreachable activation
    partitioning."""
    import gin

    from train import gin_utils

    for size in ("base", "large", "xl", "xxl"):
        gin_utils.parse([f"gin/models/mt5_{size}.gin", "gin/runs/finetune.gin"], [])
        assert gin_utils.model_config_from_gin().remat_policy == "full", size
        assert gin.query_parameter("%PARAMETER_PARTITIONING") == "2d"
        assert gin.query_parameter("%ACTIVATION_PARTITIONING_DIMS") == 1
        for name in ("activation_partitioning_dims", "model_parallel_submesh"):
            gin.query_parameter(f"settings.MeshSettings.{name}")  # bound: raises if not
    gin.clear_config()


def _fit(*args, timeout=900):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("XLA_FLAGS", None)  # the host device count of conftest is not wanted here
    return subprocess.run([sys.executable, "-m", "tpu_scripts.fit", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@needs_libtpu
def test_tiny_train_step_compiles_for_v5e_2x2_and_reports(tmp_path):
    results = tmp_path / "rows.jsonl"
    proc = _fit("--config", str(TINY), "--phase", "train_cls", "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = results.read_text().splitlines()
    r = fit.Row(**json.loads(line))
    assert not r.error and r.slice == "v5e:2x2" and r.hbm_gib == pytest.approx(15.75)
    assert 0 < r.arguments_gib and 0 < r.temporaries_gib
    parts = r.arguments_gib + r.temporaries_gib + r.outputs_gib
    assert parts <= r.total_gib < parts + 0.05  # + generated code (about 11 MiB here)
    from train import flops
    cfg = configs.load(TINY)
    fwd = flops.forward_flops(cfg.model_config, 8, 256, 128)
    assert r.model_flops == pytest.approx(3 * fwd.total)
    assert r.hardware_flops == pytest.approx(3 * fwd.total + fwd.encoder + fwd.decoder)
    assert "verdict: fits" in proc.stdout and "ideal step" in proc.stdout
    # a second call reuses the stored row instead of compiling again
    again = _fit("--config", str(TINY), "--phase", "train_cls", "--results", str(results),
                 "--markdown")
    assert again.returncode == 0 and "compiling" not in again.stderr
    assert "| mt5_tiny_v5e_2x2 | train_cls |" in again.stdout


@needs_libtpu
@pytest.mark.slow
def test_compiled_flops_reproduce_the_analytic_count(tmp_path):
    """The 1-/2-layer extrapolation of XLA's count agrees with train.flops' matmul count
    (elementwise work makes the compiled count slightly larger)."""
    proc = _fit("--config", str(TINY), "--phase", "train_cls", "--compiled_flops")
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if "FLOPs per step" in x)
    compiled = float(line.split()[3])
    cfg = dataclasses.replace(configs.load(TINY))
    from train import flops
    analytic = 3 * flops.forward_flops(cfg.model_config, 8, 256, 128).total
    assert analytic <= compiled <= 1.15 * analytic


@needs_libtpu
@pytest.mark.slow
@pytest.mark.parametrize("phase", ["train_cls", "train_qa", "decode", "retrieval_train"])
def test_xxl_on_its_smallest_v5e_slice_has_ten_percent_headroom(phase, tmp_path):
    proc = _fit("--config", "gin/tpu/mt5_xxl_v5e_4x8.gin", "--phase", phase,
                "--results", str(tmp_path / "r.jsonl"))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    r = fit.Row(**json.loads((tmp_path / "r.jsonl").read_text()))
    assert r.headroom >= fit.HEADROOM_TARGET, r.verdict


def test_all_with_one_phase_renders_only_that_phase(tmp_path, capsys):
    assert fit.main(["--all", "--phase", "decode", "--markdown", "--no_compile",
                     "--results", str(tmp_path / "none.jsonl")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mt5_")]
    listing = [p for p in configs.shipped_paths() if "decode" in fit._phases_of(p)]
    assert 0 < len(listing) < len(configs.shipped_paths())  # some configs only train
    assert len(rows) == len(listing)
    assert {line.split(" | ")[1] for line in rows} == {"decode"}


def test_a_stored_row_is_reused_only_for_the_code_and_config_it_was_compiled_from(
        tmp_path, capsys):
    config = tmp_path / TINY.name
    config.write_text(TINY.read_text())
    stored = dataclasses.replace(row(11.3), config=config.stem, phase="train_cls",
                                 fingerprint=fit.program_fingerprint(config), code="abc1234")
    results = tmp_path / "rows.jsonl"
    results.write_text(json.dumps(dataclasses.asdict(stored)) + "\n")
    argv = ["--config", str(config), "--phase", "train_cls", "--markdown", "--no_compile",
            "--results", str(results)]

    assert fit.main(argv) == 0
    text = capsys.readouterr().out
    assert "Compiled from the current code and configs: 1 of 1 rows** (commit abc1234)" in text
    assert "| 5.65 | 5.65 | 11.30 |" in text and "fits (28% headroom)" in text

    config.write_text(TINY.read_text().replace("NUM_MICROBATCHES = 4", "NUM_MICROBATCHES = 1"))
    assert fit.program_fingerprint(config) != stored.fingerprint
    assert fit.main(argv) == 0
    text = capsys.readouterr().out
    assert "Compiled from the current code and configs: 0 of 1 rows**" in text
    assert "11.30" not in text  # the old figures are not shown as if they still held
    assert ("stale: compiled from other code or config (abc1234); run python -m "
            f"tpu_scripts.fit --config gin/tpu/{config.stem}.gin") in text


def test_the_fingerprint_covers_the_runtime_code(monkeypatch, tmp_path):
    before = fit.program_fingerprint(TINY)
    assert fit.program_fingerprint(TINY) == before
    fake = tmp_path / "train"
    fake.mkdir()
    (fake / "model.py").write_text("x = 1\n")
    monkeypatch.setattr(fit, "PROGRAM_SOURCES", ("train",))
    monkeypatch.setattr(configs, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(configs, "gin_files", lambda path: [])
    one = fit.program_fingerprint(TINY)
    (fake / "model.py").write_text("x = 2\n")
    assert fit.program_fingerprint(TINY) != one


def test_a_row_compiled_with_extra_bindings_does_not_stand_for_the_plain_config(
        tmp_path, capsys):
    binding = "NUM_MICROBATCHES = 4"
    plain = dataclasses.replace(row(11.3), config=TINY.stem, phase="train_cls",
                                fingerprint=fit.program_fingerprint(TINY))
    bound = dataclasses.replace(plain, total_gib=7.5,
                                fingerprint=fit.program_fingerprint(TINY, [binding]))
    assert bound.fingerprint != plain.fingerprint
    results = tmp_path / "rows.jsonl"
    results.write_text("".join(json.dumps(dataclasses.asdict(r)) + "\n" for r in (plain, bound)))
    argv = ["--config", str(TINY), "--phase", "train_cls", "--markdown", "--no_compile",
            "--results", str(results)]
    assert fit.main(argv) == 0
    assert "| 11.30 |" in capsys.readouterr().out
    assert fit.main([*argv, "--binding", binding]) == 0
    assert "| 7.50 |" in capsys.readouterr().out
