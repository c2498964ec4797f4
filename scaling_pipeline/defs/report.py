"""Report stage: the planning report under ``reports/<date>/`` and ``reports/latest``."""

import json

import dagster as dg
from dagster_duckdb import DuckDBResource

from .allocate import PLANS_ALLOCATIONS
from .clean import CLEAN_EXCLUSIONS, CLEAN_POINTS
from .fit import FITS_CHINCHILLA
from .forecasts import FORECASTS_IN_FLIGHT
from .ingest import RAW_QUARANTINE
from .pool import POOL
from .resources import PipelineSettings, resolved, warehouse

PLANNING_REPORT = dg.AssetKey(["reports", "planning_report"])


@dg.asset(key=PLANNING_REPORT, deps=[PLANS_ALLOCATIONS, FITS_CHINCHILLA, CLEAN_POINTS, CLEAN_EXCLUSIONS, RAW_QUARANTINE,
                                 FORECASTS_IN_FLIGHT],
          group_name="reports", kinds={"html"}, pool=POOL)
def planning_report(duckdb: DuckDBResource, settings: PipelineSettings) -> dg.MaterializeResult:
    """Self-contained HTML report with figures, allocation tables and exclusions. A figure whose inputs (e.g. the
    family's points and fit) and the code did not change since the last report is reused, not redrawn."""
    # imported when a report is made, not when the code location loads (every run worker loads it)
    from scaling_pipeline.lib.reporting import load_inputs, render_report
    from scaling_pipeline.lib.reporting.figcache import FigureCache
    from scaling_pipeline.lib.reporting.formatting import esc
    from scaling_pipeline.lib.reporting.why import settings_used

    resolved_settings = resolved(settings)
    with warehouse(duckdb) as con:
        inputs = load_inputs(con)
    cache = FigureCache(settings.reports_path)
    index = render_report(inputs, settings.reports_path, headline_compute=resolved_settings.report.headline_compute,
                          settings=settings_used(resolved_settings.flat(), inputs.fits), cache=cache)
    summary = json.loads((index.parent / "summary.json").read_text())
    lines = ["| family | verdict | at a glance |", "|---|---|---|"]
    for fam, f in summary["families"].items():
        h = f.get("headline") or {}
        glance = (f"C={h['compute']:.0e} FLOPs: N*={h['n_params']:.3g}, D*={h['n_tokens']:.3g}, loss {h['loss']:.3f}"
                  if h and f.get("publishable") else "; ".join(r["message"] for r in f.get("reasons") or []
                                                             if r["severity"] == "blocks") or "no headline plan")
        cells = (esc(c).replace("|", "\\|") for c in (fam, f.get("verdict"), glance))  # names are data
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str((settings.reports_path / "latest" / "index.html").resolve())),
        "dated_copy": dg.MetadataValue.path(str(index.resolve())),
        "families": len(summary["families"]),
        "figures_redrawn": dg.MetadataValue.int(cache.drawn),  # figures drawn anew
        "figures_reused": dg.MetadataValue.int(cache.reused),  # figures whose inputs are unchanged
        "verdicts": dg.MetadataValue.md("\n".join(lines))})
