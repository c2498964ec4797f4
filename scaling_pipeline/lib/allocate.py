"""Compute-optimal allocation of a FLOP budget between parameters and tokens (pure numpy).

Units everywhere: ``C`` training compute in FLOPs (``C = 6·N·D``), ``N`` parameters, ``D`` training
tokens, ``U`` unique tokens, ``T_inf`` inference tokens (``2·N`` FLOPs each), losses in nats/token.

* **Unconstrained** (Hoffmann et al. 2022): ``L(N, D) = E + A/N^α + B/D^β`` along ``C = 6·N·D`` has
  the closed-form optimum ``N* = G·(C/6)^a``, ``D* = (C/6)/N*`` with ``a = β/(α+β)`` and
  ``G = (αA/(βB))^(1/(α+β))``; the loss there is ``E + K·(C/6)^(-αβ/(α+β))``,
  ``K = A·G^(-α) + B·G^β``.
* **Caps** on parameters / tokens: the loss is convex in ``log N`` along the iso-FLOP line, so the
  optimum is ``N*`` clipped into the feasible interval; the budget is still spent exactly.
* **Limited unique data** ``U``: the data-constrained law of Muennighoff et al. (2023, Eq. 5) with the
  fit's ``E, A, B, α, β`` and the published decay constants ``R*_D``, ``R*_N``, minimised over
  ``log N`` numerically (dense grid + golden section). The unique tokens actually seen are
  ``U_D = min(U, D)`` (paper's definition), so with ``U ≥ D*`` the plan is the unconstrained one.
* **Target loss**: the cheapest budget whose (constrained) optimum reaches it (bisection in ``log C``;
  the optimal loss is non-increasing in ``C``).
* **Inference-aware** (Sardana et al. 2024): minimise ``6·N·D + 2·N·T_inf`` subject to
  ``L(N, D) = L_target``. The loss budget ``L - E`` is split as ``A/N^α = φ·(L - E)``,
  ``B/D^β = (1 - φ)·(L - E)``; the search runs over ``logit φ``, which stays well conditioned both
  near the Chinchilla split ``φ = β/(α+β)`` and for tiny models trained on huge data.

Every plan reports an **efficiency** = loss of the unconstrained optimum for the same training compute /
loss of the plan (≤ 1; 1 when nothing binds). Every plan function accepts bootstrap ``samples``
(a list of :class:`Chinchilla` or an ``(S, 5)`` array of ``E, A, B, alpha, beta``) and returns percentile
intervals at ``level``; all laws are solved together, vectorised, and degenerate samples (NaN/inf
results) are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scaling_pipeline.lib.laws import RD_STAR, RN_STAR, Chinchilla, DataConstrained
from scaling_pipeline.lib.jsonutil import jsonable

__all__ = [
    "DEFAULT_BUDGETS",
    "HOFFMANN",
    "Plan",
    "allocate",
    "compute_for_loss",
    "plan_for_loss",
    "inference_plan",
    "allocation_table",
    "law_allocation_table",
    "law_from_fit",
    "laws_from_samples",
    "plans_from_fit",
    "chinchilla_reference",
]

DEFAULT_BUDGETS = tuple(10.0 ** k for k in range(18, 27))  # 1e18 … 1e26 FLOPs
HOFFMANN = Chinchilla(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. (2022), Approach 3

_GRID = 384  # grid points of the 1-D searches
_GOLDEN = 64  # golden-section refinements after the grid (bracket shrinks by 0.618^64 ≈ 4e-14)
_WINDOW = math.log(1e4)  # log-N search margin around the relevant optima (data-constrained plans)
_MAX_SPAN = 80.0  # the log-N search never strays further than this from the unconstrained optimum
_HUGE = 1e300  # stands for "unbounded" N, D or C in limits
_REL = 1e-9  # relative tolerance for "at the cap"


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Plan:
    """One allocation: ``compute`` training FLOPs split into ``n_params`` parameters × ``n_tokens`` tokens.

    ``loss`` is the predicted loss (nats/token); ``constraint`` names what binds (``'none'``,
    ``'max_params'``, ``'max_tokens'``, ``'unique_tokens'``, joined by ``+``); ``efficiency`` is the
    loss of the unconstrained optimum at the same ``compute`` divided by ``loss`` (≤ 1). ``kind`` is
    ``'budget'`` (given compute), ``'target_loss'`` (cheapest compute reaching ``target_loss``) or
    ``'inference'`` (cheapest training + inference FLOPs, with ``reference`` = the cheapest-training plan
    for the same loss). ``ci`` maps a quantity to a bootstrap percentile interval at ``ci_level`` from
    ``ci_samples`` usable samples.
    """

    compute: float
    n_params: float
    n_tokens: float
    loss: float
    constraint: str
    efficiency: float = 1.0
    kind: str = "budget"
    unique_tokens: float | None = None
    target_loss: float | None = None
    inference_tokens: float | None = None
    reference: Plan | None = None
    ci: Mapping[str, tuple[float, float]] | None = None
    ci_level: float | None = None
    ci_samples: int | None = None

    @property
    def tokens_per_param(self) -> float:
        return self.n_tokens / self.n_params

    @property
    def epochs(self) -> float | None:
        """Passes over the unique data, ``D/U`` (only with ``unique_tokens``; < 1: not all of it is used)."""
        return None if self.unique_tokens is None else self.n_tokens / self.unique_tokens

    @property
    def inference_flops(self) -> float | None:
        """``2·N·T_inf`` FLOPs (only with ``inference_tokens``)."""
        return None if self.inference_tokens is None else 2.0 * self.n_params * self.inference_tokens

    @property
    def total_flops(self) -> float | None:
        """Training + inference FLOPs (only with ``inference_tokens``)."""
        inf = self.inference_flops
        return None if inf is None else self.compute + inf

    @property
    def savings_flops(self) -> float | None:
        """Total FLOPs saved against ``reference`` (inference-aware plans)."""
        if self.reference is None or self.total_flops is None or self.reference.total_flops is None:
            return None
        return self.reference.total_flops - self.total_flops

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the always-present keys, then the ones that apply to this kind of plan."""
        out: dict[str, Any] = {
            "kind": self.kind, "compute": self.compute, "n_params": self.n_params, "n_tokens": self.n_tokens,
            "tokens_per_param": self.tokens_per_param, "loss": self.loss, "constraint": self.constraint,
            "efficiency": self.efficiency,
        }
        if self.unique_tokens is not None:
            out.update(unique_tokens=self.unique_tokens, epochs=self.epochs)
        if self.target_loss is not None:
            out["target_loss"] = self.target_loss
        if self.inference_tokens is not None:
            out.update(inference_tokens=self.inference_tokens, inference_flops=self.inference_flops,
                       total_flops=self.total_flops)
        if self.reference is not None:
            ref = self.reference
            out["chinchilla_optimal"] = {
                "compute": ref.compute, "n_params": ref.n_params, "n_tokens": ref.n_tokens,
                "tokens_per_param": ref.tokens_per_param, "loss": ref.loss, "constraint": ref.constraint,
                "inference_flops": ref.inference_flops, "total_flops": ref.total_flops,
            }
            out["savings_flops"] = self.savings_flops
            out["savings_fraction"] = self.savings_flops / ref.total_flops if ref.total_flops else None
        if self.ci is not None:
            out["ci"] = {k: [lo, hi] for k, (lo, hi) in self.ci.items()}
            out["ci_level"] = self.ci_level
            out["ci_samples"] = self.ci_samples
        return out


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


