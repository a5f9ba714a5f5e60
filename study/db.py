"""The study's results database: one SQLite file, schema-versioned, transactional.

Why SQLite: one file in the study directory that many run-cell processes can write to safely
and that a person can open with `sqlite3`. Per-example scores (what the analysis' seed and
item variance components are built from) live inside the same file as BLOBs, so
re-recording a cell replaces its metrics and its scores in one transaction and nothing can
dangle. The full API contract for the
runner is in the module-level names below; storage layout in `_SCHEMA`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

SCHEMA_VERSION = 2
# Version 1 lacked the cells' fingerprint and settings (study/fingerprint.py) and the data root
# and lock-file hash they read (xitt_tasks.prepare); it is upgraded in place (four added columns,
# NULL for its cells: finished cells without a fingerprint count as made under an unknown recipe).
_UPGRADES = {1: ("ALTER TABLE cells ADD COLUMN fingerprint TEXT",
                 "ALTER TABLE cells ADD COLUMN settings TEXT",
                 "ALTER TABLE cells ADD COLUMN data_root TEXT",
                 "ALTER TABLE cells ADD COLUMN data_lock TEXT")}
CELL_STATUSES = ("pending", "running", "done", "failed")
AGGREGATIONS = ("mean", "f1_counts")
_COLUMNS_FOR = {"mean": 1, "f1_counts": 3}


class SchemaVersionError(ValueError):
    """A file that is not a results database of this schema version."""


@dataclasses.dataclass(frozen=True)
class CellRecord:
    """One cell of the study grid and the provenance of what it produced."""

    cell_id: str
    kind: str
    size: str
    seed: int
    condition: str
    target: str | None = None
    status: str = "pending"
    error: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    device_kind: str | None = None
    checkpoint_path: str | None = None
    checkpoint_step: int | None = None
    gin_config: str | None = None
    experiment_hash: str | None = None
    code_commit: str | None = None
    selection_protocol: str | None = None
    retrieval_layer: int | None = None
    retrieval_pooling: str | None = None
    params_count: int | None = None
    recipe: str = "official"
    data_source: str | None = None
    deps: tuple[str, ...] = ()
    data_root: str | None = None         # $XITT_DATA_DIR the cell read (xitt_tasks.prepare)
    data_lock: str | None = None         # SHA-256 of that data root's lock file
    fingerprint: str | None = None       # study.fingerprint of what decided the result
    settings: str | None = None          # JSON of those settings (to list what changed)

    def __post_init__(self) -> None:
        if not self.cell_id or not isinstance(self.cell_id, str):
            raise ValueError(f"CellRecord.cell_id: got {self.cell_id!r}; expected a non-empty str")
        if self.status not in CELL_STATUSES:
            raise ValueError(f"cell {self.cell_id}: status {self.status!r}; expected one of "
                             f"{CELL_STATUSES}")
        object.__setattr__(self, "deps", tuple(self.deps))


@dataclasses.dataclass(frozen=True)
class Result:
    """One number: a metric of a cell on one language, in points (0..100)."""

    language: str
    metric: str
    value: float
    num_examples: int


@dataclasses.dataclass(frozen=True)
class PerExample:
    """The per-example scores behind one Result, keyed by stable example ids.

    'mean': value == mean(scores); 'f1_counts': scores [n, 3] = (correct, predicted, gold)
    per example and value == 100 * 2 * sum(correct) / (sum(predicted) + sum(gold)).
    """

    language: str
    metric: str
    example_ids: tuple[str, ...]
    scores: np.ndarray
    aggregation: str = "mean"

    def __post_init__(self) -> None:
        object.__setattr__(self, "example_ids", tuple(map(str, self.example_ids)))
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float64))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, PerExample) and self.language == other.language
                and self.metric == other.metric and self.aggregation == other.aggregation
                and self.example_ids == other.example_ids
                and np.array_equal(self.scores, other.scores))

    __hash__ = None  # type: ignore[assignment]


_CELL_FIELDS = tuple(f.name for f in dataclasses.fields(CellRecord))
_PROVENANCE_FIELDS = frozenset(_CELL_FIELDS) - {"cell_id", "status", "error", "end_time"}

_SCHEMA = """
CREATE TABLE schema (version INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cells (
  cell_id TEXT PRIMARY KEY, kind TEXT NOT NULL, size TEXT NOT NULL, seed INTEGER NOT NULL,
  condition TEXT NOT NULL, target TEXT,
  status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
  error TEXT, start_time TEXT, end_time TEXT, device_kind TEXT,
  checkpoint_path TEXT, checkpoint_step INTEGER, gin_config TEXT, experiment_hash TEXT,
  code_commit TEXT, selection_protocol TEXT, retrieval_layer INTEGER, retrieval_pooling TEXT,
  params_count INTEGER, recipe TEXT NOT NULL, data_source TEXT, deps TEXT NOT NULL,
  fingerprint TEXT, settings TEXT, data_root TEXT, data_lock TEXT);
CREATE TABLE results (
  cell_id TEXT NOT NULL REFERENCES cells(cell_id) ON DELETE CASCADE,
  language TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
  num_examples INTEGER NOT NULL, PRIMARY KEY (cell_id, language, metric));
CREATE TABLE per_example (
  cell_id TEXT NOT NULL, language TEXT NOT NULL, metric TEXT NOT NULL,
  aggregation TEXT NOT NULL, num_examples INTEGER NOT NULL, score_columns INTEGER NOT NULL,
  example_ids BLOB NOT NULL, scores BLOB NOT NULL,
  PRIMARY KEY (cell_id, language, metric),
  FOREIGN KEY (cell_id, language, metric) REFERENCES results(cell_id, language, metric)
    ON DELETE CASCADE);
"""


def utc_now() -> str:
    """ISO 8601 UTC timestamp with a 'Z', the format of every time in the database."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")


