"""The XTREME-R submission layout: write predictions and gold labels, read them back strictly.

Layout: `<root>/<folder>/<split>-<lang>.<ext>` (`test-<lang>` for the leaderboard); folders and
extensions are `eval.xtreme_r.TASKS` (XTREME's `evaluate.py` names, WikiANN = `panx`):

task (ext): one prediction | gold label (same layout)
- xnli (.tsv): one label per line | the same
- xcopa (.jsonl): `{"idx": ..., "label": 0 or 1}` per line (-1: no choice matched) | the same
- udpos, panx (.tsv): one tag per line, a blank line between sentences | the same
- xquad, mlqa, tydiqa (.json): `{qid: raw answer}` | `{qid: [every gold answer]}`; an
  official SQuAD JSON (`{"data": [...]}`) is read as gold too
- mewslix (.json): `{example_id: [entity ids, best first]}` | `{example_id: [gold ids]}`
- lareqa (.json): `{question_id: [candidate ids, best first]}` | `{question_id: [gold ids]}`
- tatoeba (.tsv): one integer per line, the index of the matched English line | the gold index

LAReQA has no official prediction layout (XTREME's `evaluate.py` leaves it out); this one is
Mewsli-X's with the project's ids: question ids `{lang}:{xquad id}`, candidate ids
`{lang}:{paragraph}:{sentence}` (README of xitt_tasks).

Writers take the records of `eval.predict` (`predictions.jsonl`: one dict per example in split
order, the raw features plus `prediction`) of one seqio task `xitt.<target>.<lang>[.rank]`:
- xnli: `prediction` (label text); xcopa: `prediction` matched to `choices` (stripped, then
  case-insensitively), or, for `.rank` records (`idx`, `score`), the best-scored choice;
- udpos: space-separated tags aligned to `tokens` (`metrics.tagging.align_tags`);
  wikiann: `TYPE: surface $$ ...` spans mapped to IOB2 tags (`metrics.tagging`);
- QA: `prediction` mapped to a raw span of `context` (`metrics.qa_spans.answer_span`), by `id`;
- mewslix/lareqa: `prediction` = ranked candidate ids, by `query_id`; tatoeba: `prediction` =
  the English line index (or a ranked list of indices: the first is taken).
Every file is written atomically (temporary file + rename).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # before TF/seqio/the tasks are imported: no start-up noise
    from xitt_common.quiet import entry_point

    entry_point(own_flag=True)

from eval import xtreme_r
from eval.xtreme_r import TaskSpec
from xitt_tasks.metrics import qa_spans, tagging

_TASK_NAME = re.compile(r"xitt\.([a-z]+)\.([a-z]{2})(\.rank)?")
# The split each target is scored on locally: XTREME strips test labels of XNLI, UD-POS,
# WikiANN and TyDiQA (dev sets stand in); XQuAD, LAReQA and Tatoeba have one set, `test`.
LOCAL_SPLITS = {"xnli": "validation", "xcopa": "test", "udpos": "validation",
                "wikiann": "validation", "xquad": "test", "mlqa": "test", "tydiqa": "validation",
                "mewslix": "test", "lareqa": "test", "tatoeba": "test"}


LOCAL = "local"   # as a split: each task's LOCAL_SPLITS entry (file prefix and data split)


def split_for(task: str, split: str) -> str:
    """The split of `task` meant by `split` ('local' -> `LOCAL_SPLITS`, else `split`)."""
    return LOCAL_SPLITS[xtreme_r.get_task(task).name] if split == LOCAL else split


class LeaderboardError(ValueError):
    """Bad leaderboard input; the message names the file (and line) and what was expected."""


# ----------------------------------------------------------------------------- paths, writing

def file_name(task: str, lang: str, split: str = "test") -> str:
    """`<split>-<lang>.<ext>` (split 'local': the task's `LOCAL_SPLITS` entry)."""
    spec = xtreme_r.get_task(task)
    split = split_for(spec.name, split)
    if lang not in spec.languages:
        raise ValueError(f"{spec.name}: language {lang!r} is not part of the task "
                         f"({' '.join(spec.languages)})")
    if not split or "-" in split or "/" in split:
        raise ValueError(f"split {split!r}: expected a name without '-' or '/' (e.g. 'test')")
    return f"{split}-{lang}.{spec.ext}"


def file_path(root: str | os.PathLike, task: str, lang: str, split: str = "test") -> Path:
    """`<root>/<folder>/<split>-<lang>.<ext>`."""
    return Path(root) / xtreme_r.get_task(task).folder / file_name(task, lang, split)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def parse_task_name(task_name: str) -> tuple[TaskSpec, str, bool]:
    """`xitt.<target>.<lang>[.rank]` -> (task spec, language, is_rank)."""
    match = _TASK_NAME.fullmatch(task_name)
    if not match or match.group(1) not in xtreme_r.BY_NAME:
        raise ValueError(f"task {task_name!r} is not an XTREME-R evaluation task; expected "
                         "xitt.<target>.<lang>[.rank] with a target of "
                         f"{[t.name for t in xtreme_r.TASKS]}")
    spec = xtreme_r.BY_NAME[match.group(1)]
    lang = match.group(2)
    if lang not in spec.languages:
        raise ValueError(f"task {task_name!r}: {lang!r} is not a language of {spec.name}")
    return spec, lang, bool(match.group(3))


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def _lines(values: Iterable[str]) -> str:
    return "".join(f"{v}\n" for v in values)


def _sentences(sentences: Iterable[Sequence[str]]) -> str:
    return "\n".join("".join(f"{t}\n" for t in tags) for tags in sentences)


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=0) + "\n"