# --------------------------------------------------------------------------------------------
# Plans


def allocate(law: Chinchilla, compute: float, *, max_params: float | None = None, max_tokens: float | None = None,
             unique_tokens: float | None = None, inference_tokens: float | None = None, rd_star: float = RD_STAR,
             rn_star: float = RN_STAR, samples: Sequence[Chinchilla] | np.ndarray | None = None,
             level: float = 0.95) -> Plan:
    """Loss-minimising ``(N, D)`` for ``compute`` FLOPs with ``C = 6·N·D`` spent exactly.

    Optional caps ``max_params`` (parameters) and ``max_tokens`` (tokens); ``unique_tokens`` switches to the
    data-constrained law (decay constants ``rd_star``, ``rn_star``) and reports ``epochs = D/U``;
    ``inference_tokens`` only adds ``2·N·T_inf`` inference FLOPs to the plan (it does not change the
    loss-optimal split of a fixed training budget). With bootstrap ``samples``, ``ci`` holds percentile
    intervals at ``level`` of each sample law's own optimum (``n_params``, ``n_tokens``, ``loss``).
    Raises ``ValueError`` for a non-positive budget or caps that cannot absorb it.
    """
    c = _positive("compute", compute, "FLOPs")
    lim = _limits(max_params, max_tokens, unique_tokens, rd_star, rn_star)
    lim.check_budget(c)
    t_inf = _inference_tokens(inference_tokens)
    arr, n_samples = _params(law, samples)
    if n_samples:
        level = _check_level(level)
    p = Chinchilla.stack(arr)
    with np.errstate(all="ignore"):
        n, loss = _solve_budget(p, c, lim)
        d = c / (6.0 * n)
        best = p.loss_at_optimum(c)
    n0, d0, l0 = float(n[0, 0]), float(d[0, 0]), float(loss[0, 0])
    ci, used = (_intervals({"n_params": n[1:], "n_tokens": d[1:], "loss": loss[1:]}, level)
                if n_samples else (None, None))
    return Plan(compute=c, n_params=n0, n_tokens=d0, loss=l0, constraint=lim.label(n0, d0),
                efficiency=_efficiency(float(best[0, 0]), l0), kind="budget", unique_tokens=lim.unique_tokens,
                inference_tokens=t_inf, ci=ci, ci_level=level if n_samples else None, ci_samples=used)


