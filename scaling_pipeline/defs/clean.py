"""Clean stage: raw logs -> deduplicated steps and one schedule-valid point per completed run."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from scaling_pipeline.lib.clean import clean

from .ingest import RAW_METRICS, RAW_RUNS
from .pool import POOL
from .resources import PipelineSettings, warehouse

CLEAN_RUNS = dg.AssetKey(["clean", "runs"])
CLEAN_STEPS = dg.AssetKey(["clean", "steps"])
CLEAN_POINTS = dg.AssetKey(["clean", "points"])
CLEAN_EXCLUSIONS = dg.AssetKey(["clean", "exclusions"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(CLEAN_RUNS, deps=[RAW_RUNS, RAW_METRICS], group_name="clean", kinds={"duckdb"},
                     description="One row per run: metadata merged from every source."),
        dg.AssetSpec(CLEAN_STEPS, deps=[RAW_METRICS, CLEAN_RUNS], group_name="clean", kinds={"duckdb"},
                     description="One row per (run, step): last write wins, finite losses, warm-up cut."),
        dg.AssetSpec(CLEAN_POINTS, deps=[CLEAN_STEPS, CLEAN_RUNS], group_name="clean", kinds={"duckdb"},
                     description="One schedule-valid point (N, D, C=6ND, final loss) per completed run."),
        dg.AssetSpec(CLEAN_EXCLUSIONS, deps=[CLEAN_STEPS, CLEAN_RUNS], group_name="clean", kinds={"duckdb"},
                     description="Every excluded run and dropped row, with the reason."),
    ],
    pool=POOL,
)
def clean_tables(context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: PipelineSettings):
    """Rebuild the clean schema from raw in one transaction."""
    cfg = settings.clean_config()
    with warehouse(duckdb) as con:
        summary = clean(con, cfg)
        excl_md = con.execute(
            "SELECT family, run_id, reason, detail FROM clean.exclusions WHERE kind = 'run' ORDER BY family, run_id"
        ).df().to_markdown(index=False)
    context.log.info(f"clean: {summary.points} points from {summary.runs} runs, {summary.excluded_runs} runs excluded")
    yield dg.MaterializeResult(asset_key=CLEAN_RUNS, metadata={"runs": summary.runs})
    yield dg.MaterializeResult(asset_key=CLEAN_STEPS, metadata={
        "rows": summary.steps, "dropped_rows": dg.MetadataValue.json(summary.dropped_rows)})
    yield dg.MaterializeResult(asset_key=CLEAN_POINTS, metadata={
        "points": summary.points, "families": dg.MetadataValue.json(summary.families),
        "config": dg.MetadataValue.json(cfg.to_dict())})
    yield dg.MaterializeResult(asset_key=CLEAN_EXCLUSIONS, metadata={
        "excluded_runs": summary.excluded_runs,
        "by_reason": dg.MetadataValue.json(summary.excluded_by_reason),
        "runs": dg.MetadataValue.md(excl_md)})


def _count_check(duckdb: DuckDBResource, sql: str, what: str) -> dg.AssetCheckResult:
    with warehouse(duckdb) as con:
        bad = con.execute(sql).fetchone()[0]
    return dg.AssetCheckResult(passed=bad == 0, metadata={"violations": bad},
                               description=f"{bad} {what}" if bad else f"no {what}")


@dg.asset_check(asset=CLEAN_STEPS, blocking=True)
def steps_unique(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Each (run_id, step) appears once."""
    return _count_check(duckdb, """SELECT count(*) FROM (SELECT run_id, step FROM clean.steps
                                   GROUP BY run_id, step HAVING count(*) > 1)""", "duplicate (run_id, step) pairs")


@dg.asset_check(asset=CLEAN_STEPS, blocking=True)
def steps_finite(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """No NaN/inf loss survives cleaning, and every row has a loss."""
    return _count_check(duckdb, """SELECT count(*) FROM clean.steps
                                   WHERE NOT coalesce(isfinite(train_loss), isfinite(eval_loss), false)
                                      OR (train_loss IS NOT NULL AND NOT isfinite(train_loss))
                                      OR (eval_loss IS NOT NULL AND NOT isfinite(eval_loss))""",
                        "rows with a non-finite or missing loss")


@dg.asset_check(asset=CLEAN_POINTS, blocking=True)
def points_valid(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """N, D, C positive and finite; C = 6·N·D; loss finite and positive."""
    return _count_check(duckdb, """SELECT count(*) FROM clean.points
                                   WHERE NOT (n_params > 0 AND n_tokens > 0 AND flops > 0 AND loss > 0
                                              AND isfinite(n_params) AND isfinite(n_tokens) AND isfinite(loss)
                                              AND abs(flops / (6 * n_params * n_tokens) - 1) < 1e-9)""",
                        "points with non-positive/non-finite N, D, C or loss")
