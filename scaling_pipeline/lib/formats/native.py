"""The fast path: many plain metric files read by DuckDB's native readers in one statement.

A *native file* is a metric file whose bytes say a native read can be exact (csv: header on line
1, no quotes, CR or NUL bytes, every line ending in ``\\n``; jsonl: no NUL bytes; parquet: a
readable footer), with the number of data rows its bytes promise. Files of one reader and layout
(:attr:`NativeFile.layout`) are read together by one ``read_csv``/``read_ndjson_objects``/
``read_parquet`` statement (``filename=true``; small csv/jsonl files: ``read_text``, split into
numbered lines in SQL as the exact path splits them, which avoids the readers' per-file cost) in a
scratch in-memory database, and typed by the same SQL as the exact paths
(:func:`metric_sql.typing_sql`). Statements whose rows carry their record number run as one
statement per DuckDB thread over interleaved parts of the files, at once: a single statement over
many small files keeps about one core busy. A file is *accepted* only if

* it yielded exactly the promised number of rows (as one block in the reader's output order when
  the reader does not number them: ``record`` is then its row ordinal + ``first_record``), and
* none of its rows is malformed or fails typing (integer step, numbers numbers, non-empty run id).

Every other file is *rejected*: nothing of it is kept, and the caller reads it alone by its
reader's exact path, which reports precise row rejections. A statement that fails as a whole (one
malformed file fails ``read_csv`` for the whole list) is retried on each half of its files until
the failing files are isolated. DuckDB's file readers run in a scratch database, which isolates
the warehouse from reader failures DuckDB treats as fatal (seen once on a fuzzed file): then every
file of the call is rejected. Files whose read is only ``read_text`` and the string/JSON functions
the exact path runs on the warehouse anyway (small csv/jsonl files, :attr:`NativeFile.shared`) are
read in the warehouse's own instance, which saves copying their rows out through Arrow.

:func:`insert_native` is the one-pass form for files whose rows carry their record number: it
inserts the rows straight into the destination table, keeping only rows with a record inside their
file's promised range, so the count it returns equals the sum of the promises exactly when every
file would have been accepted; otherwise the caller rolls back and uses :func:`read_native`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
import tempfile
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa

from scaling_pipeline.lib.interrupts import reraise_interrupt

from .common import STAGE_METRICS
from .metric_sql import METRIC_FIELDS, typing_sql

GLOB_CHARACTERS = frozenset("*?[")  # DuckDB's readers expand these even in a list of paths
BATCH_BYTES = 256 << 20  # source bytes read together by one call in ingest (bounds memory) ...
BATCH_ROWS = 1_000_000  # ... and rows (Parquet is compact: its rows bound the scratch database)
ONE_PASS_MIN_ROWS = 500  # rows per file on average from which insert_native pays (see one_pass_pays)
# the lines of the files in the parameter, read by read_text and split in SQL: filename, file_index,
# n (line number, from 1; a final newline gives an empty last line) and line (without its newline)
TEXT_LINES = (
    "(SELECT filename, file_index, unnest(lines) AS line, generate_subscripts(lines, 1) AS n FROM ("
    "SELECT filename, file_index, string_split(content, chr(10)) AS lines FROM read_text(?)))"
)
_TYPED = "typed"
_ACCEPTED = "accepted"
T = TypeVar("T")


@dataclass(frozen=True)
class NativeFile:
    """One metric file to read natively; ``layout``: files of one reader with equal layouts are read
    by one statement."""

    path: Path
    reader: str
    layout: Hashable
    rows: int  # data rows the file's bytes (or Parquet footer) promise
    first_record: int  # record of the first data row (csv: 2, after the header; jsonl/parquet: 1)
    run_id: str | None = None  # for rows without a run id (its path relative to the log root)
    family: str | None = None  # for rows without a family
    source: str = ""  # carried to the output rows as source_path (ingest: the unit's relative path)
    size: int = 0  # bytes
    shared: bool = False  # its read runs only SQL the exact path runs in the warehouse too (see read_native)
    numbered: bool = True  # its rows carry their record number (else their order gives it: NativeGroup.ordered)


@dataclass(frozen=True)
class NativeGroup:
    """A statement reading ``files``: ``sql`` takes one parameter (the list of paths) and yields
    ``filename``, ``file_index`` (the file's 0-based position in the list), ``record`` (the row's
    line/row number, or NULL for files not :attr:`NativeFile.numbered`: then its position in the
    reader's output gives it, see ``ordered``), ``malformed`` (the row is bad beyond its cells, e.g. a
    wrong field count) and one cell column per canonical field in ``sources`` (canonical -> source
    name)."""

    sql: str
    sources: dict[str, str]
    files: list[NativeFile] = field(default_factory=list)

    @property
    def ordered(self) -> bool:
        """Run with ``preserve_insertion_order`` (needed when ``record`` is NULL; slower)."""
        return not all(f.numbered for f in self.files)


# reader hook: (scratch connection, files of one layout) -> (groups to read, files rejected already)
GroupsFn = Callable[[duckdb.DuckDBPyConnection, list[NativeFile]], tuple[list[NativeGroup], list[NativeFile]]]


def plain_path(path: Path) -> bool:
    """False for paths DuckDB's readers would expand as a glob (they must be read another way)."""
    return not GLOB_CHARACTERS & set(str(path))


