"""Every XTREME-R target end to end on the shipped sample data: a tiny model trained for each
target (the retrieval ones as dual encoders; Tatoeba with no target training), every language
evaluated into one leaderboard folder, and `python -m eval.score` printing all ten task scores,
the four category scores and the overall XTREME-R score."""
import json

import jax
import pytest

import xitt_tasks  # noqa: F401  (registers the tasks)
from eval import leaderboard, xtreme_r
from eval import score as eval_score
from eval import targets as eval_targets
from train import checkpoints, dual_encoder, models, settings, trainer
from train.config import MT5Config

TINY = MT5Config(vocab_size=1280, emb_dim=32, mlp_dim=64, num_heads=4, head_dim=8,
                 num_encoder_layers=2, num_decoder_layers=1, dtype="float32")
LENGTHS = {"inputs": 64, "targets": 16}
TRAIN_TASK = {t: f"xitt.{t}.train.en" for t in eval_targets.DECODE_TARGETS}
TRAIN_TASK.update(xcopa="xitt.xcopa.train.copa", mewslix="xitt.mewslix.train.en",
                  lareqa="xitt.lareqa.train.en")


def _train(model, task, model_dir):
    trainer.train(
        model_dir=str(model_dir), model=model,
        data=settings.DataSettings(task, LENGTHS, batch_size=8, pack=False),
        schedule=settings.ScheduleSettings(train_steps=6, learning_rate=1e-2, log_every=6),
        optimizer=settings.OptimizerSettings(loss_normalizing_factor="NUM_REAL_TARGET_TOKENS"),
        checkpointing=settings.CheckpointSettings(save_every=6, keep_checkpoints=1),
        validation=settings.ValidationSettings(eval_split=None),
        mesh=settings.MeshSettings(devices=jax.devices()[:1]))
    return model.scan(checkpoints.load_params(str(model_dir),
                                              model.unscanned().abstract_params()))


@pytest.mark.slow
def test_every_target_is_trained_written_and_scored(tmp_path, capsys):
    predictions, labels = tmp_path / "predictions", tmp_path / "labels"
    settings = eval_targets.TargetSettings(feature_lengths=LENGTHS, batch_size=8)
    seq2seq = models.EncoderDecoderModel(TINY)
    for spec in xtreme_r.TASKS:
        if spec.name == "tatoeba":  # no target training: the (here random) encoder as is
            model, params = seq2seq, seq2seq.init_params(jax.random.key(0))
        elif spec.category == "retrieval":
            model = dual_encoder.DualEncoderModel(TINY)
            params = _train(model, TRAIN_TASK[spec.name], tmp_path / spec.name)
        else:
            model = seq2seq
            params = _train(model, TRAIN_TASK[spec.name], tmp_path / spec.name)
        result = eval_targets.evaluate_target(model, params, spec.name, settings,
                                              leaderboard_dir=str(predictions))
        assert set(result.languages) == set(spec.languages)
        assert result.task_score is not None
    gold = leaderboard.write_gold_labels(labels, "local")
    assert not gold.skipped
    capsys.readouterr()
    code = eval_score.main(["--predictions", str(predictions), "--labels", str(labels),
                            "--split", "local", "--json"])
    assert code in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert set(out["tasks"]) == {t.name for t in xtreme_r.TASKS} or \
        set(out["tasks"]) == {t.folder for t in xtreme_r.TASKS}
    assert all(v is not None for v in out["tasks"].values())
    assert set(out["categories"]) == set(xtreme_r.CATEGORIES)
    assert all(v is not None for v in out["categories"].values())
    assert out["overall"] is not None
