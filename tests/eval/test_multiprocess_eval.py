"""`python -m eval` in a 2-process `jax.distributed` CPU job (4 devices each, the multi-host
code path) equals the single-process run on the same 8 devices: decoding (XNLI, every
language) and retrieval (Mewsli-X: pool embedding + sharded top-k) give byte-identical
prediction files, leaderboard files and metrics, written once, by process 0 only.

The tiny checkpoint is random (saved here); what is pinned is that sharding the examples over
processes and gathering the rows back changes nothing, not the model's quality.
"""
import json
import os

import jax
import pytest

from eval import __main__ as eval_main
from tests.eval import multiprocess_eval_worker as worker
from tests.train import multiprocess_worker as launcher
from train import checkpoints

pytestmark = pytest.mark.slow
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(workdir, the two processes' reports, the single-process results per case)."""
    workdir = str(tmp_path_factory.mktemp("multiprocess_eval"))
    model, _ = eval_main._parse_gin([worker.GIN_FILE], [], ["xitt_tasks"])
    params = model.unscanned().init_params(jax.random.key(0))
    checkpoints.Checkpoints(f"{workdir}/model").save(0, {"target": params})
    try:
        reports = launcher.launch("tests.eval.multiprocess_eval_worker", workdir,
                                  timeout_s=TIMEOUT_S)
    except RuntimeError as e:
        pytest.fail(str(e))
    single = {case: eval_main.main(worker.eval_argv(workdir, f"{workdir}/single/{case}", case))
              for case in worker.CASES}
    return workdir, reports, single


def _files(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.mark.parametrize("case", list(worker.CASES))
def test_two_processes_write_exactly_the_single_process_outputs(runs, case):
    workdir, reports, single = runs
    assert [(r["process_index"], r["process_count"]) for r in reports] == [(0, 2), (1, 2)]
    # Every process returns every language's metrics, equal to the single-process run's.
    assert reports[0]["results"][case] == reports[1]["results"][case] == single[case]
    languages = len(single[case])
    assert languages > 1 and all(single[case].values())
    # One output directory, no temporary or set-aside siblings (process 1 wrote nothing).
    assert os.listdir(f"{workdir}/multi/{case}") == ["checkpoint_0"]
    got, want = _files(f"{workdir}/multi/{case}"), _files(f"{workdir}/single/{case}")
    assert sorted(got) == sorted(want)
    assert sum(name.startswith("checkpoint_0/predictions/") for name in got) == languages
    for name in want:
        assert got[name] == want[name], name
    summary = json.loads(got["checkpoint_0/metrics.json"])
    assert summary["task_score"] is not None
    assert {f"xitt.{case}.{lang}" for lang in summary["metrics"]} == set(single[case])
