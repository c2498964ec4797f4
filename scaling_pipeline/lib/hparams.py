"""Optimal learning rate from hyperparameter sweeps: per model size, then as a power law in N.

A sweep is a set of runs of one family at the same (N parameters, D tokens) that differ in peak
learning rate. :func:`lr_optimum` places the optimum of one sweep by a parabola in ln(LR) through
the best logged LR and its neighbours (loss vs ln LR is close to a parabola near its minimum).
:func:`lr_scaling` fits ``LR* = c * N^-gamma`` to the optima of a family (``* D^-delta`` too when the
sweeps span token budgets that do not move with N) by ordinary least squares of ln LR*, with
Student-t intervals from the OLS standard errors (the scaling of the optimal learning rate, as in
DeepSeek LLM 2024 and Step Law 2025). Learning rates are in the units the runs logged; losses in
nats/token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Status codes of LrOptimum / LrScaling.
OK = "ok"
TOO_FEW_LRS = "too_few_lrs"  # fewer than 3 distinct learning rates
NOT_BRACKETED = "not_bracketed"  # the best logged LR is the smallest or largest swept, or the vertex is outside
NOT_CONVEX = "not_convex"  # the parabola through the best and its neighbours opens downwards (noise)
TOO_FEW_SIZES = "too_few_sizes"  # optima at fewer than 3 model sizes

MIN_LRS = 3
MIN_SIZES = 3
_MAX_COLLINEARITY = 0.95  # |corr(ln N, ln D)| above which D's exponent is not identifiable


@dataclass(frozen=True)
class LrOptimum:
    """The optimal peak learning rate of one sweep (NaN where ``status`` is not ok)."""

    n_lrs: int  # distinct learning rates swept
    lr_best: float  # the best logged learning rate
    loss_best: float  # its final loss (nats/token; the mean when it was run more than once)
    lr_opt: float  # the parabola's vertex
    loss_opt: float  # the parabola's minimum (nats/token)
    curvature: float  # d^2 loss / d(ln LR)^2 of the parabola (nats)
    status: str
    detail: str


def lr_optimum(lrs: np.ndarray | list[float], losses: np.ndarray | list[float], *,
               half_window: int = 2) -> LrOptimum:
    """Optimal peak LR of one sweep: least-squares parabola of loss vs ln(LR) through the best logged
    LR and up to ``half_window`` neighbours on each side (runs repeated at one LR count as their mean).
    Needs at least 3 learning rates and the best one inside the sweep (bracketed)."""
    lr, loss = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    ok = np.isfinite(lr) & (lr > 0) & np.isfinite(loss)
    lr, loss = lr[ok], loss[ok]
    x_all, first, inverse = np.unique(np.log(lr), return_index=True, return_inverse=True)
    if x_all.size == 0:
        return LrOptimum(0, math.nan, math.nan, math.nan, math.nan, math.nan, TOO_FEW_LRS,
                         "no run with a known learning rate and a finite loss")
    y_all = np.bincount(inverse, loss) / np.bincount(inverse)
    k, i = x_all.size, int(np.argmin(y_all))
    best = dict(n_lrs=k, lr_best=float(lr[first[i]]), loss_best=float(y_all[i]))
    nan = dict(lr_opt=math.nan, loss_opt=math.nan, curvature=math.nan)
    if k < MIN_LRS:
        return LrOptimum(**best, **nan, status=TOO_FEW_LRS,
                         detail=f"{k} learning rate{'s' if k > 1 else ''} swept; a parabola needs at least {MIN_LRS}")
    if i in (0, k - 1):
        return LrOptimum(**best, **nan, status=NOT_BRACKETED,
                         detail=f"the best logged LR {best['lr_best']:.3g} is the {'smallest' if i == 0 else 'largest'}"
                                f" of the {k} swept: the optimum is not bracketed")
    lo, hi = max(0, i - half_window), min(k, i + half_window + 1)
    x, y = x_all[lo:hi], y_all[lo:hi]
    a, b, c = np.polyfit(x, y, 2)
    used = f"parabola in ln LR through {hi - lo} of {k} learning rates around the best logged ({best['lr_best']:.3g})"
    if not a > 0:
        return LrOptimum(**best, **nan, status=NOT_CONVEX, detail=f"{used} opens downwards (noise?)")
    x_opt = -b / (2 * a)
    fitted = dict(lr_opt=float(np.exp(x_opt)), loss_opt=float(c - b * b / (4 * a)), curvature=float(2 * a))
    if not x[0] <= x_opt <= x[-1]:
        return LrOptimum(**best, **fitted, status=NOT_BRACKETED,
                         detail=f"{used} has its vertex ({fitted['lr_opt']:.3g}) outside the LRs it was fitted to")
    return LrOptimum(**best, **fitted, status=OK, detail=used)


@dataclass(frozen=True)
class LrScaling:
    """``LR*(N, D) = c * N^-gamma * D^-delta`` fitted to per-size optima (delta NaN: D not fitted, i.e.
    ``LR* = c * N^-gamma``). Intervals at ``level`` (Student-t, OLS standard errors of ln LR*)."""

    n_optima: int
    n_sizes: int  # distinct N among the optima
    c: float
    gamma: float
    gamma_lo: float
    gamma_hi: float
    delta: float
    delta_lo: float
    delta_hi: float
    residual_sd: float  # of ln LR* about the fit
    level: float
    status: str
    detail: str

    def lr(self, n_params: float, n_tokens: float | None = None) -> float:
        """LR* at ``n_params`` (and ``n_tokens`` when D was fitted)."""
        d_term = 1.0 if math.isnan(self.delta) else float(n_tokens) ** -self.delta
        return self.c * float(n_params) ** -self.gamma * d_term


def lr_scaling(n_params: np.ndarray | list[float], lr_opt: np.ndarray | list[float],
               n_tokens: np.ndarray | list[float] | None = None, *, level: float = 0.95) -> LrScaling:
    """OLS of ln LR* on ln N (and ln D when the optima span several D not collinear with N) over the
    optima; at least 3 sizes. The interval is estimate ± t(dof) x standard error."""
    n = np.asarray(n_params, dtype=float)
    y = np.log(np.asarray(lr_opt, dtype=float))
    d = None if n_tokens is None else np.asarray(n_tokens, dtype=float)
    ok = np.isfinite(y) & (n > 0) & (np.isfinite(d) & (d > 0) if d is not None else True)
    n, y, d = n[ok], y[ok], (d[ok] if d is not None else None)
    ln_n = np.log(n)
    n_sizes = int(np.unique(np.round(ln_n, 6)).size)
    nan = math.nan
    if n_sizes < MIN_SIZES:
        return LrScaling(int(y.size), n_sizes, nan, nan, nan, nan, nan, nan, nan, nan, level, TOO_FEW_SIZES,
                         f"learning-rate optima at {n_sizes} model size{'s' if n_sizes != 1 else ''}; "
                         f"a power law with an interval needs at least {MIN_SIZES}")
    columns, why_not_d = [np.ones_like(ln_n), -ln_n], "the sweeps have one token budget per size"
    if d is not None and np.unique(np.round(np.log(d), 6)).size > 1:
        ln_d = np.log(d)
        if abs(np.corrcoef(ln_n, ln_d)[0, 1]) > _MAX_COLLINEARITY:
            why_not_d = "the sweeps' token budgets move with N (D's exponent is not identifiable)"
        elif y.size < 4:
            why_not_d = "too few optima to fit D's exponent too"
        else:
            columns.append(-ln_d)
            why_not_d = ""
    x = np.column_stack(columns)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    dof = y.size - x.shape[1]  # >= 1: at least 3 sizes for 2 coefficients, 4 optima for 3
    resid = y - x @ coef
    sd = math.sqrt(float(resid @ resid) / dof)
    from scipy import stats  # here, not at import: scipy.stats takes ~1 s to import

    half = stats.t.ppf(0.5 + level / 2, dof) * np.sqrt(np.diag(np.linalg.inv(x.T @ x))) * sd
    gamma, delta = float(coef[1]), float(coef[2]) if len(coef) > 2 else nan
    delta_ci = (delta - half[2], delta + half[2]) if len(coef) > 2 else (nan, nan)
    detail = (f"OLS of ln LR* on ln N{' and ln D' if len(coef) > 2 else ''} over {y.size} optima at {n_sizes} sizes; "
              f"{level:.0%} Student-t intervals ({dof} dof)" + (f"; D not fitted: {why_not_d}" if why_not_d else ""))
    return LrScaling(int(y.size), n_sizes, float(np.exp(coef[0])), gamma, gamma - half[1], gamma + half[1],
                     delta, float(delta_ci[0]), float(delta_ci[1]), sd, level, OK, detail)
