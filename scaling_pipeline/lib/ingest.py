"""Ingest training-run logs under a root directory into the warehouse's ``raw`` schema.

Tables (created if absent; columns in :mod:`scaling_pipeline.lib.tables`): ``raw.files``, one row
per source unit (file or run directory) and how its ingest went; ``raw.metrics`` / ``raw.runs``, the
readers' rows + source_path (raw: duplicates, NaN/inf losses and runs listed by several sources are
kept; cleaning happens downstream); ``raw.quarantine``, every rejected field, row or unit.

``source_path`` is the unit's path relative to the root (posix), so a moved root re-ingests as a
no-op. A unit is re-read only when the sha256 over its members' relative paths and bytes (and the
readers' version, READERS_VERSION) changed; its old rows are replaced in the same transaction that
stores its new ones. Plain csv/jsonl/parquet files (:mod:`scaling_pipeline.lib.formats.native`) are
read natively many at a time, up to ``batch_bytes`` of source per batch, and a batch's accepted
files are stored in one transaction (a killed ingest loses at most the batch in flight, and the
next run reads it again): straight
into ``raw.metrics`` in one pass, which is kept only if every file of the batch gave exactly its
promised clean rows; otherwise rolled back and read again with each file's rows held apart until
it has typed cleanly. Every other unit, and every file a batch rejected, is read alone and stored
in its own transaction. Units gone from the root lose their rows. Hashing the files (and checking fast-path candidates) runs in a
worker thread up to INSPECT_AHEAD units ahead, beside the main thread's DuckDB statements. A unit
whose reader raised (or that vanished while being read) is quarantined with the exception text and
stored without a hash, so the next ingest retries it.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from scaling_pipeline.lib import tables
from scaling_pipeline.lib.fingerprint import Fingerprint, fingerprint, relative_path
from scaling_pipeline.lib.formats import (
    ReadReport,
    Rejection,
    SourceUnit,
    create_staging,
    discover,
    insert_native,
    insertion_order,
    native_file,
    read_native,
    read_unit,
)
from scaling_pipeline.lib.formats.common import STAGE_METRICS, STAGE_RUNS, count_method, excerpt, insert_arrow
from scaling_pipeline.lib.formats.native import BATCH_BYTES, BATCH_ROWS, NativeFile, one_pass_pays
from scaling_pipeline.lib.interrupts import reraise_interrupt
from scaling_pipeline.lib.tables import transaction

INSPECT_AHEAD = 4096  # units fingerprinted ahead of the one being stored (about a batch) ...
INSPECT_CHUNK = 64  # ... a chunk of units per task
_RAW = (tables.RAW_FILES, tables.RAW_METRICS, tables.RAW_RUNS, tables.RAW_QUARANTINE)
RAW_FILES, RAW_METRICS, RAW_RUNS, RAW_QUARANTINE = (t.name for t in _RAW)


@dataclass
class IngestSummary:
    """Counts of one :func:`ingest` call; rows/rejections count the units (re)ingested now."""

    units_seen: int = 0
    units_ingested: int = 0
    units_unchanged: int = 0
    units_removed: int = 0
    units_partial: int = 0
    units_quarantined: int = 0
    metric_rows: int = 0
    run_rows: int = 0
    rejections: int = 0
    per_reader: dict[str, int] = field(default_factory=dict)  # units seen per reader
    # units read now per "<reader>/<method>": 'fast' (DuckDB's native reader, validated) or
    # 'exact' (line by line); readers without a fast path are not counted
    read_methods: dict[str, int] = field(default_factory=dict)
    removed_paths: list[str] = field(default_factory=list)

    def to_metadata(self) -> dict[str, Any]:
        """Plain dict (e.g. for Dagster materialization metadata)."""
        return asdict(self)


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create schema ``raw`` and its four tables if absent (an older layout gains the columns it lacks)."""
    tables.create(con, *_RAW)


def _crashed(reader: str, exc: BaseException) -> ReadReport:
    reason = f"file: reader failed unexpectedly: {type(exc).__name__}: {excerpt(str(exc))}"
    return ReadReport(reader, rejections=[Rejection("file", None, reason, "file")])


