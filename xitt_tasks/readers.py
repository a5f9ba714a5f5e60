"""Streaming readers for the raw benchmark files (XTREME `download/` tree and original releases).

Every reader is a generator: it holds one record (one SQuAD article at most) in memory, so
a full corpus never has to fit. A malformed record raises `DataFormatError` naming the file,
the line and the expected form; with `skip_malformed=True` it is skipped instead, and one
warning with the count is logged when the generator finishes. A missing file raises
FileNotFoundError naming the path. Field values are returned as found (strings), except
where a format defines numbers (answer offsets, SIQA labels). Files are opened through
`xitt_common.fs`, so a data root may be local or remote (gs://).
"""

import csv
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from xitt_common import fs
from xitt_tasks.errors import DataFormatError, missing_file

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
_LAYOUT_HINT = "see xitt_tasks/data/README.md for the expected data-root layout"


class MissingFieldError(DataFormatError, KeyError):
    """A record lacks a field its reader needs. Still a KeyError for callers that catch one."""

    __str__ = ValueError.__str__


class JsonRecord(dict):
    """A JSON object read from `path` at `line`: a missing field names the file, the line and
    the field (DataFormatError) instead of a bare KeyError."""

    def __init__(self, record: dict, path: str, line: int):
        super().__init__(record)
        self.path, self.line = path, line

    def __missing__(self, key: str) -> Any:
        raise MissingFieldError(self.path, self.line, f"a field {key!r}",
                                f"an object with the fields {', '.join(map(str, self)) or 'none'}")


class _SkipCounter:
    """Counts skipped records; logs one warning at the end of a read."""

    def __init__(self, path: PathLike, skip: bool):
        self.path, self.skip, self.count = os.fspath(path), skip, 0

    def handle(self, error: DataFormatError) -> None:
        if not self.skip:
            raise error
        self.count += 1

    def report(self) -> None:
        if self.count:
            log.warning("skipped %d malformed record(s) in %s", self.count, self.path)


def _check_exists(path: PathLike) -> str:
    path = os.fspath(path)
    if not fs.is_file(path):
        raise missing_file(path, _LAYOUT_HINT)
    return path


def _numbered_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline), decoding errors located."""
    path = _check_exists(path)
    for number, raw in enumerate(fs.lines(path), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataFormatError(path, number, "UTF-8 text", f"invalid bytes ({e})") from e
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
        yield number, line.rstrip("\r\n")


def read_lines(path: PathLike) -> Iterator[str]:
    """Lines of a text file without their newlines (Tatoeba, label files)."""
    for _, line in _numbered_lines(path):
        yield line


def count_lines(path: PathLike) -> int:
    return sum(1 for _ in _numbered_lines(path))


def read_parallel(src_path: PathLike, tgt_path: PathLike) -> Iterator[tuple[str, str]]:
    """Pairs of line-aligned sentences (Tatoeba `{l}-en.{l}` with `{l}-en.en`).

    Raises DataFormatError naming both files if their line counts differ (after yielding
    the aligned prefix: the check needs the whole files).
    """
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    n = 0
    while True:
        a, b = next(src, None), next(tgt, None)
        if a is None or b is None:
            if a is None and b is None:
                return
            n_src = n + (0 if a is None else 1 + sum(1 for _ in src))
            n_tgt = n + (0 if b is None else 1 + sum(1 for _ in tgt))
            raise DataFormatError(
                src_path, None,
                f"as many lines as {os.fspath(tgt_path)} (the files are aligned by line)",
                f"{n_src} lines against {n_tgt}",
            )
        n += 1
        yield a, b


def _delimited_rows(
    path: str, delimiter: str, quoting: bool
) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of each non-blank row."""
    if not quoting:
        for number, line in _numbered_lines(path):
            if line.strip():
                yield number, line.split(delimiter)
        return
    text = (line.decode("utf-8-sig" if n == 0 else "utf-8")
            for n, line in enumerate(fs.lines(path)))
    reader = csv.reader(text, delimiter=delimiter)
    start = 1
    try:
        for row in reader:
            if row and any(field.strip() for field in row):
                yield start, row
            start = reader.line_num + 1
    except (csv.Error, UnicodeDecodeError) as e:
        raise DataFormatError(path, reader.line_num, "a well-formed CSV/TSV record",
                              str(e)) from e


