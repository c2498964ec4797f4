"""The ``duckdb_writer`` pool: DuckDB allows one writer process per file, so every asset that writes the
warehouse claims this pool's one slot. A run whose process died (SIGKILL, OOM, power loss) keeps its
slot in the instance forever and every later run waits for it; :func:`reclaim_stale_slots` finds such
runs, marks them failed and frees their slots. It runs before every ``scaling-pipeline run``, while
that run waits, and as the ``stale_pool_slots`` sensor under ``dg dev`` / the daemon.

A run's process is known from the ``scaling_pipeline/process`` tag (host, pid, start time; set by the
CLI) or from the first engine event of the run that names a pid (the run worker of a launched run, or
the in-process executor); those are taken to be on this host, as with Dagster's default run launcher.
"""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import dataclass

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES, IN_PROGRESS_RUN_STATUSES

from scaling_pipeline.lib.process import ProcessId

POOL = "duckdb_writer"
PROCESS_TAG = "scaling_pipeline/process"


@dataclass(frozen=True)
class Holder:
    """A run that holds or waits for a slot of the pool."""

    run_id: str
    steps: tuple[str, ...]  # steps holding a slot
    process: ProcessId | None
    status: str

    def describe(self) -> str:
        steps = ", ".join(self.steps) or "no step yet"
        where = f", {self.process}" if self.process else ""
        return f"run {self.run_id[:8]} ({steps}; {self.status.lower()}{where})"


def run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> ProcessId | None:
    """The process that executes ``run`` (and so holds its slots), if known."""
    if tag := run.tags.get(PROCESS_TAG):
        return ProcessId.parse(tag)
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = data.metadata.get("pid") if data and data.metadata else None
        if pid is not None:
            return ProcessId(socket.gethostname(), int(pid.value), entry.timestamp, exact=False)
    return None


def holders(instance: dg.DagsterInstance) -> list[Holder]:
    """Runs that hold a slot of the pool (claimed, or assigned while pending)."""
    if not instance.event_log_storage.supports_global_concurrency_limits:
        return []
    info = instance.event_log_storage.get_concurrency_info(POOL)
    steps: dict[str, list[str]] = {}
    for slot in info.claimed_slots:
        steps.setdefault(slot.run_id, []).append(slot.step_key)
    for pending in info.pending_steps:
        if pending.assigned_timestamp is not None:
            steps.setdefault(pending.run_id, []).append(pending.step_key)
    out = []
    for run_id, keys in steps.items():
        run = instance.get_run_by_id(run_id)
        out.append(Holder(run_id, tuple(sorted(set(keys))), run and run_process(instance, run),
                          run.status.value if run else "DELETED"))
    return out


def waiting_runs(instance: dg.DagsterInstance) -> set[str]:
    """Runs with a step waiting for a slot of the pool."""
    if not instance.event_log_storage.supports_global_concurrency_limits:
        return set()
    info = instance.event_log_storage.get_concurrency_info(POOL)
    return {p.run_id for p in info.pending_steps if p.assigned_timestamp is None}


@dataclass(frozen=True)
class Reclaimed:
    run_id: str
    reason: str

    def __str__(self) -> str:
        return f"run {self.run_id[:8]}: {self.reason}"


def reclaim_stale_slots(instance: dg.DagsterInstance) -> list[Reclaimed]:
    """Free the pool slots of runs that can no longer release them, and mark in-progress runs whose
    process is gone as failed. Runs whose process is alive, or cannot be checked (another host), are
    left alone."""
    out: list[Reclaimed] = []
    storage = instance.event_log_storage
    with_slots = {h.run_id: h for h in holders(instance)}
    in_progress = {r.run_id: r for r in instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS_RUN_STATUSES))}
    for run_id in sorted(set(with_slots) | set(in_progress)):
        run = in_progress.get(run_id) or instance.get_run_by_id(run_id)
        if run is None or run.status in FINISHED_STATUSES:  # ended without releasing its slot
            storage.free_concurrency_slots_for_run(run_id)
            out.append(Reclaimed(run_id, "freed the slot of a run that has ended"))
            continue
        process = run_process(instance, run)
        if process is None or process.alive() is not False:
            continue
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        instance.report_run_failed(run, f"its process ({process}) is gone (found at {now}): marked failed and "
                                         f"its '{POOL}' slot freed")
        if run_id in with_slots:
            storage.free_concurrency_slots_for_run(run_id)
            out.append(Reclaimed(run_id, f"its process ({process}) is gone: marked failed, slot freed"))
        else:
            out.append(Reclaimed(run_id, f"its process ({process}) is gone: marked failed"))
    return out


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description=f"Frees '{POOL}' slots held by runs whose process is gone (killed runs), and marks "
                       "those runs failed, so later runs do not wait for them forever.")
def stale_pool_slots(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    freed = reclaim_stale_slots(context.instance)
    for r in freed:
        context.log.warning(str(r))
    return dg.SkipReason("; ".join(map(str, freed)) or "no stale slots")
