"""Typing metric rows in DuckDB, shared by all readers.

Two shapes reach ``stage_metrics``:

* **cells** (csv, jsonl, parquet, W&B history and chart exports): one row per logged step, one
  column per canonical metric field found in the source, any type. :func:`stage_metric_cells` casts
  them vectorised and rejects rows whose step is not an integer, whose numbers are not numbers, or
  whose run id is empty, naming the record and field. A table with tokens but no step column
  (digitised or exported curves) gets the step derived from its tokens: ``step`` = tokens seen,
  rounded to an integer (:func:`derives_step`), so its rows are ordered and deduplicated by tokens
  downstream exactly as logged steps are; a row without finite tokens is rejected.
* **events** (tensorboard, MLflow): one row per logged (tag, step, value).
  :func:`stage_metric_events` pivots them to one row per step; a step logged twice for a tag
  (a resumed run) gives two rows, matched by occurrence order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

from scaling_pipeline.lib.schema import METRIC_COLUMNS

from .common import ARROW_TYPES, STAGE_METRICS, RejectionLog, insert_arrow, row_rejection, shorten

METRIC_FIELDS = [(name, typ) for name, typ in METRIC_COLUMNS if name != "record"]
_EXPECTED = {"run_id": "a non-empty run id", "step": "an integer"}
_DERIVED_STEP = ("a finite number of tokens (the table has no step column: the step is the tokens "
                 "seen, rounded)")
_TYPED = "_fmt_typed"


class TempTable:
    """A TEMP table filled from Python in Arrow batches, dropped on exit; ``name``: a constant."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        name: str,
        columns: list[tuple[str, str]],
        batch_rows: int = 65536,
    ) -> None:
        self.con, self.name, self.columns, self.batch_rows = con, name, columns, batch_rows
        self._rows: list[tuple[Any, ...]] = []
        cols = ", ".join(f"{n} {t}" for n, t in columns)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({cols})")

    def add(self, row: tuple[Any, ...]) -> None:
        """Queue one row (values in column order)."""
        self._rows.append(row)
        if len(self._rows) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            values = list(zip(*self._rows, strict=True))
            batch = pa.table(
                {
                    n: pa.array(col, ARROW_TYPES[t])
                    for (n, t), col in zip(self.columns, values, strict=True)
                }
            )
            insert_arrow(self.con, self.name, batch)
            self._rows = []

    def __enter__(self) -> TempTable:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {self.name}")


@dataclass(frozen=True)
class Cells:
    """A SELECT yielding ``record`` plus one column per canonical metric field found.

    ``sources`` maps each such canonical field to the source column name used in messages."""

    sql: str
    params: list[Any] = field(default_factory=list)
    sources: Mapping[str, str] = field(default_factory=dict)


def derives_step(sources: Mapping[str, str]) -> bool:
    """Whether cells with these canonical fields get their step from their tokens (no step column)."""
    return "step" not in sources and "tokens" in sources


def _typed(sources: Mapping[str, str]) -> list[tuple[str, str, str | None, str | None]]:
    """(field, value expression, bad-row predicate, cell column holding the bad value) per
    METRIC_FIELDS entry for cells with the canonical fields in ``sources`` (NULL for the others; the
    step derived from tokens, see :func:`derives_step`)."""
    out = []
    for name, typ in METRIC_FIELDS:
        if name == "step" and derives_step(sources):
            tokens = 'TRY_CAST(c."tokens" AS DOUBLE)'
            value = f"TRY_CAST(round({tokens}) AS BIGINT)"
            out.append((name, value, f"NOT coalesce(isfinite({tokens}) AND {value} IS NOT NULL, false)",
                        'c."tokens"'))
        elif name in sources:
            value, bad = _typing(name, typ)
            out.append((name, value, bad, f'c."{name}"'))
        else:
            out.append((name, f"NULL::{typ}", None, None))
    return out


def _typing(name: str, typ: str) -> tuple[str, str | None]:
    """(value expression, bad-row predicate) for cell column ``name`` cast to ``typ``."""
    col = f'c."{name}"'
    if typ == "VARCHAR":
        value = f"CAST({col} AS VARCHAR)"
        return value, (f"({value} IS NULL OR trim({value}) = '')" if name == "run_id" else None)
    if typ == "DOUBLE":
        value = f"TRY_CAST({col} AS DOUBLE)"
        return value, f"({col} IS NOT NULL AND {value} IS NULL)"
    number, value = f"TRY_CAST({col} AS DOUBLE)", f"TRY_CAST({col} AS BIGINT)"
    return value, (
        f"NOT coalesce(isfinite({number}) AND {number} = trunc({number}) "
        f"AND {value} IS NOT NULL, false)"
    )