def _field(record: Mapping[str, Any], key: str, task_name: str, i: int) -> Any:
    if key not in record:
        raise ValueError(f"{task_name}: prediction record {i} has no {key!r} field "
                         f"(keys {sorted(record)})")
    return record[key]


def _xcopa_choice(record: Mapping[str, Any], task_name: str, i: int) -> int:
    prediction = str(_field(record, "prediction", task_name, i)).strip()
    choices = [str(c).strip() for c in _field(record, "choices", task_name, i)]
    for match in (lambda c: c == prediction, lambda c: c.casefold() == prediction.casefold()):
        hits = [k for k, c in enumerate(choices) if match(c)]
        if hits:
            return hits[0]
    return -1


def _xcopa_rank_labels(records: Sequence[Mapping[str, Any]], task_name: str) -> list[dict]:
    best: dict[int, tuple[float, int]] = {}
    for i, r in enumerate(records):
        example, choice = (int(v) for v in _field(r, "idx", task_name, i))
        score = float(_field(r, "score", task_name, i))
        if example not in best or score > best[example][0]:
            best[example] = (score, choice)
    return [{"idx": e, "label": best[e][1]} for e in sorted(best)]


def format_predictions(task_name: str, records: Sequence[Mapping[str, Any]]) -> str:
    """The leaderboard file text of one task-language from its `predictions.jsonl` records."""
    spec, _, rank = parse_task_name(task_name)
    records = sorted(records, key=lambda r: r.get("index", 0))
    name = spec.name
    if name == "xnli":
        return _lines(_one_line(_field(r, "prediction", task_name, i))
                      for i, r in enumerate(records))
    if name == "xcopa":
        rows = (_xcopa_rank_labels(records, task_name) if rank else
                [{"idx": r.get("id", i), "label": _xcopa_choice(r, task_name, i)}
                 for i, r in enumerate(records)])
        return _lines(json.dumps(row, ensure_ascii=False) for row in rows)
    if name in ("udpos", "wikiann"):
        sentences = []
        for i, r in enumerate(records):
            tokens = _field(r, "tokens", task_name, i)
            text = str(_field(r, "prediction", task_name, i))
            if name == "udpos":
                tags, _ = tagging.align_tags(text, len(tokens), tagging.UPOS_TAGS)
            else:
                tags, _ = tagging.spans_to_tags(tokens, tagging.parse_spans(text)[0])
            sentences.append(tags)
        return _sentences(sentences)
    if spec.category == "qa":
        return _json({str(_field(r, "id", task_name, i)): qa_spans.answer_span(
            str(_field(r, "prediction", task_name, i)),
            str(_field(r, "context", task_name, i))).text for i, r in enumerate(records)})
    if name in ("mewslix", "lareqa"):
        out = {}
        for i, r in enumerate(records):
            ranking = _field(r, "prediction", task_name, i)
            if isinstance(ranking, str) or not isinstance(ranking, Sequence):
                raise ValueError(f"{task_name}: record {i} prediction {ranking!r:.60} is not a "
                                 "list of candidate ids (best first)")
            out[str(_field(r, "query_id", task_name, i))] = [str(c) for c in ranking]
        return _json(out)
    # tatoeba
    indices = []
    for i, r in enumerate(records):
        value = _field(r, "prediction", task_name, i)
        if isinstance(value, Sequence) and not isinstance(value, str):
            value = value[0] if value else -1
        try:
            indices.append(int(value))
        except (TypeError, ValueError):
            raise ValueError(f"{task_name}: record {i} prediction {value!r:.60} is not an "
                             "English line index") from None
    return _lines(str(v) for v in indices)


