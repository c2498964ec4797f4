"""Hoffmann et al. (2022) law ``L(N, D) = E + A/N^alpha + B/D^beta`` and its compute-optimal allocation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from .base import Law, arr, out
from .registry import register

if TYPE_CHECKING:
    from scaling_pipeline.lib.fitting.common import FitResult

__all__ = ["Chinchilla"]


@register
@dataclass(frozen=True)
class Chinchilla(Law):
    """Hoffmann et al. (2022) law ``L(N, D) = E + A/N^alpha + B/D^beta``.

    ``E`` is the irreducible loss (nats/token); ``A`` and ``B`` are in nats/token times
    parameters^alpha and tokens^beta respectively. Along ``C = 6·N·D`` the optimum is closed form:
    ``N* = G·(C/6)^a``, ``D* = (C/6)/N*``, and the loss there is ``E + K·(C/6)^(-gamma)``.
    """

    name: ClassVar[str] = "chinchilla"
    formula: ClassVar[str] = "L = E + A/N^alpha + B/D^beta"
    params: ClassVar[tuple[str, ...]] = ("E", "A", "B", "alpha", "beta")
    units: ClassVar[Mapping[str, str]] = {"E": "nats/token", "A": "nats/token·parameters^alpha",
                                          "B": "nats/token·tokens^beta", "alpha": "1", "beta": "1"}
    variables: ClassVar[Mapping[str, str]] = {"N": "n_params", "D": "n_tokens"}

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def predict(self, N: ArrayLike, D: ArrayLike) -> float | np.ndarray:
        """Loss (nats/token) of a model with ``N`` parameters trained on ``D`` tokens."""
        return out(self.E + self.A * arr(N) ** -self.alpha + self.B * arr(D) ** -self.beta)

    @classmethod
    def sql_expression(cls, inputs: Mapping[str, str], params: Mapping[str, str] | None = None) -> str:
        """``E + A·N^-alpha + B·D^-beta`` in SQL (see :meth:`Law.sql_expression`); the terms appear in the order
        E, A, N, alpha, B, D, beta (the order of their ``?`` placeholders)."""
        p = {k: f"({v})" for k, v in {**{k: k for k in cls.params}, **(params or {})}.items()}
        n, d = (f"({inputs[k]})" for k in ("N", "D"))
        return f"({p['E']} + {p['A']} * pow({n}, -{p['alpha']}) + {p['B']} * pow({d}, -{p['beta']}))"

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

    @property
    def gamma(self) -> float:
        """Exponent of the loss at the optimum, ``L* - E = K·(C/6)^(-gamma)``, ``gamma = alpha·beta/(alpha+beta)``."""
        return self.alpha * self.beta / (self.alpha + self.beta)

    @property
    def K(self) -> float:
        """``K = A·G^(-alpha) + B·G^beta`` (nats/token), so that ``L* = E + K·(C/6)^(-gamma)``."""
        return self.A * self.G ** -self.alpha + self.B * self.G ** self.beta

    def optimal_allocation(self, C: ArrayLike) -> tuple[float | np.ndarray, float | np.ndarray]:
        """Compute-optimal ``(N*, D*)`` for a budget of ``C`` FLOPs along ``C = 6·N·D``.

        ``N* = G·(C/6)^a`` parameters and ``D* = (C/6)/N*`` tokens (closed form, exact for
        this law).
        """
        c6 = arr(C) / 6.0
        n_opt = self.G * c6**self.a
        return out(n_opt), out(c6 / n_opt)

    def loss_at_optimum(self, C: ArrayLike) -> float | np.ndarray:
        """Loss (nats/token) at the compute-optimal allocation for ``C`` FLOPs."""
        n_opt, d_opt = self.optimal_allocation(C)
        return self.predict(n_opt, d_opt)

    def compute_for_loss(self, L: ArrayLike) -> float | np.ndarray:
        """FLOPs at which the optimum reaches loss ``L`` (nats/token):
        ``C = 6·((L - E)/K)^(-(alpha+beta)/(alpha·beta))``."""
        return out(6.0 * ((arr(L) - self.E) / self.K) ** (-(self.alpha + self.beta) / (self.alpha * self.beta)))

    def n_opt_for_data(self, U: ArrayLike) -> float | np.ndarray:
        """``N_opt(U) = G·(G·U)^(beta/alpha)``: the compute-optimal parameters at the budget for which ``U``
        tokens is the optimal data."""
        return out(self.G * (self.G * arr(U)) ** (self.beta / self.alpha))

    def log_n_term(self, N: ArrayLike) -> float | np.ndarray:
        """``log(A/N^alpha)``, the log of the parameter term (log nats/token)."""
        return out(np.log(self.A) - self.alpha * np.log(N))

    def log_d_term(self, D: ArrayLike) -> float | np.ndarray:
        """``log(B/D^beta)``, the log of the data term (log nats/token)."""
        return out(np.log(self.B) - self.beta * np.log(D))

    def log_inputs_for(self, L: ArrayLike, t: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """``(log N, log D)`` at which the law predicts ``L`` (nats/token) with the share ``phi = 1/(1 + e^-t)``
        of ``L - E`` in the parameter term: ``A/N^alpha = phi·(L - E)``, ``B/D^beta = (1 - phi)·(L - E)``."""
        ln_le = np.log(arr(L) - self.E)
        return ((np.log(self.A) + np.logaddexp(0.0, -t) - ln_le) / self.alpha,
                (np.log(self.B) + np.logaddexp(0.0, t) - ln_le) / self.beta)

    @classmethod
    def fit(cls, inputs: Mapping[str, ArrayLike], y: ArrayLike, *, loss: str = "huber", delta: float = 1e-3,
            bounds: Mapping[str, tuple[float, float]] | None = None, bootstrap: int = 0,
            seed: int = 0) -> FitResult:
        """:func:`~scaling_pipeline.lib.fitting.chinchilla.fit_chinchilla` of ``y`` = ``L`` (nats/token) on
        ``inputs["N"]``, ``inputs["D"]``; with ``bootstrap`` resamples (``seed``), the fit of
        :func:`~scaling_pipeline.lib.fitting.resample.bootstrap_chinchilla` with its intervals in ``ci`` and the
        resampling settings in ``diagnostics["bootstrap"]``."""
        from scaling_pipeline.lib.fitting.chinchilla import fit_chinchilla
        from scaling_pipeline.lib.fitting.resample import bootstrap_chinchilla

        if not bootstrap:
            return fit_chinchilla(inputs["N"], inputs["D"], y, loss=loss, delta=delta, bounds=bounds)
        boot = bootstrap_chinchilla(inputs["N"], inputs["D"], y, n_boot=bootstrap, seed=seed, loss=loss,
                                    delta=delta, bounds=bounds)
        info: dict[str, Any] = {"n_boot": bootstrap, "seed": seed, "level": boot.level, "seconds": boot.seconds,
                                "n_jobs": boot.n_jobs}
        return replace(boot.fit, diagnostics={**boot.fit.diagnostics, "bootstrap": info})
