"""The leaderboard layout: writers from prediction records, gold labels from the sample data,
strict readers, and the round trip gold -> predictions -> eval.score = the metric's maximum."""

import json

import pytest

from eval import leaderboard, score, xtreme_r
from xitt_tasks import formats

_FORMAT = {"xnli": "nli", "xcopa": "choice_xcopa", "udpos": "pos", "wikiann": "ner",
           "xquad": "qa", "mlqa": "qa", "tydiqa": "qa", "mewslix": "retrieval",
           "lareqa": "retrieval", "tatoeba": "retrieval"}


def perfect_records(target: str, lang: str) -> list[dict]:
    """predictions.jsonl-like records whose prediction is what the model is trained to emit
    (the formatted target: padded QA answers, span strings, tag strings, choice texts), or for
    retrieval the gold ranking / line index."""
    split = leaderboard.LOCAL_SPLITS[target]
    records = []
    for i, ex in enumerate(leaderboard.raw_examples(f"xitt.{target}.{lang}", split)):
        _, prediction = formats.get_format(_FORMAT[target]).fn(ex)
        if target in ("mewslix", "lareqa"):
            prediction = ex["gold_ids"] + ["not-a-candidate"]
        elif target == "tatoeba":
            prediction = [int(ex["candidate_id"]), 999]
        records.append({"index": i, **ex, "targets_pretokenized": prediction,
                        "prediction": prediction})
    return records


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    root = tmp_path_factory.mktemp("leaderboard")
    gold = leaderboard.write_gold_labels(root / "labels", "local")
    for spec in xtreme_r.TASKS:
        for lang in spec.languages:  # named for the data split, as eval.targets does
            leaderboard.write_predictions(root / "predictions", f"xitt.{spec.name}.{lang}",
                                          perfect_records(spec.name, lang),
                                          leaderboard.LOCAL_SPLITS[spec.name])
    return root, gold


def test_gold_labels_cover_every_task_and_language_of_the_sample(round_trip):
    root, gold = round_trip
    assert gold.skipped == []
    assert len(gold.written) == sum(len(t.languages) for t in xtreme_r.TASKS)
    assert (root / "labels" / "panx" / "validation-de.tsv").is_file()
    assert (root / "labels" / "xquad" / "test-de.json").is_file()
    assert not list((root / "labels").rglob(".*tmp*"))  # atomic writes leave nothing behind


def test_predictions_equal_to_gold_score_the_maximum_everywhere(round_trip):
    root, _ = round_trip
    report = score.score_folder(root / "predictions", root / "labels", "local")
    assert report["missing_tasks"] == [] and report["reasons"] == []
    for name, task in report["tasks"].items():
        assert task["score"] == pytest.approx(100.0), name
        for lang, metrics in task["languages"].items():
            for key in xtreme_r.BY_NAME[name].metric_keys:
                assert metrics[key] == pytest.approx(100.0), (name, lang, key)
    assert all(v == pytest.approx(100.0) for v in report["categories"].values())
    assert report["overall"] == pytest.approx(100.0)
    # the QA files hold raw answers: every gold id answered
    assert report["tasks"]["xquad"]["languages"]["zh"]["num_unanswered"] == 0


def test_split_other_than_test_names_the_files(tmp_path):
    records = perfect_records("xnli", "de")
    path = leaderboard.write_predictions(tmp_path, "xitt.xnli.de", records, "validation")
    assert path == tmp_path / "xnli" / "validation-de.tsv"
    assert path.read_text().splitlines() == [r["prediction"] for r in records]


def test_writers_map_generated_text_to_the_official_formats(tmp_path):
    write = lambda task, records: leaderboard.write_predictions(tmp_path, task, records)
    qa = write("xitt.xquad.en", [{"id": "q1", "prediction": "U . S . Army",
                                  "context": "The U.S. Army was founded in 1775."},
                                 {"id": "q2", "prediction": "state - of - the - art",
                                  "context": "Nothing here."}])
    assert json.loads(qa.read_text()) == {"q1": "U.S. Army", "q2": "state-of-the-art"}

    choices = ["Mari näeb maja", "Jaan näeb raamat"]
    gen = write("xitt.xcopa.et", [{"id": "0", "choices": choices, "prediction": "jaan näeb raamat"},
                                  {"id": "1", "choices": choices, "prediction": "something else"}])
    assert [json.loads(x)["label"] for x in gen.read_text().splitlines()] == [1, -1]
    scores = {(0, 0): -3.0, (0, 1): -1.0, (1, 0): -0.5, (1, 1): -2.0}
    rank = write("xitt.xcopa.et.rank",
                 [{"idx": list(k), "score": v} for k, v in scores.items()])
    assert [json.loads(x)["label"] for x in rank.read_text().splitlines()] == [1, 0]

    pos = write("xitt.udpos.de", [{"tokens": ["a", "b", "c"], "prediction": "NOUN FOO"},
                                  {"tokens": ["d"], "prediction": "VERB"}])
    assert pos.read_text() == "NOUN\n<invalid>\n<missing>\n\nVERB\n"
    ner = write("xitt.wikiann.de", [{"tokens": ["Anna", "sieht", "Berlin"],
                                     "prediction": "PER: Anna $$ LOC: Berlin"}])
    assert ner.read_text() == "B-PER\nO\nB-LOC\n"
    assert ner.parent.name == "panx"

    tat = write("xitt.tatoeba.de", [{"prediction": [3, 1]}, {"prediction": 0}])
    assert tat.read_text() == "3\n0\n"
    with pytest.raises(ValueError, match="record 0 has no 'context' field"):
        write("xitt.xquad.en", [{"id": "q1", "prediction": "x"}])
    with pytest.raises(ValueError, match="not an XTREME-R evaluation task"):
        write("xitt.inter.mnli", [])


