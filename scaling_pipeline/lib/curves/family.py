"""A family's Multi-Power Law with a shared loss-drop shape, and forecasts of one run from part of its curve.

Within a family the MPL's ``alpha`` and its loss drop (``B``, ``C``, ``beta``, ``gamma``) are shared by the
runs, while ``L0`` and ``A`` are each run's own (they depend on the model size and peak LR). For fixed
shared parameters the loss is linear in (``L0``, ``A``), so both fits here solve those by weighted least
squares of relative residuals:

* :func:`fit_family`: the shared parameters from a family's completed curves (variable projection: a
  trust-region least squares on alpha and the drop's shape (C, beta, gamma), each run's (L0, A) and the
  shared B solved inside as one linear least squares), started from the best point of a small grid;
* :func:`forecast_run`: a run's (L0, A) from its curve so far, then its loss at the planned last step with
  an interval: the least-squares prediction variance (inflated for the residuals' lag-1 autocorrelation)
  plus the family fit's own misfit at the ends of its curves (``FamilyCurves.end_sigma``).

Every loss is evaluated through :class:`~scaling_pipeline.lib.curves.laws.MultiPowerLaw`. Units as there:
optimizer steps, absolute LR, nats/token.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import norm
from threadpoolctl import threadpool_limits

from scaling_pipeline.lib.curves.fit import Curve
from scaling_pipeline.lib.curves.laws import MultiPowerLaw, Units
from scaling_pipeline.lib.curves.schedule import CurveError

__all__ = ["FamilyCurves", "Forecast", "ShapePrior", "fit_family", "forecast_run", "SHARED"]

SHARED = ("alpha", "B", "C", "beta", "gamma")  # MPL parameters shared by a family's runs
_LOW = np.array([1e-3, -30.0, 1e-3, 0.0])  # internal: alpha, ln C̃, beta, gamma (B̃, L0, Ã: least squares)
_HIGH = np.array([3.0, 30.0, 5.0, 3.0])
_START_GRID = ((0.2, 0.4, 0.6), np.log([0.1, 1.0, 10.0]), (0.4, 0.8), (0.3, 0.7))
FIT_POINTS = 40  # points per curve in the family fit
_MAX_AUTOCORR = 0.9  # lag-1 autocorrelation of the residuals used to inflate the variance, at most
END_FRACTION = 0.1  # the last 10 % of a curve's points: "its end", for the family fit's misfit


@dataclass(frozen=True)
class FamilyCurves:
    """Shared MPL parameters of a family (absolute units), the runs they were fitted on, and the RMS of
    each curve's mean relative residual over its last :data:`END_FRACTION` of points (``end_sigma``)."""

    shared: dict[str, float]
    runs: tuple[str, ...]
    rms: float  # relative residual over all points
    end_sigma: float
    n_points: int


@dataclass(frozen=True)
class Forecast:
    """Loss (nats/token) a run is forecast to reach at ``step``, with the interval (``lo``, ``hi``) at
    ``level``; ``law`` the run's fitted MPL (evaluate it with the run's per-step LR)."""

    step: int
    loss: float
    lo: float
    hi: float
    level: float
    sigma: float
    law: MultiPowerLaw
    n_points: int


