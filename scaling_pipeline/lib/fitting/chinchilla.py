"""The Chinchilla fit ``L = E + A/N^alpha + B/D^beta`` (:func:`fit_chinchilla`).

It follows the Epoch AI replication protocol (Besiroglu et al. 2024):
``log L̂ = logsumexp(a - alpha·log N, b - beta·log D, e)`` and the objective is the **sum** over
points of ``Huber_delta(log L̂ - log L)`` (natural log). The surface is multimodal and nearly flat
along the ``(b, beta)`` ridge, so the fit is global and deterministic (:mod:`.search`); internally
``log N`` and ``log D`` are centred (:mod:`.objective`); parameters are reported in the usual form.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from scaling_pipeline.lib.fitting.common import (
    FitError,
    FitResult,
    _check_loss,
    _one_blas_thread,
    _positive,
    _residual_summary,
    _same_length,
)
from scaling_pipeline.lib.fitting.objective import _Data, _hessian, _log_pred, _objective
from scaling_pipeline.lib.fitting.search import _GRID, _POLISH_OPTIONS, _global_fit, _internal_bounds
from scaling_pipeline.lib.laws import Chinchilla

__all__ = ["CHINCHILLA_PARAMS", "fit_chinchilla", "chinchilla_objective"]

CHINCHILLA_PARAMS: tuple[str, ...] = Chinchilla.params
_NEGLIGIBLE = 1e-6  # nats/token: a term this small at the data's geometric centre has vanished


def _check_design(N: np.ndarray, D: np.ndarray, n_params: int) -> list[str]:
    """Raise on unidentifiable designs, return warnings for weak ones."""
    n = N.size
    if n < n_params:
        raise FitError(f"need at least {n_params} points to fit {n_params} parameters, got {n}")
    warnings = []
    for name, what, v in (("N", "model sizes", N), ("D", "token budgets", D)):
        k = np.unique(v).size
        if k < 3:
            coef, exp = ("A", "alpha") if name == "N" else ("B", "beta")
            raise FitError(
                f"only {k} distinct {what} ({name}); at least 3 are needed to tell {coef} and "
                f"{exp} apart from E (the {name} term is unidentifiable)"
            )
        if k < 4:
            warnings.append(
                f"only {k} distinct {what}: the {name} power law is exactly determined, "
                "its exponent is unreliable"
            )
    x, y = np.log(N), np.log(D)
    corr = np.corrcoef(x, y)[0, 1]
    if abs(corr) > 0.999:
        warnings.append(
            f"log N and log D are collinear (corr {corr:.4f}; e.g. one tokens-per-parameter "
            "ratio): the N and D terms cannot be separated reliably"
        )
    if n == n_params:
        warnings.append(f"{n} points for {n_params} parameters: the fit interpolates")
    return warnings


_INTERNAL_NAMES = ("A", "B", "E", "alpha", "beta")  # what each internal coordinate controls


def _at_bound(p: np.ndarray, internal: list[tuple[float, float]]) -> np.ndarray:
    """Per internal coordinate: -1 at the lower bound, +1 at the upper bound, 0 inside.

    A term (A', B' or E) below ``_NEGLIGIBLE`` counts as at its lower bound when that bound
    is the numerical floor: the optimizer need not push it all the way down.
    """
    lo, hi = np.array(internal).T
    tol = 1e-4 * np.maximum(1.0, np.abs(p))
    low = p - lo <= tol
    floor = math.log(_NEGLIGIBLE)
    low[:3] |= (p[:3] < floor) & (lo[:3] < floor)
    return np.where(low, -1, np.where(hi - p <= tol, 1, 0))


def _chinchilla_diagnostics(
    data: _Data,
    w: np.ndarray,
    loss: str,
    delta: float,
    p: np.ndarray,
    bounds: tuple[dict[str, tuple[float, float]], list[tuple[float, float]]],
    info: dict[str, Any],
    warnings: list[str],
) -> dict[str, Any]:
    params = data.to_params(p)
    natural, internal = bounds
    at_bounds = []
    for name, side in zip(_INTERNAL_NAMES, _at_bound(p, internal)):
        if side == 0:
            continue
        at_bounds.append(name)
        if name in ("A", "B"):
            term = "N" if name == "A" else "D"
            warnings.append(
                f"the {term} term vanishes ({name} -> 0)" if side < 0
                else f"{name} hit its numerical limit: the {term} term explodes"
            )
        else:
            which, bound = ("lower", natural[name][0]) if side < 0 else ("upper", natural[name][1])
            warnings.append(f"{name} = {params[name]:.4g} is at its {which} bound {bound:g}")
    H = _hessian(data, w, loss, delta, p)
    eig, vec = np.linalg.eigh(H)
    cond = float(eig[-1] / eig[0]) if eig[0] > 0 else math.inf
    flat = vec[:, 0] * np.sign(vec[np.argmax(np.abs(vec[:, 0])), 0])
    if not math.isfinite(cond):
        warnings.append(
            "objective Hessian is not positive definite at the optimum: some parameter "
            "combination is flat (not identified by these runs)"
        )
    elif cond > 1e8:
        warnings.append(
            f"objective Hessian condition number {cond:.1e}: parameters are poorly identified "
            "along the flat direction reported in diagnostics"
        )
    resid = _residual_summary(_log_pred(data, p), data.l)
    if resid["rmse_log_residual"] > 0.05:
        warnings.append(
            f"poor fit: rms log residual {resid['rmse_log_residual']:.3f} (> 5% relative)"
        )
    if params["E"] >= np.exp(data.l).min():
        warnings.append("E is not below the lowest observed loss")
    return {
        **resid,
        "hessian_condition": cond,
        "flat_direction": dict(
            zip(("log_A_centred", "log_B_centred", "log_E", "alpha", "beta"), flat.tolist())
        ),
        "at_bounds": at_bounds,
        "bounds": {k: list(v) for k, v in natural.items()},
        "a": Chinchilla.from_params(params).a,
        "optimizer": info,
        "warnings": warnings,
    }


def fit_chinchilla(
    N: ArrayLike,
    D: ArrayLike,
    L: ArrayLike,
    *,
    loss: str = "huber",
    delta: float = 1e-3,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> FitResult:
    """Fit ``L = E + A/N^alpha + B/D^beta`` globally (Epoch protocol by default).

    ``N`` parameters, ``D`` tokens, ``L`` loss in nats/token, one entry per run.
    ``loss``: ``"huber"`` (default) minimises the sum of ``Huber_delta(log L̂ - log L)``;
    ``"huber_loss_space"`` the sum of ``Huber_delta(L̂ - L)`` (delta in nats);
    ``"mse"`` the mean of ``(log L̂ - log L)^2`` (``delta`` unused).
    ``bounds``: optional ``{"E" | "alpha" | "beta": (lo, hi)}`` in natural units
    (defaults: E >= 0, 0 <= alpha, beta <= 3).
    Deterministic. Raises :class:`FitError` on unusable input.

    ``diagnostics``: ``rmse_log_residual``, ``max_abs_rel_error`` (of L̂/L), ``at_bounds``,
    ``bounds``, ``a``, ``hessian_condition`` and ``flat_direction`` (condition number and
    weakest eigenvector of the objective's Hessian in the centred coordinates
    ``log A' = log A - alpha·mean(log N)``, ``log B'`` likewise, ``log E``, ``alpha``, ``beta``;
    ``inf``/``None`` when not positive definite), ``optimizer`` (starts polished and their
    objectives) and ``warnings`` (human-readable).
    """
    t0 = time.perf_counter()
    N, D, L = _positive("N", N), _positive("D", D), _positive("L", L)
    n = _same_length(N=N, D=D, L=L)
    _check_loss(loss, delta)
    warnings = _check_design(N, D, 5)
    ib = _internal_bounds(bounds)
    data = _Data.build(N, D, L)
    w = np.ones(n)
    with _one_blas_thread():
        p, f, info = _global_fit(data, w, loss, delta, ib[1], _GRID, _POLISH_OPTIONS)
        diagnostics = _chinchilla_diagnostics(data, w, loss, delta, p, ib, info, warnings)
    return FitResult(
        form="chinchilla",
        params=data.to_params(p),
        loss=loss,
        delta=None if loss == "mse" else float(delta),
        n_points=n,
        objective=f,
        fit_seconds=time.perf_counter() - t0,
        diagnostics=diagnostics,
    )


def chinchilla_objective(
    params: Mapping[str, float],
    N: ArrayLike,
    D: ArrayLike,
    L: ArrayLike,
    *,
    loss: str = "huber",
    delta: float = 1e-3,
) -> float:
    """Objective of :func:`fit_chinchilla` at given natural ``params`` (e.g. published ones)."""
    N, D, L = _positive("N", N), _positive("D", D), _positive("L", L)
    n = _same_length(N=N, D=D, L=L)
    _check_loss(loss, delta)
    data = _Data.build(N, D, L)
    return _objective(data, np.ones(n), loss, delta)(data.from_params(params))[0]
