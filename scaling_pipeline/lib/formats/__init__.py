"""Readers and writers of training-log formats.

Reading, per source unit (a file or a run directory)::

    con = duckdb.connect(...)
    create_staging(con)                 # TEMP stage_metrics / stage_runs, emptied
    for unit in discover(root):         # sorted SourceUnit(path, reader, members[, skipped])
        report = read_unit(unit, con)   # rows staged; ReadReport(reader, counts, rejections)
        ...                             # copy the staged rows, then create_staging(con) again

Readers never raise for bad input: a bad row is a 'row' rejection (the rest is kept), an
unreadable unit a 'file' rejection (nothing is staged). Every rejection reason starts with its
location and says what was expected.

Many plain csv/jsonl/parquet files at a time (the fast path ingest uses, :mod:`.native`)::

    files = [f for u in units if (f := native_file(u, scan_of_u, source=...))]
    con.begin()                         # one pass, kept only if every file is accepted
    if insert_native(files_of_one_reader_and_layout, con, "raw.metrics") is None:
        con.rollback()                  # then hold each file's rows apart until it typed cleanly:
        with read_native(files_of_one_reader_and_layout, con) as result:
            result.store(con, "raw.metrics", source_path=True)   # the accepted files' rows
            result.rejected             # read these alone with read_unit

Writing, for the simulator and tests::

    write_logs("mlflow", out_dir, runs_df, metrics_df)  # -> paths written under out_dir

Layouts per format are in each module's ``write`` docstring; the round trip write -> read gives
back the same rows (tensorboard: values rounded to float32, see :mod:`.tensorboard_log`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from scaling_pipeline.lib.schema import RUN_COLUMNS

from . import csv_log, jsonl_log, manifest, mlflow_log, parquet_log, tensorboard_log, wandb_export, wandb_log
from .common import STAGE_METRICS, STAGE_RUNS, ReadReport, Rejection, SourceUnit, create_staging, path_run_id
from .writing import frame_records
from .discovery import SKIPPED, discover, read_skipped
from .metric_sql import METRIC_FIELDS
from .native import NativeFile, NativeRead
from .native import insert_native as _insert_native
from .native import insertion_order
from .native import read_native as _read_native
from .text import ByteScan

__all__ = [
    "FORMATS",
    "SCANNED_READERS",
    "READERS",
    "READERS_VERSION",
    "ReadReport",
    "Rejection",
    "SourceUnit",
    "create_staging",
    "discover",
    "native_file",
    "read_native",
    "insert_native",
    "insertion_order",
    "read_unit",
    "write_logs",
]

# Bumped when the readers make other rows of unchanged files (2: run ids relative to the log root,
# token-only tables, W&B chart exports): ingest hashes it with each unit, so every unit is read again.
READERS_VERSION = 2
FORMATS = ("csv", "jsonl", "parquet", "tensorboard", "mlflow", "wandb")
READERS: dict[str, Callable[[SourceUnit, duckdb.DuckDBPyConnection], ReadReport]] = {
    "manifest": manifest.read,
    "csv": csv_log.read,
    "jsonl": jsonl_log.read,
    "parquet": parquet_log.read,
    "tensorboard": tensorboard_log.read,
    "mlflow": mlflow_log.read,
    "wandb": wandb_log.read,
    "wandb_export": wandb_export.read,
    SKIPPED: read_skipped,  # entries discover lists but does not read (links leaving the root, ...)
}
_NATIVE = {"csv": csv_log, "jsonl": jsonl_log, "parquet": parquet_log}  # readers with a fast path
SCANNED_READERS = ("csv", "jsonl")  # their fast path needs a byte scan of the file (native_file)
_WRITERS = {
    "csv": csv_log.write,
    "jsonl": jsonl_log.write,
    "parquet": parquet_log.write,
    "tensorboard": tensorboard_log.write,
    "mlflow": mlflow_log.write,
    "wandb": wandb_log.write,
}


def read_unit(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage ``unit`` into ``stage_metrics``/``stage_runs`` (see :func:`create_staging`).

    A quarantined unit leaves the staging tables empty. Unexpected exceptions (bugs, I/O errors)
    propagate; :func:`scaling_pipeline.lib.ingest.ingest` turns them into quarantine rows."""
    report = READERS[unit.reader](unit, con)
    if report.status == "quarantined":
        con.execute(f"DELETE FROM {STAGE_METRICS}")
        con.execute(f"DELETE FROM {STAGE_RUNS}")
    return report


def native_file(unit: SourceUnit, scan: ByteScan | None, source: str) -> NativeFile | None:
    """``unit`` as a candidate for a batched native read (:mod:`.native`; run id defaults to its path
    relative to the log root, :func:`.common.path_run_id`; ``source`` is carried to its rows), or None when its reader must read it alone. ``scan``:
    the byte scan csv/jsonl candidates need (None: not a candidate)."""
    module = _NATIVE.get(unit.reader)
    if module is None or len(unit.members) != 1:
        return None
    return module.native_file(unit.path, scan, run_id=path_run_id(unit), source=source)


def read_native(files: list[NativeFile], con: duckdb.DuckDBPyConnection | None = None
                ) -> AbstractContextManager[NativeRead]:
    """Read ``files`` (one reader, e.g. grouped by :attr:`NativeFile.layout`) natively, in ``con``'s
    DuckDB instance if they are all :attr:`NativeFile.shared`; see :func:`.native.read_native`."""
    return _read_native(files, _NATIVE[files[0].reader].native_groups, con)


def insert_native(files: list[NativeFile], con: duckdb.DuckDBPyConnection, table: str) -> int | None:
    """Read ``files`` (one reader) natively straight into ``table`` on ``con``, in one pass; None when
    the caller must roll back and use :func:`read_native`; see :func:`.native.insert_native`."""
    return _insert_native(files, _NATIVE[files[0].reader].native_groups, con, table)


def write_logs(fmt: str, out_dir: Path, runs: pd.DataFrame, metrics: pd.DataFrame) -> list[Path]:
    """Write ``runs`` (RUN_COLUMNS without extra, plus any extra columns) and ``metrics``
    (METRIC_COLUMNS without record) as logs in format ``fmt`` under ``out_dir``; returns the files.

    Missing values: None/pd.NA, and NaN in numpy-backed columns (pandas' missing marker), are
    written as null. To log a literal NaN loss use a column holding NaN and null apart
    (``pd.ArrowDtype(pa.float64())`` or object dtype). File names are sanitised run ids; run ids
    themselves are written unchanged."""
    if fmt not in _WRITERS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    run_rows = frame_records(runs, [c for c in RUN_COLUMNS if c[0] != "extra"], extras=True)
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in frame_records(metrics, METRIC_FIELDS, extras=False):
        if row.get("run_id") is None or row.get("step") is None:
            raise ValueError(f"every metric row needs run_id and step, got {row}")
        by_run.setdefault(row["run_id"], []).append(row)
    if any(run.get("run_id") is None for run in run_rows):
        raise ValueError("every run needs a run_id")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _WRITERS[fmt](out_dir, run_rows, by_run)
