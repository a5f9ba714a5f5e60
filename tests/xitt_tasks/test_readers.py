"""Streaming readers: records, located errors, skip counting, missing files."""
import json
import logging

import pytest

from xitt_tasks import readers, squad_json
from xitt_tasks.errors import DataFormatError

NLI = ("sentence1", "sentence2", "label")


def write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- missing files, encoding -----------------------------------------------------------------

@pytest.mark.parametrize("read", [
    lambda p: readers.read_lines(p), lambda p: readers.read_tsv(p, NLI),
    lambda p: readers.read_conll(p), lambda p: readers.read_jsonl(p),
    lambda p: readers.read_squad_json(p), lambda p: readers.read_siqa(p),
    lambda p: readers.read_csv(p, ("id",)), lambda p: readers.read_mewslix_entities(p),
])
def test_missing_file_names_the_path(tmp_path, read):
    path = tmp_path / "xnli" / "dev-de.tsv"
    with pytest.raises(FileNotFoundError, match=r"xnli/dev-de\.tsv.*data/README\.md"):
        list(read(path))


def test_invalid_utf8_is_located(tmp_path):
    path = write(tmp_path, "bad.txt", b"ok\n\xff\xfe\n", mode="wb")
    with pytest.raises(DataFormatError, match=r"bad\.txt:2: expected UTF-8 text"):
        list(readers.read_lines(path))


# --- TSV / CSV -------------------------------------------------------------------------------

def test_tsv_rows_and_blank_lines(tmp_path):
    path = write(tmp_path, "dev-de.tsv", "a b\tc\tentailment\r\n\nd\te\tneutral\n")
    assert list(readers.read_tsv(path, NLI)) == [
        {"sentence1": "a b", "sentence2": "c", "label": "entailment"},
        {"sentence1": "d", "sentence2": "e", "label": "neutral"}]


def test_tsv_malformed_line_names_file_line_and_form(tmp_path):
    path = write(tmp_path, "xnli/dev-de.tsv", "a\tb\tneutral\n" * 16 + "a\tb\n")
    with pytest.raises(DataFormatError) as e:
        list(readers.read_tsv(path, NLI))
    assert str(e.value).endswith("xnli/dev-de.tsv:17: expected 3 tab-separated fields "
                                 "(sentence1, sentence2, label), got 2")
    assert isinstance(e.value, ValueError) and e.value.line == 17


def test_tsv_skip_malformed_counts_and_warns(tmp_path, caplog):
    path = write(tmp_path, "d.tsv", "a\tb\tneutral\nbad\nx\ty\tz\tw\nc\td\tentailment\n")
    with caplog.at_level(logging.WARNING):
        rows = list(readers.read_tsv(path, NLI, skip_malformed=True))
    assert [r["label"] for r in rows] == ["neutral", "entailment"]
    assert "skipped 2 malformed record(s)" in caplog.text and "d.tsv" in caplog.text


def test_tsv_csv_quoting_as_written_by_python_csv(tmp_path):
    path = write(tmp_path, "q.tsv", '"he said ""hi"""\t"tab\tinside"\tneutral\nx\ty\tz\n')
    rows = list(readers.read_tsv(path, NLI, quoting=True))
    assert rows[0] == {"sentence1": 'he said "hi"', "sentence2": "tab\tinside", "label": "neutral"}
    # Without quoting (GLUE files) quotes are literal and the inner tab splits the field.
    with pytest.raises(DataFormatError, match=r"q\.tsv:1: expected 3 tab-separated"):
        list(readers.read_tsv(path, NLI))


def test_tsv_with_header_selects_columns(tmp_path):
    text = 'index\tsentence1\tsentence2\tgold_label\n0\ta "quote\tb\tneutral\n1\tc\td\n'
    path = write(tmp_path, "MNLI/train.tsv", text)
    rows = readers.read_tsv(path, ("sentence1", "gold_label"), header=True)
    assert next(rows) == {"sentence1": 'a "quote', "gold_label": "neutral"}
    with pytest.raises(DataFormatError, match=r"train\.tsv:3: expected 4 tab-separated fields "
                                              r"\(the header's\), got 3"):
        next(rows)
    with pytest.raises(DataFormatError, match=r":1: expected a header with the columns label.*"
                                              r"missing label"):
        list(readers.read_tsv(path, ("label",), header=True))


