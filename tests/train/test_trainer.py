"""The trainer end to end on a tiny model and the copy task: learning, mesh invariance, exact
resume, microbatching, NaN handling, TensorBoard output and the error messages."""
import dataclasses
import glob
import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow as tf

from tests.train import testing_tasks
from train import (
    checkpoints,
    models,
    network,
    objectives,
    optimizer,
    partitioning,
    schedules,
    settings,
    steps,
    train_state,
    train_step,
    trainer,
)
from train.config import MT5Config

# Smaller than gin/models/mt5_tiny.gin (one layer per stack) to keep compilation short; the
# byte vocabulary of the test task needs 259 ids.
TINY = MT5Config(vocab_size=512, emb_dim=32, mlp_dim=64, num_heads=4, head_dim=8,
                 num_encoder_layers=1, num_decoder_layers=1, dtype="float32")


pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


def _train(model_dir, **kw):
    args = dict(model_dir=str(model_dir), mixture_or_task_name=testing_tasks.COPY_TASK,
                task_feature_lengths={"inputs": 32, "targets": 32}, model_config=TINY,
                train_steps=6, batch_size=8, learning_rate=1e-2, save_every=100,
                keep_checkpoints=5, eval_split=None, log_every=1,
                loss_normalizing_factor="NUM_REAL_TARGET_TOKENS", devices=jax.devices()[:1])
    args.update(kw)
    return trainer.train(**settings.from_keywords(**args))


