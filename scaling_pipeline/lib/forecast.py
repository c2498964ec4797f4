"""Forecasts for runs in flight: the final loss of every run that has not reached its planned end, with an
interval, compared with its family's L(N, D) law (the ``forecasts`` schema).

Per family: the Multi-Power Law's shared parameters are fitted on up to ``max_family_curves`` of its
completed curves (:func:`~scaling_pipeline.lib.curves.family.fit_family`); each run in flight (clean's
``incomplete_schedule`` runs) gets its own (L0, A) from its curve so far and a forecast of its loss at the
planned last step under its planned schedule (:func:`~scaling_pipeline.lib.curves.family.forecast_run`).
The planned LR after the last logged step comes from the schedule the run metadata describes (``schedule``,
``lr``, ``warmup_steps``, ``total_steps`` and, in ``extra``, ``end_lr``/``decay_start``/``stage_a_steps``/
``lr_b``); a completed run's curve uses that description or its logged LR. The family's law (``fits.chinchilla``,
evaluated by :class:`~scaling_pipeline.lib.laws.Chinchilla`) at the run's planned (N, D) is the expectation:
a forecast further from it than the forecast's and the law's own uncertainty allow (``z·sqrt(σ_F² + σ_law²)``,
σ_law the RMS of the law's residuals at the family's points) is ``off_track``, with a sentence saying what to
check. Backtest (:mod:`~scaling_pipeline.lib.forecast_backtest`): completed runs left out of the family fit, and
when fewer than ``max_backtest_runs`` are (≤ 21 completed runs with the defaults), also the fit's own runs by K-fold
cross-fitting (each forecast by the family refitted without its fold), cut at 25/50/75% of their steps, forecast
and compared with their final loss (``clean.points``); every forecast is divided by (1 + the family's mean backtest
relative error at the nearest cut), its interval at least the predictive interval of one more such error (Student's
t). N of a run in flight is its ``n_params`` (else its non-embedding, else its total count), D its
``tokens_planned`` (else total_steps × batch_tokens). Only families with a run in flight are fitted and backtested.
A run whose curve cannot be used (no LR and no described schedule, too few points, ...) is listed in
``forecasts.exclusions`` with the reason (and with clean's exclusions in the view ``pipeline.exclusions``,
stage 'forecast', kind 'forecast'); nothing else changes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy.stats import norm

from scaling_pipeline.lib.cleaning import INCOMPLETE
from scaling_pipeline.lib.curves.family import FamilyCurves, fit_family, forecast_run
from scaling_pipeline.lib.curves.fit import Curve
from scaling_pipeline.lib.curves.schedule import CurveError, Schedule
from scaling_pipeline.lib.forecast_backtest import FOLDS, backtest, calibrated, end_offset, shifted
from scaling_pipeline.lib.forecast_inputs import family_keys, stored_keys, update_sources
from scaling_pipeline.lib import tables as T
from scaling_pipeline.lib.laws import Chinchilla

__all__ = ["LEVEL", "ForecastSummary", "forecast_families", "run_curve", "run_schedule"]

LEVEL = 0.9  # two-sided level of the forecast intervals
MAX_FAMILY_CURVES = 12  # completed curves the family's shared curve law is fitted on
MAX_BACKTEST_RUNS = 10  # completed runs per family held out of the family fit for the backtest, at most
SCHEDULE_EXTRAS = ("end_lr", "decay_start", "stage_a_steps", "lr_b")  # schedule keys a manifest keeps in extra
BAND_POINTS = 60  # steps per run in forecasts.curves

# exclusion reasons
NO_CURVE = "no_curve_fit"  # no LR and no described schedule, or an unusable series
NO_PLANNED_SCHEDULE = "schedule_not_described"  # in flight: the LR after the last logged step is unknown
NO_FAMILY_LAW = "no_family_curve_law"  # the family's shared curve law could not be fitted


@dataclass
class ForecastSummary:
    forecasts: int = 0
    off_track: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # run_id -> reason
    backtest_rows: int = 0
    families: list[str] = field(default_factory=list)  # families with a shared curve law
    refitted: list[str] = field(default_factory=list)  # families forecast anew (the others' rows were kept)
    unchanged: bool = False  # no family's inputs, no setting and no code changed: every row was kept


def _summary(con: duckdb.DuckDBPyConnection, refitted: list[str], unchanged: bool) -> ForecastSummary:
    """The summary of the stored forecasts."""
    flags = con.execute("SELECT run_id, flag FROM forecasts.in_flight ORDER BY family, run_id").fetchall()
    return ForecastSummary(
        forecasts=len(flags), off_track=[r for r, flag in flags if flag == "off_track"],
        excluded=dict(con.execute("SELECT run_id, reason FROM forecasts.exclusions ORDER BY run_id").fetchall()),
        backtest_rows=con.execute("SELECT count(*) FROM forecasts.backtest").fetchone()[0],
        families=[f for (f,) in con.execute("SELECT family FROM forecasts.families WHERE status = 'ok' "
                                            "ORDER BY family").fetchall()], refitted=refitted, unchanged=unchanged)


def run_schedule(run: Any) -> Schedule | None:
    """The schedule the run metadata describes, or None when it names no kind (CurveError: unusable)."""
    if run.schedule is None or pd.isna(run.schedule):
        return None
    extra = json.loads(run.extra) if isinstance(run.extra, str) and run.extra else {}
    spec = {"kind": str(run.schedule).strip().lower(), "peak_lr": run.lr, "warmup_steps": run.warmup_steps,
            "total_steps": run.total_steps, **{k: extra.get(k) for k in SCHEDULE_EXTRAS}}
    spec = {k: v for k, v in spec.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    return Schedule.from_mapping(spec, f"{run.run_id}: schedule in the run metadata")


def run_curve(run: Any, g: pd.DataFrame, schedule: Schedule | None) -> Curve:
    """The run's curve: train loss where logged, else eval loss."""
    loss = g.train_loss.where(g.train_loss.notna(), g.eval_loss).to_numpy(dtype=float)
    keep = np.isfinite(loss)
    lr = g.lr.to_numpy(dtype=float)
    return Curve.build(run.run_id, g.step.to_numpy()[keep], loss[keep], lr=lr if np.isfinite(lr).any() else None,
                       lr_steps=g.step.to_numpy(), schedule=schedule)


