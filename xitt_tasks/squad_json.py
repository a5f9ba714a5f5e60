"""Streaming reader for SQuAD-format JSON (SQuAD, XQuAD, MLQA, TyDiQA-GoldP, XQuAD-R).

The file is one object `{"data": [article, ...], "version": ...}`. Instead of `json.load`
(a 40 MB SQuAD train file becomes ~1 GB of Python objects), a small incremental parser walks
the top-level object and decodes one article at a time with the standard library's
`JSONDecoder.raw_decode`, reading the file in chunks (through `xitt_common.fs`: local or gs://).
No extra dependency is needed.
"""

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from xitt_common import fs
from xitt_tasks.errors import DataFormatError, missing_file

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_WS = " \t\n\r"
_decoder = json.JSONDecoder()


class _JsonStream:
    """A cursor over a JSON text read in chunks, tracking line numbers."""

    def __init__(self, f: fs.TextReader, path: str):
        self.f, self.path = f, path
        self.buf, self.pos, self.lines_before, self.eof = "", 0, 0, False

    def line(self) -> int:
        return 1 + self.lines_before + self.buf.count("\n", 0, self.pos)

    def _fill(self) -> bool:
        if self.eof:
            return False
        if self.pos > _CHUNK:  # drop what was consumed
            self.lines_before += self.buf.count("\n", 0, self.pos)
            self.buf, self.pos = self.buf[self.pos:], 0
        chunk = self.f.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def peek(self) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf) or not self._fill():
                return self.buf[self.pos:self.pos + 1]

    def expect(self, chars: str, what: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            raise DataFormatError(self.path, self.line(), what, repr(c) if c else "end of file")
        self.pos += 1
        return c

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = _decoder.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:  # a number may continue in the next chunk
                    self.pos = end
                    return value
            except json.JSONDecodeError as e:
                if self.eof:
                    raise DataFormatError(self.path, self.line(), "a JSON value",
                                          f"{e.msg} at line {self.lines_before + e.lineno}") from e
            self._fill()


def _articles(f: fs.TextReader, path: str) -> Iterator[tuple[int, int, Any]]:
    """(line, index, article) of the top-level 'data' array."""
    s = _JsonStream(f, path)
    s.expect("{", 'a JSON object {"data": [...]} (SQuAD format)')
    seen_data = False
    if s.peek() == "}":
        s.pos += 1
    else:
        while True:
            key = s.value()
            s.expect(":", "':' after a key")
            if key == "data":
                seen_data = True
                s.expect("[", "'data' to be an array of articles")
                if s.peek() == "]":
                    s.pos += 1
                else:
                    index = 0
                    while True:
                        s.peek()  # to the article's first character
                        line = s.line()
                        yield line, index, s.value()
                        index += 1
                        if s.expect(",]", "',' or ']' in the 'data' array") == "]":
                            break
            else:
                s.value()
            if s.expect(",}", "',' or '}' in the top-level object") == "}":
                break
    if not seen_data:
        raise DataFormatError(path, 1, 'a top-level "data" array (SQuAD format)', "none")


def _questions(path: str, line: int, index: int, article: Any) -> Iterator[dict[str, Any]]:
    """Flat question records of one article; raises DataFormatError on a malformed part."""
    where = f"data[{index}]"

    def fail(expected: str, got: Any) -> DataFormatError:
        return DataFormatError(path, line, f"{where}{expected}", repr(got)[:120])

    if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
        raise fail(" to be an object with a 'paragraphs' list", article)
    title = article.get("title", "")
    for p, paragraph in enumerate(article["paragraphs"]):
        if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str) \
                or not isinstance(paragraph.get("qas"), list):
            raise fail(f".paragraphs[{p}] to have a 'context' string and a 'qas' list",
                       paragraph)
        context = paragraph["context"]
        for q, qa in enumerate(paragraph["qas"]):
            at = f".paragraphs[{p}].qas[{q}]"
            if not isinstance(qa, dict) or not all(k in qa for k in ("id", "question", "answers")):
                raise fail(f"{at} to have 'id', 'question' and 'answers'", qa)
            texts, starts = [], []
            for a, answer in enumerate(qa["answers"]):
                try:
                    text, start = answer["text"], int(answer["answer_start"])
                except (TypeError, KeyError, ValueError):
                    raise fail(f"{at}.answers[{a}] to be {{'text', 'answer_start'}}",
                               answer) from None
                if context[start:start + len(text)] != text:
                    raise fail(f"{at}.answers[{a}] text {text!r} at context[{start}:"
                               f"{start + len(text)}]", context[start:start + len(text)])
                texts.append(text)
                starts.append(start)
            yield {
                "id": str(qa["id"]),
                "title": title,
                "context": context,
                "question": qa["question"],
                "answers": texts,
                "answer_starts": starts,
                "is_impossible": bool(qa.get("is_impossible", False)),
                "sentence_breaks": paragraph.get("sentence_breaks"),
            }


def read_squad_json(path: str | os.PathLike, *, skip_malformed: bool = False
                    ) -> Iterator[dict[str, Any]]:
    """One record per question: {'id', 'title', 'context', 'question', 'answers': [texts],
    'answer_starts': [ints], 'is_impossible', 'sentence_breaks'}.

    'sentence_breaks' is the paragraph's [[start, end], ...] (XQuAD-R / LAReQA) or None.
    Answer offsets are checked against the context. With skip_malformed, a malformed article
    is skipped whole (an error is located at the line where its article starts).
    """
    path = os.fspath(path)
    if not fs.is_file(path):
        raise missing_file(path, "see xitt_tasks/data/README.md for the expected data-root "
                                 "layout")
    skipped = 0
    with fs.open_text(path) as f:
        for line, index, article in _articles(f, path):
            try:
                records = list(_questions(path, line, index, article))
            except DataFormatError:
                if not skip_malformed:
                    raise
                skipped += 1
                continue
            yield from records
    if skipped:
        log.warning("skipped %d malformed article(s) in %s", skipped, path)
