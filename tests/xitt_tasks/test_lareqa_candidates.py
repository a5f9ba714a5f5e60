"""LAReQA candidates are encoded as XTREME-R encodes them: the sentence, then its paragraph."""
import json
from pathlib import Path

from xitt_tasks import languages, targets_retrieval

SAMPLE = Path(__file__).resolve().parents[2] / "xitt_tasks" / "data" / "sample"


def test_pool_candidates_are_sentence_then_paragraph():
    paths = [SAMPLE / "lareqa" / "xquad-r" / f"{lang}.json" for lang in languages.LAREQA]
    pool = list(targets_retrieval.read_lareqa_candidates(paths))
    en = json.loads(paths[languages.LAREQA.index("en")].read_text())
    paragraph = en["data"][0]["paragraphs"][0]
    start, end = paragraph["sentence_breaks"][0]
    first = next(c for c in pool if c["candidate_id"] == "en:0:0")
    assert first["candidate"] == paragraph["context"][start:end] + " " + paragraph["context"]
    assert first["query"] == first["candidate"]  # the pool side is embedded from `inputs`


def test_training_pairs_hold_the_answer_sentence_and_its_paragraph():
    pairs = list(targets_retrieval.read_squad_sentences([SAMPLE / "squad" / "train-v1.1.json"]))
    squad = json.loads((SAMPLE / "squad" / "train-v1.1.json").read_text())
    context = squad["data"][0]["paragraphs"][0]["context"]
    first = pairs[0]
    sentence = first["candidate"][: -len(context) - 1]
    assert first["candidate"].endswith(" " + context) and sentence and sentence in context
