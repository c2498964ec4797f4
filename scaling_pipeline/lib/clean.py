"""Clean the raw logs into schedule-valid scaling points.

Reads the ``raw`` schema written by :mod:`scaling_pipeline.lib.ingest` and (re)builds the ``clean``
schema in one transaction:

``clean.runs``        one row per run: the metadata its sources agree on (a field two sources give
                      different values is NULL, and the run is excluded as conflicting).
``clean.steps``       one row per (run, step): within a file the last write of a step wins (resumed
                      runs log steps again, also after going back to an earlier checkpoint);
                      identical copies in other files count once; non-finite losses removed,
                      warm-up steps cut.
``clean.points``      one schedule-valid point per completed run: N (parameters), D (tokens),
                      C = 6·N·D (FLOPs), final loss (nats/token) and where it came from.
``clean.exclusions``  every run or row that did not make it, with the reason: nothing silently
                      disappears.

Only a run that reached the end of its planned schedule gives a point: the loss half-way through
a cosine schedule is not the loss of a shorter run. Sources that contradict each other about a run
(metadata, or the values logged at a step in two files) are never resolved by picking one: the run
is excluded with both sources named until the logs are fixed (:func:`merge_sources`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass

import duckdb
import numpy as np
import pandas as pd

from scaling_pipeline.lib.schema import RUN_ALIASES, RUN_COLUMNS, RUN_RANGES, TOKEN_RANGE, out_of_range

# Reason codes in clean.exclusions (stable: tests, report and UI use them).
DUPLICATE_STEPS = "duplicate_steps"  # rows: a step logged more than once (kept the last write)
CONFLICTING_METADATA = "conflicting_metadata"  # run: sources give different values for one field
CONFLICTING_LOGS = "conflicting_logs"  # run: two files log different values at the same step
NONFINITE_ROWS = "nonfinite_loss"  # rows: NaN/inf/missing losses dropped
WARMUP_ROWS = "warmup"  # rows: warm-up steps cut
DIVERGED = "diverged"  # run: loss blew up (NaN/inf or stayed far above its best)
INCOMPLETE = "incomplete_schedule"  # run: stopped before its planned last step
UNKNOWN_SCHEDULE = "unknown_schedule"  # run: no planned length and no 'completed' status
NO_METADATA = "no_metadata"  # run: N (parameters) unknown
NO_LOSS = "no_final_loss"  # run: no finite loss near the end
DOMINATED = "dominated"  # run: worse than a run with fewer parameters and fewer tokens
BELOW_MIN_BUDGET = "below_min_budget"  # run: fewer tokens/steps than the configured minimum
IMPLAUSIBLE_POINT = "implausible_point"  # run: N, D or loss outside the plausible range

COMPLETED_STATUSES = ("completed", "finished", "resumed", "done", "success")


@dataclass(frozen=True)
class CleanConfig:
    """Knobs of the cleaning stage (all recorded with the result).

    divergence_nats: a run whose train loss ends more than this many nats above its best logged
        value, or that logs NaN/inf after warm-up, is diverged.
    dominated_tolerance: a run whose final loss is more than this fraction above that of a run
        with no more parameters and no more tokens (same family) is excluded as broken
        (e.g. a far too high learning rate that did not trip the divergence guard).
    smooth_points: number of final logged train losses averaged when there is no final eval.
    min_tokens, min_steps: runs with fewer training tokens / optimizer steps give no point
        (very short runs are dominated by warm-up and bend the fit).
    """

    divergence_nats: float = 1.0
    dominated_tolerance: float = 0.10
    smooth_points: int = 5
    min_tokens: float = 0.0
    min_steps: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CleanSummary:
    runs: int
    steps: int
    points: int
    excluded_runs: int
    dropped_rows: dict[str, int]
    excluded_by_reason: dict[str, int]
    families: list[str]

    def to_metadata(self) -> dict:
        return asdict(self)


_META_FIELDS = [name for name, _ in RUN_COLUMNS if name not in ("run_id", "extra", "location")]
_LOG_FIELDS = ["tokens", "train_loss", "eval_loss", "lr"]  # what a step says; compared between files


def _differ(field: str) -> str:
    """SQL: true when a group holds two different non-null values of ``field`` (NaN is one value)."""
    return f"min({field}) IS DISTINCT FROM max({field})"


def _agreed(field: str) -> str:
    """SQL: the one non-null value of ``field`` in a group, NULL when its sources disagree."""
    return f"CASE WHEN NOT {_differ(field)} THEN min({field}) END"


_RUNS_SQL = f"""
CREATE OR REPLACE TABLE clean.runs AS
WITH meta AS (
    SELECT run_id, {", ".join(f"{_agreed(f)} AS {f}" for f in _META_FIELDS if f != "family")},
           count(DISTINCT source_path) AS n_meta_sources
    FROM raw.runs GROUP BY run_id
),
logged AS (
    SELECT run_id, count(DISTINCT source_path) AS n_metric_sources FROM raw.metrics GROUP BY run_id
),
families AS (  -- the family named by manifests/configs and by the logged rows
    SELECT run_id, {_agreed("family")} AS family, {_differ("family")} AS conflict
    FROM (SELECT run_id, family FROM raw.runs UNION ALL SELECT DISTINCT run_id, family FROM raw.metrics)
    GROUP BY run_id
)
SELECT f.run_id,
       CASE WHEN NOT f.conflict THEN coalesce(f.family, 'default') END AS family,
       m.n_params, m.tokens_planned, m.batch_tokens,
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
SELECT run_id, step, {", ".join(_LOG_FIELDS)}, wall_time, false AS conflict
FROM last_writes ANTI JOIN shared USING (run_id, step)
UNION ALL
SELECT run_id, step, {", ".join(f"max({f})" for f in _LOG_FIELDS)}, max(wall_time),
       {" OR ".join(_differ(f) for f in _LOG_FIELDS)}