def compute_for_loss(law: Chinchilla, target_loss: float) -> float:
    """Closed-form FLOPs at which the unconstrained optimum reaches ``target_loss`` (nats/token):
    ``C = 6·((L - E)/K)^(-(α+β)/(αβ))`` with ``K = A·G^(-α) + B·G^β``."""
    L = _positive("target_loss", target_loss, "nats/token")
    _check_reachable(law, L, _Limits())
    return float(law.compute_for_loss(L))


def plan_for_loss(law: Chinchilla, target_loss: float, *, max_params: float | None = None,
                  max_tokens: float | None = None, unique_tokens: float | None = None, rd_star: float = RD_STAR,
                  rn_star: float = RN_STAR, samples: Sequence[Chinchilla] | np.ndarray | None = None,
                  level: float = 0.95) -> Plan:
    """Cheapest budget (FLOPs) whose loss-optimal plan under the same constraints as :func:`allocate` reaches
    ``target_loss`` (nats/token), found by bisection in ``log C`` (relative precision ~1e-13).

    Raises ``ValueError`` naming ``E`` (and the best achievable loss under the constraints) when the target is
    unreachable. With ``samples``, ``ci`` holds intervals of each sample law's own cheapest plan
    (``n_params``, ``n_tokens``, ``compute``) and of the loss of *this* plan's ``(N, D)`` under each sample
    law (``loss``: will the recommended run reach the target?).
    """
    L = _positive("target_loss", target_loss, "nats/token")
    lim = _limits(max_params, max_tokens, unique_tokens, rd_star, rn_star)
    _check_reachable(law, L, lim)
    arr, n_samples = _params(law, samples)
    if n_samples:
        level = _check_level(level)
    p = Chinchilla.stack(arr)
    with np.errstate(all="ignore"):
        C = _cheapest_budget(p, L, lim)
        n, loss = _solve_budget(p, C, lim)
        d = C / (6.0 * n)
        best = p.loss_at_optimum(C)
        c0, n0, d0, l0 = float(C[0, 0]), float(n[0, 0]), float(d[0, 0]), float(loss[0, 0])
        under_samples = _loss_of(p, n0, d0, lim)
    if not (math.isfinite(c0) and math.isfinite(l0)):
        raise ValueError(f"no finite budget reaches target loss {L:.6g} nats/token with {lim.describe()}")
    ci, used = (_intervals({"n_params": n[1:], "n_tokens": d[1:], "compute": C[1:], "loss": under_samples[1:]},
                           level) if n_samples else (None, None))
    return Plan(compute=c0, n_params=n0, n_tokens=d0, loss=l0, constraint=lim.label(n0, d0),
                efficiency=_efficiency(float(best[0, 0]), l0), kind="target_loss", unique_tokens=lim.unique_tokens,
                target_loss=L, ci=ci, ci_level=level if n_samples else None, ci_samples=used)


