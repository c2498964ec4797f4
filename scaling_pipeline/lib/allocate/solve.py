"""The numerics behind every plan: all laws (point estimate and bootstrap samples) stacked and solved at once
(budget optimum under caps and limited unique data, cheapest budget for a target loss, inference-aware optimum),
and the checks of their inputs."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scaling_pipeline.lib.laws import RD_STAR, RN_STAR, Chinchilla, DataConstrained

_GRID = 384  # grid points of the 1-D searches
_GOLDEN = 64  # golden-section refinements after the grid (bracket shrinks by 0.618^64 ≈ 4e-14)
_WINDOW = math.log(1e4)  # log-N search margin around the relevant optima (data-constrained plans)
_MAX_SPAN = 80.0  # the log-N search never strays further than this from the unconstrained optimum
_HUGE = 1e300  # stands for "unbounded" N, D or C in limits
_REL = 1e-9  # relative tolerance for "at the cap"


# --------------------------------------------------------------------------------------------
# Every law at once: a stacked Chinchilla law, row 0 the point estimate, rows 1… the bootstrap samples


def _params(law: Chinchilla, samples: Sequence[Chinchilla] | np.ndarray | None) -> tuple[np.ndarray, int]:
    """``(1 + S, 5)`` parameter rows (point law first, columns ``Chinchilla.params``) and the number S of samples."""
    rows = [[*law.to_params().values()]]
    if samples is not None:
        laws = laws_from_samples(samples) if isinstance(samples, (np.ndarray, pd.DataFrame)) else samples
        rows += [[*s.to_params().values()] for s in laws]
    arr = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
    return arr, arr.shape[0] - 1


def laws_from_samples(samples: np.ndarray | pd.DataFrame) -> list[Chinchilla]:
    """Bootstrap laws from an ``(S, 5)`` array (columns E, A, B, alpha, beta, e.g. ``Bootstrap.samples``)
    or a DataFrame with those columns (e.g. the ``fits.bootstrap`` table)."""
    if isinstance(samples, pd.DataFrame):
        arr = samples[list(Chinchilla.params)].to_numpy(dtype=float)
    else:
        arr = np.asarray(samples, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"bootstrap samples must have 5 columns (E, A, B, alpha, beta), got shape {arr.shape}")
    return [Chinchilla(*map(float, r)) for r in arr]


def _minimise(f: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise minimum of ``f`` over ``[lo, hi]`` (``(S, 1)`` bounds): dense grid, then golden section in
    the bracket around the best grid point. NaN values count as +inf; rows without a finite value give NaN."""

    def g(x: np.ndarray) -> np.ndarray:
        v = f(x)
        return np.where(np.isnan(v), np.inf, v)

    x = lo + (hi - lo) * np.linspace(0.0, 1.0, _GRID)[None, :]
    v = g(x)
    i = np.argmin(v, axis=1)[:, None]
    x_best, v_best = np.take_along_axis(x, i, axis=1), np.take_along_axis(v, i, axis=1)
    a = np.take_along_axis(x, np.maximum(i - 1, 0), axis=1)
    b = np.take_along_axis(x, np.minimum(i + 1, _GRID - 1), axis=1)
    r = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(_GOLDEN):
        c, d = b - r * (b - a), a + r * (b - a)
        left = g(c) < g(d)
        a, b = np.where(left, a, c), np.where(left, d, b)
    xm = 0.5 * (a + b)
    vm = g(xm)
    better = vm <= v_best
    x_out, v_out = np.where(better, xm, x_best), np.where(better, vm, v_best)
    bad = ~np.isfinite(v_out)
    return np.where(bad, np.nan, x_out), np.where(bad, np.nan, v_out)


