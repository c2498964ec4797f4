"""Fault injection on real processes and real DuckDB files (no mocks).

* a process SIGKILLed in the middle of ``ingest`` or of a whole ``scaling-pipeline run`` leaves a
  warehouse that the next run repairs: the tables equal a clean run's;
* a second writer on a locked warehouse fails with a message naming the file and the lock;
* hostile names (quotes, spaces, unicode, ``../``, SQL) in files, run ids and families are stored
  verbatim and nothing is written outside the configured db / reports folders; links leading out of
  the log folder are listed as skipped and nothing behind them reaches the warehouse or the report.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, materialize_all
from tests.test_inputs import SECRET

FIT_PARAMS = ("E", "A", "B", "alpha", "beta")


# --------------------------------------------------------------------------------------- helpers


def _env() -> dict[str, str]:
    """Subprocess environment: ephemeral Dagster instance (nothing written to $DAGSTER_HOME), Agg
    backend, one BLAS thread, and this repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "SCALING_DB", "SCALING_LOGS",
                                                            "SCALING_REPORTS")}
    env.update(MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    return env


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("scaling-pipeline")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "scaling_pipeline.cli"]


def _kill_after(cmd: list[str], should_kill, *, cwd: Path, timeout: float = 60) -> tuple[list[str], int]:
    """Start ``cmd`` (stdout+stderr merged), read its lines and SIGKILL it as soon as
    ``should_kill(line)`` is true. Returns (lines read, return code); fails if it never matched."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            env=_env(), start_new_session=True)
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if should_kill(line):
                proc.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail("the process ended before the kill point:\n" + "\n".join(lines[-30:]))
        return lines, proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=timeout)
        proc.stdout.close()


def _nth_match(needle: str, n: int):
    seen = 0

    def should_kill(line: str) -> bool:
        nonlocal seen
        seen += needle in line
        return seen >= n

    return should_kill


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """Sorted reprs (NaN-safe, order-independent)."""
    return sorted(map(repr, con.execute(sql).fetchall()))


def _raw_snapshot(db: Path) -> dict[str, list[str]]:
    """raw.* without the ingestion timestamps."""
    with duckdb.connect(str(db), read_only=True) as con:
        return {
            "files": _rows(con, "SELECT * EXCLUDE (ingested_at) FROM raw.files"),
            "metrics": _rows(con, "SELECT * FROM raw.metrics"),
            "runs": _rows(con, "SELECT * FROM raw.runs"),
            "quarantine": _rows(con, "SELECT * EXCLUDE (quarantined_at) FROM raw.quarantine"),
        }


def _assert_raw_consistent(db: Path) -> None:
    """No (source_path, record) twice; every raw.files row's counts equal the rows stored for it;
    no rows without a raw.files row."""
    with duckdb.connect(str(db), read_only=True) as con:
        dupes = con.execute("""SELECT source_path, record, count(*) FROM raw.metrics
                               GROUP BY ALL HAVING count(*) > 1 LIMIT 5""").fetchall()
        assert not dupes, f"duplicate metric records: {dupes}"
        bad = con.execute("""
            SELECT f.source_path, f.n_metric_rows, (SELECT count(*) FROM raw.metrics m WHERE m.source_path = f.source_path),
                   f.n_run_rows, (SELECT count(*) FROM raw.runs r WHERE r.source_path = f.source_path),
                   f.n_rejections, (SELECT count(*) FROM raw.quarantine q WHERE q.source_path = f.source_path)
            FROM raw.files f""").fetchall()
        bad = [r for r in bad if r[1] != r[2] or r[3] != r[4] or r[5] != r[6]]
        assert not bad, f"raw.files counts differ from the stored rows: {bad[:5]}"
        orphans = con.execute("""SELECT DISTINCT source_path FROM (
                                     SELECT source_path FROM raw.metrics UNION ALL SELECT source_path FROM raw.runs
                                     UNION ALL SELECT source_path FROM raw.quarantine)
                                 WHERE source_path NOT IN (SELECT source_path FROM raw.files)""").fetchall()
        assert not orphans, f"rows without a raw.files entry: {orphans[:5]}"


def _pipeline_snapshot(db: Path) -> dict:
    with duckdb.connect(str(db), read_only=True) as con:
        q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
        fits = {row[0]: row[1:] for row in con.execute(
            f"SELECT family, status, n_points, {', '.join(FIT_PARAMS)} FROM fits.chinchilla").fetchall()}
        return {"raw.metrics": q("SELECT count(*) FROM raw.metrics"), "raw.files": q("SELECT count(*) FROM raw.files"),
                "raw.quarantine": q("SELECT count(*) FROM raw.quarantine"),
                "clean.points": q("SELECT count(*) FROM clean.points"), "fits": fits}


def _assert_same_fits(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for family, (status, n, *params) in want.items():
        g_status, g_n, *g_params = got[family]
        assert (g_status, g_n) == (status, n), family
        for name, a, b in zip(FIT_PARAMS, g_params, params, strict=True):
            assert a == pytest.approx(b, rel=1e-6, nan_ok=True), f"{family}.{name}: {a} != {b}"


# ------------------------------------------------------------------------------ SIGKILL mid-ingest


@pytest.fixture(scope="module")
def csv_logs(tmp_path_factory) -> Path:
    """2 families in CSV: 84 metric files + a manifest, with the demo's file faults."""
    from scaling_pipeline.lib.simulate import write_demo

    out = tmp_path_factory.mktemp("fault_logs") / "logs"
    write_demo(out, seed=0, fmt="csv", n_families=2)
    return out


