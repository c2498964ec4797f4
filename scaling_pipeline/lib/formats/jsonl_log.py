"""JSON-lines metric logs: one JSON object per logged step, keys per METRIC_ALIASES.

Lines are streamed into DuckDB, which validates and extracts the JSON. ``NaN``/``Infinity``
literals (what Python's json writes) are the logged NaN/inf; ``null`` is null. Lines that are not
JSON objects are rejected; a file with no JSON object at all is quarantined. A final line without
newline is kept if it is a complete object (a cut-off object is never valid JSON). Unknown keys
are ignored; without a run-id key the file stem is the run id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
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
    shorten,
)
from .manifest import write_tables
from .metric_sql import METRIC_FIELDS, Cells, TempTable, stage_metric_cells
from .text import iter_lines

READER = "jsonl"
SUFFIX = ".jsonl"
_LINES = "_fmt_json_lines"
_IS_OBJECT = "CASE WHEN json_valid(text) THEN json_type(text) = 'OBJECT' ELSE false END"
_TRUNCATED = "truncated final line (no newline at end of file): "


def _reject_non_objects(
    con: duckdb.DuckDBPyConnection, log: RejectionLog, label: str, unterminated: int | None
) -> None:
    bad = con.execute(
        f"SELECT record, json_valid(text), CASE WHEN json_valid(text) THEN json_type(text) END, "
        f"left(text, 80) FROM {_LINES} WHERE NOT {_IS_OBJECT} ORDER BY record LIMIT ?",
        [log.room],
    ).fetchall()
    total = con.execute(f"SELECT count(*) FROM {_LINES} WHERE NOT {_IS_OBJECT}").fetchone()[0]
    for record, valid, json_type, text in bad:
        got = f"a JSON {json_type.lower()}" if valid else f"malformed JSON {shorten(text)}"
        prefix = _TRUNCATED if record == unterminated else ""
        log.add(
            row_rejection(f"{label} {record}", None, f"{prefix}expected a JSON object, got {got}")
        )
    log.unlisted += total - len(bad)


def stage_jsonl(
    path: Path,
    con: duckdb.DuckDBPyConnection,
    log: RejectionLog,
    *,
    label: str,
    run_id: str | None,
    family: str | None = None,
) -> int:
    """Stage a JSON-lines metric table; raises ValueError (-> file rejection) when unreadable."""
    unterminated, n_lines, n_unreadable = None, 0, 0
    with TempTable(con, _LINES, [("record", "BIGINT"), ("text", "VARCHAR")]) as table:
        for line in iter_lines(path):
            if line.text is None:
                n_unreadable += 1
                prefix = "" if line.terminated else _TRUNCATED
                log.add(row_rejection(f"{label} {line.number}", None, prefix + (line.error or "")))
            elif line.text.strip():
                n_lines += 1
                unterminated = None if line.terminated else line.number
                table.add((line.number, line.text))
        table.flush()
        n_objects = con.execute(f"SELECT count(*) FROM {_LINES} WHERE {_IS_OBJECT}").fetchone()[0]
        if not n_objects:
            got = (
                f"{n_lines + n_unreadable} lines and none is a JSON object"
                if n_lines + n_unreadable
                else "an empty file"
            )
            raise ValueError(f"expected JSON lines (one JSON object per line), got {got}")
        _reject_non_objects(con, log, label, unterminated)
        keys = [
            key
            for (key,) in con.execute(
                f"SELECT DISTINCT unnest(json_keys(text)) AS key FROM {_LINES} WHERE {_IS_OBJECT} "
                f"ORDER BY key"
            ).fetchall()
        ]
        resolved = resolve_aliases(keys, METRIC_ALIASES)
        if problem := missing_metric_columns(resolved, keys):
            raise ValueError(problem)
        cells, params = [], []
        for name, _ in METRIC_FIELDS:
            if name in resolved:
                cells.append(
                    f"coalesce({', '.join('json_extract_string(text, ?)' for _ in resolved[name])})"
                    f" AS {name}"
                )
                params += [f'$."{key}"' for key in resolved[name]]
        sql = f"SELECT record, {', '.join(cells)} FROM {_LINES} WHERE {_IS_OBJECT}"
        sources = {name: found[0] for name, found in resolved.items()}
        return stage_metric_cells(
            con, Cells(sql, params, sources), log, label=label, run_id=run_id, family=family
        )


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one JSON-lines metric log (run id defaults to the file stem)."""
    log = RejectionLog()
    try:
        rows = stage_jsonl(unit.path, con, log, label="line", run_id=unit.path.stem)
    except ValueError as exc:
        return file_rejection(READER, str(exc))
    return ReadReport(READER, n_metric_rows=rows, rejections=log.to_list())


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """One JSON object per line; NaN/inf as Python's json writes them (NaN, Infinity)."""
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def write(
    out_dir: Path, runs: list[dict[str, Any]], metrics: dict[str, list[dict[str, Any]]]
) -> list[Path]:
    """``runs.csv`` + ``<run>.jsonl`` per run (METRIC_COLUMNS without record, nulls as null)."""
    columns = [name for name, _ in METRIC_FIELDS]
    return write_tables(
        out_dir,
        runs,
        metrics,
        SUFFIX,
        lambda path, rows: write_jsonl(path, ({c: row.get(c) for c in columns} for row in rows)),
    )
