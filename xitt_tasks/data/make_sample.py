"""Generates the synthetic sample data root `xitt_tasks/data/sample/` deterministically.

    python -m xitt_tasks.data.make_sample            # rewrite the sample tree + CPU vocabulary
    python -m xitt_tasks.data.make_sample --check    # exit 1 if either shipped copy is stale

Sentences are rendered from the word lists of lexicon.py with a few templates, so labels
follow simple learnable rules (README.md beside this file lists them). Every file is laid out
and formatted like the real one (XTREME `download/` tree, original releases for the
intermediate tasks). Randomness comes from one `random.Random` per file, seeded by its path.
"""

import argparse
import csv
import io
import json
import os
import random
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

from xitt_tasks import languages as L
from xitt_tasks.data.lexicon import ENGLISH, ENGLISH_SURNAMES, LEXICONS, Lexicon

SAMPLE_ROOT = Path(__file__).resolve().parent / "sample"
N_TRAIN, N_DEV, N_TEST = 64, 4, 3
NLI_LABELS = ("entailment", "neutral", "contradiction")


def _rng(name: str) -> random.Random:
    return random.Random(zlib.crc32(name.encode("utf-8")))


# --- sentences ---------------------------------------------------------------------------

class Clause:
    """A rendered clause: tokens with UPOS, IOB2 NER and CCG tags."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.pos: list[str] = []
        self.ner: list[str] = []
        self.ccg: list[str] = []

    def add(self, token: str, pos: str, ner: str = "O", ccg: str = "N") -> "Clause":
        self.tokens.append(token)
        self.pos.append(pos)
        self.ner.append(ner)
        self.ccg.append(ccg)
        return self

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def offset(self, index: int) -> int:
        """Character offset of token `index` in `text`."""
        return sum(len(t) + 1 for t in self.tokens[:index])


def clause(lex: Lexicon, person: int, noun: int, place: int, *, verb: int = 0, adj: int = 0,
           negated: bool = False, with_adj: bool = True) -> Clause:
    """'<person> [not] <sees> [the] [<big>] <noun> [in] <place> .' in the lexicon's language."""
    english = lex.lang == "en"
    c = Clause().add(lex.persons[person], "PROPN", "B-PER", "NP")
    if negated:
        c.add(lex.negation, "ADV" if english else "PART", ccg="(S\\NP)/(S\\NP)")
    c.add(lex.verbs[verb], "VERB", ccg="(S[dcl]\\NP)/NP")
    if english:
        c.add("the", "DET", ccg="NP[nb]/N")
    if with_adj:
        c.add(lex.adjectives[adj], "ADJ", ccg="N/N")
    c.add(lex.nouns[noun], "NOUN", ccg="N")
    if english:
        c.add("in", "ADP", ccg="((S\\NP)\\(S\\NP))/NP")
    c.add(lex.places[place], "PROPN", "B-LOC", "NP")
    return c.add(".", "PUNCT", ccg=".")


def random_clause(lex: Lexicon, rng: random.Random, **kw) -> Clause:
    return clause(lex, rng.randrange(len(lex.persons)), rng.randrange(len(lex.nouns)),
                  rng.randrange(len(lex.places)), verb=rng.randrange(len(lex.verbs)),
                  adj=rng.randrange(len(lex.adjectives)), **kw)


def ner_sentence(lex: Lexicon, rng: random.Random) -> Clause:
    """'<person> [<surname>] <sees> <org> [in] <place> .' with PER/ORG/LOC spans."""
    c = Clause().add(rng.choice(lex.persons), "PROPN", "B-PER")
    if lex.lang == "en" and rng.random() < 0.5:
        c.add(rng.choice(ENGLISH_SURNAMES), "PROPN", "I-PER")
    c.add(rng.choice(lex.verbs), "VERB").add(rng.choice(lex.orgs), "PROPN", "B-ORG")
    if lex.lang == "en":
        c.add("in", "ADP")
    return c.add(rng.choice(lex.places), "PROPN", "B-LOC").add(".", "PUNCT")


