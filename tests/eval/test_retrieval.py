"""Retrieval targets on the shipped sample with a tiny random model: the sharded blocked search
gives numpy brute-force rankings and the official metrics; one compilation of the embedding
serves every language; per-example scores average to the metric; leaderboard files follow."""
from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from eval import leaderboard, retrieval, xtreme_r
from eval.targets import TargetSettings
from train import dual_encoder, models, partitioning
from train.config import MT5Config
from xitt_tasks.metrics import retrieval as metrics

TINY = MT5Config(vocab_size=2048, emb_dim=32, num_heads=2, head_dim=8, mlp_dim=64,
                 num_encoder_layers=2, num_decoder_layers=1, dtype="float32")
LENGTH = 32


@pytest.fixture(scope="module")
def setup():
    model = models.EncoderDecoderModel(TINY)
    params = model.init_params(jax.random.key(0))
    mesh = partitioning.create_mesh(num_partitions=2)
    embed = functools.partial(model.embed, layer=1, pooling="mean")
    embedder = retrieval.Embedder(embed, params, batch_size=8, length=LENGTH, mesh=mesh)
    return model, params, embedder


def retrieval_search_ref(queries, pool, k):
    scores = queries.astype(np.float64) @ pool.astype(np.float64).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def test_embedder_is_the_models_normalised_embedding(setup):
    model, params, embedder = setup
    _, examples = retrieval.read_task("xitt.mewslix.de", "test", LENGTH)
    tokens = retrieval.token_matrix(examples, "inputs", LENGTH)
    want = np.array(jax.jit(functools.partial(model.embed, layer=1))(params, tokens))
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder(tokens), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target,langs", [("mewslix", None), ("lareqa", ("de", "zh")),
                                          ("tatoeba", ("de", "ja", "ar"))])
def test_rankings_and_metrics_equal_numpy_brute_force(setup, target, langs):
    _, _, embedder = setup
    runs = retrieval.run_target(target, embedder, split="test", languages=langs,
                                block_size=8, query_block=4)
    if target in retrieval.POOLS:
        _, pool_examples = retrieval.read_task(retrieval.POOLS[target], "test", LENGTH)
        pool_ids = [ex["candidate_id"].decode() for ex in pool_examples]
        pool = embedder(retrieval.token_matrix(pool_examples, "inputs", LENGTH))
    for lang, run in runs.items():
        queries = embedder(retrieval.token_matrix(run.examples, "inputs", LENGTH))
        golds = [[g.decode() for g in ex["gold_ids"]] for ex in run.examples]
        if target == "tatoeba":
            english = embedder(retrieval.token_matrix(run.examples, "targets", LENGTH))
            want = [int(r[0]) for r in retrieval_search_ref(queries, english, 1)]
            gold_index = [int(ex["candidate_id"]) for ex in run.examples]
            value = metrics.tatoeba_accuracy(gold_index, want)["accuracy"]
            per = np.array([100.0 * (p == g) for p, g in zip(want, gold_index)])
        else:
            want = [[pool_ids[j] for j in r]
                    for r in retrieval_search_ref(queries, pool, retrieval.TOP_K)]
            fn = metrics.mewslix_map_at_20 if target == "mewslix" else metrics.lareqa_map_at_20
            value = fn(golds, want)["map@20"]
            gold0 = [[g[0]] for g in golds] if target == "mewslix" else golds
            per = np.array([100 * metrics.average_precision_at_k(g, w)
                            for g, w in zip(gold0, want)])
        assert run.predictions == want, (target, lang)
        assert run.metrics[retrieval.METRICS[target]] == pytest.approx(value)
        np.testing.assert_allclose(retrieval.per_example_scores(target, run), per)
    # one compiled embedding for every language and pool of the target
    assert embedder.jitted._cache_size() == 1


def test_evaluate_retrieval_records_the_embedding_choice(setup, tmp_path):
    model, params, embedder = setup
    embed = functools.partial(model.embed, layer=2, pooling="first")
    result = retrieval.evaluate_retrieval(
        "tatoeba", embed, params, languages=["fr", "de"], length=LENGTH, batch_size=8,
        mesh=embedder.mesh, layer=2, pooling="first", output_dir=str(tmp_path))
    assert (result["retrieval_layer"], result["retrieval_pooling"]) == (2, "first")
    assert set(result["languages"]) == {"fr", "de"}
    for lang, scores in result["per_example"].items():
        assert np.mean(scores) == pytest.approx(result["languages"][lang]["accuracy"])
        assert len(result["predictions"][lang]) == len(scores) == len(result["query_ids"][lang])
    assert (tmp_path / "retrieval-tatoeba.json").exists()


def test_dual_encoder_target_writes_leaderboard_files(setup, tmp_path):
    _, _, embedder = setup
    model = dual_encoder.DualEncoderModel(TINY, projection_dim=16)
    params = model.init_params(jax.random.key(1))
    settings = TargetSettings(feature_lengths={"inputs": LENGTH, "targets": LENGTH},
                              batch_size=8)
    results = retrieval.evaluate_retrieval_target(
        model, params, xtreme_r.get_task("mewslix"), settings, split="test", languages=("en", "ja"),
        mesh=embedder.mesh, leaderboard_dir=str(tmp_path / "lb"),
        output_dir=str(tmp_path / "out"), info={"retrieval_layer": None})
    for lang, res in results.items():
        parsed = leaderboard.read_file(leaderboard.file_path(tmp_path / "lb", "mewslix", lang),
                                       "mewslix")
        assert len(parsed.values) == res.num_examples
        assert all(len(r) == retrieval.TOP_K for r in parsed.values.values())
        scores, aggregation = res.example_scores["map@20"]
        assert aggregation == "mean"
        assert np.mean(scores) == pytest.approx(res.metrics["map@20"])
        assert (tmp_path / "out" / f"xitt.mewslix.{lang}" / "metrics.json").exists()
