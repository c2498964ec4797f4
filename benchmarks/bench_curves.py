"""Benchmark the loss-curve fits on the Multi-Power Law paper's curves (3 sizes x 9 schedules).

    python benchmarks/bench_curves.py            # print results as a Markdown table
    python benchmarks/bench_curves.py --write    # ... and store them in benchmarks/README.md
    python benchmarks/bench_curves.py --coverage 16 --boot 40   # known-truth coverage of the intervals

Per size: fit the MPL on cosine_24000, constant_24000 and wsdcon_9 (their schedules from schedules.json) and
predict the six other curves, as in the paper's protocol. Measures the fit's wall time (median of repeats,
in-process, after one warm-up fit), its CPU time, a bootstrap of --boot refits, and the test-set errors
against the published ones. Reads $SCALING_REFERENCE_DATA or ../shared/data. The machine load is recorded
with the numbers (`uptime`): the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench_fit import machine, write_block  # the fit benchmark's machine description and README writer
from scaling_pipeline.lib.curves.csv import read_curve, read_schedules
from scaling_pipeline.lib.curves.fit import curve_errors, fit_curves

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SCALING_REFERENCE_DATA", ROOT.parent / "shared" / "data")) / "multipower_curves"
README = ROOT / "benchmarks" / "README.md"
START, END = "<!-- curves-results:start -->", "<!-- curves-results:end -->"
PUBLISHED = {"25M": (0.110, 0.41), "100M": (0.142, 0.58), "400M": (0.168, 0.99)}  # %, the data's README


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def bench_size(size: str, ref: dict, schedules: dict, repeats: int, n_boot: int, form: str) -> dict:
    curves = {n: read_curve(DATA / size / f"{n}.csv", schedules[n]) for n in ref["train"] + ref["test"]}
    train = [curves[n] for n in ref["train"]]
    fit_curves(train, form)  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fit = fit_curves(train, form)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    t0 = time.perf_counter()
    boot = fit_curves(train, form, n_boot=n_boot) if n_boot else None
    boot_seconds = time.perf_counter() - t0
    errors = np.array([curve_errors(fit.law, curves[n]) for n in ref["test"]])
    return {"size": size, "wall": statistics.median(wall), "wall_min": min(wall), "cpu": statistics.median(cpu),
            "boot_seconds": boot_seconds, "boot": boot, "fit": fit, "mean": 100 * errors[:, 0].mean(),
            "mean_of_max": 100 * errors[:, 1].mean()}


def coverage(draws: int, n_boot: int, rho: float, noise: float = 1e-3) -> tuple[str, str]:
    """Known-truth coverage of the MPL's 95% intervals (profile likelihood for the parameters; for the held-out
    losses ``predict_interval``'s band, the range of the loss over the same likelihood region): the tests'
    simulated curves (the published 100M MPL; 12k-step cosine, WSD and constant runs logged every 100 steps)
    with AR(1) noise in log loss; hits per parameter and for the loss of two held-out schedules at their middle
    and last point, as a Markdown row and its header."""
    from tests.test_curves import TRUTH, ar1_noise, simulate  # the tests' simulator

    rng = np.random.default_rng(0)
    held = [simulate(TRUTH, "two_stage"), simulate(TRUTH, "long_cosine", last=24000)]
    hits = np.zeros(len(TRUTH.params) + 2 * len(held))
    for d in range(draws):
        train = [simulate(TRUTH, kind) for kind in ("cosine", "wsd", "constant")]
        train = [replace(c, loss=c.loss * np.exp(ar1_noise(len(c.loss), noise, rho, rng))) for c in train]
        fit = fit_curves(train, "mpl", n_boot=n_boot, seed=d)
        row = [fit.ci[n][0] <= getattr(TRUTH, n) <= fit.ci[n][1] for n in TRUTH.params]
        for c in held:
            at = np.array([len(c.steps) // 2, len(c.steps) - 1])
            lo, hi = fit.predict_interval(c.steps[at], c.lr)
            row += list((lo <= c.loss[at]) & (c.loss[at] <= hi))
        hits += row
    names = [*TRUTH.params, "two_stage mid", "two_stage end", "long_cosine mid", "long_cosine end"]
    return (f"| ρ = {rho} | {draws} | {n_boot} | " + " | ".join(f"{int(h)}" for h in hits) + " |",
            "| noise | draws | refits | " + " | ".join(names) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fits timed per size for the median")
    parser.add_argument("--boot", type=int, default=20, help="bootstrap refits timed once per size (0: none)")
    parser.add_argument("--form", default="mpl", choices=["mpl", "lr_annealing"])
    parser.add_argument("--write", action="store_true", help=f"update {README.name}")
    parser.add_argument("--coverage", type=int, default=0, metavar="DRAWS",
                        help="instead: known-truth coverage of the MPL's intervals over DRAWS draws")
    args = parser.parse_args()
    if args.coverage:
        rows = [coverage(args.coverage, args.boot, rho) for rho in (0.0, 0.8)]
        header = rows[0][1]
        print("\n".join([header, "|---" * (header.count("|") - 1) + "|", *(r[0] for r in rows)]))
        return
    ref = json.loads((DATA / "reference_values.json").read_text())
    schedules = read_schedules(DATA / "schedules.json")
    info = machine()
    before = uptime()
    print(before)
    rows = []
    for size in ref["sizes"]:
        r = bench_size(size, ref, schedules, args.repeats, args.boot, args.form)
        print(f"{size}: fit {r['wall']:.2f} s (cpu {r['cpu']:.2f} s), test mean {r['mean']:.3f}%, "
              f"mean of max {r['mean_of_max']:.3f}%", flush=True)
        rows.append(r)
    after = uptime()
    print(after)
    lines = ["| size | fit wall (median of %d) | fit CPU | bootstrap, %d refits | test mean rel. error (published) | "
             "mean of per-curve max (published) | objective |" % (args.repeats, args.boot),
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        pub_mean, pub_max = PUBLISHED[r["size"]]
        lines.append(f"| {r['size']} | {r['wall']:.2f} s (min {r['wall_min']:.2f}) | {r['cpu']:.2f} s | "
                     f"{r['boot_seconds']:.1f} s | {r['mean']:.3f}% ({pub_mean:.3f}%) | "
                     f"{r['mean_of_max']:.2f}% ({pub_max:.2f}%) | {r['fit'].objective:.4g} |")
    params = "\n".join(f"* {r['size']}: " + ", ".join(f"{k} {v:.4g}" for k, v in r["fit"].params.items())
                       + ("; 95% intervals " + ", ".join(f"{k} [{lo:.3g}, {hi:.3g}]"
                                                         for k, (lo, hi) in r["boot"].ci.items())
                          if r["boot"] else "") for r in rows)
    env = "\n".join(f"* {k}: {v}" for k, v in info.items())
    block = (f"{START}\nMeasured {time.strftime('%Y-%m-%d %H:%M %Z')} with `python benchmarks/bench_curves.py "
             f"--form {args.form}` on:\n\n{env}\n* `uptime` before: `{before}`\n* `uptime` after: `{after}`\n\n"
             + "\n".join(lines) + f"\n\nFitted parameters (absolute LR units):\n\n{params}\n{END}")
    print(block)
    if args.write:
        write_block(README, START, END, block)


if __name__ == "__main__":
    main()
