"""The warehouse pool (`duckdb_writer`, one slot) under the project's own instance settings, with real
processes: a SIGKILLed run must not block later runs, and a run that must wait says so, honours
Ctrl-C/SIGTERM and gives up after ``--wait``."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import REPO
from tests.test_faults import (  # noqa: F401  (fixtures)
    _assert_same_fits, _cli, _env, _kill_after, _nth_match, _pipeline_snapshot, clean_cli_run, csv_logs)


@pytest.fixture
def home(tmp_path) -> Path:
    """A DAGSTER_HOME set up as `make` sets up .dagster/ (the project's dagster.yaml: pool limit 1)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.dev.yaml", home / "dagster.yaml")
    return home


def _home_env(home: Path) -> dict[str, str]:
    return {**_env(), "DAGSTER_HOME": str(home)}


def _run_cmd(logs: Path, work: Path, *extra: str) -> list[str]:
    return [*_cli(), "run", "--logs", str(logs), "--db", str(work / "w.duckdb"), "--reports", str(work / "reports"),
            "--bootstrap", "20", *extra]


def _pool_state(home: Path) -> tuple[list, dict]:
    """(claimed (run, step) slots, {run id: status}) of the instance under ``home``."""
    script = textwrap.dedent("""
        import json, dagster as dg
        with dg.DagsterInstance.get() as inst:
            info = inst.event_log_storage.get_concurrency_info("duckdb_writer")
            print(json.dumps([[[s.run_id, s.step_key] for s in info.claimed_slots],
                              {r.run_id: r.status.value for r in inst.get_runs()}]))
    """)
    out = subprocess.run([sys.executable, "-c", script], env=_home_env(home), capture_output=True, text=True,
                         timeout=120, check=True)
    import json

    claimed, runs = json.loads(out.stdout.strip().splitlines()[-1])
    return claimed, runs


@pytest.mark.slow
def test_sigkilled_run_does_not_block_the_next_run(csv_logs, clean_cli_run, home, tmp_path):
    """Killed while its fit step holds the slot: the next run marks it failed, frees the slot, completes,
    and leaves the warehouse a clean run leaves."""
    cmd = _run_cmd(csv_logs, tmp_path)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            env=_home_env(home), start_new_session=True)
    try:
        for line in proc.stdout:
            if "fitting" in line:
                proc.send_signal(signal.SIGKILL)
                break
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    claimed, runs = _pool_state(home)
    assert len(claimed) == 1 and claimed[0][1] == "fits__chinchilla", claimed
    killed = claimed[0][0]
    assert runs[killed] == "STARTED"

    rerun = subprocess.run(cmd, cwd=tmp_path, env=_home_env(home), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"run {killed[:8]}: its process (pid {proc.pid} " in rerun.stdout, rerun.stdout[:2000]
    claimed, runs = _pool_state(home)
    assert claimed == [] and runs[killed] == "FAILURE"
    assert sorted(runs.values()) == ["FAILURE", "SUCCESS"]
    got = _pipeline_snapshot(tmp_path / "w.duckdb")
    _assert_same_fits(got.pop("fits"), clean_cli_run["fits"])
    assert got == {k: v for k, v in clean_cli_run.items() if k != "fits"}


_HOLDER = """
import time, dagster as dg

@dg.asset(pool="duckdb_writer")
def holds_the_warehouse():
    print("HOLDING", flush=True)
    time.sleep(600)

dg.materialize([holds_the_warehouse], instance=dg.DagsterInstance.get())
"""


@pytest.fixture
def holder(home, tmp_path):
    """A live run (another process, launched without the CLI's tag) holding the pool's slot."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=tmp_path, env=_home_env(home), start_new_session=True)
    try:
        for line in proc.stdout:
            if "HOLDING" in line:
                break
        else:
            pytest.fail("the holder run never started")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()


def _start_waiting(cmd: list[str], home: Path, cwd: Path) -> tuple[subprocess.Popen, list[str]]:
    """Start ``cmd`` and read its output until it says it is waiting for the slot."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            env=_home_env(home), start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "waiting for the 'duckdb_writer' slot" in line:
            return proc, lines
    pytest.fail("the run never said it was waiting:\n" + "".join(lines[-20:]))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_waiting_run_names_the_holder_and_honours_signals(csv_logs, home, holder, tmp_path, sig):
    proc, lines = _start_waiting(_run_cmd(csv_logs, tmp_path), home, tmp_path)
    try:
        assert f"pid {holder.pid} on " in lines[-1] and "holds_the_warehouse" in lines[-1], lines[-1]
        assert "at most 600 s (Ctrl-C stops)" in lines[-1]
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest[-2000:]
    assert "interrupted while waiting for the 'duckdb_writer' slot" in rest
    claimed, runs = _pool_state(home)
    assert [step for _, step in claimed] == ["holds_the_warehouse"]  # the live holder keeps its slot
    assert sorted(runs.values()) == ["FAILURE", "STARTED"]


def test_waiting_run_gives_up_after_wait(csv_logs, home, holder, tmp_path):
    t0 = time.monotonic()
    proc = subprocess.run(_run_cmd(csv_logs, tmp_path, "--wait", "4"), cwd=tmp_path, env=_home_env(home),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "gave up after waiting 4 s for the 'duckdb_writer' slot" in proc.stderr
    assert time.monotonic() - t0 >= 4
    assert holder.poll() is None


@pytest.mark.slow
def test_run_goes_on_when_the_holder_dies_while_it_waits(csv_logs, home, holder, tmp_path):
    proc, _ = _start_waiting(_run_cmd(csv_logs, tmp_path), home, tmp_path)
    try:
        holder.kill()
        holder.wait(timeout=30)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert f"its process (pid {holder.pid} on " in out and "marked failed, slot freed" in out
    assert (tmp_path / "reports" / "latest" / "index.html").is_file()


def test_sensor_reclaims_the_slot_of_a_dead_run(home, holder, monkeypatch):
    from scaling_pipeline.defs.pool import stale_pool_slots

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        result = stale_pool_slots(dg.build_sensor_context(instance=instance))
        assert result.skip_message == "no stale slots"  # the holder is alive
        holder.kill()
        holder.wait(timeout=30)
        result = stale_pool_slots(dg.build_sensor_context(instance=instance))
        assert f"its process (pid {holder.pid} on " in result.skip_message
        assert instance.event_log_storage.get_concurrency_info("duckdb_writer").claimed_slots == []
