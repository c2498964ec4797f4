"""Backtest the forecasts for runs in flight (lib.forecast) on the simulator and on the CPU ladder.

    python benchmarks/bench_forecasts.py            # print results as Markdown
    python benchmarks/bench_forecasts.py --write    # ... and store them in benchmarks/README.md

Simulator: a 2-family ladder (7 sizes x 5 budgets, cosine/WSD/constant-with-cool-down/two-stage schedules,
three runs in flight per family, the last planted 0.15 nats off track) written as CSV logs, ingested,
cleaned, fitted, then forecast. CPU ladder ($SCALING_REFERENCE_DATA/gpu_ladder: LR logged at every logged
step, cosine schedules): ingested as it is. On both: completed runs not used in the family's curve fit, cut
at 25/50/75% of their steps, forecast at their planned end and compared with their final loss; the error
table, the coverage of the 90% intervals and their mean width (hi - lo, relative to the final loss), plus the
wall time of the forecast stage (every family backtested here; the asset backtests only families with a run in
flight). Small families (every completed run in the family's curve fit: the backtest is cross-fitted,
lib/forecast_backtest.py): the CPU ladder with all 31/32 runs in the curve fit, and the simulator with 3 sizes x 3
budgets, seeds 0-2, where the runs in flight's 90% intervals are also checked against their noise-free final loss.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import pandas as pd

from bench_curves import uptime
from bench_fit import machine, write_block
from scaling_pipeline.lib.cleaning import clean
from scaling_pipeline.lib.forecast import forecast_families
from scaling_pipeline.lib.ingest import ingest
from scaling_pipeline.lib.simulate import SimConfig, write_demo
from scaling_pipeline.lib.warehouse import FitSettings, fit_families

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SCALING_REFERENCE_DATA", ROOT.parent / "shared" / "data")) / "gpu_ladder"
README = ROOT / "benchmarks" / "README.md"
START, END = "<!-- forecasts-results:start -->", "<!-- forecasts-results:end -->"
SIM = SimConfig(inject_faults=False, isoflop_flops=None, schedules=("cosine", "wsd", "constant_cooldown", "two_stage"),
                in_flight=(0.3, 0.5, 0.7), off_track=0.15)
SMALL = replace(SIM, n_sizes=3, n_budgets=3)  # 9 completed runs per family: all in the family's curve fit
SMALL_SEEDS = (0, 1, 2)

_TABLE = """SELECT cut, count(*) AS runs, avg(abs(rel_error)) AS mean_abs, median(abs(rel_error)) AS median_abs,
                   max(abs(rel_error)) AS max_abs, avg(error) AS bias, avg(covered::INT) AS coverage,
                   avg((hi - lo) / actual) AS width
            FROM forecasts.backtest GROUP BY cut ORDER BY cut"""


def run(logs: Path, db: Path, **settings) -> dict:
    with duckdb.connect(str(db)) as con:
        ingest(logs, con)
        clean(con)
        fit_families(con, FitSettings(bootstrap=0))
        t0 = time.perf_counter()
        summary = forecast_families(con, every_family=True, **settings)
        seconds = time.perf_counter() - t0
        table = con.execute(_TABLE).fetchall()
        live = con.execute("SELECT run_id, progress, forecast, lo, hi, law, flag FROM forecasts.in_flight "
                           "ORDER BY run_id").fetchall()
        excluded = con.execute("SELECT run_id, reason FROM forecasts.exclusions ORDER BY run_id").fetchall()
    return {"seconds": seconds, "table": table, "live": live, "summary": summary, "excluded": excluded}


def small_ladders(tmp: Path) -> tuple[dict, str]:
    """The small simulated ladder over SMALL_SEEDS: the backtest rows of every seed in one table, and a line on the
    runs in flight's intervals against their noise-free final loss (law + planted offset)."""
    seconds, held, widths, rows = 0.0, 0, [], []
    with duckdb.connect() as pooled:
        for seed in SMALL_SEEDS:
            logs = tmp / f"small{seed}"
            demo = write_demo(logs, seed=seed, fmt="csv", n_families=2, config=SMALL)
            truth = json.loads(demo.truth_path.read_text())
            r = run(logs, tmp / f"small{seed}.duckdb")
            seconds += r["seconds"]
            for rid, _, f, lo, hi, _, _ in r["live"]:
                actual = truth["in_flight"][rid]["law"] + truth["in_flight"][rid]["offset"]
                held += lo <= actual <= hi
                widths.append((hi - lo) / actual)
            with duckdb.connect(str(tmp / f"small{seed}.duckdb")) as con:
                rows.append(con.execute("SELECT cut, rel_error, error, covered, hi, lo, actual FROM forecasts.backtest"
                                        ).df())
        pooled.register("backtest", pd.concat(rows))
        table = pooled.execute(_TABLE.replace("forecasts.backtest", "backtest")).fetchall()
    line = (f"runs in flight: {held} of {len(widths)} 90% intervals hold the noise-free final loss, mean width "
            f"{100 * sum(widths) / len(widths):.1f}%; forecast stage {seconds / len(SMALL_SEEDS):.1f} s per seed")
    return {"seconds": seconds / len(SMALL_SEEDS), "table": table, "live": [], "summary": None, "excluded": []}, line


