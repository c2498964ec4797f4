"""What the report reads: the warehouse tables it shows, as DataFrames with their expected columns."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from scaling_pipeline.lib.tables import (CLEAN_EXCLUSIONS, CLEAN_POINTS, FITS_BOOTSTRAP, FITS_CHINCHILLA,
                                         LAW_PARAMS, PLANS_ALLOCATIONS, RAW_QUARANTINE)

PARAMS = LAW_PARAMS  # the law's parameters, columns of fits.chinchilla and fits.bootstrap

COLUMNS = {  # per table: its columns (a missing one reads as empty)
    kind: table.names for kind, table in (
        ("points", CLEAN_POINTS), ("fits", FITS_CHINCHILLA), ("bootstrap", FITS_BOOTSTRAP),
        ("plans", PLANS_ALLOCATIONS), ("exclusions", CLEAN_EXCLUSIONS), ("quarantine", RAW_QUARANTINE))
}


@dataclass(frozen=True)
class ReportInputs:
    points: pd.DataFrame
    fits: pd.DataFrame
    bootstrap: pd.DataFrame
    plans: pd.DataFrame
    exclusions: pd.DataFrame
    quarantine: pd.DataFrame


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
                        quarantine=norm(inputs.quarantine, "quarantine"))
