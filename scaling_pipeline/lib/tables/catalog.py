"""Every warehouse table: its name, columns (name, DuckDB type, description), key and kind; and the typed
interval columns of the fits."""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import KEPT, RAW, Column, Table, View, _cols

# --- raw: what the readers produced -----------------------------------------------------------------
_METRICS = _cols(
    ("run_id", "VARCHAR", "run identifier (never NULL)"),
    ("family", "VARCHAR", "model family; NULL when the log does not say (filled from run metadata in clean)"),
    ("step", "BIGINT", "optimizer steps done (never NULL)"),
    ("tokens", "DOUBLE", "tokens seen at this step (NULL: derived from step x batch_tokens)"),
    ("train_loss", "DOUBLE", "training loss, nats/token; NULL when not logged; NaN/inf kept as logged"),
    ("eval_loss", "DOUBLE", "evaluation loss, nats/token; NULL when not evaluated at this step"),
    ("lr", "DOUBLE", "learning rate at this step"),
    ("wall_time", "DOUBLE", "seconds since the run's first launch"),
    ("record", "BIGINT", "1-based line (text formats) or record/event index in the source"),
)
_RUNS = _cols(
    ("run_id", "VARCHAR", "run identifier"),
    ("family", "VARCHAR", "model family"),
    ("n_params", "DOUBLE", "parameters N as the run names them (total or non-embedding: unsaid)"),
    ("n_params_total", "DOUBLE", "all parameters, embeddings included"),
    ("n_params_non_embedding", "DOUBLE", "parameters without the (input/output) embeddings"),
    ("tokens_planned", "DOUBLE", "tokens the LR schedule was planned for (D of a completed run)"),
    ("batch_tokens", "DOUBLE", "tokens per optimizer step"),
    ("total_steps", "BIGINT", "steps the schedule was planned for"),
    ("warmup_steps", "BIGINT", "warm-up steps"),
    ("schedule", "VARCHAR", "LR schedule, e.g. cosine, linear, constant, wsd"),
    ("status", "VARCHAR", "as logged by the trainer (completed/diverged/...); informative only"),
    ("unique_tokens", "DOUBLE", "unique tokens U in the data (data-constrained runs)"),
    ("lr", "DOUBLE", "peak learning rate"),
    ("extra", "VARCHAR", "JSON object with every other metadata field"),
    ("location", "VARCHAR", "where in the source: 'line 3', 'record 2', 'config.yaml', 'params', ..."),
)
_QUARANTINE = _cols(
    ("source_path", "VARCHAR", "the file or run directory, relative to the log root"),
    ("reader", "VARCHAR", "reader (format) that rejected it"),
    ("location", "VARCHAR", "'line 17', 'record 3', 'file', 'metrics/train_loss line 4', ..."),
    ("field", "VARCHAR", "column/key at fault; NULL when the whole record/file is bad"),
    ("reason", "VARCHAR", "what was wrong and what was expected"),
    ("scope", "VARCHAR", "'field' (field left out), 'row' (row dropped) or 'file' (nothing kept)"),
)
_SOURCE = Column("source_path", "VARCHAR", "the source unit (file or run directory), relative to the log root")

# --- fits: intervals are typed columns <column>_lo / <column>_hi --------------------------------------
LAW_PARAMS = ("E", "A", "B", "alpha", "beta")  # L(N, D) = E + A/N^alpha + B/D^beta
# bootstrap interval key (as the fitter names it) -> the fits.chinchilla column it bounds
INTERVALS = {**{p: p for p in LAW_PARAMS}, "a": "a_exponent"}
_PARAM_DOCS = {"E": "irreducible loss E (nats/token)", "A": "A of the A/N^alpha term", "B": "B of the B/D^beta term",
               "alpha": "parameter exponent alpha", "beta": "data exponent beta",
               "a_exponent": "a = beta/(alpha+beta): N* grows as C^a"}
_INTERVAL_COLUMNS = tuple(Column(f"{col}_{end}", "DOUBLE", f"{'lower' if end == 'lo' else 'upper'} bootstrap "
                                 f"percentile bound of {col} (NULL without a bootstrap)")
                          for col in INTERVALS.values() for end in ("lo", "hi"))