def paths(files: Sequence[NativeFile]) -> list[str]:
    return [str(f.path) for f in files]


def bisect(
    scratch: duckdb.DuckDBPyConnection,
    files: list[NativeFile],
    run: Callable[[list[NativeFile]], T],
) -> tuple[list[tuple[list[NativeFile], T]], list[NativeFile]]:
    """``run`` on all ``files``; when it raises duckdb.Error, on each half, down to single files.

    Returns ([(files, result)], files whose own run failed). A failure that invalidated
    ``scratch`` (DuckDB's fatal errors) propagates."""
    try:
        return [(files, run(files))], []
    except duckdb.Error as exc:
        reraise_interrupt(exc)
        scratch.execute("SELECT 1")  # raises if the scratch database is gone
        if len(files) == 1:
            return [], list(files)
    half = len(files) // 2
    done_a, failed_a = bisect(scratch, files[:half], run)
    done_b, failed_b = bisect(scratch, files[half:], run)
    return done_a + done_b, failed_a + failed_b


class NativeRead:
    """The rows of the accepted files, held in the database of the read until the ``with`` ends."""

    def __init__(
        self,
        work: duckdb.DuckDBPyConnection | None,
        catalog: str,
        accepted: list[NativeFile],
        rejected: list[NativeFile],
        *,
        shared: bool,
    ) -> None:
        self._work, self._catalog, self._shared = work, catalog, shared
        self.accepted, self.rejected = accepted, rejected

    def store(self, con: duckdb.DuckDBPyConnection, table: str, *, source_path: bool) -> int:
        """Insert METRIC_COLUMNS (+ ``source_path`` = NativeFile.source) of the accepted files into
        ``table`` on ``con`` (the connection given to :func:`read_native`, if any); returns the count."""
        if self._work is None or not self.accepted:
            return 0
        fields = ", ".join(f"t.{n}" for n, _ in METRIC_FIELDS if n not in ("run_id", "family"))
        extra = ", a.source AS source_path" if source_path else ""
        rows = (
            f"SELECT coalesce(t.run_id, a.run_id) AS run_id, coalesce(t.family, a.family) AS family, "
            f"{fields}, coalesce(t.record, t.rowid - a.lo + a.first_record) AS record{extra} "
            f"FROM {self._catalog}.{_TYPED} t JOIN {self._catalog}.{_ACCEPTED} a USING (filename)"
        )
        if self._shared:
            return con.execute(f"INSERT INTO {table} {rows}").fetchall()[0][0]
        return _insert_from(con, table, self._work.sql(rows))


