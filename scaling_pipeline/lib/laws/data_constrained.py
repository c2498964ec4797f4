"""Muennighoff et al. (2023) law for repeated data (:class:`DataConstrained`) and their published constants."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from .base import Law, arr, out
from .chinchilla import Chinchilla
from .registry import register

if TYPE_CHECKING:
    from scaling_pipeline.lib.fitting.common import FitResult

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

    def predict(self, N: ArrayLike, D: ArrayLike, U: ArrayLike, *, cap_unique: bool = False) -> float | np.ndarray:
        """Loss (nats/token) for ``N`` parameters, ``D`` total and ``U`` unique tokens (``cap_unique``: see
        :meth:`effective`)."""
        n_eff, d_eff = self.effective(N, D, U, cap_unique=cap_unique)
        return out(self.E + self.A * n_eff**-self.alpha + self.B * d_eff**-self.beta)

    @classmethod
    def fit(cls, inputs: Mapping[str, ArrayLike], y: ArrayLike, *, loss: str = "huber", delta: float = 1e-3,
            free_all: bool = False, fixed: Mapping[str, float] | None = None) -> FitResult:
        """:func:`~scaling_pipeline.lib.fitting.data_constrained.fit_data_constrained` of ``y`` = ``L``
        (nats/token) on ``inputs["N"]``, ``["D"]``, ``["U"]`` (objective: Huber on log residuals only)."""
        from scaling_pipeline.lib.fitting.data_constrained import fit_data_constrained

        return fit_data_constrained(inputs["N"], inputs["D"], inputs["U"], y, fixed=fixed, free_all=free_all,
                                    delta=delta)


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
