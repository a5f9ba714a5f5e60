"""`python -m tpu_scripts.launch --dry_run`: the exact commands for a four-host slice, and
hostile run names and paths that reach the remote process as literal text."""
import io
import os
import shlex
import subprocess
import time
from pathlib import Path

import gin
import pytest

from tpu_scripts import gcloud, launch, topology

PROJECT = ["--project", "my-proj"]
V4_32 = ["--name", "xnli-xl", "--slice", "v4:2x2x4", *PROJECT]  # v4-32: 16 chips, 4 hosts


def dry(*args: str) -> list[str]:
    out = io.StringIO()
    assert launch.main([*args, "--dry_run"], out=out) == 0
    return out.getvalue().splitlines()


def test_slice_names_hosts_and_chips():
    s = topology.Slice.parse("v4:2x2x4")
    assert (s.accelerator_type, s.num_chips, s.num_hosts) == ("v4-32", 16, 4)
    assert topology.Slice.parse("v5e:4x4").accelerator_type == "v5litepod-16"
    assert topology.Slice.parse("v5e:4x4").num_hosts == 4
    assert topology.Slice.parse("v5e:2x4").num_hosts == 1  # v5litepod-8: one host
    assert topology.Slice.parse("v5p:2x2x2").accelerator_type == "v5p-16"
    assert topology.Slice.parse("v5e:4x8").peak_flops == 32 * 197e12
    with pytest.raises(ValueError, match="'v5e:4x4x4'.*2 positive dims"):
        topology.Slice.parse("v5e:4x4x4")
    with pytest.raises(ValueError, match="generation one of"):
        topology.Slice.parse("v5litepod-16")


def test_four_host_create_setup_delete_are_what_a_user_types():
    assert dry("create", *V4_32, "--spot") == [
        "gcloud compute tpus queued-resources create xnli-xl --node-id=xnli-xl "
        "--project=my-proj --zone=us-central2-b --accelerator-type=v4-32 "
        "--runtime-version=tpu-ubuntu2204-base --spot"]
    assert dry("create", *V4_32, "--no_queued") == [
        "gcloud compute tpus tpu-vm create xnli-xl --project=my-proj --zone=us-central2-b "
        "--accelerator-type=v4-32 --version=tpu-ubuntu2204-base"]
    assert dry("setup", *V4_32, "--repo", "https://github.com/org/xitt.git", "--ref",
               "v1.0") == [
        "gcloud compute tpus tpu-vm ssh xnli-xl --project=my-proj --zone=us-central2-b "
        "--worker=all '--command=set -e && mkdir -p ~/xitt-logs && (test -d ~/xitt/.git || "
        "git clone -q https://github.com/org/xitt.git ~/xitt) && git -C ~/xitt fetch -q "
        "origin && git -C ~/xitt checkout -q v1.0 && (test -x ~/xitt-venv/bin/python || "
        "python3 -m venv ~/xitt-venv) && ~/xitt-venv/bin/pip install -q -c "
        "~/xitt/constraints.txt -e ~/xitt'\"'\"'[tpu]'\"'\"''"]
    assert dry("delete", *V4_32) == [
        "gcloud compute tpus queued-resources delete xnli-xl --project=my-proj "
        "--zone=us-central2-b --force --quiet"]


