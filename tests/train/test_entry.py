"""`python -m train` with gin: an end-to-end tiny run, the operative config, and the errors
for unknown bindings, unset required values and unimportable task modules."""
import pathlib

import gin
import pytest

from train import __main__ as entry
from train import checkpoints

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = [f"--gin_file={ROOT}/gin/models/mt5_tiny.gin", f"--gin_file={ROOT}/gin/runs/finetune.gin",
         f"--gin_file={ROOT}/gin/runs/cpu_tiny.gin"]
TASK = ["--gin.MIXTURE_OR_TASK_NAME='xitt_test_copy'",
        "--gin.MIXTURE_OR_TASK_MODULE='tests.train.testing_tasks'"]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_tiny_run_from_gin_writes_checkpoints_and_operative_config(tmp_path):
    entry.main([*FILES, *TASK, f"--gin.MODEL_DIR='{tmp_path}'", "--gin.TRAIN_STEPS=3",
                "--gin.SAVE_EVERY=2", "--gin.NUM_PARTITIONS=2"])
    assert checkpoints.committed_steps(str(tmp_path)) == [2, 3]
    config = (tmp_path / "config.gin").read_text()
    for line in ("MIXTURE_OR_TASK_NAME = 'xitt_test_copy'", "TRAIN_STEPS = 3",
                 "EMBED_DIM = 64", "LOSS_NORMALIZING_FACTOR = 'NUM_REAL_TARGET_TOKENS'",
                 "optimizer.AdafactorConfig.decay_rate = 0.8",
                 "MIXTURE_OR_TASK_MODULE = ['tests.train.testing_tasks']"):
        assert line in config, line
    # The written config is itself a valid config: it re-parses.
    gin.clear_config()
    gin.parse_config_files_and_bindings([str(tmp_path / "config.gin")], [],
                                        finalize_config=False)
    assert gin.query_parameter("%TRAIN_STEPS") == 3


def test_unknown_parameter_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"(?s)doesn't have a parameter named 'bogus_steps'"
                                         r".*Unknown gin binding"):
        entry.main([*FILES, *TASK, f"--gin.MODEL_DIR='{tmp_path}'",
                    "--gin.trainer.train.bogus_steps=3"])


def test_unknown_configurable_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"(?s)No configurable matching 'trainer.tain'"
                                         r".*from train import"):
        entry.main([*FILES, *TASK, f"--gin.MODEL_DIR='{tmp_path}'",
                    "--gin.trainer.tain.train_steps=3"])


def test_required_model_dir(tmp_path):
    with pytest.raises(ValueError, match=r"(?s)MODEL_DIR.*gin.REQUIRED.*--gin.MODEL_DIR"):
        entry.main([*FILES, *TASK])


def test_task_module_that_does_not_import(tmp_path):
    with pytest.raises(ImportError, match="MIXTURE_OR_TASK_MODULE='no_such_tasks_module'"):
        entry.main([*FILES, f"--gin.MODEL_DIR='{tmp_path}'",
                    "--gin.MIXTURE_OR_TASK_NAME='x'",
                    "--gin.MIXTURE_OR_TASK_MODULE='no_such_tasks_module'"])


def test_missing_gin_file():
    with pytest.raises(FileNotFoundError, match="--gin_file=gin/runs/nope.gin"):
        entry.main(["--gin_file=gin/runs/nope.gin"])


def test_malformed_gin_flag():
    with pytest.raises(ValueError, match="expected --gin.NAME=VALUE"):
        entry.main([*FILES, "--gin.MODEL_DIR"])