def write_predictions(root: str | os.PathLike, task_name: str,
                      records: Sequence[Mapping[str, Any]], split: str = "test") -> Path:
    """Write `<root>/<folder>/<split>-<lang>.<ext>` for seqio task `task_name`; returns it."""
    spec, lang, _ = parse_task_name(task_name)
    path = file_path(root, spec.name, lang, split)
    atomic_write_text(path, format_predictions(task_name, records))
    return path


def write_from_eval_dir(eval_dir: str | os.PathLike, root: str | os.PathLike,
                        split: str = "test") -> list[Path]:
    """Leaderboard files from `python -m eval` output: every `<eval_dir>/<task>/
    predictions.jsonl` (and `<eval_dir>/predictions.jsonl` if `eval_dir` is named for a task)
    whose task is an XTREME-R evaluation task; other tasks are skipped."""
    eval_dir = Path(eval_dir)
    written = []
    for path in sorted([eval_dir / "predictions.jsonl", *eval_dir.glob("*/predictions.jsonl")]):
        if not path.exists():
            continue
        try:
            parse_task_name(path.parent.name)
        except ValueError:
            continue
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                   if line.strip()]
        written.append(write_predictions(root, path.parent.name, records, split))
    return written


# ----------------------------------------------------------------------------- gold labels

def format_gold(task: str, examples: Sequence[Mapping[str, Any]]) -> str:
    """Gold-label file text from canonical raw examples (`xitt_tasks.formats.SCHEMAS`)."""
    spec = xtreme_r.get_task(task)
    name = spec.name
    if name == "xnli":
        return _lines(_one_line(ex["label"]) for ex in examples)
    if name == "xcopa":
        for i, ex in enumerate(examples):
            if int(ex["label"]) < 0:
                raise ValueError(f"xcopa: example {i} has no label (-1); gold needs labels")
        return _lines(json.dumps({"idx": ex["id"], "label": int(ex["label"])}, ensure_ascii=False)
                      for ex in examples)
    if name in ("udpos", "wikiann"):
        return _sentences(list(ex["tags"]) for ex in examples)
    if spec.category == "qa":
        return _json({ex["id"]: list(ex["answers"]) for ex in examples})
    if name in ("mewslix", "lareqa"):
        return _json({ex["query_id"]: list(ex["gold_ids"]) for ex in examples})
    return _lines(str(int(ex["candidate_id"])) for ex in examples)  # tatoeba


def _py(value: Any) -> Any:
    import numpy as np

    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_py(v) for v in value.tolist()] if value.ndim else _py(value.item())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_py(v) for v in value]
    return value


