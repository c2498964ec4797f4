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
import os
import socket
import time
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.executor_definition import IN_PROC_CONFIG, _core_in_process_executor_creation
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.execute_plan import inner_plan_execution_iterator
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.executor.in_process import InProcessExecutor
from dagster._core.storage.dagster_run import FINISHED_STATUSES, IN_PROGRESS_RUN_STATUSES
from dagster._utils.interrupts import check_captured_interrupt

from scaling_pipeline.lib.process import ProcessId

POOL = "duckdb_writer"
PROCESS_TAG = "scaling_pipeline/process"
CLAIM_POLL_SECONDS = 0.2  # how often a step waiting for a slot looks again (and at a termination request)


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


class _SlotClaims(InstanceConcurrencyContext):
    """Pool-slot claims that honour "Terminate" while a step waits for a slot. Dagster's in-process executor
    (1.13) looks at a termination request only when a step starts, and polls a refused claim without pausing
    (a busy loop on one core): a refused claim here raises the termination if one came, else waits
    CLAIM_POLL_SECONDS before the executor asks again."""

    def claim(self, concurrency_key: str, step_key: str, step_priority: int = 0) -> bool:
        if check_captured_interrupt():
            raise DagsterExecutionInterruptedError(f"terminated while {step_key} waited for a '{concurrency_key}' slot")
        claimed = super().claim(concurrency_key, step_key, step_priority)
        if not claimed:
            time.sleep(CLAIM_POLL_SECONDS)
        return claimed


def _in_process_steps(job_context, execution_plan, instance_concurrency_context=None):
    with _SlotClaims(job_context.instance, job_context.dagster_run) as claims:
        yield from inner_plan_execution_iterator(job_context, execution_plan, claims)


class _InProcessExecutor(InProcessExecutor):
    """Dagster's in-process executor (``InProcessExecutor.execute``, same events) with :class:`_SlotClaims`."""

    def execute(self, plan_context, execution_plan):
        steps = execution_plan.step_keys_to_execute
        yield DagsterEvent.engine_event(plan_context, f"Executing steps in process (pid: {os.getpid()})",
                                        event_specific_data=EngineEventData.in_process(os.getpid(), steps))
        t0 = time.perf_counter()
        yield from iter(ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=_in_process_steps,
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job, retry_mode=plan_context.retry_mode, execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config, dagster_run=plan_context.dagster_run,
                instance=plan_context.instance, raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture, step_dependency_config=self.step_dependency_config)))
        yield DagsterEvent.engine_event(
            plan_context, f"Finished steps in process (pid: {os.getpid()}) in {time.perf_counter() - t0:.2f} s",
            event_specific_data=EngineEventData.in_process(os.getpid(), steps))


@dg.executor(name="in_process", config_schema=IN_PROC_CONFIG)
def in_process_executor(init_context: dg.InitExecutorContext) -> _InProcessExecutor:
    """``dg.in_process_executor`` (same name and config) whose runs end CANCELED at once when terminated while
    a step waits for a ``duckdb_writer`` slot, instead of when the slot comes."""
    core = _core_in_process_executor_creation(init_context.executor_config)
    return _InProcessExecutor(retries=core.retries, step_dependency_config=core.step_dependency_config,
                              marker_to_close=core.marker_to_close)
