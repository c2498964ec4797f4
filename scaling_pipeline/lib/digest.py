"""What a stage's output was made from, as one SHA-256 (:func:`inputs_digest`): the content of the tables it
reads (row count and the order-independent sum of the row hashes, computed by DuckDB), its settings and the
library's code (:func:`code_version`). A stage stores the digest with its output and keeps the output when the
next run's digest is the same."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

from scaling_pipeline.lib.tables import Table

_LIB = Path(__file__).resolve().parent  # scaling_pipeline/lib
_LIBRARIES = ("duckdb", "numpy", "pandas", "scipy")  # their results are part of every stage's output


@functools.cache
def code_version(*libraries: str) -> str:
    """SHA-256 over every ``*.py`` of ``scaling_pipeline.lib`` and the versions of the numeric libraries and of
    ``libraries``."""
    h = hashlib.sha256()
    for path in sorted(_LIB.rglob("*.py")):
        h.update(path.relative_to(_LIB).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in sorted({*_LIBRARIES, *libraries}):
        h.update(f"{dist}=={importlib.metadata.version(dist)}\0".encode())
    return h.hexdigest()


def inputs_digest(con: duckdb.DuckDBPyConnection, tables: Iterable[Table], settings: dict[str, Any]) -> str:
    """SHA-256 of ``tables``' content (each one's row count and sum of row hashes; a missing table counts as
    absent), ``settings`` (JSON) and the code version."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode() + b"\0" + code_version().encode())
    for table in tables:  # names from the table registry, never from input
        row = (con.execute(f"SELECT count(*), sum(hash(t)::HUGEINT) FROM {table.name} t").fetchone()
               if _exists(con, table) else None)
        h.update(f"\0{table.name}\0{row!r}".encode())
    return h.hexdigest()


def stored_digest(con: duckdb.DuckDBPyConnection, table: Table) -> str | None:
    """The digest held by ``table`` (one row, column ``input_hash``), or None (absent, or not one row). Reads
    nothing that could fail, so it is safe inside a transaction."""
    if not _exists(con, table):
        return None
    rows = con.execute(f"SELECT input_hash FROM {table.name}").fetchall()
    return rows[0][0] if len(rows) == 1 else None


def _exists(con: duckdb.DuckDBPyConnection, table: Table) -> bool:
    schema, name = table.name.split(".")
    return con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
                       [schema, name]).fetchone()[0] > 0
