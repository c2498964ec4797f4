"""Least squares in log space, ``log y = c + Σ b_i·log x_i`` (:func:`fit_log_linear`): the fit of every
multiplicative power law. An input that is (numerically) a power-law function of the others, e.g.
``flops = 6·n_params·n_tokens``, leaves the exponents unidentifiable: the fit refuses and names the relation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from scaling_pipeline.lib.fitting.common import FitError, FitResult, _positive, _residual_summary, _same_length

__all__ = ["fit_log_linear", "least_squares_result"]

_COLLINEAR = 1e-6  # smallest/largest singular value of the standardised log inputs below which we refuse
_WEAK = 1e-3  # ... below which we warn that the exponents are poorly determined
_EXACT = 1e-12  # largest log deviation of a relation that is reported as exact


def least_squares_result(form: str, params: dict[str, float], t0: float, log_pred: np.ndarray, log_y: np.ndarray,
                         warnings: list[str], objective: float | None = None, **diagnostics: Any) -> FitResult:
    """A least-squares fit in log space: ``objective`` defaults to the mean squared log residual;
    ``diagnostics`` has the residual summary, ``r2_log``, the given ``diagnostics`` and ``warnings``."""
    n = log_y.size
    ss_tot = float(np.sum((log_y - log_y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((log_pred - log_y) ** 2)) / ss_tot if ss_tot > 0 else math.nan
    return FitResult(
        form=form,
        params=params,
        loss="mse",
        delta=None,
        n_points=n,
        objective=float(np.mean((log_pred - log_y) ** 2)) if objective is None else objective,
        fit_seconds=time.perf_counter() - t0,
        diagnostics={**_residual_summary(log_pred, log_y), "r2_log": r2, **diagnostics, "warnings": warnings},
    )


def fit_log_linear(
    columns: Mapping[str, ArrayLike],
    y: ArrayLike,
    *,
    form: str,
    params: Callable[[float, dict[str, float]], dict[str, float]],
) -> FitResult:
    """Fit ``y = e^c·Π x_i^(b_i)`` by least squares on ``log y`` (every value finite and > 0).

    ``columns`` maps an input's name to its values; ``params(c, {name: b_i})`` names the fitted parameters
    of ``form``. ``objective`` is the mean squared log residual. Raises :class:`FitError` when an input
    is constant or a power-law function of the others (``log x_j = c + Σ w_i·log x_i`` up to rounding),
    naming the relation; ``diagnostics["condition"]`` is the condition number of the standardised log inputs.
    """
    t0 = time.perf_counter()
    if not columns:
        raise FitError("need at least one input column")
    X = {name: _positive(name, v) for name, v in columns.items()}
    y = _positive("y", y)
    n = _same_length(**X, **{"fitted column": y})
    names = list(X)
    if n < len(names) + 1:
        raise FitError(f"need at least {len(names) + 1} points to fit {len(names) + 1} parameters, got {n}")
    logs = np.column_stack([np.log(X[k]) for k in names])
    cond = _check_identifiable(names, logs)
    ly = np.log(y)
    design = np.column_stack([np.ones(n), logs])
    coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
    warnings = []
    if cond > 1 / _WEAK:
        warnings.append(f"the log inputs are nearly collinear (condition number {cond:.1e}): the exponents are "
                        "poorly determined")
    distinct = np.unique(logs, axis=0).shape[0]
    if distinct == len(names) + 1:
        warnings.append(f"{distinct} distinct input points for {distinct} parameters: the fit interpolates")
    return least_squares_result(form, params(float(coef[0]), dict(zip(names, map(float, coef[1:])))), t0,
                                design @ coef, ly, warnings, condition=cond)


def _check_identifiable(names: list[str], logs: np.ndarray) -> float:
    """Condition number of the centred, unit-scaled log inputs; raise naming the relation when it is too large."""
    centred = logs - logs.mean(axis=0)
    scale = np.linalg.norm(centred, axis=0)
    for j, name in enumerate(names):
        if scale[j] <= 1e-12 * max(1.0, float(np.linalg.norm(logs[:, j]))):
            raise FitError(f"{name} = {math.exp(logs[0, j]):.6g} in every run: its exponent is not identifiable "
                           f"(it merges into the constant); drop {name} or use runs where it varies")
    if len(names) == 1:
        return 1.0
    _, s, vt = np.linalg.svd(centred / scale, full_matrices=False)
    cond = float(s[0] / s[-1]) if s[-1] > 0 else math.inf
    if s[-1] > _COLLINEAR * s[0]:
        return cond
    involved = [j for j in range(len(names)) if abs(vt[-1, j]) > 1e-3]
    raise FitError(_relation(names, logs, involved))


def _relation(names: list[str], logs: np.ndarray, involved: list[int]) -> str:
    """``"flops = 6·n_params·n_tokens exactly: ..."``: the dependency written with the last input whose relation
    has only positive exponents (else the last one) on the left."""
    fits = {}
    for j in involved:
        others = [i for i in involved if i != j]
        design = np.column_stack([np.ones(logs.shape[0]), logs[:, others]])
        coef, *_ = np.linalg.lstsq(design, logs[:, j], rcond=None)
        fits[j] = (others, coef, float(np.max(np.abs(design @ coef - logs[:, j]))))
    subject = next((j for j in reversed(involved) if all(w > 0 for w in fits[j][1][1:])), involved[-1])
    others, coef, dev = fits[subject]
    factors = [f"{math.exp(coef[0]):.6g}"]
    factors = [] if factors == ["1"] else factors
    for i, w in zip(others, coef[1:]):
        w = round(w) if abs(w - round(w)) < 1e-6 else w
        factors.append(names[i] if w == 1 else f"{names[i]}^{w:.6g}")
    how = "exactly" if dev <= _EXACT else f"up to a relative deviation of {math.expm1(dev):.1e}"
    rest = [names[i] for i in others]
    return (f"{names[subject]} = {'·'.join(factors)} {how}: the exponents of {_and([names[subject], *rest])} are "
            f"not identifiable; drop one of them or use data where {names[subject]} varies independently of "
            f"{_and(rest)}")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"