def typing_sql(sources: Mapping[str, str]) -> tuple[str, str]:
    """(select list typing the cell columns ``c."<field>"`` of the canonical fields in ``sources``
    into METRIC_FIELDS, NULL for the others, the step derived from tokens where
    :func:`derives_step`; predicate of a row with a cell that fails typing)."""
    typed = _typed(sources)
    bad = [problem for _, _, problem, _ in typed if problem]
    return ", ".join(f"{value} AS {name}" for name, value, _, _ in typed), f"({' OR '.join(bad) or 'false'})"


def stage_metric_cells(
    con: duckdb.DuckDBPyConnection,
    cells: Cells,
    log: RejectionLog,
    *,
    label: str,
    run_id: str | None,
    family: str | None = None,
) -> int:
    """Type ``cells`` into ``stage_metrics``; bad rows go to ``log`` as "<label> <record>".

    ``run_id``/``family`` fill rows (or the whole source) that do not name them; ``run_id`` is
    required when the source has no run-id column. Returns the number of rows staged."""
    if "run_id" not in cells.sources and run_id is None:
        raise ValueError("a source without a run-id column needs a default run_id")
    select, bad_when, got_when = ["c.record AS record"], [], []
    for name, value, bad, column in _typed(cells.sources):
        select.append(f"{value} AS {name}")
        if bad:
            bad_when.append(f"WHEN {bad} THEN '{name}'")
            got_when.append(f"WHEN {bad} THEN CAST({column} AS VARCHAR)")
    bad_field = f"CASE {' '.join(bad_when)} END" if bad_when else "NULL::VARCHAR"
    bad_value = f"CASE {' '.join(got_when)} END" if got_when else "NULL::VARCHAR"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_TYPED} AS SELECT {', '.join(select)}, "
        f"{bad_field} AS bad_field, {bad_value} AS bad_value FROM ({cells.sql}) AS c",
        cells.params,
    )
    try:
        fields = ", ".join(n for n, _ in METRIC_FIELDS if n not in ("run_id", "family"))
        good = con.execute(
            f"INSERT INTO {STAGE_METRICS} SELECT coalesce(run_id, ?), coalesce(family, ?), "
            f"{fields}, record FROM {_TYPED} WHERE bad_field IS NULL",
            [run_id, family],
        ).fetchone()[0]
        bad_total = con.execute(
            f"SELECT count(*) FROM {_TYPED} WHERE bad_field IS NOT NULL"
        ).fetchone()[0]
        listed = con.execute(
            f"SELECT record, bad_field, bad_value FROM {_TYPED} WHERE bad_field "
            f"IS NOT NULL ORDER BY record LIMIT ?",
            [log.room],
        ).fetchall()
    finally:
        con.execute(f"DROP TABLE IF EXISTS {_TYPED}")
    derived = derives_step(cells.sources)
    for record, name, got in listed:
        if name == "step" and derived:
            source, what = cells.sources["tokens"], _DERIVED_STEP
        else:
            expected, source = _EXPECTED.get(name, "a number"), cells.sources[name]
            what = expected if source == name else f"{expected} for {name}"
        log.add(
            row_rejection(
                f"{label} {record}",
                source,
                f"expected {what}, got {'null' if got is None else shorten(got)}",
            )
        )
    log.unlisted += bad_total - len(listed)
    return good


EVENT_COLUMNS = [
    ("record", "BIGINT"),
    ("tag", "VARCHAR"),
    ("step", "BIGINT"),
    ("value", "DOUBLE"),
    ("wall", "DOUBLE"),
]  # wall: event time in seconds (any origin)


def stage_metric_events(
    con: duckdb.DuckDBPyConnection,
    events: str,
    mapping: Mapping[str, str],
    *,
    run_id: str,
    family: str | None,
) -> int:
    """Pivot the events TEMP table ``events`` (EVENT_COLUMNS) into ``stage_metrics``.

    ``mapping``: source tag -> canonical metric field (tags not in it are ignored). Rows are keyed
    by (step, n-th occurrence of the step for that field); ``record`` is the row's first event.
    Without a wall-time tag, wall_time is the event time minus the run's first event time."""
    when = " ".join("WHEN ? THEN ?" for _ in mapping)
    pivot = [
        f"any_value(value) FILTER (WHERE col = '{name}')" if name in mapping.values() else "NULL"
        for name, _ in METRIC_FIELDS
        if name not in ("run_id", "family", "step", "wall_time")
    ]
    wall = (
        "any_value(value) FILTER (WHERE col = 'wall_time')"
        if "wall_time" in mapping.values()
        else f"min(wall) - (SELECT min(wall) FROM {events})"
    )
    return con.execute(
        f"INSERT INTO {STAGE_METRICS} SELECT ?, ?, step, {', '.join(pivot)}, {wall}, min(record) "
        f"FROM (SELECT *, row_number() OVER (PARTITION BY col, step ORDER BY record) AS occ "
        f"      FROM (SELECT record, step, value, wall, CASE tag {when} END AS col FROM {events}) "
        f"      WHERE col IS NOT NULL) GROUP BY step, occ ORDER BY min(record)",
        [run_id, family, *(x for pair in mapping.items() for x in pair)],
    ).fetchone()[0]