def _delete(con: duckdb.DuckDBPyConnection, rels: list[str]) -> None:
    for table in (RAW_METRICS, RAW_RUNS, RAW_QUARANTINE, RAW_FILES):
        con.execute(f"DELETE FROM {table} WHERE source_path IN (SELECT unnest(?::VARCHAR[]))", [rels])


def _file_rows(items: list[tuple[str, str, int, str | None, ReadReport]], now: datetime) -> pa.Table:
    """raw.files rows of (relative path, reader, size, sha256, report) items."""
    columns = list(zip(*items, strict=True)) if items else [[]] * 5
    rel, reader, size, sha256, reports = columns
    values = {
        "source_path": pa.array(rel, pa.string()),
        "reader": pa.array(reader, pa.string()),
        "size_bytes": pa.array(size, pa.int64()),
        "sha256": pa.array(sha256, pa.string()),
        "n_metric_rows": pa.array([r.n_metric_rows for r in reports], pa.int64()),
        "n_run_rows": pa.array([r.n_run_rows for r in reports], pa.int64()),
        "n_rejections": pa.array([len(r.rejections) for r in reports], pa.int64()),
        "status": pa.array([r.status for r in reports], pa.string()),
        "ingested_at": pa.array([now] * len(rel), pa.timestamp("us")),
    }
    return pa.table(values)


def _store(
    con: duckdb.DuckDBPyConnection,
    rel: str,
    unit: SourceUnit,
    report: ReadReport,
    *,
    sha256: str | None,
    size: int,
    known: bool,
) -> None:
    """Replace ``rel``'s rows (if ``known``) by the staged ones and its report, in one
    transaction."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with transaction(con):
        if known:
            _delete(con, [rel])
        con.execute(f"INSERT INTO {RAW_METRICS} BY NAME SELECT *, ? AS source_path FROM {STAGE_METRICS}", [rel])
        con.execute(f"INSERT INTO {RAW_RUNS} BY NAME SELECT *, ? AS source_path FROM {STAGE_RUNS}", [rel])
        if report.rejections:
            insert_arrow(
                con, RAW_QUARANTINE, _quarantine_rows(rel, unit.reader, report.rejections, now)
            )
        insert_arrow(con, RAW_FILES, _file_rows([(rel, unit.reader, size, sha256, report)], now))


def _quarantine_rows(rel: str, reader: str, rejections: list[Rejection], now: datetime) -> pa.Table:
    n = len(rejections)
    return pa.table(
        {
            "source_path": pa.array([rel] * n, pa.string()),
            "reader": pa.array([reader] * n, pa.string()),
            "location": pa.array([r.location for r in rejections], pa.string()),
            "field": pa.array([r.field for r in rejections], pa.string()),
            "reason": pa.array([r.reason for r in rejections], pa.string()),
            "scope": pa.array([r.scope for r in rejections], pa.string()),
            "quarantined_at": pa.array([now] * n, pa.timestamp("us")),
        }
    )


@dataclass(frozen=True)
class _Inspected:
    """What :meth:`_Ingest.inspect` found out about a unit."""

    rel: str  # path relative to the root
    found: Fingerprint | OSError  # the error when the unit could not be read
    native: NativeFile | None = None  # a fast-path candidate (changed units only)
    changed: bool = True  # not in the warehouse with this sha256


@dataclass
class _Pending:
    """A changed unit waiting for its batch's native read."""

    number: int
    unit: SourceUnit
    rel: str
    found: Fingerprint
    native: NativeFile

    @property
    def report(self) -> ReadReport:
        """Its report once its batch's native read accepted it."""
        return ReadReport(self.unit.reader, n_metric_rows=self.native.rows, method="fast")


class _OnePassFailed(Exception):
    """A batch's one-pass insert fell short (see :meth:`_Ingest.store_batch`)."""


