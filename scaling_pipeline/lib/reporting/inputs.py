"""What the report reads: the warehouse tables it shows, as DataFrames with their expected columns."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from scaling_pipeline.lib.tables import (CLEAN_LR_OPTIMA, CLEAN_LR_SCALING, CLEAN_LR_SWEEPS, CLEAN_POINTS,
                                         FITS_BOOTSTRAP, FITS_CHINCHILLA, LAW_PARAMS, PIPELINE_EXCLUSIONS,
                                         PLANS_ALLOCATIONS, RAW_QUARANTINE)

from .comparison import COLUMNS as COMPARISON_COLUMNS
from .comparison import SQL as COMPARISON_SQL
from .in_flight import load_forecasts

PARAMS = LAW_PARAMS  # the law's parameters, columns of fits.chinchilla and fits.bootstrap

COLUMNS = {  # per table: its columns (a missing one reads as empty)
    **{kind: table.names for kind, table in (
        ("points", CLEAN_POINTS), ("fits", FITS_CHINCHILLA), ("bootstrap", FITS_BOOTSTRAP),
        ("plans", PLANS_ALLOCATIONS), ("exclusions", PIPELINE_EXCLUSIONS), ("quarantine", RAW_QUARANTINE),
        ("lr_sweeps", CLEAN_LR_SWEEPS), ("lr_optima", CLEAN_LR_OPTIMA), ("lr_scaling", CLEAN_LR_SCALING))},
    "curves": ["run_id", "family", "n_params", "step", "tokens", "loss"],  # clean.steps of fitted runs, thinned
    "comparison": COMPARISON_COLUMNS,
}
CURVE_POINTS = 200  # training-curve points kept per run, at most (every k-th logged step, and the last)

_CURVES_SQL = f"""
SELECT run_id, family, n_params, step, tokens, loss FROM (
    SELECT s.run_id, p.family, p.n_params, s.step, s.tokens, coalesce(s.train_loss, s.eval_loss) AS loss,
           row_number() OVER w AS i, count(*) OVER (PARTITION BY s.run_id) AS n
    FROM clean.steps s JOIN clean.points p USING (run_id)
    WHERE coalesce(s.train_loss, s.eval_loss) IS NOT NULL AND s.tokens > 0
    WINDOW w AS (PARTITION BY s.run_id ORDER BY s.step))
WHERE (i - 1) % ((n + {CURVE_POINTS} - 1) // {CURVE_POINTS}) = 0 OR i = n
ORDER BY family, n_params, run_id, step
"""


@dataclass(frozen=True)
class ReportInputs:
    points: pd.DataFrame
    fits: pd.DataFrame
    bootstrap: pd.DataFrame
    plans: pd.DataFrame
    exclusions: pd.DataFrame
    quarantine: pd.DataFrame
    curves: pd.DataFrame | None = None  # loss against tokens of each fitted run (clean.steps, thinned)
    lr_sweeps: pd.DataFrame | None = None  # clean.lr_sweeps, clean.lr_optima, clean.lr_scaling
    lr_optima: pd.DataFrame | None = None
    lr_scaling: pd.DataFrame | None = None
    forecasts: dict[str, pd.DataFrame] = field(default_factory=dict)  # in_flight.load_forecasts
    comparison: pd.DataFrame | None = None  # fits.comparison with its parameters (reporting.comparison.SQL)


def load_inputs(con: duckdb.DuckDBPyConnection) -> ReportInputs:
    """Read every table the report shows from the warehouse (a missing table reads as empty)."""

    def q(sql: str, kind: str, *fallbacks: str) -> pd.DataFrame:
        for query in (sql, *fallbacks):
            try:
                return con.execute(query).df()
            except duckdb.CatalogException:
                continue
        return pd.DataFrame(columns=COLUMNS[kind])

    return ReportInputs(
        points=q("SELECT * FROM clean.points ORDER BY family, n_params, n_tokens", "points"),
        fits=q("SELECT * FROM fits.chinchilla ORDER BY family", "fits"),
        bootstrap=q("SELECT * FROM fits.bootstrap ORDER BY family, sample", "bootstrap"),
        plans=q("SELECT * FROM plans.allocations ORDER BY family, compute", "plans"),
        exclusions=q(f"SELECT * FROM {PIPELINE_EXCLUSIONS.name} ORDER BY family, run_id, stage, kind", "exclusions",
                     "SELECT 'clean' AS stage, * FROM clean.exclusions ORDER BY family, run_id, kind"),  # no forecasts yet
        quarantine=q("SELECT * FROM raw.quarantine ORDER BY source_path, location", "quarantine"),
        curves=q(_CURVES_SQL, "curves"),
        lr_sweeps=q("SELECT * FROM clean.lr_sweeps ORDER BY family, n_params, n_tokens, lr", "lr_sweeps"),
        lr_optima=q("SELECT * FROM clean.lr_optima ORDER BY family, n_params, n_tokens", "lr_optima"),
        lr_scaling=q("SELECT * FROM clean.lr_scaling ORDER BY family", "lr_scaling"),
        forecasts=load_forecasts(con),
        comparison=q(COMPARISON_SQL, "comparison"),
    )


def normalised(inputs: ReportInputs) -> ReportInputs:
    """Every table with at least its expected columns, family names as strings."""

    def norm(df: pd.DataFrame | None, kind: str) -> pd.DataFrame:
        df = pd.DataFrame(columns=COLUMNS[kind]) if df is None else df.copy()
        for c in COLUMNS[kind]:
            if c not in df:
                df[c] = np.nan if c not in ("family", "run_id", "kind", "reason") else ""
        if "family" in df:
            df["family"] = df["family"].map(lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x))
                                            else str(x))
        return df.reset_index(drop=True)

    return ReportInputs(points=norm(inputs.points, "points"), fits=norm(inputs.fits, "fits"),
                        bootstrap=norm(inputs.bootstrap, "bootstrap"), plans=norm(inputs.plans, "plans"),
                        exclusions=norm(inputs.exclusions, "exclusions"),
                        quarantine=norm(inputs.quarantine, "quarantine"), curves=norm(inputs.curves, "curves"),
                        **{k: norm(getattr(inputs, k), k) for k in ("lr_sweeps", "lr_optima", "lr_scaling")},
                        forecasts=inputs.forecasts, comparison=norm(inputs.comparison, "comparison"))