def _design(terms, shape: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The forward term s1^-alpha and the loss-drop term at the points, internal units."""
    return terms.s1 ** -alpha, MultiPowerLaw.drop(terms, shape)


def _solve(x1: np.ndarray, drop: np.ndarray, w_drop: float, loss: np.ndarray):
    """(L0, Ã) by least squares of relative residuals for a given drop weight, the residuals and (X'X)^-1."""
    X = np.column_stack([np.ones_like(x1), x1]) / loss[:, None]
    y = (loss + w_drop * drop) / loss
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return coef, X @ coef - y, np.linalg.pinv(X.T @ X)


def _joint(theta: np.ndarray, terms: list, losses: list[np.ndarray], jac: bool = False):
    """For shape ``theta`` = (alpha, ln C̃, beta, gamma): each run's (L0, Ã) and the shared B̃ by one least
    squares of relative residuals; (coefficients [L0_1, Ã_1, …, B̃], residuals) and with ``jac`` the residuals'
    Jacobian by theta (Kaufman's variable-projection approximation: projected off the linear columns)."""
    alpha, shape = theta[0], np.asarray(theta[1:])
    k, n = len(terms), sum(len(v) for v in losses)
    M, parts, first = np.zeros((n, 2 * k + 1)), [], 0
    for j, (t, loss) in enumerate(zip(terms, losses)):
        x1 = t.s1 ** -alpha
        drop = MultiPowerLaw.drop(t, shape, jac=jac)
        drop, d_drop = drop if jac else (drop, None)
        rows = slice(first, first + len(loss))
        M[rows, 2 * j], M[rows, 2 * j + 1], M[rows, -1] = 1.0 / loss, x1 / loss, -drop / loss
        parts.append((rows, x1, d_drop, t.s1, loss, j))
        first += len(loss)
    coef, *_ = np.linalg.lstsq(M, np.ones(n), rcond=None)
    r = M @ coef - 1.0
    if not jac:
        return coef, r
    D = np.zeros((n, len(theta)))
    for rows, x1, d_drop, s1, loss, j in parts:
        D[rows, 0] = -coef[2 * j + 1] * np.log(s1) * x1 / loss
        D[rows, 1:] = -coef[-1] * d_drop / loss[:, None]
    Q, _ = np.linalg.qr(M)
    return coef, r, D - Q @ (Q.T @ D)


def _params(alpha: float, w: float, shape: np.ndarray, coef: np.ndarray, units: Units) -> dict[str, float]:
    z = np.array([coef[0], np.log(max(coef[1], 1e-300)), alpha, np.log(max(w, 1e-300)), *shape])
    return MultiPowerLaw.from_internal(z, units)


def _thinned(curve: Curve, n: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` of the curve's points, evenly spread, the last kept: (steps, losses)."""
    keep = np.unique(np.linspace(0, len(curve.steps) - 1, min(n, len(curve.steps))).round().astype(int))
    return curve.steps[keep], curve.loss[keep]


@dataclass(frozen=True)
class ShapePrior:
    """A Gaussian prior on the MPL loss-drop shape: means and standard deviations of (ln C, beta, gamma), C in
    absolute units ((LR^(1−gamma)·steps)^−1)."""

    mean: tuple[float, float, float]
    sd: tuple[float, float, float]

    def rows(self, theta: np.ndarray, units: Units, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """The prior as extra least-squares residual rows at internal ``theta`` = (alpha, ln C̃, beta, gamma),
        each (value − mean)/sd times ``scale`` (the data residuals' standard deviation, so that the sum of
        squares is the negative log posterior up to a factor), and their Jacobian by theta."""
        ln_lr = np.log(units.lr)
        value = np.array([theta[1] - (1.0 - theta[3]) * ln_lr, theta[2], theta[3]])  # ln C̃ = ln C + (1−gamma)·ln lr
        sd = np.asarray(self.sd)
        jac = np.zeros((3, len(theta)))
        jac[0, 1], jac[0, 3], jac[1, 2], jac[2, 3] = 1.0, ln_lr, 1.0, 1.0
        return scale * (value - np.asarray(self.mean)) / sd, scale * jac / sd[:, None]


def fit_family(curves: Sequence[Curve], max_points: int = FIT_POINTS, prior: ShapePrior | None = None) -> FamilyCurves:
    """Shared MPL parameters from a family's completed curves (at most ``max_points`` evenly spread points of
    each; module docstring); :class:`CurveError` when the curves show no loss drop to fit. With ``prior``, the
    maximum a posteriori shape: the fit without it gives the residuals' standard deviation, then the shape is
    refitted with the prior's rows (:meth:`ShapePrior.rows`) added, so the data override the prior where they
    pin the shape and it holds where they do not."""
    if not curves:
        raise CurveError("no completed curves to fit the family's curve law on")
    if not any(np.any(np.diff(c.lr[: c.steps[-1] + 1]) != 0) for c in curves):
        raise CurveError("the learning rate never changes in the family's completed runs: the loss drop "
                         "(MPL B, C, beta, gamma) cannot be fitted")
    thin = [_thinned(c, max_points) for c in curves]
    units = Units.of([c.lr[: c.steps[-1] + 1] for c in curves], [s for s, _ in thin])
    terms = [MultiPowerLaw.terms(c.lr, s, units) for c, (s, _) in zip(curves, thin)]
    losses = [v for _, v in thin]
    with threadpool_limits(limits=1, user_api="blas"):
        grid = [np.array(t) for t in itertools.product(*_START_GRID)]
        theta0 = min(grid, key=lambda t: float(np.sum(_joint(t, terms, losses)[1] ** 2)))
        res = least_squares(lambda t: _joint(t, terms, losses)[1], theta0, bounds=(_LOW, _HIGH), x_scale="jac",
                            jac=lambda t: _joint(t, terms, losses, jac=True)[2], max_nfev=100)
        if prior is not None:
            scale = float(np.sqrt(np.mean(_joint(res.x, terms, losses)[1] ** 2)))
            start = np.clip(np.array([res.x[0], prior.mean[0] + (1.0 - prior.mean[2]) * np.log(units.lr),
                                      *prior.mean[1:]]), _LOW, _HIGH)
            theta0 = min((res.x, start), key=lambda t: float(np.sum(np.concatenate(
                [_joint(t, terms, losses)[1], prior.rows(t, units, scale)[0]]) ** 2)))
            res = least_squares(lambda t: np.concatenate([_joint(t, terms, losses)[1], prior.rows(t, units, scale)[0]]),
                                theta0, bounds=(_LOW, _HIGH), x_scale="jac", max_nfev=100,
                                jac=lambda t: np.vstack([_joint(t, terms, losses, jac=True)[2],
                                                         prior.rows(t, units, scale)[1]]))
    coef, r = _joint(res.x, terms, losses)
    if coef[-1] <= 0:
        raise CurveError("the family's completed curves show no loss drop where the learning rate decays "
                         "(fitted MPL B <= 0): no shared curve law")
    ends, first = [], 0
    for v in losses:
        part = r[first:first + len(v)]
        ends.append(part[-max(1, int(np.ceil(END_FRACTION * len(part)))):].mean())
        first += len(v)
    params = _params(res.x[0], coef[-1], res.x[1:], coef[:2], units)
    return FamilyCurves({k: params[k] for k in SHARED}, tuple(c.name for c in curves), float(np.sqrt(np.mean(r**2))),
                        float(np.sqrt(np.mean(np.square(ends)))), int(len(r)))


def forecast_run(curve: Curve, planned_lr: np.ndarray, family: FamilyCurves, level: float = 0.9) -> Forecast:
    """Loss of a run at its planned last step ``len(planned_lr) - 1`` from its curve so far (``curve``: the
    logged points up to now) and the family's shared parameters (module docstring)."""
    last = len(planned_lr) - 1
    if len(curve.steps) < 4:
        raise CurveError(f"{curve.name}: {len(curve.steps)} logged points; a forecast needs at least 4")
    if curve.steps[-1] > last:
        raise CurveError(f"{curve.name}: logged up to step {curve.steps[-1]}, past its planned end ({last})")
    units = Units.of([planned_lr[: curve.steps[-1] + 1]], [curve.steps])
    z = MultiPowerLaw.internal({**family.shared, "L0": 0.0, "A": 1.0}, units)
    i = MultiPowerLaw.index
    alpha, w, shape = z[i("alpha")], float(np.exp(z[i("B")])), np.array([z[i(k)] for k in MultiPowerLaw.shape])
    points = MultiPowerLaw.terms(planned_lr, curve.steps, units)
    coef, resid, xtx_inv = _solve(*_design(points, shape, alpha), w, curve.loss)
    if coef[1] <= 0:
        raise CurveError(f"{curve.name}: the curve so far does not fall with the LR area (fitted A <= 0); "
                         "too early or too noisy for a forecast")
    law = MultiPowerLaw(**_params(alpha, w, shape, coef, units))
    loss = float(law.predict([last], planned_lr)[0])
    n = len(resid)
    rho = float(np.clip(np.corrcoef(resid[:-1], resid[1:])[0, 1], 0.0, _MAX_AUTOCORR)) if n > 3 else 0.0
    s2 = float(resid @ resid) / max(n - 2, 1) * (1 + rho) / (1 - rho)
    end = MultiPowerLaw.terms(planned_lr, np.array([last]), units)
    g = np.array([1.0, float(end.s1[0] ** -alpha)])
    sigma = float(np.sqrt(s2 * float(g @ xtx_inv @ g) + (loss * family.end_sigma) ** 2))  # nats
    half = float(norm.ppf(0.5 + level / 2)) * sigma
    return Forecast(last, loss, loss - half, loss + half, level, sigma, law, n)