@pytest.fixture(scope="module")
def clean_ingest(csv_logs, tmp_path_factory) -> Path:
    from scaling_pipeline.lib.ingest import ingest

    db = tmp_path_factory.mktemp("clean_ingest") / "clean.duckdb"
    with duckdb.connect(str(db)) as con:
        ingest(csv_logs, con)
    return db


@pytest.mark.parametrize("kill_after", [1, 30, 80])
def test_sigkill_mid_ingest_then_rerun_equals_a_clean_ingest(csv_logs, clean_ingest, tmp_path, kill_after):
    from scaling_pipeline.lib.ingest import ingest

    db = tmp_path / "warehouse.duckdb"
    script = textwrap.dedent(f"""
        import duckdb
        from scaling_pipeline.lib.ingest import ingest
        # small batches (2-3 files per transaction), so that the kill lands between batches
        ingest({str(csv_logs)!r}, duckdb.connect({str(db)!r}), progress=lambda m: print(m, flush=True),
               batch_bytes=25_000)
        print("INGEST DONE", flush=True)
    """)
    lines, rc = _kill_after([sys.executable, "-c", script], _nth_match("] csv", kill_after), cwd=tmp_path)
    assert rc == -signal.SIGKILL, lines[-5:]
    assert "INGEST DONE" not in lines

    # The killed process's committed units are intact (WAL replayed on open), the rest absent.
    _assert_raw_consistent(db)
    with duckdb.connect(str(db), read_only=True) as con:
        done = con.execute("SELECT count(*) FROM raw.files").fetchone()[0]
    assert kill_after - 1 <= done < 85, f"{done} units committed after a kill at progress line {kill_after}"

    with duckdb.connect(str(db)) as con:
        summary = ingest(csv_logs, con)
    assert summary.units_unchanged == done and summary.units_ingested == 85 - done
    _assert_raw_consistent(db)
    assert _raw_snapshot(db) == _raw_snapshot(clean_ingest)


