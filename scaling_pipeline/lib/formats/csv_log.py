"""CSV metric logs: one row per logged step, columns per METRIC_ALIASES.

Every line is one record (quoted fields may not span lines), so a damaged line costs only itself.
Lines are streamed into DuckDB, which splits and types them (lines with quotes are split by
Python's csv module first). A final line without newline is rejected as truncated: a cut-off
number can still parse. Empty cells are null; 'nan'/'inf' are the logged NaN/inf. Unknown columns
are ignored. Without a run-id column the file stem is the run id.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from scaling_pipeline.lib.schema import METRIC_ALIASES

from .common import (
    ReadReport,
    RejectionLog,
    SourceUnit,
    file_rejection,
    missing_metric_columns,
    resolve_aliases,
    row_rejection,
    write_csv,
)
from .manifest import write_tables
from .metric_sql import METRIC_FIELDS, Cells, TempTable, stage_metric_cells
from .text import TextLine, first_line, iter_lines, split_csv_line

READER = "csv"
SUFFIX = ".csv"
_LINES = "_fmt_csv_lines"


def _header(lines: Iterator[TextLine], label: str) -> list[str]:
    """Column names from the first non-blank line; ValueError when there is none."""
    header = first_line(lines)
    if header is None:
        raise ValueError("expected a header line naming the columns, got an empty file")
    where = f"{label} {header.number} (header)"
    if header.text is None:
        raise ValueError(f"{where}: {header.error}")
    if not header.terminated:
        raise ValueError(
            f"{where}: truncated (no newline at end of file); expected a header line "
            "followed by rows"
        )
    try:
        return [name.strip() for name in split_csv_line(header.text)]
    except csv.Error as exc:
        raise ValueError(f"{where}: expected well-formed CSV ({exc})") from exc


def _load_lines(lines: Iterator[TextLine], table: TempTable, log: RejectionLog, label: str) -> None:
    """Lines into ``table``: plain lines as text (DuckDB splits them), quoted ones pre-split."""
    for line in lines:
        location = f"{label} {line.number}"
        if line.text is None:
            log.add(row_rejection(location, None, line.error or "unreadable line"))
        elif not line.text.strip():
            continue
        elif not line.terminated:
            log.add(
                row_rejection(
                    location,
                    None,
                    "truncated final line (no newline at end of "
                    "file): expected a complete row ending in a newline",
                )
            )
        elif '"' not in line.text:
            table.add((line.number, line.text, None))
        else:
            try:
                table.add((line.number, None, split_csv_line(line.text)))
            except csv.Error as exc:
                log.add(row_rejection(location, None, f"expected well-formed CSV ({exc})"))


def stage_csv(
    path: Path,
    con: duckdb.DuckDBPyConnection,
    log: RejectionLog,
    *,
    label: str,
    run_id: str | None,
    family: str | None = None,
) -> int:
    """Stage a CSV metric table; raises ValueError (-> file rejection) when it cannot be read."""
    lines = iter_lines(path)
    names = _header(lines, label)
    resolved = resolve_aliases(names, METRIC_ALIASES)
    if problem := missing_metric_columns(resolved, names):
        raise ValueError(problem)
    columns = [("record", "BIGINT"), ("text", "VARCHAR"), ("fields", "VARCHAR[]")]
    with TempTable(con, _LINES, columns) as table:
        _load_lines(lines, table, log, label)
        table.flush()
        split = f"SELECT record, coalesce(fields, string_split(text, ',')) AS f FROM {_LINES}"
        wrong = con.execute(
            f"SELECT record, len(f) FROM ({split}) WHERE len(f) <> ? ORDER BY record LIMIT ?",
            [len(names), log.room],
        ).fetchall()
        n_wrong = con.execute(
            f"SELECT count(*) FROM ({split}) WHERE len(f) <> ?", [len(names)]
        ).fetchone()[0]
        for record, count in wrong:
            log.add(
                row_rejection(
                    f"{label} {record}",
                    None,
                    f"expected {len(names)} fields as in the header, got {count}",
                )
            )
        log.unlisted += n_wrong - len(wrong)
        cells = [
            f"coalesce({', '.join(_cell(names.index(s) + 1) for s in resolved[name])}) AS {name}"
            for name, _ in METRIC_FIELDS
            if name in resolved
        ]
        sql = f"SELECT record, {', '.join(cells)} FROM ({split}) WHERE len(f) = ?"
        sources = {name: found[0] for name, found in resolved.items()}
        return stage_metric_cells(
            con, Cells(sql, [len(names)], sources), log, label=label, run_id=run_id, family=family
        )


def _cell(index: int) -> str:
    """Field ``index`` (1-based) of list f; blank -> NULL."""
    return f"CASE WHEN trim(f[{index}]) = '' THEN NULL ELSE f[{index}] END"


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one CSV metric log (run id defaults to the file stem)."""
    log = RejectionLog()
    try:
        rows = stage_csv(unit.path, con, log, label="line", run_id=unit.path.stem)
    except ValueError as exc:
        return file_rejection(READER, str(exc))
    return ReadReport(READER, n_metric_rows=rows, rejections=log.to_list())


def write(
    out_dir: Path, runs: list[dict[str, Any]], metrics: dict[str, list[dict[str, Any]]]
) -> list[Path]:
    """``runs.csv`` + ``<run>.csv`` per run (METRIC_COLUMNS without record)."""
    columns = [name for name, _ in METRIC_FIELDS]
    return write_tables(
        out_dir, runs, metrics, SUFFIX, lambda path, rows: write_csv(path, columns, rows)
    )
