"""`python -m eval` end to end on CPU: tiny checkpoint, tiny seqio tasks, padded last batch."""
import dataclasses
import json

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf

from eval import __main__ as eval_main
from eval import predict
from train import checkpoints, inference, network
from train.config import MT5Config

DECODE_TASK = "xitt_test_eval_decode"
SCORE_TASK = "xitt_test_eval_score"
MIXTURE = "xitt_test_eval_mixture"
NUM_EXAMPLES = 7  # not divisible by the batch size
BATCH = 4
LENGTHS = "inputs=24,targets=12"
TINY = MT5Config(vocab_size=2048, emb_dim=64, num_heads=4, head_dim=16, mlp_dim=128,
                 num_encoder_layers=2, num_decoder_layers=2, dtype="float32",
                 param_dtype="float32")
WORDS = ["ab", "cab", "dab ace", "fade", "bead cafe", "deed", "face ab", "ba"]


def _source(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices({
        "inputs": WORDS[:NUM_EXAMPLES], "targets": [w[::-1] for w in WORDS[:NUM_EXAMPLES]],
        "id": list(range(100, 100 + NUM_EXAMPLES))})


def _postprocess(output, example=None, is_target=False):
    """Targets become the example's id (proves alignment); predictions get a '!' suffix."""
    if is_target:
        return int(example["id"])
    return output + "!"


def decode_checks(targets, predictions):
    return {"ids_sum": float(sum(targets)), "chars": float(sum(len(p) for p in predictions)),
            "count": float(len(predictions))}


def score_checks(targets, scores):
    return {"score_sum": float(np.sum(scores)), "count": float(len(scores)),
            "ids_sum": float(sum(targets))}


def _register():
    vocab = seqio.ByteVocabulary()
    features = {"inputs": seqio.Feature(vocab, add_eos=True),
                "targets": seqio.Feature(vocab, add_eos=True)}
    for name, metric in ((DECODE_TASK, decode_checks), (SCORE_TASK, score_checks)):
        seqio.TaskRegistry.remove(name)
        seqio.TaskRegistry.add(
            name, source=seqio.FunctionDataSource(_source, splits=("validation",)),
            preprocessors=[seqio.preprocessors.tokenize,
                           seqio.preprocessors.append_eos_after_trim],
            output_features=features, postprocess_fn=_postprocess, metric_fns=[metric])
    seqio.MixtureRegistry.remove(MIXTURE)
    seqio.MixtureRegistry.add(MIXTURE, [DECODE_TASK, SCORE_TASK], default_rate=1.0)


_register()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    params = network.init_params(TINY, jax.random.key(3))
    checkpoints.Checkpoints(str(path)).save(0, {"target": params})
    return path, params


def _run(model_dir, out, *extra):
    return eval_main.main([
        "--gin_file=gin/models/mt5_tiny.gin", f"--checkpoint={model_dir}",
        f"--output_dir={out}", f"--feature_lengths={LENGTHS}", f"--batch_size={BATCH}",
        f"--mixture_or_task_module={__name__}", *extra])


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def decoded(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("decode")
    results = _run(model_dir[0] / "checkpoint_0", out, f"--task={DECODE_TASK}", "--mode=decode")
    return out / "checkpoint_0", results


def test_decode_writes_every_example_and_metrics(model_dir, decoded):
    _, params = model_dir
    tmp_path, results = decoded
    records = _records(tmp_path / predict.PREDICTIONS_FILE)
    assert [r["index"] for r in records] == list(range(NUM_EXAMPLES))
    assert [r["inputs_pretokenized"] for r in records] == WORDS[:NUM_EXAMPLES]
    assert [r["targets_pretokenized"] for r in records] == [w[::-1] for w in WORDS[:7]]
    summary = json.loads((tmp_path / predict.METRICS_FILE).read_text())
    metrics = summary["metrics"]
    assert metrics == results[DECODE_TASK]
    assert metrics["count"] == NUM_EXAMPLES
    assert metrics["ids_sum"] == sum(range(100, 100 + NUM_EXAMPLES))
    assert metrics["chars"] == sum(len(r["prediction"]) + 1 for r in records)
    assert (tmp_path / "config.gin").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]

    # The padded last batch (rows 4..6) decodes as those rows do in a full batch of 4.
    settings = predict.EvalSettings(feature_lengths=predict.parse_feature_lengths(LENGTHS))
    task = seqio.get_mixture_or_task(DECODE_TASK)
    examples, _ = predict.read_split(task, settings)
    inputs = np.zeros((BATCH, 24), np.int32)
    for row, ex in enumerate(examples[3:]):
        inputs[row, :len(ex["inputs"])] = ex["inputs"]
    model = network.Transformer(TINY)
    tokens, scores = inference.predict_batch(model, params, {"encoder_input_tokens": inputs},
                                             max_decode_len=12, return_scores=True)
    vocab = task.output_features["targets"].vocabulary
    expected = [vocab.decode(np.asarray(t).tolist()) for t in tokens]
    assert [r["prediction"] for r in records[3:]] == expected
    np.testing.assert_allclose([r["score"] for r in records[3:]], np.asarray(scores),
                               rtol=1e-5)


def test_sharded_decode_matches_one_device(model_dir, decoded, tmp_path):
    """--num_partitions=2 on the 8 test devices: a 4x2 mesh, params and batch sharded."""
    _run(model_dir[0], tmp_path, f"--task={DECODE_TASK}", "--num_partitions=2")
    one = _records(decoded[0] / predict.PREDICTIONS_FILE)
    sharded = _records(tmp_path / "checkpoint_0" / predict.PREDICTIONS_FILE)
    assert [r["prediction"] for r in sharded] == [r["prediction"] for r in one]
    np.testing.assert_allclose([r["score"] for r in sharded], [r["score"] for r in one],
                               rtol=1e-5)


def test_score_mode_on_a_mixture_writes_each_task(model_dir, tmp_path):
    path, params = model_dir
    results = _run(path, tmp_path, f"--task={MIXTURE}", "--mode=score", "--max_examples=6")
    tmp_path = tmp_path / "checkpoint_0"
    assert set(results) == {DECODE_TASK, SCORE_TASK}
    assert results[DECODE_TASK] == {}  # its metric needs predictions: none in score mode
    assert not (tmp_path / DECODE_TASK / predict.METRICS_FILE).exists()
    records = _records(tmp_path / SCORE_TASK / predict.PREDICTIONS_FILE)
    assert len(records) == 6 and len(_records(tmp_path / DECODE_TASK /
                                              predict.PREDICTIONS_FILE)) == 6
    metrics = json.loads((tmp_path / SCORE_TASK / predict.METRICS_FILE).read_text())["metrics"]
    assert metrics["count"] == 6
    assert metrics["ids_sum"] == sum(range(100, 106))
    np.testing.assert_allclose(metrics["score_sum"], sum(r["score"] for r in records),
                               rtol=1e-5)
    # Scores are the teacher-forced log-likelihoods of each example's target.
    task = seqio.get_mixture_or_task(SCORE_TASK)
    settings = predict.EvalSettings(feature_lengths=predict.parse_feature_lengths(LENGTHS),
                                    mode="score", batch_size=8, max_examples=6)
    _, batches = predict.read_split(task, settings)
    (batch, n), = list(predict.padded_batches(batches, 8))
    direct = inference.score_batch(network.Transformer(TINY), params, batch)
    np.testing.assert_allclose([r["score"] for r in records], np.asarray(direct)[:n],
                               rtol=1e-5)
    assert all(r["score"] < 0 for r in records)


def test_bad_arguments_name_the_problem(model_dir, tmp_path):
    path, _ = model_dir
    with pytest.raises(ValueError, match="no_such_task"):
        _run(path, tmp_path, "--task=no_such_task")
    with pytest.raises(FileNotFoundError, match="missing"):
        _run(path / "missing", tmp_path, f"--task={DECODE_TASK}")
    with pytest.raises(ValueError, match="feature_lengths"):
        predict.parse_feature_lengths("inputs=8,targets")
    with pytest.raises(ValueError, match="mode"):
        predict.EvalSettings(feature_lengths={"inputs": 8, "targets": 8}, mode="sample")


def test_one_compilation_serves_every_task_and_the_padded_batch(model_dir, tmp_path):
    _, params = model_dir
    settings = predict.EvalSettings(feature_lengths=predict.parse_feature_lengths(LENGTHS),
                                    mode="score", batch_size=BATCH, max_examples=5)
    batch_fn = predict.make_batch_fn(network.Transformer(TINY), settings)
    for task in (DECODE_TASK, SCORE_TASK):  # 5 examples: a full batch and a padded one each
        predict.evaluate_task(task, params, batch_fn, settings, str(tmp_path / task))
        assert len(_records(tmp_path / task / predict.PREDICTIONS_FILE)) == 5
    assert batch_fn._cache_size() == 1


def test_a_hugging_face_checkpoint_is_evaluated_directly(model_dir, decoded, tmp_path):
    """The same weights exported to Hugging Face safetensors decode exactly as our checkpoint;
    the output directory is named for the HF start step (1,000,000, the released models')."""
    from train.formats import huggingface

    _, params = model_dir
    hf_dir = huggingface.write_huggingface(str(tmp_path / "hf"), params, TINY)
    results = _run(hf_dir, tmp_path / "out", f"--task={DECODE_TASK}")
    out = tmp_path / "out" / "checkpoint_1000000"
    ours = _records(decoded[0] / predict.PREDICTIONS_FILE)
    theirs = _records(out / predict.PREDICTIONS_FILE)
    assert [r["prediction"] for r in theirs] == [r["prediction"] for r in ours]
    assert results[DECODE_TASK] == decoded[1][DECODE_TASK]


def test_kept_splits_are_read_once_and_equal_a_fresh_read(monkeypatch):
    """A study worker keeps the splits it evaluates: the second read is the same object, and
    its examples and batches are those of a fresh read (tf.data batches)."""
    monkeypatch.setattr(predict, "_KEPT", None)  # restored after the test
    task = seqio.get_mixture_or_task(DECODE_TASK)
    settings = predict.EvalSettings(feature_lengths=predict.parse_feature_lengths(LENGTHS),
                                    batch_size=BATCH)
    fresh_examples, fresh_batches = predict.read_split(task, settings)
    fresh = list(fresh_batches.as_numpy_iterator())
    predict.keep_splits_in_memory()
    first = predict.read_split(task, settings)
    predict.keep_splits_in_memory()  # idempotent: what is kept stays kept
    assert predict.read_split(task, settings) is first
    examples, batches = first
    assert [e["inputs"].tolist() for e in examples] == [e["inputs"].tolist()
                                                        for e in fresh_examples]
    assert len(batches) == len(fresh) == 2
    for got, want in zip(batches, fresh):
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    other = dataclasses.replace(settings, batch_size=2)  # another shape is another entry
    assert len(predict.read_split(task, other)[1]) == 4
    predict.keep_splits_in_memory(False)
    assert predict.read_split(task, settings) is not first