def nli_pair(lex: Lexicon, rng: random.Random) -> tuple[str, str, str]:
    """Entailment: the premise without its adjective; contradiction: negated; neutral: another
    noun."""
    p, n, loc, v = (rng.randrange(len(lex.persons)), rng.randrange(len(lex.nouns)),
                    rng.randrange(len(lex.places)), rng.randrange(len(lex.verbs)))
    premise = clause(lex, p, n, loc, verb=v)
    label = rng.choice(NLI_LABELS)
    if label == "entailment":
        hyp = clause(lex, p, n, loc, verb=v, with_adj=False)
    elif label == "contradiction":
        hyp = clause(lex, p, n, loc, verb=v, negated=True, with_adj=False)
    else:
        hyp = clause(lex, p, (n + 1 + rng.randrange(len(lex.nouns) - 1)) % len(lex.nouns), loc,
                     verb=v, with_adj=False)
    return premise.text, hyp.text, label


def question(lex: Lexicon, person: int, noun: int) -> str:
    if lex.lang == "en":
        return f"Where does {lex.persons[person]} {lex.verbs[0][:-1]} the {lex.nouns[noun]} ?"
    return f"{lex.where} {lex.persons[person]} {lex.verbs[0]} {lex.nouns[noun]} ?"


# --- writers -----------------------------------------------------------------------------

