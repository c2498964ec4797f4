"""JSON-lines metric logs: one JSON object per logged step, keys per METRIC_ALIASES.

Fast path (:mod:`.native`, see :func:`native_groups`): a file whose every line is a JSON object
using only the keys of its first line (no blank lines, NUL bytes or lines longer than
MAX_LINE_BYTES, no glob characters in its path) is read natively, in one statement with the other
files whose first line has the same keys; a line with exactly those keys (and no ``:`` in its
values) is parsed once into typed values, any other line by the exact path's SQL
(``json_extract_string``), see ``_group``;
``record`` = line number. It is kept only if the row count equals the file's line count and every
row types cleanly; otherwise nothing of it is kept, and it is read
again alone (its keys then are the union over its lines), then, if still rejected, by the exact
path: lines are streamed into DuckDB from Python, one rejection per bad line, and typed by the same
SQL, so a clean file gives the same rows either way. ``NaN``/``Infinity``
literals (what Python's json writes) are the logged NaN/inf; ``null`` is null. Lines that are not
JSON objects are rejected; a file with no JSON object at all is quarantined, saying what its first
bad line is (e.g. longer than MAX_LINE_BYTES, which is measured without holding the line in
memory). A final line without newline is kept if it is a complete object (a cut-off object is
never valid JSON). Unknown keys are ignored; without a run-id key the run id is
the file's path relative to the log root without its suffix (:func:`.common.path_run_id`).
``*.jsonl.gz`` files are read decompressed, by the exact path.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb

from scaling_pipeline.lib.schema import METRIC_ALIASES

from . import common
from .common import (
    EXCERPT_CHARS,
    ReadReport,
    count_method,
    RejectionLog,
    SourceUnit,
    file_rejection,
    path_run_id,
    missing_metric_columns,
    resolve_aliases,
    row_rejection,
    shorten,
)
from .manifest import write_tables
from .metric_sql import METRIC_FIELDS, Cells, TempTable, stage_metric_cells
from .native import TEXT_LINES, NativeFile, NativeGroup, bisect, paths, plain_path, stage_native
from .text import MAX_LINE_BYTES, ByteScan, is_gzip, iter_lines, scan_bytes

READER = "jsonl"
SUFFIX = ".jsonl"
_LINES = "_fmt_json_lines"
_IS_OBJECT = "CASE WHEN json_valid(text) THEN json_type(text) = 'OBJECT' ELSE false END"
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
        f"left(text, {EXCERPT_CHARS}) FROM {lines} WHERE NOT {_IS_OBJECT} ORDER BY record LIMIT ?",
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
    native = None if is_gzip(path) else native_file(path, scan_bytes(path), run_id=run_id, family=family)
    native = native and replace(native, layout=None)  # alone: the union of its lines' keys, not line 1's
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
        _reject_non_objects(con, log, label, unterminated)
        if not n_objects:
            n = n_lines + n_unreadable
            got = f"{n} line{'s' * (n != 1)} and none is a JSON object" if n else "an empty file"
            if log.listed:  # the first bad line says why
                got += f" ({min(log.listed, key=lambda r: int(r.location.rsplit(' ', 1)[1])).reason})"
            raise ValueError(f"expected JSON lines (one JSON object per line), got {got}")
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
    """``path`` as a fast-path candidate, or None when only the exact path can read it exactly (see
    the module doc). Layout: the keys of its first line (which must be a JSON object), which the batch
    read checks every line against."""
    if scan is None or not (common.FAST_PATH and plain_path(path)) or is_gzip(path):
        return None
    if scan.has_nul or not scan.lines:
        return None
    keys = _first_keys(scan.first_line())
    if keys is None or _unusable(keys, run_id):
        return None
    small = scan.size < SMALL_FILE_BYTES  # read by read_text and JSON functions, as on the exact path
    return NativeFile(path, READER, keys, scan.lines, 1, run_id, family, source, scan.size, shared=small,
                      numbered=small)


class _Object(list):
    """The (key, value) pairs of a decoded JSON object, in document order."""


def _first_keys(line: str | None) -> tuple[str, ...] | None:
    """Keys of ``line`` (line 1) in document order (repeats kept, as DuckDB's ``json_keys``), or None
    when it is not a JSON object starting with ``{``."""
    if line is None or not line.startswith("{"):
        return None
    try:
        value = json.loads(line, object_pairs_hook=_Object)
    except ValueError:
        return None
    if not isinstance(value, _Object):
        return None
    keys = tuple(key for key, _ in value)
    try:
        "".join(keys).encode()
    except UnicodeEncodeError:  # a lone surrogate (\ud800): no SQL literal can hold it
        return None
    return keys


def _unusable(keys: Iterable[str], run_id: str | None) -> bool:
    """True when a file with these keys is quarantined (no step/loss) or has no run id."""
    return _unusable_keys(tuple(sorted(set(keys))), run_id is None)


@functools.lru_cache(maxsize=1024)
def _unusable_keys(names: tuple[str, ...], no_run_id: bool) -> bool:
    resolved = resolve_aliases(names, METRIC_ALIASES)
    return bool(missing_metric_columns(resolved, list(names))) or ("run_id" not in resolved and no_run_id)


def native_groups(
    scratch: duckdb.DuckDBPyConnection, files: list[NativeFile]
) -> tuple[list[NativeGroup], list[NativeFile]]:
    """One statement per set of keys K (the layout: line 1's keys; for files without a layout, the
    union of their lines' keys, found by one pass) and size class: small files (< SMALL_FILE_BYTES;
    DuckDB's JSON readers cost ~0.1 ms per file) are split into numbered lines from ``read_text``,
    larger ones are read by ``read_ndjson_objects`` (numbered by their order). Each line is parsed for
    its values and its keys (see ``_group``); a line that is not valid JSON fails the statement, one
    that is not an object or has a key outside K is malformed (the file goes the exact way). With
    every line's keys in K and K the keys of line 1 (or the union), the file's union of keys is K,
    so its fields resolve as on the exact path."""
    by_keys: dict[tuple[tuple[str, ...], bool], list[NativeFile]] = {}
    for file in files:
        if file.layout is not None:
            by_keys.setdefault((file.layout, file.size < SMALL_FILE_BYTES), []).append(file)
    rejected: list[NativeFile] = []
    if unknown := [f for f in files if f.layout is None]:
        union: dict[str, list[str]] = {}
        for small in (True, False):
            lines, text = _lines(small)

            def union_keys(group: list[NativeFile], lines: str = lines, text: str = text) -> None:
                union.update(scratch.execute(
                    f"SELECT filename, list_distinct(flatten(list(json_keys({text})))) FROM {lines} "
                    f"GROUP BY filename", [paths(group)]).fetchall())

            part = [f for f in unknown if (f.size < SMALL_FILE_BYTES) == small]
            rejected += bisect(scratch, part, union_keys)[1] if part else []
        for file in unknown:
            if (keys := union.get(str(file.path))) is None:
                continue
            if _unusable(keys, file.run_id):
                rejected.append(file)
            else:
                by_keys.setdefault((tuple(sorted(keys)), file.size < SMALL_FILE_BYTES), []).append(file)
    return [_group(keys, small, group) for (keys, small), group in by_keys.items()], rejected


def _lines(small: bool) -> tuple[str, str]:
    """(relation of the lines of the files in the parameter: ``filename``, ``file_index``, ``n`` (line
    number, or NULL: by order), the line's column; its name). Small files: ``read_text`` split in SQL, blank
    lines dropped (the row count check then fails); others: ``read_ndjson_objects`` (valid JSON
    without leading whitespace; a blank line is skipped)."""
    if small:
        return f"(SELECT filename, file_index, n, line FROM {TEXT_LINES} WHERE line <> '')", "line"
    return (
        f"(SELECT filename, file_index, NULL::BIGINT AS n, json FROM read_ndjson_objects(?, maximum_object_size="
        f"{MAX_LINE_BYTES - 64}, ignore_errors=false, filename=true))",
        "json",
    )


def _group(keys: tuple[str, ...], small: bool, files: list[NativeFile]) -> NativeGroup:
    """The statement for ``files`` whose lines may use the keys ``keys`` only (a valid JSON text
    that starts with ``{`` is an object).

    Values: a line is parsed once, by ``json_transform_strict`` into a struct with every key of line
    1 (number fields DOUBLE, which is what the exact path's text-then-cast gives), when it has
    exactly as many ``:`` as line 1 has keys and no ``true``/``false`` in its text (the transform
    casts a JSON boolean to 1.0). Where the transform succeeds (*uniform*), every key of line 1 is
    present once, so with one ``:`` per member there is no other key. Any other line, and every line
    of a file whose line 1 repeats a key or has keys equal but for case (struct field names ignore
    case), uses the exact path's ``json_extract_string`` texts, cast as the exact path casts them; a
    number field whose text does not cast makes the line malformed. A line that is not valid JSON
    fails the statement (``json_keys``): the files are then read again in smaller sets and the file
    at fault alone, by the exact path. A line longer than MAX_LINE_BYTES is malformed too (the exact
    path rejects it; ``read_ndjson_objects`` ignores its ``maximum_object_size``)."""
    resolved = resolve_aliases(sorted(set(keys)), METRIC_ALIASES)
    fields = [(name, resolved[name]) for name, _ in METRIC_FIELDS if name in resolved]
    json_paths = [f'$."{key}"' for _, found in fields for key in found]
    index = iter(range(1, len(json_paths) + 1))
    texts = {name: f"coalesce({', '.join(f'js[{next(index)}]' for _ in found)})" for name, found in fields}
    allowed = f"[{', '.join(_literal(k) for k in keys)}]::VARCHAR[]"
    lines, text = _lines(small)
    types = dict(METRIC_FIELDS)
    typed = len({k.lower() for k in keys}) == len(keys)
    metric = {key: "DOUBLE" if types[name] == "DOUBLE" else "VARCHAR" for name, found in fields for key in found}
    structure = _literal(json.dumps({key: metric.get(key, "JSON") for key in keys}))
    parsed = (
        f"CASE WHEN strlen({text}) - strlen(replace({text}, ':', '')) = {len(keys)} AND NOT (contains({text}, "
        f"'true') OR contains({text}, 'false')) THEN TRY(json_transform_strict({text}, {structure})) END"
        if typed else "NULL"
    )
    cells, failed = [], []
    for name, found in fields:
        value = f"coalesce({', '.join(f'struct_extract(s, {_literal(key)})' for key in found)})"
        other = texts[name]
        if types[name] == "DOUBLE":
            other = f"TRY_CAST({texts[name]} AS DOUBLE)"
            failed.append(f" OR (NOT uniform AND {texts[name]} IS NOT NULL AND {other} IS NULL)")
        cells.append(f"CASE WHEN uniform THEN {value} ELSE {other} END AS {name}" if typed else f"{other} AS {name}")
    sql = (
        f"SELECT filename, file_index, n AS record, NOT starts_with({text}, '{{') "
        f"OR strlen({text}) > {MAX_LINE_BYTES} OR CASE WHEN uniform THEN false "
        f"ELSE NOT list_has_all({allowed}, json_keys({text})) END{''.join(failed)} AS malformed, {', '.join(cells)} "
        f"FROM (SELECT *, CASE WHEN NOT uniform THEN json_extract_string({text}, "
        f"[{', '.join(_literal(p) for p in json_paths)}]) END AS js FROM (SELECT *, s IS NOT NULL AS uniform "
        f"FROM (SELECT filename, file_index, n, {text}, {parsed} AS s FROM {lines})))"
    )
    return NativeGroup(sql, {name: found[0] for name, found in fields}, files)


def _literal(text: str) -> str:
    """SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one JSON-lines metric log (run id defaults to its path relative to the log root)."""
    log = RejectionLog()
    try:
        rows, method = stage_jsonl(unit.path, con, log, label="line", run_id=path_run_id(unit))
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
