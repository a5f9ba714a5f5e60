"""Retrieval targets: Mewsli-X and LAReQA (dual encoders, mAP@20) and Tatoeba (no training).

Every example is a (query, positive candidate) pair: `inputs` is the query text, `targets` the
positive candidate's text, and `query_id`, `candidate_id`, `gold_ids` ride along so a
dual-encoder evaluator can embed queries and a candidate pool and rank by id. The candidate
pools are tasks of their own (`xitt.mewslix.candidates`, `xitt.lareqa.candidates`, whose
`inputs` are candidate texts); Tatoeba's pool is the `targets` side of each language task.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from xitt_tasks import formats, languages, readers
from xitt_tasks.formats import add_task, register_target_mixtures
from xitt_tasks.metrics import retrieval
from xitt_tasks.sources import XittSource

MEWSLIX_ENTITIES = "mewslix/candidate_set_entities.jsonl"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _span(span: Any) -> tuple[int, int]:
    return (span["start"], span["end"]) if isinstance(span, dict) else (span[0], span[1])


def _sentence_at(text: str, spans: Sequence[Any] | None, offset: int) -> str:
    """The sentence of `text` containing character `offset` (given spans, else split on .!?)."""
    if spans:
        for span in spans:
            start, end = _span(span)
            if start <= offset < end:
                return text[start:end].strip()
        return text.strip()
    start = 0
    for boundary in _SENTENCE_END.finditer(text):
        if offset < boundary.start():
            return text[start:boundary.start()].strip()
        start = boundary.end()
    return text[start:].strip()


def entity_text(entity: dict[str, Any]) -> str:
    return f"entity: {entity['title']} description: {entity['description']}"


def mention_text(m: dict[str, Any]) -> str:
    sentence = _sentence_at(m["context"], m.get("sentence_spans"), m["mention_start"])
    return f"mention: {m['mention']} context: {sentence}"


def read_mewslix_pairs(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for m in readers.read_mewslix_pairs(paths[0]):
        eid = m["entity"]["entity_id"]
        yield {"query_id": m["example_id"], "query": mention_text(m), "candidate_id": eid,
               "candidate": entity_text(m["entity"]), "gold_ids": [eid]}


def mewslix_mentions_reader(lang: str) -> Any:
    """WikiNews mentions of one language; the positive's text lives in the candidate pool, so
    `targets` carries the gold entity id."""
    def read(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
        for m in readers.read_mewslix_mentions(paths[0], language=lang):
            eid = m["entity_id"]
            yield {"query_id": m["example_id"], "query": mention_text(m), "candidate_id": eid,
                   "candidate": eid, "gold_ids": [eid]}
    return read


def read_mewslix_entities(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for e in readers.read_mewslix_entities(paths[0]):
        text = entity_text(e)
        yield {"query_id": e["entity_id"], "query": text, "candidate_id": e["entity_id"],
               "candidate": text, "gold_ids": [e["entity_id"]]}


def read_squad_sentences(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """LAReQA training pairs from SQuAD v1.1: question -> the sentence holding its answer."""
    for r in readers.read_squad_json(paths[0]):
        if not r["answers"]:
            continue
        sentence = _sentence_at(r["context"], r.get("sentence_breaks"), r["answer_starts"][0])
        yield {"query_id": r["id"], "query": r["question"], "candidate_id": r["id"],
               "candidate": lareqa_candidate(sentence, r["context"]), "gold_ids": [r["id"]]}


def lareqa_candidate(sentence: str, paragraph: str) -> str:
    """A LAReQA candidate as XTREME-R encodes it: the answer sentence, then its paragraph
    (`third_party/processors/lareqa.py` encodes the pair `(sentence, paragraph)`; a text-to-text
    encoder has no [SEP], so one space joins them and the sentence survives any truncation)."""
    return f"{sentence} {paragraph}"


def _xquad_r_sentences(path: Path, lang: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """All sentences of one XQuAD-R file with ids `lang:paragraph:sentence`, and for each
    question id the id of its answer sentence. Paragraphs are numbered in file order, which
    is parallel across the XQuAD-R languages."""
    sentences: list[dict[str, Any]] = []
    answer_of: dict[str, str] = {}
    paragraph_ids: dict[str, int] = {}
    for r in readers.read_squad_json(path):
        if r["context"] not in paragraph_ids:
            p = paragraph_ids[r["context"]] = len(paragraph_ids)
            breaks = r.get("sentence_breaks") or []
            for s, span in enumerate(breaks):
                start, end = _span(span)
                sentences.append({"id": f"{lang}:{p}:{s}", "text": r["context"][start:end],
                                  "paragraph": r["context"], "question": None})
        p = paragraph_ids[r["context"]]
        for s, span in enumerate(r.get("sentence_breaks") or []):
            start, end = _span(span)
            if r["answer_starts"] and start <= r["answer_starts"][0] < end:
                answer_of[r["id"]] = f"{lang}:{p}:{s}"
                break
        else:
            raise ValueError(f"{path}: question {r['id']!r} has no sentence_breaks span holding "
                             "its answer; expected XQuAD-R paragraphs with sentence_breaks")
    return sentences, answer_of


def lareqa_reader(lang: str) -> Any:
    """Questions of one language; gold = the answer sentence in every XQuAD-R language."""
    def read(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
        answers = {}
        for lang_m, path in zip(languages.LAREQA, paths[1:]):
            answers[lang_m] = _xquad_r_sentences(path, lang_m)[1]
        texts = {s["id"]: s["text"] for s in _xquad_r_sentences(paths[0], lang)[0]}
        for r in readers.read_squad_json(paths[0]):
            gold = [answers[m][r["id"]] for m in languages.LAREQA if r["id"] in answers[m]]
            own = answers[lang][r["id"]]
            yield {"query_id": f"{lang}:{r['id']}", "query": r["question"],
                   "candidate_id": own, "candidate": texts[own], "gold_ids": gold}
    return read


def read_lareqa_candidates(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for lang, path in zip(languages.LAREQA, paths):
        for s in _xquad_r_sentences(path, lang)[0]:
            candidate = lareqa_candidate(s["text"], s["paragraph"])
            yield {"query_id": s["id"], "query": candidate, "candidate_id": s["id"],
                   "candidate": candidate, "gold_ids": [s["id"]]}


def read_tatoeba(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """Line-aligned `{l}-en.{l}` / `{l}-en.en`: line i's gold is English line i."""
    for i, (src, eng) in enumerate(readers.read_parallel(paths[0], paths[1])):
        yield {"query_id": str(i), "query": src, "candidate_id": str(i), "candidate": eng,
               "gold_ids": [str(i)]}


