"""The argument parser of ``scaling-pipeline``: every subcommand, its options and its handler."""

from __future__ import annotations

import argparse
from pathlib import Path

from scaling_pipeline.lib.settings import HUBER_DELTA, LOSSES, MAX_BOOTSTRAP, N_BOOT

from .common import bootstrap_count, column_list, settings_arg
from .families import cmd_export_points, cmd_fit_family, cmd_import_fits
from .fitting import cmd_allocate, cmd_curve_fit, cmd_fit
from .run import SLOT_WAIT_SECONDS, cmd_run
from .tools import UI_STOP_GRACE, cmd_compare, cmd_demo, cmd_ui

DESCRIPTION = ("run the asset graph, fit a CSV of runs, plan a budget, fit families on separate workers "
               "(per-family Parquet), make demo logs")


def build_parser() -> argparse.ArgumentParser:
    from scaling_pipeline.lib.laws import FORMS

    p = argparse.ArgumentParser(prog="scaling-pipeline", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="materialize the whole asset graph in-process and print a summary")
    run.add_argument("--logs", help="log root folder (default: $SCALING_LOGS or data/)")
    run.add_argument("--db", help="DuckDB warehouse file (default: $SCALING_DB or data/warehouse.duckdb)")
    run.add_argument("--reports", help="report folder (default: $SCALING_REPORTS or reports/)")
    settings_arg(run)
    run.add_argument("--min-tokens", type=float, help="runs trained on fewer tokens give no point (default: the "
                                                      "settings file's min_tokens, else 0)")
    run.add_argument("--min-steps", type=int, help="runs with fewer optimizer steps give no point (default: the "
                                                   "settings file's min_steps, else 0)")
    run.add_argument("--bootstrap", type=bootstrap_count, metavar="B",
                     help=f"bootstrap resamples per family (default: the settings file's bootstrap, else {N_BOOT}; "
                          f"at most {MAX_BOOTSTRAP})")
    run.add_argument("--seed", type=int, help="bootstrap seed (default: the settings file's seed, else 0)")
    run.add_argument("--wait", type=float, default=SLOT_WAIT_SECONDS, metavar="SECONDS",
                     help="how long to wait for another run that holds the warehouse (default "
                          f"{SLOT_WAIT_SECONDS:.0f} s); runs whose process is gone are marked failed at once")
    run.set_defaults(func=cmd_run)

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
    fit.add_argument("--vars", type=column_list, metavar="COL,COL,...",
                     help="input columns of a form whose inputs you name (default: the form's)")
    fit.add_argument("--loss", default="huber", choices=LOSSES,
                     help="objective: huber = sum of Huber(delta) of log residuals (Epoch/Hoffmann; default)")
    fit.add_argument("--delta", type=float, default=HUBER_DELTA, help=f"Huber delta (default {HUBER_DELTA:g})")
    fit.add_argument("--family", help="fit only the rows of this family")
    fit.add_argument("--where", metavar="FILTER",
                     help="keep the rows matching FILTER: clauses COL, not COL, COL OP VALUE (OP one of == != < <= > "
                          ">=; VALUE a number, 'text', true or false) joined by 'and', e.g. \"not epoch_excluded and "
                          "n_params >= 1e7\"")
    fit.add_argument("--bootstrap", type=bootstrap_count, default=0, metavar="B",
                     help=f"bootstrap resamples for intervals (default 0: none; at most {MAX_BOOTSTRAP})")
    fit.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    fit.add_argument("--joint", action="store_true",
                     help="chinchilla over all families at once: shared alpha, beta; per-family E, A, B")
    fit.add_argument("--free-all", action="store_true",
                     help="data_constrained: fit E, A, B, alpha, beta too instead of the published constants")
    fit.add_argument("--json", action="store_true", help="print one JSON object")
    fit.set_defaults(func=cmd_fit)

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
    curve.set_defaults(func=cmd_curve_fit)

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
    alloc.add_argument("--level", type=float, help="interval level (default: the settings file's level, else 0.95)")
    settings_arg(alloc)
    alloc.add_argument("--json", action="store_true", help="print one JSON object")
    alloc.add_argument("--force", action="store_true",
                       help="with --family: print the plans of a family whose plan is withheld, each marked WITHHELD "
                            "(without it such a family exits 2 with the reasons)")
    alloc.set_defaults(func=cmd_allocate)

    export = sub.add_parser(
        "export-points", help="write clean.points as one Parquet file per family (for fit-family on other workers)",
        description="Write the warehouse's clean.points as DIR/family=<safe name>/points.parquet, one file per "
                    "family (the real family name is in the file). Reads the warehouse only.")
    export.add_argument("--db", help="warehouse (default: $SCALING_DB or data/warehouse.duckdb)")
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    export.set_defaults(func=cmd_export_points)

    fam = sub.add_parser(
        "fit-family", help="fit one family's points.parquet and write its fit and bootstrap as Parquet",
        description="Fit the family in POINTS.parquet (from export-points) exactly as the pipeline's fit stage does "
                    "and write DIR/family=<safe name>/fit.parquet and bootstrap.parquet. Needs no warehouse: run "
                    "one per family on any worker, then import-fits.")
    fam.add_argument("points", type=Path, metavar="POINTS.parquet")
    fam.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    settings_arg(fam)
    fam.add_argument("--bootstrap", type=bootstrap_count, metavar="B",
                     help=f"bootstrap resamples (default: the settings file's bootstrap, else {N_BOOT}, as the "
                          f"pipeline; at most {MAX_BOOTSTRAP})")
    fam.add_argument("--seed", type=int, help="bootstrap seed (default: the settings file's seed, else 0)")
    fam.set_defaults(func=cmd_fit_family)

    imp = sub.add_parser(
        "import-fits", help="load fit-family outputs into the warehouse's fits tables",
        description="Load every DIR/family=*/fit.parquet and bootstrap.parquet into fits.chinchilla and fits.bootstrap "
                    "(per family delete-then-insert in one transaction; importing twice is harmless). Every file is "
                    "checked first: columns, one set of fit settings, and points unchanged since the export.")
    imp.add_argument("dir", type=Path, metavar="DIR")
    imp.add_argument("--db", help="warehouse (default: $SCALING_DB or data/warehouse.duckdb)")
    imp.set_defaults(func=cmd_import_fits)

    ui = sub.add_parser(
        "ui", help="start the Dagster UI (`dg dev`: webserver, daemon, code server) on this project",
        description="Run `dg dev` with DAGSTER_HOME (default $DAGSTER_HOME, else .dagster/, which must hold a "
                    "dagster.yaml: `make install` writes it) and this venv active. Ctrl-C or SIGTERM stops it and "
                    f"every process it started (those still running after {UI_STOP_GRACE:.0f} s are killed).")
    ui.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    ui.set_defaults(func=cmd_ui)

    demo = sub.add_parser("demo-data", help="write a synthetic ladder with known truth and deliberate faults")
    demo.add_argument("dir", type=Path, help="output folder (created)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--families", type=int, default=6, help="number of model families (default 6)")
    demo.add_argument("--format", default="mixed",
                      help="csv, jsonl, parquet, tensorboard, mlflow, wandb, or mixed (one format per family)")
    demo.set_defaults(func=cmd_demo)

    cmp = sub.add_parser("compare", help="what changed between two reports (the drift tables of the report)")
    cmp.add_argument("report_a", type=Path, help="the earlier report folder (or its summary.json)")
    cmp.add_argument("report_b", type=Path, help="the later report folder (or its summary.json)")
    cmp.set_defaults(func=cmd_compare)
    return p
