"""Every `python -m` entry point prints only its own output: no TensorFlow / absl / XLA /
CUDA-stub / sentencepiece lines (`xitt_common.quiet`), and `--verbose` brings the libraries
back without changing what the program prints.

Each command runs in a real subprocess with the user's environment (the test session's
TF_CPP_MIN_LOG_LEVEL removed). The default run takes every entry point's --help and a few real
invocations, two at a time; a tiny training run and `eval --target=xquad` on it are slow.
"""
from __future__ import annotations

import concurrent.futures
import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.eval.test_score import xnli_folders

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A library's line on stderr: absl/glog-style log lines, the CUDA stub, CPU features, Python
# warnings, sentencepiece, or anything naming TF/absl/XLA (the programs' own lines don't).
NOISE = re.compile(
    r"^[IWEF]\d{4} |tensorflow|absl|cuda|cudart|cuInit|precompiled_charsmap|sentencepiece|"
    r"\bXLA\b|xla_|oneDNN|cpu_feature_guard|rebuild TensorFlow|AVX|InitializeLog|"
    r"Warning:|warn\(", re.IGNORECASE)
# On stdout, where a program's help may name TF or XLA: only the shapes of library lines.
STDOUT_NOISE = re.compile(r"^[IWEF]\d{4} |precompiled_charsmap|InitializeLog|cudart_stub|"
                          r"cpu_feature_guard|^\S*Warning: ")
ENTRY_POINTS = ("train", "train.inspect", "train.formats.convert", "eval", "eval.score",
                "eval.leaderboard", "study", "xitt_tasks", "xitt_tasks.prepare", "tpu_scripts.fit",
                "tpu_scripts.cost", "tpu_scripts.launch", "tpu_scripts.executor", "benchmarks",
                "benchmarks.profile")
XQUAD_DE = ("xitt_tasks", "show", "xitt.xquad.de", "-n", "1", "--lengths", "64,16")


def noise(proc: subprocess.CompletedProcess) -> list[str]:
    return ([line for line in proc.stderr.splitlines() if NOISE.search(line)]
            + [line for line in proc.stdout.splitlines() if STDOUT_NOISE.search(line)])


def run(*args: str, cwd: pathlib.Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict[tuple[str, ...], subprocess.CompletedProcess]:
    """Every default-run command, two subprocesses at a time (most of each is importing TF)."""
    root = tmp_path_factory.mktemp("quiet")
    preds, labels = xnli_folders(root)
    study_dir = root / "study"
    from study.db import ResultsDB

    ResultsDB(str(study_dir / "results.sqlite")).close()  # an empty study: every cell left
    commands = [(m, "--help") for m in ENTRY_POINTS] + [
        XQUAD_DE, (*XQUAD_DE, "--verbose"),
        ("eval.score", "--predictions", str(preds), "--labels", str(labels),
         "--allow_missing_languages"),
        ("study", "status", "gin/study/study_cpu.gin", "--study_dir", str(study_dir)),
        ("tpu_scripts.cost", "gin/study/study_mt5.gin", "--mfu", "0.4")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(commands, pool.map(lambda c: run(*c), commands)))


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_prints_the_usage_and_nothing_else(ran, module):
    proc = ran[(module, "--help")]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"python -m {module}" in proc.stdout or "usage:" in proc.stdout
    assert proc.stderr == "" and noise(proc) == [], proc.stderr[-2000:]


def test_building_a_sentencepiece_dataset_is_quiet_and_verbose_brings_the_libraries_back(ran):
    quiet, verbose = ran[XQUAD_DE], ran[(*XQUAD_DE, "--verbose")]
    assert quiet.returncode == 0 == verbose.returncode, quiet.stderr[-2000:]
    assert "xitt.xquad.de" in quiet.stdout and "inputs" in quiet.stdout
    assert noise(quiet) == []
    assert verbose.stdout == quiet.stdout  # the program's own output is unchanged
    lines = noise(verbose)
    assert any("precompiled_charsmap is empty" in line for line in lines), lines
    assert any(re.match(r"^[IWEF]\d{4} ", line) for line in lines), lines


def test_real_invocations_print_their_results_only(ran):
    for command, proc in ran.items():
        if command[-1] == "--help" or command[0] == "xitt_tasks":
            continue
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
        assert proc.stdout.strip(), command
        assert noise(proc) == [], (command, proc.stderr[-2000:])


@pytest.mark.slow
def test_training_and_evaluating_xquad_are_quiet(tmp_path):
    model_dir = tmp_path / "model"
    train = run("train", "--gin_file=gin/models/mt5_tiny.gin", "--gin_file=gin/runs/finetune.gin",
                "--gin_file=gin/runs/cpu_tiny.gin", f"--gin.MODEL_DIR='{model_dir}'",
                "--gin.MIXTURE_OR_TASK_NAME='xitt.xquad.train.en'",
                "--gin.MIXTURE_OR_TASK_MODULE='xitt_tasks'", "--gin.TRAIN_STEPS=2",
                "--gin.SAVE_EVERY=2")
    assert train.returncode == 0, train.stderr[-3000:]
    assert noise(train) == [], train.stderr[-3000:]
    evaluate = run("eval", "--gin_file=gin/models/mt5_tiny.gin", f"--checkpoint={model_dir}",
                   "--target=xquad", f"--output_dir={tmp_path / 'eval'}", "--max_examples=2",
                   "--batch_size=2", "--feature_lengths=inputs=64,targets=8")
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert "xquad task score" in evaluate.stdout
    assert noise(evaluate) == [], evaluate.stderr[-3000:]
