"""Helpers the log writers (demo data, tests) use: DataFrames to plain values, exact CSV text, and run ids
to safe file names."""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(run_id: str) -> str:
    """File/directory name for ``run_id``: ASCII [A-Za-z0-9._-], no leading dot, <= 80 chars.

    Names that had to change get a short hash of the run id, so distinct ids never collide."""
    slug = _UNSAFE.sub("_", run_id).lstrip(".")[:64]
    if slug == run_id and slug:
        return slug
    return f"{slug or 'run'}-{hashlib.sha256(run_id.encode()).hexdigest()[:10]}"


def _plain(value: Any, typ: str | None, keep_nan: bool) -> Any:
    """Python value of one DataFrame cell; pandas missing markers -> None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value) and not (keep_nan and typ == "DOUBLE"):
        return None
    if typ == "BIGINT":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    if typ == "DOUBLE":
        return float(value)
    if typ == "VARCHAR":
        return str(value)
    return value


def frame_records(
    frame: pd.DataFrame, columns: list[tuple[str, str]], *, extras: bool
) -> list[dict[str, Any]]:
    """Rows of ``frame`` as dicts of plain Python values, typed per ``columns``.

    Missing values: None/pd.NA, and NaN in numpy-backed columns (pandas' missing marker), become
    None. A literal NaN loss survives only in a column that holds NaN and null apart:
    ``pd.ArrowDtype(pa.float64())`` or object dtype. ``extras``: keep other columns (untyped)."""
    types = dict(columns)
    names = [c for c in frame.columns if c in types or extras]
    values = {}
    for name in names:
        series = frame[name]
        keep_nan = isinstance(series.dtype, pd.ArrowDtype) or series.dtype == object
        values[name] = [_plain(v, types.get(name), keep_nan) for v in series.astype(object)]
    return [{name: values[name][i] for name in names} for i in range(len(frame))]


def iter_runs(
    runs: list[dict[str, Any]], metrics: Mapping[str, list[dict[str, Any]]]
) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(run_id, run metadata, metric rows) for every run in ``runs`` or ``metrics``.

    A run missing from ``runs`` gets metadata {run_id, family of its first metric row}."""
    by_id = {run["run_id"]: run for run in runs}
    for run_id in dict.fromkeys([*by_id, *metrics]):
        rows = metrics.get(run_id, [])
        meta = by_id.get(run_id) or {
            "run_id": run_id,
            "family": rows[0].get("family") if rows else None,
        }
        yield run_id, meta, rows


def format_text(value: Any) -> str:
    """Text of a value in untyped formats (CSV cells, MLflow params); exact for floats (repr)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(path: Path, columns: list[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """CSV with a header; floats exact (repr), null -> empty cell, NaN -> 'nan'."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([format_text(row.get(c)) for c in columns] for row in rows)
    return path
