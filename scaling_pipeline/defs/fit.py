"""Fit stage: per-family Chinchilla fits with bootstrap intervals (``fits`` schema)."""

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import create_model

from scaling_pipeline.lib.quality import Assessment
from scaling_pipeline.lib.settings import FitSettings
from scaling_pipeline.lib.warehouse import fit_families

from .clean import CLEAN_POINTS, rows_check
from .pool import POOL
from .resources import PipelineSettings, config_fields, resolved, warehouse

FITS_CHINCHILLA = dg.AssetKey(["fits", "chinchilla"])


FitConfig = create_model(
    "FitConfig", __base__=dg.Config, __doc__="Fit settings set for this run (they win over the settings file; a "
    "change refits every family) and the number of processes (n_jobs: not a setting, results do not depend on "
    "it; None: one per available core).",
    **config_fields(FitSettings), n_jobs=(int | None, None))


def fit_run_config(bootstrap: int | None = None, seed: int | None = None) -> dict:
    """Run config that sets the fit settings of a materialization (CLI flags, tests; None: unset, the
    settings file's or the default)."""
    given = {k: v for k, v in (("bootstrap", bootstrap), ("seed", seed)) if v is not None}
    return {"ops": {"fits__chinchilla": {"config": given}},
            "loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dg.asset(key=FITS_CHINCHILLA, deps=[CLEAN_POINTS], group_name="fit", kinds={"duckdb", "scipy"},
          pool=POOL)
def chinchilla_fits(context: dg.AssetExecutionContext, config: FitConfig, duckdb: DuckDBResource,
                    settings: PipelineSettings) -> dg.MaterializeResult:
    """L(N, D) = E + A/N^α + B/D^β per family (sum of Huber(δ) on log-loss residuals); families whose
    points did not change are not refit."""
    fit = resolved(settings, config.model_dump(exclude={"n_jobs"})).fit
    with warehouse(duckdb) as con:
        summary = fit_families(con, fit, n_jobs=config.n_jobs, progress=context.log.info)
        table = con.execute(
            """SELECT family, status, verdict, n_points, round(E, 4) AS E, round(alpha, 4) AS alpha,
                      round(beta, 4) AS beta, round(a_exponent, 4) AS a_exponent, objective,
                      array_to_string(reasons, ', ') AS reasons
               FROM fits.chinchilla ORDER BY family""").df()
    for fam, err in summary.failed.items():
        context.log.warning(f"fit of family {fam!r} failed: {err}")
    return dg.MaterializeResult(metadata={
        "families": len(table), "refit": dg.MetadataValue.json(summary.fitted),
        "unchanged": dg.MetadataValue.json(summary.unchanged), "failed": dg.MetadataValue.json(summary.failed),
        "worker_processes": summary.workers,
        "fits": dg.MetadataValue.md(table.to_markdown(index=False))})


@dg.asset_check(asset=FITS_CHINCHILLA, blocking=True)
def fits_finite(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Every successful fit has finite, positive parameters and a finite objective."""
    return rows_check(duckdb, """SELECT family, n_points, E, A, B, alpha, beta, objective FROM fits.chinchilla
                                 WHERE status = 'ok' AND NOT (
                                     isfinite(E) AND isfinite(A) AND isfinite(B) AND isfinite(alpha) AND isfinite(beta)
                                     AND isfinite(objective) AND A > 0 AND B > 0 AND alpha > 0 AND beta > 0 AND E >= 0)
                                 ORDER BY family""",
                      "families with a non-finite or non-positive fit")


@dg.asset_check(asset=FITS_CHINCHILLA)
def fits_publishable(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Fits whose plan is withheld: verdict ``withheld`` or ``failed`` of the quality assessment
    (:mod:`scaling_pipeline.lib.quality`), with its blocking reasons. A warning, not a blocker: the other
    families' plans are still published."""
    with warehouse(duckdb) as con:
        rows = con.execute("SELECT family, verdict, reasons, reason_messages FROM fits.chinchilla "
                           "WHERE publishable IS NOT TRUE ORDER BY family").fetchall()
    judged = {fam: Assessment.from_columns(*cols) for fam, *cols in rows}
    withheld = {fam: {"verdict": a.verdict, "reasons": [r.code for r in a.blocking],
                      "messages": [r.message for r in a.blocking]} for fam, a in judged.items()}
    return dg.AssetCheckResult(
        passed=not withheld, severity=dg.AssetCheckSeverity.WARN,
        metadata={"withheld": dg.MetadataValue.json(withheld)},
        description="; ".join(f"{k} {w['verdict']}: {'; '.join(w['messages'])}" for k, w in withheld.items())
        or "every family's plan is published")
