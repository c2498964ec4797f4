"""Fitting scaling laws to training runs (pure numpy/scipy).

Units: ``N`` parameters, ``D`` training tokens, ``U`` unique tokens, ``C`` FLOPs (``C = 6·N·D``),
``L`` final loss in nats/token.

The main entry point is :func:`fit_chinchilla`, which follows the Epoch AI replication protocol
(Besiroglu et al. 2024): ``log L̂ = logsumexp(a - alpha·log N, b - beta·log D, e)`` and the
objective is the **sum** over points of ``Huber_delta(log L̂ - log L)`` (natural log).
The surface is multimodal and nearly flat along the ``(b, beta)`` ridge, so the fit is global and
deterministic: a variable-projection profile over a grid of exponents ``(alpha, beta)`` (for fixed
exponents the model is linear in ``(E, A, B)``, solved in closed form by iteratively re-weighted
least squares), then L-BFGS-B with analytic gradients on all five parameters from the best few
profile minima. Candidates are ranked by objective value, never by optimizer success flags.
Internally ``log N`` and ``log D`` are centred, which removes the ``a``-``alpha`` correlation
(the reparametrisation is exact; parameters are reported in the usual form).

Bad input raises :class:`FitError` (a ``ValueError``) with a message meant for people.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize, minimize_scalar
from threadpoolctl import ThreadpoolController

from scaling_pipeline.lib.jsonutil import jsonable
from scaling_pipeline.lib.laws import FORMS

__all__ = [
    "FitError",
    "FitResult",
    "JointFit",
    "fit_chinchilla_joint",
    "Bootstrap",
    "IsoFlopFit",
    "CHINCHILLA_PARAMS",
    "LOSSES",
    "fit_chinchilla",
    "chinchilla_objective",
    "bootstrap_chinchilla",
    "backtest_chinchilla",
    "fit_data_constrained",
    "fit_power_law",
    "fit_saturating",
    "fit_kaplan",
    "isoflop_approach2",
    "fit_csv",
]

CHINCHILLA_PARAMS: tuple[str, ...] = ("E", "A", "B", "alpha", "beta")
LOSSES: tuple[str, ...] = ("huber", "huber_loss_space", "mse")
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "E": (0.0, math.inf),
    "alpha": (0.0, 3.0),
    "beta": (0.0, 3.0),
}

# Global-search settings (see module docstring). The profile grid is log-spaced in the exponents.
_GRID = 20  # exponents per axis for the full fit
_BOOT_GRID = 8  # coarse grid for bootstrap resamples (each is warm-started from the full fit)
_GRID_RANGE = (0.02, 2.5)  # exponent range searched (clipped to the bounds)
_MAX_POLISH = 4  # L-BFGS-B polishes from distinct profile minima, at most
_POLISH_MARGIN = 0.25  # polish a further minimum if its profile value < (1 + margin)·best so far
_LOG_BOUND = 40.0  # |log A'|, |log B'|, log E hard limits (numerical safety only)
_E_FLOOR = 1e-12  # lower limit of E used when the bound is 0 (nats/token)
_NEGLIGIBLE = 1e-6  # nats/token: a term this small at the data's geometric centre has vanished
_POLISH_OPTIONS = {"maxiter": 3000, "maxfun": 6000, "ftol": 1e-15, "gtol": 1e-11}
_BOOT_OPTIONS = {"maxiter": 1000, "maxfun": 2000, "ftol": 1e-10, "gtol": 1e-7}


class FitError(ValueError):
    """Input that cannot be fitted (too few points, bad values, unidentifiable design...)."""


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class FitResult:
    """Outcome of a fit.

    ``params`` are in natural units (see :mod:`scaling_pipeline.lib.laws`); ``objective`` is the
    value of the minimised objective at ``params`` (for the default Chinchilla fit: the sum over
    points of ``Huber_delta(log L̂ - log L)``); ``fit_seconds`` is wall time; ``ci`` maps a name
    to a ``(lo, hi)`` bootstrap interval when one was computed.
    """

    form: str
    params: dict[str, float]
    loss: str
    delta: float | None
    n_points: int
    objective: float
    fit_seconds: float
    diagnostics: dict[str, Any] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] | None = None

    @property
    def law(self) -> Any:
        """The fitted law object (e.g. :class:`~scaling_pipeline.lib.laws.Chinchilla`)."""
        return FORMS[self.form].build(self.params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``ci`` only when present; non-finite floats become ``None``)."""
        out: dict[str, Any] = {
            "form": self.form,
            "loss": self.loss,
            "delta": self.delta,
            "n_points": self.n_points,
            "params": dict(self.params),
            "objective": self.objective,
            "fit_seconds": self.fit_seconds,
        }
        if self.ci is not None:
            out["ci"] = {k: [lo, hi] for k, (lo, hi) in self.ci.items()}
        out["diagnostics"] = self.diagnostics
        return jsonable(out)


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap of a Chinchilla fit over resampled runs.

    ``samples`` has one row per resample and columns :data:`CHINCHILLA_PARAMS`
    (E, A, B, alpha, beta); ``ci`` holds percentile intervals at ``level`` for every parameter
    and for ``a = beta/(alpha+beta)``; ``at_bounds`` counts resamples whose fit ended at a
    bound, per parameter (those intervals are bound-limited; ``fit.diagnostics`` warns).
    """

    fit: FitResult
    samples: np.ndarray
    objectives: np.ndarray
    at_bounds: dict[str, int]
    level: float
    seed: int
    seconds: float
    n_jobs: int
    ci: dict[str, tuple[float, float]]

    def derived_ci(self, C: ArrayLike, level: float | None = None) -> dict[str, np.ndarray]:
        """Percentile intervals of ``N*`` (params), ``D*`` (tokens) and the loss at the optimum
        (nats/token) for budgets ``C`` (FLOPs): ``{name: array of shape (len(C), 2)}``."""
        C = np.atleast_1d(np.asarray(C, dtype=float))
        if np.any(~np.isfinite(C) | (C <= 0)):
            raise FitError("compute budgets C must be finite and > 0 FLOPs")
        E, A, B, al, be = (self.samples[:, i, None] for i in range(5))
        G = (al * A / (be * B)) ** (1.0 / (al + be))
        n_opt = G * (C / 6.0) ** (be / (al + be))
        d_opt = C / 6.0 / n_opt
        loss = E + A * n_opt**-al + B * d_opt**-be
        q = _quantiles(self.level if level is None else level)
        return {
            name: np.nanquantile(v, q, axis=0).T
            for name, v in (("N_opt", n_opt), ("D_opt", d_opt), ("loss_opt", loss))
        }


@dataclass(frozen=True)
class IsoFlopFit:
    """IsoFLOP "Approach 2" result: ``N* = coef·C^a`` (params, C in FLOPs) fitted on
    per-budget parabola vertices ``n_opt`` (params) with losses ``loss_opt`` (nats/token)."""

    a: float
    coef: float
    budgets: np.ndarray
    n_opt: np.ndarray
    loss_opt: np.ndarray
    skipped: list[float]


# --------------------------------------------------------------------------------------------
# Helpers: validation, JSON, BLAS threads


_controller: ThreadpoolController | None = None


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread: tiny fits are much slower with threaded BLAS."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield


def _positive(name: str, values: ArrayLike) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise FitError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 1:
        raise FitError(f"{name} must be a 1-D sequence, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        idx = np.flatnonzero(bad)
        shown = ", ".join(f"[{i}]={float(arr[i])!r}" for i in idx[:5])
        more = f" (and {idx.size - 5} more)" if idx.size > 5 else ""
        raise FitError(f"{name} must be finite and > 0; {idx.size} bad value(s): {shown}{more}")
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    sizes = {k: v.size for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise FitError(f"inputs must have the same length, got {sizes}")
    return next(iter(sizes.values()))


def _check_loss(loss: str, delta: float) -> None:
    if loss not in LOSSES:
        raise FitError(f"loss must be one of {LOSSES}, got {loss!r}")
    ok = isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0
    if loss != "mse" and not ok:
        raise FitError(f"delta must be finite and > 0, got {delta!r}")


def _residual_summary(log_pred: np.ndarray, log_obs: np.ndarray) -> dict[str, float]:
    r = log_pred - log_obs
    return {
        "rmse_log_residual": float(np.sqrt(np.mean(r**2))),
        "max_abs_rel_error": float(np.max(np.abs(np.expm1(r)))),
    }


def _quantiles(level: float) -> list[float]:
    if not 0 < level < 1:
        raise FitError(f"level must be in (0, 1), got {level!r}")
    return [(1 - level) / 2, (1 + level) / 2]


# --------------------------------------------------------------------------------------------
# Chinchilla: objective, profile, polish


@dataclass(frozen=True)
class _Data:
    """Centred log design: ``xc = log N - xm``, ``yc = log D - ym``, ``l = log L``."""

    xc: np.ndarray
    yc: np.ndarray
    l: np.ndarray
    xm: float
    ym: float

    @classmethod
    def build(cls, N: np.ndarray, D: np.ndarray, L: np.ndarray) -> _Data:
        x, y = np.log(N), np.log(D)
        return cls(x - x.mean(), y - y.mean(), np.log(L), float(x.mean()), float(y.mean()))

    def to_params(self, p: np.ndarray) -> dict[str, float]:
        """Internal ``(a', b', e, alpha, beta)`` -> natural ``{E, A, B, alpha, beta}``."""
        a_c, b_c, e, al, be = (float(v) for v in p)
        return {
            "E": math.exp(e),
            "A": math.exp(a_c + al * self.xm),
            "B": math.exp(b_c + be * self.ym),
            "alpha": al,
            "beta": be,
        }

    def from_params(self, params: Mapping[str, float]) -> np.ndarray:
        al, be = params["alpha"], params["beta"]
        return np.array(
            [
                math.log(params["A"]) - al * self.xm,
                math.log(params["B"]) - be * self.ym,
                math.log(params["E"]),
                al,
                be,
            ]
        )


def _objective(data: _Data, w: np.ndarray, loss: str, delta: float):
    """Return ``f(p) -> (value, gradient)`` for internal params ``p = (a', b', e, alpha, beta)``.

    ``w`` are per-point weights (resampling counts; ones for a plain fit).
    """
    xc, yc, l = data.xc, data.yc, data.l
    L = np.exp(l)
    wsum = float(w.sum())

    def fg(p: np.ndarray) -> tuple[float, np.ndarray]:
        a_c, b_c, e, al, be = p
        t1 = a_c - al * xc
        t2 = b_c - be * yc
        m = np.maximum(np.maximum(t1, t2), e)
        e1 = np.exp(t1 - m)
        e2 = np.exp(t2 - m)
        e3 = np.exp(e - m)
        s = e1 + e2 + e3
        if loss == "mse":
            r = m + np.log(s) - l
            f = float(w @ (r * r)) / wsum
            q = (2.0 / wsum) * w * r / s
        else:
            if loss == "huber":
                r = m + np.log(s) - l
                scale = 1.0 / s
            else:  # huber_loss_space: r = L̂ - L, dr/dlog L̂ = L̂
                scale = np.exp(m)
                r = s * scale - L
            c = np.clip(r, -delta, delta)
            f = float(w @ (c * (r - 0.5 * c)))
            q = w * c * scale
        g1 = q * e1
        g2 = q * e2
        return f, np.array([g1.sum(), g2.sum(), q @ e3, -(g1 @ xc), -(g2 @ yc)])

    return fg


def _log_pred(data: _Data, p: np.ndarray) -> np.ndarray:
    a_c, b_c, e, al, be = p
    return np.logaddexp(np.logaddexp(a_c - al * data.xc, b_c - be * data.yc), e)


def _hessian(data: _Data, w: np.ndarray, loss: str, delta: float, p: np.ndarray) -> np.ndarray:
    """Analytic Hessian of the objective in internal coordinates ``(a', b', e, alpha, beta)``."""
    a_c, b_c, e, al, be = p
    lse = _log_pred(data, p)
    sig = np.exp(np.stack([a_c - al * data.xc, b_c - be * data.yc, np.full_like(lse, e)]) - lse)
    n = lse.size
    M = np.zeros((n, 3, 5))  # d t_j / d p for t = (a' - alpha·xc, b' - beta·yc, e)
    M[:, 0, 0] = 1.0
    M[:, 1, 1] = 1.0
    M[:, 2, 2] = 1.0
    M[:, 0, 3] = -data.xc
    M[:, 1, 4] = -data.yc
    S = sig.T
    grad_lse = np.einsum("nj,njk->nk", S, M)
    curv = np.einsum("nj,njk,njl->nkl", S, M, M) - np.einsum("nk,nl->nkl", grad_lse, grad_lse)
    if loss == "huber_loss_space":  # r = exp(lse) - L
        Lh = np.exp(lse)
        r = Lh - np.exp(data.l)
        grad_r = Lh[:, None] * grad_lse
        hess_r = Lh[:, None, None] * (curv + np.einsum("nk,nl->nkl", grad_lse, grad_lse))
    else:
        r = lse - data.l
        grad_r, hess_r = grad_lse, curv
    if loss == "mse":
        d1, d2 = 2.0 * r / w.sum(), np.full_like(r, 2.0) / w.sum()
    else:
        d1, d2 = np.clip(r, -delta, delta), (np.abs(r) <= delta).astype(float)
    return np.einsum("n,nk,nl->kl", w * d2, grad_r, grad_r) + np.einsum(
        "n,nkl->kl", w * d1, hess_r
    )


def _grid(lo: float, hi: float, size: int) -> np.ndarray:
    lo, hi = max(lo, _GRID_RANGE[0]), min(hi, _GRID_RANGE[1])
    if hi <= lo:  # bounds narrower than / outside the default search range
        return np.array([lo])
    return np.geomspace(lo, hi, size)


def _profile(
    data: _Data,
    w: np.ndarray,
    loss: str,
    delta: float,
    alphas: np.ndarray,
    betas: np.ndarray,
    e_bounds: tuple[float, float],
    irls: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Profile objective on the ``alphas × betas`` grid.

    For fixed exponents, ``L̂ = E + A'·u + B'·v`` with ``u = exp(-alpha·xc)`` and
    ``v = exp(-beta·yc)`` is linear in ``(E, A', B')``; it is fitted by weighted least squares on
    relative residuals (absolute ones for ``huber_loss_space``), then re-weighted ``irls`` times
    with Huber weights ``min(1, delta/|r|)``. Coefficients are clipped to the feasible region,
    so each value is the objective at an admissible point (an upper bound of the exact profile).
    Returns the values, shape ``(len(alphas), len(betas))``, and the internal parameters of
    every grid point.
    """
    L = np.exp(data.l)
    s2 = w / L**2 if loss != "huber_loss_space" else w.copy()
    U = np.exp(-alphas[:, None] * data.xc)[:, None, :]  # (ga, 1, n)
    V = np.exp(-betas[:, None] * data.yc)[None, :, :]  # (1, gb, n)
    shape = (alphas.size, betas.size)
    c = np.broadcast_to(s2, shape + s2.shape)
    for it in range(irls + 1):
        cu, cv = c * U, c * V
        G = np.empty(shape + (3, 3))
        G[..., 0, 0] = c.sum(-1)
        G[..., 0, 1] = G[..., 1, 0] = cu.sum(-1)
        G[..., 0, 2] = G[..., 2, 0] = cv.sum(-1)
        G[..., 1, 1] = (cu * U).sum(-1)
        G[..., 1, 2] = G[..., 2, 1] = (cu * V).sum(-1)
        G[..., 2, 2] = (cv * V).sum(-1)
        rhs = np.stack([(c * L).sum(-1), (cu * L).sum(-1), (cv * L).sum(-1)], axis=-1)
        G += np.eye(3) * (1e-12 * np.trace(G, axis1=-2, axis2=-1))[..., None, None]
        theta = np.linalg.solve(G, rhs[..., None])[..., 0]
        theta = np.clip(theta, [math.exp(e_bounds[0]), 1e-300, 1e-300], [math.exp(e_bounds[1])] * 3)
        pred = theta[..., 0, None] + theta[..., 1, None] * U + theta[..., 2, None] * V
        if loss == "huber_loss_space":
            r = pred - L
        else:
            r = np.log(pred) - data.l
        if it < irls and loss != "mse":
            c = s2 * np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
    if loss == "mse":
        F = (r * r) @ w / w.sum()
    else:
        h = np.clip(r, -delta, delta)
        F = (h * (r - 0.5 * h)) @ w
    A_, B_ = np.broadcast_arrays(alphas[:, None], betas[None, :])
    P = np.stack(
        [np.log(theta[..., 1]), np.log(theta[..., 2]), np.log(theta[..., 0]), A_, B_], axis=-1
    )
    P[..., :2] = np.clip(P[..., :2], -_LOG_BOUND, _LOG_BOUND)
    return np.where(np.isfinite(F), F, np.inf), P