_TABLES = [
    Table("raw.files", "One row per source unit (file or run directory) and how its ingest went.", _cols(
        ("source_path", "VARCHAR", "the source unit, relative to the log root (posix)"),
        ("reader", "VARCHAR", "reader (format) used"),
        ("size_bytes", "BIGINT", "bytes read"),
        ("sha256", "VARCHAR", "hash of the unit's members and the readers' version; NULL: retried next run"),
        ("n_metric_rows", "BIGINT", "rows stored in raw.metrics"),
        ("n_run_rows", "BIGINT", "rows stored in raw.runs"),
        ("n_rejections", "BIGINT", "rows of raw.quarantine"),
        ("status", "VARCHAR", "'ok' | 'partial' | 'quarantined'"),
        ("ingested_at", "TIMESTAMP", "when it was ingested (UTC)"),
    ), key=("source_path",), kind=RAW),
    Table("raw.metrics", "One row per logged step, as read from the logs (duplicates, NaN/inf kept).",
          (*_METRICS, _SOURCE), kind=RAW),
    Table("raw.runs", "Run metadata (manifests, configs, params, hparams), one row per source that names a run.",
          (*_RUNS, _SOURCE), kind=RAW),
    Table("raw.quarantine", "Rows, fields and files that could not be read, with the reason.",
          (*_QUARANTINE, Column("quarantined_at", "TIMESTAMP", "when it was rejected (UTC)")), kind=RAW),
    Table("clean.runs", "One row per run: the metadata its sources agree on.", _cols(
        ("run_id", "VARCHAR", "run identifier"),
        ("family", "VARCHAR", "model family ('default' when no source names one; NULL when sources disagree)"),
        *((c.name, c.type, c.description) for c in _RUNS[2:13]),
        ("n_meta_sources", "BIGINT", "sources with metadata for the run"),
        ("n_metric_sources", "BIGINT", "sources with logged steps of the run"),
    ), key=("run_id",)),
    Table("clean.steps", "One row per (run, step): last write wins, finite losses, warm-up cut.", _cols(
        ("run_id", "VARCHAR", "run identifier"),
        ("family", "VARCHAR", "model family"),
        ("step", "BIGINT", "optimizer steps done"),
        ("tokens", "DOUBLE", "tokens seen"),
        ("train_loss", "DOUBLE", "training loss, nats/token (NULL: not logged or not finite)"),
        ("eval_loss", "DOUBLE", "evaluation loss, nats/token (NULL: not logged or not finite)"),
        ("lr", "DOUBLE", "learning rate"),
        ("wall_time", "DOUBLE", "seconds since the run's first launch"),
    )),
    Table("clean.points", "One schedule-valid scaling point per completed run.", _cols(
        ("run_id", "VARCHAR", "run identifier"),
        ("family", "VARCHAR", "model family"),
        ("n_params", "DOUBLE", "parameters N in the family's param_convention"),
        ("n_tokens", "DOUBLE", "tokens seen D"),
        ("flops", "DOUBLE", "training compute C = 6ND (FLOPs)"),
        ("loss", "DOUBLE", "final loss (nats/token)"),
        ("loss_source", "VARCHAR", "'final_eval' (the eval at the last step) or 'train_shrunk_line_last_<k>' (the "
                                   "last k train losses' mean plus their least-squares trend to the last step, "
                                   "shrunk by its evidence)"),
        ("loss_se", "DOUBLE", "standard error of loss from the residuals of the train losses it comes from "
                              "(nats/token; NULL for final_eval and from under 3 train losses)"),
        ("final_step", "BIGINT", "last logged step"),
        ("unique_tokens", "DOUBLE", "unique tokens U (NULL when unknown)"),
        ("lr", "DOUBLE", "peak learning rate (run metadata, else the largest logged; NULL when unknown)"),
        ("param_convention", "VARCHAR", "'non_embedding' or 'total'"),
        ("n_params_source", "VARCHAR", "the run column N came from"),
    ), key=("run_id",)),
    Table("clean.exclusions", "Every excluded run, flagged run and dropped row group, with the reason.", _cols(
        ("run_id", "VARCHAR", "run identifier"),
        ("family", "VARCHAR", "model family"),
        ("kind", "VARCHAR", "'run' (excluded), 'rows' (rows dropped) or 'flag' (kept, flagged)"),
        ("reason", "VARCHAR", "reason code"),
        ("detail", "VARCHAR", "human-readable detail"),
        ("step", "BIGINT", "first step concerned (NULL: none)"),
        ("n_rows", "BIGINT", "rows dropped (kind 'rows')"),
    )),
    Table("clean.lr_sweeps", "Every candidate run of a (family, N, D) logged at two or more learning rates.", _cols(
        ("family", "VARCHAR", "model family"),
        ("n_params", "DOUBLE", "parameters N"),
        ("n_tokens", "DOUBLE", "tokens D"),
        ("run_id", "VARCHAR", "run identifier"),
        ("lr", "DOUBLE", "peak learning rate"),
        ("loss", "DOUBLE", "final loss (nats/token)"),
        ("best", "BOOLEAN", "the lowest loss of its (N, D)"),
    )),
    Table("clean.lr_optima", "Per swept (family, N, D): the optimal learning rate.", _cols(
        ("family", "VARCHAR", "model family"),
        ("n_params", "DOUBLE", "parameters N (median of the sweep)"),
        ("n_tokens", "DOUBLE", "tokens D (median of the sweep)"),
        ("n_lrs", "BIGINT", "distinct learning rates swept"),
        ("lr_best", "DOUBLE", "the best logged learning rate"),
        ("loss_best", "DOUBLE", "its final loss (nats/token)"),
        ("lr_opt", "DOUBLE", "vertex of the parabola in ln LR"),
        ("loss_opt", "DOUBLE", "the parabola's minimum (nats/token)"),
        ("curvature", "DOUBLE", "d^2 loss / d(ln LR)^2 (nats)"),
        ("status", "VARCHAR", "'ok' or why no optimum"),
        ("detail", "VARCHAR", "how it was placed"),
    )),
    Table("clean.lr_scaling", "Per family with swept sizes: LR* = c * N^-gamma (* D^-delta).", _cols(
        ("family", "VARCHAR", "model family"),
        ("n_optima", "BIGINT", "optima fitted"),
        ("n_sizes", "BIGINT", "distinct N among them"),
        ("c", "DOUBLE", "coefficient c"),
        ("gamma", "DOUBLE", "N exponent gamma"),
        ("gamma_lo", "DOUBLE", "lower bound of gamma"),
        ("gamma_hi", "DOUBLE", "upper bound of gamma"),
        ("delta", "DOUBLE", "D exponent delta (NaN: D not fitted)"),
        ("delta_lo", "DOUBLE", "lower bound of delta"),
        ("delta_hi", "DOUBLE", "upper bound of delta"),
        ("residual_sd", "DOUBLE", "sd of ln LR* about the fit"),
        ("level", "DOUBLE", "interval level"),
        ("status", "VARCHAR", "'ok' or why no fit"),
        ("detail", "VARCHAR", "how it was fitted"),
    ), key=("family",)),
    Table("clean.inputs", "The digest of what the clean tables were made from (unchanged: they are kept).",
          _cols(("input_hash", "VARCHAR", "SHA-256 of raw.metrics, raw.runs, the cleaning settings, the code and the "
                                          "clean tables written from them"))),
    Table("fits.chinchilla", "Per family: the Chinchilla fit, its bootstrap intervals and quality assessment.", (
        *_cols(
            ("family", "VARCHAR", "model family"),
            ("status", "VARCHAR", "'ok' or 'failed'"),
            ("error", "VARCHAR", "why the fit failed"),
            ("publishable", "BOOLEAN", "the quality assessment lets its plans be published"),
            ("verdict", "VARCHAR", "quality verdict"),
            ("reasons", "VARCHAR[]", "reason codes of the verdict"),
            ("reason_messages", "VARCHAR[]", "the reasons, in words"),
            *((p, "DOUBLE", _PARAM_DOCS[p]) for p in LAW_PARAMS),
            ("a_exponent", "DOUBLE", _PARAM_DOCS["a_exponent"]),
            ("G", "DOUBLE", "G = (alpha A / beta B)^(1/(alpha+beta)): N* = G (C/6)^a"),
            ("objective", "DOUBLE", "minimised objective (sum of Huber losses of log-loss residuals)"),
            ("loss", "VARCHAR", "objective's loss function ('huber', ...)"),
            ("delta", "DOUBLE", "Huber delta"),
            ("n_points", "BIGINT", "points fitted"),
            ("fit_seconds", "DOUBLE", "wall time of the fit (s)"),
            ("max_observed_flops", "DOUBLE", "compute of the largest run (FLOPs)"),
        ),
        *_INTERVAL_COLUMNS,
        *_cols(
            ("diagnostics", "VARCHAR", "JSON: the fitter's free-form diagnostics (residuals, bounds, conditioning)"),
            ("backtest", "VARCHAR", "JSON: fit without the largest-compute runs and its predictions of them"),
            ("warnings", "VARCHAR[]", "the fitter's warnings"),
            ("settings", "VARCHAR", "JSON: the fit settings (a change refits every family)"),
            ("input_hash", "VARCHAR", "SHA-256 of the family's points and the settings"),
            ("fitted_at", "TIMESTAMP", "when it was fitted", "current_timestamp"),
        )), key=("family",), kind=KEPT),
    Table("fits.bootstrap", "Per family: the law's parameters refitted on each bootstrap resample.", (
        Column("family", "VARCHAR", "model family"), Column("sample", "INTEGER", "resample number"),
        *(Column(p, "DOUBLE", _PARAM_DOCS[p]) for p in LAW_PARAMS)), key=("family", "sample"), kind=KEPT),
    Table("fits.comparison", "Per family and law form (fitted to the runs its class selects): scores and choice.",
          _cols(
        ("family", "VARCHAR", "model family"), ("form", "VARCHAR", "law form (lib/laws registry)"),
        ("subset", "VARCHAR", "which runs the form was fitted to ('' : all)"),
        ("applicable", "BOOLEAN", "the form applies to this family's data"),
        ("status", "VARCHAR", "ok, failed or not_applicable"), ("reason", "VARCHAR", "why not applicable or failed"),
        ("n_points", "BIGINT", "runs fitted"), ("n_fitted_params", "INTEGER", "fitted parameters (fixed excluded)"),
        ("objective", "DOUBLE", "fit objective (see objective_kind)"),
        ("objective_kind", "VARCHAR", "huber (sum, with delta) or mse"),
        ("rmse_log", "DOUBLE", "rms log residual"), ("aic", "DOUBLE", "AIC, Gaussian on log residuals"),
        ("bic", "DOUBLE", "BIC, Gaussian on log residuals"),
        ("backtest_mean_error", "DOUBLE", "mean relative error on held-out largest-compute runs"),
        ("backtest_max_error", "DOUBLE", "largest relative error on held-out runs"),
        ("backtest_n_holdout", "INTEGER", "held-out runs"), ("backtest_note", "VARCHAR", "why no backtest"),
        ("has_allocation", "BOOLEAN", "the form gives a compute-optimal allocation"),
        ("verdict", "VARCHAR", "quality verdict, for forms with an allocation"),
        ("eligible", "BOOLEAN", "plans may be made from it (allocation and publishable)"),
        ("chosen", "BOOLEAN", "the form plans are made from"),
        ("interval_source", "VARCHAR", "where the parameter intervals come from"),
        ("assessed_with", "VARCHAR", "what the quality assessment read (JSON; NULL: the family's own assessment)"),
    ), key=("family", "form", "subset"), kind=KEPT),
    Table("fits.comparison_params", "Per family and form: each fitted parameter with its interval.", _cols(
        ("family", "VARCHAR", "model family"), ("form", "VARCHAR", "law form"), ("subset", "VARCHAR", "runs fitted"),
        ("param", "VARCHAR", "parameter name"), ("value", "DOUBLE", "fitted value"),
        ("lo", "DOUBLE", "lower interval bound (NULL: none)"), ("hi", "DOUBLE", "upper interval bound (NULL: none)"),
    ), kind=KEPT),
    Table("fits.curve_points", "Curve-law points: the loss a run of a long run's size and recipe would reach decayed "
          "at a smaller budget, from the family's chosen candidate: the long run's fitted Multi-Power Law, or its "
          "observed curve read at the budget's training time (setting curve_law_points; the choice in "
          "fits.curve_sources.detail).", _cols(
        ("run_id", "VARCHAR", "'<source run>@<fraction>': the source run decayed at that fraction of its tokens"),
        ("family", "VARCHAR", "model family"),
        ("n_params", "DOUBLE", "parameters N (the source run's, as in clean.points)"),
        ("n_tokens", "DOUBLE", "token budget D of the virtual run"),
        ("flops", "DOUBLE", "C = 6ND (FLOPs)"),
        ("loss", "DOUBLE", "estimated final loss at D, on the scale of the source run's final loss (nats/token)"),
        ("loss_sd", "DOUBLE", "standard error of loss from the curve fit's residuals (nats/token)"),
        ("loss_source", "VARCHAR", "'curve_law' (observed points in clean.points say final_eval/"
                                   "train_shrunk_line_last_k)"),
        ("source_run", "VARCHAR", "the long run whose curve law gave the point"),
        ("fraction", "DOUBLE", "D / the source run's tokens"),
        ("final_step", "BIGINT", "the virtual run's last step (steps of the source run's batch)"),
        ("observed_run", "VARCHAR", "backtest: a run in clean.points at this N and D (within 2%), else NULL"),
        ("observed_loss", "DOUBLE", "backtest: that run's final loss (nats/token)"),
    ), key=("run_id",)),
    Table("fits.curve_sources", "Per size's longest run: its curve-law fit for curve-law points, or why it gave none.",
          _cols(
        ("family", "VARCHAR", "model family"),
        ("run_id", "VARCHAR", "the size's longest completed run"),
        ("n_params", "DOUBLE", "parameters N"),
        ("n_tokens", "DOUBLE", "tokens D of the run"),
        ("status", "VARCHAR", "'ok' or 'excluded'"),
        ("reason", "VARCHAR", "exclusion reason code (NULL when ok)"),
        ("detail", "VARCHAR", "why, or the fit's summary"),
        ("n_points", "BIGINT", "curve-law points it gave"),
        ("rms", "DOUBLE", "RMS relative residual of the curve fit"),
    )),
    Table("plans.allocations", "Compute-optimal N*, D* and predicted loss per publishable family and budget.", _cols(
        ("family", "VARCHAR", "model family"),
        ("compute", "DOUBLE", "budget C (FLOPs)"),
        ("n_params", "DOUBLE", "compute-optimal parameters N*"),
        ("n_tokens", "DOUBLE", "compute-optimal tokens D*"),
        ("tokens_per_param", "DOUBLE", "D*/N*"),
        ("loss", "DOUBLE", "predicted loss (nats/token)"),
        ("constraint", "VARCHAR", "binding constraint, if any"),
        ("efficiency", "DOUBLE", "compute efficiency relative to the unconstrained optimum"),
        ("n_params_lo", "DOUBLE", "lower bootstrap bound of N*"),
        ("n_params_hi", "DOUBLE", "upper bootstrap bound of N*"),
        ("n_tokens_lo", "DOUBLE", "lower bootstrap bound of D*"),
        ("n_tokens_hi", "DOUBLE", "upper bootstrap bound of D*"),
        ("loss_lo", "DOUBLE", "lower bootstrap bound of the loss"),
        ("loss_hi", "DOUBLE", "upper bootstrap bound of the loss"),
        ("extrapolation", "DOUBLE", "budget / largest observed run"),
        ("beyond_limit", "BOOLEAN", "beyond the extrapolation limit"),
        ("verdict", "VARCHAR", "the family's verdict for this budget"),
        ("publishable", "BOOLEAN", "within the extrapolation limit"),
        ("param_convention", "VARCHAR", "parameter count used as N: total or non_embedding"),
        ("form", "VARCHAR", "the law form the plan is made from (fits.comparison.chosen)"),
    ), key=("family", "compute")),
    Table("forecasts.in_flight", "Per run in flight: its final loss forecast, interval, the family law's loss and a flag.",
          _cols(
        ("family", "VARCHAR", "model family"), ("run_id", "VARCHAR", "run identifier"),
        ("n_params", "DOUBLE", "parameters N"), ("n_tokens", "DOUBLE", "planned training tokens D"),
        ("last_step", "BIGINT", "last logged step"), ("total_steps", "BIGINT", "planned steps"),
        ("progress", "DOUBLE", "last_step / total_steps"), ("schedule", "VARCHAR", "LR schedule kind"),
        ("forecast", "DOUBLE", "forecast final loss (nats/token)"), ("lo", "DOUBLE", "lower bound of the forecast"),
        ("hi", "DOUBLE", "upper bound of the forecast"), ("level", "DOUBLE", "two-sided level of [lo, hi]"),
        ("sigma", "DOUBLE", "forecast standard error (nats/token)"),
        ("law", "DOUBLE", "the family's L(N, D) at the planned (N, D), nats/token"),
        ("tolerance", "DOUBLE", "deviation allowed before off_track (nats/token)"),
        ("deviation", "DOUBLE", "forecast - law (nats/token)"), ("flag", "VARCHAR", "on_track or off_track"),
        ("message", "VARCHAR", "what the flag means for this run"), ("n_points", "BIGINT", "logged points used"),
        ("curve_law", "VARCHAR", "the run's fitted curve-law parameters (JSON)"),
    ), kind=KEPT),
    Table("forecasts.curves", "Per run in flight: the fitted curve and forecast band at up to 60 steps.", _cols(
        ("family", "VARCHAR", "model family"), ("run_id", "VARCHAR", "run identifier"), ("step", "BIGINT", "step"),
        ("lr", "DOUBLE", "learning rate at the step"), ("fitted", "DOUBLE", "curve law's loss (nats/token)"),
        ("lo", "DOUBLE", "lower band"), ("hi", "DOUBLE", "upper band"),
    ), kind=KEPT),
    Table("forecasts.backtest", "Completed runs cut at 25/50/75% of their steps, forecast, and the loss they reached.",
          _cols(
        ("family", "VARCHAR", "model family"), ("run_id", "VARCHAR", "run identifier"),
        ("fold", "INTEGER", "the fit forecasting it: NULL the family's curve fit (the run was left out of it), k the "
                            "family refitted without fold k of that fit's runs, the run's fold (cross-fitting)"),
        ("cut", "DOUBLE", "fraction of the steps seen"), ("cut_step", "BIGINT", "last step seen"),
        ("total_steps", "BIGINT", "the run's steps"), ("forecast", "DOUBLE", "forecast final loss (nats/token)"),
        ("lo", "DOUBLE", "lower bound"), ("hi", "DOUBLE", "upper bound"), ("actual", "DOUBLE", "final loss reached"),
        ("error", "DOUBLE", "forecast - actual (nats/token)"), ("rel_error", "DOUBLE", "error / actual"),
        ("covered", "BOOLEAN", "actual inside [lo, hi]"),
    ), kind=KEPT),
    Table("forecasts.exclusions", "Runs that got no curve fit or forecast, with the reason.", _cols(
        ("family", "VARCHAR", "model family"), ("run_id", "VARCHAR", "run identifier"),
        ("reason", "VARCHAR", "reason code"), ("detail", "VARCHAR", "what is missing"),
    ), kind=KEPT),
    Table("forecasts.families", "Per family with runs in flight: its shared curve-law fit.", _cols(
        ("family", "VARCHAR", "model family"), ("n_curves", "BIGINT", "completed curves fitted"),
        ("n_points", "BIGINT", "points fitted"), ("rms", "DOUBLE", "rms log residual"),
        ("end_sigma", "DOUBLE", "scatter of final loss around the curve's end (nats/token)"),
        ("end_offset", "DOUBLE", "mean final loss - curve end (nats/token)"),
        ("shared", "VARCHAR", "shared curve-law parameters (JSON)"), ("status", "VARCHAR", "ok or why not"),
        ("detail", "VARCHAR", "detail of the status"),
    ), kind=KEPT),
    Table("forecasts.inputs", "Per family: the hash of what its stored forecasts were made from (unchanged: kept).",
          _cols(("family", "VARCHAR", "model family"),
                ("input_hash", "VARCHAR", "SHA-256 of the family's inputs, the settings and the code")),
          key=("family",), kind=KEPT),
    Table("forecasts.sources", "Per source unit of raw.files and run it logs steps of: what forecasts.inputs hashes "
          "for clean.steps (a run's steps follow from its sources and its clean.runs row).", _cols(
        ("source_path", "VARCHAR", "the source unit (raw.files)"),
        ("fingerprint", "VARCHAR", "its sha256 and ingest time: a change means its raw rows changed"),
        ("run_id", "VARCHAR", "a run it logs steps of (NULL: none)"),
    ), kind=KEPT),
]
TABLES: dict[str, Table] = {t.name: t for t in _TABLES}

