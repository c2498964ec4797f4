"""Sums over the per-step learning rate that the curve laws are made of, evaluated at logged steps.

Steps count from 0 (the first optimizer step); ``lr[t]`` is the LR of step ``t`` and ``Δ_k = η_{k−1} − η_k``
(``k ≥ 1``) its change into step ``k`` (negative during a warm-up). All sums run over every step from
step 0, warm-up included: the MPL authors' convention, which their published parameters assume.

* :func:`lr_area`: the forward area ``S1(t) = Σ_{τ=0..t} η_τ`` (LR·steps);
* :func:`annealing_area`: Tissue et al.'s annealing area with momentum ``S2(t) = Σ_{i=1..t} m_i``,
  ``m_i = λ·m_{i−1} + Δ_i``;
* :class:`LossDrop`: the Multi-Power Law's loss-drop sum
  ``LD(t) = Σ_{k=1..t} Δ_k·G(η_k^(−γ)·S_k(t))``, ``G(x) = 1 − (C·x + 1)^(−β)``,
  ``S_k(t) = Σ_{τ=k..t} η_τ``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.signal import lfilter

__all__ = ["lr_area", "annealing_area", "LossDrop", "RESOLUTION"]

RESOLUTION = 4  # LossDrop blocks: log of the step's argument x varies by about 1/RESOLUTION within a block
_LR_FLOOR = 1e-9  # LRs below this fraction of the scale count as this (η^(−γ) of a zero LR is infinite)


def lr_area(lr: np.ndarray) -> np.ndarray:
    """``S1(t) = Σ_{τ=0..t} η_τ`` for every step ``t`` (LR·steps)."""
    return np.cumsum(lr)


def lr_changes(lr: np.ndarray) -> np.ndarray:
    """``Δ_k = η_{k−1} − η_k`` for every step (``Δ_0 = 0``)."""
    delta = np.zeros_like(lr)
    delta[1:] = lr[:-1] - lr[1:]
    return delta


def annealing_area(lr: np.ndarray, decay: float) -> np.ndarray:
    """``S2(t) = Σ_{i=1..t} m_i`` with ``m_i = decay·m_{i−1} + (η_{i−1} − η_i)``, ``m_0 = 0``, for every
    step (LR·steps; O(T) by a first-order recursive filter)."""
    return np.cumsum(lfilter([1.0], [1.0, -decay], lr_changes(lr)))


class LossDrop:
    """MPL's ``LD(t)`` at logged steps ``steps`` for the per-step LR ``lr``, in units of ``scale``:
    the LR is used as ``lr/scale`` (so ``LD`` and ``C`` are in those units too).

    Exact evaluation costs O(points × steps). Here the steps ``k ≤ t`` of each point are grouped into
    blocks over which ``log x_k``, ``x_k = η_k^(−γ)·S_k(t)``, changes by about ``1/RESOLUTION``: block edges
    where the area back to ``t`` (``S_k(t)``) or the LR ``η_k`` crosses a geometric grid of ratio
    ``e^(1/RESOLUTION)``; rises and falls of the LR in separate blocks. A block contributes
    ``w·G(x̄)``, ``w = Σ Δ_k`` and ``x̄`` the Δ-weighted mean of ``x_k``, read from prefix sums in O(1):
    a midpoint rule with error of second order in the block width: B·LD within 2e-5 nats of the exact
    sum on the Multi-Power Law paper's curves at its parameters (4x less per doubling of the
    resolution). About ``2·RESOLUTION·ln(T)`` blocks per point instead of ``T``.
    """

    def __init__(self, lr: ArrayLike, steps: ArrayLike, scale: float, resolution: int = RESOLUTION):
        eta = np.asarray(lr, dtype=float) / scale
        steps = np.asarray(steps, dtype=np.int64)
        self.n = len(steps)
        area = lr_area(eta)
        delta = lr_changes(eta)
        moves = np.nonzero(delta)[0]  # the steps k >= 1 where the LR changes: the only terms of the sum
        floor = _LR_FLOOR * max(float(eta.max()), 1.0)
        area_t = area[steps]
        # block edges (first step of a block), per point: the area grid, the LR grid, 1 and t + 1
        positive = eta[eta > 0]
        q_min = max(float(positive.min()) if len(positive) else 1.0, floor)
        q = q_min * np.exp(np.arange(0.0, resolution * np.log(max(area[-1], q_min) / q_min) + 2) / resolution)
        by_area = np.searchsorted(area, area_t[:, None] - q[None, :], side="right") + 1
        level = np.floor(resolution * np.log(np.maximum(eta, floor)))
        by_lr = np.nonzero(np.diff(level))[0] + 1
        edges = np.concatenate([by_area, np.broadcast_to(by_lr, (self.n, len(by_lr))),
                                np.ones((self.n, 1), np.int64), steps[:, None] + 1], axis=1)
        edges = np.clip(edges, 1, steps[:, None] + 1)
        edges.sort(axis=1)
        point = np.broadcast_to(np.arange(self.n)[:, None], (self.n, edges.shape[1] - 1))
        log_lr = np.log(np.maximum(eta[moves], floor))
        area_before = area[moves - 1]  # S1(k−1)
        self._parts = []
        for sign in (1.0, -1.0):
            mine = np.nonzero(sign * delta[moves] > 0)[0]
            if not len(mine):
                continue
            pos = np.searchsorted(moves[mine], edges)  # block j of point i: these changes [pos[i, j], pos[i, j + 1])
            lo, hi = pos[:, :-1], pos[:, 1:]
            keep = hi > lo  # row-major: the blocks come grouped by point
            self._parts.append(_Part(delta[moves[mine]], log_lr[mine], area_before[mine], lo[keep], hi[keep],
                                     point[keep], area_t, self.n))

    @property
    def n_blocks(self) -> int:
        """Terms evaluated per call (blocks over all points)."""
        return sum(len(p.w) for p in self._parts)

    def __call__(self, C: float, beta: float, gamma: float, jac: bool = False):
        """``LD`` at the points (array of n); with ``jac``, also ``∂LD/∂(log C, β, γ)`` (n × 3)."""
        out = np.zeros((self.n, 4 if jac else 1))
        for p in self._parts:
            means = p.means(gamma, jac)  # block means of η_k^(−γ), η_k^(−γ)·S1(k−1) (and ∂/∂γ)
            x = np.maximum(means[0] * p.area_t - means[1], 0.0)
            one_cx = 1.0 + C * x
            log1p = np.log(one_cx)
            wq = p.w * np.exp(-beta * log1p)  # w·(1 + C·x)^(−β)
            terms = [p.w - wq]
            if jac:
                slope = beta * wq / one_cx  # w·dG/d(C·x)
                dx = means[2] * p.area_t - means[3]  # ∂x/∂γ
                terms += [slope * (C * x), wq * log1p, slope * C * dx]
            p.add_by_point(out, np.column_stack(terms))
        return (out[:, 0], out[:, 1:]) if jac else out[:, 0]

    def grid(self, Cs: np.ndarray, betas: np.ndarray, gamma: float) -> np.ndarray:
        """``LD`` for every (C, β) of the two grids at one γ: array (len(Cs), len(betas), n)."""
        out = np.zeros((len(Cs) * len(betas), self.n))
        for p in self._parts:
            means = p.means(gamma, False)
            x = np.maximum(means[0] * p.area_t - means[1], 0.0)
            log1p = np.log(1.0 + np.multiply.outer(Cs, x))  # (len(Cs), blocks)
            G = p.w * (1.0 - np.exp(-np.multiply.outer(betas, log1p).transpose(1, 0, 2)))  # (C, β, blocks)
            p.add_by_point(out.T, G.reshape(-1, len(x)).T)
        return out.reshape(len(Cs), len(betas), self.n)


class _Part:
    """The blocks over the LR changes of one sign: per change Δ_k, ln η_k and S1(k−1); per block its
    range of changes [lo, hi), weight w = Σ Δ_k and its point's S1(t). Blocks are grouped by point."""

    def __init__(self, delta, log_lr, area_before, lo, hi, point, area_t, n):
        self.delta, self.log_lr, self.area_before = delta, log_lr, area_before
        self.lo, self.hi, self.area_t = lo, hi, area_t[point]
        cum = np.concatenate([[0.0], np.cumsum(delta)])
        self.w = cum[hi] - cum[lo]
        self.points, self.starts = np.unique(point, return_index=True)  # each point's first block

    def means(self, gamma: float, jac: bool) -> list[np.ndarray]:
        """Δ-weighted means over each block of e = η_k^(−γ) and e·S1(k−1); with ``jac`` also of their
        γ-derivatives −ln η_k·e and −ln η_k·e·S1(k−1)."""
        we = self.delta * np.exp(-gamma * self.log_lr)
        rows = [we, we * self.area_before]
        if jac:
            rows += [-self.log_lr * rows[0], -self.log_lr * rows[1]]
        out = []
        for row in rows:
            cum = np.zeros(len(row) + 1)
            np.cumsum(row, out=cum[1:])
            out.append((np.take(cum, self.hi) - np.take(cum, self.lo)) / self.w)
        return out

    def add_by_point(self, out: np.ndarray, values: np.ndarray) -> None:
        """``out[i] += Σ values`` over point i's blocks (``values``: blocks × k)."""
        out[self.points] += np.add.reduceat(values, self.starts, axis=0)
