"""Run manifests: ``runs.csv``, ``runs.yaml``/``runs.yml`` -> ``stage_runs``.

One row per run with RUN_ALIASES columns; every other column goes into ``extra`` (JSON). CSV cells
are text, so extra values that look like numbers are stored as numbers; YAML keeps its own types.
Each row is validated by :func:`~.common.run_row`: an implausible value is a 'field' rejection
naming the line (or YAML record) and field, and the run keeps its other columns.
A CSV manifest's final line may lack a newline (hand-edited files) if it is otherwise complete.
The writer produces the ``runs.csv`` that the csv/jsonl/parquet layouts put next to their metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb

from scaling_pipeline.lib.schema import RUN_ALIASES, RUN_COLUMNS

from .common import (
    ReadReport,
    RejectionLog,
    SourceUnit,
    alias_list,
    excerpt,
    file_rejection,
    resolve_aliases,
    row_rejection,
)
from .run_meta import keeps_row, run_row, stage_run_rows
from .writing import safe_name, write_csv
from .safe_yaml import load_yaml
from .text import iter_csv_records

READER = "manifest"


def _csv_runs(path: Path) -> Iterator[tuple[str, Mapping[str, Any] | None, str | None]]:
    """(location, run dict or None, problem) per data row; raises ValueError for a bad header."""
    records = iter_csv_records(path)
    header = next(records, None)
    if header is None:
        raise ValueError("expected a header line naming the columns, got an empty file")
    if header.fields is None:
        raise ValueError(f"line {header.line} (header): {header.error}")
    names = [name.strip() for name in header.fields]
    if "run_id" not in resolve_aliases(names, RUN_ALIASES):
        raise ValueError(
            f"expected a run id column (one of {alias_list(RUN_ALIASES, 'run_id')}), "
            f"found columns: {excerpt(', '.join(names))}"
        )
    for record in records:
        location = f"line {record.line}"
        if record.fields is None:
            yield location, None, record.error
        elif len(record.fields) != len(names):
            problem = f"expected {len(names)} fields as in the header, got {len(record.fields)}"
            yield location, None, problem
        else:
            yield location, dict(zip(names, record.fields, strict=True)), None


def _yaml_runs(path: Path) -> Iterator[tuple[str, Mapping[str, Any] | None, str | None]]:
    data = load_yaml(path)
    runs = data.get("runs") if isinstance(data, dict) else data
    if not isinstance(runs, list):
        raise ValueError("expected a list of runs or a mapping with a 'runs' list")
    for number, item in enumerate(runs, 1):
        if isinstance(item, dict):
            yield f"record {number}", item, None
        else:
            yield (
                f"record {number}",
                None,
                f"expected a mapping of run fields, got {type(item).__name__}",
            )


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one manifest's runs."""
    untyped = unit.path.suffix.lower() == ".csv"
    log, rows = RejectionLog(), []
    try:
        for location, meta, problem in (_csv_runs if untyped else _yaml_runs)(unit.path):
            if meta is None:
                log.add(row_rejection(location, None, problem or "unreadable record"))
                continue
            row, rejections = run_row(meta, location, untyped=untyped)
            for rejection in rejections:
                log.add(rejection)
            if keeps_row(rejections):
                rows.append(row)
    except ValueError as exc:
        return file_rejection(READER, str(exc))
    if not rows and not log.listed:
        return file_rejection(READER, "expected at least one run, got none")
    return ReadReport(READER, n_run_rows=stage_run_rows(con, rows), rejections=log.to_list())


def write_manifest(path: Path, runs: list[dict[str, Any]]) -> Path:
    """``runs.csv``: RUN_COLUMNS (without extra and location) then every extra column, in first-seen
    order."""
    columns = [name for name, _ in RUN_COLUMNS if name not in ("extra", "location")]
    for run in runs:
        columns += [key for key in run if key not in columns]
    return write_csv(path, columns, runs)


def write_tables(
    out_dir: Path,
    runs: list[dict[str, Any]],
    metrics: Mapping[str, list[dict[str, Any]]],
    suffix: str,
    write_file: Callable[[Path, list[dict[str, Any]]], object],
) -> list[Path]:
    """Layout of the table formats: ``runs.csv`` (if there are runs) + one
    ``<safe run id><suffix>`` file per run with metrics."""
    paths = [write_manifest(out_dir / "runs.csv", runs)] if runs else []
    for run_id, rows in metrics.items():
        path = out_dir / f"{safe_name(run_id)}{suffix}"
        write_file(path, rows)
        paths.append(path)
    return paths