def test_csv_multiline_quoted_fields_keep_line_numbers(tmp_path):
    text = 'id,context,label\n1,"two\nlines, here",0\n2,"x",1,extra\n'
    path = write(tmp_path, "cosmosqa/train.csv", text)
    rows = readers.read_csv(path, ("context", "label"))
    assert next(rows) == {"context": "two\nlines, here", "label": "0"}
    with pytest.raises(DataFormatError, match=r"train\.csv:4: expected 3 comma-separated"):
        next(rows)


# --- CoNLL -----------------------------------------------------------------------------------

def test_conll_tagged_and_token_only(tmp_path):
    path = write(tmp_path, "udpos/dev-de.tsv", "Er\tPRON\nsieht\tVERB\n\n\nJa\tINTJ\n")
    assert list(readers.read_conll(path)) == [
        {"tokens": ["Er", "sieht"], "tags": ["PRON", "VERB"]},
        {"tokens": ["Ja"], "tags": ["INTJ"]}]
    path = write(tmp_path, "udpos/test-de.tsv", "Er\nsieht\n\nJa\n\n")
    assert list(readers.read_conll(path)) == [
        {"tokens": ["Er", "sieht"], "tags": None}, {"tokens": ["Ja"], "tags": None}]


def test_conll_errors_and_skipping_whole_sentences(tmp_path, caplog):
    path = write(tmp_path, "panx/dev-de.tsv",
                 "a\tB-PER\nb\tO\n\nc\tO\nd\n\ne\tO\tX\n\nf\tB-LOC\n")
    sentences = readers.read_conll(path)
    assert next(sentences)["tokens"] == ["a", "b"]
    with pytest.raises(DataFormatError, match=r"dev-de\.tsv:5: expected every line of a "
                                              r"sentence with a tag, or none"):
        next(sentences)
    with caplog.at_level(logging.WARNING):
        kept = list(readers.read_conll(path, skip_malformed=True))
    assert [s["tokens"] for s in kept] == [["a", "b"], ["f"]]
    assert "skipped 2 malformed record(s)" in caplog.text
    with pytest.raises(DataFormatError, match=r":7: expected 'token<TAB>tag' or 'token'"):
        list(readers.read_conll(write(tmp_path, "x.tsv", "c\tO\n\n\n\n\n\ne\tO\tX\n")))


# --- lines and parallel files ----------------------------------------------------------------

def test_parallel_files(tmp_path):
    de = write(tmp_path, "tatoeba/de-en.de", "Hallo\nJa\n")
    en = write(tmp_path, "tatoeba/de-en.en", "Hello\nYes\n")
    assert list(readers.read_lines(de)) == ["Hallo", "Ja"]
    assert list(readers.read_parallel(de, en)) == [("Hallo", "Hello"), ("Ja", "Yes")]
    longer = write(tmp_path, "tatoeba/de-en.en", "Hello\nYes\nNo\nMaybe\n")
    with pytest.raises(DataFormatError) as e:
        list(readers.read_parallel(de, longer))
    message = str(e.value)
    assert "de-en.de" in message and "de-en.en" in message and "2 lines against 4" in message


# --- JSONL -----------------------------------------------------------------------------------

def test_jsonl_records_errors_and_skips(tmp_path, caplog):
    path = write(tmp_path, "x.jsonl", '{"a": 1}\n\n{"a": \n[1, 2]\n{"a": 2}\n')
    records = readers.read_jsonl(path)
    assert next(records) == {"a": 1}
    with pytest.raises(DataFormatError, match=r"x\.jsonl:3: expected one JSON object per line"):
        next(records)
    with caplog.at_level(logging.WARNING):
        assert list(readers.read_jsonl(path, skip_malformed=True)) == [{"a": 1}, {"a": 2}]
    assert "skipped 2 malformed record(s)" in caplog.text


# --- SQuAD JSON ------------------------------------------------------------------------------

def squad(articles, version="1.1"):
    return {"version": version, "data": articles}


def article(context, qas, title="T"):
    return {"title": title, "paragraphs": [{"context": context, "qas": qas}]}


def qa(qid, question, answers, **extra):
    return {"id": qid, "question": question,
            "answers": [{"text": t, "answer_start": s} for t, s in answers], **extra}