def inference_plan(law: Chinchilla, target_loss: float, inference_tokens: float, *,
                   max_params: float | None = None, max_tokens: float | None = None,
                   samples: Sequence[Chinchilla] | np.ndarray | None = None, level: float = 0.95) -> Plan:
    """Inference-aware plan (Sardana et al. 2024): the ``(N, D)`` reaching ``target_loss`` (nats/token) with the
    fewest total FLOPs ``6·N·D + 2·N·inference_tokens``, within optional caps.

    ``reference`` is the cheapest-training plan for the same loss and caps (the Chinchilla-optimal plan when
    uncapped), charged the same inference tokens; ``savings_flops`` = its total minus this plan's (≥ 0).
    ``efficiency`` compares with the unconstrained optimum at this plan's *training* compute. With ``samples``,
    ``ci`` has each sample law's own plan (``n_params``, ``n_tokens``, ``compute``, ``total_flops``) and this
    plan's loss under each sample law (``loss``).
    """
    L = _positive("target_loss", target_loss, "nats/token")
    t_inf = _inference_tokens(inference_tokens)
    if t_inf is None:
        raise ValueError("inference_tokens is required for an inference-aware plan")
    lim = _limits(max_params, max_tokens, None, RD_STAR, RN_STAR)
    _check_reachable(law, L, lim)
    arr, n_samples = _params(law, samples)
    if n_samples:
        level = _check_level(level)
    p = Chinchilla.stack(arr)
    with np.errstate(all="ignore"):
        n, d = _inference_solve(p, L, t_inf, lim)
        n_ref, d_ref = _inference_solve(Chinchilla.stack(arr[:1]), L, 0.0, lim)
        C = 6.0 * n * d
        total = C + 2.0 * n * t_inf
        n0, d0 = float(n[0, 0]), float(d[0, 0])
        c0 = 6.0 * n0 * d0
        under_samples = p.predict(n0, d0)
        best = float(p.loss_at_optimum(c0)[0, 0])
        nr, dr = float(n_ref[0, 0]), float(d_ref[0, 0])
    if not all(math.isfinite(v) and v > 0 for v in (n0, d0, nr, dr)):
        raise ValueError(f"no inference-aware plan found for target loss {L:.6g} nats/token ({lim.describe()})")
    l0, lr = float(law.predict(n0, d0)), float(law.predict(nr, dr))
    ref = Plan(compute=6.0 * nr * dr, n_params=nr, n_tokens=dr, loss=lr, constraint=lim.label(nr, dr),
               efficiency=_efficiency(float(law.loss_at_optimum(6.0 * nr * dr)), lr), kind="target_loss",
               target_loss=L, inference_tokens=t_inf)
    ci, used = (_intervals({"n_params": n[1:], "n_tokens": d[1:], "compute": C[1:], "total_flops": total[1:],
                            "loss": under_samples[1:]}, level) if n_samples else (None, None))
    return Plan(compute=c0, n_params=n0, n_tokens=d0, loss=l0, constraint=lim.label(n0, d0),
                efficiency=_efficiency(best, l0), kind="inference", target_loss=L, inference_tokens=t_inf,
                reference=ref, ci=ci, ci_level=level if n_samples else None, ci_samples=used)


