"""Model selection by the task's metric: the trainer keeps the checkpoint the task metric
prefers even when the token loss prefers another, and `eval.selection` scores the English dev
set exactly as `eval.targets.evaluate_target` does."""
import json

import jax
import pytest

import xitt_tasks  # noqa: F401  (registers the tasks)
from eval import predict, selection
from eval import targets as eval_targets
from tests.train import testing_tasks
from train import checkpoints, models, settings, trainer
from train.config import MT5Config

TINY = MT5Config(vocab_size=512, emb_dim=32, mlp_dim=64, num_heads=4, head_dim=8,
                 num_encoder_layers=1, num_decoder_layers=1, dtype="float32")
CPU_TINY = MT5Config(vocab_size=1280, emb_dim=32, mlp_dim=64, num_heads=4, head_dim=8,
                     num_encoder_layers=1, num_decoder_layers=1, dtype="float32")


def test_best_checkpoint_follows_the_task_metric_not_the_loss(tmp_path):
    # The loss falls step after step (the copy task is learnable), so the best by loss is the
    # last save; the task metric here prefers the earliest save. Selection must follow it.
    calls = []

    def selection_fn(params, step):
        calls.append(step)
        return {"task_score": 100.0 - step}

    result = trainer.train(
        model_dir=str(tmp_path), model=models.EncoderDecoderModel(TINY),
        data=settings.DataSettings(testing_tasks.COPY_TASK, {"inputs": 32, "targets": 32}, 8),
        schedule=settings.ScheduleSettings(train_steps=9, learning_rate=1e-2, log_every=3),
        optimizer=settings.OptimizerSettings(loss_normalizing_factor="NUM_REAL_TARGET_TOKENS"),
        checkpointing=settings.CheckpointSettings(save_every=3, keep_checkpoints=1),
        validation=settings.ValidationSettings(eval_every=3, eval_steps=2,
                                               best_metric="task_score", best_mode="max",
                                               selection_fn=selection_fn),
        mesh=settings.MeshSettings(devices=jax.devices()[:1]))
    assert calls == [3, 6, 9]
    metrics = json.loads((tmp_path / "checkpoint_metrics.json").read_text())
    losses = {int(k): v["loss"] for k, v in metrics.items()}
    assert losses[9] < losses[3], "the loss must prefer the last checkpoint for this test"
    kept = checkpoints.Checkpoints(str(tmp_path), keep=1, best_metric="task_score",
                                   best_mode="max")
    assert kept.best_step() == 3
    assert 3 in result.checkpoint_steps and 9 in result.checkpoint_steps
    assert 6 not in result.checkpoint_steps


def test_selection_score_is_the_english_dev_metric():
    model = models.EncoderDecoderModel(CPU_TINY)
    params = model.init_params(jax.random.key(0))
    settings = eval_targets.TargetSettings(feature_lengths={"inputs": 64, "targets": 8},
                                           batch_size=8, max_examples=8)
    fn = selection.make_selection_fn(model, "xquad", "en_dev", settings)
    got = fn(params, 0)
    # English dev of XQuAD is SQuAD v1.1 dev (the English training task's validation split),
    # scored by the target's own metric: (F1 + EM) / 2.
    eval_settings = predict.EvalSettings(feature_lengths={"inputs": 64, "targets": 8},
                                         batch_size=8, max_examples=8)
    batch_fn = predict.make_batch_fn(model, eval_settings)
    direct = predict.predict_task("xitt.xquad.train.en", params, batch_fn, eval_settings)
    expected = (direct.metrics["f1"] + direct.metrics["exact_match"]) / 2
    assert got == {"task_score": pytest.approx(expected)}
    assert selection.make_selection_fn(model, "xquad", "last", settings) is None
    assert selection.make_selection_fn(model, "lareqa", "en_dev", settings) is None


def test_protocols_and_errors():
    assert selection.selection_languages("xnli", "en_dev") == ("en",)
    assert len(selection.selection_languages("xnli", "all_dev")) == 15
    assert selection.english_dev_task("xcopa") == "xitt.xcopa.train.copa"
    assert selection.english_dev_task("xnli") == "xitt.xnli.train.en"
    with pytest.raises(ValueError, match="expected one of"):
        selection.check_protocol("best")
    assert selection.task_score("xquad", {"en": {"f1": 80.0, "exact_match": 60.0},
                                          "de": {"f1": 70.0, "exact_match": 50.0}}) == 65.0
