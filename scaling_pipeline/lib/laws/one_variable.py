"""One-variable laws of a quantity ``y`` in one input ``x``: :class:`PowerLaw` and :class:`Saturating`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from .base import Law, arr, out
from .registry import register

if TYPE_CHECKING:
    from scaling_pipeline.lib.fitting.common import FitResult

__all__ = ["PowerLaw", "Saturating"]


@register
@dataclass(frozen=True)
class PowerLaw(Law):
    """Pure power law ``P(x) = f·x^(-alpha)`` (units of ``P`` and ``x`` are the caller's), fitted on the
    log-log line."""

    name: ClassVar[str] = "power_law"
    formula: ClassVar[str] = "P = f·x^(-alpha), fitted on the log-log line"
    params: ClassVar[tuple[str, ...]] = ("f", "alpha")
    units: ClassVar[Mapping[str, str]] = {"f": "units of P·x^alpha", "alpha": "1"}
    variables: ClassVar[Mapping[str, str]] = {"x": "n_params"}

    f: float
    alpha: float

    def predict(self, x: ArrayLike) -> float | np.ndarray:
        """``f·x^(-alpha)``."""
        return out(self.f * arr(x) ** -self.alpha)

    @classmethod
    def fit(cls, inputs: Mapping[str, ArrayLike], y: ArrayLike, *, loss: str = "mse",
            delta: float = 1e-3) -> FitResult:
        """:func:`~scaling_pipeline.lib.fitting.one_variable.fit_power_law` (least squares in log space)."""
        from scaling_pipeline.lib.fitting.one_variable import fit_power_law

        return fit_power_law(inputs["x"], y)


@register
@dataclass(frozen=True)
class Saturating(Law):
    """Power law with a floor, ``L(x) = L0 + k·x^(-alpha)`` (``L0`` in the units of ``L``)."""

    name: ClassVar[str] = "saturating"
    formula: ClassVar[str] = "L = L0 + k·x^(-alpha)"
    params: ClassVar[tuple[str, ...]] = ("L0", "k", "alpha")
    units: ClassVar[Mapping[str, str]] = {"L0": "units of L", "k": "units of L·x^alpha", "alpha": "1"}
    variables: ClassVar[Mapping[str, str]] = {"x": "n_params"}

    L0: float
    k: float
    alpha: float

    def predict(self, x: ArrayLike) -> float | np.ndarray:
        """``L0 + k·x^(-alpha)``."""
        return out(self.L0 + self.k * arr(x) ** -self.alpha)

    @classmethod
    def fit(cls, inputs: Mapping[str, ArrayLike], y: ArrayLike, *, loss: str = "mse",
            delta: float = 1e-3) -> FitResult:
        """:func:`~scaling_pipeline.lib.fitting.one_variable.fit_saturating` (least squares in log space)."""
        from scaling_pipeline.lib.fitting.one_variable import fit_saturating

        return fit_saturating(inputs["x"], y)
