"""Clean stage: raw logs -> deduplicated steps and one schedule-valid point per completed run (the best
of each hyperparameter sweep by default), plus the learning-rate sweep tables clean.lr_*."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from scaling_pipeline.lib import tables as T
from scaling_pipeline.lib.cleaning import clean

from .ingest import RAW_METRICS, RAW_RUNS
from .pool import POOL
from .resources import PipelineSettings, resolved, warehouse
from .tables import asset_key, table_result, table_spec

CLEAN_RUNS, CLEAN_STEPS, CLEAN_POINTS, CLEAN_EXCLUSIONS = (
    asset_key(t) for t in (T.CLEAN_RUNS, T.CLEAN_STEPS, T.CLEAN_POINTS, T.CLEAN_EXCLUSIONS))
CLEAN_LR_SWEEPS, CLEAN_LR_OPTIMA, CLEAN_LR_SCALING = (
    asset_key(t) for t in (T.CLEAN_LR_SWEEPS, T.CLEAN_LR_OPTIMA, T.CLEAN_LR_SCALING))


@dg.multi_asset(
    specs=[
        table_spec(T.CLEAN_RUNS, deps=[RAW_RUNS, RAW_METRICS]),
        table_spec(T.CLEAN_STEPS, deps=[RAW_METRICS, CLEAN_RUNS]),
        table_spec(T.CLEAN_POINTS, deps=[CLEAN_STEPS, CLEAN_RUNS],
                   description="One schedule-valid point (N, D, C=6ND, final loss) per completed run; of a "
                               "hyperparameter sweep, the best run per (N, D)."),
        table_spec(T.CLEAN_EXCLUSIONS, deps=[CLEAN_STEPS, CLEAN_RUNS]),
        table_spec(T.CLEAN_LR_SWEEPS, deps=[CLEAN_STEPS, CLEAN_RUNS]),
        table_spec(T.CLEAN_LR_OPTIMA, deps=[CLEAN_LR_SWEEPS]),
        table_spec(T.CLEAN_LR_SCALING, deps=[CLEAN_LR_OPTIMA]),
    ],
    pool=POOL,
)
def clean_tables(context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: PipelineSettings):
    """Rebuild the clean schema from raw in one transaction; kept as it is when raw.metrics, raw.runs, the
    cleaning settings and the code are as at the last clean and the tables hold what it wrote (``unchanged``)."""
    cfg = resolved(settings).clean
    with warehouse(duckdb) as con:
        summary = clean(con, cfg)
        excl_md = con.execute(
            "SELECT family, run_id, reason, detail FROM clean.exclusions WHERE kind = 'run' ORDER BY family, run_id"
        ).df().to_markdown(index=False)
        lr_md = con.execute("""SELECT family, n_sizes, gamma, gamma_lo, gamma_hi, delta, status, detail
                               FROM clean.lr_scaling ORDER BY family""").df().to_markdown(index=False)
        kept = " (inputs unchanged: tables kept)" if summary.unchanged else ""
        context.log.info(f"clean: {summary.points} points from {summary.runs} runs, "
                         f"{summary.excluded_runs} runs excluded{kept}")
        yield table_result(con, T.CLEAN_RUNS)
        yield table_result(con, T.CLEAN_STEPS, dropped_rows=dg.MetadataValue.json(summary.dropped_rows))
        yield table_result(con, T.CLEAN_POINTS, families=dg.MetadataValue.json(summary.families),
                           flagged=dg.MetadataValue.json(summary.flagged), config=dg.MetadataValue.json(cfg.to_dict()),
                           unchanged=summary.unchanged)
        yield table_result(con, T.CLEAN_EXCLUSIONS, excluded_runs=summary.excluded_runs,
                           by_reason=dg.MetadataValue.json(summary.excluded_by_reason), runs=dg.MetadataValue.md(excl_md))
        yield table_result(con, T.CLEAN_LR_SWEEPS)
        yield table_result(con, T.CLEAN_LR_OPTIMA)
        # LR* = c·N^-gamma per swept family
        yield table_result(con, T.CLEAN_LR_SCALING, fits=dg.MetadataValue.md(lr_md))


def rows_check(duckdb: DuckDBResource, sql: str, what: str) -> dg.AssetCheckResult:
    """Passes when ``sql`` (the offending rows, identifying columns first) returns none; otherwise
    names them (the first 10 in the description, 50 in the metadata)."""
    with warehouse(duckdb) as con:
        bad = con.execute(sql).df()
    if bad.empty:
        return dg.AssetCheckResult(passed=True, metadata={"violations": 0}, description=f"no {what}")
    named = "; ".join(", ".join(f"{k}={v!r}" for k, v in row.items()) for row in bad.head(10).to_dict("records"))
    more = f" (+{len(bad) - 10} more)" if len(bad) > 10 else ""
    return dg.AssetCheckResult(passed=False, metadata={
        "violations": len(bad), "rows": dg.MetadataValue.md(bad.head(50).to_markdown(index=False))},
        description=f"{len(bad)} {what}: {named}{more}")


@dg.asset_check(asset=CLEAN_STEPS, blocking=True)
def steps_unique(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Each (run_id, step) appears once."""
    return rows_check(duckdb, """SELECT run_id, any_value(family) AS family, step, count(*) AS copies
                                 FROM clean.steps GROUP BY run_id, step HAVING count(*) > 1 ORDER BY run_id, step""",
                      "duplicate (run_id, step) pairs")


@dg.asset_check(asset=CLEAN_STEPS, blocking=True)
def steps_finite(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """No NaN/inf loss survives cleaning, and every row has a loss."""
    return rows_check(duckdb, """SELECT run_id, family, step, train_loss, eval_loss FROM clean.steps
                                 WHERE NOT coalesce(isfinite(train_loss), isfinite(eval_loss), false)
                                    OR (train_loss IS NOT NULL AND NOT isfinite(train_loss))
                                    OR (eval_loss IS NOT NULL AND NOT isfinite(eval_loss))
                                 ORDER BY run_id, step""",
                      "rows with a non-finite or missing loss")


@dg.asset_check(asset=CLEAN_POINTS, blocking=True)
def points_valid(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """N, D, C positive and finite; C = 6·N·D; loss finite and positive."""
    return rows_check(duckdb, """SELECT run_id, family, n_params, n_tokens, flops, loss FROM clean.points
                                 WHERE NOT (n_params > 0 AND n_tokens > 0 AND flops > 0 AND loss > 0
                                            AND isfinite(n_params) AND isfinite(n_tokens) AND isfinite(loss)
                                            AND abs(flops / (6 * n_params * n_tokens) - 1) < 1e-9)
                                 ORDER BY family, run_id""",
                      "points with non-positive/non-finite N, D, C or loss")
