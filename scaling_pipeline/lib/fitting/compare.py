"""Per-family model comparison: every form of the laws registry fitted to the runs it applies to, scored alike.

:func:`compare_forms` walks :data:`~scaling_pipeline.lib.laws.FORMS`; each form says through its
:meth:`~scaling_pipeline.lib.laws.Law.samples` which of the family's runs it is fitted to (or why it does not
apply), so a newly registered form is compared with no edit here. Every fit is scored by

* ``objective``: the form's own minimised objective (Chinchilla, data-constrained: sum of Huber on log
  residuals; the log-linear and one-variable forms: mean squared log residual);
* ``aic``, ``bic``: from a Gaussian likelihood of the log residuals ``r = log L̂ − log L`` with the
  maximum-likelihood variance ``σ² = Σr²/n``: ``log ℒ = −n/2·(log(2πσ²) + 1)``, ``k`` = the fitted parameters
  + 1 (σ); ``AIC = 2k − 2 log ℒ``, ``BIC = k·log n − 2 log ℒ``. Only rows fitted to the same runs (same
  ``subset``) are comparable by AIC/BIC;
* the backtest of :func:`~scaling_pipeline.lib.fitting.resample.backtest` (the one behind the quality
  assessment): fitted without the largest-compute 10% of its runs, the mean and max ``|L̂/L − 1|`` on them.

Parameter intervals: the Chinchilla fit's bootstrap percentile intervals (given by the caller); the other forms
have none (no bootstrap for them).

**The form plans are made from** (``chosen``): among the forms with an allocation (``optimal_allocation``) whose
fit is publishable by :func:`~scaling_pipeline.lib.quality.assess` (for Chinchilla, the family's own
assessment), the lowest backtest mean error; errors within :data:`TIE` are ties, won by fewer parameters and
then by registry order. Each row keeps what its assessment read (``assessed_with``), so stored rows are judged
again without a refit (:func:`rejudge`) when the quality rules change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from scaling_pipeline.lib.fitting.common import FitError, FitResult
from scaling_pipeline.lib.fitting.resample import backtest
from scaling_pipeline.lib.laws import FORMS
from scaling_pipeline.lib.laws.selection import NotApplicable, Sample
from scaling_pipeline.lib.quality import assess, assessment_inputs

__all__ = ["Compared", "Given", "TIE", "choose", "compare_forms", "comparison_frames", "compared_rows", "judge",
           "rejudge", "score"]

TIE = 1e-4  # backtest mean errors closer than this (0.01 percentage points) are a tie


@dataclass(frozen=True)
class Given:
    """A form's fit made elsewhere (the family's Chinchilla fit with its bootstrap): reused, not refitted.
    ``publishable``: its quality assessment."""

    fit: FitResult
    backtest: Mapping[str, Any]
    publishable: bool
    verdict: str
    interval_source: str = ""


@dataclass
class Compared:
    """One comparison row: ``form`` fitted to ``subset`` of the family's runs (``status`` ``ok``, ``failed`` or
    ``not_applicable`` with ``reason``)."""

    form: str
    subset: str = ""
    status: str = "ok"
    reason: str | None = None
    n_points: int = 0
    n_fitted: int | None = None  # fitted parameters (fixed ones excluded)
    objective: float = math.nan
    objective_kind: str | None = None  # "huber" (with delta) or "mse": what `objective` sums/averages
    rmse_log: float = math.nan
    aic: float = math.nan
    bic: float = math.nan
    backtest_mean_error: float = math.nan
    backtest_max_error: float = math.nan
    backtest_n_holdout: int | None = None
    backtest_note: str | None = None
    has_allocation: bool = False
    verdict: str | None = None  # quality verdict, for forms with an allocation
    eligible: bool = False  # may plans be made from it (allocation + publishable)
    chosen: bool = False
    interval_source: str = "none"
    assessed_with: dict[str, Any] | None = None  # what quality.assess read (None: judged with a given fit)
    params: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def applicable(self) -> bool:
        return self.status != "not_applicable"


def information_criteria(log_residuals: np.ndarray, n_fitted: int) -> tuple[float, float]:
    """``(AIC, BIC)`` of a Gaussian likelihood of the log residuals with its maximum-likelihood variance
    (``k = n_fitted + 1``); NaN for a perfect fit or no residuals."""
    r = np.asarray(log_residuals, float)
    n = r.size
    s2 = float(r @ r) / n if n else 0.0
    if not n or s2 <= 0 or not math.isfinite(s2):
        return math.nan, math.nan
    ll = -0.5 * n * (math.log(2 * math.pi * s2) + 1.0)
    k = n_fitted + 1
    return 2 * k - 2 * ll, k * math.log(n) - 2 * ll


def score(form: str, sample: Sample, given: Given | None = None) -> Compared:
    """Fit ``form`` to ``sample`` (or take ``given``) and score it: objective, AIC/BIC, backtest, assessment."""
    law = FORMS[form]
    row = Compared(form=form, subset=sample.subset, n_points=sample.n_points,
                   has_allocation=law.optimal_allocation is not None)
    try:
        fit = given.fit if given else law.fit(sample.inputs, sample.y, **sample.options)
    except (FitError, ValueError, ArithmeticError) as exc:
        row.status, row.reason = "failed", str(exc)
        return row
    with np.errstate(all="ignore"):
        r = np.log(np.asarray(fit.law.predict(**sample.inputs), float)) - np.log(sample.y)
    row.n_fitted = len(fit.params) - len(fit.diagnostics.get("fixed") or ())
    row.objective, row.objective_kind = float(fit.objective), fit.loss
    row.rmse_log = float(np.sqrt(np.mean(r * r)))
    row.aic, row.bic = information_criteria(r, row.n_fitted)
    row.params = {k: float(v) for k, v in fit.params.items()}
    if given:
        bt = dict(given.backtest)
    else:
        try:
            bt = backtest(form, sample.inputs, sample.y, sample.compute, **sample.options)
        except (FitError, ValueError, ArithmeticError) as exc:
            bt = {"error": str(exc)}
    if "error" in bt:
        row.backtest_note = str(bt["error"])
    else:
        row.backtest_mean_error = float(bt["mean_abs_rel_error"])
        row.backtest_max_error = float(bt["max_abs_rel_error"])
        row.backtest_n_holdout = int(bt["n_holdout"])
    if fit.ci:
        row.intervals = {k: (float(lo), float(hi)) for k, (lo, hi) in fit.ci.items() if k in fit.params}
        row.interval_source = given.interval_source if given and given.interval_source else "bootstrap"
    if row.has_allocation:
        if given:
            row.eligible, row.verdict = given.publishable, given.verdict
        else:
            row.assessed_with = assessment_inputs(fit.diagnostics, bt)
            judge(row, sample)
    return row


def judge(row: Compared, sample: Sample) -> None:
    """Set ``eligible`` and ``verdict`` of a row with an allocation: :func:`~scaling_pipeline.lib.quality.assess`
    of its ``params`` on ``sample`` (the runs it was fitted to) with what it read (``assessed_with``)."""
    a = assess(sample.inputs.get("N", []), sample.inputs.get("D", []), sample.y, params=row.params,
               **(row.assessed_with or {}))
    row.eligible, row.verdict = a.publishable, a.verdict


def compare_forms(points: pd.DataFrame, given: Mapping[str, Given] | None = None) -> list[Compared]:
    """Every registered form on one family's ``points`` (``clean.points`` rows): one row per sample it is fitted
    to, or one ``not_applicable`` row with the reason; ``given`` fits (by form name) are reused. The row plans
    are made from is marked ``chosen`` (see :func:`choose`)."""
    given = given or {}
    rows: list[Compared] = []
    for name, law in FORMS.items():
        try:
            samples = law.samples(points)
        except NotApplicable as exc:
            rows.append(Compared(form=name, status="not_applicable", reason=str(exc),
                                 has_allocation=law.optimal_allocation is not None))
            continue
        for sample in samples:
            rows.append(score(name, sample, given.get(name) if not sample.subset else None))
    choose(rows)
    return rows


def choose(rows: list[Compared]) -> Compared | None:
    """Mark and return the row plans are made from: eligible (allocation, publishable) rows with a backtest,
    lowest mean error; within :data:`TIE`, fewer fitted parameters, then the earlier row (registry order)."""
    candidates = [r for r in rows if r.eligible and r.status == "ok" and math.isfinite(r.backtest_mean_error)]
    for r in rows:
        r.chosen = False
    if not candidates:
        return None
    best_error = min(r.backtest_mean_error for r in candidates)
    tied = [r for r in candidates if r.backtest_mean_error <= best_error + TIE]
    best = min(tied, key=lambda r: (r.n_fitted or 0, rows.index(r)))
    best.chosen = True
    return best


def rejudge(points: pd.DataFrame, rows: list[Compared], given: Mapping[str, tuple[bool, str]]) -> None:
    """Judge a family's stored comparison ``rows`` again, without a refit (the quality rules may have changed):
    rows judged by :func:`judge` are judged again on the same runs (``points``: the family's, unchanged); a
    given form's row takes ``given[form]`` = the family's (publishable, verdict); then :func:`choose`."""
    samples: dict[str, dict[str, Sample]] = {}
    for r in rows:
        if not r.has_allocation or r.status != "ok":
            continue
        if r.assessed_with is None:
            if r.form in given:
                r.eligible, r.verdict = given[r.form]
            continue
        if r.form not in samples:
            samples[r.form] = {s.subset: s for s in FORMS[r.form].samples(points)}
        judge(r, samples[r.form][r.subset])
    choose(rows)


_FRAME_ONLY = ("n_fitted", "params", "intervals", "assessed_with")  # fields stored otherwise than by name


def comparison_frames(family: str, rows: list[Compared]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``fits.comparison`` and ``fits.comparison_params`` rows of one family's comparison (columns by name:
    the fields of :class:`Compared`; ``assessed_with`` as JSON)."""
    table = pd.DataFrame([{"family": family, "applicable": r.applicable, "n_fitted_params": r.n_fitted,
                           "assessed_with": None if r.assessed_with is None else json.dumps(r.assessed_with),
                           **{k: v for k, v in vars(r).items() if k not in _FRAME_ONLY}}
                          for r in rows])
    params = pd.DataFrame([dict(family=family, form=r.form, subset=r.subset, param=k, value=v,
                                lo=r.intervals.get(k, (None, None))[0], hi=r.intervals.get(k, (None, None))[1])
                           for r in rows for k, v in r.params.items()],
                          columns=["family", "form", "subset", "param", "value", "lo", "hi"])
    return table, params.astype({"value": float, "lo": float, "hi": float})


def compared_rows(table: pd.DataFrame, params: pd.DataFrame | None) -> list[Compared]:
    """Back from one family's stored ``fits.comparison`` / ``fits.comparison_params`` rows (the inverse of
    :func:`comparison_frames`), in registry order."""
    def value(v: Any) -> Any:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    names = [f.name for f in fields(Compared) if f.name not in _FRAME_ONLY]
    by_row: dict[tuple[str, str], dict[str, float]] = {}
    for p in (params.itertuples(index=False) if params is not None else ()):
        by_row.setdefault((p.form, p.subset), {})[p.param] = float(p.value)
    order = {name: i for i, name in enumerate(FORMS)}
    out = []
    for rec in sorted(table.to_dict("records"), key=lambda r: order.get(r["form"], len(order))):
        kw = {k: value(rec[k]) for k in names if k in rec}
        for k in ("objective", "rmse_log", "aic", "bic", "backtest_mean_error", "backtest_max_error"):
            kw[k] = math.nan if kw.get(k) is None else float(kw[k])
        n_fitted, assessed = value(rec.get("n_fitted_params")), value(rec.get("assessed_with"))
        out.append(Compared(**kw, n_fitted=None if n_fitted is None else int(n_fitted),
                            assessed_with=None if assessed is None else json.loads(assessed),
                            params=by_row.get((rec["form"], rec["subset"]), {})))
    return out