def _window(wl: np.ndarray, wh: np.ndarray, fl: np.ndarray, fh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Search interval: the window ``[wl, wh]`` that holds the free optimum, intersected with the feasible
    ``[fl, fh]``; when they do not overlap, the feasible end nearest the window (unimodal objective)."""
    return np.minimum(np.maximum(fl, wl), fh), np.maximum(np.minimum(fh, wh), fl)


@dataclass(frozen=True)
class _Limits:
    """Caps (parameters, tokens), unique tokens and the data-constrained decay constants."""

    max_params: float | None = None
    max_tokens: float | None = None
    unique_tokens: float | None = None
    rd_star: float = RD_STAR
    rn_star: float = RN_STAR

    @property
    def c_max(self) -> float:
        """Largest budget the caps can absorb (FLOPs)."""
        if self.max_params is None or self.max_tokens is None:
            return math.inf
        return 6.0 * self.max_params * self.max_tokens

    def n_bounds(self, C: Any) -> tuple[np.ndarray, np.ndarray]:
        """Feasible parameter counts ``[C/(6·max_tokens), max_params]`` for budget ``C``."""
        C = np.asarray(C, dtype=float)
        lo = C / (6.0 * self.max_tokens) if self.max_tokens is not None else np.zeros_like(C)
        hi = np.full_like(C, self.max_params if self.max_params is not None else np.inf)
        return lo, hi

    def describe(self) -> str:
        parts = [f"{name} = {v:.4g}" for name, v in (("max_params", self.max_params), ("max_tokens", self.max_tokens),
                                                        ("unique_tokens", self.unique_tokens)) if v is not None]
        return ", ".join(parts) or "no constraints"

    def label(self, n: float, d: float) -> str:
        parts = []
        if self.max_params is not None and n >= self.max_params * (1 - _REL):
            parts.append("max_params")
        if self.max_tokens is not None and d >= self.max_tokens * (1 - _REL):
            parts.append("max_tokens")
        if self.unique_tokens is not None and d > self.unique_tokens * (1 + _REL):
            parts.append("unique_tokens")
        return "+".join(parts) or "none"

    def check_budget(self, compute: float) -> None:
        if compute > self.c_max * (1 + 1e-12):
            raise ValueError(
                f"budget {compute:.4g} FLOPs cannot be spent with at most {self.max_params:.4g} parameters and "
                f"{self.max_tokens:.4g} tokens: 6·max_params·max_tokens = {self.c_max:.4g} FLOPs < {compute:.4g}")

    def best_loss(self, p: Chinchilla) -> np.ndarray:
        """Infimum of the loss (nats/token) over every feasible ``(N, D)`` at any budget, per law: the loss is
        non-increasing in both N and D, so it is the loss at the caps (or at N, D -> ∞)."""
        n = self.max_params if self.max_params is not None else _HUGE
        d = self.max_tokens if self.max_tokens is not None else _HUGE
        return _loss_of(p, n, d, self)

    def reachable(self, p: Chinchilla, target: float) -> np.ndarray:
        """Whether some feasible plan reaches ``target`` (nats/token), per law."""
        best = self.best_loss(p)
        attained = self.max_params is not None and self.max_tokens is not None
        return (target > p.E) & ((target > best) | ((target == best) & attained))


def _solve_budget(p: Chinchilla, C: Any, lim: _Limits) -> tuple[np.ndarray, np.ndarray]:
    """Loss-minimising ``N`` (parameters) and its loss (nats/token) per law for budget ``C`` (FLOPs, scalar or
    ``(S, 1)``), honouring ``lim``; NaN where no plan exists."""
    C = np.broadcast_to(np.asarray(C, dtype=float), p.E.shape)
    n_lo, n_hi = lim.n_bounds(C)
    feasible = n_lo <= n_hi * (1 + 1e-12)
    n_lo = np.minimum(n_lo, n_hi)
    n_star, _ = p.optimal_allocation(C)
    if lim.unique_tokens is None:
        n = np.clip(n_star, n_lo, n_hi)
        loss = p.predict(n, C / (6.0 * n))
    else:
        ln_star, ln_u = np.log(n_star), np.log(p.n_opt_for_data(lim.unique_tokens))
        wl = np.maximum(np.fmin(ln_star, ln_u) - _WINDOW, ln_star - _MAX_SPAN)
        wh = np.minimum(np.fmax(ln_star, ln_u) + _WINDOW, ln_star + _MAX_SPAN)
        lo, hi = _window(wl, wh, np.log(n_lo), np.log(n_hi))
        x, loss = _minimise(lambda x: _loss_of(p, np.exp(x), C / (6.0 * np.exp(x)), lim), lo, hi)
        n = np.exp(x)
    return np.where(feasible, n, np.nan), np.where(feasible, loss, np.nan)


def _loss_of(p: Chinchilla, n: Any, d: Any, lim: _Limits) -> np.ndarray:
    """Loss (nats/token) of ``(n, d)`` per law; with unique data, the data-constrained law (Muennighoff et al.
    2023) with ``U_D = min(U, D)`` unique tokens seen."""
    if lim.unique_tokens is None:
        return p.predict(n, d)
    return DataConstrained.of(p, lim.rd_star, lim.rn_star).predict(n, d, lim.unique_tokens, cap_unique=True)


def _cheapest_budget(p: Chinchilla, target: float, lim: _Limits) -> np.ndarray:
    """Smallest budget (FLOPs, ``(S, 1)``) whose constrained optimum reaches ``target`` (nats/token); NaN where
    unreachable. The unconstrained closed form bounds it from below; bracket by ×1000 steps, then bisect."""
    l_max = math.log(min(lim.c_max, _HUGE))
    llo = np.minimum(math.log(6.0) - np.log((target - p.E) / p.K) / p.gamma + math.log1p(-1e-9), l_max)
    llo = np.where(lim.reachable(p, target), llo, np.nan)
    lhi = llo.copy()

    def reach(lc: np.ndarray) -> np.ndarray:
        return _solve_budget(p, np.exp(lc), lim)[1] <= target  # NaN -> False

    ok = reach(lhi)
    for _ in range(200):
        todo = ~ok & (lhi < l_max) & np.isfinite(lhi)
        if not todo.any():
            break
        llo = np.where(todo, lhi, llo)
        lhi = np.where(todo, np.minimum(lhi + math.log(1e3), l_max), lhi)
        ok = np.where(todo, reach(lhi), ok)
    lhi = np.where(ok, lhi, np.nan)
    for _ in range(200):
        width = np.where(np.isfinite(lhi - llo), lhi - llo, 0.0)
        if width.max() <= 1e-13:
            break
        mid = 0.5 * (llo + lhi)
        r = reach(mid)
        lhi, llo = np.where(r, mid, lhi), np.where(r, llo, mid)
    return np.exp(lhi)


def _inference_solve(p: Chinchilla, target: float, t_inf: float, lim: _Limits) -> tuple[np.ndarray, np.ndarray]:
    """``(N, D)`` per law minimising ``6·N·D + 2·N·t_inf`` FLOPs subject to ``L(N, D) = target``, within the caps.

    Parametrised by ``t = logit φ`` with ``A/N^α = φ·(L - E)`` and ``B/D^β = (1 - φ)·(L - E)``.
    """
    ln_le = np.log(target - p.E)
    ln_t = math.log(t_inf) if t_inf > 0 else -math.inf

    def ln_cost(t: np.ndarray) -> np.ndarray:
        ln_n, ln_d = p.log_inputs_for(target, t)
        return ln_n + np.logaddexp(math.log(6.0) + ln_d, math.log(2.0) + ln_t)

    fl = np.full_like(ln_le, -np.inf)
    fh = np.full_like(ln_le, np.inf)
    if lim.max_params is not None:  # φ ≥ φ_lo = A/(max_params^α·(L - E))
        ln_phi = p.log_n_term(lim.max_params) - ln_le
        fl = np.where(ln_phi < 0, ln_phi - np.log(-np.expm1(ln_phi)), np.nan)
    if lim.max_tokens is not None:  # 1 - φ ≥ ψ = B/(max_tokens^β·(L - E))
        ln_psi = p.log_d_term(lim.max_tokens) - ln_le
        fh = np.where(ln_psi < 0, np.log(-np.expm1(ln_psi)) - ln_psi, np.nan)
    fl = np.where(fl <= fh + 1e-9, np.minimum(fl, fh), np.nan)  # (equal when the caps exactly attain the target)
    t_c = np.log(p.beta / p.alpha)  # Chinchilla split φ = β/(α+β); inference only pushes t upwards
    lo, hi = _window(t_c - 10.0, t_c + 60.0, fl, fh)
    t, _ = _minimise(ln_cost, lo, hi)
    ln_n, ln_d = p.log_inputs_for(target, t)
    return np.exp(ln_n), np.exp(ln_d)


# --------------------------------------------------------------------------------------------
# Validation and intervals


def _positive(name: str, value: Any, unit: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number of {unit}, got {value!r}") from None
    if not (math.isfinite(v) and v > 0) or isinstance(value, bool):
        raise ValueError(f"{name} must be a positive, finite number of {unit}, got {value!r}")
    return v


def _limits(max_params: float | None, max_tokens: float | None, unique_tokens: float | None,
            rd_star: float, rn_star: float) -> _Limits:
    return _Limits(
        max_params=None if max_params is None else _positive("max_params", max_params, "parameters"),
        max_tokens=None if max_tokens is None else _positive("max_tokens", max_tokens, "tokens"),
        unique_tokens=None if unique_tokens is None else _positive("unique_tokens", unique_tokens, "tokens"),
        rd_star=_positive("rd_star", rd_star, "epochs (dimensionless)"),
        rn_star=_positive("rn_star", rn_star, "(dimensionless)"),
    )


def _inference_tokens(value: Any) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"inference_tokens must be a finite number of tokens >= 0, got {value!r}")
    return v


def _check_level(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(level)


def _check_reachable(law: Chinchilla, target: float, lim: _Limits) -> None:
    if not target > law.E:
        raise ValueError(f"target loss {target:.6g} nats/token is unreachable: it must exceed the irreducible "
                         f"loss E = {law.E:.6g} nats/token of this law")
    p = Chinchilla.stack(_params(law, None)[0])
    with np.errstate(all="ignore"):
        best, ok = float(lim.best_loss(p)[0, 0]), bool(lim.reachable(p, target)[0, 0])
    if not ok:
        raise ValueError(f"target loss {target:.8g} nats/token is unreachable with {lim.describe()}: the best "
                         f"achievable loss is {best:.8g} nats/token (irreducible loss E = {law.E:.6g})")


def _intervals(values: Mapping[str, np.ndarray], level: float) -> tuple[dict[str, tuple[float, float]], int]:
    """Percentile intervals of the sample rows (finite, > 0 values only) and the number of usable samples."""
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    out: dict[str, tuple[float, float]] = {}
    usable = None
    for name, v in values.items():
        v = np.asarray(v, dtype=float).ravel()
        good = np.isfinite(v) & (v > 0)
        usable = good if usable is None else usable & good
        lo, hi = np.percentile(v[good], q) if good.any() else (np.nan, np.nan)
        out[name] = (float(lo), float(hi))
    return out, int(usable.sum()) if usable is not None else 0


def _efficiency(best: float, loss: float) -> float:
    """``best/loss`` clipped at 1 (the clip only absorbs rounding: ``best`` is a lower bound of ``loss``)."""
    r = best / loss
    return min(1.0, r) if math.isfinite(r) else math.nan

