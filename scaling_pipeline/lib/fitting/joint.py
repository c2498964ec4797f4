"""Chinchilla fit of several families at once with shared exponents (:func:`fit_chinchilla_joint`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from scaling_pipeline.lib.fitting.chinchilla import _check_design
from scaling_pipeline.lib.fitting.common import FitError, _check_loss, _one_blas_thread, _positive, _same_length
from scaling_pipeline.lib.fitting.objective import _Data, _objective
from scaling_pipeline.lib.fitting.search import (
    _GRID,
    _POLISH_OPTIONS,
    _grid,
    _internal_bounds,
    _local_minima,
    _polish,
    _profile,
)
from scaling_pipeline.lib.jsonutil import jsonable
from scaling_pipeline.lib.laws import Chinchilla

__all__ = ["JointFit", "fit_chinchilla_joint"]


@dataclass(frozen=True)
class JointFit:
    """Chinchilla law fitted to several families at once with shared exponents ``alpha``, ``beta`` and
    per-family ``E`` (nats/token), ``A``, ``B``. ``objective`` is the sum of the families' objectives."""

    alpha: float
    beta: float
    families: dict[str, dict[str, float]]  # family -> {"E", "A", "B", "n_points", "objective"}
    loss: str
    delta: float | None
    n_points: int
    objective: float
    fit_seconds: float

    def law(self, family: str) -> Chinchilla:
        """The :class:`~scaling_pipeline.lib.laws.Chinchilla` law of one family."""
        f = self.families[family]
        return Chinchilla(E=f["E"], A=f["A"], B=f["B"], alpha=self.alpha, beta=self.beta)

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"form": "chinchilla_joint", "loss": self.loss, "delta": self.delta, "n_points": self.n_points,
                         "params": {"alpha": self.alpha, "beta": self.beta}, "families": self.families,
                         "objective": self.objective, "fit_seconds": self.fit_seconds})


def fit_chinchilla_joint(
    N: ArrayLike,
    D: ArrayLike,
    L: ArrayLike,
    family: ArrayLike,
    *,
    loss: str = "huber",
    delta: float = 1e-3,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> JointFit:
    """Fit ``L = E_f + A_f/N^alpha + B_f/D^beta`` to every family ``f`` at once, exponents shared.

    Same global strategy as :func:`fit_chinchilla`: for each (alpha, beta) on the grid the families'
    ``(E, A, B)`` are profiled out independently and the profile objectives summed; every profile
    minimum is polished jointly (all 3·k + 2 parameters) with L-BFGS-B and analytic gradients.
    ``loss`` as in :func:`fit_chinchilla` (with ``mse`` each family's mean is summed). Each family needs
    at least 3 distinct sizes and 3 distinct budgets."""
    t0 = time.perf_counter()
    N, D, L = _positive("N", N), _positive("D", D), _positive("L", L)
    fam = np.asarray(family).astype(str)
    _same_length(N=N, D=D, L=L, family=fam)
    _check_loss(loss, delta)
    names = sorted(set(fam.tolist()))
    if len(names) < 2:
        raise FitError(f"a joint fit needs at least 2 families, got {names}")
    datas = []
    for name in names:
        m = fam == name
        try:
            _check_design(N[m], D[m], 3)
        except FitError as exc:
            raise FitError(f"family {name!r}: {exc}") from None
        datas.append(_Data.build(N[m], D[m], L[m]))
    ib = _internal_bounds(bounds)[1]
    ws = [np.ones(d.l.size) for d in datas]
    fgs = [_objective(d, w, loss, delta) for d, w in zip(datas, ws)]
    k = len(datas)

    def fg(z: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros_like(z)
        for j, f in enumerate(fgs):
            v, g = f(np.concatenate([z[3 * j : 3 * j + 3], z[-2:]]))
            total += v
            grad[3 * j : 3 * j + 3] = g[:3]
            grad[-2:] += g[3:]
        return total, grad

    with _one_blas_thread():
        alphas, betas = _grid(*ib[3], _GRID), _grid(*ib[4], _GRID)
        profiles = [_profile(d, w, loss, delta, alphas, betas, ib[2], irls=1) for d, w in zip(datas, ws)]
        F = sum(Fp for Fp, _ in profiles)
        zb = ib[:3] * k + ib[3:]
        best = None
        for ij in _local_minima(F):
            z0 = np.concatenate([P[ij][:3] for _, P in profiles] + [profiles[0][1][ij][3:]])
            res = _polish(fg, z0, zb, _POLISH_OPTIONS)
            if best is None or res.fun < best[0]:
                best = (float(res.fun), res.x)
    if best is None:
        raise FitError("no admissible starting point found on the exponent grid")
    f, z = best
    families = {}
    for j, (name, d) in enumerate(zip(names, datas)):
        p = np.concatenate([z[3 * j : 3 * j + 3], z[-2:]])
        families[name] = {**{key: v for key, v in d.to_params(p).items() if key in ("E", "A", "B")},
                          "n_points": int(d.l.size), "objective": float(fgs[j](p)[0])}
    return JointFit(alpha=float(z[-2]), beta=float(z[-1]), families=families, loss=loss,
                    delta=None if loss == "mse" else float(delta), n_points=int(N.size), objective=f,
                    fit_seconds=time.perf_counter() - t0)
