"""Hoffmann et al. "Approach 2" on IsoFLOP sweeps (:func:`isoflop_approach2`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from scaling_pipeline.lib.fitting.common import FitError, _positive, _same_length

__all__ = ["IsoFlopFit", "isoflop_approach2"]


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


def isoflop_approach2(C: ArrayLike, N: ArrayLike, L: ArrayLike, *, window: int = 2) -> IsoFlopFit:
    """Hoffmann et al. "Approach 2" on IsoFLOP sweeps.

    Per compute budget ``C`` (FLOPs; runs grouped by exact value): fit a parabola of loss
    (nats/token) vs ``log N`` to the runs within ``window`` positions of the empirical minimum
    (≤ ``2·window + 1`` runs), take its vertex as ``N*``. Budgets whose minimum is at the edge
    of the sweep (not bracketed) or whose parabola is not convex are skipped (listed in
    ``skipped``). Then ordinary least squares of ``log N*`` on ``log C``.
    """
    C, N, L = _positive("C", C), _positive("N", N), _positive("L", L)
    _same_length(C=C, N=N, L=L)
    budgets, n_opt, loss_opt, skipped = [], [], [], []
    for c in np.unique(C):
        sel = np.flatnonzero(C == c)
        sel = sel[np.argsort(N[sel])]
        k = int(np.argmin(L[sel]))
        near = sel[max(k - window, 0) : k + window + 1]
        bracketed = 0 < k < sel.size - 1
        coef = np.polyfit(np.log(N[near]), L[near], 2) if bracketed else None
        if coef is None or coef[0] <= 0:
            skipped.append(float(c))
            continue
        v = -coef[1] / (2 * coef[0])
        budgets.append(float(c))
        n_opt.append(math.exp(v))
        loss_opt.append(float(np.polyval(coef, v)))
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
