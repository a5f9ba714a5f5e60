"""`--seqio_additional_cache_dirs` (t5x's flag) on `python -m train` and `python -m eval`: a
cache in an added directory is found by the input pipeline, and a directory that does not exist
is one error line naming it, exit status 2."""
import io
import os
import pathlib
import subprocess
import sys

import gin
import pytest
import seqio

from eval import __main__ as eval_main
from tests.train import test_seqio_cache
from train import __main__ as train_main
from train import cli, input_pipeline

ROOT = pathlib.Path(__file__).resolve().parents[2]
MISSING_GIN = "no_such_config.gin"


@pytest.fixture()
def cached_task(tmp_path):
    """The cacheable copy task of test_seqio_cache, cached under tmp_path/caches (not yet a
    seqio cache directory); seqio's directories are restored afterwards."""
    before = list(seqio.utils.get_global_cache_dirs())
    task = test_seqio_cache._register()
    root = tmp_path / "caches"
    test_seqio_cache.write_cache(task, str(root), "train")
    yield task, root
    seqio.utils.set_global_cache_dirs(before)
    task._cache_dir = None
    gin.clear_config()


def _handle(main, argv):
    err = io.StringIO()
    code = cli.handle(main, argv, stderr=err)
    return code, err.getvalue().splitlines()


def _eval_argv(*extra):
    return ["--checkpoint=/nonexistent/ckpt", f"--task={test_seqio_cache.TASK}",
            "--output_dir=/nonexistent/out", *extra]


@pytest.mark.parametrize("entry", ["train", "eval"])
def test_a_cache_in_an_added_directory_is_found(cached_task, tmp_path, entry):
    task, root = cached_task
    assert input_pipeline.resolve_use_cached(task.name, None) is False
    other = tmp_path / "other"
    other.mkdir()
    # main stops at the missing gin file, which it reads after adding the cache directories.
    flags = [f"--seqio_additional_cache_dirs={other},{root}", f"--gin_file={MISSING_GIN}"]
    main, argv = ((train_main.main, flags) if entry == "train"
                  else (eval_main.main, _eval_argv(*flags)))
    code, err = _handle(main, argv)
    assert code == 2 and MISSING_GIN in err[0] and "no such file" in err[0], err
    assert seqio.utils.get_global_cache_dirs()[-2:] == [str(other), str(root)]
    assert input_pipeline.resolve_use_cached(task.name, None) is True
    assert task.cache_dir == os.path.join(str(root), seqio.get_task_dir_from_name(task.name))


@pytest.mark.parametrize("entry", ["train", "eval"])
def test_a_missing_cache_directory_is_one_error_line(cached_task, tmp_path, entry):
    _, root = cached_task
    missing = tmp_path / "no_such_cache_dir"
    flags = [f"--seqio_additional_cache_dirs={root}",
             f"--seqio_additional_cache_dirs={missing}", f"--gin_file={MISSING_GIN}"]
    main, argv = ((train_main.main, flags) if entry == "train"
                  else (eval_main.main, _eval_argv(*flags)))
    before = list(seqio.utils.get_global_cache_dirs())
    code, err = _handle(main, argv)
    assert code == 2
    assert err == [f"error: --seqio_additional_cache_dirs: no such directory: {missing}",
                   "(run again with --verbose for the traceback)"]
    assert seqio.utils.get_global_cache_dirs() == before  # nothing added


def test_python_m_train_exits_2_on_a_missing_cache_directory(tmp_path):
    missing = tmp_path / "absent"
    run = subprocess.run(
        [sys.executable, "-m", "train", f"--seqio_additional_cache_dirs={missing}",
         f"--gin_file={ROOT}/gin/models/mt5_tiny.gin"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: --seqio_additional_cache_dirs: no such directory: {missing}"]
