"""The Dagster code location: every asset, check and resource of scaling-pipeline."""

from __future__ import annotations

import dagster as dg

from scaling_pipeline.defs import allocate, automation, clean, fit, forecasts, ingest, pool, report
from scaling_pipeline.defs.resources import build_resources

ASSETS = [ingest.raw_logs, clean.clean_tables, fit.chinchilla_fits, allocate.allocations, report.planning_report]
ASSETS += [forecasts.in_flight]
CHECKS = [clean.steps_unique, clean.steps_finite, clean.points_valid, fit.fits_finite, fit.fits_publishable,
          allocate.plans_consistent, forecasts.forecasts_valid, forecasts.runs_on_track]

# Steps run one after another in the run's own process: every asset holds the one `duckdb_writer` slot and
# the checks are short queries on the same DuckDB file, so little could overlap, while a process per step
# paid the imports of Dagster and this package 11 times per run (benchmarks/README.md, "Nightly path through
# the UI"). The fit step still fits families across worker processes. The executor is Dagster's in-process one
# that also honours "Terminate" while a step waits for the pool slot (defs/pool.py).
defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[automation.pipeline_job],
    schedules=[automation.nightly],
    sensors=[automation.new_logs_sensor, pool.stale_pool_slots],
    resources=build_resources(),
    executor=pool.in_process_executor,
)