def aggregate(scores: np.ndarray, aggregation: str) -> float:
    """The metric value (points) of per-example scores, as the metric defines it."""
    scores = np.asarray(scores, dtype=np.float64)
    if aggregation == "mean":
        return float(scores.mean())
    if aggregation == "f1_counts":
        denom = scores[:, 1].sum() + scores[:, 2].sum()
        return float(100.0 * 2.0 * scores[:, 0].sum() / denom) if denom > 0 else 0.0
    raise ValueError(f"aggregation {aggregation!r}; expected one of {AGGREGATIONS}")


class ResultsDB:
    """The results database of one study directory (see /tmp/xitt/STUDY_DB.md, docs)."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = pathlib.Path(path)
        exists = self.path.exists()
        if not exists and not create:
            raise FileNotFoundError(f"results database {self.path} does not exist")
        if exists and self.path.is_dir():
            raise SchemaVersionError(f"results database {self.path} is a directory; expected "
                                     "an SQLite file")
        if not exists:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        self._conn.execute("PRAGMA foreign_keys = ON")
        try:
            self.schema_version = self._check_or_create()
        except BaseException:
            self._conn.close()
            raise

    def _check_or_create(self) -> int:
        try:
            tables = {r[0] for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise SchemaVersionError(f"results database {self.path} is not an SQLite file "
                                     f"({e}); expected a database of schema version "
                                     f"{SCHEMA_VERSION}") from None
        if not tables:
            self._create_tables()
            return self._check_or_create()
        if "schema" not in tables:
            raise SchemaVersionError(
                f"results database {self.path} has no 'schema' table (tables: "
                f"{', '.join(sorted(tables))}); it is not a results database of this project "
                f"(expected schema version {SCHEMA_VERSION})")
        rows = self._conn.execute("SELECT version FROM schema").fetchall()
        found = rows[0][0] if len(rows) == 1 else None
        if found in _UPGRADES:
            self._upgrade(found)
            return self._check_or_create()
        if found != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"results database {self.path} has schema version {found}; this code reads "
                f"version {SCHEMA_VERSION} (move the file aside, or re-run the study into a "
                "fresh study directory)")
        return found

    def _create_tables(self) -> None:
        """Create the schema in one transaction; safe if another process races us."""
        script = _SCHEMA.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS")
        self._conn.executescript(
            f"BEGIN IMMEDIATE; {script}"
            f"INSERT INTO schema (version) SELECT {SCHEMA_VERSION} "
            "WHERE NOT EXISTS (SELECT 1 FROM schema);"
            f"INSERT OR IGNORE INTO meta VALUES ('created', '{utc_now()}'); COMMIT;")

    def _upgrade(self, found: int) -> None:
        """Bring an older schema to the next version in one transaction (a racing process
        that upgraded first leaves nothing to do)."""
        with self._transaction() as c:
            if c.execute("SELECT version FROM schema").fetchone()[0] != found:
                return
            for statement in _UPGRADES[found]:
                c.execute(statement)
            c.execute("UPDATE schema SET version = ?", (found + 1,))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front (IMMEDIATE) so writers queue, never deadlock."""
        c = self._conn
        if c.in_transaction:
            yield c
            return
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def batch(self):
        """Group several writes (e.g. upserting the whole grid) into one transaction."""
        return self._transaction()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ metadata

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta ORDER BY key"))

    # ------------------------------------------------------------------ cells

    def upsert_cell(self, cell: CellRecord) -> None:
        """Insert the cell, or replace its metadata row; its results are left untouched."""
        row = _cell_row(cell)
        names = ", ".join(_CELL_FIELDS)
        updates = ", ".join(f"{n} = excluded.{n}" for n in _CELL_FIELDS if n != "cell_id")
        with self._transaction() as c:
            c.execute(f"INSERT INTO cells ({names}) VALUES ({', '.join('?' * len(row))}) "
                      f"ON CONFLICT(cell_id) DO UPDATE SET {updates}", row)

    def get_cell(self, cell_id: str) -> CellRecord | None:
        cur = self._conn.execute(f"SELECT {', '.join(_CELL_FIELDS)} FROM cells "
                                 "WHERE cell_id = ?", (cell_id,))
        row = cur.fetchone()
        return _cell_from_row(row) if row else None

    def cells(self, *, status: str | None = None, kind: str | None = None) -> list[CellRecord]:
        query = f"SELECT {', '.join(_CELL_FIELDS)} FROM cells WHERE 1 = 1"
        args: list = []
        if status is not None:
            query += " AND status = ?"
            args.append(status)
        if kind is not None:
            query += " AND kind = ?"
            args.append(kind)
        return [_cell_from_row(r) for r in self._conn.execute(query + " ORDER BY cell_id", args)]

    def _update_cell(self, cell_id: str, **fields) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._transaction() as c:
            cur = c.execute(f"UPDATE cells SET {sets} WHERE cell_id = ?",
                            (*fields.values(), cell_id))
            if cur.rowcount != 1:
                raise KeyError(f"cell {cell_id!r} is not in results database {self.path}")

    def mark_running(self, cell_id: str, *, start_time: str | None = None,
                     device_kind: str | None = None) -> None:
        fields = {"status": "running", "error": None, "start_time": start_time or utc_now(),
                  "end_time": None}
        if device_kind is not None:
            fields["device_kind"] = device_kind
        self._update_cell(cell_id, **fields)

    def mark_failed(self, cell_id: str, error: str, *, end_time: str | None = None) -> None:
        self._update_cell(cell_id, status="failed", error=str(error),
                          end_time=end_time or utc_now())

    def mark_pending(self, cell_id: str) -> None:
        self._update_cell(cell_id, status="pending", error=None, end_time=None)

    def delete_cell(self, cell_id: str) -> None:
        with self._transaction() as c:
            c.execute("DELETE FROM cells WHERE cell_id = ?", (cell_id,))

    # ------------------------------------------------------------------ results

    def record_results(self, cell_id: str, results: Sequence[Result],
                       per_example: Sequence[PerExample] = (), *,
                       end_time: str | None = None, **provenance) -> None:
        """Replace the cell's results and per-example scores and mark it done, atomically."""
        unknown = set(provenance) - _PROVENANCE_FIELDS
        if unknown:
            raise ValueError(f"record_results({cell_id!r}): unknown provenance field(s) "
                             f"{sorted(unknown)}; expected some of {sorted(_PROVENANCE_FIELDS)}")
        by_key = _check_results(cell_id, results)
        pe_rows = [_per_example_row(cell_id, pe, by_key) for pe in per_example]
        with self._transaction() as c:
            if c.execute("SELECT 1 FROM cells WHERE cell_id = ?", (cell_id,)).fetchone() is None:
                raise KeyError(f"cell {cell_id!r} is not in results database {self.path}; "
                               "upsert_cell it first")
            c.execute("DELETE FROM results WHERE cell_id = ?", (cell_id,))
            c.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?)",
                          [(cell_id, r.language, r.metric, float(r.value), int(r.num_examples))
                           for r in results])
            c.executemany("INSERT INTO per_example VALUES (?, ?, ?, ?, ?, ?, ?, ?)", pe_rows)
            fields = {**{k: _db_value(k, v) for k, v in provenance.items()},
                      "status": "done", "error": None, "end_time": end_time or utc_now()}
            sets = ", ".join(f"{k} = ?" for k in fields)
            c.execute(f"UPDATE cells SET {sets} WHERE cell_id = ?", (*fields.values(), cell_id))

    def results(self, cell_id: str | None = None) -> list[tuple[str, Result]]:
        query = "SELECT cell_id, language, metric, value, num_examples FROM results"
        args: tuple = ()
        if cell_id is not None:
            query, args = query + " WHERE cell_id = ?", (cell_id,)
        rows = self._conn.execute(query + " ORDER BY cell_id, language, metric", args)
        return [(r[0], Result(r[1], r[2], r[3], r[4])) for r in rows]

    def per_example(self, cell_id: str, language: str, metric: str) -> PerExample | None:
        row = self._conn.execute(
            "SELECT aggregation, num_examples, score_columns, example_ids, scores FROM "
            "per_example WHERE cell_id = ? AND language = ? AND metric = ?",
            (cell_id, language, metric)).fetchone()
        if row is None:
            return None
        aggregation, n, cols, ids, blob = row
        scores = np.frombuffer(blob, dtype="<f8").astype(np.float64)
        scores = scores if cols == 1 else scores.reshape(n, cols)
        ids = tuple(ids.decode("utf-8").split("\n")) if n else ()
        return PerExample(language, metric, ids, scores, aggregation)

    def import_cell(self, src: ResultsDB, cell_id: str) -> CellRecord:
        """Copy one cell (its record and, when done, its results and per-example scores) from
        another database, replacing what this one holds of it: how a cell run on another
        machine (its own database file) reaches the study's."""
        rec = src.get_cell(cell_id)
        if rec is None:
            raise KeyError(f"cell {cell_id!r} is not in results database {src.path}")
        with self._transaction():
            self.upsert_cell(rec)
            if rec.status == "done":
                keys = [(lang, metric) for c, lang, metric in src.per_example_keys()
                        if c == cell_id]
                provenance = {k: getattr(rec, k) for k in _PROVENANCE_FIELDS}
                self.record_results(cell_id, [r for _, r in src.results(cell_id)],
                                    [src.per_example(cell_id, *k) for k in keys],
                                    end_time=rec.end_time, **provenance)
        return rec

    def per_example_keys(self) -> list[tuple[str, str, str]]:
        """(cell_id, language, metric) of every stored per-example score set."""
        return [tuple(r) for r in self._conn.execute(
            "SELECT cell_id, language, metric FROM per_example ORDER BY 1, 2, 3")]


