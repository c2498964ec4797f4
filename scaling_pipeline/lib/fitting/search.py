"""Global search over the Chinchilla exponents: a variable-projection profile on a log grid of
``(alpha, beta)`` (for fixed exponents the model is linear in ``(E, A, B)``), then L-BFGS-B with
analytic gradients on all five parameters from every local minimum of the profile. Candidates are
ranked by objective value, never by optimizer success flags.

Every minimum is polished because a grid value bounds the objective at its cell from above, never
its basin from below: a minimum with a higher profile value can polish to a lower objective (the
two-basin surface in tests/test_fit.py; on other surfaces the winner's profile value was 60 times
the best one's)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from scaling_pipeline.lib.fitting.common import FitError
from scaling_pipeline.lib.fitting.objective import _Data, _objective

DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "E": (0.0, math.inf),
    "alpha": (0.0, 3.0),
    "beta": (0.0, 3.0),
}

# Global-search settings. The profile grid is log-spaced in the exponents.
_GRID = 20  # exponents per axis for the full fit
_BOOT_GRID = 8  # coarse grid for bootstrap resamples (each is warm-started from the full fit)
_GRID_RANGE = (0.02, 2.5)  # exponent range searched (clipped to the bounds)
_LOG_BOUND = 40.0  # |log A'|, |log B'|, log E hard limits (numerical safety only)
_E_FLOOR = 1e-12  # lower limit of E used when the bound is 0 (nats/token)
_POLISH_OPTIONS = {"maxiter": 3000, "maxfun": 6000, "ftol": 1e-15, "gtol": 1e-11}
_BOOT_OPTIONS = {"maxiter": 1000, "maxfun": 2000, "ftol": 1e-10, "gtol": 1e-7}


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
    from scipy.optimize import minimize  # here, not at import: only a fit needs scipy.optimize (~1 s)

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
    """Profile grid + L-BFGS-B polish of every profile minimum. With a warm start, that is polished
    first and minima in the basin of the best solution so far are skipped."""
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
    for ij in _local_minima(F):
        # skip minima in the basin the best solution of a warm-started fit already sits in
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