class Sample:
    """The files of the sample tree (relative path -> text) and every natural-language text
    they contain (the vocabulary's training corpus)."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.texts: list[str] = []

    def t(self, text: str) -> str:
        self.texts.append(text)
        return text

    def tsv(self, path: str, rows: list[list[str]], *, csv_style: bool = True) -> None:
        out = io.StringIO()
        if csv_style:  # as XTREME's utils_preprocess.py writes them (csv.writer)
            csv.writer(out, delimiter="\t", lineterminator="\n").writerows(rows)
        else:  # GLUE: literal tabs, no quoting
            out.write("".join("\t".join(r) + "\n" for r in rows))
        self.files[path] = out.getvalue()

    def csv(self, path: str, rows: list[list[str]]) -> None:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        self.files[path] = out.getvalue()

    def conll(self, path: str, sentences: list[tuple[list[str], list[str] | None]]) -> None:
        blocks = []
        for tokens, tags in sentences:
            lines = tokens if tags is None else [f"{w}\t{t}" for w, t in zip(tokens, tags)]
            blocks.append("\n".join(lines) + "\n")
        self.files[path] = "\n".join(blocks)

    def jsonl(self, path: str, records: list[dict]) -> None:
        self.files[path] = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)

    def json(self, path: str, obj: object) -> None:
        self.files[path] = json.dumps(obj, ensure_ascii=False, indent=1) + "\n"

    def lines(self, path: str, lines: list[str]) -> None:
        self.files[path] = "".join(line + "\n" for line in lines)


# --- classification ----------------------------------------------------------------------

def _nli(s: Sample) -> None:
    rng = _rng("xnli/train-en.tsv")
    s.tsv("xnli/train-en.tsv", [[s.t(a), s.t(b), c] for a, b, c in
                                (nli_pair(ENGLISH, rng) for _ in range(N_TRAIN))])
    for lang in L.XNLI:
        for split, n in (("dev", N_DEV), ("test", N_TEST)):
            rng = _rng(f"xnli/{split}-{lang}")
            rows = [nli_pair(LEXICONS[lang], rng) for _ in range(n)]
            # labelled test sets, as prepare writes them from XNLI 1.0 (XTREME's download
            # strips them)
            s.tsv(f"xnli/{split}-{lang}.tsv", [[s.t(a), s.t(b), c] for a, b, c in rows])
    # GLUE MNLI (header TSV, literal quotes), SNLI 1.0 and ANLI v1.0 JSONL.
    for split, n in (("train", N_TRAIN), ("dev_matched", 2 * N_DEV)):
        rng = _rng(f"glue/MNLI/{split}")
        extra = ["label1"] if split == "train" else [f"label{i}" for i in range(1, 6)]
        rows = [["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                 "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
                 "sentence2", *extra, "gold_label"]]
        for i in range(n):
            a, b, c = nli_pair(ENGLISH, rng)
            rows.append([str(i), str(1000 + i), f"{1000 + i}e", "fiction", "", "", "", "",
                         s.t(a), s.t(b), *[c] * len(extra), c])
        s.tsv(f"glue/MNLI/{split}.tsv", rows, csv_style=False)
    for split, n in (("train", N_TRAIN), ("dev", 2 * N_DEV)):
        rng = _rng(f"snli/{split}")
        recs = []
        for i in range(n):
            a, b, c = nli_pair(ENGLISH, rng)
            recs.append({"annotator_labels": [c], "captionID": f"{i}.jpg#0", "gold_label": c,
                         "pairID": f"{i}.jpg#0r1", "sentence1": s.t(a), "sentence2": s.t(b)})
        recs.append({"annotator_labels": ["neutral", "contradiction"], "captionID": "x.jpg#0",
                     "gold_label": "-", "pairID": "x.jpg#0r1n", "sentence1": recs[0]["sentence1"],
                     "sentence2": recs[0]["sentence2"]})  # no-consensus pair, as in SNLI
        s.jsonl(f"snli/snli_1.0_{split}.jsonl", recs)
    for r in (1, 2, 3):
        for split, n in (("train", N_TRAIN // 2), ("dev", N_DEV)):
            rng = _rng(f"anli/R{r}/{split}")
            recs = []
            for i in range(n):
                a, b, c = nli_pair(ENGLISH, rng)
                recs.append({"uid": f"r{r}-{split}-{i}", "context": s.t(a), "hypothesis": s.t(b),
                             "label": c[0], "reason": ""})
            s.jsonl(f"anli/R{r}/{split}.jsonl", recs)


def _qqp(s: Sample) -> None:
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    for split, n in (("train", N_TRAIN), ("dev", 2 * N_DEV)):
        rng, rows = _rng(f"glue/QQP/{split}"), [header]
        for i in range(n):
            p, q = rng.randrange(8), rng.randrange(8)
            q1 = question(ENGLISH, p, q)
            dup = rng.random() < 0.5
            if dup:
                q2 = f"In which city does {ENGLISH.persons[p]} see the {ENGLISH.nouns[q]} ?"
            else:
                q2 = question(ENGLISH, (p + 1 + rng.randrange(7)) % 8, q)
            rows.append([str(i), str(2 * i), str(2 * i + 1), s.t(q1), s.t(q2), str(int(dup))])
        s.tsv(f"glue/QQP/{split}.tsv", rows, csv_style=False)


def _choice_with_person(lex: Lexicon, rng: random.Random, person: int, k: int
                        ) -> tuple[list[str], int]:
    """k short clauses, exactly one about `person` (the answer): the learnable rule."""
    others = [p for p in range(len(lex.persons)) if p != person]
    answer = rng.randrange(k)
    choices = []
    for i in range(k):
        who = person if i == answer else rng.choice(others)
        noun = rng.randrange(len(lex.nouns))
        choices.append(f"{lex.persons[who]} {rng.choice(lex.verbs)} {lex.nouns[noun]}")
    return choices, answer


def _multiple_choice(s: Sample) -> None:
    def copa(lex: Lexicon, rng: random.Random, idx: int, labeled: bool, xcopa: bool) -> dict:
        premise = random_clause(lex, rng)
        person = lex.persons.index(premise.tokens[0])
        choices, answer = _choice_with_person(lex, rng, person, 2)
        rec = {"premise": s.t(premise.text), "choice1": s.t(choices[0]),
               "choice2": s.t(choices[1]), "question": rng.choice(("cause", "effect")),
               "idx": idx}
        if labeled:
            rec["label"] = answer
        if xcopa:
            rec["changed"] = False
        return rec

    for split, n, labeled in (("train", N_TRAIN, True), ("val", 2 * N_DEV, True),
                              ("test", N_TEST, False)):  # SuperGLUE COPA test has no labels
        rng = _rng(f"xcopa/{split}-en")
        s.jsonl(f"xcopa/{split}-en.jsonl",
                [copa(ENGLISH, rng, i, labeled, False) for i in range(n)])
    for lang in L.XCOPA:
        for split, n in (("val", N_DEV), ("test", N_TEST)):
            rng = _rng(f"xcopa/{split}-{lang}")
            s.jsonl(f"xcopa/{split}-{lang}.jsonl",
                    [copa(LEXICONS[lang], rng, i, True, True) for i in range(n)])

    def mc(name: str, k: int, n: int) -> list[tuple[Clause, list[str], int]]:
        rng, out = _rng(name), []
        for _ in range(n):
            ctx = random_clause(ENGLISH, rng)
            choices, answer = _choice_with_person(ENGLISH, rng, ENGLISH.persons.index(
                ctx.tokens[0]), k)
            out.append((ctx, [s.t(c + " .") for c in choices], answer))
        return out

    for split, n in (("train", N_TRAIN), ("dev", 2 * N_DEV)):  # AllenAI socialiqa-train-dev
        examples = mc(f"siqa/{split}", 3, n)
        s.jsonl(f"siqa/{split}.jsonl", [
            {"context": s.t(c.text), "question": s.t(f"What will {c.tokens[0]} do next ?"),
             "answerA": ch[0], "answerB": ch[1], "answerC": ch[2]} for c, ch, _ in examples])
        s.lines(f"siqa/{split}-labels.lst", [str(a + 1) for _, _, a in examples])
    for split, n in (("train", N_TRAIN), ("val", 2 * N_DEV)):
        s.jsonl(f"hellaswag/hellaswag_{split}.jsonl", [
            {"ind": i, "activity_label": "Sample", "ctx_a": s.t(c.text), "ctx_b": "then",
             "ctx": s.t(c.text + " then"), "split": split, "split_type": "indomain",
             "endings": ch, "label": a, "source_id": f"sample~{i}"}
            for i, (c, ch, a) in enumerate(mc(f"hellaswag/{split}", 4, n))])
    for split, n in (("train", N_TRAIN), ("valid", 2 * N_DEV)):
        rows = [["id", "context", "question", "answer0", "answer1", "answer2", "answer3",
                 "label"]]
        for i, (c, ch, a) in enumerate(mc(f"cosmosqa/{split}", 4, n)):
            rows.append([f"cosmos-{split}-{i}", s.t(c.text + ' He said "yes" , then left .'),
                         s.t(f"What may {c.tokens[0]} do next ?"), *ch, str(a)])
        s.csv(f"cosmosqa/{split}.csv", rows)
    for split, n in (("train", N_TRAIN), ("dev", 2 * N_DEV)):
        recs = []
        for i, (c, ch, a) in enumerate(mc(f"commonsenseqa/{split}", 5, n)):
            stem = s.t(f"{c.text} Who {c.tokens[1]} something ?")
            recs.append({"answerKey": "ABCDE"[a], "id": f"csqa-{split}-{i}", "question": {
                "question_concept": c.tokens[0], "stem": stem,
                "choices": [{"label": "ABCDE"[j], "text": t} for j, t in enumerate(ch)]}})
        s.jsonl(f"commonsenseqa/{split}_rand_split.jsonl", recs)


# --- tagging -----------------------------------------------------------------------------

def _tagging(s: Sample) -> None:
    def tagged(name: str, lex: Lexicon, n: int, make: Callable, attr: str, labeled: bool):
        rng, out = _rng(name), []
        for _ in range(n):
            c = make(lex, rng)
            s.t(c.text)
            out.append((c.tokens, getattr(c, attr) if labeled else None))
        return out

    pos = lambda lex, rng: random_clause(lex, rng, negated=rng.random() < 0.3)
    s.conll("udpos/train-en.tsv", tagged("udpos/train-en", ENGLISH, N_TRAIN, pos, "pos", True))
    s.conll("panx/train-en.tsv", tagged("panx/train-en", ENGLISH, N_TRAIN, ner_sentence, "ner",
                                        True))
    for task, langs, make, attr in (("udpos", L.UDPOS, pos, "pos"),
                                    ("panx", L.WIKIANN, ner_sentence, "ner")):
        for lang in langs:
            for split, n in (("dev", N_DEV), ("test", N_TEST)):  # labelled, as the originals
                name = f"{task}/{split}-{lang}"
                s.conll(name + ".tsv", tagged(name, LEXICONS[lang], n, make, attr, True))
    for split, n in (("train", N_TRAIN), ("dev", 2 * N_DEV)):
        s.conll(f"ccg/{split}.tsv", tagged(f"ccg/{split}", ENGLISH, n, pos, "ccg", True))


# --- QA and retrieval --------------------------------------------------------------------

def qa_paragraph(s: Sample, lex: Lexicon, rng: random.Random, qid: str, *,
                 impossible: bool = False, v2: bool = False) -> dict:
    """Two clauses about two people in two places; each question asks where one of them
    sees their noun, the answer is that clause's place (a span at its char offset)."""
    persons = rng.sample(range(len(lex.persons)), 2)
    places = rng.sample(range(len(lex.places)), 2)
    nouns = [rng.randrange(len(lex.nouns)) for _ in range(2)]
    clauses = [clause(lex, persons[i], nouns[i], places[i]) for i in range(2)]
    context = s.t(clauses[0].text + " " + clauses[1].text)
    breaks = [[0, len(clauses[0].text)], [len(clauses[0].text) + 1, len(context)]]
    qas = []
    for i in range(2):
        q = {"id": f"{qid}-{i}", "question": s.t(question(lex, persons[i], nouns[i]))}
        place_at = clauses[i].tokens.index(lex.places[places[i]])
        start = breaks[i][0] + clauses[i].offset(place_at)
        q["answers"] = [{"text": lex.places[places[i]], "answer_start": start}]
        if impossible and i == 1:  # ask about someone absent from the context
            absent = [p for p in range(len(lex.persons)) if p not in persons]
            q["question"] = s.t(question(lex, absent[0], nouns[i]))
            q["answers"] = []
        if v2:
            q["is_impossible"] = not q["answers"]
        qas.append(q)
    return {"context": context, "qas": qas, "sentence_breaks": breaks}