def test_four_host_train_and_eval_commands():
    train = dry("train", *V4_32, "--size", "xl", "--model_dir", "gs://b/runs/xnli-xl",
                "--task", "xitt.xnli.train.en", "--train_steps", "1008000",
                "--init_checkpoint", "gs://t5-data/pretrained_models/t5x/mt5_xl/checkpoint_1000000")
    q = "'\"'\"'"  # a single quote inside the single-quoted --command
    assert train == [
        "gcloud compute tpus tpu-vm ssh xnli-xl --project=my-proj --zone=us-central2-b "
        "--worker=all '--command=mkdir -p ~/xitt-logs && cd ~/xitt && (nohup "
        "env XITT_DISTRIBUTED=1 ../xitt-venv/bin/python -m train --gin_file=gin/models/mt5_xl.gin "
        "--gin_file=gin/runs/finetune.gin --gin_file=gin/tpu/mt5_xl_v4_2x2x4.gin "
        f"{q}--gin.MODEL_DIR=\"gs://b/runs/xnli-xl\"{q} "
        f"{q}--gin.MIXTURE_OR_TASK_NAME=\"xitt.xnli.train.en\"{q} "
        f"{q}--gin.MIXTURE_OR_TASK_MODULE=\"xitt_tasks\"{q} --gin.TRAIN_STEPS=1008000 "
        f"{q}--gin.INITIAL_CHECKPOINT_PATH="
        f"\"gs://t5-data/pretrained_models/t5x/mt5_xl/checkpoint_1000000\"{q}; "
        "echo xitt-exit $?) >> ~/xitt-logs/xnli-xl.log 2>&1 < /dev/null &'"]
    evaluation = dry("eval", *V4_32, "--size", "xl", "--checkpoint",
                     "gs://b/runs/xnli-xl/checkpoint_1008000", "--task", "xitt.xnli.de",
                     "--output_dir", "gs://b/eval/xnli-xl")
    assert evaluation == [
        "gcloud compute tpus tpu-vm ssh xnli-xl --project=my-proj --zone=us-central2-b "
        "--worker=all '--command=cd ~/xitt && env XITT_DISTRIBUTED=1 "
        "../xitt-venv/bin/python -m eval "
        "--gin_file=gin/models/mt5_xl.gin --gin.SCAN_LAYERS=True "
        "--checkpoint=gs://b/runs/xnli-xl/checkpoint_1008000 --task=xitt.xnli.de "
        "--split=validation --mode=decode --output_dir=gs://b/eval/xnli-xl "
        "--feature_lengths=inputs=1024,targets=128 --batch_size=128 --num_partitions=4 "
        "--mixture_or_task_module=xitt_tasks'"]


def test_watch_dry_run_shows_poll_and_preemption_recovery():
    lines = dry("watch", *V4_32, "--size", "xl", "--model_dir", "gs://b/r", "--task", "t",
                "--train_steps", "10")
    assert lines[0] == ("gcloud compute tpus tpu-vm describe xnli-xl --project=my-proj "
                        "--zone=us-central2-b '--format=value(state)'")
    assert lines[1].endswith("--worker=0 '--command=tail -n 5 ~/xitt-logs/xnli-xl.log'")
    assert lines[2] == "# on PREEMPTED / TERMINATED / missing node:"
    assert [line.split()[3:5] for line in lines[3:6]] == [
        ["queued-resources", "delete"], ["queued-resources", "create"], ["tpu-vm", "ssh"]]
    assert "python -m train" in lines[6] and "--worker=all" in lines[6]


class FakeGcloud:
    """Answers describe with scripted states; records everything else."""

    def __init__(self, states, tails):
        self.states, self.tails, self.calls = list(states), list(tails), []

    def __call__(self, argv, *, check=True, capture=False):
        self.calls.append(list(argv))
        if "describe" in argv:
            return self.states.pop(0) + "\n"
        if "--worker=0" in argv:
            return self.tails.pop(0)
        return ""


def test_watch_recovers_from_preemption_then_reports_the_exit_status():
    runner = launch.Runner(dry_run=False)
    fake = FakeGcloud(["READY", "PREEMPTED", "READY", "READY", "READY"],
                      ["step 100\n", "step 300\nxitt-exit 0\n"])
    runner.run = fake
    spec = gcloud.SliceSpec("r1", topology.Slice.parse("v4:2x2x4"), "p", "z", queued=True)
    status = launch.do_watch(runner, spec, ["python", "-m", "train"], "r1", "repo", "main",
                             poll_s=0, sleep=lambda _: None)
    assert status == 0
    verbs = [c[3:5] for c in fake.calls if c[0] == "gcloud"]
    # preempted: delete, create (queued; describe until READY), setup, restart the command
    i = verbs.index(["queued-resources", "delete"])
    assert verbs[i + 1] == ["queued-resources", "create"]
    assert sum(1 for c in fake.calls if "--worker=all" in c) == 2  # setup + restart


