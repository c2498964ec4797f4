"""The cost of the forecast stage's per-family input hash (lib/forecast_inputs.py) on a large warehouse.

    python benchmarks/bench_forecast_inputs.py --rows 10000000 100000000

A synthetic warehouse (the table registry's layouts): 1,000 families x 100 runs, ``rows`` clean.steps rows
spread evenly over the runs (losses and LRs varying per row, so the columns do not compress to constants),
the same rows in raw.metrics from one source file per run (raw.files), one clean.points / clean.runs /
raw.runs row per run and one fits.chinchilla row per family. Times :func:`update_sources` + :func:`family_keys`
on the first forecast (every source looked up in raw.metrics), with nothing changed (median of 3), and after
one new source file of 1,000 rows; next to a DuckDB aggregate that hashes the five columns the forecast reads
of every clean.steps row by family (what the hash would cost if it read clean.steps). The machine load is
printed with the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from bench_curves import uptime
from scaling_pipeline.lib import tables as T
from scaling_pipeline.lib.forecast_inputs import family_keys, update_sources

FAMILIES, RUNS_PER_FAMILY = 1000, 100
_SCAN = ("SELECT family, count(*), sum(hash(run_id, step, train_loss, eval_loss, lr)::HUGEINT) FROM clean.steps "
         "GROUP BY family")


def build(db: Path, rows: int) -> None:
    """The synthetic warehouse (module docstring)."""
    runs = FAMILIES * RUNS_PER_FAMILY
    per_run = rows // runs
    with duckdb.connect(str(db)) as con:
        for table in (T.CLEAN_RUNS, T.CLEAN_STEPS, T.CLEAN_POINTS, T.CLEAN_EXCLUSIONS):
            T.replace(con, table)
        T.create(con, T.RAW_RUNS, T.RAW_METRICS, T.RAW_FILES, T.FITS_CHINCHILLA)
        con.execute("""INSERT INTO clean.steps
                       SELECT 'r' || (i // ?), 'f' || (i // ? // ?), i % ?, (i % ?) * 1024.0,
                              2.0 + 1.0 / (1 + i % ?) + 0.01 * ((hash(i) % 1000) / 1000.0), NULL,
                              3e-4 * (1 + (i % ?)) / ?, (i % ?) * 0.1
                       FROM range(?) t(i)""",
                    [per_run, per_run, RUNS_PER_FAMILY, per_run, per_run, per_run, per_run, per_run, per_run,
                     per_run * runs])
        con.execute("""INSERT INTO raw.metrics SELECT *, 0, 'metrics/' || family || '/' || run_id || '.csv'
                       FROM clean.steps""")
        con.execute("""INSERT INTO raw.files (source_path, sha256, ingested_at)
                       SELECT DISTINCT source_path, md5(source_path), TIMESTAMP '2026-12-03' FROM raw.metrics""")
        con.execute("""INSERT INTO clean.runs (run_id, family, n_params, tokens_planned, total_steps, schedule, lr)
                       SELECT 'r' || i, 'f' || (i // ?), 1e6 * (1 + i % 10), 1e9, ?, 'cosine', 3e-4
                       FROM range(?) t(i)""",
                    [RUNS_PER_FAMILY, per_run, runs])
        con.execute("INSERT INTO raw.runs (run_id, family, extra, source_path) SELECT run_id, family, '{}', 'runs.csv' "
                    "FROM clean.runs")
        con.execute("""INSERT INTO clean.points (run_id, family, n_params, n_tokens, loss)
                       SELECT run_id, family, n_params, tokens_planned, 2.5 FROM clean.runs""")
        con.execute("""INSERT INTO fits.chinchilla (family, status, E, A, B, alpha, beta)
                       SELECT DISTINCT family, 'ok', 1.7, 400, 1000, 0.34, 0.28 FROM clean.runs""")


def timed(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def keys(con: duckdb.DuckDBPyConnection) -> None:
    update_sources(con)
    family_keys(con, level=0.9)


def add_source(con: duckdb.DuckDBPyConnection) -> None:
    """One new source file: a new run of family f7 with 1,000 logged steps."""
    con.execute("""INSERT INTO raw.metrics (run_id, family, step, train_loss, lr, source_path)
                   SELECT 'new', 'f7', i, 3.0, 3e-4, 'metrics/f7/new.csv' FROM range(1000) t(i)""")
    con.execute("INSERT INTO raw.files (source_path, sha256, ingested_at) VALUES ('metrics/f7/new.csv', 'x', now())")
    con.execute("INSERT INTO clean.runs (run_id, family) VALUES ('new', 'f7')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000])
    args = parser.parse_args()
    print(f"`uptime` before: `{uptime()}`")
    print("| clean.steps rows | warehouse MB | first forecast s | no change s | one new source file s | "
          "hashing every clean.steps row s |")
    print("|---|---|---|---|---|---|")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "big.duckdb"
            build(db, rows)
            with duckdb.connect(str(db)) as con:
                T.create(con, T.FORECASTS_SOURCES)
                first = timed(lambda: keys(con), repeat=1)
                same = timed(lambda: keys(con))
                add_source(con)
                new = timed(lambda: keys(con), repeat=1)
                scan = timed(lambda: con.execute(_SCAN).fetchall())
            print(f"| {rows:,} | {db.stat().st_size / 1e6:,.0f} | {first:.2f} | {same:.3f} | {new:.3f} | {scan:.2f} |",
                  flush=True)
    print(f"`uptime` after: `{uptime()}`")


if __name__ == "__main__":
    main()