def _scalars(model_dir, sub="train") -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(f"{model_dir}/{sub}/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
    return out


def _final_params(model_dir):
    return checkpoints.load_params(str(model_dir), network.abstract_params(TINY))


def _assert_trees_close(a, b, atol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def test_loss_drops_and_summaries_are_written(tmp_path):
    result = _train(tmp_path, train_steps=50, log_every=10, eval_split="validation",
                    eval_every=50, eval_steps=2, peak_flops=1e12, learning_rate=3e-2)
    scalars = _scalars(tmp_path)
    for tag in ("loss", "accuracy", "z_loss", "learning_rate", "tokens_per_second",
                "examples_per_second", "model_flops_per_second", "mfu"):
        assert tag in scalars, f"TensorBoard tag {tag!r} missing: {sorted(scalars)}"
    loss = scalars["loss"]
    assert loss[50] < 0.5 * loss[10], loss
    assert scalars["learning_rate"][10] == pytest.approx(3e-2)
    validation = _scalars(tmp_path, "validation")
    assert validation["loss"][50] == pytest.approx(result.eval_metrics["loss"], rel=1e-5)
    assert result.step == 50 and result.checkpoint_steps == [50]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """6 steps on one device with dropout on; checkpoints at 3 and 6."""
    model_dir = tmp_path_factory.mktemp("reference")
    _train(model_dir, model_config=dataclasses.replace(TINY, dropout_rate=0.1), save_every=3)
    return model_dir


# 2-D (embed also over 'data') shards strictly more than 1-D, so it runs by default.
@pytest.mark.parametrize("parameter_partitioning",
                         [pytest.param("1d", marks=pytest.mark.slow), "2d"])
def test_eight_devices_match_one(reference_run, tmp_path, parameter_partitioning):
    _train(tmp_path, model_config=dataclasses.replace(TINY, dropout_rate=0.1), save_every=3,
           devices=None, data_axis_size=2, model_axis_size=4,
           parameter_partitioning=parameter_partitioning)
    ref, got = _scalars(reference_run)["loss"], _scalars(tmp_path)["loss"]
    assert sorted(got) == sorted(ref) == [2, 3, 4, 5, 6]
    np.testing.assert_allclose([got[s] for s in ref], [ref[s] for s in ref], atol=1e-5)
    _assert_trees_close(_final_params(tmp_path), _final_params(reference_run), 1e-5)


def test_resume_continues_exactly(reference_run, tmp_path):
    config = dataclasses.replace(TINY, dropout_rate=0.1)
    _train(tmp_path, model_config=config, train_steps=3, save_every=3)
    assert checkpoints.committed_steps(str(tmp_path)) == [3]
    result = _train(tmp_path, model_config=config, train_steps=6, save_every=3)
    assert result.step == 6
    _assert_trees_close(_final_params(tmp_path), _final_params(reference_run), 1e-6)


def test_scanned_remat_run_with_resume_matches_unscanned(tmp_path):
    # Scanned layers keep their Adafactor statistics stacked and save the released
    # (unscanned) layout; resuming converts back. Both runs start from one unscanned
    # checkpoint (a scanned random init draws other numbers), with dropout off (scan splits
    # its rngs per layer). The first step of a run only starts the throughput clock, so the
    # losses of steps 2 and 4 are logged.
    params = network.init_params(TINY, jax.random.key(3))
    slots = optimizer.adafactor(1e-3, network.param_axes(TINY)).init(params).param_states
    checkpoints.Checkpoints(str(tmp_path / "init")).save(
        0, {"target": params, "state": {"step": jnp.int32(0), "param_states": slots}})
    init = str(tmp_path / "init" / "checkpoint_0")
    _train(tmp_path / "plain", train_steps=4, init_checkpoint=init)
    scanned = dataclasses.replace(TINY, scan_layers=True, remat_policy="full")
    _train(tmp_path / "scan", model_config=scanned, train_steps=2, save_every=2,
           init_checkpoint=init)
    _train(tmp_path / "scan", model_config=scanned, train_steps=4, save_every=2)
    assert checkpoints.committed_steps(str(tmp_path / "scan")) == [2, 4]
    ref, got = _scalars(tmp_path / "plain")["loss"], _scalars(tmp_path / "scan")["loss"]
    np.testing.assert_allclose([got[s] for s in (2, 4)], [ref[s] for s in (2, 4)], atol=1e-5)
    _assert_trees_close(_final_params(tmp_path / "scan"), _final_params(tmp_path / "plain"),
                        1e-5)


def _synthetic_batch(rng: np.random.RandomState, rows: int, length: int) -> dict:
    lengths = rng.randint(3, length, size=rows)
    tokens = rng.randint(3, 200, size=(rows, length)).astype(np.int32)
    mask = np.arange(length)[None] < lengths[:, None]
    tokens = np.where(mask, tokens, 0)
    inputs = np.concatenate([np.zeros((rows, 1), np.int32), tokens[:, :-1]], axis=1)
    return {"encoder_input_tokens": tokens, "decoder_target_tokens": tokens,
            "decoder_input_tokens": inputs, "decoder_loss_weights": mask.astype(np.int32)}


# Token-normalised losses combine as a weighted mean (the tricky case, by default); a fixed
# factor sums.
@pytest.mark.parametrize("factor", ["NUM_REAL_TARGET_TOKENS",
                                    pytest.param(234496.0, marks=pytest.mark.slow)])
def test_two_microbatches_equal_one_full_batch(factor):
    params = network.init_params(TINY, jax.random.key(0))
    tx = optimizer.adafactor(1e-2, network.param_axes(TINY))
    state = train_state.TrainState(jnp.int32(0), params, tx.init(params))
    loss_fn = objectives.seq2seq_loss_fn(network.Transformer(TINY),
                                         loss_normalizing_factor=factor)
    batch = _synthetic_batch(np.random.RandomState(0), 8, 16)
    rng = jax.random.key(1)
    full_state, full = jax.jit(train_step.make_train_step(loss_fn, tx, 1))(state, batch, rng)
    micro_state, micro = jax.jit(train_step.make_train_step(loss_fn, tx, 2))(state, batch, rng)
    for key in ("loss", "z_loss", "accuracy_numerator", "num_target_tokens", "grad_norm"):
        np.testing.assert_allclose(micro[key], full[key], rtol=1e-5, err_msg=key)
    _assert_trees_close(micro_state.params, full_state.params, 1e-5)


def test_non_finite_loss_stops_without_checkpoint(tmp_path):
    # Start from a t5x-layout checkpoint holding a NaN (written with Orbax directly: ours
    # refuses to save one); same program as the reference run, so it compiles from cache.
    config = dataclasses.replace(TINY, dropout_rate=0.1)
    params = network.init_params(config, jax.random.key(0))
    kernel = params["decoder"]["logits_dense"]["kernel"]
    params["decoder"]["logits_dense"]["kernel"] = kernel.at[0, 0].set(jnp.nan)
    slots = optimizer.adafactor(1e-2, network.param_axes(config)).init(params).param_states
    ocp.PyTreeCheckpointer().save(tmp_path / "init" / "checkpoint_0", {
        "target": params, "state": {"step": jnp.int32(0), "param_states": slots}})
    with pytest.raises(trainer.NonFiniteLossError,
                       match=r"non-finite loss or gradient in the train step at step 0 .*"
                             r"no checkpoint was written"):
        _train(tmp_path / "run", model_config=config, save_every=3,
               init_checkpoint=str(tmp_path / "init" / "checkpoint_0"))
    assert checkpoints.committed_steps(str(tmp_path / "run")) == []


def test_init_checkpoint_with_reset_optimizer_state_is_recorded(reference_run, tmp_path):
    # train_steps == the checkpoint's step: loads, records, trains nothing (no compile).
    result = _train(tmp_path, init_checkpoint=str(reference_run / "checkpoint_3"),
                    init_optimizer_state="reset", train_steps=3)
    assert result.step == 3
    origin = json.loads((tmp_path / trainer.ORIGIN_FILE).read_text())
    assert origin["optimizer_state"] == "reset" and origin["decay_step_offset"] == 3
    assert origin["start_step"] == 3 and origin["format"] == "t5x_orbax"


def test_init_from_a_hugging_face_export(tmp_path):
    # The trainer reads any supported format; HF files hold no optimizer state, so 'reset'.
    from train.formats import huggingface

    params = network.init_params(TINY, jax.random.key(7))
    huggingface.write_huggingface(str(tmp_path / "hf"), params, TINY)
    # HF files carry no step: the released models' 1,000,000 is assumed (a setting), so t5x's
    # absolute steps mean the same from either format: one step of fine-tuning here.
    result = _train(tmp_path / "run", init_checkpoint=str(tmp_path / "hf"),
                    init_optimizer_state="reset", train_steps=1_000_001, save_every=1)
    origin = json.loads((tmp_path / "run" / trainer.ORIGIN_FILE).read_text())
    assert origin["format"] == "huggingface" and origin["optimizer_state"] == "reset"
    assert origin["start_step"] == 1_000_000 and result.step == 1_000_001
    # One Adafactor step with clipping moves each weight by a bounded relative amount, so the
    # trained embedding stays close to the exported one and far from a fresh random init.
    trained = _final_params(tmp_path / "run")["token_embedder"]["embedding"]
    exported = np.asarray(params["token_embedder"]["embedding"])
    fresh = np.asarray(network.init_params(TINY, jax.random.key(0))["token_embedder"]["embedding"])
    assert np.abs(trained - exported).mean() < 0.2 * np.abs(fresh - exported).mean()


def test_mesh_that_does_not_fit_the_devices(tmp_path):
    with pytest.raises(ValueError, match="mesh 4x4 needs 16 devices, have 8"):
        _train(tmp_path, devices=None, data_axis_size=4, model_axis_size=4)


def test_missing_init_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_checkpoint"):
        _train(tmp_path / "run", init_checkpoint=str(tmp_path / "no_such_checkpoint"))


def test_incompatible_checkpoint_in_model_dir(tmp_path):
    other = dataclasses.replace(TINY, emb_dim=16)
    params = network.init_params(other, jax.random.key(0))
    axes = network.param_axes(other)
    slots = optimizer.adafactor(1e-3, axes).init(params).param_states
    checkpoints.Checkpoints(str(tmp_path)).save(
        2, {"target": params, "state": {"step": jnp.int32(2), "param_states": slots}})
    with pytest.raises(ValueError, match=r"token_embedder/embedding: \[512, 16\] float32 -> "
                                         r"\[512, 32\] float32"):
        _train(tmp_path)


def test_partitioning_rules_are_the_standard_ones():
    # The 2-D run above must really shard `embed` over data (else it tests nothing new).
    rules = partitioning.standard_logical_axis_rules("2d")
    spec = partitioning.logical_to_mesh_axes(("vocab", "embed"), rules)
    assert spec == jax.sharding.PartitionSpec("model", "data")


def test_equal_settings_reuse_the_compiled_trainer_steps(tmp_path):
    """A study worker trains cell after cell in one process: the same model, mesh, rules,
    schedule (built anew by gin each time, equal by its settings) and optimizer reuse the
    compiled steps, so a second run traces nothing; a different setting gets new steps."""
    model = models.EncoderDecoderModel(TINY)
    mesh = partitioning.create_mesh(devices=jax.devices()[:1])
    rules = steps.rules_for()
    adafactor = optimizer.AdafactorConfig()
    layout = steps.state_layout(model, mesh, rules, adafactor)

    def build(learning_rate, config=TINY):
        return steps.trainer_steps(models.EncoderDecoderModel(config), layout, mesh, rules,
                                   learning_rate, adafactor, z_loss=1e-4)

    first = build(schedules.constant(1e-2))
    assert build(schedules.constant(1e-2)) is first
    assert build(schedules.constant(2e-2)) is not first
    assert build(dataclasses.replace(TINY, dropout_rate=0.1)) is not first
    assert build(lambda step: 1e-2) is not build(lambda step: 1e-2)  # unknowable: not reused

    _train(tmp_path / "a", learning_rate=schedules.constant(1e-2), train_steps=2)
    traced = steps.trainer_steps(
        model, layout, mesh, rules, schedules.constant(1e-2), adafactor,
        label_smoothing=0.0, z_loss=1e-4, loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
    assert traced.run_step.jitted._cache_size() == 1
    _train(tmp_path / "b", learning_rate=schedules.constant(1e-2), train_steps=2, seed=3)
    assert traced.run_step.jitted._cache_size() == 1  # the second run reused the first's
