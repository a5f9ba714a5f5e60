"""Entry points: a known error is one stderr line and exit 2 (traceback behind --verbose), a bug
keeps its traceback, and `python -m train` on a malformed training file exits within seconds
of the error instead of hanging in tf.data's teardown."""
import io
import os
import pathlib
import shutil
import subprocess
import sys
import time

import gin
import pytest
import tensorflow as tf

from train import __main__ as train_main
from train import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = [f"--gin_file={ROOT}/gin/models/mt5_tiny.gin", f"--gin_file={ROOT}/gin/runs/finetune.gin",
         f"--gin_file={ROOT}/gin/runs/cpu_tiny.gin"]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _handle(main, argv):
    err = io.StringIO()
    code = cli.handle(main, argv, stderr=err)
    return code, err.getvalue()


def _raises(error):
    def main(argv):
        raise error
    return main


def test_known_error_is_one_line_and_exit_2():
    from xitt_tasks.errors import DataFormatError

    code, err = _handle(_raises(DataFormatError("/data/snli/train.jsonl", 30,
                                                "one JSON object per line", "'{broken'")), [])
    assert code == 2
    first, hint = err.splitlines()
    assert first == ("error: /data/snli/train.jsonl:30: expected one JSON object per line, "
                     "got '{broken'")
    assert hint == "(run again with --verbose for the traceback)"


def test_verbose_adds_the_traceback_and_is_not_passed_on():
    seen = []

    def main(argv):
        seen.append(argv)
        raise FileNotFoundError(2, "expected data file not found: /d/x.tsv", "/d/x.tsv")

    code, err = _handle(main, ["--a=1", "--verbose"])
    assert code == 2 and seen == [["--a=1"]]
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1] == "error: expected data file not found: /d/x.tsv"


def test_multi_line_messages_become_one_line():
    code, err = _handle(_raises(ValueError("run differs:\n  seed: 0 -> 1\n  batch: 8 -> 16")), [])
    assert code == 2
    assert err.splitlines()[0] == "error: run differs:; seed: 0 -> 1; batch: 8 -> 16"


def test_an_error_inside_tf_data_is_unwrapped():
    message = ("{{function_node __wrapped__IteratorGetNext}} DataFormatError: /d/a.jsonl:3: "
               "expected one JSON object per line, got x\nTraceback (most recent call last):\n"
               '  File "readers.py", line 1\n'
               "xitt_tasks.errors.DataFormatError: /d/a.jsonl:3: expected one JSON object per "
               "line, got x\n\t [[{{node PyFunc}}]] [Op:IteratorGetNext]")
    code, err = _handle(_raises(tf.errors.InvalidArgumentError(None, None, message)), [])
    assert code == 2
    assert err.splitlines()[0] == ("error: DataFormatError: /d/a.jsonl:3: expected one JSON "
                                   "object per line, got x")


def test_a_bug_keeps_its_traceback_and_exit_1():
    code, err = _handle(_raises(KeyError("premise")), [])
    assert code == 1
    assert "Traceback" in err and "KeyError: 'premise'" in err


def test_argparse_usage_errors_keep_their_status():
    code, _ = _handle(train_main.main, [])  # --gin_file is required
    assert code == 2


def test_unquoted_gin_string_gets_the_quoting_hint(tmp_path):
    code, err = _handle(train_main.main, [*FILES, f"--gin.MODEL_DIR={tmp_path}"])
    assert code == 2
    line = err.splitlines()[0]
    assert line.startswith(f"error: gin binding 'MODEL_DIR = {tmp_path}'")
    assert f"did you mean --gin.MODEL_DIR=\"'{tmp_path}'\"?" in line


def _malformed_data_root(tmp_path):
    sample = ROOT / "xitt_tasks" / "data" / "sample"
    root = tmp_path / "data"
    shutil.copytree(sample, root)
    train_file = root / "snli" / "snli_1.0_train.jsonl"
    lines = train_file.read_text().splitlines()
    lines[29] = '{"gold_label": "entailment", "sentence1": "broken'
    train_file.write_text("\n".join(lines) + "\n")
    return root, train_file


@pytest.mark.slow
def test_malformed_training_file_exits_promptly_with_file_and_line(tmp_path):
    root, train_file = _malformed_data_root(tmp_path)
    env = {**os.environ, "XITT_DATA_DIR": str(root), "JAX_PLATFORMS": "cpu",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "train", *FILES, f"--gin.MODEL_DIR='{tmp_path / 'run'}'",
         "--gin.MIXTURE_OR_TASK_NAME='xitt.inter.snli'",
         "--gin.MIXTURE_OR_TASK_MODULE='xitt_tasks'"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {train_file}:30: expected one JSON object per line, got "
                      "Unterminated string starting at: line 1 column 43 (char 42)"]
    assert "Traceback" not in proc.stderr
    assert elapsed < 600


def test_gin_call_context_is_dropped():
    error = ValueError("/d/a.jsonl:3: expected x, got y\n  In call to configurable 'train' "
                       "(<function train at 0x7f>)")
    assert cli.one_line(error) == "error: /d/a.jsonl:3: expected x, got y"


def test_multi_host_entry_points_initialise_jax_distributed(monkeypatch):
    """The launch scripts set XITT_DISTRIBUTED=1 on every host of a slice; the entry points
    then call jax.distributed.initialize() before their first JAX call, and only then."""
    import jax

    from train import cli

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
    monkeypatch.delenv(cli.DISTRIBUTED_ENV, raising=False)
    assert cli.maybe_initialize_distributed() is False and calls == []
    monkeypatch.setenv(cli.DISTRIBUTED_ENV, "1")
    seen = []
    assert cli.handle(lambda argv: seen.append(len(calls)), []) == 0
    assert calls == [((), {})] and seen == [1]
