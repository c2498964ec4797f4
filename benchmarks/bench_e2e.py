"""End-to-end benchmark: the default demo materialized through Dagster, twice.

    python benchmarks/bench_e2e.py [--bootstrap 200] [--seed 0]

Writes the default demo (``write_demo(out, seed)``) to a temp dir, then materializes every asset
and check of the real code location (``dagster.materialize([*ASSETS, *CHECKS], ...)``, in-process,
ephemeral instance) into a fresh DuckDB file: first run (goal <= 60 s), then a second run with no
new logs (goal <= 10 s; must refit nothing: the fit asset's "refit" metadata is printed). Per-step
durations come from the run's STEP_START / STEP_SUCCESS event timestamps.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def run_once(logs: Path, db: Path, reports: Path, n_boot: int) -> tuple[float, dict, object]:
    import dagster as dg

    from scaling_pipeline.definitions import ASSETS, CHECKS
    from scaling_pipeline.defs.fit import fit_run_config
    from scaling_pipeline.defs.resources import build_resources

    instance = dg.DagsterInstance.ephemeral()
    run_config = fit_run_config(n_boot)
    run_config["loggers"]["console"]["config"]["log_level"] = "WARNING"  # quiet console
    start = time.perf_counter()
    result = dg.materialize(
        [*ASSETS, *CHECKS],
        resources=build_resources(logs, db, reports),
        instance=instance,
        run_config=run_config,
    )
    wall = time.perf_counter() - start
    assert result.success
    steps: dict[str, dict[str, float]] = defaultdict(dict)
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_START":
            steps[event.step_key]["start"] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            steps[event.step_key]["end"] = entry.timestamp
    durations = {k: v["end"] - v["start"] for k, v in steps.items() if {"start", "end"} <= v.keys()}
    fit_meta = {}
    for mat in result.get_asset_materialization_events():
        m = mat.step_materialization_data.materialization
        if m.asset_key.path == ["fits", "chinchilla"]:
            fit_meta = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    return wall, durations, fit_meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", dest="n_boot", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from scaling_pipeline.lib.simulate import write_demo

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; nproc "
        f"{len(os.sched_getaffinity(0))}, {mem:.1f} GiB RAM, {platform.platform()}, "
        f"python {platform.python_version()}; load average {os.getloadavg()[0]:.2f}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        work = Path(tmp)
        logs, db, reports = work / "logs", work / "warehouse.duckdb", work / "reports"
        start = time.perf_counter()
        demo = write_demo(logs, seed=args.seed)
        print(f"# demo written in {time.perf_counter() - start:.1f} s: {demo}")
        rows = []
        for label in ("first run", "second run (no new logs)"):
            wall, durations, fit = run_once(logs, db, reports, args.n_boot)
            rows.append((label, wall, durations, fit))
        keys = sorted({k for _, _, d, _ in rows for k in d}, key=lambda k: -rows[0][2].get(k, 0))
        print("| run | wall s | refit | unchanged |")
        print("|---|---|---|---|")
        for label, wall, _, fit in rows:
            print(f"| {label} | {wall:.1f} | {fit.get('refit')} | {fit.get('unchanged')} |")
        print()
        print("| step | first run s | second run s |")
        print("|---|---|---|")
        for key in keys:
            a, b = (r[2].get(key, float("nan")) for r in rows)
            print(f"| {key} | {a:.2f} | {b:.2f} |")
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
