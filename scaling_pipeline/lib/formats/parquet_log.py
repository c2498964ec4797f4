"""Parquet metric logs: one row per logged step, columns per METRIC_ALIASES.

Read natively by DuckDB (``read_parquet(..., file_row_number=true)``, in a scratch database so that a
corrupt file cannot invalidate the warehouse; ``record`` = row number, 1-based); values are typed by the same SQL as the text formats, so a VARCHAR step column with
'abc' is a row rejection. A file DuckDB cannot open or decode is quarantined as a whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from scaling_pipeline.lib.interrupts import reraise_interrupt
from scaling_pipeline.lib.schema import METRIC_ALIASES

from . import common
from .common import (
    ReadReport,
    RejectionLog,
    SourceUnit,
    arrow_table,
    excerpt,
    file_rejection,
    path_run_id,
    missing_metric_columns,
    quote_ident,
    resolve_aliases,
)
from .manifest import write_tables
from .metric_sql import METRIC_FIELDS, Cells, stage_metric_cells
from .native import NativeFile, NativeGroup, plain_path

READER = "parquet"
SUFFIX = ".parquet"
_NATIVE = "_fmt_parquet_native"


def _message(exc: Exception) -> str:
    """The first line of a reader library's complaint, which may quote the file's bytes: excerpted."""
    return excerpt((str(exc).strip().splitlines() or [""])[0])


def _cell(sources: list[str]) -> str:
    if len(sources) == 1:
        return quote_ident(sources[0])
    return f"coalesce({', '.join(f'CAST({quote_ident(s)} AS VARCHAR)' for s in sources)})"


def native_file(
    path: Path, scan: object = None, *, run_id: str | None, family: str | None = None, source: str = ""
) -> NativeFile | None:
    """``path`` as a fast-path candidate (layout: its schema; rows: its footer's count), or None:
    unreadable footer, glob characters in the path, nested columns, column names DuckDB would rename,
    or no step/loss column. ``scan`` is unused (Parquet needs no byte scan)."""
    if not (common.FAST_PATH and plain_path(path)):
        return None
    try:
        meta = pq.read_metadata(path)
        columns = [meta.schema.column(i) for i in range(meta.num_columns)]
    except (OSError, ValueError, pa.ArrowException):
        return None
    if any(c.path != c.name for c in columns):  # nested columns: DuckDB names them differently
        return None
    names = [c.name for c in columns]
    lowered = [n.lower() for n in names]
    if len(set(lowered)) != len(names) or "filename" in lowered:
        return None
    resolved = resolve_aliases(names, METRIC_ALIASES)
    if missing_metric_columns(resolved, names) or any('"' in n for ns in resolved.values() for n in ns):
        return None
    layout = tuple((c.name, c.physical_type, str(c.logical_type)) for c in columns)
    return NativeFile(path, READER, layout, meta.num_rows, 1, run_id, family, source)


def native_groups(
    scratch: duckdb.DuckDBPyConnection, files: list[NativeFile]
) -> tuple[list[NativeGroup], list[NativeFile]]:
    """One ``read_parquet`` over ``files`` (one schema), cells as in :func:`read`."""
    names = [name for name, *_ in files[0].layout]
    resolved = resolve_aliases(names, METRIC_ALIASES)
    cells = [f"{_cell(resolved[name])} AS {name}" for name, _ in METRIC_FIELDS if name in resolved]
    sql = (f"SELECT filename, file_index, file_row_number + 1 AS record, false AS malformed, {', '.join(cells)} "
           f"FROM read_parquet(?, filename=true, file_row_number=true)")
    return [NativeGroup(sql, {name: found[0] for name, found in resolved.items()}, files)], []


def _load(path: Path, con: duckdb.DuckDBPyConnection) -> None:
    """The file's rows + file_row_number into the TEMP table _NATIVE on ``con``. Decoded in a scratch
    database: a corrupt file must not take the warehouse down (DuckDB treats some reader failures as
    fatal for the whole database); a path DuckDB would expand as a glob is decoded by pyarrow."""
    if plain_path(path):
        scratch = duckdb.connect()
        try:
            rows = scratch.sql("SELECT * FROM read_parquet(?, file_row_number=true)", params=[str(path)])
            rows = rows.to_arrow_table()
        finally:
            scratch.close()
    else:
        rows = pq.read_table(path)
        rows = rows.append_column("file_row_number", pa.array(range(rows.num_rows), pa.int64()))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_NATIVE} AS SELECT * FROM rows")


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one Parquet metric log (run id defaults to its path relative to the log root)."""
    try:
        _load(unit.path, con)
    except duckdb.Error as exc:
        reraise_interrupt(exc)
        return file_rejection(
            READER, f"expected a Parquet file, DuckDB says: {_message(exc)}"
        )
    except (OSError, pa.ArrowException) as exc:
        return file_rejection(READER, f"expected a Parquet file, pyarrow says: {_message(exc)}")
    try:
        names = [
            row[0]
            for row in con.execute(f"DESCRIBE {_NATIVE}").fetchall()
            if row[0] != "file_row_number"
        ]
        resolved = resolve_aliases(names, METRIC_ALIASES)
        if problem := missing_metric_columns(resolved, names):
            return file_rejection(READER, problem)
        cells = [f"{_cell(resolved[name])} AS {name}" for name, _ in METRIC_FIELDS if name in resolved]
        sql = f"SELECT file_row_number + 1 AS record, {', '.join(cells)} FROM {_NATIVE}"
        sources = {name: found[0] for name, found in resolved.items()}
        log = RejectionLog()
        try:
            rows = stage_metric_cells(
                con, Cells(sql, [], sources), log, label="row", run_id=path_run_id(unit)
            )
        except duckdb.Error as exc:
            reraise_interrupt(exc)
            return file_rejection(
                READER, f"expected readable Parquet data, DuckDB says: {_message(exc)}"
            )
    finally:
        con.execute(f"DROP TABLE IF EXISTS {_NATIVE}")
    return ReadReport(READER, n_metric_rows=rows, rejections=log.to_list())


def write(
    out_dir: Path, runs: list[dict[str, Any]], metrics: dict[str, list[dict[str, Any]]]
) -> list[Path]:
    """``runs.csv`` + ``<run>.parquet`` per run (METRIC_COLUMNS without record, typed)."""
    return write_tables(
        out_dir,
        runs,
        metrics,
        SUFFIX,
        lambda path, rows: pq.write_table(arrow_table(METRIC_FIELDS, rows), path),
    )
