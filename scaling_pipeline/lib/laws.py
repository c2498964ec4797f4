"""Scaling-law forms as small frozen dataclasses.

Units everywhere: ``N`` = parameters, ``D`` = training tokens, ``U`` = unique tokens,
``C`` = training compute in FLOPs (``C = 6·N·D``), losses in nats/token. Every ``predict``
accepts scalars or array-likes (broadcast together) and returns a ``float`` for scalar inputs,
an ``np.ndarray`` otherwise.

:data:`FORMS` maps a form name to its :class:`FormSpec` (class + parameter names), which is how
fit results are turned back into law objects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Chinchilla",
    "DataConstrained",
    "MUENNIGHOFF",
    "RD_STAR",
    "RN_STAR",
    "PowerLaw",
    "Saturating",
    "Kaplan",
    "FormSpec",
    "FORMS",
]


def _out(value: np.ndarray) -> float | np.ndarray:
    value = np.asarray(value, dtype=float)
    return float(value) if value.ndim == 0 else value


def _arr(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=float)


@dataclass(frozen=True)
class Chinchilla:
    """Hoffmann et al. (2022) law ``L(N, D) = E + A/N^alpha + B/D^beta``.

    ``E`` is the irreducible loss (nats/token); ``A`` and ``B`` are in nats/token times
    parameters^alpha and tokens^beta respectively.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def predict(self, N: ArrayLike, D: ArrayLike) -> float | np.ndarray:
        """Loss (nats/token) of a model with ``N`` parameters trained on ``D`` tokens."""
        return _out(self.E + self.A * _arr(N) ** -self.alpha + self.B * _arr(D) ** -self.beta)

    @property
    def a(self) -> float:
        """Exponent of the compute-optimal size, ``N* ∝ C^a`` with ``a = beta/(alpha+beta)``."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of the compute-optimal data, ``D* ∝ C^b`` with ``b = alpha/(alpha+beta)``."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """``G = (alpha·A / (beta·B))^(1/(alpha+beta))``, so that ``N* = G·(C/6)^a``."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def optimal_allocation(self, C: ArrayLike) -> tuple[float | np.ndarray, float | np.ndarray]:
        """Compute-optimal ``(N*, D*)`` for a budget of ``C`` FLOPs along ``C = 6·N·D``.

        ``N* = G·(C/6)^a`` parameters and ``D* = (C/6)/N*`` tokens (closed form, exact for
        this law).
        """
        c6 = _arr(C) / 6.0
        n_opt = self.G * c6**self.a
        return _out(n_opt), _out(c6 / n_opt)

    def loss_at_optimum(self, C: ArrayLike) -> float | np.ndarray:
        """Loss (nats/token) at the compute-optimal allocation for ``C`` FLOPs."""
        n_opt, d_opt = self.optimal_allocation(C)
        return self.predict(n_opt, d_opt)


@dataclass(frozen=True)
class DataConstrained:
    """Muennighoff et al. (2023, Eq. 5) law for repeated data.

    With ``U`` unique tokens out of ``D`` total tokens and ``N`` parameters::

        R_D = max(D/U - 1, 0)                       repeated epochs
        U_N = min(N, N_opt(U)),  N_opt(U) = G·(G·U)^(beta/alpha)
        R_N = max(N/U_N - 1, 0)                     excess parameters
        D'  = U   + U   · R*_D · (1 - exp(-R_D / R*_D))
        N'  = U_N + U_N · R*_N · (1 - exp(-R_N / R*_N))
        L   = E + A/N'^alpha + B/D'^beta            nats/token

    ``G = (alpha·A/(beta·B))^(1/(alpha+beta))`` as in :class:`Chinchilla`; ``N_opt(U)`` is the
    compute-optimal size at the budget for which ``U`` tokens is the optimal data.
    ``rd_star`` (``R*_D``) and ``rn_star`` (``R*_N``) are dimensionless decay constants.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    rd_star: float
    rn_star: float

    def effective(self, N: ArrayLike, D: ArrayLike, U: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Effective parameters ``N'`` and effective data ``D'`` (tokens)."""
        N, D, U = np.broadcast_arrays(_arr(N), _arr(D), _arr(U))
        G = Chinchilla(self.E, self.A, self.B, self.alpha, self.beta).G
        u_n = np.minimum(N, G * (G * U) ** (self.beta / self.alpha))
        r_d = np.maximum(D / U - 1.0, 0.0)
        r_n = np.maximum(N / u_n - 1.0, 0.0)
        d_eff = U + U * self.rd_star * -np.expm1(-r_d / self.rd_star)
        n_eff = u_n + u_n * self.rn_star * -np.expm1(-r_n / self.rn_star)
        return n_eff, d_eff

    def predict(self, N: ArrayLike, D: ArrayLike, U: ArrayLike) -> float | np.ndarray:
        """Loss (nats/token) for ``N`` parameters, ``D`` total and ``U`` unique tokens."""
        n_eff, d_eff = self.effective(N, D, U)
        return _out(self.E + self.A * n_eff**-self.alpha + self.B * d_eff**-self.beta)


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


