"""The machinery of the table registry: a table's description (:class:`Table`, :class:`Column`), its DDL, and
creating, replacing and writing tables in one transaction. The tables themselves: :mod:`.catalog`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import duckdb
import pandas as pd

RAW, KEPT, REBUILT = "raw", "kept", "rebuilt"


class Column(NamedTuple):
    name: str
    type: str  # DuckDB type
    description: str
    default: str = ""  # SQL default expression ("": none)


@dataclass(frozen=True)
class _Relation:
    name: str  # schema-qualified, e.g. "fits.chinchilla"
    description: str
    columns: tuple[Column, ...]

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class Table(_Relation):
    key: tuple[str, ...] = ()  # primary key (enforced); () when rows have no unique identity
    kind: str = REBUILT

    def pairs(self, *, without: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        """(name, type) of the columns, in order, leaving out ``without``."""
        return [(c.name, c.type) for c in self.columns if c.name not in without]

    def ddl(self, how: str = "CREATE TABLE IF NOT EXISTS") -> str:
        cols = [(c.name, f"{c.type} DEFAULT {c.default}" if c.default else c.type) for c in self.columns]
        return ddl(self.name, cols, how=how, key=self.key)


@dataclass(frozen=True)
class View(_Relation):
    """A view over registry tables (one writer per table; a view joins what several stages wrote)."""

    query: str = ""  # SELECT giving ``columns``, in order


def create_view(con: duckdb.DuckDBPyConnection, view: View) -> None:
    """(Re)create ``view`` (its tables must exist)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {view.schema}")
    con.execute(f"CREATE OR REPLACE VIEW {view.name} ({', '.join(view.names)}) AS {view.query}")


def ddl(table: str, columns: list[tuple[str, str]], *, how: str = "CREATE TABLE IF NOT EXISTS",
        key: tuple[str, ...] = ()) -> str:
    """``<how> table (columns[, PRIMARY KEY (key)])``: the one place a CREATE statement is written."""
    cols = [f'"{name}" {typ}' for name, typ in columns]
    if key:
        cols.append(f"PRIMARY KEY ({', '.join(key)})")
    return f"{how} {table} ({', '.join(cols)})"


def _cols(*spec: tuple[str, ...]) -> tuple[Column, ...]:
    return tuple(Column(*c) for c in spec)


# --- creating and writing -----------------------------------------------------------------------------

def stored_columns(con: duckdb.DuckDBPyConnection, table: Table) -> list[str]:
    """The columns of ``table`` as stored on ``con``, in order ([] when it does not exist)."""
    schema, name = table.name.split(".", 1)
    return [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position", [schema, name]).fetchall()]


def create(con: duckdb.DuckDBPyConnection, *tables: Table) -> None:
    """Create ``tables`` (and their schemas) if absent. A ``RAW`` table of an older layout gains the
    columns it lacks (never dropped); when a ``KEPT`` table's stored layout differs from the registry's,
    every ``KEPT`` table of this call is dropped and created anew (they are kept in step: derived data,
    recomputed on the next run)."""
    for schema in dict.fromkeys(t.schema for t in tables):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    kept = [t for t in tables if t.kind == KEPT]
    if any((have := stored_columns(con, t)) and have != t.names for t in kept):
        for t in kept:
            con.execute(f"DROP TABLE IF EXISTS {t.name}")
    for t in tables:
        if t.kind == REBUILT:
            raise ValueError(f"{t.name} is rebuilt on every run: use replace()")
        con.execute(t.ddl())
        if t.kind == RAW:  # rows are inserted by name, so added columns may sit at the end
            have = set(stored_columns(con, t))
            for name, typ in t.pairs():
                if name not in have:
                    con.execute(f'ALTER TABLE {t.name} ADD COLUMN "{name}" {typ}')


def replace(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    """(Re)create the ``REBUILT`` ``table`` empty, with the registry's layout."""
    if table.kind != REBUILT:
        raise ValueError(f"{table.name} is not rebuilt on every run: use create()")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {table.schema}")
    con.execute(table.ddl("CREATE OR REPLACE TABLE"))


def insert_frame(con: duckdb.DuckDBPyConnection, table: Table, frame: pd.DataFrame, order_by: str = "") -> None:
    """INSERT the rows of ``frame`` (columns matched by name; ``order_by``: SQL ORDER BY list)."""
    con.register("_insert_frame", frame)
    try:
        con.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM _insert_frame"
                    + (f" ORDER BY {order_by}" if order_by else ""))
    finally:
        con.unregister("_insert_frame")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction: committed when the block ends, rolled back when it raises (anything)."""
    con.begin()
    try:
        yield
    except BaseException:
        con.rollback()
        raise
    con.commit()


def row_count(con: duckdb.DuckDBPyConnection, table: Table) -> int:
    return int(con.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])
