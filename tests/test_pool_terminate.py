"""Terminating a run that executes in process while one of its steps waits for the `duckdb_writer` slot (another
run holds it): the run ends CANCELED at once, its pending claim is gone and the holder keeps its slot. Dagster's
own in-process executor leaves such a run CANCELING until the slot comes (defs/pool.py)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg

from scaling_pipeline.defs import pool
from scaling_pipeline.definitions import defs
from tests.conftest import REPO
from tests.test_faults import _env

TIMEOUT = 120.0  # a bound on waiting, not a measurement


@dg.asset(pool=pool.POOL)
def writes_the_warehouse() -> None:
    """Stands for any asset of the pool (it never gets the slot in this test)."""


def waiting_job() -> dg.JobDefinition:
    return dg.Definitions(assets=[writes_the_warehouse], jobs=[dg.define_asset_job("waits")],
                          executor=pool.in_process_executor).resolve_job_def("waits")


def _until(predicate, what: str):
    deadline = time.monotonic() + TIMEOUT
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def test_the_definitions_use_this_executor():
    assert defs.resolve_job_def("scaling_pipeline").executor_def is pool.in_process_executor


def test_terminate_while_waiting_for_the_slot_cancels_at_once(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.dev.yaml", home / "dagster.yaml")
    env = {**_env(), "DAGSTER_HOME": str(home)}
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(pool.POOL)
        assert storage.claim_concurrency_slot(pool.POOL, "holder-run", "other_step").is_claimed
        script = textwrap.dedent("""
            import dagster as dg
            from tests.test_pool_terminate import waiting_job
            with dg.DagsterInstance.get() as instance:
                result = dg.execute_job(dg.reconstructable(waiting_job), instance=instance)
                print("ended", result.dagster_run.status.value, flush=True)
        """)
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            run_id = _until(lambda: next(iter(pool.waiting_runs(instance)), None), "the run to wait for the slot")
            # what "Terminate" does to a run executing in this host's run worker: mark it CANCELING, interrupt it
            instance.report_run_canceling(instance.get_run_by_id(run_id))
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, out[-3000:]
        assert "ended CANCELED" in out, out[-3000:]
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
        info = storage.get_concurrency_info(pool.POOL)
        assert [(s.run_id, s.step_key) for s in info.claimed_slots] == [("holder-run", "other_step")]
        assert not [p for p in info.pending_steps if p.run_id == run_id]  # its claim did not outlive it
