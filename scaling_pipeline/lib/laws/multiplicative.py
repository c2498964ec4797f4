"""Multiplicative power law in inputs the user names, e.g. ``P = k·Capacity^α·Data^β·Compute^γ``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from .base import Law, arr, out
from .registry import register

if TYPE_CHECKING:
    import pandas as pd

    from scaling_pipeline.lib.fitting.common import FitResult

    from .selection import Sample

__all__ = ["Multiplicative"]

_PREFIX = "exp_"
COMPARED_VARS = ("n_params", "n_tokens", "flops")  # Capacity^α·Data^β·Compute^γ in the pipeline's comparison


@register
@dataclass(frozen=True)
class Multiplicative(Law):
    """``P = k·Π_c x_c^(exp_c)`` over input columns ``c`` named by the user (default ``n_params``,
    ``n_tokens``), e.g. Capacity^α·Data^β·Compute^γ with ``n_params, n_tokens, flops``.

    Parameters: ``k`` (units of ``P`` per ``Π x_c^(exp_c)``) and one dimensionless exponent ``exp_<c>`` per
    input. Fitted by least squares on ``log P``. The exponents are only identifiable when no input is a
    power-law function of the others: with ``flops = 6·n_params·n_tokens`` exactly the fit refuses.
    """

    name: ClassVar[str] = "multiplicative"
    formula: ClassVar[str] = "P = k·x1^exp_x1·x2^exp_x2·… over the input columns you name (log-linear least squares)"
    params: ClassVar[tuple[str, ...]] = ("k",)  # and exp_<column> per input column
    units: ClassVar[Mapping[str, str]] = {"k": "units of P / Π x^exp", f"{_PREFIX}<column>": "1"}
    variables: ClassVar[Mapping[str, str]] = {"n_params": "n_params", "n_tokens": "n_tokens"}

    k: float
    exponents: Mapping[str, Any]  # input column -> exponent

    def predict(self, **inputs: ArrayLike) -> float | np.ndarray:
        """``k·Π x_c^(exp_c)`` with one keyword per input column."""
        missing = [c for c in self.exponents if c not in inputs]
        if missing:
            raise ValueError(f"multiplicative law needs inputs {list(self.exponents)}; missing {missing}")
        value = self.k
        for column, exponent in self.exponents.items():
            value = value * arr(inputs[column]) ** exponent
        return out(value)

    @classmethod
    def columns(cls, x: str | None = None, vars: Sequence[str] | None = None) -> dict[str, str]:
        """Every input is its own column: ``vars`` (default ``n_params``, ``n_tokens``)."""
        from scaling_pipeline.lib.fitting.common import FitError

        if x is not None:
            raise FitError("form 'multiplicative' names its input columns with vars, not x")
        names = list(cls.variables if vars is None else vars)
        if not names or len(set(names)) != len(names):
            raise FitError(f"form 'multiplicative' needs distinct input columns, got {names}")
        return {c: c for c in names}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Multiplicative:
        """From ``{"k": ..., "exp_<column>": ...}`` (what ``fit --json`` prints)."""
        exponents = {key[len(_PREFIX):]: out(v) for key, v in params.items() if key.startswith(_PREFIX)}
        extra = set(params) - {"k"} - {_PREFIX + c for c in exponents}
        if "k" not in params or not exponents or extra:
            raise ValueError(f"multiplicative law needs params 'k' and {_PREFIX}<column> for each input; got "
                             f"{sorted(params)}")
        return cls(k=out(params["k"]), exponents=exponents)

    def to_params(self) -> dict[str, Any]:
        return {"k": self.k, **{_PREFIX + c: e for c, e in self.exponents.items()}}

    @classmethod
    def fit(cls, inputs: Mapping[str, ArrayLike], y: ArrayLike, *, loss: str = "mse",
            delta: float = 1e-3) -> FitResult:
        """:func:`~scaling_pipeline.lib.fitting.log_linear.fit_log_linear` of ``log y`` on the log inputs."""
        from scaling_pipeline.lib.fitting.log_linear import fit_log_linear

        return fit_log_linear(inputs, y, form=cls.name, params=lambda log_k, slopes: {
            "k": math.exp(log_k), **{_PREFIX + c: b for c, b in slopes.items()}})

    @classmethod
    def samples(cls, points: pd.DataFrame) -> list[Sample]:
        """Every run, in ``n_params``, ``n_tokens`` and ``flops`` (:data:`COMPARED_VARS`); not applicable when
        the exponents are not identifiable (e.g. ``flops = 6·n_params·n_tokens`` exactly), with the relation."""
        from scaling_pipeline.lib.fitting.common import FitError
        from scaling_pipeline.lib.fitting.log_linear import _check_identifiable

        from .selection import NotApplicable, sample_of

        sample = sample_of(points, {c: c for c in COMPARED_VARS})
        try:
            _check_identifiable(list(sample.inputs), np.log(np.column_stack(list(sample.inputs.values()))))
        except FitError as exc:
            raise NotApplicable(f"not identifiable: {exc}") from None
        return [sample]
