"""The runtime end to end on a registered xitt task: a tiny model trained on the shipped English
MNLI sample decodes the labels of the held-out dev examples, where the untrained model cannot."""
import jax
import pytest

import xitt_tasks  # noqa: F401  (registers the tasks)
from eval import predict
from train import checkpoints, network, settings, trainer
from train.config import MT5Config
from xitt_tasks import vocab

TINY = MT5Config(vocab_size=2048, emb_dim=64, mlp_dim=128, num_heads=4, head_dim=16,
                 num_encoder_layers=2, num_decoder_layers=2, dtype="float32")
LENGTHS = {"inputs": 64, "targets": 16}


@pytest.fixture(scope="module")
def eval_settings():
    return predict.EvalSettings(feature_lengths=LENGTHS, split="validation", batch_size=8)


def _accuracy(params, settings, out_dir) -> float:
    batch_fn = predict.make_batch_fn(network.Transformer(TINY), settings)
    metrics = predict.evaluate_task("xitt.inter.mnli", params, batch_fn, settings, out_dir)
    return metrics["accuracy"]


def test_trained_model_decodes_held_out_labels(tmp_path, eval_settings):
    assert vocab.get_vocabulary().vocab_size <= TINY.vocab_size
    trainer.train(
        model_dir=str(tmp_path / "run"), model=TINY,
        data=settings.DataSettings("xitt.inter.mnli", LENGTHS, batch_size=8),
        schedule=settings.ScheduleSettings(train_steps=160, learning_rate=1e-2, log_every=20),
        optimizer=settings.OptimizerSettings(loss_normalizing_factor="NUM_REAL_TARGET_TOKENS"),
        checkpointing=settings.CheckpointSettings(save_every=100),
        validation=settings.ValidationSettings(eval_split=None),
        mesh=settings.MeshSettings(devices=jax.devices()[:1]))
    trained = checkpoints.load_params(str(tmp_path / "run"), network.abstract_params(TINY))
    untrained = network.init_params(TINY, jax.random.key(0))
    # The 8 dev examples are not in the training file; labels follow the sample's rules
    # (xitt_tasks/data/README.md), so a model that learned them decodes them.
    assert _accuracy(trained, eval_settings, str(tmp_path / "trained")) >= 87.5
    assert _accuracy(untrained, eval_settings, str(tmp_path / "untrained")) < 50.0
