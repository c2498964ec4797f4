"""CSV metric logs: one row per logged step, columns per METRIC_ALIASES.

Records are parsed as CSV (a quoted field may hold a newline: its record then spans lines and is
labelled with its first line); a record over several lines that is not well-formed, or has another
number of fields than the header, costs only its first line (see :func:`.text.csv_records`), so a
damaged line costs only itself. A final line without newline is rejected as truncated: a cut-off
number can still parse. Empty cells are null; 'nan'/'inf' are the logged NaN/inf. Unknown columns
are ignored. Without a run-id column the run id is the file's path relative to the log root without
its suffix (:func:`.common.path_run_id`). ``*.csv.gz`` files are read
decompressed, by the exact path.

Two ways in, same staged rows:

* **fast** (:mod:`.native`): a plain file (header on line 1, every line ending in ``\n``, no
  quotes, CR or NUL bytes, no glob characters in its path, not compressed) is read by DuckDB's
  ``read_csv`` together with the other files of the same header (ingest batches them;
  :func:`stage_csv` reads one), strictly (explicit columns, exact field count, UTF-8); ``record`` =
  row ordinal + 1 (header). It is kept only if its row count equals its data-line count and every
  row types cleanly; otherwise nothing of it is kept and
* **exact**: records are streamed from Python into DuckDB, which splits and types them (records
  with quotes are split by Python's csv module first), with one rejection per bad record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from scaling_pipeline.lib.schema import METRIC_ALIASES

from . import common
from .common import (
    ReadReport,
    RejectionLog,
    SourceUnit,
    count_method,
    file_rejection,
    missing_metric_columns,
    path_run_id,
    resolve_aliases,
    row_rejection,
)
from .writing import write_csv
from .manifest import write_tables
from .metric_sql import METRIC_FIELDS, Cells, TempTable, stage_metric_cells
from .native import TEXT_LINES, NativeFile, NativeGroup, plain_path, stage_native
from .text import (
    MAX_LINE_BYTES,
    ByteScan,
    CsvRecord,
    TextLine,
    csv_records,
    is_gzip,
    iter_lines,
    scan_bytes,
)

READER = "csv"
SUFFIX = ".csv"
_LINES = "_fmt_csv_lines"
SMALL_FILE_BYTES = 1 << 20  # smaller files are split in SQL (see native_groups); < MAX_LINE_BYTES


def read_header(lines: Iterator[TextLine], label: str) -> tuple[list[str], int]:
    """Column names and line number of the first record; ValueError when there is none."""
    header = next(csv_records(lines), None)
    if header is None:
        raise ValueError("expected a header line naming the columns, got an empty file")
    where = f"{label} {header.line} (header)"
    if header.fields is None:
        raise ValueError(f"{where}: {header.error}")
    if not header.terminated:
        raise ValueError(
            f"{where}: truncated (no newline at end of file); expected a header line "
            "followed by rows"
        )
    return [name.strip() for name in header.fields], header.line


def _load_records(records: Iterator[CsvRecord], table: TempTable, log: RejectionLog, label: str) -> None:
    """Records into ``table``: lines without quotes as text (DuckDB splits them), the others pre-split."""
    for record in records:
        location = f"{label} {record.line}"
        if record.error is not None:
            log.add(row_rejection(location, None, record.error))
        elif not record.terminated:
            log.add(
                row_rejection(
                    location,
                    None,
                    "truncated final line (no newline at end of "
                    "file): expected a complete row ending in a newline",
                )
            )
        else:
            table.add((record.line, record.text, record.fields))


def stage_csv(
    path: Path,
    con: duckdb.DuckDBPyConnection,
    log: RejectionLog,
    *,
    label: str,
    run_id: str | None,
    family: str | None = None,
) -> tuple[int, str]:
    """Stage a CSV metric table; returns (rows staged, method 'fast' or 'exact', see the module doc).
    Raises ValueError (-> file rejection) when the file cannot be read at all."""
    lines = iter_lines(path)
    names, header_line = read_header(lines, label)
    resolved = resolve_aliases(names, METRIC_ALIASES)
    if problem := missing_metric_columns(resolved, names):
        lines.close()
        raise ValueError(problem)
    if header_line == 1 and not is_gzip(path):
        lines.close()
        native = native_file(path, scan_bytes(path), run_id=run_id, family=family)
        if native and (rows := stage_native(con, native, native_groups)) is not None:
            return rows, count_method(READER, "fast")
        lines = iter_lines(path)
        read_header(lines, label)
    records = csv_records(lines, width=len(names), split=False)
    return (
        _stage_records(records, con, log, names, resolved, label=label, run_id=run_id, family=family),
        count_method(READER, "exact"),
    )


def _cells(names: list[str], resolved: dict[str, list[str]], column: str) -> list[str]:
    """Canonical metric cells; ``column``: format string of a source field given its index."""
    return [
        f"coalesce({', '.join(blank_to_null(column.format(names.index(s) + 1)) for s in resolved[name])})"
        f" AS {name}"
        for name, _ in METRIC_FIELDS
        if name in resolved
    ]


def native_file(
    path: Path, scan: ByteScan | None, *, run_id: str | None, family: str | None = None, source: str = ""
) -> NativeFile | None:
    """``path`` as a fast-path candidate (layout: its header), or None when only the exact path can
    read it exactly (see the module doc)."""
    if scan is None or not (common.FAST_PATH and plain_path(path)) or is_gzip(path):
        return None
    if not scan.ends_with_newline or scan.has_nul or scan.has_cr or scan.has_quote:
        return None
    header = scan.first_line()
    if header is None or not header.strip():
        return None
    names = [name.strip() for name in header.split(",")]  # no quotes (checked above)
    resolved = resolve_aliases(names, METRIC_ALIASES)
    if missing_metric_columns(resolved, names) or ("run_id" not in resolved and run_id is None):
        return None
    small = scan.size < SMALL_FILE_BYTES  # read by read_text and string functions, as on the exact path
    return NativeFile(path, READER, tuple(names), scan.newlines - 1, 2, run_id, family, source, scan.size,
                      shared=small, numbered=small)


def native_groups(
    scratch: duckdb.DuckDBPyConnection, files: list[NativeFile]
) -> tuple[list[NativeGroup], list[NativeFile]]:
    """Files of one header: the small ones (< SMALL_FILE_BYTES) as text, split into lines and fields
    in SQL exactly as the exact path splits them (DuckDB's read_csv costs ~0.2 ms per file); the
    others by one strict ``read_csv`` (explicit columns, number columns typed by the reader: same
    parser as the exact path's casts, a cell it cannot parse fails the read)."""
    names = list(files[0].layout)
    resolved = resolve_aliases(names, METRIC_ALIASES)
    sources = {name: found[0] for name, found in resolved.items()}
    small = [f for f in files if f.size < SMALL_FILE_BYTES]
    large = [f for f in files if f.size >= SMALL_FILE_BYTES]
    groups = []
    if small:
        cells = ", ".join(_cells(names, resolved, "f[{}]"))
        sql = (
            f"SELECT filename, file_index, n AS record, len(f) <> {len(names)} AS malformed, {cells} "
            f"FROM (SELECT filename, file_index, n, string_split(line, ',') AS f FROM {TEXT_LINES} "
            f"WHERE n > 1 AND line <> '')"
        )
        groups.append(NativeGroup(sql, sources, small))
    if large:
        types = dict(METRIC_FIELDS)
        read_types = {i: "VARCHAR" for i in range(1, len(names) + 1)}
        for name, found in resolved.items():
            for source in found:
                if types[name] == "DOUBLE":
                    read_types[names.index(source) + 1] = "DOUBLE"
        cells = []
        for name, typ in METRIC_FIELDS:
            if name in resolved:
                fields = [f"c{names.index(s) + 1}" for s in resolved[name]]
                wrapped = fields if typ == "DOUBLE" else [blank_to_null(f) for f in fields]
                cells.append(f"coalesce({', '.join(wrapped)}) AS {name}")
        columns = ", ".join(f"'c{i}': '{t}'" for i, t in read_types.items())
        sql = (
            f"SELECT filename, file_index, NULL::BIGINT AS record, false AS malformed, {', '.join(cells)} "
            f"FROM read_csv(?, header=false, skip=1, auto_detect=false, columns={{{columns}}}, "
            f"delim=',', quote='', escape='', new_line='\\n', strict_mode=true, null_padding=false, "
            f"ignore_errors=false, max_line_size={MAX_LINE_BYTES - 64}, filename=true)"
        )
        groups.append(NativeGroup(sql, sources, large))
    return groups, []


@contextmanager
def split_records(
    records: Iterator[CsvRecord], con: duckdb.DuckDBPyConnection, log: RejectionLog, *, width: int, label: str
) -> Iterator[str]:
    """``records`` (after the header) streamed into DuckDB; yields a relation (``record``, ``f``: its
    fields, 1-based) of the records with ``width`` fields, valid inside the block. The others are
    rejected into ``log``."""
    columns = [("record", "BIGINT"), ("text", "VARCHAR"), ("fields", "VARCHAR[]")]
    with TempTable(con, _LINES, columns) as table:
        _load_records(records, table, log, label)
        table.flush()
        split = f"SELECT record, coalesce(fields, string_split(text, ',')) AS f FROM {_LINES}"
        wrong = con.execute(
            f"SELECT record, len(f) FROM ({split}) WHERE len(f) <> ? ORDER BY record LIMIT ?",
            [width, log.room],
        ).fetchall()
        n_wrong = con.execute(f"SELECT count(*) FROM ({split}) WHERE len(f) <> ?", [width]).fetchone()[0]
        for record, count in wrong:
            log.add(row_rejection(f"{label} {record}", None, f"expected {width} fields as in the header, got {count}"))
        log.unlisted += n_wrong - len(wrong)
        yield f"(SELECT * FROM ({split}) WHERE len(f) = {int(width)})"


def _stage_records(
    records: Iterator[CsvRecord],
    con: duckdb.DuckDBPyConnection,
    log: RejectionLog,
    names: list[str],
    resolved: dict[str, list[str]],
    *,
    label: str,
    run_id: str | None,
    family: str | None,
) -> int:
    """The exact path: ``records`` (after the header) streamed into DuckDB."""
    with split_records(records, con, log, width=len(names), label=label) as rows:
        cells = ", ".join(_cells(names, resolved, "f[{}]"))
        sources = {name: found[0] for name, found in resolved.items()}
        return stage_metric_cells(
            con, Cells(f"SELECT record, {cells} FROM {rows}", [], sources), log, label=label, run_id=run_id,
            family=family
        )


def blank_to_null(field: str) -> str:
    """SQL: a source field (e.g. ``f[3]``), NULL when blank."""
    return f"CASE WHEN trim({field}) = '' THEN NULL ELSE {field} END"


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one CSV metric log (run id defaults to its path relative to the log root)."""
    log = RejectionLog()
    try:
        rows, method = stage_csv(unit.path, con, log, label="line", run_id=path_run_id(unit))
    except ValueError as exc:
        return file_rejection(READER, str(exc))
    return ReadReport(READER, n_metric_rows=rows, rejections=log.to_list(), method=method)


def write(
    out_dir: Path, runs: list[dict[str, Any]], metrics: dict[str, list[dict[str, Any]]]
) -> list[Path]:
    """``runs.csv`` + ``<run>.csv`` per run (METRIC_COLUMNS without record)."""
    columns = [name for name, _ in METRIC_FIELDS]
    return write_tables(
        out_dir, runs, metrics, SUFFIX, lambda path, rows: write_csv(path, columns, rows)
    )
