"""Typing and validating run metadata (small, done in Python): one run's fields -> a ``stage_runs`` row."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import duckdb

from scaling_pipeline.lib.schema import RUN_ALIASES, RUN_COLUMNS, RUN_RANGES, out_of_range

from .common import (
    STAGE_RUNS,
    ReadReport,
    Rejection,
    RejectionLog,
    alias_list,
    arrow_table,
    field_rejection,
    insert_arrow,
    resolve_aliases,
    row_rejection,
    shorten,
)

_INT_RE = re.compile(r"[+-]?\d+")


def to_double(value: Any) -> float | None:
    """Number (NaN/inf allowed) or None for null/empty; ValueError otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("expected a number")
    return float(value)


def to_bigint(value: Any) -> int | None:
    """Integer (also '62.0', 1e3) or None for null/empty; ValueError otherwise."""
    number = to_double(value)
    if number is None:
        return None
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        result = int(value)
    elif math.isfinite(number) and number.is_integer():
        result = int(number)
    else:
        raise ValueError("expected an integer")
    if not -(2**63) <= result < 2**63:
        raise ValueError("expected an integer")
    return result


def to_varchar(value: Any) -> str | None:
    """Text or None for null/empty."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


_CASTS = {"VARCHAR": to_varchar, "DOUBLE": to_double, "BIGINT": to_bigint}
_EXPECTED = {"VARCHAR": "text", "DOUBLE": "a number", "BIGINT": "an integer"}


def guess_scalar(text: str) -> Any:
    """Untyped metadata text (CSV cell, MLflow param) -> int, finite float or the text itself."""
    stripped = text.strip()
    if _INT_RE.fullmatch(stripped):
        return int(stripped)
    try:
        number = float(stripped)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _json_value(value: Any) -> Any:
    """A value JSON can hold (non-finite floats become their text)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


@functools.lru_cache(maxsize=256)
def _run_aliases(keys: tuple[str, ...]) -> dict[str, list[str]]:
    """resolve_aliases(keys, RUN_ALIASES), once per set of keys (a manifest's rows share them; do not
    modify the result)."""
    return resolve_aliases(keys, RUN_ALIASES)


def run_row(
    meta: Mapping[str, Any], location: str, *, untyped: bool, fallback_run_id: str | None = None
) -> tuple[dict[str, Any], list[Rejection]]:
    """Type and validate one run's metadata into a RUN_COLUMNS dict.

    ``meta`` keys are matched via RUN_ALIASES (the first non-empty alias is the value); every other
    non-empty key goes into ``extra`` (JSON, sorted keys). ``untyped``: values are text (CSV cells,
    MLflow params), so extras that look like numbers become numbers. A value of the wrong type, not
    finite or outside its plausible range (:data:`~scaling_pipeline.lib.schema.RUN_RANGES`) is left
    out of the row with a 'field' rejection and kept as given in ``extra``: the run keeps its other
    metadata (cleaning then names the missing fact). Without a run id the whole row is rejected
    ('row' scope; see :func:`keeps_row`). ``location`` (e.g. "line 3", "config.yaml") is stored
    with the row. run_id/family are always filled as far as known, so callers can label metrics."""
    resolved = _run_aliases(tuple(meta))
    row: dict[str, Any] = {"location": location}
    used: set[str] = set()
    rejections: list[Rejection] = []
    for name, typ in RUN_COLUMNS:
        if name in ("extra", "location"):
            continue
        source = next((s for s in resolved.get(name, []) if to_varchar(meta[s]) is not None), None)
        if source is None:
            continue
        try:
            value = _CASTS[typ](meta[source])
            problem = out_of_range(value, RUN_RANGES[name]) if name in RUN_RANGES else None
        except (ValueError, OverflowError):
            problem = f"expected {_EXPECTED[typ]}, got {shorten(meta[source])}"
        if problem:
            rejections.append(field_rejection(location, source, problem))
            continue
        used.add(source)
        row[name] = value
    if row.get("run_id") is None:
        row["run_id"] = fallback_run_id
    if row["run_id"] is None:
        rejections.append(row_rejection(
            location, None, f"expected a run id (one of {alias_list(RUN_ALIASES, 'run_id')})"
        ))
    extra = {
        str(k): (guess_scalar(v) if untyped and isinstance(v, str) else _json_value(v))
        for k, v in meta.items()
        if k not in used and to_varchar(v) is not None
    }
    row["extra"] = json.dumps(extra, sort_keys=True, ensure_ascii=False, default=str)
    return row, rejections


def keeps_row(rejections: list[Rejection]) -> bool:
    """True when ``rejections`` only leave fields out (none drops the whole row)."""
    return all(r.scope == "field" for r in rejections)


def run_report(reader: str, con: duckdb.DuckDBPyConnection, log: RejectionLog, run: dict[str, Any],
               rejections: list[Rejection], n_metric_rows: int) -> ReadReport:
    """Finish a one-run reader: stage its metadata row unless it was rejected, and report."""
    for rejection in rejections:
        log.add(rejection)
    n_runs = stage_run_rows(con, [run]) if keeps_row(rejections) else 0
    return ReadReport(reader, n_metric_rows=n_metric_rows, n_run_rows=n_runs, rejections=log.to_list())


def stage_run_rows(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> int:
    """Insert typed run rows into ``stage_runs``; returns the count."""
    if rows:
        insert_arrow(con, STAGE_RUNS, arrow_table(RUN_COLUMNS, rows))
    return len(rows)
