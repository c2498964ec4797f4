"""Report stage: the planning report under ``reports/<date>/`` and ``reports/latest``."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from scaling_pipeline.lib.report import load_inputs, render_report

from .allocate import PLANS_ALLOCATIONS
from .clean import CLEAN_EXCLUSIONS, CLEAN_POINTS
from .fit import FITS_CHINCHILLA
from .ingest import RAW_QUARANTINE
from .resources import PipelineSettings

PLANNING_REPORT = dg.AssetKey(["reports", "planning_report"])


@dg.asset(key=PLANNING_REPORT, deps=[PLANS_ALLOCATIONS, FITS_CHINCHILLA, CLEAN_POINTS, CLEAN_EXCLUSIONS, RAW_QUARANTINE],
          group_name="report", kinds={"html"})
def planning_report(duckdb: DuckDBResource, settings: PipelineSettings) -> dg.MaterializeResult:
    """Self-contained HTML report with figures, allocation tables and exclusions."""
    with duckdb.get_connection() as con:
        inputs = load_inputs(con)
    index = render_report(inputs, settings.reports_path)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(index.resolve())),
        "latest": dg.MetadataValue.path(str((settings.reports_path / "latest" / "index.html").resolve())),
        "families": int(inputs.fits.family.nunique())})
