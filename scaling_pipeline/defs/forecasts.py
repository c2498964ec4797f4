"""Forecast stage: the final loss of every run in flight, against its family's law (``forecasts`` schema)."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from scaling_pipeline.lib import tables as T

from .clean import CLEAN_EXCLUSIONS, CLEAN_POINTS, rows_check
from .fit import FITS_CHINCHILLA
from .pool import POOL
from .resources import warehouse
from .tables import asset_key, table_metadata, table_spec

FORECASTS_IN_FLIGHT = asset_key(T.FORECASTS_IN_FLIGHT)
_SPEC = table_spec(T.FORECASTS_IN_FLIGHT)


@dg.asset(key=FORECASTS_IN_FLIGHT, deps=[CLEAN_POINTS, CLEAN_EXCLUSIONS, FITS_CHINCHILLA], group_name=_SPEC.group_name,
          kinds={"duckdb", "scipy"}, metadata=_SPEC.metadata, pool=POOL)
def in_flight(duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Every run that has not reached its planned end: its final loss forecast from its curve so far and the
    family's shared curve law, a 90% interval, the family law's L(N, D) and a flag (``off_track`` with what to
    check). Also forecasts.backtest (completed runs cut at 25/50/75%), forecasts.curves, forecasts.exclusions.
    Only the families whose inputs changed are forecast anew (``refitted``); the others keep their rows."""
    from scaling_pipeline.lib.forecast import forecast_families  # scipy: loaded by the run, not by the code location

    with warehouse(duckdb) as con:
        summary = forecast_families(con)
        table = con.execute("""SELECT family, run_id, round(progress, 2) AS progress, round(forecast, 4) AS forecast,
                                      round(lo, 4) AS lo, round(hi, 4) AS hi, round(law, 4) AS law, flag
                               FROM forecasts.in_flight ORDER BY family, run_id""").df()
        backtest = con.execute("""SELECT cut, count(*) AS runs, round(avg(abs(rel_error)), 5) AS mean_abs_rel_error,
                                         round(avg(covered::INT), 3) AS coverage
                                  FROM forecasts.backtest GROUP BY cut ORDER BY cut""").df()
        tables = table_metadata(con, T.FORECASTS_IN_FLIGHT)
    return dg.MaterializeResult(metadata={**tables,
        "forecasts": summary.forecasts, "unchanged": summary.unchanged,
        "refitted": dg.MetadataValue.json(summary.refitted), "off_track": dg.MetadataValue.json(summary.off_track),
        "excluded": dg.MetadataValue.json(summary.excluded),
        "runs": dg.MetadataValue.md(table.to_markdown(index=False)),
        "backtest": dg.MetadataValue.md(backtest.to_markdown(index=False))})


@dg.asset_check(asset=FORECASTS_IN_FLIGHT, blocking=True)
def forecasts_valid(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Every forecast is finite and positive and inside its interval; every run in flight has a forecast or
    an exclusion with its reason."""
    return rows_check(duckdb, """SELECT family, run_id, forecast, lo, hi, 'bad forecast' AS problem FROM forecasts.in_flight
                                 WHERE NOT (isfinite(forecast) AND forecast > 0 AND lo <= forecast AND forecast <= hi)
                                 UNION ALL
                                 SELECT e.family, e.run_id, NULL, NULL, NULL, 'neither forecast nor exclusion'
                                 FROM clean.exclusions e
                                 WHERE e.kind = 'run' AND e.reason = 'incomplete_schedule'
                                   AND e.run_id NOT IN (SELECT run_id FROM forecasts.in_flight)
                                   AND e.run_id NOT IN (SELECT run_id FROM forecasts.exclusions)
                                 ORDER BY 1, 2""",
                      "runs in flight without a valid forecast or an exclusion")


@dg.asset_check(asset=FORECASTS_IN_FLIGHT)
def runs_on_track(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Runs in flight forecast to miss their family's law by more than the interval allows (a warning)."""
    with warehouse(duckdb) as con:
        rows = con.execute("SELECT run_id, message FROM forecasts.in_flight WHERE flag = 'off_track' "
                           "ORDER BY family, run_id").fetchall()
    return dg.AssetCheckResult(passed=not rows, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"off_track": dg.MetadataValue.json(dict(rows))},
                               description=" ".join(m for _, m in rows) or "every forecast run is on track")