def gold_ids_postprocess(output: Any, example: dict[str, Any] | None = None,
                         is_target: bool = False) -> Any:
    """Targets become the gold candidate ids (mAP@20); predictions are rankings of ids."""
    if is_target and example is not None:
        return formats.strings(example["gold_ids"])
    return output


def tatoeba_postprocess(output: Any, example: dict[str, Any] | None = None,
                        is_target: bool = False) -> Any:
    """Targets become the gold English line index; predictions are indices."""
    if is_target and example is not None:
        return int(formats.strings([example["candidate_id"]])[0])
    return output


def register() -> None:
    def retrieval_task(name: str, src: XittSource, post: Any, metric: Any) -> None:
        add_task(name, src, "retrieval", postprocess_fn=post, metric_fns=[metric])

    pairs = {"train": "mewslix/wikipedia_pairs-train.jsonl",
             "validation": "mewslix/wikipedia_pairs-dev.jsonl"}
    retrieval_task("xitt.mewslix.train.en", XittSource("retrieval", pairs, read_mewslix_pairs),
                   gold_ids_postprocess, retrieval.mewslix_map_at_20)
    for lang in languages.MEWSLIX:
        files = {s: f"mewslix/wikinews_mentions-{d}.jsonl"
                 for s, d in (("validation", "dev"), ("test", "test"))}
        retrieval_task(f"xitt.mewslix.{lang}",
                       XittSource("retrieval", files, mewslix_mentions_reader(lang)),
                       gold_ids_postprocess, retrieval.mewslix_map_at_20)
    pool = {"validation": MEWSLIX_ENTITIES, "test": MEWSLIX_ENTITIES}
    add_task("xitt.mewslix.candidates", XittSource("retrieval", pool, read_mewslix_entities),
             "retrieval")
    register_target_mixtures("mewslix", ["xitt.mewslix.train.en"])

    squad_files = {"train": "squad/train-v1.1.json", "validation": "squad/dev-v1.1.json"}
    retrieval_task("xitt.lareqa.train.en",
                   XittSource("retrieval", squad_files, read_squad_sentences),
                   gold_ids_postprocess, retrieval.lareqa_map_at_20)
    xquad_r = tuple(f"lareqa/xquad-r/{m}.json" for m in languages.LAREQA)
    for lang in languages.LAREQA:
        files = {"test": (f"lareqa/xquad-r/{lang}.json", *xquad_r)}
        retrieval_task(f"xitt.lareqa.{lang}", XittSource("retrieval", files, lareqa_reader(lang)),
                       gold_ids_postprocess, retrieval.lareqa_map_at_20)
    add_task("xitt.lareqa.candidates",
             XittSource("retrieval", {"test": xquad_r}, read_lareqa_candidates), "retrieval")
    register_target_mixtures("lareqa", ["xitt.lareqa.train.en"])

    # Tatoeba: no target training (the recipe embeds with the SQuAD-trained encoder).
    for lang in languages.TATOEBA:
        files = {"test": (f"tatoeba/{lang}-en.{lang}", f"tatoeba/{lang}-en.en")}
        retrieval_task(f"xitt.tatoeba.{lang}", XittSource("retrieval", files, read_tatoeba),
                       tatoeba_postprocess, retrieval.tatoeba_accuracy)
    register_target_mixtures("tatoeba", [])