def _curve_problem(run: Any, steps: pd.DataFrame | None) -> str | None:
    """Why the run's own curve cannot be fitted (no logged steps, no LR and no described schedule, ...), or None."""
    if steps is None or steps.empty:
        return f"{run.run_id}: no logged steps after the warm-up"
    try:
        run_curve(run, steps, run_schedule(run))
    except CurveError as exc:
        return str(exc)
    return None


def _spread(items: list, k: int) -> list:
    """At most ``k`` of ``items``, evenly spaced (the first and last kept)."""
    if len(items) <= k:
        return items
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))]


def _message(run: Any, f, law: float | None, tol: float, progress: float) -> tuple[str, str]:
    """(flag, a sentence a researcher can act on)."""
    where = (f"forecast {f.loss:.3f} nats [{f.lo:.3f}, {f.hi:.3f}] at its planned step {f.step} "
             f"({progress:.0%} done)")
    if law is None:
        return "no_law", f"{run.run_id}: {where}; the family has no L(N, D) fit to compare with."
    dev = f.loss - law
    if abs(dev) <= tol:
        return "on_track", (f"{run.run_id}: {where}, within {tol:.3f} nats of the family law's {law:.3f} at "
                            f"N = {run.n_params:.3g}, D = {run.tokens_planned:.3g}.")
    if dev > 0:
        return "off_track", (
            f"{run.run_id}: {where} is {dev:.3f} nats above the family law's {law:.3f} at N = {run.n_params:.3g}, "
            f"D = {run.tokens_planned:.3g} (more than the {tol:.3f} nats the forecast and the law allow): compare "
            f"its learning rate, batch size, data and code version with the completed runs of the ladder, and "
            f"consider stopping it before it spends the remaining {1 - progress:.0%} of its steps.")
    return "off_track", (
        f"{run.run_id}: {where} is {-dev:.3f} nats below the family law's {law:.3f} at N = {run.n_params:.3g}, "
        f"D = {run.tokens_planned:.3g} (more than the {tol:.3f} nats allowed): better than the ladder predicts; "
        f"check its N and D metadata and its eval set before trusting the gain, or refit the law when it ends.")


def _band(run: Any, f, planned_lr: np.ndarray, first: int, last_logged: int) -> pd.DataFrame:
    """Fitted curve from the first logged step to the planned end; the band is 0 up to the last logged step
    and widens linearly to the forecast interval at the end (moving with the family's end offset)."""
    steps = np.unique(np.linspace(first, f.step, BAND_POINTS).round().astype(np.int64))
    fitted = f.law.predict(steps, planned_lr)
    grow = np.clip((steps - last_logged) / max(f.step - last_logged, 1), 0.0, 1.0)
    half, center = grow * (f.hi - f.loss), fitted + grow * (f.loss - fitted[-1])
    return pd.DataFrame({"family": run.family, "run_id": run.run_id, "step": steps, "lr": planned_lr[steps],
                         "fitted": fitted, "lo": center - half, "hi": center + half})


