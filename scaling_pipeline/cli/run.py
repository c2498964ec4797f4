"""``scaling-pipeline run``: materialize the asset graph in this process, wait for the warehouse slot, and
print what was ingested, cleaned and fitted (and why nothing was, when nothing was)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import UserError, open_warehouse, resolve_settings


SLOT_WAIT_SECONDS = 600.0  # `run --wait`: how long a run waits for the warehouse held by another live run



def cmd_run(args: argparse.Namespace) -> int:
    import dagster as dg
    import duckdb

    from scaling_pipeline.definitions import ASSETS, CHECKS
    from scaling_pipeline.defs.fit import fit_run_config
    from scaling_pipeline.defs.pool import PROCESS_TAG
    from scaling_pipeline.defs.resources import build_resources
    from scaling_pipeline.lib.process import ProcessId

    resources = build_resources(args.logs, args.db, args.reports, settings_file=args.settings,
                                min_tokens=args.min_tokens, min_steps=args.min_steps)
    settings = resources["settings"]
    resolve_settings(settings)  # a bad settings file fails here, before anything runs
    path = settings.settings_path()
    print(f"settings  {f'read from {path}' if path else 'defaults (no scaling-pipeline.toml found)'}", flush=True)
    if not settings.logs_path.is_dir():
        raise UserError(f"log root {str(settings.logs_path)!r} is not a folder (pass --logs DIR)")
    if args.wait < 0:
        raise UserError(f"--wait must be >= 0 seconds, got {args.wait}")
    db = Path(resources["duckdb"].database)
    db.parent.mkdir(parents=True, exist_ok=True)
    open_warehouse(str(db), read_only=False).close()  # a warehouse locked for longer than the lock wait fails here
    t0 = time.perf_counter()
    me = ProcessId.current()
    with _instance() as instance, _PoolWatch(instance, me, args.wait):
        result = dg.materialize([*ASSETS, *CHECKS], resources=resources, instance=instance,
                                run_config=fit_run_config(args.bootstrap, args.seed), raise_on_error=False,
                                tags={PROCESS_TAG: me.text})
    elapsed = time.perf_counter() - t0
    if not result.success:
        interrupted = False
        for ev in result.get_step_failure_events():
            error = ev.step_failure_data.error
            interrupted |= error.cls_name in _INTERRUPTS
            print(f"step {ev.step_key} failed: {error.message.strip()}", file=sys.stderr)
        if interrupted:
            print(f"error: interrupted after {elapsed:.1f} s; nothing after the interrupted step was published",
                  file=sys.stderr)
            return 130
        raise UserError(f"pipeline run failed after {elapsed:.1f} s (see messages above)")
    with duckdb.connect(str(db), read_only=True) as con:
        print_summary(con, settings.reports_path, elapsed)
    return 0



# how a signal shows in a failed step (SIGTERM is mapped to SIGINT during execution)
_INTERRUPTS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")



def _instance():
    """The persistent instance under $DAGSTER_HOME when set (runs show up in the UI), else ephemeral."""
    import os

    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()



class _PoolWatch:
    """Beside an in-process run: free the warehouse pool's slot when a dead run holds it (before the run and
    while it waits), say every 10 s what the run waits for, and end the wait on Ctrl-C/SIGTERM or after
    ``wait`` seconds (Dagster's in-process executor would wait forever and not look at signals)."""

    def __init__(self, instance, me, wait: float):
        import threading

        self.instance, self.me, self.wait = instance, me, wait
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="pool-watch", daemon=True)

    def __enter__(self):
        from scaling_pipeline.defs.pool import reclaim_stale_slots

        if self.instance.event_log_storage.supports_global_concurrency_limits:
            for freed in reclaim_stale_slots(self.instance):
                print(f"warehouse pool: {freed}", flush=True)
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def _watch(self) -> None:
        import dagster as dg
        from dagster._utils.interrupts import check_captured_interrupt

        from scaling_pipeline.defs.pool import POOL, PROCESS_TAG, holders, reclaim_stale_slots, waiting_runs

        since: float | None = None
        said = 0.0
        while not self.stop.wait(1.0):
            runs = self.instance.get_runs(dg.RunsFilter(tags={PROCESS_TAG: self.me.text}), limit=1)
            if not runs or runs[0].run_id not in waiting_runs(self.instance):
                since = None
                continue
            run = runs[0]
            for freed in reclaim_stale_slots(self.instance):
                print(f"warehouse pool: {freed}", flush=True)
            now = time.monotonic()
            since = since or now
            held = "; ".join(h.describe() for h in holders(self.instance) if h.run_id != run.run_id) or "nobody"
            if check_captured_interrupt():
                self._give_up(run, f"interrupted while waiting for the '{POOL}' slot (held by {held})", 130)
            if now - since > self.wait:
                self._give_up(run, f"gave up after waiting {self.wait:.0f} s for the '{POOL}' slot, held by "
                                   f"{held} (end that run, or mark it failed in the UI, then run again; --wait "
                                   "sets the limit)", 2)
            if now - said >= 10:
                said = now
                print(f"waiting for the '{POOL}' slot (the warehouse has one writer), held by {held}: "
                      f"{now - since:.0f} s so far, at most {self.wait:.0f} s (Ctrl-C stops)", flush=True)

    def _give_up(self, run, message: str, code: int) -> None:
        """End the process: nothing of this run has started (its first writer step waits), so its pending
        claim is freed and it is marked failed; Dagster's executor cannot be stopped from this thread."""
        import os

        self.instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        self.instance.report_run_failed(run, message)
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code)