# ---------------------------------------------------------------------- helpers


def _db_value(name: str, value):
    if name == "deps":
        return json.dumps(list(value))
    return value


def _cell_row(cell: CellRecord) -> tuple:
    return tuple(_db_value(n, getattr(cell, n)) for n in _CELL_FIELDS)


def _cell_from_row(row: Sequence) -> CellRecord:
    fields = dict(zip(_CELL_FIELDS, row))
    fields["deps"] = tuple(json.loads(fields["deps"]))
    return CellRecord(**fields)


def _check_results(cell_id: str, results: Sequence[Result]) -> dict[tuple[str, str], Result]:
    by_key: dict[tuple[str, str], Result] = {}
    for r in results:
        where = f"cell {cell_id}, language {r.language!r}, metric {r.metric!r}"
        if not r.language or not r.metric:
            raise ValueError(f"{where}: language and metric must be non-empty")
        if (r.language, r.metric) in by_key:
            raise ValueError(f"{where}: recorded twice")
        if not math.isfinite(float(r.value)):
            raise ValueError(f"{where}: value {r.value!r}; expected a finite number")
        if int(r.num_examples) < 0:
            raise ValueError(f"{where}: num_examples {r.num_examples}; expected >= 0")
        by_key[(r.language, r.metric)] = r
    return by_key


