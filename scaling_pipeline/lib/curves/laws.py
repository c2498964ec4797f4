"""Loss-curve laws: the loss at each step of one training run as a function of its LR schedule.

Units: steps are optimizer steps, LRs absolute (as logged), areas in LR·steps, losses in nats/token.
``predict(steps, lr)`` takes the logged steps and the per-step LR ``lr[0 … max(steps)]`` (see
``curves.schedule``) and returns the loss at those steps.

Both laws have the shape ``L = L0 + A·S1^(−α) − (a positive weight)·(a schedule term)``, which the fitter
(``curves.fit``) uses: for fixed nonlinear parameters the loss is linear in (``L0``, ``A``, weight). Fits
work in :class:`Units` of LR and of LR area chosen from the data (so that the parameters are of order one
and ``A`` is nearly uncorrelated with ``α``); each law converts to and from those internal coordinates
(``internal``/``from_internal``: log of the positive scale parameters, the exponents as they are) and
evaluates its own model and gradient (``model``), so a law is evaluated only by its class.
:data:`CURVE_LAWS` is the registry of forms.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from scaling_pipeline.lib.curves.areas import LossDrop, annealing_area, lr_area

__all__ = ["MultiPowerLaw", "LRAnnealing", "CURVE_LAWS", "Terms", "Units"]


@dataclass(frozen=True)
class Units:
    """Units of the internal coordinates: ``lr`` (absolute LR: the largest LR of the runs) and ``area``
    (absolute LR·steps: the geometric mean of the forward area S1 at the runs' points)."""

    lr: float
    area: float

    @classmethod
    def of(cls, lrs: list[np.ndarray], steps: list[np.ndarray]) -> Units:
        """Units for runs with per-step LRs ``lrs`` observed at ``steps``."""
        areas = np.concatenate([lr_area(lr)[s] for lr, s in zip(lrs, steps)])
        top = max((float(lr.max()) for lr in lrs if lr.size), default=0.0)
        positive = areas[areas > 0]
        return cls(top if top > 0 else 1.0, float(np.exp(np.log(positive).mean())) if positive.size else 1.0)


@dataclass(frozen=True)
class Terms:
    """What a law needs of one run at its logged steps, in :class:`Units`: the forward area ``s1``
    and the schedule term (MPL: a :class:`LossDrop`; LR annealing: the annealing area ``s2``)."""

    s1: np.ndarray
    schedule: Any


class _CurveLaw:
    """Shared machinery: parameter bookkeeping, the model ``L0 + Ã·s1^(−α) − W̃·drop(shape)`` and
    ``predict``. A law defines its schedule term (``terms``, ``drop``), which parameter weighs it
    (``weight``) and which shape it has (``shape``)."""

    form: ClassVar[str]
    params: ClassVar[tuple[str, ...]]  # fitted parameters, in order (also the order of internal z)
    param_units: ClassVar[dict[str, str]]  # unit of each parameter (absolute LR, steps, nats/token)
    weight: ClassVar[str]  # the positive parameter that weighs the schedule term
    shape: ClassVar[tuple[str, ...]]  # parameters of the schedule term (internal: ln C̃ for C)
    log_params: ClassVar[tuple[str, ...]]  # positive scale parameters: fitted on a log scale

    @classmethod
    def terms(cls, lr: np.ndarray, steps: np.ndarray, units: Units, **settings: Any) -> Terms:
        """The run's sums at ``steps`` in ``units``."""
        raise NotImplementedError

    @classmethod
    def drop(cls, terms: Terms, shape: np.ndarray, jac: bool = False):
        """The schedule term at the points for internal shape parameters ``shape``; with ``jac``, also
        its derivatives by them (n × len(shape))."""
        raise NotImplementedError

    @classmethod
    def drop_grid(cls, terms: Terms, grids: list[np.ndarray]) -> np.ndarray:
        """The schedule term for every combination of the shape parameters' ``grids`` (internal
        coordinates, in the order of ``shape``): array (*grid sizes, n)."""
        values = np.array([cls.drop(terms, np.array(shape)) for shape in itertools.product(*grids)])
        return values.reshape(*[len(g) for g in grids], -1)

    @staticmethod
    def unit_powers(exponents: Mapping[str, float]) -> dict[str, tuple[float, float]]:
        """``(p, q)`` per log parameter: its internal value is ``value·units.lr^p·units.area^q``."""
        raise NotImplementedError

    @classmethod
    def index(cls, name: str) -> int:
        return cls.params.index(name)

    @classmethod
    def model(cls, z: np.ndarray, terms: Terms, jac: bool = False):
        """Loss at the points for internal ``z``; with ``jac``, also ∂L/∂z (n × len(params))."""
        i = cls.index
        a_term = np.exp(z[i("A")]) * terms.s1 ** -z[i("alpha")]
        w = np.exp(z[i(cls.weight)])
        shape = np.array([z[i(name)] for name in cls.shape])
        if not jac:
            return z[i("L0")] + a_term - w * cls.drop(terms, shape)
        drop, d_drop = cls.drop(terms, shape, jac=True)
        d = np.empty((len(drop), len(cls.params)))
        d[:, i("L0")] = 1.0
        d[:, i("A")] = a_term
        d[:, i("alpha")] = -a_term * np.log(terms.s1)
        d[:, i(cls.weight)] = -w * drop
        for j, name in enumerate(cls.shape):
            d[:, i(name)] = -w * d_drop[:, j]
        return z[i("L0")] + a_term - w * drop, d

    @classmethod
    def settings_of(cls) -> dict[str, Any]:
        """Constructor arguments that are settings, not fitted parameters, with their defaults."""
        return {f.name: f.default for f in fields(cls) if f.name not in cls.params}

    @classmethod
    def _log_units(cls, exponents: Mapping[str, float], units: Units) -> dict[str, float]:
        powers = cls.unit_powers(exponents)
        return {name: p * np.log(units.lr) + q * np.log(units.area) for name, (p, q) in powers.items()}

    @classmethod
    def internal(cls, params: Mapping[str, float], units: Units) -> np.ndarray:
        """Internal coordinates of ``params`` (absolute units) in ``units``."""
        shift = cls._log_units(params, units)
        return np.array([np.log(params[name]) + shift[name] if name in cls.log_params else float(params[name])
                         for name in cls.params])

    @classmethod
    def from_internal(cls, z: np.ndarray, units: Units) -> dict[str, float]:
        """Parameters (absolute units) from internal coordinates ``z`` in ``units``."""
        raw = dict(zip(cls.params, map(float, z)))
        shift = cls._log_units(raw, units)
        return {name: float(np.exp(raw[name] - shift[name])) if name in cls.log_params else raw[name]
                for name in cls.params}

    def predict(self, steps: ArrayLike, lr: ArrayLike) -> np.ndarray:
        """Loss (nats/token) at ``steps`` of a run whose per-step LR is ``lr`` (steps 0 … max(steps))."""
        lr = np.asarray(lr, dtype=float)
        steps = np.asarray(steps, dtype=np.int64)
        if steps.size and (steps.min() < 0 or steps.max() >= len(lr)):
            raise ValueError(f"lr gives the LR of steps 0 … {len(lr) - 1}; steps run from {steps.min()} to "
                             f"{steps.max()}")
        units = Units.of([lr], [steps])
        values = {name: getattr(self, name) for name in self.params}
        settings = {name: getattr(self, name) for name in self.settings_of()}
        return self.model(self.internal(values, units), self.terms(lr, steps, units, **settings))


@dataclass(frozen=True)
class MultiPowerLaw(_CurveLaw):
    """Multi-Power Law (Luo et al. 2025, arXiv:2503.12811)::

        L(t)  = L0 + A·S1(t)^(−alpha) − B·LD(t)
        LD(t) = Σ_{k=1..t} (η_{k−1} − η_k)·(1 − (C·η_k^(−gamma)·S_k(t) + 1)^(−beta))

    ``S1(t) = Σ_{τ=0..t} η_τ`` (the warm-up area S_W included), ``S_k(t) = Σ_{τ=k..t} η_τ``; sums over all
    steps from 0, warm-up included (see ``curves.areas``).
    """

    L0: float
    A: float
    alpha: float
    B: float
    C: float
    beta: float
    gamma: float

    form: ClassVar[str] = "mpl"
    params: ClassVar[tuple[str, ...]] = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
    param_units: ClassVar[dict[str, str]] = {
        "L0": "nats/token", "A": "nats/token·(LR·steps)^alpha", "alpha": "1", "B": "nats/token per unit LR",
        "C": "(LR^(1−gamma)·steps)^−1", "beta": "1", "gamma": "1"}
    weight: ClassVar[str] = "B"
    shape: ClassVar[tuple[str, ...]] = ("C", "beta", "gamma")
    log_params: ClassVar[tuple[str, ...]] = ("A", "B", "C")

    def __post_init__(self) -> None:
        _require_positive(self)

    @staticmethod
    def unit_powers(exponents: Mapping[str, float]) -> dict[str, tuple[float, float]]:
        return {"A": (0.0, -exponents["alpha"]), "B": (1.0, 0.0), "C": (1.0 - exponents["gamma"], 0.0)}

    @classmethod
    def terms(cls, lr: np.ndarray, steps: np.ndarray, units: Units) -> Terms:
        return Terms(lr_area(lr)[steps] / units.area, LossDrop(lr, steps, units.lr))

    @classmethod
    def drop(cls, terms: Terms, shape: np.ndarray, jac: bool = False):
        lc, beta, gamma = shape
        return terms.schedule(np.exp(lc), beta, gamma, jac=jac)

    @classmethod
    def drop_grid(cls, terms: Terms, grids: list[np.ndarray]) -> np.ndarray:
        lc, betas, gammas = grids
        return np.stack([terms.schedule.grid(np.exp(lc), betas, gamma) for gamma in gammas], axis=2)


@dataclass(frozen=True)
class LRAnnealing(_CurveLaw):
    """Scaling law with LR annealing (Tissue et al. 2024, arXiv:2408.11029)::

        L(s) = L0 + A·S1(s)^(−alpha) − C·S2(s)
        S2(s) = Σ_{i=1..s} m_i,   m_i = decay·m_{i−1} + (η_{i−1} − η_i)

    ``S1`` the forward area (sum of LRs), ``S2`` the annealing area with momentum; ``decay`` (λ) is a
    setting, not fitted (0.999 as in the paper). Sums over all steps from 0, warm-up included.
    """

    L0: float
    A: float
    alpha: float
    C: float
    decay: float = 0.999

    form: ClassVar[str] = "lr_annealing"
    params: ClassVar[tuple[str, ...]] = ("L0", "A", "alpha", "C")
    param_units: ClassVar[dict[str, str]] = {
        "L0": "nats/token", "A": "nats/token·(LR·steps)^alpha", "alpha": "1", "C": "nats/token per LR·step"}
    weight: ClassVar[str] = "C"
    shape: ClassVar[tuple[str, ...]] = ()
    log_params: ClassVar[tuple[str, ...]] = ("A", "C")

    def __post_init__(self) -> None:
        _require_positive(self)
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {self.decay!r}")

    @staticmethod
    def unit_powers(exponents: Mapping[str, float]) -> dict[str, tuple[float, float]]:
        return {"A": (0.0, -exponents["alpha"]), "C": (1.0, 0.0)}

    @classmethod
    def terms(cls, lr: np.ndarray, steps: np.ndarray, units: Units, decay: float = 0.999) -> Terms:
        return Terms(lr_area(lr)[steps] / units.area, annealing_area(lr, decay)[steps] / units.lr)

    @classmethod
    def drop(cls, terms: Terms, shape: np.ndarray, jac: bool = False):
        return (terms.schedule, np.zeros((len(terms.schedule), 0))) if jac else terms.schedule


def _require_positive(law: _CurveLaw) -> None:
    for name in law.log_params:
        if not getattr(law, name) > 0:
            raise ValueError(f"{type(law).__name__}.{name} must be > 0, got {getattr(law, name)!r}")


CURVE_LAWS: dict[str, type[_CurveLaw]] = {law.form: law for law in (MultiPowerLaw, LRAnnealing)}