RAW_FILES, RAW_METRICS, RAW_RUNS, RAW_QUARANTINE = (TABLES[f"raw.{t}"] for t in ("files", "metrics", "runs", "quarantine"))
CLEAN_RUNS, CLEAN_STEPS, CLEAN_POINTS, CLEAN_EXCLUSIONS = (
    TABLES[f"clean.{t}"] for t in ("runs", "steps", "points", "exclusions"))
CLEAN_LR_SWEEPS, CLEAN_LR_OPTIMA, CLEAN_LR_SCALING = (
    TABLES[f"clean.lr_{t}"] for t in ("sweeps", "optima", "scaling"))
CLEAN_INPUTS = TABLES["clean.inputs"]
FITS_CHINCHILLA, FITS_BOOTSTRAP = TABLES["fits.chinchilla"], TABLES["fits.bootstrap"]
FITS_COMPARISON, FITS_COMPARISON_PARAMS = TABLES["fits.comparison"], TABLES["fits.comparison_params"]
FITS_CURVE_POINTS, FITS_CURVE_SOURCES = TABLES["fits.curve_points"], TABLES["fits.curve_sources"]
PLANS_ALLOCATIONS = TABLES["plans.allocations"]
FORECASTS = tuple(TABLES[f"forecasts.{t}"] for t in ("in_flight", "curves", "backtest", "exclusions", "families",
                                                        "inputs"))
