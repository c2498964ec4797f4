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
    import pandas as pd

    from scaling_pipeline.lib.fitting.common import FitResult

    from .selection import Sample

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

    @classmethod
    def samples(cls, points: pd.DataFrame) -> list[Sample]:
        """Not compared on its own: of a loss in N it is the curve of ``kaplan_n`` (``f = xc^alpha``)."""
        from .selection import NotApplicable

        raise NotApplicable("the same curve as kaplan_n (f = xc^alpha), which the comparison fits")


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

    @classmethod
    def samples(cls, points: pd.DataFrame) -> list[Sample]:
        """L(N) per token budget shared by at least 3 model sizes (or per tokens-per-parameter ratio, for a
        ladder whose budgets are set per size): one sample each."""
        from .selection import NotApplicable, budget_groups, sample_of

        groups = budget_groups(points, min_sizes=len(cls.params))
        if not groups:
            raise NotApplicable(f"no token budget (or tokens-per-parameter ratio) shared by {len(cls.params)} or more "
                                "model sizes")
        return [sample_of(rows, {"x": "n_params"}, subset) for subset, rows in groups]
