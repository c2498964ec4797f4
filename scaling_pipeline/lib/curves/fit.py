"""Fitting a loss-curve law to the (step, loss) series of one or more runs with known per-step LR.

Objective: the sum over all points of Huber_δ(log L̂ − log L) (δ = 1e-3, natural log), as in the
Multi-Power Law paper. The search is global and deterministic:

1. **grid**: over the law's shape parameters (MPL: C, β, γ; LR annealing: none) and α, the loss is
   linear in (L0, A, weight) and those are solved by least squares of relative residuals (batched 3 × 3
   normal equations);
2. **polish**: L-BFGS-B with analytic gradients on all parameters from the best distinct local minima of
   that grid (:data:`POLISH_STARTS` at most); the lowest objective wins.

Fits work in the :class:`~scaling_pipeline.lib.curves.laws.Units` of the training runs, where the parameters
are of order one.

**Intervals** (``n_boot`` ≥ 2): a wild AR-sieve bootstrap. The log residuals of a loss curve are
correlated from one logged point to the next (lag-1 autocorrelation ρ, pooled over the curves, at most
:data:`MAX_RHO`), and the fit absorbs the slow part of that noise, which therefore hides from the
residuals themselves (flipping the signs of residual blocks made intervals half as wide as the estimates'
spread over draws). So the residuals are split into innovations ``r_i − ρ·r_{i−1}``, scaled by
``1/sqrt(1 − h_i)`` (``h_i`` the leverage of the point in the log-linearized fit, at most
:data:`LEVERAGE_CAP`), each innovation's sign is flipped with probability 1/2 where it stands (so the
larger misfit after the warm-up stays there), and the AR(1) recursion rebuilds new noise from them, per
curve. The law is refitted to the fitted log losses plus that noise, from the fit's optimum (L-BFGS-B
only). The interval of a parameter is the estimate ± t·sd of the refits (t: Student's quantile at
``level`` with ``n_boot − 1`` degrees of freedom; on a log scale for the positive scale parameters A, B, C;
clipped to the bounds of the others); :meth:`CurveFit.predict_interval` does the same for the log loss
at given steps. Percentiles of 20-60 refits missed more often, because the refits' median is not the
estimate. A law with a loss-drop shape (MPL: C, β, γ) has a weakly determined, multimodal ridge on which
the estimate can land far from the truth while the refits, polished from it, stay near it; its parameter
intervals are profile-likelihood intervals instead (:mod:`~scaling_pipeline.lib.curves.profile`), whose
profile fits also start from the bootstrap refits, and its loss band is the range of the predicted log
loss over the same likelihood region (the parameter vectors whose objective rises by at most the profiles'
threshold): over the points of that region the profile search found (``CurveFit.region``) and over the
region's quadratic approximation at the optimum (``CurveFit.region_cov``), an inner approximation of the
prediction's own profile-likelihood interval. Coverage on known truth: see benchmarks/README.md
(curve laws) and tests/test_curves.py.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.ndimage import minimum_filter
from scipy.optimize import minimize
from scipy.signal import lfilter
from scipy.stats import chi2
from scipy.stats import t as student_t
from threadpoolctl import threadpool_limits

from scaling_pipeline.lib.curves.laws import CURVE_LAWS, Units
from scaling_pipeline.lib.curves.profile import ar1_noise_moments, dz_dy, profile_intervals
from scaling_pipeline.lib.curves.schedule import CurveError, Schedule, per_step_lr

__all__ = ["Curve", "CurveFit", "fit_curves", "curve_errors", "DELTA"]

DELTA = 1e-3  # Huber δ on log loss
MAX_RHO = 0.98  # lag-1 autocorrelation of the residuals counted at most
LEVERAGE_CAP = 0.9  # leverage counted at most (innovations scaled by ≤ 3.2)
POLISH_STARTS = 3
# grid of the global search, internal coordinates
_ALPHA_GRID = np.linspace(0.05, 1.5, 30)
_SHAPE_GRID = {"C": np.log(np.geomspace(1e-3, 10.0, 9)), "beta": np.array([0.3, 0.6, 1.0, 1.6]),
               "gamma": np.array([0.2, 0.5, 0.8, 1.1])}
# bounds, internal coordinates (ln of the positive scale parameters, in the fit's units)
_BOUNDS = {"L0": (0.0, None), "A": (-30.0, 30.0), "alpha": (1e-3, 3.0), "B": (-30.0, 30.0),
           "C": (-30.0, 30.0), "beta": (1e-3, 5.0), "gamma": (0.0, 3.0)}
_POLISH_OPTIONS = {"maxiter": 2000, "maxfun": 4000, "ftol": 1e-11, "gtol": 1e-7}
_REFIT_OPTIONS = {"maxiter": 1000, "maxfun": 2000, "ftol": 1e-9, "gtol": 1e-6}  # bootstrap refits


@dataclass(frozen=True)
class Curve:
    """One run's loss curve: logged ``steps`` (optimizer steps), ``loss`` (nats/token) and the LR of every
    step ``lr[0 … steps.max()]``. Build with :meth:`build`."""

    name: str
    steps: np.ndarray
    loss: np.ndarray
    lr: np.ndarray
    notes: tuple[str, ...] = ()

    @classmethod
    def build(cls, name: str, steps: ArrayLike, loss: ArrayLike, *, lr: ArrayLike | None = None,
              lr_steps: ArrayLike | None = None, schedule: Schedule | None = None) -> Curve:
        """A curve whose per-step LR comes from ``schedule``, else from the logged LR ``lr`` (at
        ``lr_steps``, default ``steps``; NaN where not logged); :class:`CurveError` naming ``name`` when
        neither is there or the series is unusable. Points before any LR has been applied (zero LR area)
        are left out, with a note."""
        s = np.asarray(steps, dtype=float)
        L = np.asarray(loss, dtype=float)
        if s.shape != L.shape or s.ndim != 1:
            raise CurveError(f"{name}: steps and losses must be two series of the same length")
        if len(s) == 0:
            raise CurveError(f"{name}: no points")
        bad = ~np.isfinite(s) | (s < 0) | (s != np.round(s))
        if bad.any():
            raise CurveError(f"{name}: step {s[bad][0]!r} is not a whole number >= 0")
        bad = ~np.isfinite(L) | (L <= 0)
        if bad.any():
            raise CurveError(f"{name}: loss {L[bad][0]!r} at step {int(s[bad][0])} is not a number > 0")
        if lr is not None and lr_steps is None:
            lr_steps = s
        order = np.argsort(s, kind="stable")
        s, L = s[order].astype(np.int64), L[order]
        twice = np.nonzero(np.diff(s) == 0)[0]
        if len(twice):
            raise CurveError(f"{name}: step {s[twice[0]]} is logged twice")
        eta = per_step_lr(name, int(s[-1]), logged_steps=lr_steps, logged_lr=lr, schedule=schedule)
        started = np.cumsum(eta)[s] > 0
        notes: tuple[str, ...] = ()
        if not started.all():
            if not started.any():
                raise CurveError(f"{name}: every point comes before any learning rate was applied")
            notes = (f"{name}: {int((~started).sum())} point(s) before any learning rate was applied (up to "
                     f"step {s[~started][-1]}) left out",)
            s, L = s[started], L[started]
        return cls(name, s, L, eta, notes)


@dataclass(frozen=True)
class CurveFit:
    """A fitted curve law: parameters in absolute LR units (``params``), the objective (sum of Huber_δ of log
    residuals), wall time of the fit (without the bootstrap), per-parameter intervals (``ci``, at ``level``,
    with ``n_boot`` refits; empty without), the refits' parameters (``boot``: refits × parameters, absolute
    units, in the order of the law's ``params``) and, with a loss-drop shape, points of the likelihood region
    (``region``, as ``boot``) and the covariance of its quadratic approximation (``region_cov``; absolute
    units, natural log of the law's ``log_params``) (module docstring)."""

    form: str
    params: dict[str, float]
    objective: float
    fit_seconds: float
    n_points: int
    delta: float
    settings: dict[str, Any] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    level: float = 0.95
    n_boot: int = 0
    notes: tuple[str, ...] = ()
    boot: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)  # refits × params
    region: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)  # points × params
    region_cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)  # params × params

    @property
    def law(self) -> Any:
        """The law object, ready to ``predict``."""
        return CURVE_LAWS[self.form](**self.params, **self.settings)

    def predict_interval(self, steps: ArrayLike, lr: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Interval at ``level`` of the law's loss (nats/token) at ``steps`` of a run with per-step LR ``lr``
        (as ``law.predict``); needs ``n_boot`` ≥ 2. The law's mean curve, without the noise of new points.
        With a loss-drop shape (MPL): the range of the loss over the likelihood region's points and over its
        quadratic approximation (the prediction ± sqrt(q·gᵀVg) in log loss, g = ∂ln L̂/∂y, V = ``region_cov``,
        q the χ²₁ quantile at ``level``); otherwise the prediction ± t·sd of the bootstrap refits'
        predictions, on a log scale (module docstring)."""
        if len(self.boot) < 2:
            raise CurveError(f"{self.form}: no bootstrap refits (n_boot < 2), so no prediction interval")
        law = CURVE_LAWS[self.form]
        rows = self.region if len(self.region) else self.boot
        preds = np.transpose([law(**dict(zip(law.params, row)), **self.settings).predict(steps, lr) for row in rows])
        if not len(self.region):
            return _spread(self.law.predict(steps, lr), preds, self.level, log=True)
        log_pred, grad = _log_prediction(law, self.params, self.settings, steps, lr)
        half = np.sqrt(chi2.ppf(self.level, 1) * np.einsum("ij,jk,ik->i", grad, self.region_cov, grad))
        return np.minimum(preds.min(axis=-1), np.exp(log_pred - half)), np.maximum(preds.max(axis=-1),
                                                                                   np.exp(log_pred + half))


def _z_of(law: Any, y: np.ndarray, units: Units) -> np.ndarray:
    """Internal coordinates of parameters ``y`` (absolute units, natural log of the law's ``log_params``)."""
    return law.internal({n: np.exp(v) if n in law.log_params else v for n, v in zip(law.params, y)}, units)


def _log_prediction(law: Any, params: Mapping[str, float], settings: Mapping[str, Any], steps: ArrayLike,
                    lr: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """ln L̂ (nats/token) at ``steps`` (within ``lr``, as ``predict``'s) and its gradient by the parameters y
    (as :func:`_z_of`'s)."""
    steps, lr = np.asarray(steps, dtype=np.int64), np.asarray(lr, dtype=float)
    units = Units.of([lr], [steps])
    y = np.array([np.log(params[n]) if n in law.log_params else params[n] for n in law.params])
    M = dz_dy(lambda v: _z_of(law, v, units), len(y))
    pred, d = law.model(_z_of(law, y, units), law.terms(lr, steps, units, **settings), jac=True)
    return np.log(pred), d / pred[:, None] @ M


def curve_errors(law: Any, curve: Curve) -> tuple[float, float]:
    """Mean and max of |L̂ − L|/L over the curve's points."""
    err = np.abs(law.predict(curve.steps, curve.lr) - curve.loss) / curve.loss
    return float(err.mean()), float(err.max())


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber_δ(r) and its derivative."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)), np.clip(r, -delta, delta)


class _Problem:
    """The training points of a fit and its objective in internal coordinates (scaled by 1/δ², so that
    L-BFGS-B's tolerances see numbers of order one)."""

    def __init__(self, law: Any, curves: Sequence[Curve], settings: Mapping[str, Any], delta: float):
        self.law, self.delta = law, delta
        self.units = Units.of([c.lr[: c.steps[-1] + 1] for c in curves], [c.steps for c in curves])
        self.parts = [law.terms(c.lr, c.steps, self.units, **settings) for c in curves]
        self.loss = np.concatenate([c.loss for c in curves])
        self.log_loss = np.log(self.loss)
        self.curve_of = np.concatenate([np.full(len(c.steps), j) for j, c in enumerate(curves)])
        self.slices = np.split(np.arange(len(self.loss)), np.cumsum([len(c.steps) for c in curves])[:-1])

    def observing(self, log_loss: np.ndarray) -> _Problem:
        """The same problem with other observed log losses."""
        other = copy.copy(self)
        other.loss, other.log_loss = np.exp(log_loss), log_loss
        return other

    def predict(self, z: np.ndarray, jac: bool = False):
        out = [self.law.model(z, t, jac=jac) for t in self.parts]
        if not jac:
            return np.concatenate(out)
        return np.concatenate([p for p, _ in out]), np.concatenate([d for _, d in out])

    def objective(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        pred, d = self.predict(z, jac=True)
        if not np.all(pred > 0) or not np.all(np.isfinite(d)):
            return 1e30, np.zeros_like(z)
        h, psi = _huber(np.log(pred) - self.log_loss, self.delta)
        scale = self.delta**-2
        return float(h.sum() * scale), (psi / pred) @ d * scale

    def huber(self, z: np.ndarray) -> float:
        pred = self.predict(z)
        return float(_huber(np.log(pred) - self.log_loss, self.delta)[0].sum()) if np.all(pred > 0) else np.inf


def _grid_starts(problem: _Problem) -> list[np.ndarray]:
    """Internal starting points: distinct local minima of the least-squares grid, best first."""
    law = problem.law
    i = law.index
    shapes = [_SHAPE_GRID[name] for name in law.shape]
    shape_points = list(itertools.product(*shapes))  # in the order of drop_grid's flattened axes
    n_shapes = len(shape_points)
    drops = np.concatenate([np.reshape(law.drop_grid(t, shapes), (n_shapes, -1)) for t in problem.parts], axis=1)
    s1 = np.concatenate([t.s1 for t in problem.parts])
    # relative residual (L̂ − L)/L is linear in (L0, Ã, W̃): columns 1/L, s1^(−α)/L, −drop/L
    forward = s1[None, :] ** -_ALPHA_GRID[:, None] / problem.loss  # (alpha, n)
    ones = 1.0 / problem.loss
    drop = -drops / problem.loss  # (shape, n)
    gram = np.empty((n_shapes, len(_ALPHA_GRID), 3, 3))
    gram[..., 0, 0] = ones @ ones
    gram[..., 0, 1] = gram[..., 1, 0] = forward @ ones
    gram[..., 1, 1] = np.einsum("an,an->a", forward, forward)
    gram[..., 0, 2] = gram[..., 2, 0] = (drop @ ones)[:, None]
    gram[..., 1, 2] = gram[..., 2, 1] = drop @ forward.T
    gram[..., 2, 2] = np.einsum("sn,sn->s", drop, drop)[:, None]
    rhs = np.stack(np.broadcast_arrays(ones.sum(), forward.sum(axis=1)[None, :], drop.sum(axis=1)[:, None]), axis=-1)
    ok = np.abs(np.linalg.det(gram)) > 1e-300
    coefs = np.zeros((n_shapes, len(_ALPHA_GRID), 3))
    coefs[ok] = np.linalg.solve(gram[ok], rhs[ok][..., None])[..., 0]
    # sum of squares = c'Gc − 2c'b + n
    sse = np.einsum("sai,saij,saj->sa", coefs, gram, coefs) - 2 * np.einsum("sai,sai->sa", coefs, rhs) + len(ones)
    ok &= (coefs[..., 0] >= 0) & (coefs[..., 1] > 0) & (coefs[..., 2] > 0)
    F = np.where(ok, sse, np.inf).reshape(*[len(g) for g in shapes], len(_ALPHA_GRID))
    flat = F.ravel()
    minima = np.nonzero((minimum_filter(F, size=3, mode="nearest") == F).ravel() & np.isfinite(flat))[0]
    starts = []
    for m in minima[np.argsort(flat[minima])][:POLISH_STARTS]:
        k, a = divmod(int(m), len(_ALPHA_GRID))
        z = np.zeros(len(law.params))
        z[i("L0")], z[i("A")], z[i(law.weight)] = coefs[k, a, 0], np.log(coefs[k, a, 1]), np.log(coefs[k, a, 2])
        z[i("alpha")] = _ALPHA_GRID[a]
        for name, value in zip(law.shape, shape_points[k]):
            z[i(name)] = value
        starts.append(z)
    return starts


def _polish(problem: _Problem, z0: np.ndarray, options: Mapping[str, Any] = _POLISH_OPTIONS) -> Any:
    bounds = [_BOUNDS[name] for name in problem.law.params]
    low, high = np.array([(lo, np.inf if hi is None else hi) for lo, hi in bounds]).T
    return minimize(problem.objective, np.clip(z0, low, high), jac=True, method="L-BFGS-B", bounds=bounds,
                    options=options)


def _lag_correlation(problem: _Problem, residual: np.ndarray) -> float:
    """Lag-1 autocorrelation of the residuals within curves, in [0, :data:`MAX_RHO`]."""
    same = problem.curve_of[1:] == problem.curve_of[:-1]
    a, b = residual[1:][same], residual[:-1][same]
    norm = np.sqrt((a @ a) * (b @ b))
    return float(np.clip(a @ b / norm, 0.0, MAX_RHO)) if norm > 0 else 0.0


def _leverage(problem: _Problem, z: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Diagonal of the hat matrix of the log-linearized fit at ``z`` (points in Huber's quadratic zone)."""
    pred, d = problem.predict(z, jac=True)
    J = d / pred[:, None] * (np.abs(residual) <= problem.delta)[:, None]  # ∂ln L̂/∂z where Huber is quadratic
    U, s, _ = np.linalg.svd(J, full_matrices=False)
    U = U[:, s > s[0] * 1e-10] if s.size and s[0] > 0 else U[:, :0]
    return np.einsum("ij,ij->i", U, U)


def _bootstrap(problem: _Problem, z: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Parameters (absolute units) of ``n_boot`` wild AR-sieve bootstrap refits (module docstring)."""
    rng = np.random.default_rng(seed)
    fitted = np.log(problem.predict(z))
    residual = problem.log_loss - fitted
    rho = _lag_correlation(problem, residual)
    curves = problem.slices
    first = [c[0] for c in curves]
    innovation = residual - rho * np.r_[0.0, residual[:-1]]
    innovation[first] = residual[first]  # a curve's first point starts the recursion
    innovation /= np.sqrt(1.0 - np.minimum(_leverage(problem, z, residual), LEVERAGE_CAP))
    samples = []
    for _ in range(n_boot):
        shock = rng.choice([-1.0, 1.0], size=len(residual)) * innovation
        noise = np.concatenate([lfilter([1.0], [1.0, -rho], shock[c]) for c in curves])  # AR(1) per curve
        res = _polish(problem.observing(fitted + noise), z, _REFIT_OPTIONS)
        samples.append(list(problem.law.from_internal(res.x, problem.units).values()))
    return np.array(samples)


def _spread(estimate: np.ndarray, samples: np.ndarray, level: float, log: bool) -> tuple[np.ndarray, np.ndarray]:
    """``estimate ± t·sd(samples)`` (on a log scale when ``log``): t the Student quantile at ``level`` for
    the samples' degrees of freedom (the last axis holds the samples)."""
    f, inv = (np.log, np.exp) if log else (np.asarray, np.asarray)
    half = student_t.ppf(0.5 + level / 2, samples.shape[-1] - 1) * f(samples).std(axis=-1, ddof=1)
    return inv(f(estimate) - half), inv(f(estimate) + half)


def _intervals(law: Any, params: Mapping[str, float], boot: np.ndarray, level: float) -> dict[str, tuple]:
    """Per-parameter intervals at ``level`` from the bootstrap refits ``boot`` (module docstring)."""
    out = {}
    for j, name in enumerate(law.params):
        lo, hi = _spread(np.array(params[name]), boot[:, j], level, name in law.log_params)
        low, high = _BOUNDS[name] if name not in law.log_params else (None, None)
        out[name] = (float(lo if low is None else max(lo, low)), float(hi if high is None else min(hi, high)))
    return out


def _profile(problem: _Problem, z: np.ndarray, boot: np.ndarray, level: float) -> tuple[dict, np.ndarray, np.ndarray]:
    """Per-parameter profile-likelihood intervals at ``level`` around the optimum ``z`` (internal), with the
    bootstrap refits ``boot`` (absolute units) as extra starts (:mod:`~scaling_pipeline.lib.curves.profile`)."""
    law = problem.law
    logs = np.array([name in law.log_params for name in law.params])
    y_hat = np.array(list(law.from_internal(z, problem.units).values()))
    y_hat[logs] = np.log(y_hat[logs])
    refits = np.where(logs, np.log(np.maximum(boot, 1e-300)), boot)
    pred, d = problem.predict(z, jac=True)
    J, residual = d / pred[:, None], problem.log_loss - np.log(pred)
    rho, sigma2 = ar1_noise_moments(J, residual, problem.slices, MAX_RHO)
    ends, region, cov = profile_intervals(
        problem.objective, lambda y: _z_of(law, y, problem.units), y_hat, J, np.abs(residual) <= problem.delta,
        [_BOUNDS[n] for n in law.params], logs, problem.delta**-2, rho, sigma2, problem.slices, level,
        _POLISH_OPTIONS, refits)
    ends[logs] = np.exp(ends[logs])
    region[:, logs] = np.exp(region[:, logs])
    return {n: (float(lo), float(hi)) for n, (lo, hi) in zip(law.params, ends)}, region, cov


def fit_curves(curves: Sequence[Curve], form: str = "mpl", *, delta: float = DELTA, n_boot: int = 0,
               level: float = 0.95, seed: int = 0, **settings: Any) -> CurveFit:
    """Fit the curve law ``form`` (``mpl`` or ``lr_annealing``) to ``curves`` (module docstring), with
    bootstrap intervals when ``n_boot`` > 0. ``settings`` are the law's fixed settings (``decay`` of
    ``lr_annealing``)."""
    t0 = time.perf_counter()
    if form not in CURVE_LAWS:
        raise CurveError(f"unknown curve law {form!r}; forms: {sorted(CURVE_LAWS)}")
    law = CURVE_LAWS[form]
    unknown = set(settings) - set(law.settings_of())
    if unknown:
        raise CurveError(f"{form} has no settings {sorted(unknown)} (settings: {sorted(law.settings_of())})")
    settings = {**law.settings_of(), **settings}
    if not curves:
        raise CurveError("no curves to fit")
    if n_boot == 1:
        raise CurveError("an interval needs at least 2 bootstrap refits, got n_boot = 1")
    n_points = sum(len(c.steps) for c in curves)
    if n_points <= len(law.params):
        raise CurveError(f"{form} has {len(law.params)} parameters; the curves have only {n_points} points")
    if not any(np.any(np.diff(c.lr[: c.steps[-1] + 1]) != 0) for c in curves):
        raise CurveError(f"{form}: the learning rate never changes in these runs, so the weight of the schedule "
                         f"term ({law.weight}) cannot be fitted")
    problem = _Problem(law, curves, settings, delta)
    with threadpool_limits(limits=1, user_api="blas"):  # threaded BLAS makes small L-BFGS-B problems slow
        best = min((_polish(problem, z0) for z0 in _grid_starts(problem)), key=lambda r: r.fun, default=None)
        if best is None or not np.isfinite(best.fun) or best.fun >= 1e30:
            raise CurveError(f"{form}: no starting point of the grid predicts positive losses; check the curves")
        seconds = time.perf_counter() - t0
        boot = _bootstrap(problem, best.x, n_boot, seed) if n_boot > 0 else np.zeros((0, len(law.params)))
        params = law.from_internal(best.x, problem.units)
        ci, region, cov = {}, np.zeros((0, len(law.params))), np.zeros((0, 0))
        if n_boot >= 2:
            ci, region, cov = _profile(problem, best.x, boot, level) if law.shape else (
                _intervals(law, params, boot, level), region, cov)
    return CurveFit(form, params, problem.huber(best.x), seconds, n_points, delta, settings, ci, level, n_boot,
                    tuple(n for c in curves for n in c.notes), boot, region, cov)