def _per_example_row(cell_id: str, pe: PerExample,
                     by_key: dict[tuple[str, str], Result]) -> tuple:
    where = f"cell {cell_id}, language {pe.language!r}, metric {pe.metric!r}"
    result = by_key.get((pe.language, pe.metric))
    if result is None:
        raise ValueError(f"{where}: per-example scores without a Result of that language/metric")
    if pe.aggregation not in AGGREGATIONS:
        raise ValueError(f"{where}: aggregation {pe.aggregation!r}; expected one of "
                         f"{AGGREGATIONS}")
    cols = _COLUMNS_FOR[pe.aggregation]
    scores = pe.scores
    shape_ok = scores.ndim == 1 if cols == 1 else (scores.ndim == 2 and scores.shape[1] == cols)
    if not shape_ok:
        raise ValueError(f"{where}: scores of shape {scores.shape}; aggregation "
                         f"{pe.aggregation!r} expects " + ("[n]" if cols == 1 else f"[n, {cols}]"))
    n = scores.shape[0]
    if len(pe.example_ids) != n:
        raise ValueError(f"{where}: {len(pe.example_ids)} example ids for {n} scores")
    if len(set(pe.example_ids)) != n:
        raise ValueError(f"{where}: duplicate example ids")
    if any("\n" in i for i in pe.example_ids):
        raise ValueError(f"{where}: an example id contains a newline")
    if n == 0 or not np.all(np.isfinite(scores)):
        raise ValueError(f"{where}: scores must be non-empty and finite")
    value = aggregate(scores, pe.aggregation)
    if abs(value - result.value) > 1e-6 * max(1.0, abs(result.value)):
        raise ValueError(f"{where}: per-example scores aggregate ({pe.aggregation}) to {value!r} "
                         f"but the Result says {result.value!r}")
    blob = np.ascontiguousarray(scores, dtype="<f8").tobytes()
    return (cell_id, pe.language, pe.metric, pe.aggregation, n, cols,
            "\n".join(pe.example_ids).encode("utf-8"), blob)
