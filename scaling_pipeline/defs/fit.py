"""Fit stage: per-family Chinchilla fits with bootstrap intervals (``fits`` schema)."""

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import create_model

from scaling_pipeline.lib import tables as T
from scaling_pipeline.lib.quality import Assessment
from scaling_pipeline.lib.settings import FitSettings
from scaling_pipeline.lib.warehouse import fit_families

from .clean import CLEAN_POINTS, rows_check
from .pool import POOL
from .resources import PipelineSettings, config_fields, resolved, warehouse
from .tables import asset_key, table_metadata, table_spec

FITS_CHINCHILLA = asset_key(T.FITS_CHINCHILLA)
PLOTTED_FAMILIES = 20  # families whose parameters are numeric metadata (first by name): the UI plots each
PLOTTED_PARAMS = ("E", "alpha", "beta", "a_exponent")


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


_SPEC = table_spec(T.FITS_CHINCHILLA)


def parameter_metadata(rows: list[tuple]) -> dict[str, object]:
    """``<family>/<param>`` float metadata of the successful fits in ``rows`` ((family, *PLOTTED_PARAMS),
    sorted by family) for the first PLOTTED_FAMILIES families, so the asset's Plots tab charts them over
    refits; a note says when families were left out."""
    meta: dict[str, object] = {}
    for family, *values in rows[:PLOTTED_FAMILIES]:
        meta.update({f"{family}/{p}": dg.MetadataValue.float(float(v)) for p, v in zip(PLOTTED_PARAMS, values)})
    if len(rows) > PLOTTED_FAMILIES:
        meta["plotted_families"] = dg.MetadataValue.text(
            f"parameters of the first {PLOTTED_FAMILIES} of {len(rows)} fitted families (by name); all in fits.chinchilla")
    return meta


@dg.asset(key=FITS_CHINCHILLA, deps=[CLEAN_POINTS], group_name=_SPEC.group_name, kinds={"duckdb", "scipy"},
          metadata=_SPEC.metadata, pool=POOL)
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
        params = con.execute(f"SELECT family, {', '.join(PLOTTED_PARAMS)} FROM fits.chinchilla WHERE status = 'ok' "
                             "ORDER BY family").fetchall()
        meta = {**table_metadata(con, T.FITS_CHINCHILLA), **parameter_metadata(params),
                "bootstrap_rows": T.row_count(con, T.FITS_BOOTSTRAP)}
    for fam, err in summary.failed.items():
        context.log.warning(f"fit of family {fam!r} failed: {err}")
    return dg.MaterializeResult(metadata={
        **meta, "families": len(table), "refit": dg.MetadataValue.json(summary.fitted),
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
