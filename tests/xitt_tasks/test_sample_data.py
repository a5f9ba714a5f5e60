"""The shipped sample data root: every promised file exists, parses, covers every language,
follows its labelling rule, and equals a fresh deterministic build."""
from pathlib import Path

import pytest

from xitt_tasks import languages as L
from xitt_tasks import readers
from xitt_tasks.data import make_sample
from xitt_tasks.data.lexicon import LEXICONS

ROOT = make_sample.SAMPLE_ROOT


def expected_files() -> dict[str, str]:
    """The data-root layout of xitt_tasks/data/README.md: relative path -> kind of file."""
    f: dict[str, str] = {"xnli/train-en.tsv": "nli3"}
    for lang in L.XNLI:
        f[f"xnli/dev-{lang}.tsv"], f[f"xnli/test-{lang}.tsv"] = "nli3", "nli3"
    for task, langs in (("udpos", L.UDPOS), ("panx", L.WIKIANN)):
        f[f"{task}/train-en.tsv"] = "tags"
        for lang in langs:
            f[f"{task}/dev-{lang}.tsv"], f[f"{task}/test-{lang}.tsv"] = "tags", "tags"
    for lang in L.TATOEBA:
        f[f"tatoeba/{lang}-en.{lang}"] = "tatoeba"
    for name in ("train-v1.1", "dev-v1.1", "train-v2.0", "dev-v2.0"):
        f[f"squad/{name}.json"] = "squad"
    for lang in L.XQUAD:
        f[f"xquad/xquad.{lang}.json"] = "squad"
    for lang in L.MLQA:
        for s in ("dev", "test"):
            f[f"mlqa/MLQA_V1/{s}/{s}-context-{lang}-question-{lang}.json"] = "squad"
    f["tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json"] = "squad"
    for lang in L.TYDIQA:
        f[f"tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json"] = "squad"
    for lang in L.LAREQA:
        f[f"lareqa/xquad-r/{lang}.json"] = "squad"
    for s in ("train", "val", "test"):
        f[f"xcopa/{s}-en.jsonl"] = "copa"
    for lang in L.XCOPA:
        f[f"xcopa/val-{lang}.jsonl"] = f[f"xcopa/test-{lang}.jsonl"] = "copa"
    for s in ("train", "dev"):
        f[f"siqa/{s}.jsonl"] = "siqa"
        f[f"mewslix/wikipedia_pairs-{s}.jsonl"] = "mewslix_pairs"
        f[f"glue/QQP/{s}.tsv"] = "qqp"
        f[f"snli/snli_1.0_{s}.jsonl"] = "jsonl"
        f[f"commonsenseqa/{s}_rand_split.jsonl"] = "jsonl"
        f[f"ccg/{s}.tsv"] = "tags"
        for r in (1, 2, 3):
            f[f"anli/R{r}/{s}.jsonl"] = "jsonl"
    for s in ("dev", "test"):
        f[f"mewslix/wikinews_mentions-{s}.jsonl"] = "mewslix_mentions"
    f["mewslix/candidate_set_entities.jsonl"] = "mewslix_entities"
    f["glue/MNLI/train.tsv"] = f["glue/MNLI/dev_matched.tsv"] = "mnli"
    f["hellaswag/hellaswag_train.jsonl"] = f["hellaswag/hellaswag_val.jsonl"] = "jsonl"
    f["cosmosqa/train.csv"] = f["cosmosqa/valid.csv"] = "cosmos"
    # X-STILTs' alternatives: XTREME's translations (bucket layout) and an mC4-like corpus
    for lang in (x for x in L.XNLI if x != "en"):
        f[f"xtreme_translations/XNLI/translate-train/en-{lang}-translated.tsv"] = "nli_translated"
    for lang in (x for x in L.XQUAD if x not in ("en", "ro")):
        f[f"xtreme_translations/SQuAD/translate-train/squad.translate.train.en-{lang}.json"] = \
            "squad"
    for lang in make_sample.MC4_DOCS:
        for split in ("", "-validation"):
            f[f"mc4/multilingual/c4-{lang}{split}.tfrecord-00000-of-00001.json"] = "jsonl"
    return f


def parse(rel: str, kind: str) -> list:
    path = ROOT / rel
    if kind == "nli_translated":
        return list(readers.read_tsv(path, ("premise_en", "hypothesis_en", "premise",
                                            "hypothesis", "label")))
    if kind in ("nli3", "nli2"):
        cols = ("premise", "hypothesis", "label")[: 3 if kind == "nli3" else 2]
        return list(readers.read_tsv(path, cols, quoting=True))
    if kind in ("tags", "tokens"):
        return list(readers.read_conll(path))
    if kind == "tatoeba":
        return list(readers.read_parallel(path, str(path).rsplit(".", 1)[0] + ".en"))
    if kind == "squad":
        return list(readers.read_squad_json(path))
    if kind == "siqa":
        return list(readers.read_siqa(path, str(path).replace(".jsonl", "-labels.lst")))
    if kind == "mnli":
        return list(readers.read_tsv(path, ("sentence1", "sentence2", "gold_label"), header=True))
    if kind == "qqp":
        return list(readers.read_tsv(path, ("question1", "question2", "is_duplicate"),
                                     header=True))
    if kind == "cosmos":
        return list(readers.read_csv(path, ("context", "question", "answer0", "label")))
    if kind == "mewslix_pairs":
        return list(readers.read_mewslix_pairs(path))
    if kind == "mewslix_mentions":
        return list(readers.read_mewslix_mentions(path))
    if kind == "mewslix_entities":
        return list(readers.read_mewslix_entities(path))
    return list(readers.read_jsonl(path))