def _insert_from(con: duckdb.DuckDBPyConnection, table: str, rows: duckdb.DuckDBPyRelation) -> int:
    """Insert the rows of ``rows`` (a relation of another DuckDB instance) into ``table`` on ``con``,
    streamed through Arrow; returns the count."""
    con.register("_native_rows", rows.to_arrow_reader(1 << 20))
    try:
        return con.execute(f"INSERT INTO {table} SELECT * FROM _native_rows").fetchall()[0][0]
    finally:
        con.unregister("_native_rows")


@contextmanager
def insertion_order(con: duckdb.DuckDBPyConnection, preserve: bool | None = None) -> Iterator[None]:
    """Set ``preserve_insertion_order`` (a setting of ``con``'s whole instance) for the block, or
    leave it when ``preserve`` is None, and restore it afterwards. Use it outside transactions: an
    aborted transaction refuses SET."""
    order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    if preserve is not None:
        con.execute(f"SET preserve_insertion_order = {str(preserve).lower()}")
    try:
        yield
    finally:
        con.execute(f"SET preserve_insertion_order = {str(order).lower()}")


_SHARED_CATALOG = "_native_read"  # the in-memory database a shared read attaches


@contextmanager
def read_native(
    files: list[NativeFile], groups: GroupsFn, con: duckdb.DuckDBPyConnection | None = None
) -> Iterator[NativeRead]:
    """Read ``files`` (one reader) natively and validate them per file; see the module doc.

    Where: when ``con`` is given and every file is :attr:`NativeFile.shared`, in ``con``'s own DuckDB
    instance (an in-memory database attached for the read; :meth:`NativeRead.store` then copies
    inside the instance instead of through Arrow; ``preserve_insertion_order``, a setting of the
    whole instance, is restored afterwards); otherwise in a scratch instance, so that a reader
    failure DuckDB treats as fatal cannot invalidate ``con``'s database."""
    if con is not None and all(f.shared for f in files):
        con.execute(f"DETACH DATABASE IF EXISTS {_SHARED_CATALOG}")
        con.execute(f"ATTACH ':memory:' AS {_SHARED_CATALOG}")
        work = con.cursor()
        try:
            with insertion_order(con):
                yield _read_or_reject(work, _SHARED_CATALOG, files, groups, shared=True)
        finally:
            work.close()
            con.execute(f"DETACH DATABASE IF EXISTS {_SHARED_CATALOG}")
        return
    with _scratch() as scratch:
        yield _read_or_reject(scratch, "memory", files, groups, shared=False)


def _scratch() -> duckdb.DuckDBPyConnection:
    """A scratch DuckDB instance for the reads that must not run in the warehouse's (see
    :func:`read_native`); close it, e.g. by ``with``."""
    return duckdb.connect(config={"temp_directory": tempfile.gettempdir()})


def one_pass_pays(files: list[NativeFile]) -> bool:
    """Whether :func:`insert_native` is worth trying for ``files``: every file is
    :attr:`NativeFile.numbered` (it cannot do the others), with ONE_PASS_MIN_ROWS rows per file or
    more on average. It looks up each row's file facts in lists of its part's files, at a cost per
    row that grows with their number; with small files it loses to :func:`read_native` (measured:
    ahead at 1,000 rows per file, behind at 100)."""
    return all(f.numbered for f in files) and sum(f.rows for f in files) >= ONE_PASS_MIN_ROWS * len(files)


def insert_native(files: list[NativeFile], groups: GroupsFn, con: duckdb.DuckDBPyConnection, table: str
                  ) -> int | None:
    """The one-pass form of :func:`read_native` + :meth:`NativeRead.store` (``source_path=True``):
    read, type and insert the rows of ``files`` into ``table`` on ``con`` in one statement (a UNION
    ALL of one part per DuckDB thread), without holding them apart first (for which files that
    pays: :func:`one_pass_pays`). Where the read runs is decided as in :func:`read_native`.

    Only rows with a record number inside their file's promised range [first_record, first_record +
    rows) that type cleanly and are not malformed are inserted, so each file contributes at most its
    promised rows, and the count equals the sum of the promises exactly when every file would have
    been accepted. Returns that count; None when it fell short, when a reader failed, or when some
    group needs the two-pass read (rows numbered by their order). After None, ``table`` may hold
    rows of the call: the caller rolls back its transaction and reads the files by
    :func:`read_native`, which finds the files to reject. The parts run at once only when
    ``preserve_insertion_order`` is off (see :func:`insertion_order`; a setting of the whole
    instance that an aborted transaction refuses to change, so the caller sets it around its
    transaction)."""
    if all(f.shared for f in files):
        return _insert_one_pass(con, files, groups, con, table)
    with _scratch() as scratch:
        return _insert_one_pass(scratch, files, groups, con, table)