def _local_minima(F: np.ndarray) -> list[tuple[int, int]]:
    """Grid cells not larger than any of their (up to 8) neighbours, best first."""
    padded = np.pad(F, 1, constant_values=np.inf)
    ga, gb = F.shape
    is_min = np.ones_like(F, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                is_min &= F <= padded[1 + di : 1 + di + ga, 1 + dj : 1 + dj + gb]
    cells = [tuple(int(v) for v in ij) for ij in np.argwhere(is_min & np.isfinite(F))]
    return sorted(cells, key=lambda ij: F[ij])


def _polish(fg, p0: np.ndarray, bounds: list[tuple[float, float]], options: dict) -> Any:
    p0 = np.clip(p0, [b[0] for b in bounds], [b[1] for b in bounds])
    return minimize(fg, p0, jac=True, method="L-BFGS-B", bounds=bounds, options=options)


def _internal_bounds(
    bounds: Mapping[str, tuple[float, float]] | None,
) -> tuple[dict[str, tuple[float, float]], list[tuple[float, float]]]:
    """Natural-unit bounds merged with the defaults, and box bounds on ``(a', b', e, alpha,
    beta)`` for L-BFGS-B."""
    merged = dict(DEFAULT_BOUNDS)
    for name, pair in (bounds or {}).items():
        if name in ("A", "B"):
            raise FitError(
                f"bounds on {name} are not supported: A and B trade off against the exponents "
                "(the b-beta ridge); bound 'alpha'/'beta' or 'E' instead"
            )
        if name not in merged:
            raise FitError(f"unknown bound {name!r}; allowed: {sorted(DEFAULT_BOUNDS)}")
        lo, hi = (float(v) for v in pair)
        if not lo < hi or lo < 0:
            raise FitError(f"bounds for {name} must satisfy 0 <= lo < hi, got {pair!r}")
        merged[name] = (lo, hi)
    e_lo = math.log(max(merged["E"][0], _E_FLOOR))
    e_hi = math.log(merged["E"][1]) if math.isfinite(merged["E"][1]) else _LOG_BOUND
    internal = [(-_LOG_BOUND, _LOG_BOUND), (-_LOG_BOUND, _LOG_BOUND), (e_lo, e_hi)]
    return merged, internal + [merged["alpha"], merged["beta"]]


def _global_fit(
    data: _Data,
    w: np.ndarray,
    loss: str,
    delta: float,
    ibounds: list[tuple[float, float]],
    grid: int,
    options: dict,
    warm: np.ndarray | None = None,
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Profile grid + L-BFGS-B polish of the best distinct minima (+ an optional warm start)."""
    fg = _objective(data, w, loss, delta)
    alphas = _grid(*ibounds[3], grid)
    betas = _grid(*ibounds[4], grid)
    # one Huber re-weighting for the full fit; warm-started (bootstrap) fits use the cheap profile
    F, P = _profile(data, w, loss, delta, alphas, betas, ibounds[2], irls=1 if warm is None else 0)
    best: tuple[float, np.ndarray, Any] | None = None
    runs = []
    if warm is not None:
        res = _polish(fg, warm, ibounds, options)
        best = (float(res.fun), res.x, res)
        runs.append(("warm", float(res.fun)))
    step = math.log(alphas[-1] / alphas[0]) / max(grid - 1, 1) if alphas.size > 1 else 1.0
    for ij in _local_minima(F)[:_MAX_POLISH]:
        if best is not None:
            if F[ij] > (1 + _POLISH_MARGIN) * best[0]:
                break
            # skip minima in the basin the best solution already sits in
            if warm is not None and np.all(
                np.abs(np.log(np.maximum(best[1][3:], 1e-9) / P[ij][3:])) < 1.5 * step
            ):
                continue
        res = _polish(fg, P[ij], ibounds, options)
        runs.append(((float(alphas[ij[0]]), float(betas[ij[1]])), float(res.fun)))
        if best is None or res.fun < best[0]:
            best = (float(res.fun), res.x, res)
    if best is None:  # every grid point infeasible: should not happen for valid input
        raise FitError("no admissible starting point found on the exponent grid")
    f, p, res = best
    info = {
        "message": str(res.message),
        "nit": int(res.nit),
        "starts": runs,
        "grid": [int(alphas.size), int(betas.size)],
    }
    return p, f, info


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
        "a": params["beta"] / (params["alpha"] + params["beta"]),
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


@dataclass(frozen=True)
class JointFit:
    """Chinchilla law fitted to several families at once with shared exponents ``alpha``, ``beta`` and
    per-family ``E`` (nats/token), ``A``, ``B``. ``objective`` is the sum of the families' objectives."""

    alpha: float
    beta: float
    families: dict[str, dict[str, float]]  # family -> {"E", "A", "B", "n_points", "objective"}
    loss: str
    delta: float | None
    n_points: int
    objective: float
    fit_seconds: float

    def law(self, family: str) -> Any:
        """The :class:`~scaling_pipeline.lib.laws.Chinchilla` law of one family."""
        f = self.families[family]
        return FORMS["chinchilla"].build({"E": f["E"], "A": f["A"], "B": f["B"], "alpha": self.alpha, "beta": self.beta})

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"form": "chinchilla_joint", "loss": self.loss, "delta": self.delta, "n_points": self.n_points,
                         "params": {"alpha": self.alpha, "beta": self.beta}, "families": self.families,
                         "objective": self.objective, "fit_seconds": self.fit_seconds})


