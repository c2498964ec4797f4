"""Merge what the sources say about each run: ``clean.runs`` and the deduplicated steps."""

from __future__ import annotations

from collections import defaultdict

import duckdb

from scaling_pipeline.lib.identity import resolve_run_ids
from scaling_pipeline.lib.schema import RUN_COLUMNS
from scaling_pipeline.lib.tables import CLEAN_RUNS, replace

from .config import CONFLICTING_LOGS, CONFLICTING_METADATA

META_FIELDS = [name for name, _ in RUN_COLUMNS if name not in ("run_id", "extra", "location")]
LOG_FIELDS = ["tokens", "train_loss", "eval_loss", "lr"]  # what a step says; compared between files


def _differ(field: str) -> str:
    """SQL: true when a group holds two different non-null values of ``field`` (NaN is one value)."""
    return f"min({field}) IS DISTINCT FROM max({field})"


def _agreed(field: str) -> str:
    """SQL: the one non-null value of ``field`` in a group, NULL when its sources disagree."""
    return f"CASE WHEN NOT {_differ(field)} THEN min({field}) END"


_RUNS_SQL = f"""
INSERT INTO clean.runs BY NAME
WITH meta AS (
    SELECT run_id, {", ".join(f"{_agreed(f)} AS {f}" for f in META_FIELDS if f != "family")},
           count(DISTINCT source_path) AS n_meta_sources
    FROM run_meta GROUP BY run_id
),
logged AS (
    SELECT run_id, count(DISTINCT source_path) AS n_metric_sources FROM raw.metrics GROUP BY run_id
),
families AS (  -- the family named by manifests/configs and by the logged rows
    SELECT run_id, {_agreed("family")} AS family, {_differ("family")} AS conflict
    FROM (SELECT run_id, family FROM run_meta UNION ALL SELECT DISTINCT run_id, family FROM raw.metrics)
    GROUP BY run_id
)
SELECT f.run_id,
       CASE WHEN NOT f.conflict THEN coalesce(f.family, 'default') END AS family,
       m.n_params, m.n_params_total, m.n_params_non_embedding, m.tokens_planned, m.batch_tokens,
       coalesce(m.total_steps,
                CAST(round(m.tokens_planned / m.batch_tokens) AS BIGINT)) AS total_steps,
       m.warmup_steps, m.schedule, lower(m.status) AS status, m.unique_tokens, m.lr,
       coalesce(m.n_meta_sources, 0) AS n_meta_sources,
       coalesce(l.n_metric_sources, 0) AS n_metric_sources
FROM families f LEFT JOIN meta m USING (run_id) LEFT JOIN logged l USING (run_id)
"""

# Each (run, source file, step): the last write in the file wins (file order is write order, also
# when a resumed run went back to an earlier checkpoint or its wall clock restarted).
_LAST_WRITES_SQL = """
CREATE OR REPLACE TEMP TABLE last_writes AS
SELECT run_id, step, tokens, train_loss, eval_loss, lr, wall_time, source_path FROM raw.metrics
QUALIFY row_number() OVER (PARTITION BY run_id, source_path, step
                           ORDER BY record DESC NULLS LAST, wall_time DESC NULLS LAST) = 1
"""

# Each (run, step) once: the files that log it agree on every logged value (NULL = not logged), or
# it is a conflict (see merge_sources). Steps only one file logs skip the comparison.
_DEDUPED_SQL = f"""
CREATE OR REPLACE TEMP TABLE deduped AS
WITH shared AS (SELECT run_id, step FROM last_writes GROUP BY run_id, step HAVING count(*) > 1)
SELECT run_id, step, {", ".join(LOG_FIELDS)}, wall_time, false AS conflict
FROM last_writes ANTI JOIN shared USING (run_id, step)
UNION ALL
SELECT run_id, step, {", ".join(f"max({f})" for f in LOG_FIELDS)}, max(wall_time),
       {" OR ".join(_differ(f) for f in LOG_FIELDS)}
FROM last_writes SEMI JOIN shared USING (run_id, step) GROUP BY run_id, step
"""

