"""Plan stage: compute-optimal allocation tables per family (``plans`` schema)."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from scaling_pipeline.lib import tables as T
from scaling_pipeline.lib.warehouse import plan_families

from .clean import rows_check
from .fit import FITS_CHINCHILLA
from .pool import POOL
from .resources import warehouse
from .tables import asset_key, table_metadata, table_spec

PLANS_ALLOCATIONS = asset_key(T.PLANS_ALLOCATIONS)
_SPEC = table_spec(T.PLANS_ALLOCATIONS)


@dg.asset(key=PLANS_ALLOCATIONS, deps=[FITS_CHINCHILLA], group_name=_SPEC.group_name, kinds={"duckdb"},
          metadata=_SPEC.metadata, pool=POOL)
def allocations(duckdb: DuckDBResource) -> dg.MaterializeResult:
    """N*, D*, tokens/param and predicted loss (with bootstrap intervals) for a grid of FLOP budgets."""
    with warehouse(duckdb) as con:
        plans = plan_families(con)
        meta = table_metadata(con, T.PLANS_ALLOCATIONS)
    preview = plans[plans.compute.isin([1e21, 1e23, 1e25])][["family", "compute", "n_params", "n_tokens", "loss"]]
    return dg.MaterializeResult(metadata={
        **meta, "families": int(plans.family.nunique()),
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False, floatfmt=".4g"))})


@dg.asset_check(asset=PLANS_ALLOCATIONS, blocking=True)
def plans_consistent(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Every plan spends its budget exactly (C = 6·N·D), is positive and finite, predicts a loss above the
    family's floor E, and its interval (when present) contains the point estimate."""
    return rows_check(duckdb, """SELECT p.family, p.compute, p.n_params, p.n_tokens, p.loss, f.E
                                 FROM plans.allocations p JOIN fits.chinchilla f USING (family)
                                 WHERE NOT (p.n_params > 0 AND p.n_tokens > 0 AND isfinite(p.loss) AND p.loss > f.E
                                            AND abs(6 * p.n_params * p.n_tokens / p.compute - 1) < 1e-9)
                                    OR (p.n_params_lo IS NOT NULL AND NOT (p.n_params_lo <= p.n_params * (1 + 1e-9)
                                                                            AND p.n_params <= p.n_params_hi * (1 + 1e-9)))
                                 ORDER BY p.family, p.compute""",
                      "inconsistent plan rows")
