"""One-variable laws: power law, power law with a floor, Kaplan's ``L = (xc/x)^alpha``."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize_scalar

from scaling_pipeline.lib.fitting.common import FitError, FitResult, _one_blas_thread, _positive, _same_length
from scaling_pipeline.lib.fitting.log_linear import fit_log_linear, least_squares_result

__all__ = ["fit_power_law", "fit_saturating", "fit_kaplan"]


def _xy(x: ArrayLike, y: ArrayLike, n_params: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _positive("x", x), _positive("y", y)
    _same_length(x=x, y=y)
    k = np.unique(x).size
    if k < n_params:
        raise FitError(
            f"need at least {n_params} distinct x values to fit {n_params} parameters, got {k}"
        )
    return x, y


def fit_power_law(x: ArrayLike, y: ArrayLike) -> FitResult:
    """Fit ``y = f·x^(-alpha)`` by least squares on ``log y`` vs ``log x``.

    ``objective`` is the mean squared log residual. Units are the caller's (``f`` carries the
    units of ``y`` times ``x^alpha``).
    """
    x, y = _xy(x, y, 2)
    return fit_log_linear({"x": x}, y, form="power_law",
                          params=lambda log_f, slope: {"f": math.exp(log_f), "alpha": -slope["x"]})


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
    values = _saturating_scan(grid, lx - xm, y)
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
    return least_squares_result(
        "saturating",
        {"L0": float(l0), "k": float(kc * math.exp(al * xm)), "alpha": float(al)},
        t0,
        np.log(l0 + kc * np.exp(-al * (lx - xm))),
        ly,
        warnings,
        objective=obj,
    )


def _lstsq2(a1: np.ndarray, a2: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares ``a1·c1 + a2·c2 ≈ b`` row by row (rows of ``(G, n)`` arrays), by Gram-Schmidt QR."""
    r11 = np.linalg.norm(a1, axis=1)
    q1 = a1 / r11[:, None]
    r12 = np.einsum("gi,gi->g", q1, a2)
    v = a2 - r12[:, None] * q1
    r22 = np.linalg.norm(v, axis=1)
    with np.errstate(all="ignore"):
        q2 = v / r22[:, None]
        c2 = np.einsum("gi,gi->g", q2, b) / r22
        c1 = (np.einsum("gi,gi->g", q1, b) - r12 * c2) / r11
    return c1, c2


def _saturating_scan(grid: np.ndarray, lxc: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The profile objective of :func:`fit_saturating` at every ``alpha`` of ``grid`` at once (``lxc``: centred
    ``log x``): the same steps as its ``inner``, vectorised over the grid."""
    ly = np.log(y)
    lu = -grid[:, None] * lxc[None, :]
    u = np.exp(lu)
    best = np.var(ly - lu, axis=1)
    ones = np.broadcast_to(1.0 / y, u.shape)
    l0, kc = _lstsq2(ones, u / y, np.ones_like(u))
    active = np.ones(grid.size, bool)
    with np.errstate(all="ignore"):
        for _ in range(4):
            pred = l0[:, None] + kc[:, None] * u
            active &= (l0 >= 0) & (kc > 0) & (pred > 0).all(axis=1)
            r = np.log(np.where(pred > 0, pred, 1.0)) - ly
            f = np.mean(r * r, axis=1)
            best = np.where(active & (f < best), f, best)
            d0, d1 = _lstsq2(1.0 / pred, u / pred, -r)
            l0, kc = l0 + d0, kc + d1
    return best


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