FORECASTS_IN_FLIGHT, FORECASTS_INPUTS = FORECASTS[0], FORECASTS[-1]
FORECASTS_SOURCES = TABLES["forecasts.sources"]

NO_FORECAST = "forecast"  # pipeline.exclusions: stage and kind of a run in flight the forecast stage left out
NO_CURVE_LAW = "curve_law"  # pipeline.exclusions: kind of a source run that gave no curve-law points (stage 'fit')


def _as_clean(kind: str) -> str:
    """The clean.exclusions columns of a table with run_id, family, reason and detail: ``kind``, no step or rows."""
    return ", ".join({"kind": f"'{kind}'", "step": "NULL", "n_rows": "NULL"}.get(n, n) for n in CLEAN_EXCLUSIONS.names)


PIPELINE_EXCLUSIONS = View(
    "pipeline.exclusions", "Every exclusion users read: clean.exclusions, the curve-law sources that gave no points "
    "(fits.curve_sources with status 'excluded') and forecasts.exclusions, with the stage.",
    (Column("stage", "VARCHAR", "the stage that excluded it: 'clean', 'fit' or 'forecast'"),
     *(c._replace(description="'run', 'rows', 'flag' (clean), 'curve_law' (fit: a size's longest run that gave no "
                              "curve-law points) or 'forecast' (no curve fit or forecast)")
       if c.name == "kind" else c for c in CLEAN_EXCLUSIONS.columns)),
    f"SELECT 'clean', {', '.join(CLEAN_EXCLUSIONS.names)} FROM clean.exclusions UNION ALL "
    f"SELECT 'fit', {_as_clean(NO_CURVE_LAW)} FROM fits.curve_sources WHERE status = 'excluded' UNION ALL "
    f"SELECT '{NO_FORECAST}', {_as_clean(NO_FORECAST)} FROM forecasts.exclusions")

