"""Parquet metric logs: one row per logged step, columns per METRIC_ALIASES.

Read natively by DuckDB (``read_parquet(..., file_row_number=true)``, in a scratch database so that a
corrupt file cannot invalidate the warehouse; ``record`` = row number, 1-based); values are typed by the same SQL as the text formats, so a VARCHAR step column with
'abc' is a row rejection. A file DuckDB cannot open or decode is quarantined as a whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from scaling_pipeline.lib.schema import METRIC_ALIASES

from .common import (
    NATIVE_ROW,
    native_read,
    ReadReport,
    RejectionLog,
    SourceUnit,
    arrow_table,
    file_rejection,
    missing_metric_columns,
    quote_ident,
    resolve_aliases,
)
from .manifest import write_tables
from .metric_sql import METRIC_FIELDS, Cells, stage_metric_cells

READER = "parquet"
SUFFIX = ".parquet"
_NATIVE = "_fmt_parquet_native"


def _duckdb_message(exc: duckdb.Error) -> str:
    return str(exc).strip().splitlines()[0]


def _cell(sources: list[str]) -> str:
    if len(sources) == 1:
        return quote_ident(sources[0])
    return f"coalesce({', '.join(f'CAST({quote_ident(s)} AS VARCHAR)' for s in sources)})"


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one Parquet metric log (run id defaults to the file stem)."""
    path = str(unit.path)
    try:  # decoded in a scratch database: a corrupt file must not take the warehouse down
        native_read(con, "SELECT * FROM read_parquet(?, file_row_number=true)", [path], table=_NATIVE)
    except duckdb.Error as exc:
        return file_rejection(
            READER, f"expected a Parquet file, DuckDB says: {_duckdb_message(exc)}"
        )
    try:
        names = [
            row[0]
            for row in con.execute(f"DESCRIBE {_NATIVE}").fetchall()
            if row[0] not in ("file_row_number", NATIVE_ROW)
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
                con, Cells(sql, [], sources), log, label="row", run_id=unit.path.stem
            )
        except duckdb.Error as exc:
            return file_rejection(
                READER, f"expected readable Parquet data, DuckDB says: {_duckdb_message(exc)}"
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