def test_sigkill_mid_ingest_transaction_rolls_back(csv_logs, clean_ingest, tmp_path):
    """A process killed between BEGIN and COMMIT of a unit (held there on purpose) leaves none of that
    unit's rows behind."""
    db = tmp_path / "warehouse.duckdb"
    script = textwrap.dedent(f"""
        import sys, duckdb
        from scaling_pipeline.lib.ingest import ingest
        con = duckdb.connect({str(db)!r})
        ingest({str(csv_logs)!r}, con)
        con.begin()
        path = con.execute("SELECT source_path FROM raw.files WHERE n_metric_rows > 0 ORDER BY 1 LIMIT 1").fetchone()[0]
        for table in ("raw.metrics", "raw.runs", "raw.quarantine", "raw.files"):
            con.execute(f"DELETE FROM {{table}} WHERE source_path = ?", [path])
        con.execute("INSERT INTO raw.metrics SELECT * FROM raw.metrics WHERE source_path <> ? LIMIT 500", [path])
        print("IN TRANSACTION", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=_env(), cwd=tmp_path)
    try:
        assert proc.stdout.readline().strip() == "IN TRANSACTION"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
        proc.stdout.close()
    _assert_raw_consistent(db)
    assert _raw_snapshot(db) == _raw_snapshot(clean_ingest)


# ------------------------------------------------------------------------- SIGKILL mid CLI run


@pytest.fixture(scope="module")
def clean_cli_run(csv_logs, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("clean_cli_run")
    proc = subprocess.run([*_cli(), "run", "--logs", str(csv_logs), "--db", str(work / "w.duckdb"),
                           "--reports", str(work / "reports"), "--bootstrap", "20"],
                          cwd=work, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _pipeline_snapshot(work / "w.duckdb")


# ingest progress is throttled: line 1, then the (always logged) partial file at [29/85], mid-ingest
@pytest.mark.slow
@pytest.mark.parametrize("stage,needle,nth", [("ingest", "] csv csv/", 2), ("fit", "fitting", 1)])
def test_sigkill_during_cli_run_then_rerun_equals_a_clean_run(csv_logs, clean_cli_run, tmp_path, stage, needle, nth):
    db, reports = tmp_path / "w.duckdb", tmp_path / "reports"
    cmd = [*_cli(), "run", "--logs", str(csv_logs), "--db", str(db), "--reports", str(reports), "--bootstrap", "20"]
    lines, rc = _kill_after(cmd, _nth_match(needle, nth), cwd=tmp_path)
    assert rc == -signal.SIGKILL, lines[-5:]
    assert not any(line.startswith("done in") for line in lines)
    _assert_raw_consistent(db)

    rerun = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, f"rerun after a kill during {stage} failed:\n{rerun.stderr[-3000:]}"
    _assert_raw_consistent(db)
    got = _pipeline_snapshot(db)
    _assert_same_fits(got.pop("fits"), clean_cli_run["fits"])
    assert got == {k: v for k, v in clean_cli_run.items() if k != "fits"}
    assert (reports / "latest" / "index.html").is_file()
    assert not [p for p in reports.iterdir() if ".partial-" in p.name], "a partial report folder was left behind"


# ------------------------------------------------------------------------ second concurrent writer


@pytest.fixture
def locked_db(tmp_path):
    """A warehouse held by another process with an open write transaction."""
    db = tmp_path / "db" / "warehouse.duckdb"
    db.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys
        con = duckdb.connect({str(db)!r})
        con.execute("CREATE TABLE IF NOT EXISTS t (x INT)"); con.begin(); con.execute("INSERT INTO t VALUES (1)")
        print("locked", flush=True); sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield db
    finally:
        holder.stdin.close()
        holder.stdout.close()
        holder.wait(timeout=30)


def _materialize_ingest_script(db: Path, logs: Path, reports: Path) -> str:
    """A process that materializes the ingest asset through Dagster and prints the step errors."""
    return textwrap.dedent(f"""
        import time, dagster as dg
        from scaling_pipeline.defs.ingest import raw_logs
        from scaling_pipeline.defs.resources import build_resources
        t0 = time.perf_counter()
        result = dg.materialize([raw_logs], resources=build_resources({str(logs)!r}, {str(db)!r}, {str(reports)!r}),
                                instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        for ev in result.get_step_failure_events():
            print("STEP FAILURE:", ev.step_failure_data.error.message.strip(), flush=True)
        print(f"SUCCESS={{result.success}} after {{time.perf_counter() - t0:.1f}} s", flush=True)
    """)


def test_ingest_asset_waits_for_a_briefly_held_lock(csv_logs, tmp_path):
    """DuckDBResource retries a locked file with backoff: a lock held for ~2 s only delays the step."""
    db = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, time
        con = duckdb.connect({str(db)!r}); con.begin(); con.execute("CREATE TABLE t (x INT)")
        print("locked", flush=True); time.sleep(2); con.commit(); con.close()
    """)], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = subprocess.run([sys.executable, "-c", _materialize_ingest_script(db, csv_logs, tmp_path / "r")],
                              capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=60)
    finally:
        holder.stdout.close()
        holder.wait(timeout=30)
    assert "SUCCESS=True" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.files").fetchone()[0] == 85