def print_summary(con, reports: Path, elapsed: float) -> None:
    from scaling_pipeline.lib.quality import Assessment

    q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    print(f"ingested  {q('SELECT count(*) FROM raw.files')} sources, {q('SELECT count(*) FROM raw.metrics')} "
          f"logged rows, {q('SELECT count(*) FROM raw.quarantine')} quarantined rows/files")
    excluded = q("SELECT count(*) FROM clean.exclusions WHERE kind = 'run'")
    print(f"cleaned   {q('SELECT count(*) FROM clean.points')} schedule-valid runs, {excluded} runs excluded")
    _print_why_no_points(con)
    fits = con.execute("""SELECT family, status, n_points, E, A, B, alpha, beta, a_exponent, verdict, reasons,
                                 reason_messages FROM fits.chinchilla ORDER BY family""").fetchall()
    print(f"fitted    {len(fits)} families" + (":" if fits else ""))
    if fits:
        print(f"  {'family':<24} {'runs':>4} {'E':>7} {'A':>9} {'B':>9} {'alpha':>6} {'beta':>6} {'a':>6}  verdict")
    for fam, status, n, e, a_, b_, al, be, a, *judged in fits:
        assessment = Assessment.from_columns(*judged)
        law = (f"{e:7.3f} {a_:9.4g} {b_:9.4g} {al:6.3f} {be:6.3f} {a:6.3f}" if status == "ok"
               else f"{'(no fit)':<44}")
        print(f"  {fam:<24} {n:>4} {law}  {assessment.verdict}")
        if assessment.reasons:
            top = assessment.reasons[0]
            more = f" (+{len(assessment.reasons) - 1} more)" if len(assessment.reasons) > 1 else ""
            print(f"  {'':<24} {top.code}: {top.message}{more}")
    print(f"report    {reports / 'latest' / 'index.html'}")
    print(f"done in {elapsed:.1f} s")



def _print_why_no_points(con) -> None:
    """A warning when the log root gave no runs; per family without a point, its top exclusion reasons."""
    from scaling_pipeline.lib.reporting.why import no_point_reasons, no_runs_message

    points = con.execute("SELECT family FROM clean.points").df()
    exclusions = con.execute("SELECT * FROM clean.exclusions").df()
    if points.empty and not (exclusions.kind == "run").any():
        print(f"warning: {no_runs_message(con.execute('SELECT count(*) FROM raw.quarantine').fetchone()[0])}",
              file=sys.stderr)
        return
    reasons = no_point_reasons(exclusions, points)
    if reasons:
        print("nothing fitted: every run was excluded; top reasons" if points.empty
              else f"no point from {len(reasons)} famil{'y' if len(reasons) == 1 else 'ies'}; top reasons")
    for family, top in reasons.items():
        print(f"  {family or '(no family)'}:")
        for r in top:
            print(f"    {r.reason:<22} {r.runs:>4} run{'s' if r.runs != 1 else ' '}  e.g. {r.example_run}: "
                  f"{r.example_detail}")