FROM last_writes SEMI JOIN shared USING (run_id, step) GROUP BY run_id, step
"""

# (run, field, value, sources) for every run field two sources give different values.
_META_CONFLICTS_SQL = f"""
SELECT run_id, field, value, list(DISTINCT source ORDER BY source) AS sources
FROM (
    SELECT run_id, concat_ws(' ', source_path, location) AS source,
           {", ".join(f"CAST({f} AS VARCHAR) AS {f}" for f in _META_FIELDS)}
    FROM raw.runs
    UNION ALL BY NAME
    SELECT DISTINCT run_id, source_path AS source, family FROM raw.metrics WHERE family IS NOT NULL
) UNPIVOT (value FOR field IN ({", ".join(_META_FIELDS)}))
GROUP BY run_id, field, value
QUALIFY count(*) OVER (PARTITION BY run_id, field) > 1
ORDER BY run_id, field, value
"""

_LOG_CONFLICTS_SQL = f"""
SELECT w.run_id, w.step, w.source_path, {", ".join(f"w.{f}" for f in _LOG_FIELDS)}
FROM last_writes w JOIN deduped d USING (run_id, step)
WHERE d.conflict ORDER BY w.run_id, w.step, w.source_path
"""

_STEPS_SQL = """
CREATE OR REPLACE TABLE clean.steps AS
SELECT d.run_id, r.family, d.step,
       coalesce(d.tokens, d.step * r.batch_tokens) AS tokens,
       CASE WHEN isfinite(d.train_loss) THEN d.train_loss END AS train_loss,
       CASE WHEN isfinite(d.eval_loss) THEN d.eval_loss END AS eval_loss,
       d.lr, d.wall_time
FROM deduped d JOIN clean.runs r USING (run_id)
WHERE d.step >= coalesce(r.warmup_steps, 0)
  AND (isfinite(d.train_loss) OR isfinite(d.eval_loss))
