"""Kaplan et al. (2020) single-variable laws ``L(x) = (xc/x)^alpha`` in N, D or C (:class:`Kaplan`)."""

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

__all__ = ["Kaplan", "KaplanN", "KaplanD", "KaplanC"]


@dataclass(frozen=True)
class Kaplan(Law):
    """Kaplan et al. (2020) single-variable laws ``L(x) = (xc/x)^alpha`` (nats/token).

    ``variable`` is ``"N"`` (:class:`KaplanN`: ``L(N) = (Nc/N)^alpha_N``, parameters), ``"D"``
    (:class:`KaplanD`: ``L(D) = (Dc/D)^alpha_D``, tokens) or ``"C"`` (:class:`KaplanC`:
    ``L(C) = (C/C0)^(-alpha_C)``, FLOPs; ``xc`` is ``C0``). Fitted on the log-log line.
    """

    variable: ClassVar[str]
    params: ClassVar[tuple[str, ...]] = ("xc", "alpha")
    _INPUT: ClassVar[Mapping[str, tuple[str, str]]] = {  # variable -> (unit, runs-CSV column)
        "N": ("parameters", "n_params"), "D": ("tokens", "n_tokens"), "C": ("FLOPs", "flops")}

    def __init_subclass__(cls, **kwargs: object) -> None:
        """A subclass names its ``variable``; its formula, units and default input column follow."""
        super().__init_subclass__(**kwargs)
        unit, column = cls._INPUT[cls.variable]
        cls.formula = f"L = (xc/{cls.variable})^alpha"
        cls.units = {"xc": unit, "alpha": "1"}
        cls.variables = {"x": column}

    xc: float
    alpha: float

    def predict(self, x: ArrayLike) -> float | np.ndarray:
        """``(xc/x)^alpha`` for ``x`` in the unit of ``variable``."""
        return out((self.xc / arr(x)) ** self.alpha)

    @classmethod
    def fit(cls, inputs: Mapping[str, ArrayLike], y: ArrayLike, *, loss: str = "mse",
            delta: float = 1e-3) -> FitResult:
        """:func:`~scaling_pipeline.lib.fitting.one_variable.fit_kaplan` in ``variable``."""
        from scaling_pipeline.lib.fitting.one_variable import fit_kaplan

        return fit_kaplan(inputs["x"], y, cls.variable)

    @classmethod
    def samples(cls, points: pd.DataFrame) -> list[Sample]:
        """L(N) on each size's largest token budget (Kaplan's converged models); L(D) and L(C) on the
        compute frontier (the runs with a lower loss than every run of less compute)."""
        from .selection import compute_frontier, largest_budget_per_size, sample_of

        if cls.variable == "N":
            return [sample_of(largest_budget_per_size(points), cls.variables, "largest D per N")]
        return [sample_of(compute_frontier(points), cls.variables, "compute frontier")]


@register
@dataclass(frozen=True)
class KaplanN(Kaplan):
    """``L(N) = (Nc/N)^alpha_N``, ``N`` in parameters."""

    name: ClassVar[str] = "kaplan_n"
    variable: ClassVar[str] = "N"


@register
@dataclass(frozen=True)
class KaplanD(Kaplan):
    """``L(D) = (Dc/D)^alpha_D``, ``D`` in tokens."""

    name: ClassVar[str] = "kaplan_d"
    variable: ClassVar[str] = "D"


@register
@dataclass(frozen=True)
class KaplanC(Kaplan):
    """``L(C) = (C/C0)^(-alpha_C)`` (``xc`` = ``C0``), ``C`` in FLOPs."""

    name: ClassVar[str] = "kaplan_c"
    variable: ClassVar[str] = "C"