@dataclass(frozen=True)
class PowerLaw:
    """Pure power law ``P(x) = f·x^(-alpha)`` (units of ``P`` and ``x`` are the caller's)."""

    f: float
    alpha: float

    def predict(self, x: ArrayLike) -> float | np.ndarray:
        """``f·x^(-alpha)``."""
        return _out(self.f * _arr(x) ** -self.alpha)


@dataclass(frozen=True)
class Saturating:
    """Power law with a floor, ``L(x) = L0 + k·x^(-alpha)`` (``L0`` in the units of ``L``)."""

    L0: float
    k: float
    alpha: float

    def predict(self, x: ArrayLike) -> float | np.ndarray:
        """``L0 + k·x^(-alpha)``."""
        return _out(self.L0 + self.k * _arr(x) ** -self.alpha)


@dataclass(frozen=True)
class Kaplan:
    """Kaplan et al. (2020) single-variable laws ``L(x) = (xc/x)^alpha`` (nats/token).

    ``variable`` is ``"N"`` (``L(N) = (Nc/N)^alpha_N``, parameters), ``"D"``
    (``L(D) = (Dc/D)^alpha_D``, tokens) or ``"C"`` (``L(C) = (C/C0)^(-alpha_C)``, FLOPs;
    ``xc`` is ``C0``).
    """

    xc: float
    alpha: float
    variable: str = "N"

    def __post_init__(self) -> None:
        if self.variable not in ("N", "D", "C"):
            raise ValueError(f"Kaplan variable must be 'N', 'D' or 'C', got {self.variable!r}")

    def predict(self, x: ArrayLike) -> float | np.ndarray:
        """``(xc/x)^alpha`` for ``x`` in the unit of ``variable``."""
        return _out((self.xc / _arr(x)) ** self.alpha)


@dataclass(frozen=True)
class FormSpec:
    """A registered law form: its class, fitted parameter names and fixed constructor args."""

    cls: type
    params: tuple[str, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def build(self, params: Mapping[str, float]) -> Any:
        """Instantiate the law from a ``{name: value}`` mapping (extra keys are an error)."""
        missing = set(self.params) - set(params)
        extra = set(params) - set(self.params)
        if missing or extra:
            raise ValueError(
                f"{self.cls.__name__} needs params {list(self.params)}; "
                f"missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        return self.cls(**{k: float(params[k]) for k in self.params}, **self.fixed)


FORMS: dict[str, FormSpec] = {
    "chinchilla": FormSpec(Chinchilla, ("E", "A", "B", "alpha", "beta")),
    "data_constrained": FormSpec(
        DataConstrained, ("E", "A", "B", "alpha", "beta", "rd_star", "rn_star")
    ),
    "power_law": FormSpec(PowerLaw, ("f", "alpha")),
    "saturating": FormSpec(Saturating, ("L0", "k", "alpha")),
    "kaplan_n": FormSpec(Kaplan, ("xc", "alpha"), {"variable": "N"}),
    "kaplan_d": FormSpec(Kaplan, ("xc", "alpha"), {"variable": "D"}),
    "kaplan_c": FormSpec(Kaplan, ("xc", "alpha"), {"variable": "C"}),
}
