"""Per-step cleaning: ``clean.steps`` from the deduplicated log, and per-run summaries of it."""

from __future__ import annotations

import duckdb
import pandas as pd

from scaling_pipeline.lib.tables import CLEAN_STEPS, replace

TREND_WINDOW = 0.04  # share of a run's steps whose train losses give its final loss when it has no final eval
EVIDENCE_SPAN = 2  # the trend's evidence is from this many times TREND_WINDOW's steps and min_points (_FINAL_LOSS_SQL)
SHRINKAGE = 2.0  # c in the weight max(0, 1 - c var(slope) / slope^2) of those losses' trend (see _FINAL_LOSS_SQL)

_DUPLICATES_SQL = """
SELECT run_id, sum(n - 1) AS dropped, min(step) AS first_step FROM (
    SELECT run_id, step, count(*) AS n FROM raw.metrics GROUP BY run_id, step HAVING n > 1)
SEMI JOIN deduped USING (run_id, step)
GROUP BY run_id ORDER BY run_id
"""

# A table with tokens and no step column gets step = tokens at ingest (formats.metric_sql): a run every row of
# which has step = round(tokens) and whose metadata gives batch_tokens gets its optimizer steps back,
# round(tokens / batch_tokens); of rows falling on one step the one with the most tokens is kept.
_TOKEN_RUNS_SQL = """
CREATE OR REPLACE TEMP TABLE token_runs AS
SELECT d.run_id, any_value(r.batch_tokens) AS batch_tokens
FROM deduped d JOIN clean.runs r USING (run_id)
WHERE r.batch_tokens > 0
GROUP BY d.run_id
HAVING bool_and(d.tokens IS NOT NULL AND d.step = round(d.tokens))
"""

_TOKEN_STEPS_SQL = """
CREATE OR REPLACE TEMP TABLE token_steps AS
SELECT d.* REPLACE (CAST(round(d.tokens / t.batch_tokens) AS BIGINT) AS step)
FROM deduped d JOIN token_runs t USING (run_id)
"""

_TOKEN_CLASHES_SQL = """
SELECT run_id, sum(n - 1) AS dropped, min(step) AS first_step FROM (
    SELECT run_id, step, count(*) AS n FROM token_steps GROUP BY run_id, step HAVING n > 1)
GROUP BY run_id ORDER BY run_id
"""