def allocation_table(law: Chinchilla, budgets, *, samples: Sequence[Chinchilla] | np.ndarray | None = None,
                     level: float = 0.95, max_params: float | None = None, max_tokens: float | None = None,
                     unique_tokens: float | None = None, rd_star: float = RD_STAR,
                     rn_star: float = RN_STAR) -> pd.DataFrame:
    """One row per budget (FLOPs): N*, D*, tokens/param, predicted loss (nats/token), binding constraint and,
    given bootstrap ``samples`` of the law, percentile intervals ``*_lo``/``*_hi`` at ``level`` for N*, D* and
    the loss; then ``efficiency`` (and ``epochs`` with ``unique_tokens``)."""
    has_samples = samples is not None and len(samples) > 0
    rows = []
    for c in budgets:
        p = allocate(law, c, max_params=max_params, max_tokens=max_tokens, unique_tokens=unique_tokens,
                     rd_star=rd_star, rn_star=rn_star, samples=samples if has_samples else None, level=level)
        row: dict[str, Any] = dict(compute=p.compute, n_params=p.n_params, n_tokens=p.n_tokens,
                                   tokens_per_param=p.tokens_per_param, loss=p.loss, constraint=p.constraint)
        if has_samples and p.ci is not None:
            for name in ("n_params", "n_tokens", "loss"):
                row[f"{name}_lo"], row[f"{name}_hi"] = p.ci[name]
        row["efficiency"] = p.efficiency
        if unique_tokens is not None:
            row["epochs"] = p.epochs
        rows.append(row)
    return pd.DataFrame(rows)


def law_allocation_table(law: Chinchilla | DataConstrained, budgets, *,
                         samples: Sequence[Chinchilla] | np.ndarray | None = None, level: float = 0.95,
                         unique_tokens: float | None = None) -> pd.DataFrame:
    """:func:`allocation_table` for a law of any form with an allocation: a :class:`Chinchilla` law as it is
    (``samples``: its bootstrap laws); a :class:`DataConstrained` law through its Chinchilla part with its own
    ``R*_D``, ``R*_N`` and ``unique_tokens`` (tokens) of unique data available (no intervals: no bootstrap)."""
    if isinstance(law, DataConstrained):
        return allocation_table(law.chinchilla, budgets, unique_tokens=unique_tokens, rd_star=law.rd_star,
                                rn_star=law.rn_star)
    if isinstance(law, Chinchilla):
        return allocation_table(law, budgets, samples=samples, level=level)
    raise ValueError(f"form {getattr(law, 'name', type(law).__name__)!r} has no allocation")


# --------------------------------------------------------------------------------------------
# Fit JSON -> plans (the CLI contract)


def law_from_fit(fit: Mapping[str, Any]) -> Chinchilla:
    """The :class:`Chinchilla` law of a ``scaling-pipeline fit --json`` dict (form must be ``chinchilla``)."""
    if not isinstance(fit, Mapping):
        raise ValueError("fit must be the JSON object printed by 'scaling-pipeline fit --json', "
                         f"got {type(fit).__name__}")
    form = fit.get("form")
    if form != "chinchilla":
        raise ValueError(f"allocation needs a 'chinchilla' fit (L = E + A/N^alpha + B/D^beta), got form {form!r}; "
                         "refit with --form chinchilla (for repeated data, plan with unique_tokens instead)")
    params = fit.get("params")
    if not isinstance(params, Mapping):
        raise ValueError("fit JSON has no 'params' object")
    missing = [k for k in Chinchilla.params if k not in params]
    if missing:
        raise ValueError(f"fit JSON params lack {missing} (has {sorted(params)})")
    vals = {}
    for k in Chinchilla.params:
        v = params[k]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (k == "E" and v < 0) or (k != "E" and v <= 0):
            raise ValueError(f"fit parameter {k} = {v!r} is not usable for planning "
                             f"({'finite and >= 0' if k == 'E' else 'finite and > 0'} required)")
        vals[k] = float(v)
    return Chinchilla(**vals)


