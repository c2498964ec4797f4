"""Benchmark the Chinchilla fitter on the Epoch AI data (240 runs).

    python benchmarks/bench_fit.py            # print results as a Markdown table
    python benchmarks/bench_fit.py --write    # ... and store them in benchmarks/README.md

Measures (wall clock, this machine): the global fit (median of repeats, in-process); a
straightforward baseline, L-BFGS-B with analytic gradients from each of Epoch's 4,500 grid
starts (single process, one BLAS thread); and a 1,000-resample bootstrap (2 processes and 1).
Reads the data from $SCALING_REFERENCE_DATA or ../shared/data.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
from scipy.optimize import minimize
from threadpoolctl import threadpool_info, threadpool_limits

from scaling_pipeline.lib.fitting.chinchilla import fit_chinchilla
from scaling_pipeline.lib.fitting.resample import bootstrap_chinchilla

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SCALING_REFERENCE_DATA", ROOT.parent / "shared" / "data"))
README = ROOT / "benchmarks" / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
REFERENCE_OBJECTIVE = 0.0010182740178  # best known optimum (shared/data README, section 1)


def load_epoch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    runs = pd.read_csv(DATA / "chinchilla_epoch" / "runs.csv")
    runs = runs[runs["epoch_excluded"].astype(str).str.lower() != "true"]
    return runs["n_params"].to_numpy(), runs["n_tokens"].to_numpy(), runs["loss"].to_numpy()


def epoch_grid_baseline(N, D, L, delta: float = 1e-3) -> dict:
    """Epoch's protocol as published: L-BFGS-B (scipy defaults) from every grid start on
    ``(a, b, e, alpha, beta)``, keeping the lowest objective among successful starts."""
    x, y, l = np.log(N), np.log(D), np.log(L)

    def fg(p):
        a, b, e, al, be = p
        t1, t2 = a - al * x, b - be * y
        m = np.maximum(np.maximum(t1, t2), e)
        e1, e2, e3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
        s = e1 + e2 + e3
        r = m + np.log(s) - l
        c = np.clip(r, -delta, delta)
        q = c / s
        g1, g2 = q * e1, q * e2
        grad = np.array([g1.sum(), g2.sum(), q @ e3, -(g1 @ x), -(g2 @ y)])
        return float(c @ (r - 0.5 * c)), grad

    grid = itertools.product(
        np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
        np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5),
    )
    t0 = time.perf_counter()
    results = [minimize(fg, p0, jac=True, method="L-BFGS-B") for p0 in grid]
    seconds = time.perf_counter() - t0
    ok = [r for r in results if r.success]
    best = min(ok, key=lambda r: r.fun)
    f = np.array([r.fun for r in results])
    return {
        "seconds": seconds,
        "objective": float(best.fun),
        "alpha": float(best.x[3]),
        "beta": float(best.x[4]),
        "n_starts": len(results),
        "n_success": len(ok),
        "n_within_1e-6": int(np.sum(f <= best.fun * (1 + 1e-6))),
    }


def machine() -> dict:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown",
    ) if Path("/proc/cpuinfo").exists() else platform.processor()
    blas = [
        f"{i['internal_api']} {i['version']} ({i['num_threads']} threads by default)"
        for i in threadpool_info() if i["user_api"] == "blas"
    ]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": f"{model}, {cores} cores available",
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy / scipy": f"{np.__version__} / {scipy.__version__}",
        "BLAS": "; ".join(sorted(set(blas))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="fits timed for the median")
    parser.add_argument("--write", action="store_true", help=f"update {README.name}")
    args = parser.parse_args()
    N, D, L = load_epoch()
    info = machine()
    for k, v in info.items():
        print(f"{k}: {v}")
    load_before = os.getloadavg()

    fit_chinchilla(N, D, L)  # warm-up (imports, caches)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fit = fit_chinchilla(N, D, L)
        times.append(time.perf_counter() - t0)
    fit_median = statistics.median(times)
    print(f"fit_chinchilla: median {fit_median * 1e3:.1f} ms over {args.repeats}, "
          f"objective {fit.objective:.13g}")

    with threadpool_limits(1, user_api="blas"):
        base = epoch_grid_baseline(N, D, L)
    print(f"4,500-start L-BFGS-B: {base['seconds']:.1f} s, objective {base['objective']:.13g}")

    boot_times = {}
    for n_jobs in (2, 1):
        t0 = time.perf_counter()
        boot = bootstrap_chinchilla(N, D, L, n_boot=1000, seed=0, n_jobs=n_jobs)
        boot_times[n_jobs] = time.perf_counter() - t0
        print(f"bootstrap 1000, {n_jobs} process(es): {boot_times[n_jobs]:.2f} s")
    load_after = os.getloadavg()

    ci = ", ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in boot.ci.items())
    rows = [
        ("Global fit (`fit_chinchilla`, profile grid + L-BFGS-B polish)",
         f"{fit_median * 1e3:.1f} ms (median of {args.repeats}; min {min(times) * 1e3:.1f} ms)",
         f"{fit.objective:.13g}"),
        (f"Baseline: L-BFGS-B from Epoch's {base['n_starts']:,} grid starts, analytic gradients",
         f"{base['seconds']:.1f} s ({base['seconds'] / fit_median:,.0f}× the global fit)",
         f"{base['objective']:.13g} ({base['n_success']:,} `success`, "
         f"{base['n_within_1e-6']:,} within 1e-6 of it)"),
        ("Bootstrap, 1,000 resamples, 2 processes",
         f"{boot_times[2]:.2f} s", "includes the full fit and process start-up"),
        ("Bootstrap, 1,000 resamples, 1 process", f"{boot_times[1]:.2f} s", ci),
    ]
    table = "\n".join(
        ["| what | wall time | objective / notes |", "|---|---|---|"]
        + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    )
    env = "\n".join(f"* {k}: {v}" for k, v in info.items())
    block = (
        f"{START}\nMeasured {time.strftime('%Y-%m-%d %H:%M %Z')} with "
        f"`python benchmarks/bench_fit.py` on:\n\n{env}\n"
        f"* load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        "(other processes on the machine slow every number down)\n"
        f"* BLAS limited to 1 thread inside the fits (threadpoolctl)\n\n{table}\n\n"
        f"Reference optimum (shared data README): {REFERENCE_OBJECTIVE}; "
        f"fit α = {fit.params['alpha']:.6f}, β = {fit.params['beta']:.6f}, "
        f"E = {fit.params['E']:.5f}, A = {fit.params['A']:.2f}, B = {fit.params['B']:.1f}.\n{END}"
    )
    print(block)
    if args.write:
        write_block(README, START, END, block)


def write_block(readme: Path, start: str, end: str, block: str) -> None:
    """Replace the text from ``start`` to ``end`` in ``readme`` by ``block`` (which carries both markers)."""
    head, rest = readme.read_text().split(start, 1)
    readme.write_text(head + block + rest.split(end, 1)[1])
    print(f"wrote {readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
