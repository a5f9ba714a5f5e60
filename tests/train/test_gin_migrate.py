"""Gin written for the trainer's old keyword list (an old model directory's config.gin, an old
overlay, an old --gin binding) is refused with one line naming the migration, and the migrated
file binds exactly the settings that today's run files give for the same run."""
import shutil
from pathlib import Path

import gin
import pytest

from train import gin_migrate, gin_utils, settings, trainer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OLD_CONFIG = HERE / "config_before_settings.gin"
RUN_FILES = [str(ROOT / f) for f in ("gin/models/mt5_tiny.gin", "gin/runs/finetune.gin",
                                     "gin/runs/cpu_tiny.gin")]
# The bindings that run used (tests/train/config_before_settings.gin's header).
RUN_BINDINGS = ["MODEL_DIR = '/tmp/xitt_run'", "MIXTURE_OR_TASK_NAME = 'xitt_test_copy'",
                "DROPOUT_RATE = 0.1", "SAVE_EVERY = 3", "KEEP_CHECKPOINTS = 5",
                "TRAIN_STEPS = 6"]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _bound_train_arguments() -> dict:
    """What gin hands `trainer.train`: the model, seed and every settings group, built."""
    gin.get_configurable(trainer.train)  # registered, as the entry point does
    args = {}
    for name in ("model_dir", "model", "seed", *settings.GROUPS):
        value = gin.query_parameter(f"trainer.train.{name}")
        args[name] = (value.scoped_configurable_fn()
                      if hasattr(value, "scoped_configurable_fn") else value)
    return args


def test_old_config_is_refused_with_one_line_naming_the_migration(tmp_path):
    old = tmp_path / "config.gin"
    shutil.copy(OLD_CONFIG, old)
    with pytest.raises(ValueError) as info:
        gin_utils.parse([str(old)], [])
    message = str(info.value)
    assert "\n" not in message
    assert f"python -m train.gin_migrate {old}" in message
    assert "trainer.train.activation_partitioning_dims" in message and \
        "settings.MeshSettings.activation_partitioning_dims" in message


def test_migrated_old_config_binds_what_the_run_files_bind(tmp_path):
    old = tmp_path / "config.gin"
    shutil.copy(OLD_CONFIG, old)
    gin_migrate.main([str(old)])
    assert (tmp_path / "config.gin.orig").read_text() == OLD_CONFIG.read_text()
    gin_utils.parse([str(old)], [])
    migrated = _bound_train_arguments()
    gin_utils.parse(RUN_FILES, RUN_BINDINGS)
    current = _bound_train_arguments()
    assert migrated == current
    assert migrated["data"].batch_size == 8 and migrated["schedule"].train_steps == 6
    assert migrated["model"].dropout_rate == 0.1
    assert gin_migrate.migrate_file(old) is False  # already current


def test_old_block_overlay_is_migrated():
    old = ("from __gin__ import dynamic_registration\n\nfrom train import trainer\n\n"
           "trainer.train:\n  log_every = 5\n  # a comment\n  eval_steps = 2\n"
           "  model_config = None\n  model = %MODEL\n\nOTHER = 1\n")
    assert [name for _, name in gin_migrate.old_bindings(old)] == [
        "log_every", "eval_steps", "model_config"]
    new = gin_migrate.migrate(old)
    assert gin_migrate.old_bindings(new) == []
    for line in ("from train import settings", "settings.ScheduleSettings.log_every = 5",
                 "settings.ValidationSettings.eval_steps = 2", "trainer.train.model = %MODEL",
                 "trainer.train.schedule = @settings.ScheduleSettings()", "OTHER = 1"):
        assert line in new.splitlines(), (line, new)
    assert "model_config" not in new


def test_old_binding_is_refused_with_its_new_name():
    with pytest.raises(ValueError, match=r"trainer.train.batch_size is now "
                                         r"settings.DataSettings.batch_size"):
        gin_utils.parse(RUN_FILES, [*RUN_BINDINGS, "trainer.train.batch_size = 4"])
