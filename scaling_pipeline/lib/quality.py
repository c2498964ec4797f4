"""The one judge of a family's fit: may its plan be published, and with which cautions (:func:`assess`).

The publication gate (``fits.chinchilla.publishable``), the plans (``plans.allocations``), the report and
the CLI all read the :class:`Assessment` this module makes; nothing else decides whether a fit is good.
Every reason has a stable ``code`` (:data:`CODES`), a fixed severity (it blocks publication, or it is a
caution) and a message with the numbers. Verdicts:

* ``ok``: publishable, nothing to say;
* ``caution``: publishable, with cautions;
* ``withheld``: a fit exists but at least one reason blocks publication (no plan is published);
* ``failed``: no usable fit (the fit failed or its parameters are not finite).

Thresholds are in :class:`Thresholds` (:data:`THRESHOLDS`, the defaults): a fit is withheld when the law
misses its own runs by more than 5% rms (log residual), a parameter sits at its bound, the bootstrap
interval of A or B spans more than 3 decades or that of alpha or beta is wider than 0.5 (or of
a = beta/(alpha+beta) wider than 0.2), or the backtest (fit without the largest-compute runs, predict them)
is off by more than 10% on one run or 5% on average, or could not be run. Plans more than
:data:`EXTRAPOLATION_LIMIT` times a family's largest run are marked ``extrapolated``, never a headline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from scaling_pipeline.lib.jsonutil import jsonable

PARAMS = ("E", "A", "B", "alpha", "beta")
BLOCKS, CAUTION = "blocks", "caution"
VERDICTS = ("ok", "caution", "withheld", "failed")
EXTRAPOLATION_LIMIT = 1000.0  # plans beyond this multiple of the family's largest run (FLOPs) are extrapolated

CODES: dict[str, str] = {  # stable reason codes and their severity
    "fit_failed": BLOCKS,  # the fitter raised (too few points or sizes, bad values)
    "nonfinite_params": BLOCKS,  # a fitted parameter is NaN or infinite
    "param_at_bound": BLOCKS,  # a parameter ended at its bound: the runs do not determine it
    "param_unidentified": BLOCKS,  # bootstrap intervals too wide (A/B over decades, exponents over a range)
    "poor_fit": BLOCKS,  # the law misses its own runs (rms log residual)
    "no_backtest": BLOCKS,  # the backtest could not be run
    "backtest_error_high": BLOCKS,  # held-out largest runs predicted badly
    "loose_fit": CAUTION,  # rms log residual above the caution level
    "backtest_error_moderate": CAUTION,  # held-out runs predicted with a noticeable error
    "exponent_loose": CAUTION,  # a = beta/(alpha+beta) loosely determined
    "flat_direction": CAUTION,  # objective Hessian (near) singular: a parameter combination is flat
    "bootstrap_at_bound": CAUTION,  # resampled fits end at a bound: intervals reflect the bound
    "no_bootstrap": CAUTION,  # no bootstrap: no intervals, identifiability unchecked
    "few_points": CAUTION,  # fewer runs than a ladder should have
    "few_sizes": CAUTION,  # fewer than 4 distinct model sizes or token budgets
    "collinear_design": CAUTION,  # log N and log D move together (one tokens-per-parameter ratio)
    "floor_above_loss": CAUTION,  # E is not below the lowest observed loss
    "not_assessed": BLOCKS,  # no assessment stored (a row of an older layout; in the report: not fitted yet)
}


@dataclass(frozen=True)
class Thresholds:
    """Where each rule trips (losses in nats/token, errors relative: 0.05 = 5%).

    ``poor_fit_rms`` is an absolute level, not a multiple of a noise estimate made from the residuals (a law
    of the wrong shape inflates both): run-to-run noise of final losses is ~1% or less, and good fits stay
    far below 5% (0.3% on the demo ladder, 0.75% on Hoffmann et al.'s 240 runs as extracted by Epoch AI),
    while the byte-level gpu_ladder, whose fit puts E at 0, misses its runs by 6%."""

    poor_fit_rms: float = 0.05  # blocks: rms of log L̂ − log L over the fitted runs above this
    loose_fit_rms: float = 0.02  # caution above this
    backtest_max_error: float = 0.10  # blocks: a held-out run's |L̂/L − 1| above this
    backtest_mean_error: float = 0.05  # blocks: mean |L̂/L − 1| over the held-out runs above this
    backtest_caution: float = 0.02  # caution: mean above this
    coef_decades: float = 3.0  # blocks: the interval of A or B spans more decades (log10 hi/lo)
    exponent_width: float = 0.5  # blocks: the interval of alpha or beta is wider
    a_width: float = 0.20  # blocks: the interval of a = beta/(alpha+beta) is wider
    a_caution: float = 0.10  # caution: wider than this
    hessian_condition: float = 1e8  # caution: condition number of the objective's Hessian above this
    boot_at_bound_share: float = 0.01  # caution: share of resamples ending at a bound
    few_points: int = 15  # caution: fewer fitted runs
    min_distinct: int = 4  # caution: fewer distinct model sizes or token budgets
    collinear: float = 0.999  # caution: |corr(log N, log D)| above this


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Reason:
    code: str  # a key of CODES
    message: str  # for people, with the numbers

    @property
    def severity(self) -> str:
        return CODES[self.code]

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


@dataclass(frozen=True)
class Assessment:
    """The judgement of one fit: ``publishable``, ``verdict`` (one of :data:`VERDICTS`), and ``reasons``
    (blocking ones first)."""

    publishable: bool
    verdict: str
    reasons: tuple[Reason, ...] = ()

    @classmethod
    def of(cls, reasons: Sequence[Reason]) -> Assessment:
        """The assessment that ``reasons`` imply (blocking reasons are put first)."""
        ordered = tuple(sorted(reasons, key=lambda r: CODES[r.code] != BLOCKS))
        codes = {r.code for r in ordered}
        if codes & {"fit_failed", "nonfinite_params"}:
            verdict = "failed"
        elif any(r.severity == BLOCKS for r in ordered):
            verdict = "withheld"
        else:
            verdict = "caution" if ordered else "ok"
        return cls(publishable=verdict in ("ok", "caution"), verdict=verdict, reasons=ordered)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    @property
    def blocking(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.severity == BLOCKS)

    @property
    def cautions(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.severity == CAUTION)

    def to_columns(self) -> dict[str, Any]:
        """The ``fits.chinchilla`` columns: publishable, verdict, reasons (codes), reason_messages."""
        return {"publishable": self.publishable, "verdict": self.verdict, "reasons": list(self.codes),
                "reason_messages": [r.message for r in self.reasons]}

    @classmethod
    def from_columns(cls, verdict: Any, codes: Any, messages: Any) -> Assessment:
        """Back from the stored columns (a row without a verdict is ``not_assessed``: withheld)."""
        if not isinstance(verdict, str) or verdict not in VERDICTS:
            return cls.of([Reason("not_assessed", "no quality assessment stored with this fit (rerun the fit stage)")])
        codes, messages = ([str(x) for x in v] if isinstance(v, list | tuple | np.ndarray) else []
                           for v in (codes, messages))
        messages += [""] * (len(codes) - len(messages))
        return cls.of([Reason(c, m) for c, m in zip(codes, messages) if c in CODES])


def beyond_limit(compute: ArrayLike, max_observed_flops: float) -> np.ndarray:
    """Whether each budget (FLOPs) lies beyond :data:`EXTRAPOLATION_LIMIT` × the largest observed run."""
    return np.asarray(compute, float) > EXTRAPOLATION_LIMIT * float(max_observed_flops)


def plan_verdict(family_verdict: str, beyond: bool) -> str:
    """A plan's verdict: ``extrapolated`` beyond the limit, else its family's."""
    return "extrapolated" if beyond else family_verdict


def assess(n_params: ArrayLike, n_tokens: ArrayLike, loss: ArrayLike, *, params: Mapping[str, float] | None,
           error: str | None = None, diagnostics: Mapping[str, Any] | None = None,
           backtest: Mapping[str, Any] | None = None, ci: Mapping[str, Sequence[float]] | None = None,
           n_boot: int = 0, limits: Thresholds = THRESHOLDS) -> Assessment:
    """Judge one family's Chinchilla fit.

    ``n_params``, ``n_tokens``, ``loss`` (nats/token): the fitted runs. ``params``: the fitted E, A, B,
    alpha, beta (None: the fit failed with ``error``). ``diagnostics``: the fitter's (``rmse_log_residual``,
    ``at_bounds``, ``hessian_condition``, ``bootstrap_at_bounds``). ``backtest``: the output of
    ``backtest_chinchilla`` (``{"error": ...}`` or None when it could not be run). ``ci``: bootstrap
    intervals per parameter and for ``a``, from ``n_boot`` resamples (0: no bootstrap)."""
    if params is None:
        return Assessment.of([Reason("fit_failed", f"fit failed: {error or 'no parameters'}")])
    bad = [k for k in PARAMS if not _finite(params.get(k))]
    if bad:
        return Assessment.of([Reason("nonfinite_params", f"non-finite parameters: {', '.join(bad)}")])
    d = diagnostics or {}
    N, D, L = (np.asarray(v, float) for v in (n_params, n_tokens, loss))
    reasons = _bounds(params, d) + _intervals(params, ci or {}, limits)
    reasons += _residuals(d, limits) + _backtest(backtest, limits)
    reasons += _identification(d, ci or {}, n_boot, limits) + _design(params, N, D, L, limits)
    return Assessment.of(reasons)


def assessment_inputs(diagnostics: Mapping[str, Any] | None, backtest: Mapping[str, Any] | None) -> dict[str, Any]:
    """What :func:`assess` reads of a fit's ``diagnostics`` and ``backtest`` (as plain JSON values), so a stored fit
    can be judged again without a refit: ``assess(N, D, L, params=..., **assessment_inputs(d, bt))``."""
    d, bt = diagnostics or {}, backtest
    kept_bt = None
    if bt is not None:
        kept_bt = {k: bt[k] for k in ("error", "mean_abs_rel_error", "max_abs_rel_error", "n_holdout") if k in bt}
        if (bt.get("holdout") or {}).get("rel_error") is not None:
            kept_bt["holdout"] = {"rel_error": bt["holdout"]["rel_error"]}
    return jsonable({"diagnostics": {k: d[k] for k in ("at_bounds", "rmse_log_residual", "hessian_condition",
                                                        "bootstrap_at_bounds") if k in d},
                     "backtest": kept_bt})


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _bounds(params: Mapping[str, float], d: Mapping[str, Any]) -> list[Reason]:
    at = list(d.get("at_bounds") or [])
    if not at:
        return []
    what = [f"E = {float(params['E']):.3g} (no irreducible loss identified: predicted losses fall without limit "
            "at large compute)" if k == "E" else k for k in at]
    return [Reason("param_at_bound", f"at the bound of the allowed range, not determined by these runs: "
                                     f"{', '.join(what)}")]


def _interval(ci: Mapping[str, Sequence[float]], k: str) -> tuple[float, float] | None:
    v = ci.get(k)
    if v is None or len(v) != 2 or not all(_finite(x) for x in v):
        return None
    return float(v[0]), float(v[1])


def _intervals(params: Mapping[str, float], ci: Mapping[str, Sequence[float]], t: Thresholds) -> list[Reason]:
    """Bootstrap intervals too wide to plan from (blocks), or a loosely determined exponent a (caution)."""
    wide = []
    for k in ("A", "B"):
        iv = _interval(ci, k)
        if iv is not None:
            decades = math.log10(iv[1] / iv[0]) if iv[0] > 0 else math.inf
            if decades > t.coef_decades:
                wide.append(f"{k} in [{iv[0]:.3g}, {iv[1]:.3g}] ({decades:.1f} decades)")
    for k in ("alpha", "beta", "a"):
        iv = _interval(ci, k)
        limit = t.a_width if k == "a" else t.exponent_width
        if iv is not None and iv[1] - iv[0] > limit:
            wide.append(f"{k} in [{iv[0]:.3g}, {iv[1]:.3g}] (width {iv[1] - iv[0]:.2f} > {limit:g})")
    if wide:
        return [Reason("param_unidentified", "bootstrap intervals too wide to plan from: " + "; ".join(wide))]
    iv = _interval(ci, "a")
    if iv is not None and iv[1] - iv[0] > t.a_caution:
        a = params["beta"] / (params["alpha"] + params["beta"])
        return [Reason("exponent_loose", f"the compute-optimal exponent a = β/(α+β) = {a:.3f} has interval "
                                         f"[{iv[0]:.2f}, {iv[1]:.2f}]: how to split larger budgets between N and D "
                                         "is loosely determined by these runs")]
    return []


def _residuals(d: Mapping[str, Any], t: Thresholds) -> list[Reason]:
    rms = d.get("rmse_log_residual")
    if not _finite(rms):
        return []
    rms = float(rms)
    text = f"the law misses the fitted runs by {rms:.1%} rms (log residual"
    if rms > t.poor_fit_rms:
        return [Reason("poor_fit", f"{text}; above {t.poor_fit_rms:.0%}: the functional form does not describe "
                                   "these runs)")]
    if rms > t.loose_fit_rms:
        return [Reason("loose_fit", f"{text}; a good fit of one family is well under {t.loose_fit_rms:.0%})")]
    return []


def _backtest(bt: Mapping[str, Any] | None, t: Thresholds) -> list[Reason]:
    if not bt or "error" in bt or not _finite(bt.get("mean_abs_rel_error")):
        why = (bt or {}).get("error") or "not run"
        return [Reason("no_backtest", f"no backtest (fit without the largest-compute runs, predict them): {why}")]
    mean, worst = float(bt["mean_abs_rel_error"]), float(bt.get("max_abs_rel_error", bt["mean_abs_rel_error"]))
    rel = np.asarray((bt.get("holdout") or {}).get("rel_error") or [], float)
    bias = float(np.mean(rel)) if rel.size else math.nan
    way = f"{abs(bias):.1%} too {'high' if bias > 0 else 'low'} on average" if math.isfinite(bias) else \
        f"with mean |error| {mean:.1%}"
    text = (f"fitted without its {bt.get('n_holdout', '?')} largest-compute runs, the law predicts them {way} "
            f"(max {worst:.1%})")
    if worst > t.backtest_max_error or mean > t.backtest_mean_error:
        return [Reason("backtest_error_high", f"{text}; allowed: max {t.backtest_max_error:.0%}, mean "
                                              f"{t.backtest_mean_error:.0%}")]
    if mean > t.backtest_caution:
        return [Reason("backtest_error_moderate", text)]
    return []


def _identification(d: Mapping[str, Any], ci: Mapping[str, Sequence[float]], n_boot: int,
                    t: Thresholds) -> list[Reason]:
    out = []
    if "hessian_condition" in d:
        cond = d["hessian_condition"]
        if not _finite(cond) or float(cond) > t.hessian_condition:
            shown = f"{float(cond):.1e}" if _finite(cond) else "∞"
            out.append(Reason("flat_direction", f"some parameter combination is flat (Hessian condition {shown}): "
                                                "individual parameters are not identified"))
    if n_boot <= 0 or not ci:
        out.append(Reason("no_bootstrap", "fitted without a bootstrap: no intervals on the parameters or the plans, "
                                          "and their identifiability is unchecked"))
        return out
    hits = {k: int(v) for k, v in (d.get("bootstrap_at_bounds") or {}).items() if int(v) >= t.boot_at_bound_share
            * n_boot and int(v) > 0}
    if hits:
        out.append(Reason("bootstrap_at_bound", "resampled fits end at a bound (" + ", ".join(
            f"{k} in {v} of {n_boot}" for k, v in hits.items()) + "): those intervals reflect the bounds, not only "
                                                                 "the data"))
    return out


def _design(params: Mapping[str, float], N: np.ndarray, D: np.ndarray, L: np.ndarray, t: Thresholds) -> list[Reason]:
    out = []
    if N.size < t.few_points:
        out.append(Reason("few_points", f"only {N.size} runs fitted (a ladder of {t.few_points} or more pins the law "
                                        "down far better)"))
    sizes, budgets = np.unique(N).size, np.unique(D).size
    if min(sizes, budgets) < t.min_distinct:
        out.append(Reason("few_sizes", f"{sizes} distinct model sizes and {budgets} token budgets: with fewer than "
                                       f"{t.min_distinct} a power law is (nearly) exactly determined"))
    if N.size > 2 and np.ptp(np.log(N)) > 0 and np.ptp(np.log(D)) > 0:
        corr = float(np.corrcoef(np.log(N), np.log(D))[0, 1])
        if abs(corr) > t.collinear:
            out.append(Reason("collinear_design", f"log N and log D are collinear (corr {corr:.4f}; e.g. one "
                                                  "tokens-per-parameter ratio): the N and D terms cannot be separated"))
    if L.size and float(params["E"]) >= float(L.min()):
        out.append(Reason("floor_above_loss", f"E = {float(params['E']):.3f} is not below the lowest observed loss "
                                              f"{float(L.min()):.3f}"))
    return out
