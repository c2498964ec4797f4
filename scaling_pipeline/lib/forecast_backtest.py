"""Backtest and calibration of the forecasts for runs in flight (:mod:`scaling_pipeline.lib.forecast`): completed
runs cut at :data:`CUTS` of their steps, forecast at their last step by a family curve law they were not fitted
on, and compared with their final loss (``clean.points``); the errors calibrate the forecasts of runs in flight.

Which fit forecasts a backtest run (``forecasts.backtest.fold``):

* ``NULL``: a completed run left out of the family's curve fit (the family has more than ``max_family_curves``),
  forecast with that fit, the one the runs in flight use;
* ``k`` (1..K): when fewer than ``max_backtest_runs`` runs are left out (most ladders: every completed run is in
  the family fit), the family fit's runs are also split into K interleaved folds (in the order of N, D) and each
  fold's runs are forecast with the family's curve law refitted on the other folds, and its own end offset
  (K-fold cross-fitting: no run calibrates a fit it was part of). A refit has (K − 1)/K of the runs, so its errors
  are, if anything, larger than the full fit's.

Every forecast (a backtest row's and a run in flight's) is divided by (1 + the mean relative error of the backtest
at the cut nearest its progress), and its sigma is at least the predictive spread of one more such error
(Student's t: :func:`correction`); a backtest row uses the other rows at its cut (leave one out).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from scipy.stats import t as student_t

from scaling_pipeline.lib.curves.family import FamilyCurves, Forecast, fit_family, forecast_run
from scaling_pipeline.lib.curves.fit import Curve
from scaling_pipeline.lib.curves.schedule import CurveError

__all__ = ["CUTS", "FOLDS", "backtest", "calibrated", "correction", "corrected", "end_offset", "shifted"]

CUTS = (0.25, 0.5, 0.75)  # fractions of a completed run's steps it is cut at
FOLDS = 3  # K of the cross-fitting of a family fit's runs (benchmarks/README.md: coverage against cost)


def shifted(f: Forecast, offset: float) -> Forecast:
    """Forecast ``f`` of the curve's loss moved by the family's ``offset`` (nats) to the final loss as measured."""
    return replace(f, loss=f.loss + offset, lo=f.lo + offset, hi=f.hi + offset)


def end_offset(runs: list[tuple[Any, Curve]], points: pd.DataFrame, fam: FamilyCurves, level: float) -> float:
    """Mean of (final loss in clean.points - the run's fitted curve at its last step) over the runs ``fam`` was
    fitted on (nats): the final loss is often an eval loss, the curve a train loss (a generalisation gap); either way
    it is the loss at the last logged step (cleaning.points.TRAIN_SHRUNK_LINE)."""
    gaps = []
    for run, full in runs:
        try:
            law = forecast_run(full, full.lr, fam, level).law
            gaps.append(float(points.at[run.run_id, "loss"]) - float(law.predict(full.steps[-1:], full.lr)[0]))
        except CurveError:  # a curve the family law does not fit (A <= 0): no gap from it
            continue
    return float(np.mean(gaps)) if gaps else 0.0


def _folds(runs: list[str], k: int) -> list[list[str]]:
    """``runs`` (ordered by N, then D) in ``k`` interleaved folds (run i in fold i mod k), so that each refit still
    spans the ladder's sizes; no folds for fewer than 2 runs."""
    return [runs[i::k] for i in range(min(k, len(runs)))] if len(runs) > 1 else []


def backtest(family: str, curves: dict[str, tuple[Any, Curve]], chosen: list[str], held: list[str],
             fam: FamilyCurves, offset: float, points: pd.DataFrame, level: float, z: float, max_runs: int,
             folds: int) -> list[dict[str, Any]]:
    """The family's backtest rows (module docstring): ``curves`` its completed runs (run id -> (run, curve)),
    ``chosen`` those ``fam`` was fitted on (``offset`` its end offset), ``held`` the ones left out to backtest
    (at most ``max_runs``), forecast with ``fam``; when they are fewer than ``max_runs``, ``chosen`` cross-fitted
    in ``folds`` folds too. Each row corrected by the other rows at its cut (:func:`corrected`)."""
    plans: list[tuple[int | None, FamilyCurves, float, list[str]]] = [(None, fam, offset, held)]
    if len(held) < max_runs:
        for k, fold in enumerate(_folds(chosen, folds), 1):
            rest = [curves[r] for r in chosen if r not in fold]
            try:
                refit = fit_family([c for _, c in rest])
            except CurveError:  # the other folds show no loss drop: no rows from this fold
                continue
            plans.append((k, refit, end_offset(rest, points, refit, level), fold))
    rows = [row for k, fit, off, runs in plans for r in runs
            for row in _cut_forecasts(family, *curves[r], points, fit, off, level, k)]
    for row in rows:
        f = corrected(row.pop("uncorrected"), [o["raw_rel_error"] for o in rows
                                               if o["cut"] == row["cut"] and o is not row], z)
        row.update(forecast=f.loss, lo=f.lo, hi=f.hi, error=f.loss - row["actual"],
                   rel_error=(f.loss - row["actual"]) / row["actual"], covered=f.lo <= row["actual"] <= f.hi)
    return rows


def _cut_forecasts(family: str, run: Any, full: Curve, points: pd.DataFrame, fam: FamilyCurves, offset: float,
                   level: float, fold: int | None) -> list[dict[str, Any]]:
    """The completed run cut at each of CUTS and forecast at its last step with ``fam`` (uncorrected)."""
    rows = []
    actual = float(points.at[run.run_id, "loss"])
    for cut in CUTS:
        part = full.steps[full.steps <= cut * full.steps[-1]]
        try:
            f = shifted(forecast_run(Curve(run.run_id, part, full.loss[: len(part)], full.lr[: part[-1] + 1]),
                                     full.lr, fam, level), offset)
        except CurveError:
            continue
        rows.append({"family": family, "run_id": run.run_id, "fold": fold, "cut": cut, "cut_step": int(part[-1]),
                     "total_steps": int(full.steps[-1]), "uncorrected": f, "actual": actual,
                     "raw_rel_error": (f.loss - actual) / actual})
    return rows


def correction(errors: list[float], z: float) -> tuple[float, float]:
    """(mean, predictive spread) of backtest relative errors: the bias a forecast at that cut is divided out by,
    and the spread of one more such error in units of ``z``: sample sd x sqrt(1 + 1/n) x t_{n-1}/z, with t_{n-1}
    Student's quantile at the tail of ``z`` (the predictive interval of a normal whose mean and sd are estimated
    from n errors: z alone would hold 86% instead of 90% with n = 9); (0, RMS) with fewer than 3 errors."""
    if len(errors) < 3:
        return 0.0, float(np.sqrt(np.mean(np.square(errors)))) if errors else 0.0
    n = len(errors)
    widen = float(student_t.ppf(norm.cdf(z), n - 1)) / z
    return float(np.mean(errors)), float(np.std(errors, ddof=1) * math.sqrt(1 + 1 / n) * widen)


def corrected(f: Forecast, errors: list[float], z: float) -> Forecast:
    """``f`` divided by (1 + the mean of ``errors``), sigma at least the errors' spread (:func:`correction`)."""
    bias, spread = correction(errors, z)
    loss = f.loss / (1 + bias)
    sigma = max(f.sigma, loss * spread)
    return replace(f, loss=loss, sigma=sigma, lo=loss - z * sigma, hi=loss + z * sigma)


def calibrated(f: Forecast, progress: float, rows: list[dict[str, Any]], z: float) -> Forecast:
    """``f`` corrected by the family's backtest ``rows`` at the cut nearest ``progress`` (:func:`corrected`)."""
    if not rows:
        return f
    cut = min(CUTS, key=lambda c: abs(c - progress))
    return corrected(f, [r["raw_rel_error"] for r in rows if r["cut"] == cut], z)
