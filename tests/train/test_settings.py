"""The trainer's settings objects check themselves when built, naming the group, field and
value; `from_keywords` sends each old flat keyword to its group."""
import pytest

from train import optimizer, schedules, settings
from train.config import MT5Config


@pytest.mark.parametrize("build, message", [
    (lambda: settings.DataSettings("t", {"inputs": 8}, 0),
     r"DataSettings.batch_size=0: expected a positive int"),
    (lambda: settings.DataSettings("t", {"inputs": 0}, 8),
     r"DataSettings.task_feature_lengths\['inputs'\]=0"),
    (lambda: settings.DataSettings("", {"inputs": 8}, 8), r"DataSettings.mixture_or_task_name"),
    (lambda: settings.ScheduleSettings(train_steps=0), r"ScheduleSettings.train_steps=0"),
    (lambda: settings.ScheduleSettings(10, learning_rate="fast"),
     r"ScheduleSettings.learning_rate='fast'"),
    (lambda: settings.OptimizerSettings(num_microbatches=0),
     r"OptimizerSettings.num_microbatches=0"),
    (lambda: settings.CheckpointSettings(save_every=-1), r"CheckpointSettings.save_every=-1"),
    (lambda: settings.CheckpointSettings(init_optimizer_state="keep"),
     r"optimizer_state='keep'"),
    (lambda: settings.ValidationSettings(best_mode="up"), r"ValidationSettings.best_mode='up'"),
    (lambda: settings.ValidationSettings(eval_every=-2), r"ValidationSettings.eval_every=-2"),
    (lambda: settings.MeshSettings(parameter_partitioning="3d"),
     r"parameter_partitioning='3d'"),
])
def test_a_bad_setting_is_named_when_built(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_batch_must_split_into_microbatches():
    with pytest.raises(ValueError, match=r"batch_size=10 is not divisible by .*"
                                         r"num_microbatches=4"):
        settings.check_together(settings.DataSettings("t", {"inputs": 8}, 10),
                                settings.OptimizerSettings(num_microbatches=4))


def test_flat_keywords_are_grouped():
    config = MT5Config(vocab_size=512)
    args = settings.from_keywords(
        model_dir="/tmp/run", mixture_or_task_name="t", task_feature_lengths={"inputs": 8},
        batch_size=8, model_config=config, train_steps=5, learning_rate=schedules.constant(0.1),
        log_every=1, num_microbatches=2, save_every=3, eval_split=None, data_axis_size=1,
        peak_flops=1e12, seed=4)
    assert args["model"] == config and args["seed"] == 4 and args["model_dir"] == "/tmp/run"
    assert args["data"] == settings.DataSettings("t", {"inputs": 8}, 8)
    assert args["schedule"] == settings.ScheduleSettings(5, schedules.constant(0.1), 1)
    assert args["optimizer"] == settings.OptimizerSettings(optimizer.AdafactorConfig(), 2)
    assert args["checkpointing"] == settings.CheckpointSettings(save_every=3)
    assert args["validation"] == settings.ValidationSettings(eval_split=None)
    assert args["mesh"] == settings.MeshSettings(data_axis_size=1, peak_flops=1e12)


def test_unknown_keyword_and_two_models_are_refused():
    base = dict(model_dir="/tmp/run", mixture_or_task_name="t",
                task_feature_lengths={"inputs": 8}, batch_size=8, train_steps=5)
    with pytest.raises(ValueError, match=r"bogus=1: not a trainer setting"):
        settings.from_keywords(**base, model_config=MT5Config(), bogus=1)
    with pytest.raises(ValueError, match=r"exactly one of model= .* and model_config="):
        settings.from_keywords(**base)
