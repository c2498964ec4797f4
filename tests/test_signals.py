"""Ctrl-C (SIGINT to the process group, as a terminal sends it) and SIGTERM (to the process, as a
supervisor sends it) at several points of a real `scaling-pipeline run`: the run always exits 130,
never quarantines a file because its read was interrupted, publishes no report, and (mid-ingest) the next
run repairs everything to a clean run's warehouse."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from tests.test_faults import (  # noqa: F401  (fixtures)
    _assert_raw_consistent, _assert_same_fits, _cli, _env, _nth_match, _pipeline_snapshot, clean_cli_run, csv_logs)

# (line that triggers the signal, how many times it must have appeared, signal): the ingest's first files,
# the middle of the ingest (the logged partial file is [29/85]), the end of cleaning, the middle of the fit
# (only the mid-ingest case is run again: the SIGKILL tests of test_faults.py repair every stage)
POINTS = [("] csv csv/", 1, signal.SIGINT), ("] csv csv/", 2, signal.SIGTERM), ("clean:", 1, signal.SIGINT),
          ("fitting", 1, signal.SIGTERM)]


@pytest.mark.parametrize("needle,nth,sig", POINTS)
def test_signal_ends_the_run_nonzero_and_publishes_nothing(csv_logs, clean_cli_run, tmp_path, needle, nth, sig):
    db, reports = tmp_path / "w.duckdb", tmp_path / "reports"
    cmd = [*_cli(), "run", "--logs", str(csv_logs), "--db", str(db), "--reports", str(reports), "--bootstrap", "20"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            env=_env(), start_new_session=True)
    should_signal, lines = _nth_match(needle, nth), []
    try:
        for line in proc.stdout:
            lines.append(line)
            if should_signal(line):
                if sig == signal.SIGINT:
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)
                break
        else:
            pytest.fail("the run ended before the signal point:\n" + "".join(lines[-20:]))
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = "".join(lines) + rest
    assert proc.returncode == 130, out[-3000:]
    assert "error: interrupted after" in out and "done in" not in out
    assert not (reports / "latest").exists(), "a report was published by an interrupted run"
    _assert_raw_consistent(db)
    with duckdb.connect(str(db), read_only=True) as con:
        reasons = [r[0] for r in con.execute("SELECT reason FROM raw.quarantine").fetchall()]
    assert not [r for r in reasons if "nterrupt" in r or "unexpectedly" in r], reasons
    if nth != 2:
        return
    rerun = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    got = _pipeline_snapshot(db)
    _assert_same_fits(got.pop("fits"), clean_cli_run["fits"])
    assert got == {k: v for k, v in clean_cli_run.items() if k != "fits"}


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += list(kids - out)
            out |= kids
    return out


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_fit_workers_die_with_a_sigkilled_run(tmp_path):
    """Three families are fitted across worker processes; SIGKILL of the run takes them down too."""
    from scaling_pipeline.lib.simulate import write_demo

    logs = tmp_path / "logs"
    write_demo(logs, seed=1, fmt="csv", n_families=3)
    cmd = [*_cli(), "run", "--logs", str(logs), "--db", str(tmp_path / "w.duckdb"), "--reports",
           str(tmp_path / "reports"), "--bootstrap", "400"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            env=_env(), start_new_session=True)
    try:
        for line in proc.stdout:
            if "[2/3] fitting" in line:
                break
        else:
            pytest.fail("the run never fitted across workers")
        workers = _descendants(proc.pid)
        assert len(workers) >= 2, workers  # the forkserver and its workers
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (alive := {p for p in workers if Path(f"/proc/{p}").exists()
                         and "Z" not in Path(f"/proc/{p}/stat").read_text().split(")")[-1].split()[:1]}) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive, f"worker processes outlived the killed run: {sorted(alive)}"
    finally:
        with contextlib.suppress(ProcessLookupError):  # the run, and its workers if the test failed
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
