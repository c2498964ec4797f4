"""Fit stage at scale: ``fit_families`` over many families (fit + bootstrap + backtest each).

    python benchmarks/bench_fit_families.py [--families 1000] [--boot 200] [--jobs N] [--without-comparison] [--write]

Each family is a known-truth ladder (7 sizes 1e7…2e9 × 5 budgets 5…160 tokens/param, 0.3% log-normal
noise on the final loss) written straight into ``clean.points`` of a temporary DuckDB warehouse; then
the fit stage runs exactly as the pipeline runs it (``scaling_pipeline.lib.warehouse.fit_families``, families
across ``--jobs`` worker processes, default one per available core).
``--without-comparison`` runs the stage as it was before the per-family model comparison (the Chinchilla fit,
bootstrap and backtest only; no ``fits.comparison`` rows): the baseline the comparison's cost is measured against.
Prints wall time, time per family and how many families' exponents landed within 0.03 of truth as a table
row; ``--write`` appends it to the table in benchmarks/README.md ("Fit stage at scale").
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from scaling_pipeline.lib import warehouse
from scaling_pipeline.lib.warehouse import FitSettings, fit_families

_FIT_FAMILY = warehouse.fit_family


def _fit_family_without_comparison(family: str, pts: pd.DataFrame, s: FitSettings, *, n_jobs: int | None = None):
    """The per-family unit without the model comparison (runs in the pool's workers, which import this module)."""
    warehouse.compare_forms = lambda points, given=None: []
    row, boot, _ = _FIT_FAMILY(family, pts, s, n_jobs=n_jobs)
    return row, boot, None


def _points(n_families: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    sizes = np.geomspace(1e7, 2e9, 7)
    tpps = np.geomspace(5, 160, 5)
    rows, truths = [], []
    for f in range(n_families):
        t = dict(family=f"fam{f:04d}", E=rng.uniform(1.6, 2.2), A=rng.uniform(300, 1800), B=rng.uniform(400, 4000),
                 alpha=rng.uniform(0.28, 0.45), beta=rng.uniform(0.28, 0.45))
        truths.append(t)
        for n in sizes:
            for tpp in tpps:
                d = n * tpp
                loss = (t["E"] + t["A"] / n ** t["alpha"] + t["B"] / d ** t["beta"]) * np.exp(rng.normal(0, 0.003))
                rows.append(dict(run_id=f"{t['family']}-{n:.3g}-{tpp:.3g}", family=t["family"], n_params=n,
                                 n_tokens=d, flops=6 * n * d, loss=loss, loss_source="final_eval",
                                 final_step=1000, unique_tokens=None))
    return pd.DataFrame(rows), pd.DataFrame(truths).set_index("family")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", type=int, default=1000)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=None, help="processes (default: one per available core)")
    ap.add_argument("--without-comparison", action="store_true", help="baseline: no per-family model comparison")
    ap.add_argument("--write", action="store_true", help="append the result to benchmarks/README.md")
    args = ap.parse_args()
    points, truths = _points(args.families, args.seed)
    if args.without_comparison:
        warehouse.fit_family = _fit_family_without_comparison
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "w.duckdb"))
        con.execute("CREATE SCHEMA clean")
        con.execute("CREATE TABLE clean.points AS SELECT * FROM points")
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        summary = fit_families(con, FitSettings(bootstrap=args.boot), n_jobs=args.jobs)
        wall = time.perf_counter() - t0
        fits = con.execute("SELECT family, alpha, beta FROM fits.chinchilla WHERE status = 'ok'").df().set_index("family")
        compared = con.execute("SELECT count(*) FROM fits.comparison").fetchone()[0]
        t1 = time.perf_counter()
        again = fit_families(con, FitSettings(bootstrap=args.boot), n_jobs=args.jobs)
        rerun = time.perf_counter() - t1
    err = np.maximum((fits.alpha - truths.alpha.loc[fits.index]).abs(), (fits.beta - truths.beta.loc[fits.index]).abs())
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    where = f"across {summary.workers} worker processes" if summary.workers > 1 else "in one process"
    row = (f"| {stamp} | {args.families} | 35 | {args.boot} | {where} | {wall:.0f} s ({wall / 60:.1f} min) | "
           f"{wall / args.families * 1e3:.0f} ms | ≤ 30 min | {int((err <= 0.03).sum())} of {len(fits)} "
           f"(worst {err.max():.3f}) | {rerun:.1f} s, {len(again.unchanged)} unchanged | "
           f"{load0:.2f} → {os.getloadavg()[0]:.2f} |")
    print(f"{'without' if args.without_comparison else 'with'} the model comparison ({compared} rows); "
          f"fitted {len(summary.fitted)}, failed {len(summary.failed)}; {os.cpu_count()} CPUs, {platform.platform()}, "
          "one BLAS thread per fit")
    print("| measured (UTC) | families | points each | bootstrap | families fitted | wall (fit + bootstrap + backtest) "
          "| per family | goal | α, β within 0.03 of truth | rerun, nothing changed | load before → after |")
    print(row)
    if args.write:  # append the row to the table of the "Fit stage at scale" section
        readme = Path(__file__).with_name("README.md")
        lines = readme.read_text().splitlines()
        i = next(k for k in range(lines.index("## Fit stage at scale"), len(lines)) if lines[k].startswith("|"))
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        lines.insert(i, row)
        readme.write_text("\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
