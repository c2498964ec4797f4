"""JSON-lines metric logs: one JSON object per logged step, keys per METRIC_ALIASES.

Fast path (:mod:`.native`, see :func:`native_groups`): a file whose every line is a JSON object
(no blank lines, NUL bytes or lines longer than MAX_LINE_BYTES, no glob characters in its path) is
read by DuckDB's ``read_json`` together with the other files using the same keys; ``record`` = row
ordinal. It is kept only if the row count equals the file's line count and every row types
cleanly; otherwise nothing of it is kept and the exact path runs: lines are streamed into DuckDB
from Python, one rejection per bad line, and typed by the same SQL, so a clean file gives the same
rows either way. ``NaN``/``Infinity``
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

from . import common
from .common import (
    ReadReport,
    count_method,
    RejectionLog,
    SourceUnit,
    file_rejection,
    missing_metric_columns,
    quote_ident,
    resolve_aliases,
    row_rejection,
    shorten,
)
from .manifest import write_tables
from .metric_sql import METRIC_FIELDS, Cells, TempTable, stage_metric_cells
from .native import NativeFile, NativeGroup, bisect, paths, plain_path, stage_native
from .text import MAX_LINE_BYTES, ByteScan, iter_lines, scan_bytes

READER = "jsonl"
SUFFIX = ".jsonl"
_LINES = "_fmt_json_lines"
_IS_OBJECT = "CASE WHEN json_valid(text) THEN json_type(text) = 'OBJECT' ELSE false END"
_TEXT_LINES = "jsonl_lines"  # scratch table: the lines of small files
SMALL_FILE_BYTES = 1 << 20  # smaller files are read as text (see native_groups)
_TRUNCATED = "truncated final line (no newline at end of file): "


def _reject_non_objects(
    con: duckdb.DuckDBPyConnection,
    log: RejectionLog,
    label: str,
    unterminated: int | None,
    lines: str = _LINES,
) -> None:
    bad = con.execute(
        f"SELECT record, json_valid(text), CASE WHEN json_valid(text) THEN json_type(text) END, "
        f"left(text, 80) FROM {lines} WHERE NOT {_IS_OBJECT} ORDER BY record LIMIT ?",
        [log.room],
    ).fetchall()
    total = con.execute(f"SELECT count(*) FROM {lines} WHERE NOT {_IS_OBJECT}").fetchone()[0]
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
) -> tuple[int, str]:
    """Stage a JSONL metric table; returns (rows staged, method 'fast' or 'exact', see the module doc).
    Raises ValueError (-> file rejection) when the file cannot be read at all."""
    native = native_file(path, scan_bytes(path), run_id=run_id, family=family)
    if native and (rows := stage_native(con, native, native_groups)) is not None:
        return rows, count_method(READER, "fast")
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
        rows = _stage_objects(con, _LINES, log, label=label, run_id=run_id, family=family)
    return rows, count_method(READER, "exact")


def _stage_objects(
    con: duckdb.DuckDBPyConnection,
    lines: str,
    log: RejectionLog,
    *,
    label: str,
    run_id: str | None,
    family: str | None,
) -> int:
    """Type the JSON objects of ``lines`` (a relation with record, text) into stage_metrics."""
    keys = [
        key
        for (key,) in con.execute(
            f"SELECT DISTINCT unnest(json_keys(text)) AS key FROM {lines} WHERE {_IS_OBJECT} "
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
    sql = f"SELECT record, {', '.join(cells)} FROM {lines} WHERE {_IS_OBJECT}"
    sources = {name: found[0] for name, found in resolved.items()}
    return stage_metric_cells(
        con,
        Cells(sql, params, sources),
        log,
        label=label,
        run_id=run_id,
        family=family,
    )


def native_file(
    path: Path, scan: ByteScan | None, *, run_id: str | None, family: str | None = None, source: str = ""
) -> NativeFile | None:
    """``path`` as a fast-path candidate (its layout is found by :func:`native_groups`), or None
    when only the exact path can read it exactly (see the module doc)."""
    if scan is None or not (common.FAST_PATH and plain_path(path)) or scan.has_nul or not scan.lines:
        return None
    return NativeFile(path, READER, None, scan.lines, 1, run_id, family, source, scan.size)


def native_groups(
    scratch: duckdb.DuckDBPyConnection, files: list[NativeFile]
) -> tuple[list[NativeGroup], list[NativeFile]]:
    """Pass 1, per file: every line an object, no repeated key within an object, the union of keys.
    Pass 2, per set of keys used.

    Small files (< SMALL_FILE_BYTES; DuckDB's JSON readers cost ~0.1 ms per file) are read once with
    ``read_text`` into numbered lines; pass 2 is the exact path's SQL (``json_extract_string``).
    Other files: pass 1 by ``read_ndjson_objects``, pass 2 by ``read_json`` with the keys as explicit
    columns: VARCHAR for text and the step (the text ``json_extract_string`` gives), DOUBLE for
    numbers, which ``read_json`` converts as the exact path's casts do, except booleans (true ->
    1.0, a rejected row on the exact path): files with ``true``/``false`` anywhere read their
    numbers as VARCHAR too."""
    small = [f for f in files if f.size < SMALL_FILE_BYTES]
    large = [f for f in files if f.size >= SMALL_FILE_BYTES]
    shapes: dict[str, list[tuple[bool, list[str], int, bool]]] = {}

    def load(group: list[NativeFile]) -> None:
        scratch.execute(
            f"INSERT INTO {_TEXT_LINES} SELECT filename, n, line FROM (SELECT filename, unnest(lines) AS line, "
            f"generate_subscripts(lines, 1) AS n FROM (SELECT filename, string_split(content, chr(10)) AS lines "
            f"FROM read_text(?))) WHERE line <> ''",
            [paths(group)],
        )

    def text_shapes(group: list[NativeFile]) -> None:  # a line that is not JSON fails the statement
        for name, *shape in scratch.execute(
            f"SELECT filename, starts_with(line, '{{'), json_keys(line), count(*), false "
            f"FROM {_TEXT_LINES} WHERE filename IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL",
            [paths(group)],
        ).fetchall():
            shapes.setdefault(name, []).append(tuple(shape))

    def native_shapes(group: list[NativeFile]) -> None:
        for name, *shape in scratch.execute(
            f"SELECT filename, starts_with(json, '{{'), json_keys(json), count(*), "
            f"bool_or(contains(json, 'true') OR contains(json, 'false')) "
            f"FROM read_ndjson_objects(?, maximum_object_size={MAX_LINE_BYTES - 64}, ignore_errors=false, "
            f"filename=true) GROUP BY ALL",
            [paths(group)],
        ).fetchall():  # one row per file and distinct key list: few. The text is valid JSON without
            # leading whitespace (read_ndjson_objects), so '{' first means an object
            shapes.setdefault(name, []).append(tuple(shape))

    scratch.execute("SET preserve_insertion_order = false")
    scratch.execute(f"CREATE TABLE {_TEXT_LINES} (filename VARCHAR, n BIGINT, line VARCHAR)")
    loaded, rejected = bisect(scratch, small, load) if small else ([], [])
    rejected += bisect(scratch, [f for fs, _ in loaded for f in fs], text_shapes)[1] if loaded else []
    rejected += bisect(scratch, large, native_shapes)[1] if large else []
    failed = {f.path for f in rejected}
    by_layout: dict[tuple, list[NativeFile]] = {}
    for file in files:
        if file.path in failed:
            continue
        found = shapes.get(str(file.path), [])
        keys = sorted({key for _, ks, _, _ in found for key in ks})
        resolved = resolve_aliases(keys, METRIC_ALIASES)
        used = [key for name, _ in METRIC_FIELDS for key in resolved.get(name, [])]
        if (
            sum(n for _, _, n, _ in found) != file.rows
            or any(not is_object or len(set(ks)) != len(ks) for is_object, ks, _, _ in found)
            or missing_metric_columns(resolved, keys)
            or ("run_id" not in resolved and file.run_id is None)
            or len({k.lower() for k in used}) != len(used)  # DuckDB names are case-insensitive
        ):
            rejected.append(file)
            continue
        text = file.size < SMALL_FILE_BYTES
        typed = not text and not any(boolean for *_, boolean in found)
        layout = tuple(
            (name, "DOUBLE" if typ == "DOUBLE" and typed else "VARCHAR", tuple(resolved[name]))
            for name, typ in METRIC_FIELDS
            if name in resolved
        )
        by_layout.setdefault((text, layout), []).append(file)
    return [_group(text, layout, group) for (text, layout), group in by_layout.items()], rejected


def _group(text: bool, layout: tuple, files: list[NativeFile]) -> NativeGroup:
    """Pass 2 for ``files`` of one layout: ((canonical field, read type, source keys), ...)."""
    sources = {name: keys[0] for name, _, keys in layout}
    if text:
        json_paths = [f'$."{key}"' for _, _, keys in layout for key in keys]
        extract = f"json_extract_string(line, [{', '.join(_literal(p) for p in json_paths)}])"
        index = iter(range(1, len(json_paths) + 1))
        cells = ", ".join(
            f"coalesce({', '.join(f'js[{next(index)}]' for _ in keys)}) AS {name}" for name, _, keys in layout
        )
        sql = (
            f"SELECT filename, n AS record, false AS malformed, {cells} FROM (SELECT filename, n, "
            f"{extract} AS js FROM {_TEXT_LINES} WHERE filename IN (SELECT unnest(?::VARCHAR[])))"
        )
        return NativeGroup(sql, sources, files, ordered=False)
    columns = ", ".join(f"{_literal(key)}: '{typ}'" for _, typ, keys in layout for key in keys)
    cells = ", ".join(f"coalesce({', '.join(quote_ident(k) for k in keys)}) AS {name}" for name, _, keys in layout)
    sql = (
        f"SELECT filename, NULL::BIGINT AS record, false AS malformed, {cells} "
        f"FROM read_json(?, format='newline_delimited', columns={{{columns}}}, "
        f"maximum_object_size={MAX_LINE_BYTES - 64}, ignore_errors=false, filename=true)"
    )
    return NativeGroup(sql, sources, files)


def _literal(text: str) -> str:
    """SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one JSON-lines metric log (run id defaults to the file stem)."""
    log = RejectionLog()
    try:
        rows, method = stage_jsonl(unit.path, con, log, label="line", run_id=unit.path.stem)
    except ValueError as exc:
        return file_rejection(READER, str(exc))
    return ReadReport(READER, n_metric_rows=rows, rejections=log.to_list(), method=method)


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
