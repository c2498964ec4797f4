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

**Intervals** (``n_boot`` > 0): a block wild bootstrap. The log residuals of the fit stay where they are;
each block of :data:`BOOT_BLOCK` consecutive points of a curve has its residuals' sign flipped with
probability 1/2 (the residuals of a loss curve are correlated over about that many logged points, and part
of them is structure the law does not capture, such as the transient right after the warm-up, which
resampling positions would move about); the law is refitted to the fitted log losses plus those residuals,
from the fit's optimum (L-BFGS-B only), and the intervals are percentiles of the refits. A refit costs
about one polish, up to a few when it runs far along a weakly determined direction (MPL: B large with β
small, the log limit of G). The intervals are approximate and too narrow: in known-truth fits (three
12k-step curves, 0.1% noise, seeded draws) the 95% intervals held the true value in 30-33 of 40 draws
for the LR-annealing law (40 refits; the ~18 blocks give the spread few degrees of freedom) and in only
4-6 of 12 for the MPL (20 refits), whose estimate wanders along the weakly determined loss-drop shape
more than refits from one optimum do. (A Hessian sandwich held it in 6 of 12 for the MPL; resampling
residual blocks across positions held it in 9-10 of 12 but put the refits beside the estimate on the
paper's curves, because it moves the structured misfit after the warm-up about.)
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
from threadpoolctl import threadpool_limits

from scaling_pipeline.lib.curves.laws import CURVE_LAWS, Units
from scaling_pipeline.lib.curves.schedule import CurveError, Schedule, per_step_lr

__all__ = ["Curve", "CurveFit", "fit_curves", "curve_errors", "DELTA", "BOOT_BLOCK"]

DELTA = 1e-3  # Huber δ on log loss
BOOT_BLOCK = 20  # points per sign-flipped block of residuals (they stay correlated over ~10-20 logged points)
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
    """A fitted curve law: parameters in absolute LR units (``params``), the objective (sum of
    Huber_δ of log residuals), wall time of the fit (without the bootstrap), and per-parameter
    bootstrap intervals (``ci``, at ``level``, from ``n_boot`` refits; empty without)."""

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

    @property
    def law(self) -> Any:
        """The law object, ready to ``predict``."""
        return CURVE_LAWS[self.form](**self.params, **self.settings)


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


def _bootstrap(problem: _Problem, z: np.ndarray, n_boot: int, level: float, seed: int) -> dict[str, tuple]:
    """Percentile intervals from block wild bootstrap refits (module docstring)."""
    rng = np.random.default_rng(seed)
    fitted = np.log(problem.predict(z))
    residual = problem.log_loss - fitted
    first = np.searchsorted(problem.curve_of, problem.curve_of)  # each point's curve's first point
    _, block = np.unique(problem.curve_of * len(residual) + (np.arange(len(residual)) - first) // BOOT_BLOCK,
                         return_inverse=True)
    samples = []
    for _ in range(n_boot):
        signs = rng.choice([-1.0, 1.0], size=block.max() + 1)
        res = _polish(problem.observing(fitted + signs[block] * residual), z, _REFIT_OPTIONS)
        samples.append(list(problem.law.from_internal(res.x, problem.units).values()))
    lo, hi = np.quantile(np.array(samples), [0.5 - level / 2, 0.5 + level / 2], axis=0)
    return {name: (float(lo[j]), float(hi[j])) for j, name in enumerate(problem.law.params)}


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
        ci = _bootstrap(problem, best.x, n_boot, level, seed) if n_boot > 0 else {}
    return CurveFit(form, law.from_internal(best.x, problem.units), problem.huber(best.x), seconds, n_points,
                    delta, settings, ci, level, n_boot, tuple(n for c in curves for n in c.notes))
