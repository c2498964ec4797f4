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
flight).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import duckdb

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

_TABLE = """SELECT cut, count(*) AS runs, avg(abs(rel_error)) AS mean_abs, median(abs(rel_error)) AS median_abs,
                   max(abs(rel_error)) AS max_abs, avg(error) AS bias, avg(covered::INT) AS coverage,
                   avg((hi - lo) / actual) AS width
            FROM forecasts.backtest GROUP BY cut ORDER BY cut"""


def run(logs: Path, db: Path) -> dict:
    with duckdb.connect(str(db)) as con:
        ingest(logs, con)
        clean(con)
        fit_families(con, FitSettings(bootstrap=0))
        t0 = time.perf_counter()
        summary = forecast_families(con, every_family=True)
        seconds = time.perf_counter() - t0
        table = con.execute(_TABLE).fetchall()
        live = con.execute("SELECT run_id, progress, forecast, lo, hi, law, flag FROM forecasts.in_flight "
                           "ORDER BY run_id").fetchall()
        excluded = con.execute("SELECT run_id, reason FROM forecasts.exclusions ORDER BY run_id").fetchall()
    return {"seconds": seconds, "table": table, "live": live, "summary": summary, "excluded": excluded}


def markdown(name: str, r: dict) -> str:
    lines = [f"**{name}**: forecast stage {r['seconds']:.1f} s; {r['summary'].forecasts} runs in flight forecast, "
             f"off track: {', '.join(r['summary'].off_track) or 'none'}; excluded: "
             f"{', '.join(f'{a} ({b})' for a, b in r['excluded']) or 'none'}.", "",
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
        results["simulator (2 families x 35 runs + 3 in flight, seed 0)"] = run(Path(tmp) / "logs", Path(tmp) / "sim.duckdb")
        if DATA.is_dir():
            results["CPU ladder (gpu_ladder, 2 families)"] = run(DATA, Path(tmp) / "ladder.duckdb")
    info["`uptime` after"] = f"`{uptime()}`"
    body = "\n\n".join(markdown(name, r) for name, r in results.items())
    block = "\n".join([START, f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
                       "`python benchmarks/bench_forecasts.py` on:", "",
                       *(f"* {k}: {v}" for k, v in info.items()), "", body, END])
    print(block)
    if args.write:
        write_block(README, START, END, block + "\n")


if __name__ == "__main__":
    main()