# (run, field, value, sources) for every run field two sources give different values.
_META_CONFLICTS_SQL = f"""
SELECT run_id, field, value, list(DISTINCT source ORDER BY source) AS sources
FROM (
    SELECT run_id, concat_ws(' ', source_path, location) AS source,
           {", ".join(f"CAST({f} AS VARCHAR) AS {f}" for f in META_FIELDS)}
    FROM run_meta
    UNION ALL BY NAME
    SELECT DISTINCT run_id, source_path AS source, family FROM raw.metrics WHERE family IS NOT NULL
) UNPIVOT (value FOR field IN ({", ".join(META_FIELDS)}))
GROUP BY run_id, field, value
QUALIFY count(*) OVER (PARTITION BY run_id, field) > 1
ORDER BY run_id, field, value
"""

_LOG_CONFLICTS_SQL = f"""
SELECT w.run_id, w.step, w.source_path, {", ".join(f"w.{f}" for f in LOG_FIELDS)}
FROM last_writes w JOIN deduped d USING (run_id, step)
WHERE d.conflict ORDER BY w.run_id, w.step, w.source_path
"""


def merge_sources(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str, int | None, int | None]]:
    """Merge what the sources say about each run, never choosing between contradicting ones.

    Builds ``clean.runs`` (the fields its sources agree on) and the TEMP table ``deduped`` (one row
    per run and step: the last write in each file; equal values from several files count once) and
    returns the runs whose sources contradict each other: run_id -> (reason, detail naming the
    sources and their values, first conflicting step, number of conflicting steps). Conflicting
    steps are left out of ``deduped``. Equal duplicates, and a value only one source gives, are no
    conflict. Run metadata names its run by full id or by a unique suffix of it (``large/train`` or
    ``train`` when only one logged run ends so): the TEMP table ``run_meta`` is ``raw.runs`` with the
    logged ids; a suffix that ends several logged runs is a conflict of that metadata."""
    matches = resolve_run_ids(con, "raw.runs", "raw.metrics", "run_meta")
    replace(con, CLEAN_RUNS)
    con.execute(_RUNS_SQL)
    con.execute(_LAST_WRITES_SQL)
    con.execute(_DEDUPED_SQL)
    meta: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for run_id, field, value, sources in con.execute(_META_CONFLICTS_SQL).fetchall():
        meta[run_id][field].append(f"{value} ({', '.join(sources)})")
    logs: dict[str, tuple[str, int, int]] = {}
    for run_id, rows in con.execute(_LOG_CONFLICTS_SQL).df().groupby("run_id"):
        first = rows[rows.step == rows.step.min()]
        differ = [f for f in LOG_FIELDS if first[f].dropna().nunique() > 1]
        values = " vs ".join(f"{r.source_path}: " + ", ".join(f"{f} {getattr(r, f)!r}" for f in differ)
                             for r in first.itertuples())
        logs[run_id] = (f"{rows.step.nunique()} steps logged with different values by "
                        f"{', '.join(sorted(rows.source_path.unique()))} (step {int(rows.step.min())}: {values})",
                        int(rows.step.min()), rows.step.nunique())
    con.execute("DELETE FROM deduped WHERE conflict")
    con.execute("DROP TABLE last_writes")
    conflicts = {}
    for run_id in sorted(meta.keys() | logs.keys()):
        parts = [f"{field}: {' vs '.join(values)}" for field, values in meta.get(run_id, {}).items()]
        detail, step, n_steps = logs.get(run_id, (None, None, None))
        conflicts[run_id] = (CONFLICTING_METADATA if parts else CONFLICTING_LOGS,
                             "; ".join([*parts, *([detail] if detail else [])]) + "; excluded until the sources agree",
                             step, n_steps)
    for meta_id, candidates in sorted(matches.ambiguous.items()):
        conflicts[meta_id] = (CONFLICTING_METADATA,
                              f"run metadata names run {meta_id!r}, which ends {len(candidates)} logged runs "
                              f"({', '.join(candidates[:5])}{', ...' if len(candidates) > 5 else ''}): "
                              "name one by its full id (its path under the log root)", None, None)
    return conflicts
