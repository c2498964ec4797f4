"""Each family's plan table as files beside ``index.html``: ``plans_<family-slug>.csv`` and ``.parquet``, the
family's rows of ``plans.allocations`` with every column (FLOPs, parameters, tokens, nats/token), linked from
the page under the table they hold."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .family import Family
from .inputs import COLUMNS


def plan_files(f: Family) -> tuple[str, str]:
    """The CSV and Parquet file names of ``f``'s plan table."""
    return f"plans_{f.slug}.csv", f"plans_{f.slug}.parquet"


def plan_exports(f: Family, out: Path) -> str:
    """Write ``f``'s published plan rows as CSV and Parquet into ``out``; return the links (empty when the page
    shows no plan table for ``f``)."""
    if not (f.publishable and len(f.plans)):
        return ""
    extra = [c for c in f.plans.columns if c not in COLUMNS["plans"]]
    table = pd.DataFrame(f.plans[COLUMNS["plans"] + extra]).reset_index(drop=True)
    csv_name, parquet_name = plan_files(f)
    for name in (csv_name, parquet_name):
        if (out / name).resolve().parent != out.resolve():  # the slug cannot escape, but never write outside
            raise ValueError(f"refusing to write {name} outside {out}")
    table.to_csv(out / csv_name, index=False)
    table.to_parquet(out / parquet_name, index=False)
    return (f"<p class=exports>This table as <a href='{csv_name}' download>CSV</a> or "
            f"<a href='{parquet_name}' download>Parquet</a> ({len(table)} rows; FLOPs, parameters, tokens, "
            "nats/token; _lo/_hi: 95% bootstrap interval).</p>")