_STEPS_SQL = """
INSERT INTO clean.steps BY NAME
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

# Per-run summary of the deduplicated log, before any row is dropped (losses in nats/token).
_RUN_STATS_SQL = """
WITH d AS (
    SELECT d.*, r.warmup_steps,
           d.step >= coalesce(r.warmup_steps, 0) AS post_warmup,
           (d.train_loss IS NOT NULL AND NOT isfinite(d.train_loss))
             OR (d.eval_loss IS NOT NULL AND NOT isfinite(d.eval_loss)) AS nonfinite,
           CASE WHEN isfinite(d.train_loss) THEN d.train_loss
                WHEN isfinite(d.eval_loss) THEN d.eval_loss END AS loss  -- NULL: no finite loss logged
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
       arg_max(d.train_loss, d.step) FILTER (WHERE isfinite(d.train_loss)) AS last_train,
       median(d.loss) AS median_loss,
       min(d.loss) AS min_loss,
       max(d.lr) FILTER (WHERE isfinite(d.lr)) AS max_logged_lr,
       -- the logged series (steps and losses as logged), to recognise a run logged under two names
       md5(string_agg(concat_ws(':', d.step, coalesce(CAST(d.train_loss AS VARCHAR), ''),
                                coalesce(CAST(d.eval_loss AS VARCHAR), '')), ',' ORDER BY d.step)) AS series
FROM d JOIN best b USING (run_id)
GROUP BY d.run_id, b.best_train
"""

# The loss at a run's last logged step from its train losses: over the last TREND_WINDOW of its steps (at least its
# last ``min_points`` losses), their mean plus their least-squares line's rise from their mean step to the last
# step, times w = max(0, 1 - SHRINKAGE * var(b) / b^2) (positive-part James-Stein), b and var(b) = s^2 / Sxx the
# slope and its variance of the line through the losses of EVIDENCE_SPAN times as many steps (and points): the
# evidence for a trend. At the end of a decay the loss still falls (w near 1: the line at the last step, where
# the mean sits above it); without a trend the slope's noise is left out (w near 0: the mean). w = 0 with under 3
# losses. Standard error: of the mean and the rise times w, from the residuals of the short line (w taken as fixed;
# NULL with under 3 losses).
_FINAL_LOSS_SQL = """
WITH s AS (
    SELECT run_id, step, train_loss,
           row_number() OVER (PARTITION BY run_id ORDER BY step DESC) AS k,
           max(step) OVER (PARTITION BY run_id) AS last_step
    FROM clean.steps WHERE train_loss IS NOT NULL
),
windows AS (
    SELECT *, k <= $min_points OR step >= (1 - $window) * last_step AS near
    FROM s WHERE k <= $span * $min_points OR step >= (1 - $span * $window) * last_step
),
fit AS (
    SELECT run_id,
           count(*) FILTER (WHERE near) AS n, avg(train_loss) FILTER (WHERE near) AS y_mean,
           max(step) - avg(step) FILTER (WHERE near) AS rise_steps,
           regr_slope(train_loss, step) FILTER (WHERE near) AS slope,
           regr_sxx(train_loss, step) FILTER (WHERE near) AS sxx,
           regr_syy(train_loss, step) FILTER (WHERE near)
             - regr_sxy(train_loss, step) FILTER (WHERE near) ^ 2
               / regr_sxx(train_loss, step) FILTER (WHERE near) AS rss,
           count(*) AS n_long, regr_slope(train_loss, step) AS slope_long, regr_sxx(train_loss, step) AS sxx_long,
           regr_syy(train_loss, step) - regr_sxy(train_loss, step) ^ 2 / regr_sxx(train_loss, step) AS rss_long
    FROM windows GROUP BY run_id
),
shrunk AS (
    SELECT *, CASE WHEN n > 2 THEN greatest(rss, 0) / (n - 2) END AS s2,
           CASE WHEN n_long <= 2 OR slope_long ^ 2 * sxx_long * (n_long - 2) <= $shrinkage * greatest(rss_long, 0)
                THEN 0 ELSE 1 - $shrinkage * greatest(rss_long, 0) / (n_long - 2) / (slope_long ^ 2 * sxx_long)
           END AS w
    FROM fit
)
SELECT run_id, y_mean + CASE WHEN w > 0 THEN w * slope * rise_steps ELSE 0 END AS train_at_end, n AS n_fitted,
       sqrt(s2 / n + (w * rise_steps) ^ 2 * s2 / sxx) AS train_at_end_se
FROM shrunk
"""

_FINAL_EVAL_SQL = """
SELECT run_id, arg_max(eval_loss, step) AS final_eval, max(step) AS final_eval_step
FROM clean.steps WHERE eval_loss IS NOT NULL GROUP BY run_id
"""


def duplicate_steps(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, int]]:
    """(run_id, rows dropped, first duplicated step) of every run that logged a kept step twice."""
    return con.execute(_DUPLICATES_SQL).fetchall()


def steps_from_tokens(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, int]]:
    """Give the runs logged by tokens without a step column their optimizer steps (tokens / batch_tokens, when
    their metadata gives batch_tokens) in the TEMP table ``deduped``; (run_id, rows dropped, first step
    concerned) of every such run two of whose rows fall on one step (the row with the most tokens is kept)."""
    con.execute(_TOKEN_RUNS_SQL)
    try:
        if not con.execute("SELECT count(*) FROM token_runs").fetchone()[0]:
            return []
        con.execute(_TOKEN_STEPS_SQL)
        clashes = con.execute(_TOKEN_CLASHES_SQL).fetchall()
        con.execute("DELETE FROM deduped WHERE run_id IN (SELECT run_id FROM token_runs)")
        con.execute("INSERT INTO deduped BY NAME SELECT * FROM token_steps "
                    "QUALIFY row_number() OVER (PARTITION BY run_id, step ORDER BY tokens DESC) = 1")
        return [(run_id, int(dropped), int(step)) for run_id, dropped, step in clashes]
    finally:
        con.execute("DROP TABLE IF EXISTS token_steps")
        con.execute("DROP TABLE token_runs")


def build_steps(con: duckdb.DuckDBPyConnection) -> None:
    """``clean.steps``: the deduplicated rows after warm-up with a finite loss."""
    replace(con, CLEAN_STEPS)
    con.execute(_STEPS_SQL)


def run_stats(con: duckdb.DuckDBPyConnection, divergence_nats: float) -> pd.DataFrame:
    """Per-run summary of the deduplicated log (indexed by run_id)."""
    return con.execute(_RUN_STATS_SQL, [divergence_nats]).df().set_index("run_id")


def final_losses(con: duckdb.DuckDBPyConnection, min_points: int, window: float = TREND_WINDOW,
                 shrinkage: float = SHRINKAGE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train loss at the last logged step, last eval loss) per run, indexed by run_id. The first, from the train
    losses of the last ``window`` of the run's steps (at least its last ``min_points``): their mean plus their
    least-squares trend to the last step, shrunk by its evidence (``shrinkage``: c in _FINAL_LOSS_SQL; 0: the
    line at the last step); ``train_at_end`` and its standard error ``train_at_end_se`` (nats/token; NULL with
    under 3 losses), ``n_fitted`` losses."""
    trend = con.execute(_FINAL_LOSS_SQL, dict(min_points=min_points, window=window, span=EVIDENCE_SPAN,
                                              shrinkage=shrinkage)).df().set_index("run_id")
    evals = con.execute(_FINAL_EVAL_SQL).df().set_index("run_id")
    return trend, evals
