"""``scaling-pipeline``: run the asset graph, fit a CSV of runs, plan a budget, fit families on separate workers
(per-family Parquet), make demo logs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scaling_pipeline.lib.quality import Assessment

from scaling_pipeline.lib.settings import MAX_BOOTSTRAP, N_BOOT


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


UI_STOP_GRACE = 5.0  # `ui`: seconds between the stop request and killing what is left
SLOT_WAIT_SECONDS = 600.0  # `run --wait`: how long a run waits for the warehouse held by another live run




def _bootstrap_count(text: str) -> int:
    """argparse type of every --bootstrap: a whole number in [0, MAX_BOOTSTRAP]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_BOOTSTRAP:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_BOOTSTRAP}, got {value}")
    return value


def _columns(text: str) -> list[str]:
    """argparse type of --vars: comma-separated column names."""
    names = [c.strip() for c in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


class UserError(Exception):
    """A problem the user can fix (bad path, locked database, bad input): printed without a trace."""


def _parser() -> argparse.ArgumentParser:
    from scaling_pipeline.lib.laws import FORMS

    p = argparse.ArgumentParser(prog="scaling-pipeline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="materialize the whole asset graph in-process and print a summary")
    run.add_argument("--logs", help="log root folder (default: $SCALING_LOGS or data/)")
    run.add_argument("--db", help="DuckDB warehouse file (default: $SCALING_DB or data/warehouse.duckdb)")
    run.add_argument("--reports", help="report folder (default: $SCALING_REPORTS or reports/)")
    run.add_argument("--min-tokens", type=float, help="runs trained on fewer tokens give no point (default 0)")
    run.add_argument("--min-steps", type=int, help="runs with fewer optimizer steps give no point (default 0)")
    run.add_argument("--bootstrap", type=_bootstrap_count, default=N_BOOT, metavar="B",
                     help=f"bootstrap resamples per family (default {N_BOOT}, at most {MAX_BOOTSTRAP})")
    run.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    run.add_argument("--wait", type=float, default=SLOT_WAIT_SECONDS, metavar="SECONDS",
                     help="how long to wait for another run that holds the warehouse (default "
                          f"{SLOT_WAIT_SECONDS:.0f} s); runs whose process is gone are marked failed at once")
    run.set_defaults(func=_cmd_run)

    fit = sub.add_parser(
        "fit", help="fit a law to a CSV of runs and print the result",
        description="Fit a law form to a runs CSV with columns n_params, n_tokens, loss (optional flops, unique_tokens, "
                    "family; n_tokens = flops/(6·n_params) and flops = 6·n_params·n_tokens are derived when needed). "
                    "Losses in nats/token, C in FLOPs. Forms: " + "; ".join(
                        f"{name}: {law.formula} ({', '.join(law.units)})" for name, law in FORMS.items()) + ".")
    fit.add_argument("csv", type=Path, help="runs CSV")
    fit.add_argument("--form", default="chinchilla", choices=list(FORMS))
    fit.add_argument("--x", metavar="COLUMN",
                     help="input column of a one-variable form (default: " + ", ".join(
                         f"{law.variables['x']} for {name}" for name, law in FORMS.items()
                         if list(law.variables) == ["x"]) + ")")
    fit.add_argument("--y", default="loss", metavar="COLUMN", help="column to fit (default loss)")
    fit.add_argument("--vars", type=_columns, metavar="COL,COL,...",
                     help="input columns of a form whose inputs you name (default: the form's)")
    fit.add_argument("--loss", default="huber", choices=["huber", "huber_loss_space", "mse"],
                     help="objective: huber = sum of Huber(delta) of log residuals (Epoch/Hoffmann; default)")
    fit.add_argument("--delta", type=float, default=1e-3, help="Huber delta (default 1e-3)")
    fit.add_argument("--family", help="fit only the rows of this family")
    fit.add_argument("--bootstrap", type=_bootstrap_count, default=0, metavar="B",
                     help=f"bootstrap resamples for intervals (default 0: none; at most {MAX_BOOTSTRAP})")
    fit.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    fit.add_argument("--joint", action="store_true",
                     help="chinchilla over all families at once: shared alpha, beta; per-family E, A, B")
    fit.add_argument("--free-all", action="store_true",
                     help="data_constrained: fit E, A, B, alpha, beta too instead of the published constants")
    fit.add_argument("--json", action="store_true", help="print one JSON object")
    fit.set_defaults(func=_cmd_fit)

    curve = sub.add_parser(
        "curve-fit", help="fit a schedule-aware loss-curve law to (step, lr, loss) CSVs and predict other schedules",
        description="Fit a loss-curve law to training runs, each a CSV with columns step, loss and lr (aliases as in "
                    "ingest; loss in nats/token), and score it on other runs. Forms: mpl, the Multi-Power Law (Luo et "
                    "al. 2025: L0, A, alpha, B, C, beta, gamma); lr_annealing (Tissue et al. 2024: L0, A, alpha, C; "
                    "momentum decay 0.999). Objective: sum of Huber(1e-3) of log residuals, global search. The LR "
                    "of every step comes from the run's schedule in SCHEDULES.json (keyed by file stem), else from "
                    "its logged lr; a run with neither gets no fit (exit 2).")
    curve.add_argument("train", type=Path, nargs="+", metavar="TRAIN.csv", help="runs to fit")
    curve.add_argument("--form", default="mpl", choices=["mpl", "lr_annealing"], help="curve law (default mpl)")
    curve.add_argument("--predict", type=Path, nargs="+", default=[], metavar="TEST.csv",
                       help="runs to predict with the fitted law")
    curve.add_argument("--schedules", type=Path, metavar="SCHEDULES.json",
                       help="file stem -> schedule, with the keys of multipower_curves/schedules.json (whose list "
                            "form is read too)")
    curve.add_argument("--bootstrap", type=int, default=0, metavar="B",
                       help="block-bootstrap refits for 95%% intervals (\"ci\" in the JSON; default 0: none)")
    curve.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    curve.add_argument("--json", action="store_true", help="print one JSON object")
    curve.set_defaults(func=_cmd_curve_fit)

    alloc = sub.add_parser(
        "allocate", help="compute-optimal plans (N parameters, D tokens) from a fit",
        description="Plan N and D for budgets C = 6·N·D FLOPs from `scaling-pipeline fit --json` output (form "
                    "chinchilla) or from a family's fit in the warehouse (--db, --family; with bootstrap intervals, "
                    "and each plan's verdict: the family's, 'extrapolated' beyond 1000x its largest run). A family "
                    "whose plan is withheld exits 2 with the reasons unless --force. Losses in nats/token.")
    src = alloc.add_mutually_exclusive_group(required=True)
    src.add_argument("--fit", type=Path, metavar="FIT.json", help="output of `fit --json` ('-' = stdin)")
    src.add_argument("--family", help="use this family's fit and bootstrap samples from the warehouse")
    alloc.add_argument("--db", help="warehouse for --family (default: $SCALING_DB or data/warehouse.duckdb)")
    alloc.add_argument("--compute", type=float, action="append", metavar="FLOPS", help="training budget (repeatable)")
    alloc.add_argument("--max-params", type=float, metavar="N", help="cap on parameters")
    alloc.add_argument("--max-tokens", type=float, metavar="D", help="cap on training tokens")
    alloc.add_argument("--unique-tokens", type=float, metavar="U", help="unique tokens available (data-constrained law)")
    alloc.add_argument("--inference-tokens", type=float, metavar="T", help="expected inference tokens (2·N FLOPs each)")
    alloc.add_argument("--target-loss", type=float, metavar="L", help="cheapest plan reaching this loss (nats/token)")
    alloc.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    alloc.add_argument("--json", action="store_true", help="print one JSON object")
    alloc.add_argument("--force", action="store_true",
                       help="with --family: print the plans of a family whose plan is withheld, each marked WITHHELD "
                            "(without it such a family exits 2 with the reasons)")
    alloc.set_defaults(func=_cmd_allocate)

    export = sub.add_parser(
        "export-points", help="write clean.points as one Parquet file per family (for fit-family on other workers)",
        description="Write the warehouse's clean.points as DIR/family=<safe name>/points.parquet, one file per "
                    "family (the real family name is in the file). Reads the warehouse only.")
    export.add_argument("--db", help="warehouse (default: $SCALING_DB or data/warehouse.duckdb)")
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    export.set_defaults(func=_cmd_export_points)

    fam = sub.add_parser(
        "fit-family", help="fit one family's points.parquet and write its fit and bootstrap as Parquet",
        description="Fit the family in POINTS.parquet (from export-points) exactly as the pipeline's fit stage does "
                    "and write DIR/family=<safe name>/fit.parquet and bootstrap.parquet. Needs no warehouse: run "
                    "one per family on any worker, then import-fits.")
    fam.add_argument("points", type=Path, metavar="POINTS.parquet")
    fam.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    fam.add_argument("--bootstrap", type=_bootstrap_count, default=N_BOOT, metavar="B",
                     help=f"bootstrap resamples (default {N_BOOT}, as the pipeline; at most {MAX_BOOTSTRAP})")
    fam.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    fam.set_defaults(func=_cmd_fit_family)

    imp = sub.add_parser(
        "import-fits", help="load fit-family outputs into the warehouse's fits tables",
        description="Load every DIR/family=*/fit.parquet and bootstrap.parquet into fits.chinchilla and fits.bootstrap "
                    "(per family delete-then-insert in one transaction; importing twice is harmless). Every file is "
                    "checked first: columns, one set of fit settings, and points unchanged since the export.")
    imp.add_argument("dir", type=Path, metavar="DIR")
    imp.add_argument("--db", help="warehouse (default: $SCALING_DB or data/warehouse.duckdb)")
    imp.set_defaults(func=_cmd_import_fits)

    ui = sub.add_parser(
        "ui", help="start the Dagster UI (`dg dev`: webserver, daemon, code server) on this project",
        description="Run `dg dev` with DAGSTER_HOME (default $DAGSTER_HOME, else .dagster/, which must hold a "
                    "dagster.yaml: `make install` writes it) and this venv active. Ctrl-C or SIGTERM stops it and "
                    f"every process it started (those still running after {UI_STOP_GRACE:.0f} s are killed).")
    ui.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    ui.set_defaults(func=_cmd_ui)

    demo = sub.add_parser("demo-data", help="write a synthetic ladder with known truth and deliberate faults")
    demo.add_argument("dir", type=Path, help="output folder (created)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--families", type=int, default=6, help="number of model families (default 6)")
    demo.add_argument("--format", default="mixed",
                      help="csv, jsonl, parquet, tensorboard, mlflow, wandb, or mixed (one format per family)")
    demo.set_defaults(func=_cmd_demo)

    cmp = sub.add_parser("compare", help="what changed between two reports (the drift tables of the report)")
    cmp.add_argument("report_a", type=Path, help="the earlier report folder (or its summary.json)")
    cmp.add_argument("report_b", type=Path, help="the later report folder (or its summary.json)")
    cmp.set_defaults(func=_cmd_compare)
    return p


def _cmd_compare(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.reporting.compare import ReportNotFound, compare_reports

    try:
        print(compare_reports(args.report_a, args.report_b), end="")
    except ReportNotFound as exc:
        raise UserError(str(exc)) from None
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import dagster as dg
    import duckdb

    from scaling_pipeline.definitions import ASSETS, CHECKS
    from scaling_pipeline.defs.fit import fit_run_config
    from scaling_pipeline.defs.pool import PROCESS_TAG
    from scaling_pipeline.defs.resources import build_resources
    from scaling_pipeline.lib.process import ProcessId

    resources = build_resources(args.logs, args.db, args.reports, min_tokens=args.min_tokens,
                                min_steps=args.min_steps)
    settings = resources["settings"]
    if not settings.logs_path.is_dir():
        raise UserError(f"log root {str(settings.logs_path)!r} is not a folder (pass --logs DIR)")
    if args.wait < 0:
        raise UserError(f"--wait must be >= 0 seconds, got {args.wait}")
    db = Path(resources["duckdb"].database)
    db.parent.mkdir(parents=True, exist_ok=True)
    _open(str(db), read_only=False).close()  # a warehouse locked for longer than the lock wait fails here
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
        _print_summary(con, settings.reports_path, elapsed)
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


def _open(db: str, *, read_only: bool):
    """A DuckDB connection to ``db``; a lock held by another process (after the lock wait) and other open
    errors as UserError."""
    import duckdb

    from scaling_pipeline.defs.resources import WarehouseLocked, connect_waiting

    try:
        return connect_waiting(db, read_only=read_only)
    except WarehouseLocked as exc:
        raise UserError(str(exc)) from None
    except duckdb.IOException as exc:
        raise UserError(f"cannot open the warehouse {db!r}: {exc}") from None


def _print_summary(con, reports: Path, elapsed: float) -> None:
    from scaling_pipeline.lib.quality import Assessment

    q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    print(f"ingested  {q('SELECT count(*) FROM raw.files')} sources, {q('SELECT count(*) FROM raw.metrics')} "
          f"logged rows, {q('SELECT count(*) FROM raw.quarantine')} quarantined rows/files")
    excluded = q("SELECT count(*) FROM clean.exclusions WHERE kind = 'run'")
    print(f"cleaned   {q('SELECT count(*) FROM clean.points')} schedule-valid runs, {excluded} runs excluded")
    fits = con.execute("""SELECT family, status, n_points, E, A, B, alpha, beta, a_exponent, verdict, reasons,
                                 reason_messages FROM fits.chinchilla ORDER BY family""").fetchall()
    print(f"fitted    {len(fits)} families:")
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


def _cmd_fit(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.fitting.common import FitError
    from scaling_pipeline.lib.fitting.csv import fit_csv

    try:
        out = fit_csv(args.csv, form=args.form, loss=args.loss, delta=args.delta, family=args.family,
                      bootstrap=args.bootstrap, seed=args.seed, joint=args.joint, free_all=args.free_all,
                      x=args.x, y=args.y, vars=args.vars)
    except FitError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps(out))
        return 0
    ci = out.get("ci") or {}
    print(f"form {out['form']}  ({out['n_points']} points, loss {out['loss']}, delta {out['delta']})")
    for name, f in out.get("families", {}).items():
        print(f"  {name:<20} E {f['E']:.4g}  A {f['A']:.4g}  B {f['B']:.4g}  ({f['n_points']} points)")
    for name, value in out["params"].items():
        interval = f"  [{ci[name][0]:.6g}, {ci[name][1]:.6g}]" if name in ci else ""
        print(f"  {name:<8} {value:>14.6g}{interval}")
    print(f"objective {out['objective']:.10g}   fit time {out['fit_seconds'] * 1e3:.1f} ms")
    for w in out.get("diagnostics", {}).get("warnings", []):
        print(f"warning: {w}")
    return 0


def _cmd_curve_fit(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.curves.csv import curve_fit_files
    from scaling_pipeline.lib.curves.schedule import CurveError

    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    try:
        out = curve_fit_files(args.train, args.form, args.predict, args.schedules, n_boot=args.bootstrap,
                              seed=args.seed)
    except CurveError as exc:
        raise UserError(str(exc)) from None
    for note in out.pop("notes"):
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"form {out['form']}   objective {out['objective']:.6g}   fit time {out['fit_seconds']:.2f} s")
    for name, value in out["params"].items():
        interval = "  95% interval [{:.6g}, {:.6g}]".format(*out["ci"][name]) if "ci" in out else ""
        print(f"  {name:<6} {value:>12.6g}{interval}")
    for kind in ("train", "predictions"):
        for row in out[kind]:
            print(f"{kind:<11} {row['file']}: mean |L^-L|/L {row['mean_rel_err']:.3%}, max {row['max_rel_err']:.3%}")
    return 0


def _cmd_allocate(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.allocate import plans_from_fit
    from scaling_pipeline.lib.quality import EXTRAPOLATION_LIMIT, beyond_limit, plan_verdict

    if args.compute is None and args.target_loss is None:
        raise UserError("give at least one --compute FLOPS or a --target-loss L")
    if args.force and args.family is None:
        raise UserError("--force applies to --family only")
    assessment = None
    if args.fit is not None:
        try:
            fit = json.loads(sys.stdin.read() if str(args.fit) == "-" else args.fit.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read fit JSON {str(args.fit)!r}: {exc}") from None
        samples = None
    else:
        fit, samples, assessment, max_flops = _warehouse_fit(args.db, args.family)
        if not assessment.publishable and not args.force:
            raise UserError(f"the plan of family {args.family!r} is withheld (verdict {assessment.verdict}):\n"
                            + "".join(f"  {r.code}: {r.message}\n" for r in assessment.blocking)
                            + "(--force prints its plans anyway, each marked WITHHELD)")
    try:
        out = plans_from_fit(fit, args.compute, max_params=args.max_params, max_tokens=args.max_tokens,
                             unique_tokens=args.unique_tokens, inference_tokens=args.inference_tokens,
                             target_loss=args.target_loss, samples=samples, level=args.level)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if assessment is not None:
        out["assessment"] = {"verdict": assessment.verdict, "publishable": assessment.publishable,
                             "reasons": [r.to_dict() for r in assessment.reasons]}
        for p in out["plans"]:
            p["beyond_limit"] = p.get("compute") is not None and bool(beyond_limit(p["compute"], max_flops))
            p["verdict"] = plan_verdict(assessment.verdict, p["beyond_limit"]) if assessment.publishable else "withheld"
        if any(p["beyond_limit"] for p in out["plans"]):
            out["notes"].append(f"extrapolated: more than {EXTRAPOLATION_LIMIT:,.0f}x the family's largest run "
                                f"({max_flops:.3g} FLOPs), beyond what its runs support")
    if args.json:
        print(json.dumps(out))
        return 0
    if assessment is not None and not assessment.publishable:
        print(f"warning: the plan of family {args.family!r} is withheld; printed because of --force:", file=sys.stderr)
        for r in assessment.blocking:
            print(f"  {r.code}: {r.message}", file=sys.stderr)
    print(f"{'kind':<11} {'compute':>9} {'N (params)':>11} {'D (tokens)':>11} {'D/N':>7} {'loss':>7}  constraint"
          "  efficiency" + ("  verdict" if assessment is not None else ""))
    for p in out["plans"]:
        mark = f"  {p['verdict'].upper() if p['verdict'] == 'withheld' else p['verdict']}" if "verdict" in p else ""
        print(f"{p['kind']:<11} {p['compute']:9.3g} {p['n_params']:11.4g} {p['n_tokens']:11.4g} "
              f"{p['tokens_per_param']:7.1f} {p['loss']:7.4f}  {p['constraint']:<10}  {p['efficiency']:10.3f}{mark}")
        for name, (lo, hi) in (p.get("ci") or {}).items():
            print(f"{'':<11} {name} {args.level:.0%} interval [{lo:.4g}, {hi:.4g}]")
    for note in out["notes"]:
        print(f"note: {note}")
    return 0


def _existing_warehouse(db: str | None) -> str:
    """Path of the warehouse ``db`` (else $SCALING_DB, else the default), which must exist."""
    import os

    from scaling_pipeline.defs.resources import DEFAULT_DB

    path = db or os.environ.get("SCALING_DB", DEFAULT_DB)
    if not Path(path).is_file():
        raise UserError(f"warehouse {path!r} not found (run `scaling-pipeline run` first, or pass --db)")
    return path


def _warehouse_fit(db: str | None, family: str) -> tuple[dict, list | None, Assessment, float]:
    """A family's fit (as `fit --json` would print it), its bootstrap laws, its quality assessment and its
    largest run (FLOPs), from the warehouse."""
    from scaling_pipeline.lib.allocate import laws_from_samples
    from scaling_pipeline.lib.quality import Assessment

    path = _existing_warehouse(db)
    with _open(path, read_only=True) as con:
        row = con.execute("SELECT * FROM fits.chinchilla WHERE family = ?", [family]).df()
        if row.empty:
            known = [r[0] for r in con.execute("SELECT family FROM fits.chinchilla ORDER BY 1").fetchall()]
            raise UserError(f"no fit for family {family!r} in {path!r}; families: {known}")
        boot = con.execute("SELECT E, A, B, alpha, beta FROM fits.bootstrap WHERE family = ? ORDER BY sample",
                           [family]).df()
    r = row.iloc[0]
    if r.status != "ok":
        raise UserError(f"the fit of family {family!r} failed: {r.error}")
    fit = {"form": "chinchilla", "loss": r.loss, "delta": r.delta, "n_points": int(r.n_points),
           "params": {k: float(r[k]) for k in ("E", "A", "B", "alpha", "beta")}, "objective": float(r.objective),
           "ci": json.loads(r.ci or "{}"), "diagnostics": json.loads(r.diagnostics or "{}")}
    assessment = Assessment.from_columns(r.verdict, r.reasons, r.reason_messages)
    return fit, (laws_from_samples(boot) if len(boot) else None), assessment, float(r.max_observed_flops)


@contextmanager
def _family_file_errors() -> Iterator[None]:
    """Family-Parquet problems as UserErrors (exit 2 with the message)."""
    import duckdb

    from scaling_pipeline.lib.family_parquet import FamilyFileError

    try:
        yield
    except FamilyFileError as exc:
        raise UserError(str(exc)) from None
    except duckdb.CatalogException as exc:
        raise UserError(f"the warehouse has no clean.points (run `scaling-pipeline run` first): {exc}") from None


def _cmd_export_points(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.family_parquet import export_points

    with _open(_existing_warehouse(args.db), read_only=True) as con, _family_file_errors():
        paths = export_points(con, args.out)
    print(f"wrote {len(paths)} family points files under {args.out}")
    return 0


def _cmd_fit_family(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.family_parquet import fit_family_file
    from scaling_pipeline.lib.warehouse import FitSettings

    with _family_file_errors():
        out = fit_family_file(args.points, args.out, FitSettings(n_boot=args.bootstrap, seed=args.seed))
    print(f"wrote {out} and {out.with_name('bootstrap.parquet').name}")
    return 0


def _cmd_import_fits(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.family_parquet import import_fits

    with _open(_existing_warehouse(args.db), read_only=False) as con:
        with _family_file_errors():
            families = import_fits(con, args.dir)
        settings = con.execute("SELECT settings FROM fits.chinchilla WHERE family = ?", [families[0]]).fetchone()[0]
    print(f"imported {len(families)} families from {args.dir} (fit settings {settings}); the pipeline's fit stage "
          "keeps them while points and its settings are unchanged")
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    import os
    import signal
    import subprocess

    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster").resolve()
    if not (home / "dagster.yaml").is_file():
        raise UserError(f"{home / 'dagster.yaml'} is missing (run `make install`, or set DAGSTER_HOME to a folder "
                        "holding one)")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "DAGSTER_HOME": str(home), "VIRTUAL_ENV": sys.prefix,
           "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])}
    proc = subprocess.Popen([str(bin_dir / "dg"), "dev", "--host", args.host, "--port", str(args.port)], env=env,
                            start_new_session=True)  # its own process group: stopped as one below
    stopping: list[float] = []

    def stop(signo, _frame) -> None:
        if not stopping:
            print(f"stopping the UI ({signal.Signals(signo).name})", file=sys.stderr, flush=True)
            stopping.append(time.monotonic())
        _signal_group(proc.pid, signal.SIGINT)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    while proc.poll() is None and not (stopping and time.monotonic() - stopping[0] > UI_STOP_GRACE):
        time.sleep(0.1)
    _signal_group(proc.pid, signal.SIGKILL)  # whatever dg dev left behind (code server, daemon, webserver)
    proc.wait()
    return 0 if stopping else proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    import os

    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _cmd_demo(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.simulate import write_demo

    try:
        summary = write_demo(args.dir, seed=args.seed, fmt=args.format, n_families=args.families)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote demo ladder to {args.dir} (seed {args.seed}, format {args.format}): {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