def test_squad_records_streamed_through_small_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(squad_json, "_CHUNK", 5)  # forces many partial decodes and refills
    data = squad([article("Paris is big. Rome is old.",
                          [qa("q1", "Which?", [("Paris", 0), ("Paris", 0)]),
                           qa("q2", "Old?", [("Rome", 14)])]) for _ in range(3)])
    data["data"][2]["paragraphs"][0]["sentence_breaks"] = [[0, 13], [14, 26]]
    path = write(tmp_path, "squad/dev-v1.1.json", json.dumps(data, indent=2))
    records = list(readers.read_squad_json(path))
    assert len(records) == 6
    assert records[0] == {"id": "q1", "title": "T", "context": "Paris is big. Rome is old.",
                          "question": "Which?", "answers": ["Paris", "Paris"],
                          "answer_starts": [0, 0], "is_impossible": False,
                          "sentence_breaks": None}
    assert records[-1]["sentence_breaks"] == [[0, 13], [14, 26]]


def test_squad_version_key_anywhere_and_v2_impossible(tmp_path):
    text = json.dumps({"version": "v2.0", "data": [article("abc", [
        qa("q", "?", [], is_impossible=True)])], "extra": {"k": [1, 2.5]}})
    records = list(readers.read_squad_json(write(tmp_path, "v2.json", text)))
    assert records[0]["is_impossible"] is True and records[0]["answers"] == []


def test_squad_bad_offset_is_located_and_skippable(tmp_path, caplog):
    good = article("Paris is big.", [qa("ok", "?", [("Paris", 0)])])
    bad = article("Paris is big.", [qa("bad", "?", [("big", 3)])])
    path = write(tmp_path, "xquad/xquad.de.json", json.dumps(squad([good, bad, good]), indent=1))
    with pytest.raises(DataFormatError) as e:
        list(readers.read_squad_json(path))
    article_lines = [i + 1 for i, line in enumerate(path.read_text().splitlines())
                     if line == "  {"]  # where each article of the 'data' array starts
    line_of_bad = article_lines[1]
    assert str(e.value) == (f"{path}:{line_of_bad}: expected data[1].paragraphs[0].qas[0]."
                            "answers[0] text 'big' at context[3:6], got 'is '")
    with caplog.at_level(logging.WARNING):
        assert [r["id"] for r in readers.read_squad_json(path, skip_malformed=True)] == \
            ["ok", "ok"]
    assert "skipped 1 malformed article(s)" in caplog.text


@pytest.mark.parametrize("text, expected", [
    ('{"version": "1.1"}', 'a top-level "data" array'),
    ('[1, 2]', "a JSON object"),
    ('{"data": [{"paragraphs": []}, ', "a JSON value"),
    ('{"data": {"a": 1}}', "'data' to be an array"),
    ('{"data": [{"title": "x"}]}', "data[0] to be an object with a 'paragraphs' list"),
])
def test_squad_structure_errors(tmp_path, text, expected):
    with pytest.raises(DataFormatError, match="expected " + expected.replace("[", r"\[")
                       .replace("]", r"\]")):
        list(readers.read_squad_json(write(tmp_path, "s.json", text)))


# --- SIQA ------------------------------------------------------------------------------------

