"""Benchmark ingest against DuckDB's own raw scan of the same metric files.

    python benchmarks/bench_ingest.py                          # 1e6 and 1e7 rows, csv/jsonl/parquet
    python benchmarks/bench_ingest.py --rows 1e8 --format csv  # 100M logged steps
    python benchmarks/bench_ingest.py --rows 1e6 --format csv --exact   # also the line-by-line path
    python benchmarks/bench_ingest.py --rows 1e8 --data /tmp/logs   # keep (and reuse) the generated logs
    python benchmarks/bench_ingest.py --rows 1e8 --repeat 2          # fastest of two runs each, order alternated

For each (rows, format): the simulator at scale (``simulate.write_scale_logs``: ``--families``
ladders of ``--runs-per-family`` runs, default 1,000 x 100, the rows spread evenly over the runs;
one metric file per run, ``metrics/<family>/<run>.<format>``, plus a ``runs.csv`` manifest) is
written, then, each in a fresh child process and a fresh DuckDB file (ingest with the pipeline's
DuckDB memory limit, ``--memory-limit``; raw with DuckDB's default, 80% of RAM: at 1GB its
``read_json`` runs out of memory on 100,000 small files):

* **ingest**: ``scaling_pipeline.lib.ingest.ingest(root, con)`` end to end (discovery, sha256,
  reading, typing, quarantine bookkeeping, commit), metric files and the manifest;
* **raw**: ``CREATE TABLE t AS SELECT * FROM read_csv/read_json/read_parquet('<root>/metrics/*/*')``
  over the same metric files (auto-detected types, one parallel scan, no hive columns);
* **exact** (``--exact``): ingest with the fast path switched off (line by line).

Peak RSS: ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` seen by a small intermediate process
that waits for the measured one. Nothing is estimated; numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MEMORY_LIMIT = "1GB"  # the pipeline's (scaling_pipeline/defs/resources.py)
RAW_READER = {"csv": "read_csv", "jsonl": "read_json", "parquet": "read_parquet"}


def child(task: str, root: Path, fmt: str, db: Path, memory_limit: str | None = None) -> None:
    """Runs in the measured process; prints a JSON line."""
    import duckdb

    from scaling_pipeline.lib.formats import common
    from scaling_pipeline.lib.ingest import ingest

    con = duckdb.connect(str(db))
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    start = time.perf_counter()  # imports and process start-up are not timed
    info: dict = {}
    if task == "raw":
        pattern = str(root / "metrics" / "*" / f"*.{fmt}")
        con.execute(f"CREATE TABLE t AS SELECT * FROM {RAW_READER[fmt]}(?, hive_partitioning=false)", [pattern])
        info["rows"] = con.execute("SELECT count(*) FROM t").fetchone()[0]
    else:
        common.FAST_PATH = task == "ingest"
        summary = ingest(root, con)
        info["rows"] = summary.metric_rows
        info["rejections"] = summary.rejections
        info["methods"] = dict(common.READ_METHODS)
    con.close()
    info["seconds"] = time.perf_counter() - start
    print(json.dumps(info))


def measure(task: str, root: Path, fmt: str, db: Path, memory_limit: str | None = None) -> dict:
    """Run ``child`` in a grandchild; the intermediate reports its RUSAGE_CHILDREN peak RSS."""
    code = (
        "import resource, subprocess, sys, json\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "if p.returncode: sys.stderr.write(p.stderr); sys.exit(p.returncode)\n"
        "info = json.loads(p.stdout.strip().splitlines()[-1])\n"
        "info['max_rss_kib'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps(info))\n"
    )
    cmd = [sys.executable, "-c", code, sys.executable, __file__, "--child", task, str(root), fmt]
    cmd.append(str(db))
    cmd += ["--memory-limit", memory_limit or "none"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def logs(root: Path, fmt: str, rows: int, families: int, runs_per_family: int) -> tuple[int, int]:
    """(rows, files) of the simulator's logs at ``root``, written unless a finished earlier run left
    them there (its ``written.json``)."""
    from scaling_pipeline.lib.simulate import write_scale_logs

    done = root.parent / "written.json"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        wrote = write_scale_logs(root, fmt, n_families=families, runs_per_family=runs_per_family, rows=rows)
        done.write_text(json.dumps({"rows": wrote.n_rows, "files": wrote.n_files}))
    written = json.loads(done.read_text())
    return written["rows"], written["files"]


def machine() -> str:
    import duckdb

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {mem:.1f} GiB RAM, "
        f"{platform.platform()}, python {platform.python_version()}, duckdb {duckdb.__version__}, "
        f"load average {load[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e6,1e7")
    parser.add_argument("--format", default="csv,jsonl,parquet")
    parser.add_argument("--families", type=int, default=1000)
    parser.add_argument("--runs-per-family", type=int, default=100)
    parser.add_argument("--exact", action="store_true", help="also time the line-by-line path")
    parser.add_argument("--repeat", type=int, default=1, help="time ingest and raw this many times each, "
                        "alternating which goes first; the table shows the fastest of each and the peak RSS")
    parser.add_argument("--child", nargs=4, metavar=("TASK", "ROOT", "FMT", "DB"))
    parser.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT,
                        help="DuckDB memory_limit of both connections (default: the pipeline's, "
                        f"{DEFAULT_MEMORY_LIMIT}; 'none': DuckDB's own, 80%% of RAM)")
    parser.add_argument("--workdir", default=None, help="where to generate files (default: temp)")
    parser.add_argument("--data", default=None, help="keep the generated logs in DATA/<format>_<rows>/ "
                        "and reuse them on the next run (default: generated in a temp folder, then removed)")
    args = parser.parse_args()
    if args.memory_limit == "none":
        args.memory_limit = None
    if args.child:
        task, root, fmt, db = args.child
        child(task, Path(root), fmt, Path(db), args.memory_limit)
        return
    limit = f"; ingest DuckDB memory_limit {args.memory_limit}" if args.memory_limit else ""
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}{limit}; "
          f"{args.families} families x {args.runs_per_family} runs")
    header = (
        "| rows | format | files | ingest s | ingest rows/s | raw s | raw rows/s | ratio "
        "| ingest peak RSS | raw peak RSS | path |" + (" each run |" if args.repeat > 1 else "")
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    base = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=args.workdir))
    try:
        for rows in (int(float(r)) for r in args.rows.split(",")):
            for fmt in args.format.split(","):
                root = base / f"{fmt}_{rows}_{args.families}x{args.runs_per_family}" / "logs"
                rows, n_files = logs(root, fmt, rows, args.families, args.runs_per_family)
                results: dict[str, dict] = {}
                for repeat in range(args.repeat):  # alternate the order: the page cache favours the second
                    tasks = ["ingest", "raw"][:: -1 if repeat % 2 else 1]
                    tasks += ["exact"] if args.exact and fmt != "parquet" and not repeat else []
                    for task in tasks:
                        db = root.parent / f"{task}.duckdb"
                        # raw DuckDB runs out of memory at 1GB on 100,000 small JSON files: its own default
                        got = measure(task, root, fmt, db, None if task == "raw" else args.memory_limit)
                        db.unlink(missing_ok=True)
                        Path(f"{db}.wal").unlink(missing_ok=True)
                        best = results.setdefault(task, got)
                        best["max_rss_kib"] = max(best["max_rss_kib"], got["max_rss_kib"])
                        best["all"] = best.get("all", []) + [got["seconds"]]
                        best["seconds"] = min(best["seconds"], got["seconds"])
                ing, raw = results["ingest"], results["raw"]
                assert ing["rows"] == rows == raw["rows"] and not ing["rejections"], (ing, raw)
                methods = ", ".join(f"{k} {v}" for k, v in sorted(ing["methods"].items()))
                print(
                    f"| {rows:,} | {fmt} | {n_files} | {ing['seconds']:.2f} | "
                    f"{rows / ing['seconds']:,.0f} | {raw['seconds']:.2f} | "
                    f"{rows / raw['seconds']:,.0f} | {raw['seconds'] / ing['seconds']:.0%} | "
                    f"{ing['max_rss_kib'] / 2**20:.2f} GiB | "
                    f"{raw['max_rss_kib'] / 2**20:.2f} GiB | {methods or 'native'} |"
                    + (f" ingest {', '.join(f'{t:.1f}' for t in ing['all'])} s; raw "
                       f"{', '.join(f'{t:.1f}' for t in raw['all'])} s |" if args.repeat > 1 else ""),
                    flush=True,
                )
                if "exact" in results:
                    ex = results["exact"]
                    print(
                        f"| {rows:,} | {fmt} (exact path only) | {n_files} | {ex['seconds']:.2f} | "
                        f"{rows / ex['seconds']:,.0f} | | | {raw['seconds'] / ex['seconds']:.0%} | "
                        f"{ex['max_rss_kib'] / 2**20:.2f} GiB | | "
                        f"{', '.join(f'{k} {v}' for k, v in sorted(ex['methods'].items()))} |"
                        + (" |" if args.repeat > 1 else ""),
                        flush=True,
                    )
                if not args.data:
                    shutil.rmtree(root.parent)
    finally:
        if not args.data:
            shutil.rmtree(base, ignore_errors=True)
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