ORDER BY d.run_id, d.step
"""

# Per-run summary of the deduplicated log, before any row is dropped.
_RUN_STATS_SQL = """
WITH d AS (
    SELECT d.*, r.warmup_steps,
           d.step >= coalesce(r.warmup_steps, 0) AS post_warmup,
           (d.train_loss IS NOT NULL AND NOT isfinite(d.train_loss))
             OR (d.eval_loss IS NOT NULL AND NOT isfinite(d.eval_loss)) AS nonfinite
    FROM deduped d JOIN clean.runs r USING (run_id)
),
best AS (
    SELECT run_id, min(train_loss) FILTER (WHERE isfinite(train_loss)) AS best_train
    FROM d GROUP BY run_id
)
SELECT d.run_id,
       count(*) AS n_steps,
       max(d.step) AS last_step,
       arg_max(d.tokens, d.step) AS last_tokens,
       min(d.step) FILTER (WHERE d.post_warmup AND d.nonfinite) AS first_nonfinite_step,
       count(*) FILTER (WHERE NOT d.post_warmup) AS n_warmup_rows,
       count(*) FILTER (WHERE d.post_warmup AND NOT coalesce(isfinite(d.train_loss), false)
                              AND NOT coalesce(isfinite(d.eval_loss), false)) AS n_nonfinite_rows,
       b.best_train,
       -- the last point at which the run was still within divergence_nats of its best
       max(d.step) FILTER (WHERE isfinite(d.train_loss) AND d.train_loss <= b.best_train + ?) AS last_healthy_step,
       arg_max(d.train_loss, d.step) FILTER (WHERE isfinite(d.train_loss)) AS last_train