def squad_file(s: Sample, path: str, lex: Lexicon, n_paragraphs: int, *, version: str = "1.1",
               id_prefix: str = "", with_breaks: bool = False) -> None:
    rng = _rng(path.split("/")[0] + "/" + id_prefix if id_prefix else path)
    v2 = version == "v2.0"
    paragraphs = []
    for i in range(n_paragraphs):
        p = qa_paragraph(s, lex, rng, f"{id_prefix or path}-{i}",
                         impossible=v2 and i % 2 == 1, v2=v2)
        if not with_breaks:
            del p["sentence_breaks"]
        paragraphs.append(p)
    s.json(path, {"version": version, "data": [{"title": "Sample", "paragraphs": paragraphs}]})


def _qa(s: Sample) -> None:
    half = N_TRAIN // 2  # two questions per paragraph
    squad_file(s, "squad/train-v1.1.json", ENGLISH, half)
    squad_file(s, "squad/dev-v1.1.json", ENGLISH, N_DEV)
    squad_file(s, "squad/train-v2.0.json", ENGLISH, half, version="v2.0")
    squad_file(s, "squad/dev-v2.0.json", ENGLISH, N_DEV, version="v2.0")
    # Parallel across languages, like the real XQuAD / MLQA / XQuAD-R: shared ids and seeds.
    for lang in L.XQUAD:
        squad_file(s, f"xquad/xquad.{lang}.json", LEXICONS[lang], 2, id_prefix="xquad")
    for lang in L.MLQA:
        for split in ("dev", "test"):
            squad_file(s, f"mlqa/MLQA_V1/{split}/{split}-context-{lang}-question-{lang}.json",
                       LEXICONS[lang], 2, id_prefix=f"mlqa-{split}")
    squad_file(s, "tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json", ENGLISH, half)
    for lang in L.TYDIQA:
        squad_file(s, f"tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json",
                   LEXICONS[lang], 2, id_prefix="tydiqa-dev")
    for lang in L.LAREQA:
        squad_file(s, f"lareqa/xquad-r/{lang}.json", LEXICONS[lang], 2, id_prefix="xquadr",
                   with_breaks=True)


