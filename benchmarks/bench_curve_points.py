"""Curve-law points against the full grid: one long run per size plus its curve-law points, fitted with
L(N, D), compared with the fit to every grid run (benchmarks/README.md, "Curve-law points").

    PYTHONPATH=. python benchmarks/bench_curve_points.py [--data ../shared/data/gpu_ladder] [--sim]

On the real ladder (``--data``; its runs are cosine to their own end, so each size's longest run is the
source) and on the simulator with one MPL per size (``--sim``, known truth). Per family: the exponents of the
full-grid fit and of the cheap fit (sources + curve-law points), and the backtest: each curve-law point
against the observed run at the same (N, D) (``observed_loss``), relative error and its ratio to loss_sd.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaling_pipeline.lib.cleaning import CleanConfig, clean  # noqa: E402
from scaling_pipeline.lib.curves.points import read_curve_points, source_runs  # noqa: E402
from scaling_pipeline.lib.fitting.chinchilla import fit_chinchilla  # noqa: E402
from scaling_pipeline.lib.formats import write_logs  # noqa: E402
from scaling_pipeline.lib.ingest import ingest  # noqa: E402
from scaling_pipeline.lib.simulate import SimConfig, simulate_ladder  # noqa: E402


def _exponents(frame: pd.DataFrame) -> tuple[float, float]:
    fit = fit_chinchilla(frame.n_params.to_numpy(), frame.n_tokens.to_numpy(), frame.loss.to_numpy())
    return fit.params["alpha"], fit.params["beta"]


def compare(con: duckdb.DuckDBPyConnection, label: str, min_tokens: float = 0.0) -> list[dict]:
    """Per family: full-grid and cheap exponents, and the backtest of the curve-law points."""
    points = con.execute("SELECT * FROM clean.points ORDER BY family, run_id").df()
    t0 = time.perf_counter()
    made = read_curve_points(con, points)
    seconds = time.perf_counter() - t0
    virtual, long = made.points, source_runs(points)
    out = []
    for family, grid in points.groupby("family"):
        grid = grid[grid.n_tokens >= min_tokens]
        v = virtual[(virtual.family == family) & (virtual.n_tokens >= min_tokens)]
        src = long[(long.family == family) & (long.n_tokens >= min_tokens)]
        full, cheap = _exponents(grid), _exponents(pd.concat([src, v], ignore_index=True))
        pairs = v[v.observed_loss.notna()]
        rel = (pairs.loss / pairs.observed_loss - 1).to_numpy(float)
        z = ((pairs.loss - pairs.observed_loss) / pairs.loss_sd).to_numpy(float)
        out.append(dict(data=label, family=family, min_tokens=min_tokens, grid_runs=len(grid), sources=len(src),
                        curve_points=len(v), alpha_full=full[0], beta_full=full[1], alpha_cheap=cheap[0],
                        beta_cheap=cheap[1], d_alpha=cheap[0] - full[0], d_beta=cheap[1] - full[1],
                        backtest_pairs=len(rel), backtest_rms=float(np.sqrt(np.mean(rel**2))) if len(rel) else None,
                        backtest_max=float(np.abs(rel).max()) if len(rel) else None,
                        backtest_rms_z=float(np.sqrt(np.mean(z**2))) if len(z) else None, seconds=seconds))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    reference = Path(os.environ.get("SCALING_REFERENCE_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
    parser.add_argument("--data", type=Path, default=reference / "gpu_ladder")
    parser.add_argument("--sim", action="store_true", help="also the simulator (shared_size_law, 3 families)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.data.exists():
            con = duckdb.connect(str(Path(tmp) / "gpu.duckdb"))
            ingest(args.data, con)
            clean(con, CleanConfig())
            rows += compare(con, "gpu_ladder") + compare(con, "gpu_ladder", min_tokens=2e6)
        if args.sim:
            cfg = SimConfig(n_sizes=5, n_budgets=5, isoflop_flops=None, inject_faults=False, shared_size_law=True,
                            schedules=("wsd",), log_points=80)
            ladder = simulate_ladder(0, 3, cfg)
            write_logs("csv", Path(tmp) / "sim", ladder.runs, ladder.metrics)
            con = duckdb.connect(str(Path(tmp) / "sim.duckdb"))
            ingest(Path(tmp) / "sim", con)
            clean(con, CleanConfig())
            rows += compare(con, "simulator (wsd, shared_size_law)")
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".3f"))
    print(json.dumps(rows, default=float))


if __name__ == "__main__":
    main()
