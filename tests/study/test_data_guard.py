"""A full study refuses the shipped sample and the CPU vocabulary; every cell records its data
root and lock-file hash; the TPU scripts forward $XITT_DATA_DIR and $XITT_VOCAB to the hosts."""
import hashlib
import shlex

import pytest

from study import cell as cell_mod
from study import experiment, grid
from study.db import ResultsDB
from tpu_scripts import executor, launch
from xitt_common import data_env
from xitt_tasks import vocab
from xitt_tasks.prepare import guard, lock
from xitt_tasks.sources import SAMPLE_ROOT


@pytest.fixture()
def real_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / lock.LOCK_NAME).write_text('{"version": 1, "files": {}}\n')
    return root


def test_the_settings_names_agree():
    assert data_env.VOCAB_ENV == vocab.VOCAB_ENV and data_env.DATA_DIR_ENV == "XITT_DATA_DIR"


def test_full_data_refuses_the_sample_and_the_cpu_vocabulary(real_root, tmp_path):
    cases = [({}, ["is unset", "CPU vocabulary"]),
             ({"XITT_DATA_DIR": str(SAMPLE_ROOT), "XITT_VOCAB": "mt5"}, ["synthetic sample"]),
             ({"XITT_DATA_DIR": str(tmp_path / "nope"), "XITT_VOCAB": "mt5"}, ["not exist"]),
             ({"XITT_DATA_DIR": str(real_root), "XITT_VOCAB": str(vocab.CPU_MODEL_PATH)},
              ["CPU vocabulary"])]
    for env, why in cases:
        with pytest.raises(guard.SampleDataError, match="data_source='full' refuses") as e:
            guard.study_data("full", env)
        assert all(w in str(e.value) for w in why), (env, str(e.value))
    ok = {"XITT_DATA_DIR": str(real_root), "XITT_VOCAB": "mt5"}
    digest = hashlib.sha256((real_root / lock.LOCK_NAME).read_bytes()).hexdigest()
    assert guard.study_data("full", ok) == {"data_root": str(real_root), "data_lock": digest}
    assert guard.study_data("sample", {}) == {"data_root": str(SAMPLE_ROOT), "data_lock": None}


@pytest.fixture()
def full_exp(tmp_path):
    path = tmp_path / "full.gin"
    path.write_text("include 'gin/study/study_cpu.gin'\n"
                    "experiment.study.seeds = [0]\nexperiment.study.replicate_only = None\n"
                    "experiment.study.sizes = {'tiny': 'gin/models/mt5_tiny.gin'}\n"
                    "experiment.study.conditions = ['baseline']\n"
                    "experiment.study.targets = ['xnli']\n"
                    "experiment.study.data_source = 'full'\n")
    return experiment.load(str(path))


def test_a_full_cell_refuses_the_sample_and_records_its_data(full_exp, tmp_path, real_root,
                                                             monkeypatch):
    study_dir = str(tmp_path / "study")
    cell_id = next(iter(grid.by_id(grid.build(full_exp, study_dir))))
    monkeypatch.setattr(cell_mod, "_run", lambda *a: ([], [], {}))  # no training here
    monkeypatch.delenv("XITT_DATA_DIR", raising=False)
    monkeypatch.delenv("XITT_VOCAB", raising=False)
    with pytest.raises(guard.SampleDataError, match=r"\$XITT_DATA_DIR is unset"):
        cell_mod.run_cell(full_exp, cell_id, study_dir)
    with ResultsDB(f"{study_dir}/{cell_mod.DB_FILE}") as db:
        assert db.get_cell(cell_id).status == "pending"
    monkeypatch.setenv("XITT_DATA_DIR", str(real_root))
    monkeypatch.setenv("XITT_VOCAB", "mt5")
    cell_mod.run_cell(full_exp, cell_id, study_dir)
    with ResultsDB(f"{study_dir}/{cell_mod.DB_FILE}") as db:
        rec = db.get_cell(cell_id)
    assert rec.status == "done" and rec.data_root == str(real_root)
    assert rec.data_lock == lock.lock_hash(str(real_root)) and len(rec.data_lock) == 64


def test_launch_and_executor_forward_the_data_settings(monkeypatch):
    monkeypatch.setenv("XITT_DATA_DIR", "gs://bucket/xtreme")
    monkeypatch.setenv("XITT_VOCAB", "mt5")
    lines = []

    class Out:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    for action, extra in (("train", ["--model_dir", "gs://b/m", "--task", "xitt.xnli.train.en",
                                     "--train_steps", "10"]),
                          ("eval", ["--checkpoint", "gs://b/m/checkpoint_10", "--task",
                                    "xitt.xnli.de", "--output_dir", "gs://b/e"])):
        assert launch.main([action, "--name", "n", "--slice", "v5e:4x4", "--project", "p",
                            "--size", "base", "--dry_run", *extra], out=Out()) == 0
    ssh = [line for line in "".join(lines).splitlines() if "--command=" in line]
    assert len(ssh) == 2
    for line in ssh:
        remote = shlex.split(line.split("--command=", 1)[1].strip("'\""))
        assert "XITT_DATA_DIR=gs://bucket/xtreme" in remote and "XITT_VOCAB=mt5" in remote
    argv = executor.remote_argv(["python", "-m", "study", "run-cell", "x.gin"])
    assert argv[:3] == ["env", "XITT_DATA_DIR=gs://bucket/xtreme", "XITT_VOCAB=mt5"]
    monkeypatch.delenv("XITT_DATA_DIR")
    monkeypatch.delenv("XITT_VOCAB")
    assert executor.remote_argv(["python", "-m", "study"])[0] == "../xitt-venv/bin/python"
