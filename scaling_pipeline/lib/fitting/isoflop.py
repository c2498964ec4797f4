"""Hoffmann et al. "Approach 2" on IsoFLOP sweeps (:func:`isoflop_approach2`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from scaling_pipeline.lib.fitting.common import FitError, _positive, _same_length

__all__ = ["IsoFlopFit", "isoflop_approach2", "parabola_vertex"]


@dataclass(frozen=True)
class IsoFlopFit:
    """IsoFLOP "Approach 2" result: ``N* = coef·C^a`` (params, C in FLOPs) fitted on
    per-budget parabola vertices ``n_opt`` (params) with losses ``loss_opt`` (nats/token)."""

    a: float
    coef: float
    budgets: np.ndarray
    n_opt: np.ndarray
    loss_opt: np.ndarray
    skipped: list[float]


def parabola_vertex(N: ArrayLike, L: ArrayLike, *, window: int = 2) -> tuple[float, float] | None:
    """Approach 2 at one compute budget: the vertex ``(N*, L*)`` (params, nats/token) of a parabola of loss vs
    ``log N`` through the runs within ``window`` positions of the lowest loss; ``None`` when that minimum is at
    the edge of the sweep (not bracketed) or the parabola is not convex."""
    N, L = np.asarray(N, dtype=float), np.asarray(L, dtype=float)
    order = np.argsort(N, kind="stable")
    N, L = N[order], L[order]
    k = int(np.argmin(L))
    if not 0 < k < N.size - 1:
        return None
    near = slice(max(k - window, 0), k + window + 1)
    coef = np.polyfit(np.log(N[near]), L[near], 2)
    if coef[0] <= 0:
        return None
    v = -coef[1] / (2 * coef[0])
    return math.exp(v), float(np.polyval(coef, v))


def isoflop_approach2(C: ArrayLike, N: ArrayLike, L: ArrayLike, *, window: int = 2) -> IsoFlopFit:
    """Hoffmann et al. "Approach 2" on IsoFLOP sweeps.

    Per compute budget ``C`` (FLOPs; runs grouped by exact value): :func:`parabola_vertex`, a parabola
    of loss (nats/token) vs ``log N`` through the runs within ``window`` positions of the empirical
    minimum (≤ ``2·window + 1`` runs), its vertex taken as ``N*``. Budgets whose minimum is at the edge
    of the sweep (not bracketed) or whose parabola is not convex are skipped (listed in
    ``skipped``). Then ordinary least squares of ``log N*`` on ``log C``.
    """
    C, N, L = _positive("C", C), _positive("N", N), _positive("L", L)
    _same_length(C=C, N=N, L=L)
    budgets, n_opt, loss_opt, skipped = [], [], [], []
    for c in np.unique(C):
        sel = C == c
        vertex = parabola_vertex(N[sel], L[sel], window=window)
        if vertex is None:
            skipped.append(float(c))
            continue
        budgets.append(float(c))
        n_opt.append(vertex[0])
        loss_opt.append(vertex[1])
    if len(budgets) < 2:
        raise FitError(
            f"need at least 2 compute budgets with a usable parabola, got {len(budgets)} "
            f"(skipped {len(skipped)})"
        )
    a, log_coef = np.polyfit(np.log(budgets), np.log(n_opt), 1)
    return IsoFlopFit(
        a=float(a),
        coef=math.exp(log_coef),
        budgets=np.array(budgets),
        n_opt=np.array(n_opt),
        loss_opt=np.array(loss_opt),
        skipped=skipped,
    )
