"""Plan stage: compute-optimal allocation tables per family (``plans`` schema)."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from scaling_pipeline.lib.warehouse import plan_families

from .fit import FITS_CHINCHILLA

PLANS_ALLOCATIONS = dg.AssetKey(["plans", "allocations"])


@dg.asset(key=PLANS_ALLOCATIONS, deps=[FITS_CHINCHILLA], group_name="plan", kinds={"duckdb"}, pool="duckdb_writer")
def allocations(duckdb: DuckDBResource) -> dg.MaterializeResult:
    """N*, D*, tokens/param and predicted loss (with bootstrap intervals) for a grid of FLOP budgets."""
    with duckdb.get_connection() as con:
        plans = plan_families(con)
    preview = plans[plans.compute.isin([1e21, 1e23, 1e25])][["family", "compute", "n_params", "n_tokens", "loss"]]
    return dg.MaterializeResult(metadata={
        "rows": len(plans), "families": int(plans.family.nunique()),
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False, floatfmt=".4g"))})
