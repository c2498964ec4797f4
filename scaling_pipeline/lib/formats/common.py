"""Shared pieces of the log-format readers and writers.

Readers stage rows into the TEMP tables ``stage_metrics`` / ``stage_runs`` (layouts of
:mod:`scaling_pipeline.lib.schema`) and report :class:`Rejection` s. This module holds what every
reader needs: the result dataclasses, alias resolution, typing of run metadata (small, done in
Python), Arrow batch inserts, and the helpers writers use to turn DataFrames into plain values and
run ids into safe file names.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from scaling_pipeline.lib.schema import (
    METRIC_ALIASES,
    METRIC_COLUMNS,
    RUN_ALIASES,
    RUN_COLUMNS,
    RUN_RANGES,
    out_of_range,
)
from scaling_pipeline.lib.tables import ddl

from .text import log_stem

STAGE_METRICS = "stage_metrics"
STAGE_RUNS = "stage_runs"
MAX_LISTED_REJECTIONS = 1000  # per unit; further bad rows are summarised in one rejection
EXCERPT_CHARS = 80  # a message quotes at most this many characters of the input (see excerpt)
ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "DOUBLE": pa.float64(),
    "BIGINT": pa.int64(),
    "VARCHAR[]": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class SourceUnit:
    """A file or run directory read as one unit; ``members``: the files hashed to detect changes.
    Reader 'skipped': an entry listed but never opened (no members), ``skipped`` says why.
    ``root``: the log root it was found under (None: a unit made by hand), see :func:`path_run_id`."""

    path: Path
    reader: str
    members: tuple[Path, ...]
    skipped: str | None = None
    root: Path | None = None


def path_run_id(unit: SourceUnit, folder: Path | None = None) -> str:
    """The run id of data that names none: the unit's path (or ``folder``, its run directory) relative
    to the log root, posix, a file's without its format suffix (``large/train``,
    ``csv/atlas-10M-tpp12`` for ``csv/atlas-10M-tpp12.csv.gz``), so it is unique within the root.
    The name alone for the root itself or a unit without a root."""
    path = unit.path if folder is None else folder
    name = log_stem(path) if path in unit.members else path.name
    if unit.root is None or path == unit.root:
        return name
    try:
        parent = path.parent.relative_to(unit.root)
    except ValueError:
        return name
    return (parent / name).as_posix()


@dataclass(frozen=True)
class Rejection:
    """Something not ingested; ``scope``: 'field' (field left out, row kept), 'row' (row dropped,
    rest kept) or 'file' (none kept)."""

    location: str  # "line 17", "row 3", "file", "metrics/lr line 4", "config.yaml", ...
    field: str | None  # source column/key at fault; None when the whole record/file is bad
    reason: str  # full message, starts with the location and says what was expected
    scope: str = "row"


@dataclass
class ReadReport:
    """What one ``read_unit`` call staged and rejected."""

    reader: str
    n_metric_rows: int = 0
    n_run_rows: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    # how the metric rows were read: 'fast' (DuckDB's native reader, validated) or 'exact'
    # (line by line, precise row rejections); None for readers without a fast path
    method: str | None = None

    @property
    def status(self) -> str:
        """'quarantined' (a file-scope rejection), 'partial' (row/field rejections) or 'ok'."""
        if any(r.scope == "file" for r in self.rejections):
            return "quarantined"
        return "partial" if self.rejections else "ok"


FAST_PATH = True  # False: text readers always read line by line (benchmarks, debugging)
READ_METHODS: Counter[str] = Counter()  # "<reader>/<method>" -> count, for benchmarks and tests


def count_method(reader: str, method: str) -> str:
    """Record that a ``reader`` staged a table via ``method`` ('fast' | 'exact'); returns it."""
    READ_METHODS[f"{reader}/{method}"] += 1
    return method


def file_rejection(reader: str, reason: str, location: str = "file") -> ReadReport:
    """Report for a unit of which nothing is kept."""
    return ReadReport(
        reader, rejections=[Rejection(location, None, f"{location}: {reason}", "file")]
    )


def row_rejection(location: str, field_name: str | None, problem: str) -> Rejection:
    """A dropped row: ``problem`` says what was expected and what was found."""
    where = f"{location}: field '{field_name}': " if field_name else f"{location}: "
    return Rejection(location, field_name, where + problem, "row")


def field_rejection(location: str, field_name: str, problem: str) -> Rejection:
    """A field left out of a row that is kept: ``problem`` says what was expected and found."""
    return Rejection(location, field_name, f"{location}: field '{field_name}': {problem}", "field")


class RejectionLog:
    """Row rejections of one unit; lists at most MAX_LISTED_REJECTIONS and counts the rest."""

    def __init__(self) -> None:
        self.listed: list[Rejection] = []
        self.unlisted = 0

    @property
    def room(self) -> int:
        return max(MAX_LISTED_REJECTIONS - len(self.listed), 0)

    def add(self, rejection: Rejection) -> None:
        if self.room:
            self.listed.append(rejection)
        else:
            self.unlisted += 1

    def to_list(self) -> list[Rejection]:
        if not self.unlisted:
            return list(self.listed)
        note = (
            f"more rows: {self.unlisted} further rows rejected (listing capped at "
            f"{MAX_LISTED_REJECTIONS} per unit; the listed ones show the kinds of problems)"
        )
        return [*self.listed, Rejection("more rows", None, note, "row")]


# ---------------------------------------------------------------------------------------------
# staging
# ---------------------------------------------------------------------------------------------


def create_staging(con: duckdb.DuckDBPyConnection) -> None:
    """Create (if absent) and empty the TEMP tables ``stage_metrics``/``stage_runs`` on ``con``."""
    for table, columns in ((STAGE_METRICS, METRIC_COLUMNS), (STAGE_RUNS, RUN_COLUMNS)):
        con.execute(ddl(table, columns, how="CREATE TEMP TABLE IF NOT EXISTS"))
        con.execute(f"DELETE FROM {table}")


_batch_ids = itertools.count()


def insert_arrow(con: duckdb.DuckDBPyConnection, table: str, batch: pa.Table) -> None:
    """INSERT all rows of ``batch`` (columns in ``table``'s order) into ``table`` (a constant)."""
    name = f"_fmt_batch_{next(_batch_ids)}"
    con.register(name, batch)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM {name}")
    finally:
        con.unregister(name)


def arrow_table(columns: list[tuple[str, str]], rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Arrow table with DuckDB-typed ``columns`` from dict rows (missing keys -> null)."""
    rows = list(rows)
    return pa.table(
        {name: pa.array([r.get(name) for r in rows], ARROW_TYPES[typ]) for name, typ in columns}
    )


# ---------------------------------------------------------------------------------------------
# aliases and run metadata
# ---------------------------------------------------------------------------------------------


def resolve_aliases(names: Iterable[str], aliases: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Canonical column -> source names present (original spelling), best alias first.

    Matching is on the stripped, lower-cased name, exactly as listed in the alias table."""
    by_key: dict[str, list[str]] = {}
    for name in names:
        by_key.setdefault(name.strip().lower(), []).append(name)
    out: dict[str, list[str]] = {}
    for canonical, alias_list in aliases.items():
        found = [name for alias in alias_list for name in by_key.get(alias, [])]
        if found:
            out[canonical] = found
    return out


def alias_list(aliases: Mapping[str, list[str]], *canonical: str) -> str:
    """Human list of accepted names for error messages."""
    return ", ".join(a for c in canonical for a in aliases[c])


def missing_metric_columns(
    resolved: Mapping[str, list[str]],
    found: list[str],
    *,
    need_step: bool = True,
    what: str = "column",
) -> str | None:
    """Why a metric source without a step (or tokens: the step is then derived from them, see
    :mod:`.metric_sql`) or loss ``what`` cannot be read (None when it can)."""
    shown = excerpt(", ".join(found)) if found else "none"
    if need_step and "step" not in resolved and "tokens" not in resolved:
        return (
            f"expected a step {what} (one of {alias_list(METRIC_ALIASES, 'step')}) or a tokens {what} "
            f"(one of {alias_list(METRIC_ALIASES, 'tokens')}), found: {shown}"
        )
    if "train_loss" not in resolved and "eval_loss" not in resolved:
        return (
            f"expected a loss {what} (one of "
            f"{alias_list(METRIC_ALIASES, 'train_loss', 'eval_loss')}), found: {shown}"
        )
    return None


def event_mapping(keys: list[str], fields: Iterable[str], what: str) -> tuple[dict[str, str], str | None]:
    """For event formats (one series per key/tag, the step carried by each event): ``{key: canonical
    field}`` for the keys that name one of ``fields``, and why the source cannot be read (or None)."""
    resolved = {name: found for name, found in resolve_aliases(keys, METRIC_ALIASES).items() if name in fields}
    problem = missing_metric_columns(resolved, keys, need_step=False, what=what)
    return {found[0]: name for name, found in resolved.items()}, problem


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


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` (a piece of the input) for a message: characters that are not printable (control
    characters such as newline and NUL, bidi and other format characters) escaped as repr escapes
    them, at most ``limit`` characters, a cut marked by '...' (never inside an escape)."""
    pieces = [char if char.isprintable() else repr(char)[1:-1] for char in text[:limit]]
    if len(text) <= limit and sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    kept, room = [], limit - 3
    for piece in pieces:
        if len(piece) > room:
            break
        kept.append(piece)
        room -= len(piece)
    return "".join(kept) + "..."


def shorten(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """repr of ``value`` (quoted when text) as :func:`excerpt` cuts it, for messages."""
    return excerpt(repr(value[:limit] if isinstance(value, str) else value), limit)


# ---------------------------------------------------------------------------------------------
# writer helpers
# ---------------------------------------------------------------------------------------------

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


def quote_ident(name: str) -> str:
    """SQL identifier for a source column matched via the alias tables (no quotes possible)."""
    if '"' in name:
        raise ValueError(f"unexpected column name {name!r}")
    return f'"{name}"'