@pytest.fixture(scope="module")
def parsed() -> dict[str, list]:
    return {rel: parse(rel, kind) for rel, kind in expected_files().items()}


def test_every_promised_file_exists_and_parses(parsed):
    for rel, records in parsed.items():
        assert records, f"{rel} has no records"


def test_nothing_unexpected_and_small():
    shipped = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()}
    tatoeba_en = {f"tatoeba/{lang}-en.en" for lang in L.TATOEBA}
    labels = {f"siqa/{s}-labels.lst" for s in ("train", "dev")}
    assert shipped == set(expected_files()) | tatoeba_en | labels
    assert sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file()) < 3_000_000


def test_shipped_sample_equals_a_fresh_build():
    assert make_sample.stale_files() == []


def test_evaluation_languages_have_3_to_8_examples_and_english_trains_40_to_100(parsed):
    for rel, records in parsed.items():
        english_train = "train" in rel and rel.endswith(("en.tsv", "en.json", "en.jsonl")) or \
            rel.startswith(("squad/train", "glue/", "snli/", "hellaswag/hellaswag_train",
                            "xtreme_translations/",  # translated training sets
                            "cosmosqa/train", "commonsenseqa/train", "siqa/train", "ccg/train"))
        if english_train and "dev" not in rel:
            assert 32 <= len(records) <= 100, rel
        elif rel.split("/")[0] in ("xnli", "udpos", "panx", "tatoeba", "xquad", "mlqa", "xcopa",
                                   "lareqa") or "tydiqa-goldp-v1.1-dev" in rel:
            assert 3 <= len(records) <= 8, rel


def test_every_language_of_every_task_has_text_in_its_script(parsed):
    mentions = {m["language"] for s in ("dev", "test")
                for m in parsed[f"mewslix/wikinews_mentions-{s}.jsonl"]}
    assert mentions == set(L.MEWSLIX)
    for rel, records in parsed.items():
        lang = next((x for x in L.XTREME_R_LANGUAGES if rel.endswith((
            f"-{x}.tsv", f".{x}.json", f"-{x}.json", f"/{x}.json", f"-{x}.jsonl",
            f".goldp.{x}.dev.json", f"-en.{x}"))), None)
        if lang is None or lang == "en":
            continue
        text = str(records)
        assert LEXICONS[lang].persons[0] in text or LEXICONS[lang].persons[1] in text, rel


def test_squad_answer_offsets_point_at_the_answer(parsed):
    n = 0
    for rel, records in parsed.items():
        if expected_files()[rel] == "squad":
            for r in records:
                for text, start in zip(r["answers"], r["answer_starts"]):
                    assert r["context"][start:start + len(text)] == text
                    n += 1
                assert r["is_impossible"] == (not r["answers"])
    assert n > 200
    assert any(r["is_impossible"] for r in parsed["squad/train-v2.0.json"])


def test_labels_follow_the_documented_rules(parsed):
    for lang in L.XNLI:  # contradiction <=> the hypothesis holds the negation word
        for r in parsed[f"xnli/dev-{lang}.tsv"]:
            negated = LEXICONS[lang].negation in r["hypothesis"].split()
            assert negated == (r["label"] == "contradiction"), (lang, r)
    for lang in L.XCOPA:  # the right choice is about the premise's person
        for r in parsed[f"xcopa/val-{lang}.jsonl"]:
            right = r["choice1"] if r["label"] == 0 else r["choice2"]
            assert right.split()[0] == r["premise"].split()[0]
    for r in parsed["panx/train-en.tsv"]:
        assert r["tags"][0] == "B-PER" and "B-ORG" in r["tags"] and "B-LOC" in r["tags"]
    ids = {lang: [r["id"] for r in parsed[f"lareqa/xquad-r/{lang}.json"]] for lang in L.LAREQA}
    assert all(v == ids["en"] for v in ids.values())  # XQuAD-R questions are parallel
    entity_ids = {e["entity_id"] for e in parsed["mewslix/candidate_set_entities.jsonl"]}
    for s in ("dev", "test"):
        assert {m["entity_id"] for m in parsed[f"mewslix/wikinews_mentions-{s}.jsonl"]} <= \
            entity_ids


def test_tatoeba_sides_are_aligned(parsed):
    for lang in L.TATOEBA:
        for src, eng in parsed[f"tatoeba/{lang}-en.{lang}"]:
            assert src.split()[0] in LEXICONS[lang].persons
            assert eng.split()[0] in LEXICONS["en"].persons
            assert LEXICONS[lang].persons.index(src.split()[0]) == \
                LEXICONS["en"].persons.index(eng.split()[0])


def test_root_is_the_one_tasks_read():
    assert Path(ROOT).name == "sample" and (ROOT / "xnli").is_dir()
