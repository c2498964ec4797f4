"""The cleaning stage: rebuild the ``clean`` schema from ``raw`` in one transaction."""

from __future__ import annotations

import duckdb
import pandas as pd

from .completion import rejected_at_ingest, run_verdict
from .config import (BELOW_MIN_BUDGET, DOMINATED, DUPLICATE_STEPS, IMPLAUSIBLE_POINT, NO_LOSS, NO_METADATA,
                     NONFINITE_ROWS, WARMUP_ROWS, CleanConfig, CleanSummary)
from .merge import merge_sources
from .points import as_int, first_finite, implausible_point, product
from .selection import drop_dominated
from .steps import build_steps, duplicate_steps, final_losses, run_stats

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


def _clean(con: duckdb.DuckDBPyConnection, cfg: CleanConfig) -> CleanSummary:
    con.execute("CREATE SCHEMA IF NOT EXISTS clean")
    conflicts = merge_sources(con)
    dupes = duplicate_steps(con)
    build_steps(con)
    rejected_n_params = rejected_at_ingest(con, "n_params")

    runs = con.execute("SELECT * FROM clean.runs ORDER BY run_id").df()
    stats = run_stats(con, cfg.divergence_nats)
    smoothed, evals = final_losses(con, cfg.smooth_points)

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
                    as_int(st.first_nonfinite_step), int(st.n_nonfinite_rows))
        if st.n_warmup_rows:
            exclude(run_id, "rows", WARMUP_ROWS, f"{int(st.n_warmup_rows)} warm-up rows cut", None, int(st.n_warmup_rows))

    points = []
    for run in runs.itertuples(index=False):
        if run.run_id in conflicts:
            exclude(run.run_id, "run", *conflicts[run.run_id])
            continue
        reason = run_verdict(run, stats, cfg, rejected_n_params)
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
            exclude(run.run_id, "run", NO_LOSS, "no finite eval or train loss at the end of the run", as_int(st.last_step))
            continue
        tokens = first_finite(st.last_tokens, product(st.last_step, run.batch_tokens), run.tokens_planned)
        if tokens is None:
            exclude(run.run_id, "run", NO_METADATA, "tokens seen unknown (no tokens column, batch_tokens or plan)")
            continue
        if tokens < cfg.min_tokens or st.last_step < cfg.min_steps:
            exclude(run.run_id, "run", BELOW_MIN_BUDGET,
                    f"{tokens:.3g} tokens / {int(st.last_step)} steps is below the minimum "
                    f"({cfg.min_tokens:.3g} tokens / {cfg.min_steps} steps)", as_int(st.last_step))
            continue
        if problem := implausible_point(float(run.n_params), tokens, loss):
            exclude(run.run_id, "run", IMPLAUSIBLE_POINT, problem, as_int(st.last_step))
            continue
        points.append(dict(run_id=run.run_id, family=run.family, n_params=float(run.n_params), n_tokens=float(tokens),
                           flops=6.0 * float(run.n_params) * float(tokens), loss=loss, loss_source=source,
                           final_step=int(st.last_step), unique_tokens=first_finite(run.unique_tokens)))

    points_df = pd.DataFrame(points, columns=["run_id", "family", "n_params", "n_tokens", "flops", "loss",
                                              "loss_source", "final_step", "unique_tokens"])
    points_df, dominated = drop_dominated(points_df, cfg.dominated_tolerance)
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