class _Ingest:
    """One :func:`ingest` call: single units are read and stored one by one; native candidates are
    collected per (reader, layout) and read and stored a batch at a time."""

    def __init__(self, root: Path, con: duckdb.DuckDBPyConnection, say: Callable[[str], None] | None,
                 batch_bytes: int) -> None:
        self.root, self.con, self.say, self.batch_bytes = root, con, say, batch_bytes
        ensure_raw_schema(con)
        self.known = dict(con.execute(f"SELECT source_path, sha256 FROM {RAW_FILES}").fetchall())
        self.units = discover(root)
        self.summary = IngestSummary(
            units_seen=len(self.units), per_reader=dict(Counter(u.reader for u in self.units))
        )
        self.pending: dict[tuple[str, Hashable, bool], list[_Pending]] = {}
        self.pending_bytes: Counter[tuple[str, Hashable, bool]] = Counter()
        self.pending_rows: Counter[tuple[str, Hashable, bool]] = Counter()
        self.held_apart: set[str] = set()  # readers whose last batch had a rejected file (see flush)

    def run(self) -> IngestSummary:
        units, step = self.units, INSPECT_CHUNK
        with ThreadPoolExecutor(1, thread_name_prefix="ingest-inspect") as pool:
            ahead: deque[Future[list[_Inspected]]] = deque(
                pool.submit(self.inspect, units[i:i + step]) for i in range(0, min(len(units), INSPECT_AHEAD), step))
            for start in range(0, len(units), step):
                if (following := start + INSPECT_AHEAD) < len(units):
                    ahead.append(pool.submit(self.inspect, units[following:following + step]))
                for number, (unit, inspected) in enumerate(zip(units[start:start + step], ahead.popleft().result(),
                                                               strict=True), start + 1):
                    self.visit(number, unit, inspected)
        for key in list(self.pending):
            self.flush(key)
        create_staging(self.con)
        current = {relative_path(self.root, unit.path) for unit in self.units}
        for rel in sorted(set(self.known) - current):
            with transaction(self.con):
                _delete(self.con, [rel])
            self.summary.units_removed += 1
            self.summary.removed_paths.append(rel)
            if self.say:
                self.say(f"removed {rel}: no longer under the root, its rows were deleted")
        return self.summary

    def prefix(self, number: int, unit: SourceUnit, rel: str) -> str:
        return f"[{number}/{len(self.units)}] {unit.reader} {rel}"

    def inspect(self, units: list[SourceUnit]) -> list[_Inspected]:
        """The file work for ``units`` that needs no database (run ahead in a worker thread, beside the
        main thread's DuckDB statements): fingerprints and, for changed units, fast-path candidates."""
        out = []
        for unit in units:
            rel = relative_path(self.root, unit.path)
            try:
                found = fingerprint(self.root, unit)
                changed = self.known.get(rel) != found.sha256
                out.append(_Inspected(rel, found, native_file(unit, found.scan, rel) if changed else None, changed))
            except OSError as exc:  # vanished or unreadable
                out.append(_Inspected(rel, exc))
        return out

    def visit(self, number: int, unit: SourceUnit, inspected: _Inspected) -> None:
        rel, found, native = inspected.rel, inspected.found, inspected.native
        if isinstance(found, OSError):  # quarantined without a hash, retried next time
            self.store_one(number, unit, rel, None, 0, _crashed(unit.reader, found))
            return
        if not inspected.changed:
            self.summary.units_unchanged += 1
            if self.say:
                self.say(f"{self.prefix(number, unit, rel)}: unchanged")
            return
        if native is None:
            self.read_one(number, unit, rel, found)
            return
        key = (unit.reader, native.layout, native.shared)
        self.pending.setdefault(key, []).append(_Pending(number, unit, rel, found, native))
        self.pending_bytes[key] += found.size
        self.pending_rows[key] += native.rows
        if self.pending_bytes[key] >= self.batch_bytes or self.pending_rows[key] >= BATCH_ROWS:
            self.flush(key)

    def read_one(self, number: int, unit: SourceUnit, rel: str, found: Fingerprint) -> None:
        """Read ``unit`` alone by its reader (exact path where it has one) and store it."""
        sha256: str | None = found.sha256
        try:
            create_staging(self.con)
            report = read_unit(unit, self.con)
        except Exception as exc:
            reraise_interrupt(exc)  # an interrupted read says nothing about the file
            create_staging(self.con)
            sha256, report = None, _crashed(unit.reader, exc)  # no hash: retried next time
        self.store_one(number, unit, rel, sha256, found.size, report)

    def store_one(self, number: int, unit: SourceUnit, rel: str, sha256: str | None, size: int,
                  report: ReadReport) -> None:
        if sha256 is None:
            create_staging(self.con)
        _store(self.con, rel, unit, report, sha256=sha256, size=size, known=rel in self.known)
        self.count(number, unit, rel, report)

    def flush(self, key: tuple[str, Hashable, bool]) -> None:
        """Read one batch natively and store its accepted files in one transaction, then read each
        rejected file alone. First in one pass (:func:`insert_native`) where :func:`one_pass_pays`;
        when some file of the batch fails, that is rolled back and the batch is read again with its
        files held apart (:func:`read_native`), and so are the reader's next batches until one has
        no rejected file."""
        batch = self.pending.pop(key)
        del self.pending_bytes[key], self.pending_rows[key]
        files, reader = [p.native for p in batch], key[0]
        stored = False
        if reader not in self.held_apart and one_pass_pays(files):
            with insertion_order(self.con, False):
                stored = self.store_batch(batch, lambda: insert_native(files, self.con, RAW_METRICS))
        if stored:
            accepted = {p.rel for p in batch}
        else:
            with read_native(files, self.con) as result:
                accepted = {f.source for f in result.accepted}
                self.store_batch([p for p in batch if p.rel in accepted],
                                 lambda: result.store(self.con, RAW_METRICS, source_path=True))
            if len(accepted) < len(batch):  # the next batch of this reader is likely damaged too
                self.held_apart.add(reader)
            else:
                self.held_apart.discard(reader)
        for p in batch:
            if p.rel in accepted:
                count_method(p.unit.reader, "fast")
                self.count(p.number, p.unit, p.rel, p.report)
            else:
                self.read_one(p.number, p.unit, p.rel, p.found)

    def store_batch(self, done: list[_Pending], insert: Callable[[], int | None]) -> bool:
        """In one transaction: delete the old rows of ``done``'s units, ``insert`` their metric rows
        and add their ``raw.files`` rows; rolled back (False) when ``insert`` returns None."""
        if not done:
            return True
        now = datetime.now(UTC).replace(tzinfo=None)
        try:
            with transaction(self.con):
                if replaced := [p.rel for p in done if p.rel in self.known]:
                    _delete(self.con, replaced)
                if insert() is None:
                    raise _OnePassFailed
                insert_arrow(self.con, RAW_FILES, _file_rows(
                    [(p.rel, p.unit.reader, p.found.size, p.found.sha256, p.report) for p in done], now))
        except _OnePassFailed:
            return False
        return True

    def count(self, number: int, unit: SourceUnit, rel: str, report: ReadReport) -> None:
        summary = self.summary
        summary.units_ingested += 1
        if report.method:
            key = f"{unit.reader}/{report.method}"
            summary.read_methods[key] = summary.read_methods.get(key, 0) + 1
        summary.units_partial += report.status == "partial"
        summary.units_quarantined += report.status == "quarantined"
        summary.metric_rows += report.n_metric_rows
        summary.run_rows += report.n_run_rows
        summary.rejections += len(report.rejections)
        if not self.say:
            return
        detail = f"; {report.rejections[0].reason}" if report.rejections else ""
        self.say(
            f"{self.prefix(number, unit, rel)}: {report.n_metric_rows} metric rows, {report.n_run_rows} runs, "
            f"{len(report.rejections)} rejections ({report.status}){detail}"
        )


def ingest(
    root: Path,
    con: duckdb.DuckDBPyConnection,
    *,
    progress: Callable[[str], None] | None = None,
    batch_bytes: int = BATCH_BYTES,
) -> IngestSummary:
    """Bring ``raw.*`` on ``con`` up to date with the logs under ``root``; see the module doc.

    Manages its own transactions, so ``con`` must not be inside one. Plain csv/jsonl/parquet files
    are read natively up to ``batch_bytes`` of source bytes (or BATCH_ROWS rows) at a time. A missing ``root`` raises
    FileNotFoundError rather than removing every unit's rows."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ingest root {root} is not a directory")
    return _Ingest(root, con, progress, batch_bytes).run()