def _insert_one_pass(work: duckdb.DuckDBPyConnection, files: list[NativeFile], groups: GroupsFn,
                     con: duckdb.DuckDBPyConnection, table: str) -> int | None:
    """:func:`insert_native` with the reads in ``work`` (``con`` itself, or a scratch instance)."""
    try:
        planned, rejected = groups(work, files)
    except duckdb.Error as exc:
        reraise_interrupt(exc)
        return None
    firsts = {f.first_record for f in files}
    if rejected or len(firsts) != 1 or any(g.ordered for g in planned):
        return None
    (first,) = firsts
    parts, selects, params = _threads(work), [], []
    for group in planned:
        n = min(parts, len(group.files))
        for i in range(n):
            select, part_params = _one_pass_select(group, group.files[i::n], first)
            selects.append(select)
            params += part_params
    rows = " UNION ALL ".join(selects)
    try:
        if work is con:
            count = con.execute(f"INSERT INTO {table} {rows}", params).fetchall()[0][0]
        else:
            work.execute("SET preserve_insertion_order = false")
            count = _insert_from(con, table, work.sql(rows, params=params))
    except duckdb.Error as exc:
        reraise_interrupt(exc)
        return None
    return count if count == sum(f.rows for f in files) else None


def _one_pass_select(group: NativeGroup, files: list[NativeFile], first: int) -> tuple[str, list[object]]:
    """(SELECT of the stored rows of ``files`` read by ``group``'s statement, its parameters): rows
    that type cleanly, are not malformed and have a record in [first, the file's last promised];
    per-file facts (last record, source path, run id and family for rows without them) are looked up
    by ``file_index`` in list parameters (a join on ``filename`` builds its hash table on the
    reader's side, whose size DuckDB underestimates)."""
    values, bad = typing_sql(group.sources)
    params: list[object] = []

    def fact(values: list[object], typ: str) -> str:
        params.append(values)
        return f"(?::{typ}[])[t.file_index::BIGINT + 1]"

    fields = []
    for name, _ in METRIC_FIELDS:
        if name == "run_id" and name not in group.sources:
            fields.append(f"coalesce(t.run_id, {fact([f.run_id for f in files], 'VARCHAR')}) AS run_id")
        elif name == "family" and any(f.family is not None for f in files):
            fields.append(f"coalesce(t.family, {fact([f.family for f in files], 'VARCHAR')}) AS family")
        else:
            fields.append(f"t.{name}")
    head = f"SELECT {', '.join(fields)}, t.record, {fact([f.source for f in files], 'VARCHAR')} AS source_path "
    params.append(paths(files))  # the ? of group.sql
    body = (f"FROM (SELECT c.file_index, c.record, {values}, ({bad} OR c.malformed) AS bad FROM ({group.sql}) AS c) "
            f"AS t WHERE NOT t.bad AND t.record BETWEEN {int(first)} AND ")
    last = fact([f.first_record + f.rows - 1 for f in files], "BIGINT")
    return head + body + last, params


def _read_or_reject(work: duckdb.DuckDBPyConnection, catalog: str, files: list[NativeFile], groups: GroupsFn,
                    *, shared: bool) -> NativeRead:
    try:
        accepted, rejected = _read(work, catalog, files, groups)
        return NativeRead(work, catalog, accepted, rejected, shared=shared)
    except duckdb.Error as exc:  # fatal for the database of the read: every file goes the exact way
        reraise_interrupt(exc)
        return NativeRead(None, catalog, [], list(files), shared=shared)