def test_ingest_asset_on_a_locked_warehouse_fails_fast_with_a_clear_message(locked_db, csv_logs, tmp_path):
    """The lock is held for the whole test: the step failing at all shows that its wait (5 s in
    ``warehouse``) is bounded. The timeout only guards against a hang; on a loaded machine the
    subprocess's imports alone can take several seconds, so it is not a speed assertion."""
    proc = subprocess.Popen([sys.executable, "-c", _materialize_ingest_script(locked_db, csv_logs, tmp_path / "r")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(),
                            cwd=tmp_path, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the ingest step on a locked warehouse hung (no failure within 120 s)")
    assert "SUCCESS=False" in out, out
    failures = [line for line in out.splitlines() if line.startswith("STEP FAILURE:")]
    assert failures and "is locked by process" in failures[0] and str(locked_db) in failures[0], out
    with pytest.raises(duckdb.IOException):  # still held: the failed run did not break the holder's lock
        duckdb.connect(str(locked_db)).close()


# ------------------------------------------------------------------------------------- safe names

HOSTILE_FAMILIES = {"atlas": "at'las \"q\" ü ../../escape", "boreal": "bo real; DROP TABLE raw.files; -- ✓"}


def _hostile_logs(root: Path, plain: Path) -> dict[str, str]:
    """The 2-family CSV ladder rewritten with hostile run ids / family names / paths. Returns
    {new run_id: family}."""
    import pandas as pd

    from scaling_pipeline.lib.simulate import write_demo

    write_demo(plain, seed=1, fmt="csv", n_families=2)
    run_ids: dict[str, str] = {}
    out_dir = root / "team 'ü' \"x\" ../ dir" / "sub dir ✓"
    out_dir.mkdir(parents=True)
    for i, path in enumerate(sorted((plain / "csv").glob("*.csv"))):
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "family" in df:
            df["family"] = df["family"].map(lambda f: HOSTILE_FAMILIES.get(f, f))
        if "run_id" in df:
            df["run_id"] = df["run_id"].map(lambda r: run_ids.setdefault(r, f"../../{r} it's \"ü\" {len(run_ids)}"))
        name = "runs.csv" if path.name == "runs.csv" else f"{i:02d} run 'q' \"d\" ü ..{path.stem}.csv"
        df.to_csv(out_dir / name, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    families = pd.read_csv(out_dir / "runs.csv", dtype=str)
    return dict(zip(families["run_id"], families["family"], strict=True))


def _links_out(logs: Path, outside: Path) -> dict[str, str]:
    """Links in ``logs`` that must not be followed, to a secret file and folder in ``outside``; returns
    {link: reason code}."""
    (outside / "dir").mkdir(parents=True)
    (outside / "passwd").write_text(SECRET + "\n")
    (outside / "dir" / "m.csv").write_text(f"run_id,step,loss\n{SECRET},1,2.0\n")
    (logs / "leak 'ü'.csv").symlink_to(outside / "passwd")
    (logs / "outside dir").symlink_to(outside / "dir")
    (logs / "loop.csv").symlink_to("loop.csv")
    (logs / "dangling.jsonl").symlink_to("missing.jsonl")
    return {"leak 'ü'.csv": "link_outside_log_root", "outside dir": "link_outside_log_root",
            "loop.csv": "symlink_loop", "dangling.jsonl": "dangling_link"}


def _tree(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*")}


def test_hostile_names_ingest_safely_and_write_only_where_configured(tmp_path):
    sandbox = tmp_path / "sandbox"
    logs, db, reports = sandbox / "logs", sandbox / "db" / "warehouse.duckdb", sandbox / "reports"
    run_family = _hostile_logs(logs, tmp_path / "plain")
    skipped = _links_out(logs, tmp_path / "outside")
    logs_before = {p: p.lstat().st_mtime_ns for p in logs.rglob("*")}
    outside_before = {p.name for p in tmp_path.parent.iterdir()}
    tmp_before = {p.name for p in tmp_path.iterdir()}

    result = materialize_all(logs, db, reports, bootstrap=10)
    assert result.success

    with duckdb.connect(str(db), read_only=True) as con:
        quarantined = con.execute("SELECT f.source_path, f.reader, q.reason FROM raw.files f JOIN raw.quarantine q "
                                  "USING (source_path) WHERE f.status = 'quarantined'").fetchall()
        assert {p: (r, skipped.get(p, "?") in reason) for p, r, reason in quarantined} == {
            p: ("skipped", True) for p in skipped}  # the links not followed, listed
        tables = [t for (t,) in con.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                                            "WHERE table_schema <> 'information_schema'").fetchall()]
        assert not [t for t in tables if "SECRET" in repr(con.execute(f"SELECT * FROM {t}").fetchall())]
        stored = dict(con.execute("SELECT DISTINCT run_id, family FROM raw.runs").fetchall())
        assert stored == run_family  # verbatim, quotes/unicode/../ and all
        metric_ids = {r for (r,) in con.execute("SELECT DISTINCT run_id FROM raw.metrics").fetchall()}
        assert metric_ids <= set(run_family) and len(metric_ids) >= len(run_family) - 1
        fams = dict(con.execute("SELECT family, status FROM fits.chinchilla").fetchall())
        assert set(fams) == set(HOSTILE_FAMILIES.values()) and set(fams.values()) == {"ok"}
        paths = {p for (p,) in con.execute("SELECT source_path FROM raw.files WHERE reader <> 'skipped'").fetchall()}
        assert all(not p.startswith("/") and (logs / p).resolve().is_relative_to(logs.resolve()) for p in paths)

    # Nothing outside the configured folders: logs untouched, only db/ and reports/ added to the
    # sandbox, nothing new beside it or beside tmp_path, every report file inside reports/.
    assert {p: p.lstat().st_mtime_ns for p in logs.rglob("*")} == logs_before
    assert {p.name for p in sandbox.iterdir()} == {"logs", "db", "reports"}
    assert {p.name for p in tmp_path.iterdir()} == tmp_before
    assert {p.name for p in tmp_path.parent.iterdir()} == outside_before
    assert {p.name for p in db.parent.iterdir()} <= {"warehouse.duckdb", "warehouse.duckdb.wal"}
    for p in reports.rglob("*"):
        assert p.resolve().is_relative_to(reports.resolve()), p
        assert ".." not in p.name and "/" not in p.name, p
    assert (reports / "latest" / "index.html").is_file()
    assert "link_outside_log_root" in (reports / "latest" / "index.html").read_text()
    assert not [p for p in reports.rglob("*") if p.is_file() and b"SECRET" in p.read_bytes()]


def test_loading_the_code_location_writes_nothing_in_the_working_directory(tmp_path):
    subprocess.run([sys.executable, "-c", "import scaling_pipeline.definitions"], cwd=tmp_path, env=_env(),
                   check=True, timeout=60)
    assert sorted(_tree(tmp_path)) == []