def fit_chinchilla_joint(
    N: ArrayLike,
    D: ArrayLike,
    L: ArrayLike,
    family: ArrayLike,
    *,
    loss: str = "huber",
    delta: float = 1e-3,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> JointFit:
    """Fit ``L = E_f + A_f/N^alpha + B_f/D^beta`` to every family ``f`` at once, exponents shared.

    Same global strategy as :func:`fit_chinchilla`: for each (alpha, beta) on the grid the families'
    ``(E, A, B)`` are profiled out independently and the profile objectives summed; the best distinct
    minima are polished jointly (all 3·k + 2 parameters) with L-BFGS-B and analytic gradients.
    ``loss`` as in :func:`fit_chinchilla` (with ``mse`` each family's mean is summed). Each family needs
    at least 3 distinct sizes and 3 distinct budgets."""
    t0 = time.perf_counter()
    N, D, L = _positive("N", N), _positive("D", D), _positive("L", L)
    fam = np.asarray(family).astype(str)
    _same_length(N=N, D=D, L=L, family=fam)
    _check_loss(loss, delta)
    names = sorted(set(fam.tolist()))
    if len(names) < 2:
        raise FitError(f"a joint fit needs at least 2 families, got {names}")
    datas = []
    for name in names:
        m = fam == name
        try:
            _check_design(N[m], D[m], 3)
        except FitError as exc:
            raise FitError(f"family {name!r}: {exc}") from None
        datas.append(_Data.build(N[m], D[m], L[m]))
    ib = _internal_bounds(bounds)[1]
    ws = [np.ones(d.l.size) for d in datas]
    fgs = [_objective(d, w, loss, delta) for d, w in zip(datas, ws)]
    k = len(datas)

    def fg(z: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros_like(z)
        for j, f in enumerate(fgs):
            v, g = f(np.concatenate([z[3 * j : 3 * j + 3], z[-2:]]))
            total += v
            grad[3 * j : 3 * j + 3] = g[:3]
            grad[-2:] += g[3:]
        return total, grad

    with _one_blas_thread():
        alphas, betas = _grid(*ib[3], _GRID), _grid(*ib[4], _GRID)
        profiles = [_profile(d, w, loss, delta, alphas, betas, ib[2], irls=1) for d, w in zip(datas, ws)]
        F = sum(Fp for Fp, _ in profiles)
        zb = ib[:3] * k + ib[3:]
        best = None
        for ij in _local_minima(F)[:_MAX_POLISH]:
            if best is not None and F[ij] > (1 + _POLISH_MARGIN) * best[0]:
                break
            z0 = np.concatenate([P[ij][:3] for _, P in profiles] + [profiles[0][1][ij][3:]])
            res = _polish(fg, z0, zb, _POLISH_OPTIONS)
            if best is None or res.fun < best[0]:
                best = (float(res.fun), res.x)
    if best is None:
        raise FitError("no admissible starting point found on the exponent grid")
    f, z = best
    families = {}
    for j, (name, d) in enumerate(zip(names, datas)):
        p = np.concatenate([z[3 * j : 3 * j + 3], z[-2:]])
        families[name] = {**{key: v for key, v in d.to_params(p).items() if key in ("E", "A", "B")},
                          "n_points": int(d.l.size), "objective": float(fgs[j](p)[0])}
    return JointFit(alpha=float(z[-2]), beta=float(z[-1]), families=families, loss=loss,
                    delta=None if loss == "mse" else float(delta), n_points=int(N.size), objective=f,
                    fit_seconds=time.perf_counter() - t0)


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


# --------------------------------------------------------------------------------------------
# Bootstrap


def _boot_chunk(
    args: tuple[_Data, np.ndarray, str, float, list, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit resamples given as per-run counts: parameters, objectives, at-bound flags."""
    data, counts, loss, delta, ibounds, warm = args
    out = np.empty((counts.shape[0], 5))
    obj = np.empty(counts.shape[0])
    bound = np.empty((counts.shape[0], 5), dtype=bool)
    with _one_blas_thread():
        for i, w in enumerate(counts):
            p, f, _ = _global_fit(
                data, w.astype(float), loss, delta, ibounds, _BOOT_GRID, _BOOT_OPTIONS, warm
            )
            params = data.to_params(p)
            out[i] = [params[k] for k in CHINCHILLA_PARAMS]
            obj[i] = f
            bound[i] = _at_bound(p, ibounds) != 0
    return out, obj, bound


def _n_workers(n_jobs: int | None, n_boot: int) -> int:
    """Worker processes: ``n_jobs``, or for ``None`` one per idle core (this process counts as
    idle; others' load from the 1-minute load average) once there are >= 100 resamples."""
    if multiprocessing.current_process().daemon:  # daemonic processes cannot have children
        return 1
    if n_jobs is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        others = max(os.getloadavg()[0] - 1.0, 0.0) if hasattr(os, "getloadavg") else 0.0
        idle = int((cpus or 1) - others + 0.5)
        return 1 if n_boot < 100 else max(1, min(idle, n_boot // 50))
    if n_jobs < 1:
        raise FitError(f"n_jobs must be >= 1 or None, got {n_jobs}")
    return min(n_jobs, n_boot)


def bootstrap_chinchilla(
    N: ArrayLike,
    D: ArrayLike,
    L: ArrayLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_jobs: int | None = None,
    loss: str = "huber",
    delta: float = 1e-3,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> Bootstrap:
    """Nonparametric bootstrap of :func:`fit_chinchilla` over runs (rows resampled with
    replacement, ``numpy.random.default_rng(seed)``).

    Each resample is warm-started from the full-data optimum and also checks the minima of a
    coarse exponent grid, so it stays global. Results depend only on the data and ``seed``, not
    on ``n_jobs`` (processes; 1: in-process; ``None``: one per idle core, judged from the load
    average, for >= 100 resamples).
    """
    t0 = time.perf_counter()
    if n_boot < 1:
        raise FitError(f"n_boot must be >= 1, got {n_boot}")
    q = _quantiles(level)
    full = fit_chinchilla(N, D, L, loss=loss, delta=delta, bounds=bounds)
    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    n = N.size
    data = _Data.build(N, D, L)
    ib = _internal_bounds(bounds)[1]
    warm = data.from_params(full.params)
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])
    workers = _n_workers(n_jobs, n_boot)
    chunks = [
        (data, c, loss, delta, ib, warm) for c in np.array_split(counts, min(n_boot, workers * 4))
    ]
    if workers == 1:
        parts = [_boot_chunk(c) for c in chunks]
    else:
        # not fork: it is unsafe once other threads exist, and Python does not see all of them (a DuckDB
        # connection runs its own; Dagster runs Python ones). The server imports the fitter once.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            parts = list(pool.map(_boot_chunk, chunks))
    samples = np.concatenate([s for s, _, _ in parts])
    objectives = np.concatenate([o for _, o, _ in parts])
    hits = np.concatenate([b for _, _, b in parts]).sum(axis=0)
    at_bounds = {name: int(k) for name, k in zip(_INTERNAL_NAMES, hits) if k}
    derived = {"a": samples[:, 4] / (samples[:, 3] + samples[:, 4])}
    ci = {
        name: tuple(float(v) for v in np.quantile(col, q))
        for name, col in [*zip(CHINCHILLA_PARAMS, samples.T), *derived.items()]
    }
    warnings = [
        f"{name} is at a bound in {k} of {n_boot} resamples: its interval reflects the bounds, "
        "not only the data"
        for name, k in at_bounds.items()
        if k >= max(1, 0.01 * n_boot)
    ]
    diagnostics = {
        **full.diagnostics,
        "bootstrap_at_bounds": at_bounds,
        "warnings": full.diagnostics["warnings"] + warnings,
    }
    return Bootstrap(
        fit=replace(full, ci=ci, diagnostics=diagnostics),
        samples=samples,
        objectives=objectives,
        at_bounds=at_bounds,
        level=level,
        seed=seed,
        seconds=time.perf_counter() - t0,
        n_jobs=workers,
        ci=ci,
    )


# --------------------------------------------------------------------------------------------
# Backtest


def backtest_chinchilla(
    N: ArrayLike,
    D: ArrayLike,
    L: ArrayLike,
    *,
    holdout_fraction: float = 0.1,
    n_holdout: int | None = None,
    loss: str = "huber",
    delta: float = 1e-3,
) -> dict[str, Any]:
    """Fit on all but the largest-compute runs (``C = 6·N·D`` FLOPs) and predict those.

    Holds out ``n_holdout`` runs (default ``ceil(holdout_fraction·n)``, at least 1). Returns a
    JSON-ready dict with the training fit, per-held-out-run predictions and relative errors
    ``L̂/L - 1``, and their mean/max absolute values.
    """
    N, D, L = _positive("N", N), _positive("D", D), _positive("L", L)
    n = _same_length(N=N, D=D, L=L)
    if n_holdout is None:
        if not 0 < holdout_fraction < 1:
            raise FitError(f"holdout_fraction must be in (0, 1), got {holdout_fraction!r}")
        n_holdout = max(1, math.ceil(holdout_fraction * n))
    if not 1 <= n_holdout < n:
        raise FitError(f"n_holdout must be in [1, {n - 1}], got {n_holdout}")
    order = np.argsort(6.0 * N * D, kind="stable")
    train, test = order[:-n_holdout], order[-n_holdout:]
    fit = fit_chinchilla(N[train], D[train], L[train], loss=loss, delta=delta)
    pred = np.asarray(fit.law.predict(N[test], D[test]))
    rel = pred / L[test] - 1.0
    return jsonable(
        {
            "n_train": int(train.size),
            "n_holdout": int(test.size),
            "train_max_flops": float(np.max(6.0 * N[train] * D[train])),
            "holdout": {
                "n_params": N[test],
                "n_tokens": D[test],
                "flops": 6.0 * N[test] * D[test],
                "loss": L[test],
                "predicted": pred,
                "rel_error": rel,
            },
            "mean_abs_rel_error": float(np.mean(np.abs(rel))),
            "max_abs_rel_error": float(np.max(np.abs(rel))),
            "fit": fit.to_dict(),
        }
    )


# --------------------------------------------------------------------------------------------
# Data-constrained law (Muennighoff et al. 2023)

_DC_PARAMS = FORMS["data_constrained"].params
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


def fit_data_constrained(
    N: ArrayLike,
    D: ArrayLike,
    U: ArrayLike,
    L: ArrayLike,
    *,
    fixed: Mapping[str, float] | None = None,
    delta: float = 1e-3,
    starts: Sequence[float] = _DC_STARTS,
) -> FitResult:
    """Fit the data-constrained law (:class:`~scaling_pipeline.lib.laws.DataConstrained`).

    ``N`` parameters, ``D`` total tokens, ``U`` unique tokens, ``L`` loss (nats/token).
    Objective: sum of ``Huber_delta(log L̂ - log L)``, minimised by L-BFGS-B (central-difference
    gradients) from every pair of ``starts`` for ``(rd_star, rn_star)``, keeping the lowest
    objective. ``fixed`` holds parameters kept at given values. The published protocol fixes
    ``E, A, B, alpha, beta`` and starts from ``linspace(0, 20, 4)``; zero starts are skipped
    because the law is undefined at ``R* = 0`` (upstream they evaluate to NaN). Free
    ``E, A, B, alpha, beta`` start from a Chinchilla fit of the single-epoch runs (``D <= U``;
    all runs when those are too few). The ``(rd_star, rn_star)`` valley is flat and has several
    local minima, so the result depends on ``starts``; pass a denser grid to search wider.
    """
    t0 = time.perf_counter()
    N, D, U, L = (_positive(k, v) for k, v in (("N", N), ("D", D), ("U", U), ("L", L)))
    n = _same_length(N=N, D=D, U=U, L=L)
    _check_loss("huber", delta)
    fixed = {k: float(v) for k, v in (fixed or {}).items()}
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
    spec, logL = FORMS["data_constrained"], np.log(L)

    def unpack(z: np.ndarray) -> dict[str, float]:
        vals = dict(base)
        for k, v in zip(free, z):
            vals[k] = math.exp(v) if k in _DC_LOG else float(v)
        return {k: vals[k] for k in _DC_PARAMS}

    def objective(z: np.ndarray) -> float:
        r = np.log(spec.build(unpack(z)).predict(N, D, U)) - logL
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
    pred = np.log(spec.build(params).predict(N, D, U))
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


# --------------------------------------------------------------------------------------------
# One-variable laws


def _xy(x: ArrayLike, y: ArrayLike, n_params: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _positive("x", x), _positive("y", y)
    _same_length(x=x, y=y)
    k = np.unique(x).size
    if k < n_params:
        raise FitError(
            f"need at least {n_params} distinct x values to fit {n_params} parameters, got {k}"
        )
    return x, y


def _result(form: str, params: dict, objective: float, t0: float, log_pred, log_y, warnings):
    n = log_y.size
    ss_tot = float(np.sum((log_y - log_y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((log_pred - log_y) ** 2)) / ss_tot if ss_tot > 0 else math.nan
    return FitResult(
        form=form,
        params=params,
        loss="mse",
        delta=None,
        n_points=n,
        objective=objective,
        fit_seconds=time.perf_counter() - t0,
        diagnostics={**_residual_summary(log_pred, log_y), "r2_log": r2, "warnings": warnings},
    )


def fit_power_law(x: ArrayLike, y: ArrayLike) -> FitResult:
    """Fit ``y = f·x^(-alpha)`` by least squares on ``log y`` vs ``log x``.

    ``objective`` is the mean squared log residual. Units are the caller's (``f`` carries the
    units of ``y`` times ``x^alpha``).
    """
    t0 = time.perf_counter()
    x, y = _xy(x, y, 2)
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    pred = intercept + slope * lx
    warnings = ["2 distinct x values: the fit interpolates"] if np.unique(x).size == 2 else []
    return _result(
        "power_law",
        {"f": math.exp(intercept), "alpha": -float(slope)},
        float(np.mean((pred - ly) ** 2)),
        t0,
        pred,
        ly,
        warnings,
    )


def fit_saturating(x: ArrayLike, y: ArrayLike) -> FitResult:
    """Fit ``y = L0 + k·x^(-alpha)`` (``L0 >= 0``, ``k > 0``; e.g. loss in nats/token vs N).

    Minimises the mean squared log residual. Global in ``alpha``: a profile over a log grid
    (for fixed ``alpha``, ``L0, k`` by least squares on relative residuals refined by
    Gauss-Newton steps on log residuals), then a bounded Brent refinement.
    """
    t0 = time.perf_counter()
    x, y = _xy(x, y, 3)
    lx, ly = np.log(x), np.log(y)
    xm = lx.mean()

    def inner(al: float) -> tuple[float, float, float]:
        u = np.exp(-al * (lx - xm))
        lu = np.log(u)
        # pure power law (L0 = 0) is the fallback: log k is then a mean
        best = (float(np.var(ly - lu)), 0.0, math.exp(float(np.mean(ly - lu))))
        (l0, kc), *_ = np.linalg.lstsq(np.stack([1.0 / y, u / y], axis=1), np.ones_like(y))
        for _ in range(4):  # Gauss-Newton on log residuals, keeping the best admissible point
            pred = l0 + kc * u
            if l0 < 0 or kc <= 0 or np.any(pred <= 0):
                break
            r = np.log(pred) - ly
            f = float(np.mean(r * r))
            if f < best[0]:
                best = (f, float(l0), float(kc))
            (d0, d1), *_ = np.linalg.lstsq(np.stack([1.0 / pred, u / pred], axis=1), -r)
            l0, kc = l0 + d0, kc + d1
        return best

    grid = np.geomspace(1e-3, 5.0, 120)
    values = [inner(a)[0] for a in grid]
    i = int(np.argmin(values))
    lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, grid.size - 1)])
    with _one_blas_thread():
        ref = minimize_scalar(
            lambda t: inner(math.exp(t))[0], bounds=(lo, hi), method="bounded",
            options={"xatol": 1e-10},
        )
    al = math.exp(ref.x) if ref.fun <= values[i] else float(grid[i])
    obj, l0, kc = inner(al)
    warnings = []
    if al in (grid[0], grid[-1]):
        warnings.append(f"alpha at the edge of the search range [{grid[0]}, {grid[-1]}]")
    if l0 <= 1e-6 * y.min():
        warnings.append("L0 is ~0 (its bound): the data show no saturation")
    return _result(
        "saturating",
        {"L0": float(l0), "k": float(kc * math.exp(al * xm)), "alpha": float(al)},
        obj,
        t0,
        np.log(l0 + kc * np.exp(-al * (lx - xm))),
        ly,
        warnings,
    )


def fit_kaplan(x: ArrayLike, L: ArrayLike, variable: str) -> FitResult:
    """Fit Kaplan's ``L = (xc/x)^alpha`` (nats/token) in one ``variable``: ``"N"`` (params),
    ``"D"`` (tokens) or ``"C"`` (FLOPs), by least squares on the log-log line."""
    if variable not in ("N", "D", "C"):
        raise FitError(f"variable must be 'N', 'D' or 'C', got {variable!r}")
    pl = fit_power_law(x, L)
    f, al = pl.params["f"], pl.params["alpha"]
    if al == 0:
        raise FitError(f"loss does not change with {variable}: Kaplan exponent is 0")
    warnings = list(pl.diagnostics["warnings"])
    if al < 0:
        warnings.append(f"loss increases with {variable} (alpha = {al:.3g} < 0)")
    return replace(
        pl,
        form=f"kaplan_{variable.lower()}",
        params={"xc": f ** (1.0 / al), "alpha": al},
        diagnostics={**pl.diagnostics, "warnings": warnings},
    )


# --------------------------------------------------------------------------------------------
# IsoFLOP Approach 2


def isoflop_approach2(C: ArrayLike, N: ArrayLike, L: ArrayLike, *, window: int = 2) -> IsoFlopFit:
    """Hoffmann et al. "Approach 2" on IsoFLOP sweeps.

    Per compute budget ``C`` (FLOPs; runs grouped by exact value): fit a parabola of loss
    (nats/token) vs ``log N`` to the runs within ``window`` positions of the empirical minimum
    (≤ ``2·window + 1`` runs), take its vertex as ``N*``. Budgets whose minimum is at the edge
    of the sweep (not bracketed) or whose parabola is not convex are skipped (listed in
    ``skipped``). Then ordinary least squares of ``log N*`` on ``log C``.
    """
    C, N, L = _positive("C", C), _positive("N", N), _positive("L", L)
    _same_length(C=C, N=N, L=L)
    budgets, n_opt, loss_opt, skipped = [], [], [], []
    for c in np.unique(C):
        sel = np.flatnonzero(C == c)
        sel = sel[np.argsort(N[sel])]
        k = int(np.argmin(L[sel]))
        near = sel[max(k - window, 0) : k + window + 1]
        bracketed = 0 < k < sel.size - 1
        coef = np.polyfit(np.log(N[near]), L[near], 2) if bracketed else None
        if coef is None or coef[0] <= 0:
            skipped.append(float(c))
            continue
        v = -coef[1] / (2 * coef[0])
        budgets.append(float(c))
        n_opt.append(math.exp(v))
        loss_opt.append(float(np.polyval(coef, v)))
    if len(budgets) < 2:
        raise FitError(
            f"need at least 2 compute budgets with a usable parabola, got {len(budgets)} "
            f"(skipped {len(skipped)})"
        )
    a, log_coef = np.polyfit(np.log(budgets), np.log(n_opt), 1)
    return IsoFlopFit(
        a=float(a),
        coef=math.exp(log_coef),
        budgets=np.array(budgets),
        n_opt=np.array(n_opt),
        loss_opt=np.array(loss_opt),
        skipped=skipped,
    )


# --------------------------------------------------------------------------------------------
# CSV entry point (used by the CLI)

_CSV_FORMS: dict[str, tuple[str, ...]] = {
    "chinchilla": ("n_params", "n_tokens", "loss"),
    "data_constrained": ("n_params", "n_tokens", "unique_tokens", "loss"),
    "kaplan_n": ("n_params", "loss"),
    "kaplan_d": ("n_tokens", "loss"),
    "kaplan_c": ("flops", "loss"),
}


def _csv_column(df: Any, name: str) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(np.isnan(values))
    if bad.size:
        lines = ", ".join(str(int(i) + 2) for i in df.index[bad][:5])
        raise FitError(
            f"column {name!r} has {bad.size} missing or non-numeric value(s) (CSV line(s) {lines})"
        )
    return values


def fit_csv(
    path: str | os.PathLike,
    *,
    form: str = "chinchilla",
    loss: str = "huber",
    delta: float = 1e-3,
    family: str | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    joint: bool = False,
) -> dict[str, Any]:
    """Fit a law to a runs CSV and return the JSON-ready result dict.

    ``joint=True`` fits every family of the CSV's ``family`` column at once with shared exponents
    (:func:`fit_chinchilla_joint`) and returns ``{"form": "chinchilla_joint", ..., "params": {"alpha",
    "beta"}, "families": {name: {"E", "A", "B", "n_points", "objective"}}}``.

    Columns: ``n_params`` (parameters), ``n_tokens`` (tokens), ``loss`` (nats/token); optional
    ``flops`` (used for ``n_tokens = flops/(6·n_params)`` when ``n_tokens`` is absent and for
    ``kaplan_c``), ``unique_tokens`` (``data_constrained``), ``family`` (filter); others are
    ignored. Returns ``{"form", "loss", "delta", "n_points", "params", "objective",
    "fit_seconds", "ci" (only with ``bootstrap > 0``; Chinchilla only), "diagnostics"}``.
    """
    import pandas as pd

    if form not in _CSV_FORMS:
        raise FitError(f"form must be one of {sorted(_CSV_FORMS)}, got {form!r}")
    if bootstrap and form != "chinchilla":
        raise FitError("bootstrap is only implemented for form 'chinchilla'")
    if bootstrap < 0:
        raise FitError(f"bootstrap must be >= 0, got {bootstrap}")
    if joint and (form != "chinchilla" or bootstrap or family is not None):
        raise FitError("a joint fit is form 'chinchilla' over all families, without --family or --bootstrap")
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise FitError(f"cannot read runs CSV {os.fspath(path)!r}: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    n_rows = len(df)
    notes: list[str] = []
    if family is not None:
        if "family" not in df.columns:
            raise FitError(
                f"family {family!r} requested but {os.fspath(path)!r} has no 'family' column"
            )
        available = sorted(df["family"].dropna().astype(str).unique())
        df = df[df["family"].astype(str) == family]
        if df.empty:
            raise FitError(f"no rows with family {family!r}; available: {available}")
    elif "family" in df.columns and df["family"].nunique() > 1:
        fams = sorted(df["family"].dropna().astype(str).unique())
        notes.append(
            f"CSV holds {len(fams)} families {fams} and no family was selected: fitted them pooled"
        )
    if "n_tokens" not in df.columns and {"flops", "n_params"} <= set(df.columns):
        df = df.assign(n_tokens=_csv_column(df, "flops") / (6.0 * _csv_column(df, "n_params")))
        notes.append("n_tokens derived as flops / (6·n_params)")
    has_nd = {"n_params", "n_tokens"} <= set(df.columns)
    if form == "kaplan_c" and "flops" not in df.columns and has_nd:
        df = df.assign(flops=6.0 * _csv_column(df, "n_params") * _csv_column(df, "n_tokens"))
        notes.append("flops derived as 6·n_params·n_tokens")
    missing = [c for c in _CSV_FORMS[form] if c not in df.columns]
    if missing:
        raise FitError(
            f"{os.fspath(path)!r} lacks required column(s) {missing} for form {form!r} "
            f"(has {list(df.columns)})"
        )
    cols = {c: _csv_column(df, c) for c in _CSV_FORMS[form]}
    if joint:
        if "family" not in df.columns:
            raise FitError(f"a joint fit needs a 'family' column in {os.fspath(path)!r}")
        return fit_chinchilla_joint(cols["n_params"], cols["n_tokens"], cols["loss"],
                                    df["family"].astype(str).to_numpy(), loss=loss, delta=delta).to_dict()
    if form == "chinchilla":
        args = (cols["n_params"], cols["n_tokens"], cols["loss"])
        if bootstrap:
            boot = bootstrap_chinchilla(*args, n_boot=bootstrap, seed=seed, loss=loss, delta=delta)
            result = boot.fit
            extra = {"bootstrap": {"n_boot": bootstrap, "seed": seed, "level": boot.level,
                                   "seconds": boot.seconds, "n_jobs": boot.n_jobs}}
        else:
            result, extra = fit_chinchilla(*args, loss=loss, delta=delta), {}
    elif form == "data_constrained":
        result, extra = fit_data_constrained(
            cols["n_params"], cols["n_tokens"], cols["unique_tokens"], cols["loss"], delta=delta
        ), {}
    else:
        x = cols[_CSV_FORMS[form][0]]
        result, extra = fit_kaplan(x, cols["loss"], form[-1].upper()), {}
    if result.loss != loss:
        notes.append(f"loss {loss!r} is not available for form {form!r}: used {result.loss!r}")
    diagnostics = {
        **result.diagnostics,
        **extra,
        "source": {"path": os.fspath(path), "family": family, "rows_read": n_rows},
        "warnings": notes + list(result.diagnostics.get("warnings", [])),
    }
    return replace(result, diagnostics=diagnostics).to_dict()