def _read_delimited(
    path: PathLike,
    columns: Sequence[str],
    *,
    delimiter: str,
    header: bool,
    quoting: bool,
    skip_malformed: bool,
) -> Iterator[dict[str, str]]:
    path = _check_exists(path)
    columns = tuple(columns)
    kind = "tab" if delimiter == "\t" else "comma"
    skips = _SkipCounter(path, skip_malformed)
    rows = _delimited_rows(path, delimiter, quoting)
    if header:
        first = next(rows, None)
        if first is None:
            raise DataFormatError(path, 1, f"a header row naming {', '.join(columns)}",
                                  "an empty file")
        names = first[1]
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataFormatError(
                path, first[0], f"a header with the columns {', '.join(columns)}",
                f"{', '.join(names)} (missing {', '.join(missing)})",
            )
        index = [names.index(c) for c in columns]
        width, form = len(names), f"{len(names)} {kind}-separated fields (the header's)"
    else:
        index, width = list(range(len(columns))), len(columns)
        form = f"{width} {kind}-separated fields ({', '.join(columns)})"
    for number, fields in rows:
        if len(fields) != width:
            skips.handle(DataFormatError(path, number, form, str(len(fields))))
            continue
        yield {c: fields[i] for c, i in zip(columns, index)}
    skips.report()


def read_tsv(
    path: PathLike,
    columns: Sequence[str],
    *,
    header: bool = False,
    quoting: bool = False,
    skip_malformed: bool = False,
) -> Iterator[dict[str, str]]:
    """Rows of a tab-separated file as {column: value}; blank lines are ignored.

    header=False: every row has exactly len(columns) fields, named in order (XTREME's
    `xnli/*.tsv`). header=True: the first row names the fields and `columns` selects some of
    them (GLUE `MNLI/train.tsv`, `QQP/train.tsv`). quoting=True reads CSV-style quoting (a
    field in double quotes, inner quotes doubled), as Python's csv module writes it (XTREME's
    xnli files); GLUE files have literal quotes and need quoting=False.
    """
    return _read_delimited(path, columns, delimiter="\t", header=header, quoting=quoting,
                           skip_malformed=skip_malformed)


def read_csv(
    path: PathLike, columns: Sequence[str], *, skip_malformed: bool = False
) -> Iterator[dict[str, str]]:
    """Rows of a comma-separated file with a header row (Cosmos QA `train.csv`)."""
    return _read_delimited(path, columns, delimiter=",", header=True, quoting=True,
                           skip_malformed=skip_malformed)


def read_conll(path: PathLike, *, skip_malformed: bool = False) -> Iterator[dict[str, Any]]:
    """Sentences of a `token\\ttag`-per-line file, blank line between sentences.

    Yields {'tokens': [...], 'tags': [...]}; for files with tokens only (XTREME test files,
    labels stripped) 'tags' is None. A malformed line skips its whole sentence.
    """
    path = _check_exists(path)
    skips = _SkipCounter(path, skip_malformed)
    tokens: list[str] = []
    tags: list[str] = []
    bad = False
    form = "'token<TAB>tag' or 'token' (one per line, a blank line between sentences)"

    def sentence() -> dict[str, Any]:
        return {"tokens": tokens, "tags": tags if tags else None}

    for number, line in _numbered_lines(path):
        if not line.strip():
            if tokens and not bad:
                yield sentence()
            tokens, tags, bad = [], [], False
            continue
        if bad:
            continue
        fields = line.split("\t")
        error = None
        if len(fields) > 2 or not fields[0].strip():
            error = DataFormatError(path, number, form, repr(line))
        elif tokens and (len(fields) == 2) != bool(tags):
            error = DataFormatError(
                path, number, "every line of a sentence with a tag, or none",
                f"{len(fields)} field(s) after lines with {2 if tags else 1}",
            )
        if error is not None:
            skips.handle(error)
            bad = True
            continue
        tokens.append(fields[0])
        if len(fields) == 2:
            tags.append(fields[1])
    if tokens and not bad:
        yield sentence()
    skips.report()