def _law_of(row: Any) -> Chinchilla:
    return Chinchilla(E=row.E, A=row.A, B=row.B, alpha=row.alpha, beta=row.beta)


def forecast_families(con: duckdb.DuckDBPyConnection, *, level: float = LEVEL,
                      max_family_curves: int = MAX_FAMILY_CURVES,
                      max_backtest_runs: int = MAX_BACKTEST_RUNS, folds: int = FOLDS,
                      every_family: bool = False) -> ForecastSummary:
    """Update the ``forecasts`` tables from ``clean`` and ``fits.chinchilla`` in one transaction. Only families
    with a run in flight get a curve law and a backtest, unless ``every_family`` (benchmarks). A family whose
    inputs, the settings and the code are as at its last forecast (:func:`~scaling_pipeline.lib.forecast_inputs.
    family_keys`) keeps its rows; the others are forecast anew (``refitted``), with the rows a full recompute
    would give. Its exclusions are read with clean's and the fit stage's in the view ``pipeline.exclusions``, created
    here (the stage after both)."""
    T.create(con, *T.FORECASTS, T.FORECASTS_SOURCES)
    T.create_view(con, T.PIPELINE_EXCLUSIONS)
    update_sources(con)
    keys = family_keys(con, level=level, max_family_curves=max_family_curves, max_backtest_runs=max_backtest_runs,
                       folds=folds, every_family=every_family)
    stored = stored_keys(con)
    todo = sorted(f for f, k in keys.items() if stored.get(f) != k)
    stale = sorted(set(stored) - set(keys))
    if not todo and not stale:
        return _summary(con, [], unchanged=True)
    out = _forecast(con, todo, level, max_family_curves, max_backtest_runs, folds, every_family)
    out["inputs"] = [{"family": f, "input_hash": keys[f]} for f in todo]
    with T.transaction(con):
        for table in T.FORECASTS:
            con.execute(f"DELETE FROM {table.name} WHERE list_contains(?, family)", [todo + stale])
            rows = out[table.name.split(".", 1)[1]]
            if rows:
                frame = pd.concat(rows, ignore_index=True) if isinstance(rows[0], pd.DataFrame) else pd.DataFrame(rows)
                T.insert_frame(con, table, frame.reindex(columns=table.names))
    return _summary(con, todo, unchanged=False)


def _forecast(con: duckdb.DuckDBPyConnection, families: list[str], level: float, max_family_curves: int,
              max_backtest_runs: int, folds: int, every_family: bool) -> dict[str, list]:
    """The rows of every forecasts table for ``families`` (table name without schema -> rows)."""
    runs = con.execute("""SELECT r.* REPLACE (coalesce(r.n_params, r.n_params_non_embedding, r.n_params_total) AS n_params,
                                     coalesce(r.tokens_planned, r.total_steps * r.batch_tokens) AS tokens_planned),
                                 x.extra
                          FROM clean.runs r LEFT JOIN (
                              SELECT run_id, min(extra) AS extra FROM raw.runs GROUP BY run_id) x USING (run_id)
                          WHERE list_contains(?, r.family)
                          ORDER BY r.family, r.n_params, r.tokens_planned, r.run_id""", [families]).df()
    in_flight = {r for (r,) in con.execute("SELECT run_id FROM clean.exclusions WHERE kind = 'run' AND reason = ?",
                                           [INCOMPLETE]).fetchall()}
    points = con.execute("SELECT run_id, family, n_params, n_tokens, loss FROM clean.points"
                         ).df().set_index("run_id")
    wanted = in_flight | set(points.index)
    live = set(runs.family[runs.run_id.isin(in_flight)])
    runs = runs[runs.run_id.isin(wanted) & (runs.family.isin(live) | every_family)]
    steps = con.execute("SELECT run_id, step, train_loss, eval_loss, lr FROM clean.steps WHERE list_contains(?, run_id) "
                        "ORDER BY run_id, step", [sorted(runs.run_id)]).df()
    by_run = dict(tuple(steps.groupby("run_id")))
    fits = {r.family: r for r in con.execute(
        "SELECT family, E, A, B, alpha, beta FROM fits.chinchilla WHERE status = 'ok'").df().itertuples(index=False)}
    z = float(norm.ppf(0.5 + level / 2))
    out: dict[str, list] = {t.name.split(".", 1)[1]: [] for t in T.FORECASTS}

    def exclude(run: Any, reason: str, detail: str) -> None:
        out["exclusions"].append({"family": run.family, "run_id": run.run_id, "reason": reason, "detail": detail})

    for family, group in runs.groupby("family", sort=True):
        curves: dict[str, tuple[Any, Curve]] = {}
        for run in group[group.run_id.isin(points.index)].itertuples(index=False):
            try:
                try:
                    schedule = run_schedule(run)
                except CurveError:  # an incomplete description: a completed run's LR is in its log
                    schedule = None
                curves[run.run_id] = (run, run_curve(run, by_run[run.run_id], schedule))
            except (CurveError, KeyError) as exc:
                exclude(run, NO_CURVE, str(exc))
        chosen = _spread(list(curves), max_family_curves)
        try:
            fam = fit_family([curves[r][1] for r in chosen])
        except CurveError as exc:
            out["families"].append({"family": family, "n_curves": len(chosen), "status": "failed", "detail": str(exc)})
            for run in group[group.run_id.isin(in_flight)].itertuples(index=False):
                own = _curve_problem(run, by_run.get(run.run_id))  # its own reason first: it would not do either
                exclude(run, NO_CURVE if own else NO_FAMILY_LAW,
                        own or f"the family's curve law could not be fitted: {exc}")
            continue
        offset = end_offset([curves[r] for r in chosen], points, fam, level)
        out["families"].append({"family": family, "n_curves": len(chosen), "n_points": fam.n_points, "rms": fam.rms,
                                "end_sigma": fam.end_sigma, "end_offset": offset, "shared": json.dumps(fam.shared),
                                "status": "ok",
                                "detail": ", ".join(chosen)})
        law = _law_of(fits[family]) if family in fits else None
        fam_points = points[points.family == family]
        sigma_law = (float(np.sqrt(np.mean(np.square(fam_points.loss - law.predict(fam_points.n_params,
                                                                                 fam_points.n_tokens)))))
                     if law is not None and len(fam_points) else 0.0)
        rows = backtest(family, curves, chosen, _spread([r for r in curves if r not in chosen], max_backtest_runs),
                        fam, offset, points, level, z, max_backtest_runs, folds)
        out["backtest"] += rows
        for run in group[group.run_id.isin(in_flight)].itertuples(index=False):
            _forecast_one(run, by_run.get(run.run_id), fam, offset, law, sigma_law, z, level, rows, exclude, out)
    return out


