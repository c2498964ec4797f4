"""Profile-likelihood intervals for a curve law's parameters under autocorrelated noise.

The interval of a parameter θ_j (in coordinates y: absolute units, natural log for the positive scale
parameters) is the set of values whose profile objective — the fit's objective F (dimensionless, a sum of
Huber terms of log-loss residuals in nats scaled by δ⁻²) minimized over the other parameters with θ_j
held fixed — rises above the optimum F̂ by at most ``φ·q/2`` (``q`` the χ²₁ quantile at ``level``). F
treats the points as independent, but the log residuals of a loss curve are AR(1)-correlated with lag-1
correlation ρ, so the rise is scaled by ``φ = σ²·δ⁻²·(1 + ρ)/(1 − ρ)`` (σ² the noise variance in nats²;
(1 + ρ)/(1 − ρ) the variance inflation of a mean of AR(1) noise). ρ and σ² are those of AR(1) noise whose
least-squares residuals have the observed sum of squares and lag-1 sum (:func:`ar1_noise_moments`).

The MPL's loss-drop shape (C, β, γ) lies on a weakly determined, multimodal ridge: a profile continued
from the estimate alone stays in its local valley. So each profile point is also fitted from the bootstrap
refit nearest to it in θ_j (the refits spread along the ridge), and the lower objective is kept. Where the
profile never rises far enough, the interval runs to the parameter's bound (the parameter is not
identified). The profile optima inside the region, with its quadratic approximation at the optimum, also
bound the range of a prediction over it (``CurveFit.predict_interval``). Coverage on known truth:
benchmarks/README.md (curve laws, "Intervals").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.optimize import brentq, minimize
from scipy.signal import lfilter
from scipy.stats import chi2

__all__ = ["ar1_noise_moments", "dz_dy", "profile_intervals"]

MAX_EVALS = 4  # profile points per interval end (6 with a 0.05 tolerance: B 16 of 16 too, 1.4x the cost)
TOLERANCE = 0.15  # accepted relative error of the signed root rise at an end
LOG_RANGE = 30.0  # search range (in ln units) of a log-scale parameter around its estimate

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]
Bounds = Sequence[tuple[float | None, float | None]]


def _ar1_times(x: np.ndarray, rho: float, curves: Sequence[np.ndarray]) -> np.ndarray:
    """R·x for the block-diagonal AR(1) correlation R_ik = ρ^|i−k| within ``curves`` (columns of x)."""
    out = np.empty_like(x)
    for c in curves:
        fwd = lfilter([1.0], [1.0, -rho], x[c], axis=0)
        bwd = lfilter([1.0], [1.0, -rho], x[c][::-1], axis=0)[::-1]
        out[c] = fwd + bwd - x[c]
    return out


def ar1_noise_moments(J: np.ndarray, residual: np.ndarray, curves: Sequence[np.ndarray],
                      max_rho: float) -> tuple[float, float]:
    """Lag-1 correlation ρ (in [0, ``max_rho``]) and variance σ² (nats²) of AR(1) noise ε whose
    least-squares residuals r = (I − P)ε (P the projection on the columns of the Jacobian ``J`` of the
    log loss) have the observed sum of squares and lag-1 sum of ``residual`` (log loss, nats) within
    ``curves`` (index arrays). The fit absorbs the slow part of the noise, so the residuals' own lag-1
    correlation is biased low."""
    U, s, _ = np.linalg.svd(J, full_matrices=False)
    U = U[:, s > s[0] * 1e-10] if s.size and s[0] > 0 else U[:, :0]
    pairs = np.concatenate([c[:-1] for c in curves])
    s0 = residual @ residual
    s1 = residual[pairs] @ residual[pairs + 1]

    def expected(rho: float) -> tuple[float, float]:  # E[Σ r²], E[Σ r_i·r_(i+1)] per unit σ²
        RU = _ar1_times(U, rho, curves)
        S = U.T @ RU
        lag = (np.einsum("ik,ik->", (U @ S)[pairs] - RU[pairs], U[pairs + 1])
               - np.einsum("ik,ik->", U[pairs], RU[pairs + 1]))
        return len(residual) - np.trace(S), rho * len(pairs) + float(lag)

    def gap(rho: float) -> float:
        e0, e1 = expected(rho)
        return e1 / e0 - s1 / s0

    if s0 <= 0:
        return 0.0, 0.0
    rho = 0.0 if gap(0.0) >= 0 else max_rho if gap(max_rho) <= 0 else brentq(gap, 0.0, max_rho, xtol=1e-4)
    return float(rho), float(s0 / expected(rho)[0])


def dz_dy(z_of: Callable[[np.ndarray], np.ndarray], k: int) -> np.ndarray:
    """The constant Jacobian (internal × ``k``) of the affine map ``z_of`` from coordinates y to the fit's
    internal coordinates z."""
    return np.column_stack([z_of(np.eye(k)[j]) - z_of(np.zeros(k)) for j in range(k)])


def profile_intervals(objective: Objective, z_of: Callable[[np.ndarray], np.ndarray], y_hat: np.ndarray,
                      J: np.ndarray, quadratic: np.ndarray, bounds: Bounds, logs: Sequence[bool], scale: float,
                      rho: float, sigma2: float, curves: Sequence[np.ndarray], level: float, options: Mapping,
                      refits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interval ends (parameters × 2) in coordinates y around the optimum ``y_hat`` (module docstring), and
    the likelihood region {F − F̂ ≤ φ·q/2} the ends bound: the points of it the profiles found (the optimum
    and every profile optimum inside; points × parameters, coordinates y) and the covariance V (coordinates
    y) of its quadratic approximation {(y − ŷ)ᵀV⁻¹(y − ŷ) ≤ q}, V = φ·H⁻¹ (H: F's Gauss-Newton Hessian).

    ``objective(z)`` returns F and its gradient in the fit's internal coordinates ``z = z_of(y)`` (affine
    in y); ``J`` is ∂ln L̂/∂z at the optimum, ``quadratic`` marks the points where F's Huber terms are
    quadratic there; F ≈ Σ r²/2 · ``scale`` (r in nats) near it; ``bounds`` are those of y (ignored for
    ``logs``, searched ±:data:`LOG_RANGE`); ``refits`` (refits × parameters) are
    bootstrap refits in coordinates y, the extra starts of the profile fits; ``options`` L-BFGS-B's."""
    k = len(y_hat)
    M = dz_dy(z_of, k)

    def f(y: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = objective(z_of(y))
        return value, M.T @ grad

    f_hat = f(y_hat)[0]
    Jy = J @ M
    G = np.linalg.pinv(Jy.T @ Jy)
    sd = np.sqrt(np.maximum(sigma2 * np.diag(G @ (Jy.T @ _ar1_times(Jy, rho, curves)) @ G), 0.0))  # sandwich
    phi = sigma2 * scale * (1.0 + rho) / (1.0 - rho)
    target = float(np.sqrt(chi2.ppf(level, 1)))
    box = [(None, None) if log else b for log, b in zip(logs, bounds)]
    out = np.empty((k, 2))
    visited: list[tuple[float, np.ndarray]] = []
    for j in range(k):
        lo, hi = box[j]
        lim = ((y_hat[j] - LOG_RANGE, y_hat[j] + LOG_RANGE) if logs[j]
               else (-np.inf if lo is None else lo, np.inf if hi is None else hi))
        profile = _Profile(f, f_hat, y_hat, j, box, phi, options, refits)
        for side, sign in enumerate((-1.0, 1.0)):
            out[j, side] = profile.end(sign, sd[j] * target, lim, target)
        visited += profile.visited
    region = np.array([y_hat] + [x for r, x in visited if r <= target])
    Jq = Jy[quadratic]  # F's Gauss-Newton Hessian is scale·JqᵀJq: Huber is quadratic at these points only
    return out, region, np.linalg.pinv(Jq.T @ Jq) * phi / scale


class _Profile:
    """The rescaled profile of parameter j: ``root(v)`` = sqrt(2·(min F | y_j = v − F̂)/φ)."""

    def __init__(self, f: Objective, f_hat: float, y_hat: np.ndarray, j: int, box: Bounds, phi: float,
                 options: Mapping, refits: np.ndarray):
        self.f, self.f_hat, self.y_hat, self.j, self.phi, self.options = f, f_hat, y_hat, j, phi, options
        self.box, self.refits = list(box), refits
        self.visited: list[tuple[float, np.ndarray]] = []  # (root rise, profile optimum) of every fit

    def fit(self, v: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """Root rise at y_j = ``v`` and the profile optimum, from ``start`` and from the nearest refit."""
        bounds = list(self.box)
        bounds[self.j] = (v, v)
        low = np.array([-np.inf if lo is None else lo for lo, _ in bounds])
        high = np.array([np.inf if hi is None else hi for _, hi in bounds])
        starts = [start]
        if len(self.refits):
            starts.append(self.refits[np.argmin(np.abs(self.refits[:, self.j] - v))])
        best = None
        for s in starts:
            x0 = np.clip(np.where(np.arange(len(s)) == self.j, v, s), low, high)
            res = minimize(self.f, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=self.options)
            if best is None or res.fun < best.fun:
                best = res
        r = float(np.sqrt(max(2.0 * (best.fun - self.f_hat) / self.phi, 0.0)))
        self.visited.append((r, best.x))
        return r, best.x

    def end(self, sign: float, step: float, lim: tuple[float, float], target: float) -> float:
        """Where the root rise reaches ``target`` on side ``sign``: secant steps from the sandwich (Wald)
        end ``step`` away, each profile fit also continuing from the last profile optimum inside."""
        j, y_hat = self.j, self.y_hat
        edge = lim[1] if sign > 0 else lim[0]
        inside: tuple[float, float, np.ndarray] = (y_hat[j], 0.0, y_hat)  # (value, root rise, optimum)
        outside: tuple[float, float] | None = None
        if not np.isfinite(step) or step <= 0:
            step = abs(edge - y_hat[j]) if np.isfinite(edge) else 1.0
        v = y_hat[j] + sign * step
        for _ in range(MAX_EVALS):
            v = min(max(v, lim[0]), lim[1])
            if v == inside[0]:
                return v
            r, x = self.fit(v, inside[2])
            if abs(r - target) < TOLERANCE * target:
                return v
            if r < target:
                inside = (v, r, x)
                if outside is None and v == edge:
                    return v
            else:
                outside = (v, r)
            if outside is None:  # extrapolate the root rise, 1.5-4× further out
                v = y_hat[j] + sign * abs(inside[0] - y_hat[j]) * min(4.0, max(1.5, target / max(inside[1], 1e-12)))
            else:
                v = inside[0] + (outside[0] - inside[0]) * (target - inside[1]) / (outside[1] - inside[1])
        return v
