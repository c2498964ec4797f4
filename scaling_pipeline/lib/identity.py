"""Run identity: which logged run a run-metadata row (a manifest row, a config) describes.

Readers give each logged run an id unique within the log root: the id the data names, else the
unit's path relative to the root (``large/train``, ``csv/atlas-10M-tpp12``; see
:func:`scaling_pipeline.lib.formats.common.path_run_id`). A metadata row names its run by that full
id, or by a suffix of it that starts after a ``/`` (``atlas-10M-tpp12``, or ``train`` when only one
logged run ends in ``/train``). :func:`match_run_ids` resolves the metadata ids against the logged
ids:

1. an id equal to a logged id matches that run;
2. otherwise an id that is a ``/``-suffix of exactly one logged id matches that run;
3. an id that is a suffix of several logged ids is *ambiguous*: a conflict to report, naming the
   candidates, never resolved by picking one;
4. any other id is *unmatched* (metadata of a run that logged nothing).

Several metadata ids may match one logged run (``large/train`` and ``train``); their rows then
describe the same run and are merged (or reported as conflicting) like any other two sources.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import pyarrow as pa


@dataclass(frozen=True)
class Matches:
    """Metadata ids resolved against logged ids (see the module doc).

    mapping: metadata id -> logged id, for every id that matched (exactly or by a unique suffix).
    ambiguous: metadata id -> the logged ids it is a suffix of (two or more, sorted).
    unmatched: metadata ids that match no logged id (sorted)."""

    mapping: dict[str, str]
    ambiguous: dict[str, tuple[str, ...]]
    unmatched: tuple[str, ...]

    def table(self) -> pa.Table:
        """``mapping`` as an Arrow table (meta_id, run_id) to register on a DuckDB connection."""
        return pa.table({"meta_id": pa.array(list(self.mapping), pa.string()),
                         "run_id": pa.array(list(self.mapping.values()), pa.string())})


def suffixes(run_id: str) -> list[str]:
    """The proper ``/``-suffixes of ``run_id``: ``a/b/c`` -> ``b/c``, ``c``."""
    parts = run_id.split("/")
    return ["/".join(parts[i:]) for i in range(1, len(parts)) if parts[i:] != [""]]


def match_run_ids(meta_ids: Iterable[str], logged_ids: Iterable[str]) -> Matches:
    """Resolve metadata run ids against logged run ids: by full id, else by a unique ``/``-suffix
    (see the module doc). Linear in the number of ids and their ``/``-components."""
    logged = set(logged_ids)
    by_suffix: dict[str, list[str]] = {}
    for run_id in logged:
        for suffix in suffixes(run_id):
            by_suffix.setdefault(suffix, []).append(run_id)
    mapping: dict[str, str] = {}
    ambiguous: dict[str, tuple[str, ...]] = {}
    unmatched: list[str] = []
    for meta_id in dict.fromkeys(meta_ids):
        if meta_id in logged:
            mapping[meta_id] = meta_id
        elif len(found := by_suffix.get(meta_id, [])) == 1:
            mapping[meta_id] = found[0]
        elif found:
            ambiguous[meta_id] = tuple(sorted(found))
        else:
            unmatched.append(meta_id)
    return Matches(mapping, ambiguous, tuple(sorted(unmatched)))


def match_tables(con: duckdb.DuckDBPyConnection, meta: str, logged: str) -> Matches:
    """:func:`match_run_ids` over the distinct non-null ``run_id`` values of the tables (or views)
    ``meta`` and ``logged`` on ``con`` (names are constants of the caller, e.g. raw.runs and
    raw.metrics)."""
    def ids(table: str) -> list[str]:
        return [r for (r,) in con.execute(f"SELECT DISTINCT run_id FROM {table} WHERE run_id IS NOT NULL")
                .fetchall()]

    return match_run_ids(ids(meta), ids(logged))


def resolve_run_ids(con: duckdb.DuckDBPyConnection, meta: str, logged: str, out: str) -> Matches:
    """Create (or replace) the TEMP table ``out``: the rows of ``meta`` (e.g. raw.runs) with each
    ``run_id`` replaced by the ``logged`` run (e.g. raw.metrics) it matches; ambiguous and unmatched
    ids are kept as they are (report ``ambiguous`` as conflicts). Returns the matches. Table names
    are constants of the caller."""
    matches = match_tables(con, meta, logged)
    name = f"_identity_map_{out.replace('.', '_')}"
    con.register(name, matches.table())
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {out} AS SELECT t.* REPLACE (coalesce(m.run_id, t.run_id) "
                    f"AS run_id) FROM {meta} t LEFT JOIN {name} m ON t.run_id = m.meta_id")
    finally:
        con.unregister(name)
    return matches
