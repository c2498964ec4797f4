"""Fit of the data-constrained law (Muennighoff et al. 2023), :func:`fit_data_constrained`."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

from scaling_pipeline.lib.fitting.chinchilla import CHINCHILLA_PARAMS, fit_chinchilla
from scaling_pipeline.lib.fitting.common import (
    FitError,
    FitResult,
    _check_loss,
    _one_blas_thread,
    _positive,
    _residual_summary,
    _same_length,
)
from scaling_pipeline.lib.fitting.search import _LOG_BOUND
from scaling_pipeline.lib.laws import MUENNIGHOFF, DataConstrained

__all__ = ["fit_data_constrained"]

_DC_PARAMS = DataConstrained.params
_DC_LOG = ("E", "A", "B")  # optimised in log space
_DC_BOUNDS = {
    "E": (-_LOG_BOUND, _LOG_BOUND),
    "A": (-_LOG_BOUND, _LOG_BOUND),
    "B": (-_LOG_BOUND, _LOG_BOUND),
    "alpha": (1e-3, 3.0),
    "beta": (1e-3, 3.0),
    "rd_star": (1e-2, 1e4),
    "rn_star": (1e-2, 1e4),
}
_DC_STARTS = tuple(np.linspace(0.0, 20.0, 4))  # published protocol: R*_D, R*_N start grid
_PUBLISHED = {k: getattr(MUENNIGHOFF, k) for k in CHINCHILLA_PARAMS}  # held fixed by the published protocol


def fit_data_constrained(
    N: ArrayLike,
    D: ArrayLike,
    U: ArrayLike,
    L: ArrayLike,
    *,
    fixed: Mapping[str, float] | None = None,
    free_all: bool = False,
    delta: float = 1e-3,
    starts: Sequence[float] = _DC_STARTS,
) -> FitResult:
    """Fit the data-constrained law (:class:`~scaling_pipeline.lib.laws.DataConstrained`).

    ``N`` parameters, ``D`` total tokens, ``U`` unique tokens, ``L`` loss (nats/token).
    Objective: sum of ``Huber_delta(log L̂ - log L)``, minimised by L-BFGS-B (central-difference
    gradients) from every pair of ``starts`` for ``(rd_star, rn_star)``, keeping the lowest
    objective. By default this is the published protocol: ``E, A, B, alpha, beta`` fixed at
    Muennighoff et al.'s values (:data:`~scaling_pipeline.lib.laws.MUENNIGHOFF`), only
    ``rd_star`` and ``rn_star`` fitted, starts ``linspace(0, 20, 4)``; zero starts are skipped
    because the law is undefined at ``R* = 0`` (upstream they evaluate to NaN). ``fixed`` holds
    instead the parameters kept at given values (the others are fitted); ``free_all=True`` fits all
    seven. Free ``E, A, B, alpha, beta`` start from a Chinchilla fit of the single-epoch runs
    (``D <= U``; all runs when those are too few). The ``(rd_star, rn_star)`` valley is flat and has several
    local minima, so the result depends on ``starts``; pass a denser grid to search wider.
    """
    t0 = time.perf_counter()
    N, D, U, L = (_positive(k, v) for k, v in (("N", N), ("D", D), ("U", U), ("L", L)))
    n = _same_length(N=N, D=D, U=U, L=L)
    _check_loss("huber", delta)
    if free_all and fixed is not None:
        raise FitError("give fixed parameters or free_all, not both")
    fixed = {} if free_all else _PUBLISHED if fixed is None else {k: float(v) for k, v in fixed.items()}
    unknown = set(fixed) - set(_DC_PARAMS)
    if unknown:
        raise FitError(f"unknown fixed parameter(s) {sorted(unknown)}; allowed: {list(_DC_PARAMS)}")
    bad = [k for k, v in fixed.items() if not (math.isfinite(v) and v > 0)]
    if bad:
        raise FitError(f"fixed parameters must be finite and > 0: {bad}")
    free = [k for k in _DC_PARAMS if k not in fixed]
    if not free:
        raise FitError("all parameters are fixed: nothing to fit")
    if n < len(free):
        raise FitError(f"need at least {len(free)} points to fit {free}, got {n}")
    warnings: list[str] = []
    base = dict(fixed)
    if set(free) & set(CHINCHILLA_PARAMS):
        single = D <= U
        try:
            start = fit_chinchilla(N[single], D[single], L[single])
        except FitError:
            warnings.append("too few single-epoch runs: Chinchilla start fitted on all runs")
            start = fit_chinchilla(N, D, L)
        base = {**start.params, **fixed}
    logL = np.log(L)

    def unpack(z: np.ndarray) -> dict[str, float]:
        vals = dict(base)
        for k, v in zip(free, z):
            vals[k] = math.exp(v) if k in _DC_LOG else float(v)
        return {k: vals[k] for k in _DC_PARAMS}

    def objective(z: np.ndarray) -> float:
        try:
            pred = DataConstrained.from_params(unpack(z)).predict(N, D, U)
        except OverflowError:  # free exponents/coefficients so extreme that N_opt(U) leaves float range
            return math.inf
        r = np.log(pred) - logL
        c = np.clip(r, -delta, delta)
        return float(c @ (r - 0.5 * c))

    bounds = [_DC_BOUNDS[k] for k in free]
    lo, hi = np.array(bounds).T
    positive = [float(v) for v in starts if v > 0]
    if not positive:
        raise FitError(f"starts must contain a value > 0, got {list(starts)}")
    grid = [
        (rd, rn)
        for rd in (positive if "rd_star" in free else [base["rd_star"]])
        for rn in (positive if "rn_star" in free else [base["rn_star"]])
    ]
    best = None
    with _one_blas_thread():
        for rd, rn in grid:
            vals = {**base, "rd_star": rd, "rn_star": rn}
            z0 = [math.log(vals[k]) if k in _DC_LOG else vals[k] for k in free]
            res = minimize(
                objective,
                np.clip(z0, lo, hi),
                jac="3-point",
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12},
            )
            if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
    if best is None:
        raise FitError("data-constrained objective was not finite at any start")
    params = unpack(best.x)
    at_bounds = [k for k, v, (a, b) in zip(free, best.x, bounds) if min(v - a, b - v) <= 1e-6]
    warnings += [f"{k} is at its bound {_DC_BOUNDS[k]} (internal units)" for k in at_bounds]
    pred = np.log(DataConstrained.from_params(params).predict(N, D, U))
    return FitResult(
        form="data_constrained",
        params=params,
        loss="huber",
        delta=float(delta),
        n_points=n,
        objective=float(best.fun),
        fit_seconds=time.perf_counter() - t0,
        diagnostics={
            **_residual_summary(pred, logL),
            "fixed": sorted(fixed),
            "at_bounds": at_bounds,
            "optimizer": {"message": str(best.message), "nit": int(best.nit), "starts": len(grid)},
            "warnings": warnings,
        },
    )
