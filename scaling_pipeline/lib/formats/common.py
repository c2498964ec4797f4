"""Shared pieces of the log-format readers and writers.

Readers stage rows into the TEMP tables ``stage_metrics`` / ``stage_runs`` (layouts of
:mod:`scaling_pipeline.lib.schema`) and report :class:`Rejection` s. This module holds what every
reader needs: the result dataclasses, rejections, alias resolution, Arrow batch inserts and message
excerpts. Run metadata is typed in :mod:`.run_meta`; writers' helpers are in :mod:`.writing`.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from scaling_pipeline.lib.schema import METRIC_ALIASES, METRIC_COLUMNS, RUN_COLUMNS
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


def quote_ident(name: str) -> str:
    """SQL identifier for a source column matched via the alias tables (no quotes possible)."""
    if '"' in name:
        raise ValueError(f"unexpected column name {name!r}")
    return f'"{name}"'
