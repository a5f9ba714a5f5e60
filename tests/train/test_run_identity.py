"""A restart with another task, seed, batch, schedule or model is refused with the differences
listed; an explicit override continues it; config.gin of the first start is kept."""
import json

import gin
import pytest

from train import gin_utils, run_identity, schedules
from train.config import MT5Config


def _identity(**kw):
    args = {"mixture_or_task_name": "xitt.inter.snli", "model_config": MT5Config(vocab_size=512),
            "seed": 0, "batch_size": 128, "task_feature_lengths": {"inputs": 1024,
                                                                   "targets": 128},
            "learning_rate": schedules.constant(1e-3), "data_fingerprint": {"train": 3}}
    return run_identity.make_identity(**{**args, **kw})


def test_first_start_records_and_same_run_resumes(tmp_path):
    assert run_identity.check_or_record(tmp_path, _identity()) == []
    recorded = json.loads((tmp_path / "run_identity.json").read_text())
    assert recorded["model_config"]["vocab_size"] == 512
    assert recorded["learning_rate"]["at_steps"]["1000000"] == pytest.approx(1e-3)
    assert run_identity.check_or_record(tmp_path, _identity()) == []  # same run: resumes


@pytest.mark.parametrize("change, listed", [
    ({"mixture_or_task_name": "xitt.inter.mnli"},
     'mixture_or_task_name: "xitt.inter.snli" -> "xitt.inter.mnli"'),
    ({"seed": 1}, "seed: 0 -> 1"),
    ({"batch_size": 64}, "batch_size: 128 -> 64"),
    ({"learning_rate": schedules.constant(3e-4)}, "learning_rate.at_steps.0: 0.001"),
    ({"learning_rate": schedules.rsqrt(0.01)}, "learning_rate.function:"),
    ({"model_config": MT5Config(vocab_size=512, num_heads=8)}, "model_config.num_heads: 6 -> 8"),
    ({"task_feature_lengths": {"inputs": 512, "targets": 128}},
     "task_feature_lengths.inputs: 1024 -> 512"),
])
def test_changed_run_is_refused_with_the_difference(tmp_path, change, listed):
    run_identity.check_or_record(tmp_path, _identity())
    with pytest.raises(run_identity.ChangedRunError) as info:
        run_identity.check_or_record(tmp_path, _identity(**change))
    message = str(info.value)
    assert listed in message and "allow_changed_run=True" in message
    assert str(tmp_path) in message
    # Refused: the recorded identity is untouched.
    assert run_identity.read_identity(tmp_path)["seed"] == 0


def test_override_continues_and_keeps_the_old_identity(tmp_path):
    run_identity.check_or_record(tmp_path, _identity())
    diffs = run_identity.check_or_record(tmp_path, _identity(seed=7), allow_changed_run=True)
    assert diffs == ["seed: 0 -> 7"]
    assert run_identity.read_identity(tmp_path)["seed"] == 7
    assert json.loads((tmp_path / "run_identity.1.json").read_text())["seed"] == 0


def test_a_first_start_records_afresh_and_layout_fields_are_not_identity(tmp_path):
    run_identity.check_or_record(tmp_path, _identity())
    # No checkpoint to resume (a first attempt died before saving): a new config is fine.
    assert run_identity.check_or_record(tmp_path, _identity(batch_size=64), resuming=False) == []
    assert run_identity.read_identity(tmp_path)["batch_size"] == 64
    scanned = MT5Config(vocab_size=512, scan_layers=True, remat_policy="full")
    assert run_identity.check_or_record(tmp_path, _identity(batch_size=64,
                                                            model_config=scanned)) == []


def test_garbage_identity_file_is_named(tmp_path):
    (tmp_path / "run_identity.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"run_identity.json: not valid JSON"):
        run_identity.check_or_record(tmp_path, _identity())


_GIN = ("from __gin__ import dynamic_registration\nfrom train import schedules\n"
        "schedules.constant.base_learning_rate = {}")


def test_config_gin_of_the_first_start_is_never_overwritten(tmp_path):
    gin.clear_config()
    try:
        gin.parse_config(_GIN.format(0.1))
        schedules_constant = gin.get_configurable(schedules.constant)
        schedules_constant()  # makes the binding operative
        first = gin_utils.write_config(str(tmp_path))
        assert first == str(tmp_path / "config.gin")
        assert gin_utils.write_config(str(tmp_path)) is None  # same config: nothing written
        gin.clear_config()
        gin.parse_config(_GIN.format(0.2))
        gin.get_configurable(schedules.constant)()
        second = gin_utils.write_config(str(tmp_path))
    finally:
        gin.clear_config()
    assert second == str(tmp_path / "config.1.gin")
    assert "0.1" in (tmp_path / "config.gin").read_text()
    assert "0.2" in (tmp_path / "config.1.gin").read_text()


def test_trainer_refuses_to_resume_a_different_run(tmp_path):
    import jax

    from tests.train import testing_tasks
    from train import checkpoints, settings, trainer

    tiny = MT5Config(vocab_size=300, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32,
                     num_encoder_layers=1, num_decoder_layers=1, dtype="float32")
    args = dict(model_dir=str(tmp_path), mixture_or_task_name=testing_tasks.COPY_TASK,
                task_feature_lengths={"inputs": 16, "targets": 16}, model_config=tiny,
                train_steps=1, batch_size=8, learning_rate=1e-2, save_every=1,
                eval_split=None, log_every=1, devices=jax.devices()[:1])
    trainer.train(**settings.from_keywords(**args))
    assert checkpoints.committed_steps(str(tmp_path)) == [1]
    with pytest.raises(run_identity.ChangedRunError,
                       match=r"(?s)batch_size: 8 -> 16.*seed: 0 -> 5"):
        trainer.train(**settings.from_keywords(**{**args, "train_steps": 2, "seed": 5,
                                                  "batch_size": 16}))
    assert checkpoints.committed_steps(str(tmp_path)) == [1]  # nothing trained