def read_jsonl(path: PathLike, *, skip_malformed: bool = False) -> Iterator[dict[str, Any]]:
    """One JSON object per line; blank lines are ignored."""
    path = _check_exists(path)
    skips = _SkipCounter(path, skip_malformed)
    for number, line in _numbered_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            skips.handle(DataFormatError(path, number, "one JSON object per line", str(e)))
            continue
        if not isinstance(record, dict):
            skips.handle(DataFormatError(path, number, "one JSON object per line",
                                         type(record).__name__))
            continue
        yield JsonRecord(record, path, number)
    skips.report()


def _require(path: str, line: int, record: dict, fields: Sequence[str], what: str) -> None:
    missing = [f for f in fields if f not in record]
    if missing:
        raise DataFormatError(path, line, f"{what} with the fields {', '.join(fields)}",
                              f"no {', '.join(missing)} (fields: {', '.join(record)})")


def _jsonl_records(
    path: PathLike, fields: Sequence[str], what: str, skip_malformed: bool
) -> Iterator[tuple[int, dict[str, Any], _SkipCounter]]:
    """(line, record, skip counter) of JSONL records checked to have `fields`."""
    path = _check_exists(path)
    skips = _SkipCounter(path, skip_malformed)
    number = 0
    for number, line in _numbered_lines(path):  # noqa: B007
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise DataFormatError(path, number, f"one JSON object ({what}) per line",
                                      type(record).__name__)
            _require(path, number, record, fields, what)
        except json.JSONDecodeError as e:
            skips.handle(DataFormatError(path, number, f"one JSON object ({what}) per line",
                                         str(e)))
            continue
        except DataFormatError as e:
            skips.handle(e)
            continue
        yield number, JsonRecord(record, path, number), skips
    skips.report()


# --- SIQA ----------------------------------------------------------------------------------

SIQA_FIELDS = ("context", "question", "answerA", "answerB", "answerC")


def read_siqa(
    path: PathLike, labels_path: PathLike | None = None, *, skip_malformed: bool = False
) -> Iterator[dict[str, Any]]:
    """Social IQa examples with 'label' 0-2 (None when the file has no labels).

    Labels come from `labels_path` (AllenAI release: `dev-labels.lst`, one of 1/2/3 per line,
    aligned with the lines of `dev.jsonl`) or else from each record's 'correct' letter A/B/C
    (the `socialIQa_v1.4_*.jsonl` files that XTREME's download script fetches).
    """
    path = _check_exists(path)
    labels = _numbered_lines(labels_path) if labels_path is not None else None
    skips = _SkipCounter(path, skip_malformed)
    n = 0
    for number, line in _numbered_lines(path):
        if not line.strip():
            continue
        n += 1
        label_line = None
        if labels is not None:
            label_line = next(labels, None)
            if label_line is None:
                raise DataFormatError(labels_path, n, f"one label per example of {path}",
                                      f"only {n - 1} label line(s)")
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise DataFormatError(path, number, "one JSON object per line",
                                      type(record).__name__)
            _require(path, number, record, SIQA_FIELDS, "a SIQA example")
            example = {k: record[k] for k in SIQA_FIELDS}
            if label_line is not None:
                if label_line[1].strip() not in ("1", "2", "3"):
                    raise DataFormatError(labels_path, label_line[0], "a label 1, 2 or 3",
                                          repr(label_line[1]))
                example["label"] = int(label_line[1]) - 1
            elif "correct" in record:
                if record["correct"] not in ("A", "B", "C"):
                    raise DataFormatError(path, number, "'correct' to be A, B or C",
                                          repr(record["correct"]))
                example["label"] = "ABC".index(record["correct"])
            else:
                example["label"] = None
        except json.JSONDecodeError as e:
            skips.handle(DataFormatError(path, number, "one JSON object per line", str(e)))
            continue
        except DataFormatError as e:
            skips.handle(e)
            continue
        yield example
    if labels is not None and next(labels, None) is not None:
        raise DataFormatError(labels_path, n + 1, f"no more labels than the {n} examples of "
                              f"{path}", "more label lines")
    skips.report()


# --- Mewsli-X ------------------------------------------------------------------------------

ENTITY_FIELDS = ("entity_id", "title", "description", "description_language",
                 "description_url", "sentence_spans")
_CONTEXT_FIELDS = ("document_title", "document_id", "language", "text", "sentence_spans")
_MENTION_FIELDS = ("example_id", "entity_id", "mention_span")