def plans_from_fit(fit: Mapping[str, Any], compute: Sequence[float] | None, *, max_params: float | None = None,
                   max_tokens: float | None = None, unique_tokens: float | None = None,
                   inference_tokens: float | None = None, target_loss: float | None = None,
                   samples: Sequence[Chinchilla] | np.ndarray | None = None, level: float = 0.95,
                   rd_star: float | None = None, rn_star: float | None = None) -> dict[str, Any]:
    """Plans for a ``scaling-pipeline fit --json`` dict (what ``scaling-pipeline allocate --json`` prints).

    One ``'budget'`` plan per ``compute`` budget (FLOPs), then, with ``target_loss`` (nats/token), the cheapest
    plan reaching it (``'inference'``-aware when ``inference_tokens`` is given). Returns
    ``{"plans": [Plan.to_dict(), ...], "law": {...}, "notes": [...]}`` (JSON-ready: non-finite -> None).
    ``rd_star``/``rn_star`` default to the fit's own (``params``) when present, else Muennighoff et al.'s.
    Raises ``ValueError`` for a non-chinchilla fit and impossible requests.
    """
    law = law_from_fit(fit)
    budgets = [] if compute is None else [compute] if isinstance(compute, (int, float)) else list(compute)
    if not budgets and target_loss is None:
        raise ValueError("nothing to plan: give at least one compute budget (FLOPs) or a target loss (nats/token)")
    if target_loss is not None and inference_tokens is not None and unique_tokens is not None:
        raise ValueError("inference-aware plans with limited unique data are not supported: drop unique_tokens or "
                         "inference_tokens")
    params = fit.get("params") or {}
    notes: list[str] = []
    rd_src = rn_src = "Muennighoff et al. 2023"
    if rd_star is None:
        rd_star, rd_src = (params["rd_star"], "fit") if params.get("rd_star") is not None else (RD_STAR, rd_src)
    if rn_star is None:
        rn_star, rn_src = (params["rn_star"], "fit") if params.get("rn_star") is not None else (RN_STAR, rn_src)
    n_samples = 0 if samples is None else len(samples)
    plans: list[Plan] = []
    for c in budgets:
        plans.append(allocate(law, c, max_params=max_params, max_tokens=max_tokens, unique_tokens=unique_tokens,
                              inference_tokens=inference_tokens, rd_star=rd_star, rn_star=rn_star,
                              samples=samples if n_samples else None, level=level))
    if target_loss is not None:
        if inference_tokens is not None:
            plans.append(inference_plan(law, target_loss, inference_tokens, max_params=max_params,
                                        max_tokens=max_tokens, samples=samples if n_samples else None, level=level))
        else:
            plans.append(plan_for_loss(law, target_loss, max_params=max_params, max_tokens=max_tokens,
                                       unique_tokens=unique_tokens, rd_star=rd_star, rn_star=rn_star,
                                       samples=samples if n_samples else None, level=level))
    law_dict: dict[str, Any] = {"form": "chinchilla", "E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha,
                                "beta": law.beta, "a": law.a, "b": law.b, "G": law.G}
    if unique_tokens is not None:
        law_dict.update(rd_star=float(rd_star), rn_star=float(rn_star))
        notes.append(f"unique-data plans use the data-constrained law (Muennighoff et al. 2023, Eq. 5) with this "
                     f"fit's E, A, B, alpha, beta and R*_D = {float(rd_star):g} ({rd_src}), "
                     f"R*_N = {float(rn_star):g} ({rn_src}); epochs = n_tokens/unique_tokens")
    if inference_tokens is not None and budgets:
        notes.append("budget plans only add 2·N·inference_tokens inference FLOPs (a fixed training budget's "
                     "loss-optimal split does not depend on inference); the inference-aware optimisation needs "
                     "target_loss")
    if any(p.kind == "inference" for p in plans):
        notes.append("inference-aware plan (Sardana et al. 2024): minimises 6·N·D + 2·N·inference_tokens at the "
                     "target loss; 'chinchilla_optimal' is the cheapest-training plan for the same loss and caps")
    notes.append("efficiency = loss of the unconstrained optimum at the same training compute / plan loss (<= 1)")
    if n_samples:
        notes.append(f"ci: {level:.0%} percentile intervals over {n_samples} bootstrap laws, degenerate ones "
                     "ignored (ci_samples = usable); budget plans: each law's own optimum; target-loss plans: each "
                     "law's own cheapest plan, and 'loss' = the recommended (N, D) evaluated under each law")
        for p in plans:
            if p.ci_samples is not None and p.ci_samples < n_samples:
                notes.append(f"{p.kind} plan at {p.compute:.4g} FLOPs: {n_samples - p.ci_samples} of {n_samples} "
                             "bootstrap laws gave no usable plan (ignored)")
    elif fit.get("ci"):
        notes.append("the fit JSON has marginal parameter intervals ('ci') but no bootstrap samples were given: "
                     "plan intervals need the joint samples (marginal intervals cannot be combined), so none are "
                     "reported")
    for w in (fit.get("diagnostics") or {}).get("warnings") or []:
        notes.append(f"fit warning: {w}")
    return jsonable({"plans": [p.to_dict() for p in plans], "law": law_dict, "notes": notes})