def raw_examples(task_name: str, split: str) -> list[dict[str, Any]]:
    """The canonical raw examples of a seqio task's split, in split order.

    A file source is read with its Python reader (what its tf.data generator runs); any other
    source through `get_dataset(split, shuffle=False)`."""
    import seqio

    from xitt_tasks.sources import XittSource

    task = seqio.get_mixture_or_task(task_name)
    source = task.source
    if split not in source.splits:
        raise ValueError(f"task {task_name!r} has no split {split!r} (splits: "
                         f"{list(source.splits)})")
    if isinstance(source, XittSource) and source.resolved_kind() == "files":
        return [_py(ex) for ex in source.read(source.paths(split))]
    return [{k: _py(v) for k, v in ex.items()}
            for ex in source.get_dataset(split, shuffle=False).as_numpy_iterator()]


@dataclasses.dataclass
class GoldReport:
    written: list[Path]
    skipped: list[str]   # "task/lang: why"


def write_gold_labels(root: str | os.PathLike, split: str = "test", *,
                      tasks: Sequence[str] | None = None,
                      source_splits: Mapping[str, str] | None = None) -> GoldReport:
    """Gold labels in the leaderboard layout from the seqio tasks `xitt.<target>.<lang>`.

    Files are named for `split` ('local': each task's `LOCAL_SPLITS` entry, where dev sets
    stand in for the stripped test labels); the data come from `source_splits[target]` when
    given, else from that split. A task without the split is skipped and reported."""
    import seqio

    report = GoldReport([], [])
    for spec in (xtreme_r.TASKS if tasks is None else [xtreme_r.get_task(t) for t in tasks]):
        data_split = (source_splits or {}).get(spec.name, split_for(spec.name, split))
        for lang in spec.languages:
            task_name = f"xitt.{spec.name}.{lang}"
            if data_split not in seqio.get_mixture_or_task(task_name).splits:
                report.skipped.append(f"{spec.folder}/{lang}: {task_name} has no split "
                                      f"{data_split!r}")
                continue
            path = file_path(root, spec.name, lang, split)
            atomic_write_text(path, format_gold(spec.name, raw_examples(task_name, data_split)))
            report.written.append(path)
    return report


# ----------------------------------------------------------------------------- reading

@dataclasses.dataclass
class Parsed:
    """One leaderboard file: `values` (a list for line formats, a dict for JSON) and, for
    line formats, the 1-based line number of each value (of each sentence's first tag)."""

    path: Path
    values: Any
    lines: list[int] | None = None


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise LeaderboardError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LeaderboardError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _split_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LeaderboardError(f"{path}:{e.lineno}:{e.colno}: malformed JSON ({e.msg})") from None


def _read_tags(path: Path) -> Parsed:
    sentences: list[list[str]] = []
    starts: list[int] = []
    current: list[str] = []
    for n, line in enumerate(_split_lines(_read_text(path)), start=1):
        tag = line.strip()
        if not tag:
            if current:
                sentences.append(current)
                current = []
            continue
        if len(tag.split()) != 1:
            raise LeaderboardError(f"{path}:{n}: {line!r:.60} holds more than one field; "
                                   "expected one tag per line")
        if not current:
            starts.append(n)
        current.append(tag)
    if current:
        sentences.append(current)
    return Parsed(path, sentences, starts)