HOSTILE = [
    "gs://b/run with spaces",
    "gs://b/it's \"quoted\"",
    "gs://b/a;touch PWNED_SEMI",
    "gs://b/$(touch PWNED_SUBST)",
    "gs://b/`touch PWNED_TICK`",
    "gs://b/line\nbreak && touch PWNED_NL",
    "gs://b/back\\slash $HOME ~ * ?",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_paths_round_trip_through_the_local_shell(path):
    argv = launch.train_argv(["gin/models/mt5_xl.gin"], path, f"task {path}", 5, path)
    spec = gcloud.SliceSpec("n1", topology.Slice.parse("v4:2x2x4"), "p", "z")
    full = gcloud.ssh_all(spec, gcloud.detached(argv, f"log {path}"))
    printed = shlex.join(full)
    assert shlex.split(printed) == full  # what the user's shell hands gcloud
    remote = full[-1][len("--command="):]
    # what the remote shell hands python: the original argv, the path intact in gin syntax
    inner = shlex.split(remote.split("(nohup ", 1)[1].split("; echo xitt-exit")[0])
    assert inner == argv
    assert f"--gin.MODEL_DIR={gcloud.gin_string(path)}" in inner


@pytest.fixture
def gin_clean():
    yield
    gin.clear_config()


@pytest.mark.parametrize("path", HOSTILE)
def test_gin_string_literals_parse_back_to_the_path(path, gin_clean):
    gin.parse_config(f"HOSTILE = {gcloud.gin_string(path)}")
    assert gin.query_parameter("%HOSTILE") == path


def test_hostile_remote_command_runs_nothing_it_should_not(tmp_path):
    """Run the remote command with bash in a fake home: the fake python receives exactly the
    intended argv, the log gets the exit marker, and no injected command ran."""
    home = tmp_path / "home"
    (home / "xitt").mkdir(parents=True)
    venv_bin = home / "xitt-venv" / "bin"
    venv_bin.mkdir(parents=True)
    record = tmp_path / "argv.txt"
    fake_python = venv_bin / "python"
    fake_python.write_text(f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done "
                           f"> {shlex.quote(str(record))}\n")
    fake_python.chmod(0o755)
    path = "".join(HOSTILE)
    argv = launch.train_argv(["gin/models/mt5_xl.gin"], path, path, 5, path)
    remote = gcloud.detached(argv, "run; touch PWNED_LOG $(touch PWNED_LOG2)")
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    subprocess.run(["bash", "-c", remote], cwd=tmp_path, env=env, check=True, timeout=30)
    logs = home / "xitt-logs"
    deadline = time.time() + 20
    while time.time() < deadline and not any(
            "xitt-exit" in p.read_text() for p in logs.glob("*.log")):
        time.sleep(0.1)
    got = record.read_bytes().decode().split("\0")[:-1]
    assert got == argv[1:]
    (log,) = logs.glob("*.log")
    assert log.name == "run; touch PWNED_LOG $(touch PWNED_LOG2).log"
    assert log.read_text().strip() == "xitt-exit 0"
    for where in (tmp_path, home, home / "xitt", logs):
        assert not list(Path(where).glob("PWNED*")), where


def test_bad_tpu_name_and_missing_flags_are_one_line_errors(capsys):
    assert launch.main(["create", "--name", "Bad Name;", "--slice", "v4:2x2x4", *PROJECT,
                        "--dry_run"]) == 2
    assert "TPU name 'Bad Name;': expected lowercase letters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch.main(["train", *V4_32, "--dry_run"])
    assert "train needs --model_dir, --task, --train_steps" in capsys.readouterr().err
