"""Benchmark ingest against DuckDB's own raw scan of the same metric files.

    python benchmarks/bench_ingest.py                          # 1e6 and 1e7 rows, csv/jsonl/parquet
    python benchmarks/bench_ingest.py --rows 1e6 --format csv --exact   # also the line-by-line path

For each (rows, format): metric files are generated with DuckDB ``COPY`` (``--rows-per-file`` rows
per run file, columns run_id, family, step, tokens, train_loss, eval_loss (every 100th step),
lr, wall_time), then, each in a fresh child process and a fresh DuckDB file:

* **ingest**: ``scaling_pipeline.lib.ingest.ingest(root, con)`` end to end (discovery, sha256,
  reading, typing, quarantine bookkeeping, commit);
* **raw**: ``CREATE TABLE t AS SELECT * FROM read_csv/read_json/read_parquet('<root>/*.<ext>')``;
* **exact** (``--exact``): ingest with the fast path switched off (line by line, as before).

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
EXT = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
COPY_FORMAT = {
    "csv": "(FORMAT csv, HEADER true)",
    "jsonl": "(FORMAT json)",
    "parquet": "(FORMAT parquet)",
}
RAW_READER = {"csv": "read_csv", "jsonl": "read_json", "parquet": "read_parquet"}


def generate(root: Path, fmt: str, rows: int, per_file: int) -> None:
    import duckdb

    root.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    n_files = max(1, -(-rows // per_file))
    for i in range(n_files):
        n = min(per_file, rows - i * per_file)
        query = (
            f"SELECT 'run_{i:05d}' AS run_id, 'fam{i % 6}' AS family, s AS step, "
            f"s * 4096.0 AS tokens, 2.0 + 10.0 / (s + 1) + random() * 0.01 AS train_loss, "
            f"CASE WHEN s % 100 = 0 THEN 2.1 + random() END AS eval_loss, "
            f"3e-4 * (1 - s / {n + 1}) AS lr, s * 0.25 AS wall_time FROM range(1, {n + 1}) t(s)"
        )
        con.execute(f"COPY ({query}) TO '{root / f'run_{i:05d}.{EXT[fmt]}'}' {COPY_FORMAT[fmt]}")
    con.close()


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
        pattern = str(root / f"*.{EXT[fmt]}")
        con.execute(f"CREATE TABLE t AS SELECT * FROM {RAW_READER[fmt]}(?)", [pattern])
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
    if memory_limit:
        cmd += ["--memory-limit", memory_limit]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--rows-per-file", type=int, default=100_000)
    parser.add_argument("--exact", action="store_true", help="also time the line-by-line path")
    parser.add_argument("--child", nargs=4, metavar=("TASK", "ROOT", "FMT", "DB"))
    parser.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT,
                        help="DuckDB memory_limit of both connections (default: the pipeline's, "
                        f"{DEFAULT_MEMORY_LIMIT}; 'none': DuckDB's own, 80%% of RAM)")
    parser.add_argument("--workdir", default=None, help="where to generate files (default: temp)")
    args = parser.parse_args()
    if args.memory_limit == "none":
        args.memory_limit = None
    if args.child:
        task, root, fmt, db = args.child
        child(task, Path(root), fmt, Path(db), args.memory_limit)
        return
    limit = f"; DuckDB memory_limit {args.memory_limit}" if args.memory_limit else ""
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}{limit}")
    header = (
        "| rows | format | files | ingest s | ingest rows/s | raw s | raw rows/s | ratio "
        "| ingest peak RSS | raw peak RSS | path |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    base = Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=args.workdir))
    try:
        for rows in (int(float(r)) for r in args.rows.split(",")):
            for fmt in args.format.split(","):
                root = base / f"{fmt}_{rows}" / "logs"
                generate(root, fmt, rows, args.rows_per_file)
                n_files = len(list(root.iterdir()))
                results = {}
                tasks = ["ingest", "raw"] + (["exact"] if args.exact and fmt != "parquet" else [])
                for task in tasks:
                    db = root.parent / f"{task}.duckdb"
                    results[task] = measure(task, root, fmt, db, args.memory_limit)
                    db.unlink(missing_ok=True)
                    Path(f"{db}.wal").unlink(missing_ok=True)
                ing, raw = results["ingest"], results["raw"]
                assert ing["rows"] == rows == raw["rows"], (ing, raw)
                methods = ", ".join(f"{k} {v}" for k, v in sorted(ing["methods"].items()))
                print(
                    f"| {rows:,} | {fmt} | {n_files} | {ing['seconds']:.2f} | "
                    f"{rows / ing['seconds']:,.0f} | {raw['seconds']:.2f} | "
                    f"{rows / raw['seconds']:,.0f} | {raw['seconds'] / ing['seconds']:.0%} | "
                    f"{ing['max_rss_kib'] / 2**20:.2f} GiB | "
                    f"{raw['max_rss_kib'] / 2**20:.2f} GiB | {methods or 'native'} |",
                    flush=True,
                )
                if "exact" in results:
                    ex = results["exact"]
                    print(
                        f"| {rows:,} | {fmt} (exact path only) | {n_files} | {ex['seconds']:.2f} | "
                        f"{rows / ex['seconds']:,.0f} | | | {raw['seconds'] / ex['seconds']:.0%} | "
                        f"{ex['max_rss_kib'] / 2**20:.2f} GiB | | "
                        f"{', '.join(f'{k} {v}' for k, v in sorted(ex['methods'].items()))} |",
                        flush=True,
                    )
                shutil.rmtree(root.parent)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