FROM d JOIN best b USING (run_id)
GROUP BY d.run_id, b.best_train
"""

_FINAL_LOSS_SQL = """
WITH s AS (
    SELECT run_id, step, train_loss, eval_loss,
           row_number() OVER (PARTITION BY run_id ORDER BY step DESC) AS k
    FROM clean.steps WHERE train_loss IS NOT NULL
)
SELECT run_id, avg(train_loss) AS smoothed_train, count(*) AS n_smoothed
FROM s WHERE k <= ? GROUP BY run_id
"""

_FINAL_EVAL_SQL = """
SELECT run_id, arg_max(eval_loss, step) AS final_eval, max(step) AS final_eval_step
FROM clean.steps WHERE eval_loss IS NOT NULL GROUP BY run_id
"""

_EXCLUSION_COLUMNS = ["run_id", "family", "kind", "reason", "detail", "step", "n_rows"]


def clean(con: duckdb.DuckDBPyConnection, config: CleanConfig = CleanConfig()) -> CleanSummary:
    """Rebuild the ``clean`` schema from ``raw`` in one transaction and summarise what was dropped."""
    con.execute("BEGIN")
    try:
        summary = _clean(con, config)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return summary


def merge_sources(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str, int | None, int | None]]:
    """Merge what the sources say about each run, never choosing between contradicting ones.

    Builds ``clean.runs`` (the fields its sources agree on) and the TEMP table ``deduped`` (one row
    per run and step: the last write in each file; equal values from several files count once) and
    returns the runs whose sources contradict each other: run_id -> (reason, detail naming the
    sources and their values, first conflicting step, number of conflicting steps). Conflicting
    steps are left out of ``deduped``. Equal duplicates, and a value only one source gives, are no
    conflict."""
    con.execute(_RUNS_SQL)
    con.execute(_LAST_WRITES_SQL)
    con.execute(_DEDUPED_SQL)
    meta: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for run_id, field, value, sources in con.execute(_META_CONFLICTS_SQL).fetchall():
        meta[run_id][field].append(f"{value} ({', '.join(sources)})")
    logs: dict[str, tuple[str, int, int]] = {}
    for run_id, rows in con.execute(_LOG_CONFLICTS_SQL).df().groupby("run_id"):
        first = rows[rows.step == rows.step.min()]
        differ = [f for f in _LOG_FIELDS if first[f].dropna().nunique() > 1]
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
    return conflicts


def _clean(con: duckdb.DuckDBPyConnection, cfg: CleanConfig) -> CleanSummary:
    con.execute("CREATE SCHEMA IF NOT EXISTS clean")
    conflicts = merge_sources(con)
    dupes = con.execute(
        """SELECT run_id, sum(n - 1) AS dropped, min(step) AS first_step FROM (
               SELECT run_id, step, count(*) AS n FROM raw.metrics GROUP BY run_id, step HAVING n > 1)
           SEMI JOIN deduped USING (run_id, step)
           GROUP BY run_id ORDER BY run_id"""
    ).fetchall()
    con.execute(_STEPS_SQL)
    rejected_n_params = _rejected_at_ingest(con, "n_params")

    runs = con.execute("SELECT * FROM clean.runs ORDER BY run_id").df()
    stats = con.execute(_RUN_STATS_SQL, [cfg.divergence_nats]).df().set_index("run_id")
    smoothed = con.execute(_FINAL_LOSS_SQL, [cfg.smooth_points]).df().set_index("run_id")
    evals = con.execute(_FINAL_EVAL_SQL).df().set_index("run_id")

    exclusions: list[dict] = []
    family_of = dict(zip(runs.run_id, runs.family))

    def exclude(run_id: str, kind: str, reason: str, detail: str, step=None, n_rows=None) -> None:
        exclusions.append(dict(run_id=run_id, family=family_of.get(run_id), kind=kind, reason=reason,
                               detail=detail, step=step, n_rows=n_rows))

    for run_id, dropped, first_step in dupes:
        exclude(run_id, "rows", DUPLICATE_STEPS,
                f"{int(dropped)} duplicate step rows dropped (kept the last write of each step in its file; "
                "equal copies in other files count once)", int(first_step), int(dropped))
    for run_id, st in stats.iterrows():
        if st.n_nonfinite_rows:
            exclude(run_id, "rows", NONFINITE_ROWS, f"{int(st.n_nonfinite_rows)} rows with NaN/inf/missing losses dropped",
                    _int(st.first_nonfinite_step), int(st.n_nonfinite_rows))
        if st.n_warmup_rows:
            exclude(run_id, "rows", WARMUP_ROWS, f"{int(st.n_warmup_rows)} warm-up rows cut", None, int(st.n_warmup_rows))

    points = []
    for run in runs.itertuples(index=False):
        if run.run_id in conflicts:
            exclude(run.run_id, "run", *conflicts[run.run_id])
            continue
        reason = _run_verdict(run, stats, cfg, rejected_n_params)
        if reason is not None:
            exclude(run.run_id, "run", *reason)
            continue
        st = stats.loc[run.run_id]
        if run.run_id in evals.index and evals.loc[run.run_id, "final_eval_step"] >= st.last_step:
            loss, source = float(evals.loc[run.run_id, "final_eval"]), "final_eval"
        elif run.run_id in smoothed.index:
            n = int(smoothed.loc[run.run_id, "n_smoothed"])
            loss, source = float(smoothed.loc[run.run_id, "smoothed_train"]), f"train_mean_last_{n}"
        else:
            exclude(run.run_id, "run", NO_LOSS, "no finite eval or train loss at the end of the run", _int(st.last_step))
            continue
        tokens = _first_finite(st.last_tokens, _mul(st.last_step, run.batch_tokens), run.tokens_planned)
        if tokens is None:
            exclude(run.run_id, "run", NO_METADATA, "tokens seen unknown (no tokens column, batch_tokens or plan)")
            continue
        if tokens < cfg.min_tokens or st.last_step < cfg.min_steps:
            exclude(run.run_id, "run", BELOW_MIN_BUDGET,
                    f"{tokens:.3g} tokens / {int(st.last_step)} steps is below the minimum "
                    f"({cfg.min_tokens:.3g} tokens / {cfg.min_steps} steps)", _int(st.last_step))
            continue
        if problem := _implausible_point(float(run.n_params), tokens, loss):
            exclude(run.run_id, "run", IMPLAUSIBLE_POINT, problem, _int(st.last_step))
            continue
        points.append(dict(run_id=run.run_id, family=run.family, n_params=float(run.n_params), n_tokens=float(tokens),
                           flops=6.0 * float(run.n_params) * float(tokens), loss=loss, loss_source=source,
                           final_step=int(st.last_step), unique_tokens=_first_finite(run.unique_tokens)))

    points_df = pd.DataFrame(points, columns=["run_id", "family", "n_params", "n_tokens", "flops", "loss",
                                              "loss_source", "final_step", "unique_tokens"])
    points_df, dominated = _drop_dominated(points_df, cfg.dominated_tolerance)
    for run_id, detail in dominated:
        exclude(run_id, "run", DOMINATED, detail)

    excl_df = pd.DataFrame(exclusions, columns=_EXCLUSION_COLUMNS).astype(
        {"step": "Int64", "n_rows": "Int64"})
    con.execute("""CREATE OR REPLACE TABLE clean.points (run_id VARCHAR, family VARCHAR, n_params DOUBLE,
                   n_tokens DOUBLE, flops DOUBLE, loss DOUBLE, loss_source VARCHAR, final_step BIGINT,
                   unique_tokens DOUBLE)""")
    con.execute("INSERT INTO clean.points SELECT * FROM points_df ORDER BY family, run_id")
    con.execute("""CREATE OR REPLACE TABLE clean.exclusions (run_id VARCHAR, family VARCHAR, kind VARCHAR,
                   reason VARCHAR, detail VARCHAR, step BIGINT, n_rows BIGINT)""")
    con.execute("INSERT INTO clean.exclusions SELECT * FROM excl_df ORDER BY family, run_id, kind, reason")
    con.execute("DROP TABLE deduped")

    dropped_rows = {r: int(excl_df.loc[excl_df.reason == r, "n_rows"].sum())
                    for r in (DUPLICATE_STEPS, NONFINITE_ROWS, WARMUP_ROWS)}
    run_excl = excl_df[excl_df.kind == "run"]
    return CleanSummary(
        runs=len(runs),
        steps=con.execute("SELECT count(*) FROM clean.steps").fetchone()[0],
        points=len(points_df),
        excluded_runs=len(run_excl),
        dropped_rows=dropped_rows,
        excluded_by_reason={str(k): int(v) for k, v in run_excl.reason.value_counts().sort_index().items()},
        families=sorted(points_df.family.unique().tolist()),
    )


def _run_verdict(run, stats: pd.DataFrame, cfg: CleanConfig,
                 rejected_n_params: dict[str, str]) -> tuple[str, str, int | None] | None:
    """(reason, detail, step) why ``run`` gives no point, or None if it is a valid candidate.
    ``rejected_n_params``: run_id -> the n_params value(s) rejected at ingest, and where."""
    if run.run_id not in stats.index:
        return NO_LOSS, "no logged steps", None
    st = stats.loc[run.run_id]
    if not st.n_steps or pd.isna(st.last_step):
        return NO_LOSS, "no logged steps", None
    if not pd.isna(st.first_nonfinite_step):
        step = int(st.first_nonfinite_step)
        healthy = "" if pd.isna(st.last_healthy_step) else (
            f"; last step within {cfg.divergence_nats:g} nat of its best loss: {int(st.last_healthy_step)}")
        return DIVERGED, f"non-finite loss (NaN/inf) from step {step}{healthy}", step
    if not pd.isna(st.last_train) and not pd.isna(st.best_train) and st.last_train > st.best_train + cfg.divergence_nats:
        step = _int(st.last_healthy_step)
        return (DIVERGED, f"train loss ended at {st.last_train:.3f} nats, {st.last_train - st.best_train:.2f} above "
                f"its best {st.best_train:.3f}; last healthy step {step}", step)
    if run.status == "diverged":
        return DIVERGED, "trainer reported status 'diverged'", _int(st.last_step)
    if pd.isna(run.n_params):
        given = rejected_n_params.get(run.run_id)
        return NO_METADATA, "number of parameters unknown: " + (
            f"{given} was rejected at ingest (reason in raw.quarantine)" if given
            else "no run metadata names n_params"), None
    if not pd.isna(run.total_steps):
        if st.last_step < run.total_steps:
            return (INCOMPLETE, f"stopped at step {int(st.last_step)} of {int(run.total_steps)} planned "
                    f"({st.last_step / run.total_steps:.0%}); a mid-schedule loss is not a valid point",
                    int(st.last_step))
    elif run.status not in COMPLETED_STATUSES:
        return (UNKNOWN_SCHEDULE, "planned schedule length unknown (no total_steps/tokens_planned) and status "
                f"is {run.status!r}, not completed", _int(st.last_step))
    return None


def _rejected_at_ingest(con: duckdb.DuckDBPyConnection, field: str) -> dict[str, str]:
    """run_id -> "<key> = <value> in <source>" for runs without ``field`` whose metadata gave one that
    ingest rejected (a rejected value stays in ``extra`` under its source key)."""
    aliases = set(RUN_ALIASES[field])
    out: dict[str, list[str]] = defaultdict(list)
    for run_id, source, extra in con.execute(
            f"""SELECT run_id, concat_ws(' ', source_path, location), extra FROM raw.runs
                WHERE {field} IS NULL ORDER BY ALL""").fetchall():
        given = [f"{key} = {value!r}" for key, value in json.loads(extra or "{}").items()
                 if key.strip().lower() in aliases]
        if given:
            out[run_id].append(f"{', '.join(given)} in {source}")
    return {run_id: "; ".join(values) for run_id, values in out.items()}


def _implausible_point(n_params: float, tokens: float, loss: float) -> str | None:
    """Why (N params, D tokens, final loss in nats/token) is no scaling point, or None (keeps the
    points_valid check true whatever one run logged)."""
    for what, problem in (("n_params", out_of_range(n_params, RUN_RANGES["n_params"])),
                          ("tokens seen", out_of_range(tokens, TOKEN_RANGE))):
        if problem:
            return f"{what}: {problem}"
    if not (math.isfinite(loss) and loss > 0):
        return f"final loss: expected a positive finite loss (nats/token), got {loss!r}"
    return None


def _drop_dominated(points: pd.DataFrame, tolerance: float) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Remove points whose loss exceeds, by more than ``tolerance``, the loss of a run of the same family
    with no more parameters and no more tokens. Such a run cannot be explained by any scaling law with
    loss decreasing in N and D: its training was broken (e.g. a far too high learning rate)."""
    bad: list[tuple[str, str]] = []
    for _, g in points.groupby("family"):
        n, d, loss = g.n_params.to_numpy(), g.n_tokens.to_numpy(), g.loss.to_numpy()
        for i in range(len(g)):
            mask = (n <= n[i]) & (d <= d[i] * (1 + 1e-9)) & (np.arange(len(g)) != i)
            if not mask.any():
                continue
            j = np.flatnonzero(mask)[np.argmin(loss[mask])]
            if loss[i] > loss[j] * (1 + tolerance):
                bad.append((g.run_id.iloc[i],
                            f"final loss {loss[i]:.4f} is {loss[i] / loss[j] - 1:.0%} above run {g.run_id.iloc[j]!r} "
                            f"({loss[j]:.4f}) which has no more parameters ({n[j]:.3g}) and no more tokens "
                            f"({d[j]:.3g}): broken training (e.g. learning rate)"))
    bad_ids = {b[0] for b in bad}
    return points[~points.run_id.isin(bad_ids)].reset_index(drop=True), bad


def _int(x) -> int | None:
    return None if x is None or pd.isna(x) else int(x)


def _mul(a, b) -> float | None:
    return None if a is None or b is None or pd.isna(a) or pd.isna(b) else float(a) * float(b)


def _first_finite(*xs) -> float | None:
    for x in xs:
        if x is not None and not pd.isna(x) and math.isfinite(float(x)):
            return float(x)
    return None

