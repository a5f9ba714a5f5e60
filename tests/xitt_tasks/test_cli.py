"""`python -m xitt_tasks list|show` (in-process main, plus one real subprocess)."""
import os
import subprocess
import sys

import seqio

from xitt_tasks.__main__ import main


def test_list_prints_every_task_and_mixture(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[1] for line in out.splitlines() if not line.startswith("#")]
    expected = sorted(n for n in seqio.TaskRegistry.names() if n.startswith("xitt.")) + sorted(
        n for n in seqio.MixtureRegistry.names() if n.startswith("xitt."))
    assert names == expected
    assert "mixture  xitt.inter.multitask" in out


def test_show_prints_text_ids_and_split_sizes(capsys):
    assert main(["show", "xitt.xnli.train.en", "-n", "2", "--lengths", "64,8"]) == 0
    out = capsys.readouterr().out
    assert "xitt.xnli.train.en: {'train': " in out  # split sizes counted from the sample
    assert out.count("  inputs: xnli: premise: ") == 2
    ids_line = next(line for line in out.splitlines() if line.startswith("  inputs ids:"))
    assert ids_line.rstrip().endswith("1]")  # EOS appended


def test_show_mixture_lists_member_sizes(capsys):
    assert main(["show", "xitt.xcopa.all_langs", "--split", "validation", "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "xitt.xcopa.qu: {'validation': " in out and "xcopa: context: " in out


def test_show_unknown_name_fails_with_message(capsys):
    assert main(["show", "xitt.xnli.xx"]) == 2
    assert "xitt.xnli.xx" in capsys.readouterr().err
    assert main(["show", "xitt.lareqa.de", "--split", "validation"]) == 2
    assert "has no split 'validation'; expected one of ['test']" in capsys.readouterr().err


def test_module_runs_as_a_program():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "xitt_tasks", "list"], capture_output=True,
                            text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "task     xitt.tatoeba.zh" in result.stdout
