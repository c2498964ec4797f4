"""Fit stage: per-family Chinchilla fits with bootstrap intervals (``fits`` schema)."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from scaling_pipeline.lib.warehouse import FitSettings, fit_families

from .clean import CLEAN_POINTS

FITS_CHINCHILLA = dg.AssetKey(["fits", "chinchilla"])


class FitConfig(dg.Config):
    """Fit settings (a change refits every family)."""

    loss: str = "huber"
    delta: float = 1e-3
    n_boot: int = 200
    seed: int = 0


def fit_run_config(n_boot: int = 200, seed: int = 0) -> dict:
    """Run config that sets the fit settings of a materialization (CLI, tests)."""
    return {"ops": {"fits__chinchilla": {"config": {"n_boot": n_boot, "seed": seed}}},
            "loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dg.asset(key=FITS_CHINCHILLA, deps=[CLEAN_POINTS], group_name="fit", kinds={"duckdb", "scipy"},
          pool="duckdb_writer")
def chinchilla_fits(context: dg.AssetExecutionContext, config: FitConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """L(N, D) = E + A/N^α + B/D^β per family (sum of Huber(δ) on log-loss residuals); families whose
    points did not change are not refit."""
    settings = FitSettings(loss=config.loss, delta=config.delta, n_boot=config.n_boot, seed=config.seed)
    with duckdb.get_connection() as con:
        summary = fit_families(con, settings, progress=context.log.info)
        table = con.execute(
            """SELECT family, status, n_points, round(E, 4) AS E, round(alpha, 4) AS alpha, round(beta, 4) AS beta,
                      round(a_exponent, 4) AS a_exponent, objective, warnings FROM fits.chinchilla ORDER BY family""").df()
    for fam, err in summary.failed.items():
        context.log.warning(f"fit of family {fam!r} failed: {err}")
    return dg.MaterializeResult(metadata={
        "families": len(table), "refit": dg.MetadataValue.json(summary.fitted),
        "unchanged": dg.MetadataValue.json(summary.unchanged), "failed": dg.MetadataValue.json(summary.failed),
        "fits": dg.MetadataValue.md(table.to_markdown(index=False))})