def test_write_from_eval_dir_picks_xtreme_r_tasks(tmp_path):
    eval_dir = tmp_path / "eval"
    for task, record in (("xitt.xnli.de", {"index": 0, "prediction": "neutral"}),
                         ("xitt.inter.mnli", {"index": 0, "prediction": "neutral"})):
        (eval_dir / task).mkdir(parents=True)
        (eval_dir / task / "predictions.jsonl").write_text(json.dumps(record) + "\n")
    written = leaderboard.write_from_eval_dir(eval_dir, tmp_path / "lb")
    assert written == [tmp_path / "lb" / "xnli" / "test-de.tsv"]


def test_readers_accept_official_squad_gold_and_reject_bad_files(tmp_path):
    squad_json = {"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "a1", "question": "q", "answers": [{"text": "x", "answer_start": 0},
                                                  {"text": "y", "answer_start": 0}]}]}]}]}
    path = tmp_path / "gold.json"
    path.write_text(json.dumps(squad_json))
    assert leaderboard.read_file(path, "tydiqa", gold=True).values == {"a1": ["x", "y"]}
    path.write_text('{"a1": ["x"]')
    with pytest.raises(leaderboard.LeaderboardError, match=r"gold\.json:1:\d+: malformed JSON"):
        leaderboard.read_file(path, "tydiqa", gold=True)
    path.write_text('{"a1": 3}')
    with pytest.raises(leaderboard.LeaderboardError, match="expected a string"):
        leaderboard.read_file(path, "tydiqa")
    tsv = tmp_path / "t.tsv"
    tsv.write_text("1\nfoo\n")
    with pytest.raises(leaderboard.LeaderboardError, match=r"t\.tsv:2: 'foo' is not an integer"):
        leaderboard.read_file(tsv, "tatoeba")
    tsv.write_text("B-PER\nAnna\tB-PER\n")
    with pytest.raises(leaderboard.LeaderboardError, match=r"t\.tsv:2: .* one tag per line"):
        leaderboard.read_file(tsv, "panx")
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"label": 1}\n{"idx": 2}\n')
    with pytest.raises(leaderboard.LeaderboardError, match=r"x\.jsonl:2: expected a JSON object"):
        leaderboard.read_file(jsonl, "xcopa")


def _imperfect(target: str, i: int, ex: dict, prediction):
    """Every third prediction right, the others wrong in target-specific ways."""
    if i % 3 == 0:
        return prediction
    if target == "xnli":
        return "neutral"
    if target == "xcopa":
        return ex["choices"][0] if i % 3 == 1 else "none of them"
    if target == "udpos":
        return " ".join(["NOUN"] * (len(ex["tokens"]) - i % 3))
    if target == "wikiann":
        return f"PER: {ex['tokens'][0]}" if i % 3 == 1 else "LOC: nowhere $$ junk"
    # QA: a case-changed partial answer, or text the context lacks
    return prediction.split(" ")[0].upper() if i % 3 == 1 else "not here ( really ) , U . S ."


@pytest.mark.parametrize("target, lang", [("xnli", "de"), ("xcopa", "et"), ("udpos", "de"),
                                          ("wikiann", "de"), ("xquad", "el"), ("mlqa", "zh"),
                                          ("tydiqa", "ar")])
def test_eval_score_equals_the_task_metric_on_imperfect_predictions(tmp_path, target, lang):
    """The number eval.score prints from the files is the task's own (raw, official) metric."""
    import seqio

    task = seqio.get_mixture_or_task(f"xitt.{target}.{lang}")
    records = perfect_records(target, lang)
    for i, r in enumerate(records):
        r["prediction"] = _imperfect(target, i, r, r["prediction"])
    targets = [task.postprocess_fn(r["targets_pretokenized"], example=r, is_target=True)
               for r in records]
    outputs = [task.postprocess_fn(r["prediction"], example=r, is_target=False)
               for r in records]
    (metric_fn,) = task.predict_metric_fns
    expected = metric_fn(targets, outputs)

    split = leaderboard.LOCAL_SPLITS[target]
    leaderboard.write_gold_labels(tmp_path / "labels", split, tasks=[target])
    pred_path = leaderboard.write_predictions(tmp_path / "predictions", task.name, records, split)
    spec = xtreme_r.get_task(target)
    got = score.score_language(
        spec, lang, leaderboard.read_file(pred_path, target),
        leaderboard.read_file(leaderboard.file_path(tmp_path / "labels", target, lang, split),
                              target, gold=True))
    for key in spec.metric_keys:
        assert got[key] == pytest.approx(expected[key]), key
    assert 0 < got[spec.metric_keys[0]] < 100
