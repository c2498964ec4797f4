"""Ingest stage: every log file under the log root -> the ``raw`` schema (raw.files, raw.metrics, raw.runs,
raw.quarantine)."""

import time

import dagster as dg
from dagster_duckdb import DuckDBResource

from scaling_pipeline.lib import tables as T
from scaling_pipeline.lib.ingest import ingest
from scaling_pipeline.lib.tables import row_count

from .pool import POOL
from .resources import PipelineSettings, warehouse
from .tables import asset_key, table_result, table_spec

RAW_FILES, RAW_METRICS, RAW_RUNS, RAW_QUARANTINE = (
    asset_key(t) for t in (T.RAW_FILES, T.RAW_METRICS, T.RAW_RUNS, T.RAW_QUARANTINE))


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
    specs=[table_spec(t) for t in (T.RAW_FILES, T.RAW_METRICS, T.RAW_RUNS, T.RAW_QUARANTINE)],
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
        runs = con.execute("SELECT count(DISTINCT run_id) FROM raw.runs").fetchone()[0]
        quarantine_md = con.execute(
            "SELECT source_path, location, field, reason, scope FROM raw.quarantine ORDER BY source_path LIMIT 50"
        ).df().to_markdown(index=False) if row_count(con, T.RAW_QUARANTINE) else "nothing quarantined"
        by_status = dict(con.execute("SELECT status, count(*) FROM raw.files GROUP BY status ORDER BY status").fetchall())
        meta = {f"ingest_{k}": v for k, v in summary.to_metadata().items() if isinstance(v, (int, float, str))}
        yield table_result(con, T.RAW_FILES, by_status=dg.MetadataValue.json(by_status),
                           by_reader=dg.MetadataValue.json(summary.per_reader))
        yield table_result(con, T.RAW_METRICS, **meta)
        yield table_result(con, T.RAW_RUNS, runs=runs)
        yield table_result(con, T.RAW_QUARANTINE, preview=dg.MetadataValue.md(quarantine_md))
