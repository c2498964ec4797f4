"""Curve-law points against the full grid: one long run per size plus its curve-law points, fitted with
L(N, D), compared with the fit to every grid run (benchmarks/README.md, "Curve-law points").

    PYTHONPATH=. python benchmarks/bench_curve_points.py [--data ../shared/data/gpu_ladder] [--sim] [--grid-noise]

On the real ladder (``--data``; its runs are cosine to their own end, so each size's longest run is the
source) and on the simulator with one MPL per size (``--sim``, known truth). Per family: the exponents of the
full-grid fit, of the cheap fit (sources + curve-law points) and of the sources plus the observed runs at the
backtested points (what perfect points would give there), and the backtest: each curve-law point against the
observed run at the same (N, D) (``observed_loss``), relative error and its ratio to loss_sd.

``--grid-noise``: how well the full-grid fit itself determines the exponents, the scale the 0.03 goal has to be
read against: the fit refitted without each grid run in turn (leave-one-run-out: the largest move of alpha and
beta, how many runs move either by more than 0.03, and each dropped run's relative error as predicted by the fit
without it, also at the backtest pairs' observed runs: the full-grid law's own error where the curve-law points
are backtested), the median move when every grid loss is multiplied by exp(N(0, s²)), s = 0.5% and 1%
(:data:`NOISE_DRAWS` draws each), and the runs' scatter: the pooled residual sd of log loss around a quadratic in
log D per size (sizes with at least 5 runs; an upper bound on the run-to-run noise, as the quadratic may misfit).
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


NOISE_DRAWS = 10  # --grid-noise: refits per noise level
NOISE_LEVELS = (0.005, 0.01)  # --grid-noise: relative noise put on every grid loss


def _exponents(frame: pd.DataFrame, loss: np.ndarray | None = None) -> tuple[float, float]:
    fit = fit_chinchilla(frame.n_params.to_numpy(), frame.n_tokens.to_numpy(),
                         frame.loss.to_numpy() if loss is None else loss)
    return fit.params["alpha"], fit.params["beta"]


def grid_noise(grid: pd.DataFrame, backtested: set[str], seed: int = 0) -> dict:
    """How far the full-grid exponents move without one run, or with s·N(0, 1) relative noise on every loss;
    and the fit-without-each-run's relative error at that run (all runs, and the ``backtested`` ones)."""
    grid = grid.reset_index(drop=True)
    full = np.array(_exponents(grid))
    moves, errors = [], []
    for i in range(len(grid)):
        rest = grid.drop(index=i)
        fit = fit_chinchilla(rest.n_params.to_numpy(), rest.n_tokens.to_numpy(), rest.loss.to_numpy())
        moves.append([fit.params["alpha"] - full[0], fit.params["beta"] - full[1]])
        errors.append(float(fit.law.predict(grid.n_params[i], grid.n_tokens[i])) / grid.loss[i] - 1)
    moves, errors = np.abs(np.array(moves)), np.array(errors)
    at_pairs = errors[grid.run_id.isin(backtested).to_numpy()]
    out = dict(loo_max_d_alpha=moves[:, 0].max(), loo_max_d_beta=moves[:, 1].max(),
               loo_runs_over_003=int((moves.max(axis=1) > 0.03).sum()), loo_rms_err=float(np.sqrt(np.mean(errors**2))),
               loo_rms_err_at_pairs=float(np.sqrt(np.mean(at_pairs**2))) if len(at_pairs) else None)
    rng = np.random.default_rng(seed)
    for s in NOISE_LEVELS:
        d = np.abs([np.array(_exponents(grid, grid.loss.to_numpy() * np.exp(rng.normal(0.0, s, len(grid))))) - full
                    for _ in range(NOISE_DRAWS)])
        out[f"noise{s:g}_median_d_alpha"], out[f"noise{s:g}_median_d_beta"] = np.median(d, axis=0)
    squares, dof = 0.0, 0
    for _, size in grid.groupby("n_params"):
        if len(size) >= 5:
            x, y = np.log(size.n_tokens.to_numpy(float)), np.log(size.loss.to_numpy(float))
            r = y - np.polyval(np.polyfit(x, y, 2), x)
            squares, dof = squares + float(r @ r), dof + len(size) - 3
    out["size_scatter"] = float(np.sqrt(squares / dof)) if dof else None
    return out


def compare(con: duckdb.DuckDBPyConnection, label: str, min_tokens: float = 0.0, noise: bool = False) -> list[dict]:
    """Per family: full-grid and cheap exponents, and the backtest of the curve-law points (with ``noise``,
    also :func:`grid_noise` of the full grid)."""
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
        # perfect points where they can be checked: the sources plus the observed runs the points stand in for
        oracle = _exponents(pd.concat([src, grid[grid.run_id.isin(pairs.observed_run)]], ignore_index=True))
        details = made.sources[(made.sources.family == family) & (made.sources.status == "ok")].detail
        choice = "points from" + details.iloc[0].rsplit("; points from", 1)[-1] if len(details) else None
        rel = (pairs.loss / pairs.observed_loss - 1).to_numpy(float)
        z = ((pairs.loss - pairs.observed_loss) / pairs.loss_sd).to_numpy(float)
        out.append(dict(data=label, family=family, min_tokens=min_tokens, grid_runs=len(grid), sources=len(src),
                        curve_points=len(v), alpha_full=full[0], beta_full=full[1], alpha_cheap=cheap[0],
                        beta_cheap=cheap[1], d_alpha=cheap[0] - full[0], d_beta=cheap[1] - full[1],
                        alpha_observed_pairs=oracle[0], beta_observed_pairs=oracle[1],
                        backtest_pairs=len(rel), backtest_rms=float(np.sqrt(np.mean(rel**2))) if len(rel) else None,
                        backtest_max=float(np.abs(rel).max()) if len(rel) else None,
                        backtest_rms_z=float(np.sqrt(np.mean(z**2))) if len(z) else None, seconds=seconds,
                        choice=choice,
                        **(grid_noise(grid, set(pairs.observed_run)) if noise else {})))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    reference = Path(os.environ.get("SCALING_REFERENCE_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
    parser.add_argument("--data", type=Path, default=reference / "gpu_ladder")
    parser.add_argument("--sim", action="store_true", help="also the simulator (shared_size_law, 3 families)")
    parser.add_argument("--grid-noise", action="store_true",
                        help="also how well the full grid determines the exponents (leave-one-run-out, noise)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.data.exists():
            con = duckdb.connect(str(Path(tmp) / "gpu.duckdb"))
            ingest(args.data, con)
            clean(con, CleanConfig())
            rows += (compare(con, "gpu_ladder", noise=args.grid_noise)
                     + compare(con, "gpu_ladder", min_tokens=2e6, noise=args.grid_noise))
        if args.sim:
            cfg = SimConfig(n_sizes=5, n_budgets=5, isoflop_flops=None, inject_faults=False, shared_size_law=True,
                            schedules=("wsd",), log_points=80)
            ladder = simulate_ladder(0, 3, cfg)
            write_logs("csv", Path(tmp) / "sim", ladder.runs, ladder.metrics)
            con = duckdb.connect(str(Path(tmp) / "sim.duckdb"))
            ingest(Path(tmp) / "sim", con)
            clean(con, CleanConfig())
            rows += compare(con, "simulator (wsd, shared_size_law)", noise=args.grid_noise)
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".3f"))
    print(json.dumps(rows, default=float))


if __name__ == "__main__":
    main()