# --- fitted intervals ---------------------------------------------------------------------------------

def interval_columns(ci: dict[str, Any] | None) -> dict[str, float | None]:
    """The ``<column>_lo``/``<column>_hi`` values of ``fits.chinchilla`` from the fitter's intervals
    (key -> (lo, hi), keys of INTERVALS); None where there is no interval."""
    ci = ci or {}
    out: dict[str, float | None] = {}
    for key, col in INTERVALS.items():
        lo, hi = ci.get(key, (None, None))
        out[f"{col}_lo"], out[f"{col}_hi"] = (None if lo is None else float(lo)), (None if hi is None else float(hi))
    return out


def intervals(row: Any) -> dict[str, tuple[float, float]]:
    """The intervals of a ``fits.chinchilla`` row (a mapping or pandas row), keyed as the fitter keys
    them (INTERVALS); a pair with neither bound known (NULL/NaN) is no interval."""
    out = {}
    for key, col in INTERVALS.items():
        lo, hi = (_num(row.get(f"{col}_{end}")) for end in ("lo", "hi"))
        if np.isfinite(lo) or np.isfinite(hi):
            out[key] = (lo, hi)
    return out


def _num(v: Any) -> float:
    try:
        return float("nan") if v is None else float(v)
    except (TypeError, ValueError):
        return float("nan")