def _tatoeba(s: Sample) -> None:
    for lang in L.TATOEBA:
        rng = _rng(f"tatoeba/{lang}")
        combos = [(p, n, pl) for p in range(2) for n in range(3) for pl in range(2)]
        picked = rng.sample(combos, 5)
        s.lines(f"tatoeba/{lang}-en.{lang}", [s.t(clause(LEXICONS[lang], *c).text)
                                              for c in picked])
        s.lines(f"tatoeba/{lang}-en.en", [s.t(clause(LEXICONS["en"], *c).text) for c in picked])


def _mewslix(s: Sample) -> None:
    """Entities are the people and places of each language; a mention's surface form equals
    its entity's title (the learnable rule). Layout and fields of the Mewsli-X release."""
    entities: dict[tuple[str, str], dict] = {}

    def entity(lex: Lexicon, name: str, kind: str) -> str:
        key = (lex.lang, name)
        if key not in entities:
            qid = f"Q{100 + len(entities)}"
            desc = s.t(f"{name} . {name} {lex.verbs[0]} {lex.nouns[0]} ." if kind == "PER"
                       else f"{name} {lex.adjectives[0]} .")
            entities[key] = {"entity_id": qid, "title": name, "description": desc,
                             "sentence_spans": [{"start": 0, "end": len(desc)}],
                             "description_language": lex.lang,
                             "description_url": f"https://{lex.lang}.wikipedia.org/wiki/{qid}"}
        return entities[key]["entity_id"]

    def context(lex: Lexicon, c: Clause, doc: str) -> dict:
        return {"document_title": doc, "document_url": f"https://example.org/{doc}",
                "document_id": doc, "language": lex.lang, "text": s.t(c.text),
                "sentence_spans": [{"start": 0, "end": len(c.text)}], "section_title": ""}

    def mentions(lex: Lexicon, c: Clause, doc: str) -> list[dict]:
        out = []
        for idx, tag in ((0, "PER"), (len(c.tokens) - 2, "LOC")):
            name = c.tokens[idx]
            out.append({"example_id": f"{doc}-{idx}", "entity_id": entity(lex, name, tag),
                        "mention_span": {"start": c.offset(idx), "end": c.offset(idx) + len(name),
                                         "text": name}})
        return out

    for split, n in (("train", N_TRAIN // 2), ("dev", N_DEV)):
        rng, recs = _rng(f"mewslix/wikipedia_pairs-{split}"), []
        for i in range(n):
            c = random_clause(ENGLISH, rng)
            doc = f"enwiki-{split}-{i}"
            for m in mentions(ENGLISH, c, doc):
                key = next(k for k, e in entities.items() if e["entity_id"] == m["entity_id"])
                recs.append({"contextual_mention": {"context": context(ENGLISH, c, doc),
                                                    "mention": m}, "entity": entities[key]})
        s.jsonl(f"mewslix/wikipedia_pairs-{split}.jsonl", recs)
    for split in ("dev", "test"):
        recs = []
        for lang in L.MEWSLIX:
            rng = _rng(f"mewslix/wikinews-{split}-{lang}")
            for i in range(2):  # two articles, two mentions each
                c = random_clause(LEXICONS[lang], rng)
                doc = f"wikinews-{split}-{lang}-{i}"
                recs.append({"context": context(LEXICONS[lang], c, doc),
                             "mentions": mentions(LEXICONS[lang], c, doc)})
        s.jsonl(f"mewslix/wikinews_mentions-{split}.jsonl", recs)
    for lex in (LEXICONS[lang] for lang in L.XTREME_R_LANGUAGES):  # distractor candidates
        for name in lex.places + lex.persons:
            entity(lex, name, "PER" if name in lex.persons else "LOC")
    s.jsonl("mewslix/candidate_set_entities.jsonl", list(entities.values()))


# --- X-STILTs' alternatives: translate-train and an mC4-like corpus ------------------------
# Their texts stay out of `texts` (the CPU vocabulary's corpus, which must not change): they
# reuse the lexicons' words, which the vocabulary already covers.

MC4_DOCS = {"en": 48, "de": 24, "ru": 16, "zh": 12, "hi": 8, "sw": 4}  # skewed, like mC4


def _translate_train(s: Sample) -> None:
    """XTREME's translations (bucket layout): MNLI -> XNLI languages, SQuAD -> XQuAD's."""
    for lang in (x for x in L.XNLI if x != "en"):
        name = f"xtreme_translations/XNLI/translate-train/en-{lang}-translated.tsv"
        rng_en, rng_l = _rng(name), _rng(name)  # same draws: the same examples, translated
        rows = []
        for _ in range(N_TRAIN // 2):
            (a, b, c), (ta, tb, _) = (nli_pair(LEXICONS["en"], rng_en),
                                      nli_pair(LEXICONS[lang], rng_l))
            rows.append([a, b, ta, tb, "contradictory" if c == "contradiction" else c])
        s.tsv(name, rows, csv_style=False)
    scratch = Sample()  # squad_file records its texts: keep them out of the vocabulary corpus
    for lang in (x for x in L.XQUAD if x not in ("en", "ro")):
        squad_file(scratch, f"xtreme_translations/SQuAD/translate-train/"
                   f"squad.translate.train.en-{lang}.json", LEXICONS[lang], N_TRAIN // 4,
                   id_prefix="squad-translate-train")
    s.files.update(scratch.files)


def _mc4(s: Sample) -> None:
    """mC4's JSON-lines layout (`text`, `timestamp`, `url`), train and validation shards."""
    for lang, n in MC4_DOCS.items():
        for split, count in (("", n), ("-validation", 2)):
            name = f"mc4/multilingual/c4-{lang}{split}.tfrecord-00000-of-00001.json"
            rng = _rng(name)
            s.jsonl(name, [{"text": " ".join(random_clause(LEXICONS[lang], rng).text
                                             for _ in range(2 + rng.randrange(4))),
                            "timestamp": "2020-01-01T00:00:00Z",
                            "url": f"https://example.org/{lang}/{split or 'train'}/{i}"}
                           for i in range(count)])


def build() -> Sample:
    s = Sample()
    for part in (_nli, _qqp, _multiple_choice, _tagging, _qa, _tatoeba, _mewslix,
                 _translate_train, _mc4):
        part(s)
    return s


def write(root: Path = SAMPLE_ROOT) -> int:
    """Writes the sample tree (each file atomically); returns the number of files."""
    files = build().files
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    return len(files)


def stale_files(root: Path = SAMPLE_ROOT) -> list[str]:
    """Paths whose shipped content differs from (or is missing in) a fresh build."""
    stale = []
    for rel, text in build().files.items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(rel)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=SAMPLE_ROOT)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    from xitt_tasks import vocab  # trained on this data, so regenerated with it

    if args.check:
        stale = stale_files(args.root)
        if vocab.train_cpu_model(build().texts) != vocab.CPU_MODEL_PATH.read_bytes():
            stale.append(str(vocab.CPU_MODEL_PATH))
        print(f"{len(stale)} stale file(s)" + "".join(f"\n  {p}" for p in stale))
        return 1 if stale else 0
    print(f"wrote {write(args.root)} files under {args.root}")
    if args.root == SAMPLE_ROOT:
        print(f"wrote {vocab.CPU_MODEL_PATH} ({vocab.write_cpu_model(build().texts)} pieces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