def markdown(name: str, r: dict, line: str | None = None) -> str:
    lines = [f"**{name}**: " + (line or (
             f"forecast stage {r['seconds']:.1f} s; {r['summary'].forecasts} runs in flight forecast, "
             f"off track: {', '.join(r['summary'].off_track) or 'none'}; excluded: "
             f"{', '.join(f'{a} ({b})' for a, b in r['excluded']) or 'none'}")) + ".", "",
             "| cut | runs | mean abs. rel. error | median | max | mean error (nats) | 90% interval coverage | "
             "mean interval width |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {cut:.0%} | {n} | {100 * m:.2f}% | {100 * med:.2f}% | {100 * mx:.2f}% | {bias:+.4f} | {cov:.2f} | "
              f"{100 * w:.1f}% |" for cut, n, m, med, mx, bias, cov, w in r["table"]]
    if r["live"]:
        lines += ["", "| run in flight | progress | forecast [90%] | law | flag |", "|---|---|---|---|---|"]
        lines += [f"| {rid} | {p:.0%} | {f:.3f} [{lo:.3f}, {hi:.3f}] | {law:.3f} | {flag} |"
                  for rid, p, f, lo, hi, law, flag in r["live"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update {README.name}")
    args = parser.parse_args()
    info = machine()
    info["`uptime` before"] = f"`{uptime()}`"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_demo(Path(tmp) / "logs", seed=0, fmt="csv", n_families=2, config=SIM)
        results["simulator (2 families x 35 runs + 3 in flight, seed 0)"] = (
            run(Path(tmp) / "logs", Path(tmp) / "sim.duckdb"), None)
        name = "small simulator (2 families x 9 runs + 3 in flight, seeds 0-2, cross-fitted)"
        results[name] = small_ladders(Path(tmp))
        if DATA.is_dir():
            results["CPU ladder (gpu_ladder, 2 families)"] = (run(DATA, Path(tmp) / "ladder.duckdb"), None)
            results["CPU ladder, every completed run in the curve fit (cross-fitted)"] = (
                run(DATA, Path(tmp) / "ladder_all.duckdb", max_family_curves=100), None)
    info["`uptime` after"] = f"`{uptime()}`"
    body = "\n\n".join(markdown(name, *r) for name, r in results.items())
    block = "\n".join([START, f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
                       "`python benchmarks/bench_forecasts.py` on:", "",
                       *(f"* {k}: {v}" for k, v in info.items()), "", body, END])
    print(block)
    if args.write:
        write_block(README, START, END, block + "\n")


if __name__ == "__main__":
    main()