SIQA = {"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "c"}


def test_siqa_with_labels_file(tmp_path):
    path = write(tmp_path, "siqa/dev.jsonl", "".join(json.dumps(SIQA) + "\n" for _ in range(2)))
    labels = write(tmp_path, "siqa/dev-labels.lst", "3\n1\n")
    assert [r["label"] for r in readers.read_siqa(path, labels)] == [2, 0]
    with pytest.raises(DataFormatError, match=r"short\.lst:2: expected one label per "
                                              r"example of .*dev\.jsonl, got only 1"):
        list(readers.read_siqa(path, write(tmp_path, "short.lst", "1\n")))
    with pytest.raises(DataFormatError, match=r"long\.lst:3: expected no more labels"):
        list(readers.read_siqa(path, write(tmp_path, "long.lst", "1\n2\n3\n")))
    with pytest.raises(DataFormatError, match=r"bad\.lst:2: expected a label 1, 2 or 3, got '4'"):
        list(readers.read_siqa(path, write(tmp_path, "bad.lst", "1\n4\n")))


def test_siqa_correct_letter_and_unlabeled(tmp_path):
    lines = [dict(SIQA, correct="B"), SIQA]
    path = write(tmp_path, "socialIQa_v1.4_dev.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    assert [r["label"] for r in readers.read_siqa(path)] == [1, None]
    bad = write(tmp_path, "b.jsonl", json.dumps({"context": "c"}) + "\n")
    with pytest.raises(DataFormatError, match=r"b\.jsonl:1: expected a SIQA example with the "
                                              r"fields context, question.*got no question"):
        list(readers.read_siqa(bad))


# --- Mewsli-X --------------------------------------------------------------------------------

ENTITY = {"entity_id": "Q1", "title": "Paris", "description": "Paris is a city.",
          "description_language": "en", "description_url": "u", "sentence_spans": []}


def context(text, lang="de"):
    return {"document_title": "d", "document_id": "d1", "document_url": "u", "language": lang,
            "text": text, "sentence_spans": [{"start": 0, "end": len(text)}]}


def mention(eid, start, end, text):
    return {"example_id": eid, "entity_id": "Q1",
            "mention_span": {"start": start, "end": end, "text": text}}


def test_mewslix_entities_mentions_pairs(tmp_path):
    ents = write(tmp_path, "candidate_set_entities.jsonl", json.dumps(ENTITY) + "\n")
    assert list(readers.read_mewslix_entities(ents)) == [ENTITY]
    news = [{"context": context("Er sah Paris."), "mentions": [mention("m1", 7, 12, "Paris")]},
            {"context": context("Paris!", "ja"), "mentions": [mention("m2", 0, 5, "Paris")]}]
    path = write(tmp_path, "wikinews_mentions-dev.jsonl",
                 "".join(json.dumps(r) + "\n" for r in news))
    flat = list(readers.read_mewslix_mentions(path))
    assert [m["example_id"] for m in flat] == ["m1", "m2"]
    assert flat[0]["mention"] == "Paris" and flat[0]["context"][7:12] == "Paris"
    assert [m["example_id"] for m in readers.read_mewslix_mentions(path, language="ja")] == ["m2"]
    pair = {"contextual_mention": {"context": context("See Paris.", "en"),
                                   "mention": mention("p1", 4, 9, "Paris")}, "entity": ENTITY}
    pairs = list(readers.read_mewslix_pairs(write(tmp_path, "wikipedia_pairs-train.jsonl",
                                                  json.dumps(pair) + "\n")))
    assert pairs[0]["entity"] == ENTITY and pairs[0]["mention_start"] == 4


def test_mewslix_span_and_text_errors(tmp_path, caplog):
    recs = [{"context": context("Er sah Paris."), "mentions": [mention("m1", 0, 5, "Paris"),
                                                               mention("m2", 7, 12, "Paris")]},
            {"context": context("", "ja"), "mentions": [mention("m3", 0, 5, "Paris")]}]
    path = write(tmp_path, "m.jsonl", "".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(DataFormatError, match=r"m\.jsonl:1: expected mention 'm1' text 'Paris' "
                                              r"at context\.text\[0:5\], got 'Er sa'"):
        list(readers.read_mewslix_mentions(path))
    with caplog.at_level(logging.WARNING):
        kept = list(readers.read_mewslix_mentions(path, skip_malformed=True))
    assert [m["example_id"] for m in kept] == ["m2"]
    assert "skipped 2 malformed record(s)" in caplog.text
    with pytest.raises(DataFormatError, match=r"m\.jsonl:2: expected the article text"):
        list(readers.read_mewslix_mentions(path, language="ja"))


def test_mewslix_labels(tmp_path):
    good = write(tmp_path, "test-de.json", '{"a1": ["Q1"], "a2": ["Q2", "Q3"]}')
    assert readers.read_mewslix_labels(good) == {"a1": ["Q1"], "a2": ["Q2", "Q3"]}
    with pytest.raises(DataFormatError, match=r"expected a list of entity id strings for 'a1'"):
        readers.read_mewslix_labels(write(tmp_path, "b.json", '{"a1": "Q1"}'))
    with pytest.raises(DataFormatError, match=r"c\.json:2: expected a JSON object"):
        readers.read_mewslix_labels(write(tmp_path, "c.json", '{"a1":\n ]'))


# --- a missing JSON field ------------------------------------------------------------------

def test_missing_json_field_names_file_line_and_field(tmp_path):
    from xitt_tasks.intermediate import read_snli

    path = write(tmp_path, "snli/train.jsonl",
                 '{"gold_label": "neutral", "sentence1": "a", "sentence2": "b"}\n'
                 '{"gold_label": "neutral", "sentence1": "a"}\n')
    with pytest.raises(DataFormatError) as e:
        list(read_snli([path]))
    assert str(e.value) == (f"{path}:2: expected a field 'sentence2', got an object with the "
                            "fields gold_label, sentence1")
    assert isinstance(e.value, KeyError)  # callers that catch KeyError still do
    record = next(readers.read_jsonl(path))
    assert record.get("absent") is None and dict(record)["sentence1"] == "a"
