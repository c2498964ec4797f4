"""Muennighoff et al. (2023) law for repeated data (:class:`DataConstrained`) and their published constants."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from .base import Law, arr, out
from .chinchilla import Chinchilla
from .registry import register

if TYPE_CHECKING:
    from scaling_pipeline.lib.fitting.common import FitResult

    from .selection import Sample

__all__ = ["DataConstrained", "MUENNIGHOFF", "RD_STAR", "RN_STAR"]


@register
@dataclass(frozen=True)
class DataConstrained(Law):
    """Muennighoff et al. (2023, Eq. 5) law for repeated data.

    With ``U`` unique tokens out of ``D`` total tokens and ``N`` parameters::

        R_D = max(D/U - 1, 0)                       repeated epochs
        U_N = min(N, N_opt(U)),  N_opt(U) = G·(G·U)^(beta/alpha)
        R_N = max(N/U_N - 1, 0)                     excess parameters
        D'  = U   + U   · R*_D · (1 - exp(-R_D / R*_D))
        N'  = U_N + U_N · R*_N · (1 - exp(-R_N / R*_N))
        L   = E + A/N'^alpha + B/D'^beta            nats/token

    ``G`` and ``N_opt(U)`` are those of the :class:`Chinchilla` law with the same ``E, A, B, alpha, beta``
    (``N_opt(U)`` is the compute-optimal size at the budget for which ``U`` tokens is the optimal data).
    ``rd_star`` (``R*_D``) and ``rn_star`` (``R*_N``) are dimensionless decay constants.
    """

    name: ClassVar[str] = "data_constrained"
    formula: ClassVar[str] = ("L = E + A/N'^alpha + B/D'^beta with effective parameters N' and data D' for "
                              "repeated data (Muennighoff et al. 2023; rd_star, rn_star fitted, their published "
                              "values for the rest unless free_all)")
    params: ClassVar[tuple[str, ...]] = ("E", "A", "B", "alpha", "beta", "rd_star", "rn_star")
    units: ClassVar[Mapping[str, str]] = {**Chinchilla.units, "rd_star": "1", "rn_star": "1"}
    variables: ClassVar[Mapping[str, str]] = {"N": "n_params", "D": "n_tokens", "U": "unique_tokens"}

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    rd_star: float
    rn_star: float

    @classmethod
    def of(cls, law: Chinchilla, rd_star: float, rn_star: float) -> DataConstrained:
        """The data-constrained law with ``law``'s ``E, A, B, alpha, beta`` (also for a stacked law)."""
        return cls(law.E, law.A, law.B, law.alpha, law.beta, rd_star, rn_star)

    @property
    def chinchilla(self) -> Chinchilla:
        """The law without repetition (same ``E, A, B, alpha, beta``)."""
        return Chinchilla(self.E, self.A, self.B, self.alpha, self.beta)

    def effective(self, N: ArrayLike, D: ArrayLike, U: ArrayLike, *,
                  cap_unique: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Effective parameters ``N'`` and effective data ``D'`` (tokens).

        ``U`` is used as given (the unique tokens of the run, as recorded) unless ``cap_unique``, which uses
        ``U_D = min(U, D)``, the unique tokens a run of ``D`` tokens can actually see (the paper's definition;
        what plans use, where ``U`` is the unique data available)."""
        N, D, U = np.broadcast_arrays(arr(N), arr(D), arr(U))
        if cap_unique:
            U = np.minimum(U, D)
        u_n = np.minimum(N, self.chinchilla.n_opt_for_data(U))
        r_d = np.maximum(D / U - 1.0, 0.0)
        r_n = np.maximum(N / u_n - 1.0, 0.0)
        d_eff = U + U * self.rd_star * -np.expm1(-r_d / self.rd_star)
        n_eff = u_n + u_n * self.rn_star * -np.expm1(-r_n / self.rn_star)
        return n_eff, d_eff

    def optimal_allocation(self, C: ArrayLike, U: float) -> tuple[float | np.ndarray, float | np.ndarray]:
        """Loss-minimising ``(N*, D*)`` for ``C`` FLOPs along ``C = 6·N·D`` with ``U`` unique tokens available
        (``U_D = min(U, D)`` seen), found numerically by :func:`scaling_pipeline.lib.allocate.allocate`."""
        from scaling_pipeline.lib.allocate import allocate

        plans = [allocate(self.chinchilla, c, unique_tokens=U, rd_star=self.rd_star, rn_star=self.rn_star)
                 for c in np.atleast_1d(arr(C))]
        n, d = np.array([p.n_params for p in plans]), np.array([p.n_tokens for p in plans])
        return (out(n[0]), out(d[0])) if np.ndim(C) == 0 else (n, d)

    def predict(self, N: ArrayLike, D: ArrayLike, U: ArrayLike, *, cap_unique: bool = False) -> float | np.ndarray:
        """Loss (nats/token) for ``N`` parameters, ``D`` total and ``U`` unique tokens (``cap_unique``: see
        :meth:`effective`)."""
        n_eff, d_eff = self.effective(N, D, U, cap_unique=cap_unique)
        return out(self.E + self.A * n_eff**-self.alpha + self.B * d_eff**-self.beta)

    @classmethod
    def fit(cls, inputs: Mapping[str, ArrayLike], y: ArrayLike, *, loss: str = "huber", delta: float = 1e-3,
            free_all: bool = False, fixed: Mapping[str, float] | None = None, two_stage: bool = False) -> FitResult:
        """:func:`~scaling_pipeline.lib.fitting.data_constrained.fit_data_constrained` of ``y`` = ``L``
        (nats/token) on ``inputs["N"]``, ``["D"]``, ``["U"]`` (objective: Huber on log residuals only).

        ``two_stage``: the paper's protocol on these runs: ``E, A, B, alpha, beta`` from a Chinchilla fit of the
        single-epoch runs (``D <= U``), then ``rd_star``, ``rn_star`` with those held; all seven count as fitted
        (``diagnostics["fixed"]`` is empty, ``diagnostics["two_stage"]`` has the first stage)."""
        from scaling_pipeline.lib.fitting.chinchilla import fit_chinchilla
        from scaling_pipeline.lib.fitting.common import FitError
        from scaling_pipeline.lib.fitting.data_constrained import fit_data_constrained

        if not two_stage:
            return fit_data_constrained(inputs["N"], inputs["D"], inputs["U"], y, fixed=fixed, free_all=free_all,
                                        delta=delta)
        if free_all or fixed is not None:
            raise FitError("two_stage fits every parameter: give no fixed parameters or free_all")
        N, D, U, L = (arr(v) for v in (inputs["N"], inputs["D"], inputs["U"], y))
        single = D <= U
        first = fit_chinchilla(N[single], D[single], L[single], delta=delta)
        fit = fit_data_constrained(N, D, U, L, fixed=first.params, delta=delta)
        stage = {"single_epoch_runs": int(single.sum()), "objective": first.objective,
                 "warnings": first.diagnostics.get("warnings", [])}
        return replace(fit, fit_seconds=fit.fit_seconds + first.fit_seconds,
                       diagnostics={**fit.diagnostics, "fixed": [], "two_stage": stage})

    @classmethod
    def samples(cls, points: pd.DataFrame) -> list[Sample]:
        """The runs whose unique tokens are known, fitted ``two_stage`` (the published ``E, A, B, alpha, beta``
        belong to another corpus, and fitting all seven at once costs ~20x more); not applicable without such runs or when none of
        them repeats its data (``D <= U``: the law is then Chinchilla's)."""
        from .selection import NotApplicable, sample_of

        u = (pd.to_numeric(points["unique_tokens"], errors="coerce").to_numpy(float) if "unique_tokens" in points
             else np.full(len(points), np.nan))
        known = points[np.isfinite(u) & (u > 0)]
        if not len(known):
            raise NotApplicable("unique_tokens unknown for every run")
        if not (known.n_tokens.to_numpy(float) > known.unique_tokens.to_numpy(float)).any():
            raise NotApplicable("no run repeats its data (D <= U in every run): the law reduces to chinchilla")
        subset = "" if len(known) == len(points) else "runs with unique_tokens"
        return [sample_of(known, cls.variables, subset, {"two_stage": True})]


# Muennighoff et al. (2023) published law (datablations README, "Parametric Fit": e, a, b in log
# space). E, A, B, alpha = beta come from their Chinchilla fit to C4 runs; R*_D and R*_N were fitted
# on the repeated-data runs with those five held fixed.
MUENNIGHOFF = DataConstrained(
    E=math.exp(0.6254804),
    A=math.exp(6.255414),
    B=math.exp(7.3049974),
    alpha=0.3526596,
    beta=0.3526596,
    rd_star=15.387756,
    rn_star=5.309743,
)
RD_STAR = MUENNIGHOFF.rd_star  # decay constant of repeated data (dimensionless)
RN_STAR = MUENNIGHOFF.rn_star  # decay constant of excess parameters (dimensionless)
