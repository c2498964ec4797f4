"""What the report reads: the warehouse tables it shows, as DataFrames with their expected columns."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from .comparison import COLUMNS as COMPARISON_COLUMNS
from .comparison import SQL as COMPARISON_SQL

PARAMS = ("E", "A", "B", "alpha", "beta")  # the law's parameters, columns of fits.chinchilla and fits.bootstrap

COLUMNS = {  # per table: the columns the report reads (a missing one reads as empty)
    "points": ["run_id", "family", "n_params", "n_tokens", "flops", "loss", "loss_source", "final_step",
               "unique_tokens"],
    "fits": ["family", "status", "error", "publishable", "verdict", "reasons", "reason_messages", "E", "A", "B",
             "alpha", "beta", "a_exponent", "G", "objective", "loss", "delta", "n_points", "fit_seconds",
             "max_observed_flops", "ci", "diagnostics", "backtest", "warnings", "settings", "input_hash", "fitted_at"],
    "bootstrap": ["family", "sample", *PARAMS],
    "plans": ["family", "compute", "n_params", "n_tokens", "tokens_per_param", "loss", "constraint", "n_params_lo",
              "n_params_hi", "n_tokens_lo", "n_tokens_hi", "loss_lo", "loss_hi", "extrapolation", "beyond_limit",
              "verdict", "publishable"],
    "exclusions": ["run_id", "family", "kind", "reason", "detail", "step", "n_rows"],
    "quarantine": ["source_path", "reader", "location", "field", "reason", "scope", "quarantined_at"],
    "comparison": COMPARISON_COLUMNS,
}


@dataclass(frozen=True)
class ReportInputs:
    points: pd.DataFrame
    fits: pd.DataFrame
    bootstrap: pd.DataFrame
    plans: pd.DataFrame
    exclusions: pd.DataFrame
    quarantine: pd.DataFrame
    comparison: pd.DataFrame | None = None  # fits.comparison with its parameters (reporting.comparison.SQL)


def load_inputs(con: duckdb.DuckDBPyConnection) -> ReportInputs:
    """Read every table the report shows from the warehouse (a missing table reads as empty)."""

    def q(sql: str, kind: str) -> pd.DataFrame:
        try:
            return con.execute(sql).df()
        except duckdb.CatalogException:
            return pd.DataFrame(columns=COLUMNS[kind])

    return ReportInputs(
        points=q("SELECT * FROM clean.points ORDER BY family, n_params, n_tokens", "points"),
        fits=q("SELECT * FROM fits.chinchilla ORDER BY family", "fits"),
        bootstrap=q("SELECT * FROM fits.bootstrap ORDER BY family, sample", "bootstrap"),
        plans=q("SELECT * FROM plans.allocations ORDER BY family, compute", "plans"),
        exclusions=q("SELECT * FROM clean.exclusions ORDER BY family, run_id, kind", "exclusions"),
        quarantine=q("SELECT * FROM raw.quarantine ORDER BY source_path, location", "quarantine"),
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
                        quarantine=norm(inputs.quarantine, "quarantine"),
                        comparison=norm(inputs.comparison, "comparison"))
