"""Ingest training-run logs under a root directory into the warehouse's ``raw`` schema.

Tables (created if absent):

* ``raw.files``: one row per source unit (file or run directory) -- reader, size in bytes, sha256,
  row/rejection counts, status 'ok' | 'partial' | 'quarantined', ingested_at (UTC).
* ``raw.metrics`` / ``raw.runs``: METRIC_COLUMNS / RUN_COLUMNS + source_path. Raw: duplicates,
  NaN/inf losses and runs listed by several sources are kept; cleaning happens downstream.
* ``raw.quarantine``: QUARANTINE_COLUMNS + quarantined_at (UTC): every rejected row or unit.

``source_path`` is the unit's path relative to the root (posix), so a moved root re-ingests as a
no-op. A unit is re-read only when the sha256 over its members' relative paths and bytes changed;
its old rows are replaced in one transaction. Units gone from the root lose their rows. A unit
whose reader raised (or that vanished while being read) is quarantined with the exception text and
stored without a hash, so the next ingest retries it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from scaling_pipeline.lib.formats import (
    ReadReport,
    Rejection,
    SourceUnit,
    create_staging,
    discover,
    read_unit,
)
from scaling_pipeline.lib.formats.common import STAGE_METRICS, STAGE_RUNS, insert_arrow
from scaling_pipeline.lib.schema import METRIC_COLUMNS, QUARANTINE_COLUMNS, RUN_COLUMNS, ddl

RAW_FILES = "raw.files"
RAW_METRICS = "raw.metrics"
RAW_RUNS = "raw.runs"
RAW_QUARANTINE = "raw.quarantine"
FILE_COLUMNS: list[tuple[str, str]] = [
    ("source_path", "VARCHAR PRIMARY KEY"),
    ("reader", "VARCHAR"),
    ("size_bytes", "BIGINT"),
    ("sha256", "VARCHAR"),
    ("n_metric_rows", "BIGINT"),
    ("n_run_rows", "BIGINT"),
    ("n_rejections", "BIGINT"),
    ("status", "VARCHAR"),
    ("ingested_at", "TIMESTAMP"),
]
_HASH_CHUNK = 1 << 20


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
    """Create schema ``raw`` and its four tables if absent."""
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    con.execute(ddl(RAW_FILES, FILE_COLUMNS))
    con.execute(ddl(RAW_METRICS, METRIC_COLUMNS, '"source_path" VARCHAR'))
    con.execute(ddl(RAW_RUNS, RUN_COLUMNS, '"source_path" VARCHAR'))
    con.execute(ddl(RAW_QUARANTINE, QUARANTINE_COLUMNS, '"quarantined_at" TIMESTAMP'))


def relative_path(root: Path, path: Path) -> str:
    """``path`` relative to ``root``, posix ('.' for the root itself)."""
    return path.relative_to(root).as_posix()


def fingerprint(root: Path, unit: SourceUnit) -> tuple[str, int]:
    """(sha256 hex over sorted (relative path, size, bytes) of the members, total size in bytes)."""
    digest, total = hashlib.sha256(), 0
    for rel, member in sorted((relative_path(root, m), m) for m in unit.members):
        with open(member, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            digest.update(f"{rel}\0{size}\0".encode())
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
        total += size
    return digest.hexdigest(), total


def _crashed(reader: str, exc: BaseException) -> ReadReport:
    reason = f"file: reader failed unexpectedly: {type(exc).__name__}: {exc}"
    return ReadReport(reader, rejections=[Rejection("file", None, reason, "file")])


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.begin()
    try:
        yield
    except BaseException:
        con.rollback()
        raise
    con.commit()


def _delete(con: duckdb.DuckDBPyConnection, rel: str) -> None:
    for table in (RAW_METRICS, RAW_RUNS, RAW_QUARANTINE, RAW_FILES):
        con.execute(f"DELETE FROM {table} WHERE source_path = ?", [rel])


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
    with _transaction(con):
        if known:
            _delete(con, rel)
        con.execute(f"INSERT INTO {RAW_METRICS} SELECT *, ? FROM {STAGE_METRICS}", [rel])
        con.execute(f"INSERT INTO {RAW_RUNS} SELECT *, ? FROM {STAGE_RUNS}", [rel])
        if report.rejections:
            insert_arrow(
                con, RAW_QUARANTINE, _quarantine_rows(rel, unit.reader, report.rejections, now)
            )
        con.execute(
            f"INSERT INTO {RAW_FILES} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                rel,
                unit.reader,
                size,
                sha256,
                report.n_metric_rows,
                report.n_run_rows,
                len(report.rejections),
                report.status,
                now,
            ],
        )


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


def ingest(
    root: Path, con: duckdb.DuckDBPyConnection, *, progress: Callable[[str], None] | None = None
) -> IngestSummary:
    """Bring ``raw.*`` on ``con`` up to date with the logs under ``root``; see the module doc.

    Manages its own transactions (one per changed unit), so ``con`` must not be inside one. A
    missing ``root`` raises FileNotFoundError rather than removing every unit's rows."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ingest root {root} is not a directory")
    say = progress or (lambda _message: None)
    ensure_raw_schema(con)
    known = dict(con.execute(f"SELECT source_path, sha256 FROM {RAW_FILES}").fetchall())
    units = discover(root)
    summary = IngestSummary(
        units_seen=len(units), per_reader=dict(Counter(u.reader for u in units))
    )
    for number, unit in enumerate(units, 1):
        rel = relative_path(root, unit.path)
        prefix = f"[{number}/{len(units)}] {unit.reader} {rel}"
        sha256, size = None, 0
        try:
            sha256, size = fingerprint(root, unit)
            if known.get(rel) == sha256:
                summary.units_unchanged += 1
                say(f"{prefix}: unchanged")
                continue
            create_staging(con)
            report = read_unit(unit, con)
        except Exception as exc:
            create_staging(con)
            sha256, report = None, _crashed(unit.reader, exc)  # no hash: retried next time
        _store(con, rel, unit, report, sha256=sha256, size=size, known=rel in known)
        summary.units_ingested += 1
        if report.method:
            key = f"{unit.reader}/{report.method}"
            summary.read_methods[key] = summary.read_methods.get(key, 0) + 1
        summary.units_partial += report.status == "partial"
        summary.units_quarantined += report.status == "quarantined"
        summary.metric_rows += report.n_metric_rows
        summary.run_rows += report.n_run_rows
        summary.rejections += len(report.rejections)
        detail = f"; {report.rejections[0].reason}" if report.rejections else ""
        say(
            f"{prefix}: {report.n_metric_rows} metric rows, {report.n_run_rows} runs, "
            f"{len(report.rejections)} rejections ({report.status}){detail}"
        )
    create_staging(con)
    current = {relative_path(root, unit.path) for unit in units}
    for rel in sorted(set(known) - current):
        with _transaction(con):
            _delete(con, rel)
        summary.units_removed += 1
        summary.removed_paths.append(rel)
        say(f"removed {rel}: no longer under the root, its rows were deleted")
    return summary
