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
    from scaling_pipeline.lib.fitting.common import FitResult

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


@register
@dataclass(frozen=True)
class KaplanN(Kaplan):
    """``L(N) = (Nc/N)^alpha_N``, ``N`` in parameters."""

    name: ClassVar[str] = "kaplan_n"
    formula: ClassVar[str] = "L = (xc/N)^alpha"
    variable: ClassVar[str] = "N"
    units: ClassVar[Mapping[str, str]] = {"xc": "parameters", "alpha": "1"}
    variables: ClassVar[Mapping[str, str]] = {"x": "n_params"}


@register
@dataclass(frozen=True)
class KaplanD(Kaplan):
    """``L(D) = (Dc/D)^alpha_D``, ``D`` in tokens."""

    name: ClassVar[str] = "kaplan_d"
    formula: ClassVar[str] = "L = (xc/D)^alpha"
    variable: ClassVar[str] = "D"
    units: ClassVar[Mapping[str, str]] = {"xc": "tokens", "alpha": "1"}
    variables: ClassVar[Mapping[str, str]] = {"x": "n_tokens"}


@register
@dataclass(frozen=True)
class KaplanC(Kaplan):
    """``L(C) = (C/C0)^(-alpha_C)`` (``xc`` = ``C0``), ``C`` in FLOPs."""

    name: ClassVar[str] = "kaplan_c"
    formula: ClassVar[str] = "L = (xc/C)^alpha"
    variable: ClassVar[str] = "C"
    units: ClassVar[Mapping[str, str]] = {"xc": "FLOPs", "alpha": "1"}
    variables: ClassVar[Mapping[str, str]] = {"x": "flops"}
