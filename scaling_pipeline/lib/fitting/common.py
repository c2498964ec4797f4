"""What every fitter shares: :class:`FitResult`, :class:`FitError`, input checks, BLAS threads."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from threadpoolctl import ThreadpoolController

from scaling_pipeline.lib.jsonutil import jsonable
from scaling_pipeline.lib.laws import get

__all__ = ["FitError", "FitResult", "LOSSES"]

LOSSES: tuple[str, ...] = ("huber", "huber_loss_space", "mse")


class FitError(ValueError):
    """Input that cannot be fitted (too few points, bad values, unidentifiable design...)."""


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class FitResult:
    """Outcome of a fit.

    ``form`` names a form of :data:`scaling_pipeline.lib.laws.FORMS`; ``params`` are in natural
    units; ``objective`` is the value of the minimised objective at ``params`` (for the default
    Chinchilla fit: the sum over points of ``Huber_delta(log L̂ - log L)``); ``fit_seconds`` is wall
    time; ``ci`` maps a name to a ``(lo, hi)`` bootstrap interval when one was computed.
    """

    form: str
    params: dict[str, float]
    loss: str
    delta: float | None
    n_points: int
    objective: float
    fit_seconds: float
    diagnostics: dict[str, Any] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] | None = None

    @property
    def law(self) -> Any:
        """The fitted law (an instance of the form's class, e.g. :class:`~scaling_pipeline.lib.laws.Chinchilla`)."""
        return get(self.form).from_params(self.params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``ci`` only when present; non-finite floats become ``None``)."""
        out: dict[str, Any] = {
            "form": self.form,
            "loss": self.loss,
            "delta": self.delta,
            "n_points": self.n_points,
            "params": dict(self.params),
            "objective": self.objective,
            "fit_seconds": self.fit_seconds,
        }
        if self.ci is not None:
            out["ci"] = {k: [lo, hi] for k, (lo, hi) in self.ci.items()}
        out["diagnostics"] = self.diagnostics
        return jsonable(out)


# --------------------------------------------------------------------------------------------
# Helpers: validation, JSON, BLAS threads


_controller: ThreadpoolController | None = None


def blas_controller() -> ThreadpoolController:
    """The thread pools of every BLAS the fits use: numpy's and scipy's own OpenBLAS. scipy loads its library
    only with ``scipy.optimize`` / ``scipy.linalg`` (imported lazily, at the first fit), and a controller made
    before that would never limit it; so scipy.optimize is imported first."""
    global _controller
    if _controller is None:
        import scipy.optimize  # noqa: F401, PLC0415 - loads scipy's BLAS, so that the controller sees it

        _controller = ThreadpoolController()
    return _controller


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread: tiny fits are much slower with threaded BLAS."""
    with blas_controller().limit(limits=1, user_api="blas"):
        yield


def _positive(name: str, values: ArrayLike) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise FitError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 1:
        raise FitError(f"{name} must be a 1-D sequence, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        idx = np.flatnonzero(bad)
        shown = ", ".join(f"[{i}]={float(arr[i])!r}" for i in idx[:5])
        more = f" (and {idx.size - 5} more)" if idx.size > 5 else ""
        raise FitError(f"{name} must be finite and > 0; {idx.size} bad value(s): {shown}{more}")
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    sizes = {k: v.size for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise FitError(f"inputs must have the same length, got {sizes}")
    return next(iter(sizes.values()))


def _check_loss(loss: str, delta: float) -> None:
    if loss not in LOSSES:
        raise FitError(f"loss must be one of {LOSSES}, got {loss!r}")
    ok = isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0
    if loss != "mse" and not ok:
        raise FitError(f"delta must be finite and > 0, got {delta!r}")


def _residual_summary(log_pred: np.ndarray, log_obs: np.ndarray) -> dict[str, float]:
    r = log_pred - log_obs
    return {
        "rmse_log_residual": float(np.sqrt(np.mean(r**2))),
        "max_abs_rel_error": float(np.max(np.abs(np.expm1(r)))),
    }


def _quantiles(level: float) -> list[float]:
    if not 0 < level < 1:
        raise FitError(f"level must be in (0, 1), got {level!r}")
    return [(1 - level) / 2, (1 + level) / 2]