# --------------------------------------------------------------------------------------------
# Reference table


def chinchilla_reference(budgets: Sequence[float] = (1e19, 1e20, 1e21, 1e22, 5.76e23),
                         caps: Sequence[float] = (1e9, 1e10, 1e11, 1e12), *, law: Chinchilla = HOFFMANN,
                         tolerance: float = 0.10) -> pd.DataFrame:
    """Reference allocations with Hoffmann et al.'s published law (E=1.69, A=406.4, B=410.7, α=0.34, β=0.28).

    Per budget (FLOPs): the closed-form ``n_params`` (N*), ``n_tokens`` (D*), ``loss`` (nats/token); for each
    parameter cap ``cap_<cap>_{n_params,n_tokens,loss,efficiency}``; the naive formula
    ``naive_n_params = (C/(6B))^(β/(α+β))`` (drops G and puts B inside the power) with
    ``naive_rel_diff = naive/N* - 1``; ``note`` says where they disagree by more than ``tolerance`` and which
    caps bind.
    """
    rows = []
    for c in budgets:
        p = allocate(law, c)
        naive = (c / (6.0 * law.B)) ** law.a
        rel = naive / p.n_params - 1.0
        row: dict[str, Any] = dict(compute=p.compute, n_params=p.n_params, n_tokens=p.n_tokens,
                                   tokens_per_param=p.tokens_per_param, loss=p.loss, naive_n_params=naive,
                                   naive_rel_diff=rel)
        binding = []
        for cap in caps:
            q = allocate(law, c, max_params=cap)
            tag = f"cap_{cap:.0e}"
            row.update({f"{tag}_n_params": q.n_params, f"{tag}_n_tokens": q.n_tokens, f"{tag}_loss": q.loss,
                        f"{tag}_efficiency": q.efficiency})
            if q.constraint != "none":
                binding.append(f"{cap:.0e}")
        if abs(rel) > tolerance:
            note = (f"naive (C/(6B))^(β/(α+β)) = {naive:.3g} disagrees with N* = {p.n_params:.3g} by {rel:+.1%} "
                    "(drops G, misuses B)")
        else:
            note = f"naive formula agrees with N* within {tolerance:.0%}"
        note += f"; parameter caps binding: {', '.join(binding)}" if binding else "; no parameter cap binds"
        row["note"] = note
        rows.append(row)
    return pd.DataFrame(rows)