def _read_xcopa(path: Path) -> Parsed:
    labels, numbers = [], []
    for n, line in enumerate(_split_lines(_read_text(path)), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise LeaderboardError(f"{path}:{n}: malformed JSON ({e.msg})") from None
        if not isinstance(row, dict) or "label" not in row:
            raise LeaderboardError(f"{path}:{n}: expected a JSON object with 'label', got "
                                   f"{line!r:.60}")
        labels.append(row["label"])
        numbers.append(n)
    return Parsed(path, labels, numbers)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _squad_gold(path: Path, data: list) -> dict[str, list[str]]:
    out = {}
    try:
        for article in data:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    out[str(qa["id"])] = [str(a["text"]) for a in qa["answers"]]
    except (KeyError, TypeError) as e:
        raise LeaderboardError(f"{path}: SQuAD JSON without {e} where expected "
                               "(data/paragraphs/qas/answers/text)") from None
    return out


def _read_json_map(path: Path, spec: TaskSpec, gold: bool) -> Parsed:
    data = _read_json(path)
    if spec.category == "qa" and gold and isinstance(data, dict) and \
            isinstance(data.get("data"), list):
        return Parsed(path, _squad_gold(path, data["data"]))
    if not isinstance(data, dict):
        raise LeaderboardError(f"{path}: top level is {type(data).__name__}; expected a JSON "
                               "object {id: ...}")
    want_list = gold or spec.category != "qa"
    for key, value in data.items():
        ok = _str_list(value) if want_list else isinstance(value, str)
        if not ok:
            what = "a list of strings" if want_list else "a string (the answer)"
            raise LeaderboardError(f"{path}: value of {key!r} is {json.dumps(value)[:60]}; "
                                   f"expected {what}")
    return Parsed(path, data)


def read_file(path: str | os.PathLike, task: str, *, gold: bool = False) -> Parsed:
    """Parse one leaderboard file of `task` (predictions, or gold labels with `gold=True`)."""
    path = Path(path)
    spec = xtreme_r.get_task(task)
    if spec.ext == "json":
        return _read_json_map(path, spec, gold)
    if spec.name == "xcopa":
        return _read_xcopa(path)
    if spec.name in ("udpos", "wikiann"):
        return _read_tags(path)
    lines = _split_lines(_read_text(path))
    values: list[Any] = [line.strip() for line in lines]
    if spec.name == "tatoeba":
        for n, value in enumerate(values, start=1):
            try:
                values[n - 1] = int(value)
            except ValueError:
                raise LeaderboardError(f"{path}:{n}: {value!r:.40} is not an integer; "
                                       "expected the index of the matched English line") from None
    return Parsed(path, values, list(range(1, len(values) + 1)))


def check_aligned(pred: Parsed, gold: Parsed) -> None:
    """Line formats: as many predictions as gold labels (tags: per sentence too)."""
    if pred.lines is None:
        return
    if len(pred.values) != len(gold.values):
        unit = "sentences" if pred.values and isinstance(pred.values[0], list) else "lines"
        raise LeaderboardError(f"{pred.path}: {len(pred.values)} {unit} but the gold labels "
                               f"{gold.path} have {len(gold.values)}; expected one per example")
    for k, (p, g) in enumerate(zip(pred.values, gold.values)):
        if isinstance(g, list) and len(p) != len(g):
            raise LeaderboardError(
                f"{pred.path}:{pred.lines[k]}: sentence {k + 1} has {len(p)} tags but the gold "
                f"sentence ({gold.path}:{gold.lines[k]}) has {len(g)}; expected one per token")


# ----------------------------------------------------------------------------- command line

def main(argv: Sequence[str] | None = None) -> int:
    """`python -m eval.leaderboard --gold_labels DIR [--split test|local|validation]`."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m eval.leaderboard",
        description="Write gold labels of the XTREME-R tasks (data under $XITT_DATA_DIR, "
                    "default the shipped sample) in the leaderboard layout.")
    parser.add_argument("--gold_labels", required=True, help="output folder")
    parser.add_argument("--split", default="test",
                        help="file prefix and data split; 'local': each task's local scoring "
                             f"split (dev sets where XTREME strips test labels: {LOCAL_SPLITS})")
    parser.add_argument("--verbose", action="store_true", help="tracebacks on errors")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report = write_gold_labels(args.gold_labels, args.split)
    except (ValueError, OSError) as e:
        if args.verbose:
            raise
        print(f"eval.leaderboard: error: {e}", file=sys.stderr)
        return 2
    print(f"{len(report.written)} gold files written under {args.gold_labels}")
    for line in report.skipped:
        print(f"skipped {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
