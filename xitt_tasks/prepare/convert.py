"""Unpack a downloaded release and turn its files into the data-root layout.

Plain outputs are streamed from the archive member to the data root (local or gs://) under a
temporary name and renamed, so a killed run never leaves a half-written file at a final
path. Transforms (the quirks) work on one member's bytes: XNLI's one-file-per-split release
split per language, GLUE MNLI as XNLI's English training file, TyDiQA-GoldP's English part.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from typing import IO

from xitt_common import fs


class ConvertError(ValueError):
    """A release does not hold what its table entry says (names the archive and member)."""


def _match(names: Sequence[str], member: str, archive: str) -> str:
    if member.startswith("*/"):
        found = [n for n in names if n.partition("/")[2] == member[2:]]
    else:
        found = [n for n in names if n == member]
    if len(found) != 1:
        raise ConvertError(f"{archive}: expected one member {member!r}, found "
                           f"{len(found)} (first entries: {list(names)[:5]})")
    return found[0]


@contextlib.contextmanager
def open_member(download: str, kind: str | None, member: str) -> Iterator[IO[bytes]]:
    """A binary stream of `member` of the archive `download` (or of the file itself: '.')."""
    if kind is None or member == ".":
        with open(download, "rb") as f:
            yield f
    elif kind == ".zip":
        with zipfile.ZipFile(download) as z:
            name = _match([i.filename for i in z.infolist() if not i.is_dir()], member, download)
            with z.open(name) as f:
                yield f
    else:
        with tarfile.open(download, "r:gz") as t:
            name = _match([m.name for m in t.getmembers() if m.isfile()], member, download)
            f = t.extractfile(name)
            assert f is not None
            with f:
                yield f


def write_output(download: str, kind: str | None, member: str, dest: str,
                 transform=None) -> None:
    try:
        with open_member(download, kind, member) as f:
            if transform is None:
                fs.write_stream_atomic(dest, f)
            else:
                fs.write_bytes_atomic(dest, transform(f.read()))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise ConvertError(f"{download}: not a readable {kind} archive ({e})") from e


# ----------------------------------------------------------------------------- transforms

def _tsv_rows(data: bytes, what: str) -> Iterator[dict[str, str]]:
    """Rows of a header TSV with literal quotes (XNLI 1.0, GLUE) as {column: value}."""
    lines = data.decode("utf-8-sig").splitlines()
    if not lines:
        raise ConvertError(f"{what}: empty file; expected a header row")
    header = lines[0].split("\t")
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ConvertError(f"{what}:{number}: expected {len(header)} tab-separated fields "
                               f"(the header's), got {len(fields)}")
        yield dict(zip(header, fields))


def _quoted_tsv(rows: Iterator[tuple[str, str, str]]) -> bytes:
    """premise \\t hypothesis \\t label, CSV-style quoting (as XTREME's files are written)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def xnli_language(lang: str, data: bytes) -> bytes:
    """One language of XNLI 1.0's `xnli.{dev,test}.tsv` (all languages, labelled)."""
    return _quoted_tsv((r["sentence1"], r["sentence2"], r["gold_label"])
                       for r in _tsv_rows(data, "XNLI-1.0/xnli.*.tsv") if r["language"] == lang)


def mnli_as_xnli(data: bytes) -> bytes:
    """GLUE MNLI train.tsv as XTREME's `xnli/train-en.tsv` (same 392,702 pairs)."""
    return _quoted_tsv((r["sentence1"], r["sentence2"], r["gold_label"])
                       for r in _tsv_rows(data, "MNLI/train.tsv"))


def squad_id_prefix(prefix: str, data: bytes) -> bytes:
    """The questions of a SQuAD-format file whose id starts with `prefix` (TyDiQA-GoldP's train
    file holds every language; ids read `english-...`); emptied paragraphs are dropped."""
    doc = json.loads(data.decode("utf-8-sig"))
    articles = []
    for article in doc["data"]:
        paragraphs = []
        for p in article["paragraphs"]:
            qas = [qa for qa in p["qas"] if str(qa["id"]).startswith(prefix)]
            if qas:
                paragraphs.append({**p, "qas": qas})
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
    return json.dumps({**doc, "data": articles}, ensure_ascii=False).encode("utf-8")
