"""Ingest stage: every log file under the log root -> the ``raw`` schema."""

import time

import dagster as dg
from dagster_duckdb import DuckDBResource

from scaling_pipeline.lib.ingest import ingest

from .pool import POOL
from .resources import PipelineSettings, warehouse

RAW_METRICS = dg.AssetKey(["raw", "metrics"])
RAW_RUNS = dg.AssetKey(["raw", "runs"])
RAW_QUARANTINE = dg.AssetKey(["raw", "quarantine"])


def _throttled(log, every_seconds: float = 5.0):
    """Progress for long ingests without a line per file: problems and removals always, the rest at
    most every ``every_seconds``."""
    last = [float("-inf")]

    def emit(message: str) -> None:
        now = time.monotonic()
        if "(partial)" in message or "(quarantined)" in message or message.startswith("removed"):
            log.warning(message)
        elif now - last[0] >= every_seconds:
            log.info(message)
        else:
            return
        last[0] = now

    return emit


@dg.multi_asset(
    specs=[
        dg.AssetSpec(RAW_METRICS, description="One row per logged step, as read from the logs (duplicates kept).",
                     group_name="ingest", kinds={"duckdb"}),
        dg.AssetSpec(RAW_RUNS, description="Run metadata (manifests, configs, params, hparams).",
                     group_name="ingest", kinds={"duckdb"}),
        dg.AssetSpec(RAW_QUARANTINE, description="Rows and files that could not be read, with the reason.",
                     group_name="ingest", kinds={"duckdb"}),
    ],
    pool=POOL,
)
def raw_logs(context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: PipelineSettings):
    """Scan the log root; (re)ingest new or changed files, skip unchanged ones, drop removed ones."""
    root = settings.logs_path
    if not root.is_dir():
        raise dg.Failure(f"log root {str(root)!r} does not exist or is not a directory "
                         "(set --logs, SCALING_LOGS, or run `scaling-pipeline demo-data data/demo`)")
    with warehouse(duckdb) as con:
        summary = ingest(root, con, progress=_throttled(context.log))
        context.log.info(f"ingest: {summary.units_seen} sources, {summary.units_ingested} (re)read, "
                         f"{summary.units_unchanged} unchanged, {summary.units_removed} removed, "
                         f"{summary.rejections} rejections")
        counts = dict(con.execute("""SELECT 'metrics', count(*) FROM raw.metrics UNION ALL
                                     SELECT 'runs', count(DISTINCT run_id) FROM raw.runs UNION ALL
                                     SELECT 'quarantine', count(*) FROM raw.quarantine""").fetchall())
        quarantine_md = con.execute(
            "SELECT source_path, location, field, reason, scope FROM raw.quarantine ORDER BY source_path LIMIT 50"
        ).df().to_markdown(index=False) if counts["quarantine"] else "nothing quarantined"
    meta = {f"ingest_{k}": v for k, v in summary.to_metadata().items() if isinstance(v, (int, float, str))}
    yield dg.MaterializeResult(asset_key=RAW_METRICS, metadata={"rows": counts["metrics"], **meta})
    yield dg.MaterializeResult(asset_key=RAW_RUNS, metadata={"runs": counts["runs"]})
    yield dg.MaterializeResult(asset_key=RAW_QUARANTINE, metadata={
        "rows": counts["quarantine"], "preview": dg.MetadataValue.md(quarantine_md)})
