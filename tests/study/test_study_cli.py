"""`python -m study`: bad input stops before any training with one clear line; and (slow) the
toy pipeline on a reduced grid, killed midway and re-run, finishes without redoing finished
cells and writes the same report tables as an uninterrupted run."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from study import __main__ as cli

CPU = "gin/study/study_cpu.gin"
ONE_SEED = ["experiment.study.seeds = [0]", "experiment.study.replicate_only = None"]


def _exp(tmp_path, *overrides):
    path = tmp_path / "exp.gin"
    path.write_text("\n".join([f"include '{CPU}'", *ONE_SEED, *overrides]) + "\n")
    return str(path)


def _error(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_missing_initial_checkpoint_stops_before_training(tmp_path, capsys):
    exp = _exp(tmp_path, "experiment.study.initial_checkpoints = "
                         f"{{'tiny': '{tmp_path}/none/checkpoint_1000000'}}")
    study_dir = tmp_path / "study"
    err = _error(capsys, ["run", exp, "--study_dir", str(study_dir)])
    assert "missing initial checkpoint" in err and exp in err
    assert not study_dir.exists()


def test_unknown_condition_stops_before_training(tmp_path, capsys):
    exp = _exp(tmp_path, "experiment.study.conditions = ['baseline', 'xitt.inter.paws']")
    err = _error(capsys, ["run", exp, "--study_dir", str(tmp_path / "study")])
    assert "conditions = 'xitt.inter.paws'" in err and "xitt.inter.multitask" in err
    assert not (tmp_path / "study").exists()


def test_results_db_of_another_schema_version_is_refused(tmp_path, capsys):
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    conn = sqlite3.connect(study_dir / "results.sqlite")
    conn.executescript("CREATE TABLE schema (version INTEGER); INSERT INTO schema VALUES (0);")
    conn.close()
    err = _error(capsys, ["run", CPU, "--study_dir", str(study_dir)])
    assert "schema version 0" in err
    assert not (study_dir / "models").exists()


def test_unknown_cell_id(tmp_path, capsys):
    err = _error(capsys, ["run-cell", CPU, "--cell", "tiny/s0/nope", "--study_dir",
                          str(tmp_path)])
    assert "no cell 'tiny/s0/nope'" in err


def test_status_before_anything_ran(tmp_path, capsys):
    err = _error(capsys, ["status", CPU, "--study_dir", str(tmp_path / "none")])
    assert "no results database" in err


# ------------------------------------------------------------------------------ slow

REDUCED = ("experiment.study.name = 'reduced'",
           "experiment.study.sizes = {'tiny': 'gin/models/mt5_tiny.gin'}",
           "experiment.study.conditions = ['baseline', 'xitt.inter.qqp']",
             "experiment.study.primary_endpoint = "
             "{'condition': 'xitt.inter.qqp', 'measure': 'overall_gain'}",
           "experiment.study.targets = ['xnli', 'xquad']",
           "experiment.study.languages = {'xnli': ['de', 'sw'], 'xquad': ['en', 'el']}",
           "experiment.study.intermediate_steps = 4",
           "experiment.study.target_steps = {'xnli': 4, 'xquad': 4}")


def _cmd(*args):
    return [sys.executable, "-m", "study", *args]


def _done_cells(db_path):
    if not os.path.exists(db_path):
        return {}
    try:
        with sqlite3.connect(db_path, timeout=60) as conn:
            return dict(conn.execute(
                "SELECT cell_id, end_time FROM cells WHERE status = 'done'").fetchall())
    except sqlite3.OperationalError:
        return {}


def _tables(report_md):
    """The report's result tables (Markdown lines starting with '|'), up to the Cells section
    (which carries provenance such as the code commit, not results)."""
    lines = open(report_md, encoding="utf-8").read().split("\n## Cells")[0].splitlines()
    return [line for line in lines if line.startswith("|")]


@pytest.mark.slow
def test_killed_midway_and_rerun_gives_the_same_report(tmp_path):
    exp = _exp(tmp_path, *REDUCED)
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    # uninterrupted reference run
    ref = tmp_path / "ref"
    subprocess.run(_cmd("run", exp, "--study_dir", str(ref)), env=env, check=True,
                   capture_output=True)
    subprocess.run(_cmd("report", "--study_dir", str(ref)), env=env, check=True,
                   capture_output=True)
    # the same study with two workers, killed once two cells are done: neither the kill nor
    # running cells side by side changes a number
    study = tmp_path / "killed"
    db = str(study / "results.sqlite")
    proc = subprocess.Popen(_cmd("run", exp, "--study_dir", str(study), "--workers", "2"),
                            env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while len(_done_cells(db)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its worker
    proc.wait()
    before = _done_cells(db)
    assert 2 <= len(before) < 5
    subprocess.run(_cmd("run", exp, "--study_dir", str(study), "--workers", "2"), env=env,
                   check=True, capture_output=True)
    after = _done_cells(db)
    assert len(after) == 5
    assert {c: after[c] for c in before} == before  # finished cells were not redone
    subprocess.run(_cmd("report", "--study_dir", str(study)), env=env, check=True,
                   capture_output=True)
    ref_tables = _tables(ref / "report" / "report.md")
    assert ref_tables and _tables(study / "report" / "report.md") == ref_tables


@pytest.mark.slow
def test_compilation_cache_in_the_study_dir_serves_a_second_process(tmp_path):
    script = ("import sys, jax, jax.numpy as jnp\n"
              "from study import cell\n"
              "cell.enable_compilation_cache(sys.argv[1])\n"
              "f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())\n"
              "f(jnp.ones((32, 32))).block_until_ready()\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=True)
    first = sorted(p.name for p in (tmp_path / "jax_cache").iterdir())
    assert any(name.startswith("jit_") for name in first)
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=True)
    assert sorted(p.name for p in (tmp_path / "jax_cache").iterdir()) == first  # all hits


def test_simulate_prints_coverage_and_declared_shrinks_as_fractions(capsys):
    import json

    assert cli.main(["simulate", "--studies", "2", "--items", "10", "--workers", "1",
                     "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["studies"] == 2 and 0.0 <= out["coverage"] <= 1.0
    assert 0.0 <= out["declared_shrinks"] <= 1.0 and out["true_slope"] == 0.0


def test_report_takes_the_primary_endpoint_the_runner_recorded(tmp_path, capsys):
    import json

    from study import analysis, runner
    from study.db import ResultsDB
    from tests.study import synthetic_db

    assert runner.PRIMARY_ENDPOINT_META == analysis.PRIMARY_META  # one key, written and read
    synthetic_db.build(tmp_path / "results.sqlite", sizes={"tiny": 10**6, "tiny2": 10**7},
                       conditions=("multitask", "mnli"), truth=lambda *k: 0.5, n=10,
                       seeds=(0, 1)).close()
    with ResultsDB(tmp_path / "results.sqlite") as db:
        db.set_meta(runner.PRIMARY_ENDPOINT_META, json.dumps(
            {"condition": "xitt.inter.multitask", "measure": "overall_gain"}))
    assert cli.main(["report", "--study_dir", str(tmp_path)]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "intermediate task multitask (the declared primary endpoint)" in text


def test_plan_refuses_toy_sizes(capsys):
    err = _error(capsys, ["plan", CPU, "--detect_slope", "-1.0"])
    assert "no released mT5 parameter count for tiny, tiny2" in err