def stage_native(con: duckdb.DuckDBPyConnection, file: NativeFile, groups: GroupsFn) -> int | None:
    """Read one file natively (in a scratch instance) into ``stage_metrics`` on ``con``: rows staged,
    or None (nothing staged) when the file was rejected."""
    with read_native([file], groups) as result:
        return result.store(con, STAGE_METRICS, source_path=False) if result.accepted else None


def _threads(scratch: duckdb.DuckDBPyConnection) -> int:
    return int(scratch.execute("SELECT current_setting('threads')").fetchall()[0][0])


def _insert(scratch: duckdb.DuckDBPyConnection, sql: str, files: list[NativeFile], parts: int) -> list[NativeFile]:
    """Run the INSERT ``sql`` over ``files``; returns the files whose statement failed (see
    :func:`bisect`). With ``parts`` > 1 the files are split into that many interleaved parts run at
    once, each on its own cursor: one statement over many small files keeps about one core busy."""
    parts = min(parts, len(files))
    if parts <= 1:
        return bisect(scratch, files, lambda fs: scratch.execute(sql, [paths(fs)]))[1]

    def run(part: list[NativeFile]) -> list[NativeFile]:
        with scratch.cursor() as cursor:
            return bisect(cursor, part, lambda fs: cursor.execute(sql, [paths(fs)]))[1]

    with ThreadPoolExecutor(parts) as pool:
        return [f for failed in pool.map(run, [files[i::parts] for i in range(parts)]) for f in failed]


def _read(
    scratch: duckdb.DuckDBPyConnection, catalog: str, files: list[NativeFile], groups: GroupsFn
) -> tuple[list[NativeFile], list[NativeFile]]:
    typed, accepted_table = f"{catalog}.{_TYPED}", f"{catalog}.{_ACCEPTED}"
    layout = [("filename", "VARCHAR"), *METRIC_FIELDS, ("record", "BIGINT"), ("bad", "BOOLEAN")]
    scratch.execute(f"CREATE TABLE {typed} ({', '.join(f'{n} {t}' for n, t in layout)})")
    planned, rejected = groups(scratch, files)
    for group in planned:
        values, bad = typing_sql(group.sources)
        sql = (f"INSERT INTO {typed} SELECT c.filename, {values}, c.record, ({bad} OR c.malformed) "
               f"FROM ({group.sql}) AS c")
        scratch.execute(f"SET preserve_insertion_order = {str(group.ordered).lower()}")
        rejected += _insert(scratch, sql, group.files, 1 if group.ordered else _threads(scratch))
    failed = {str(f.path) for f in rejected}
    read = [f for g in planned for f in g.files if str(f.path) not in failed]
    scratch.register("expected", pa.table({
        "filename": pa.array(paths(read), pa.string()),
        "rows": pa.array([f.rows for f in read], pa.int64()),
    }))
    good = dict(scratch.execute(
        f"SELECT f.filename, s.lo FROM expected f JOIN (SELECT filename, count(*) AS n, "
        f"count(*) FILTER (WHERE bad) AS n_bad, min(rowid) AS lo, max(rowid) AS hi, "
        f"count(record) AS numbered FROM {typed} GROUP BY filename) s USING (filename) "
        f"WHERE s.n = f.rows AND s.n_bad = 0 AND (s.numbered = s.n OR s.hi - s.lo + 1 = s.n)"
    ).fetchall())
    accepted = [f for f in read if str(f.path) in good]
    rejected += [f for f in read if str(f.path) not in good]
    scratch.register("keep", pa.table(
        {
            "filename": pa.array([str(f.path) for f in accepted], pa.string()),
            "lo": pa.array([good[str(f.path)] for f in accepted], pa.int64()),
            "first_record": pa.array([f.first_record for f in accepted], pa.int64()),
            "run_id": pa.array([f.run_id for f in accepted], pa.string()),
            "family": pa.array([f.family for f in accepted], pa.string()),
            "source": pa.array([f.source for f in accepted], pa.string()),
        }
    ))
    scratch.execute(f"CREATE TABLE {accepted_table} AS SELECT * FROM keep")
    return accepted, rejected