def _forecast_one(run, steps: pd.DataFrame | None, fam: FamilyCurves, offset: float, law: Chinchilla | None,
                  sigma_law: float,
                  z: float, level: float, backtest_rows: list[dict[str, Any]], exclude, out: dict[str, list]) -> None:
    """Forecast one run in flight into ``out`` (or exclude it with the reason)."""
    if steps is None or steps.empty:
        exclude(run, NO_CURVE, _curve_problem(run, steps))
        return
    schedule = None
    try:
        schedule = run_schedule(run)
        curve = run_curve(run, steps, schedule)
        if schedule is None:
            raise CurveError(f"{run.run_id}: its LR is logged up to step {curve.steps[-1]}, but the run metadata does "
                             "not describe its schedule (kind, end LR, ...), so the LR until its planned end "
                             f"(step {run.total_steps}) is unknown")
        if pd.isna(run.total_steps):
            raise CurveError(f"{run.run_id}: planned end unknown (no total_steps or tokens_planned/batch_tokens)")
        planned = schedule.lr(int(run.total_steps))
        f = calibrated(shifted(forecast_run(curve, planned, fam, level), offset), curve.steps[-1] / run.total_steps,
                       backtest_rows, z)
    except CurveError as exc:
        no_lr = "no learning rate" in str(exc)
        exclude(run, NO_CURVE if no_lr or schedule is not None else NO_PLANNED_SCHEDULE, str(exc))
        return
    expected = float(law.predict(run.n_params, run.tokens_planned)) if law is not None and not (
        pd.isna(run.n_params) or pd.isna(run.tokens_planned)) else None
    tol = z * math.sqrt(f.sigma**2 + sigma_law**2)
    progress = float(curve.steps[-1] / run.total_steps)
    flag, message = _message(run, f, expected, tol, progress)
    out["in_flight"].append({
        "family": run.family, "run_id": run.run_id, "n_params": run.n_params, "n_tokens": run.tokens_planned,
        "last_step": int(curve.steps[-1]), "total_steps": int(run.total_steps), "progress": progress,
        "schedule": schedule.kind, "forecast": f.loss, "lo": f.lo, "hi": f.hi, "level": level, "sigma": f.sigma,
        "law": expected, "tolerance": tol, "deviation": None if expected is None else f.loss - expected,
        "flag": flag, "message": message, "n_points": f.n_points,
        "curve_law": json.dumps({k: getattr(f.law, k) for k in f.law.params})})
    out["curves"].append(_band(run, f, planned, int(curve.steps[0]), int(curve.steps[-1])))