def read_mewslix_entities(
    path: PathLike, *, skip_malformed: bool = False
) -> Iterator[dict[str, Any]]:
    """Entities of `mewslix/candidate_set_entities.jsonl` (the fields of the release)."""
    for _, record, _ in _jsonl_records(path, ENTITY_FIELDS, "a Mewsli-X entity",
                                       skip_malformed):
        yield {k: record[k] for k in ENTITY_FIELDS}


def _flat_mention(path: str, line: int, context: dict, mention: dict) -> dict[str, Any]:
    _require(path, line, context, _CONTEXT_FIELDS, "a Mewsli-X context")
    _require(path, line, mention, _MENTION_FIELDS, "a Mewsli-X mention")
    span = mention["mention_span"]
    _require(path, line, span, ("start", "end", "text"), "a mention_span")
    text = context["text"]
    if not text:
        raise DataFormatError(path, line, "the article text in context.text (restore it with "
                              "the Mewsli-X get-mewsli-x.sh script)", "an empty text")
    if text[span["start"]:span["end"]] != span["text"]:
        raise DataFormatError(
            path, line, f"mention {mention['example_id']!r} text {span['text']!r} at "
            f"context.text[{span['start']}:{span['end']}]",
            repr(text[span["start"]:span["end"]]),
        )
    return {
        "example_id": mention["example_id"],
        "entity_id": mention["entity_id"],
        "mention": span["text"],
        "mention_start": span["start"],
        "mention_end": span["end"],
        "context": text,
        "sentence_spans": context["sentence_spans"],
        "language": context["language"],
        "document_title": context["document_title"],
        "document_id": context["document_id"],
    }


def read_mewslix_mentions(
    path: PathLike, *, language: str | None = None, skip_malformed: bool = False
) -> Iterator[dict[str, Any]]:
    """One flat record per mention of `mewslix/wikinews_mentions-{dev,test}.jsonl`.

    Each line holds an article ('context') and its 'mentions'; `language` keeps one language.
    """
    for number, record, skips in _jsonl_records(path, ("context", "mentions"),
                                                 "a Mewsli-X article", skip_malformed):
        if language is not None and record["context"].get("language") != language:
            continue
        for mention in record["mentions"]:
            try:
                yield _flat_mention(os.fspath(path), number, record["context"], mention)
            except DataFormatError as e:
                skips.handle(e)


def read_mewslix_pairs(path: PathLike, *, skip_malformed: bool = False) -> Iterator[dict]:
    """Mention-entity pairs of `mewslix/wikipedia_pairs-{train,dev}.jsonl`: the flat mention
    plus 'entity' (a dict with the candidate-set fields)."""
    for number, record, skips in _jsonl_records(path, ("contextual_mention", "entity"),
                                                 "a Mewsli-X mention-entity pair",
                                                 skip_malformed):
        try:
            cm = record["contextual_mention"]
            _require(os.fspath(path), number, cm, ("context", "mention"), "a contextual_mention")
            flat = _flat_mention(os.fspath(path), number, cm["context"], cm["mention"])
            _require(os.fspath(path), number, record["entity"], ENTITY_FIELDS, "an entity")
        except DataFormatError as e:
            skips.handle(e)
            continue
        flat["entity"] = {k: record["entity"][k] for k in ENTITY_FIELDS}
        yield flat


def read_mewslix_labels(path: PathLike) -> dict[str, list[str]]:
    """A labels (or predictions) JSON `{example_id: [entity ids]}`; small, read whole."""
    path = _check_exists(path)
    with fs.open_text(path, "utf-8") as f:
        try:
            labels = json.loads("".join(iter(f.read, "")))
        except json.JSONDecodeError as e:
            raise DataFormatError(path, e.lineno, "a JSON object {example_id: [entity ids]}",
                                  str(e)) from e
    if not isinstance(labels, dict):
        raise DataFormatError(path, 1, "a JSON object {example_id: [entity ids]}",
                              type(labels).__name__)
    for key, value in labels.items():
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise DataFormatError(path, None, f"a list of entity id strings for {key!r}",
                                  repr(value)[:80])
    return labels


# SQuAD-format JSON streaming lives in its own module; re-exported here as one entry point.
from xitt_tasks.squad_json import read_squad_json  # noqa: E402,F401
