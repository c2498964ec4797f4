"""The Chinchilla objective in centred log coordinates: value, analytic gradient and Hessian.

Internal parameters are ``p = (a', b', e, alpha, beta)`` with ``log L̂ = logsumexp(a' - alpha·xc,
b' - beta·yc, e)``, where ``xc``, ``yc`` are the centred ``log N``, ``log D`` (the reparametrisation
is exact and removes the ``a``-``alpha`` correlation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Data:
    """Centred log design: ``xc = log N - xm``, ``yc = log D - ym``, ``l = log L``."""

    xc: np.ndarray
    yc: np.ndarray
    l: np.ndarray
    xm: float
    ym: float

    @classmethod
    def build(cls, N: np.ndarray, D: np.ndarray, L: np.ndarray) -> _Data:
        x, y = np.log(N), np.log(D)
        return cls(x - x.mean(), y - y.mean(), np.log(L), float(x.mean()), float(y.mean()))

    def to_params(self, p: np.ndarray) -> dict[str, float]:
        """Internal ``(a', b', e, alpha, beta)`` -> natural ``{E, A, B, alpha, beta}``."""
        a_c, b_c, e, al, be = (float(v) for v in p)
        return {
            "E": math.exp(e),
            "A": math.exp(a_c + al * self.xm),
            "B": math.exp(b_c + be * self.ym),
            "alpha": al,
            "beta": be,
        }

    def from_params(self, params: Mapping[str, float]) -> np.ndarray:
        al, be = params["alpha"], params["beta"]
        return np.array(
            [
                math.log(params["A"]) - al * self.xm,
                math.log(params["B"]) - be * self.ym,
                math.log(params["E"]),
                al,
                be,
            ]
        )


def _objective(data: _Data, w: np.ndarray, loss: str, delta: float):
    """Return ``f(p) -> (value, gradient)`` for internal params ``p = (a', b', e, alpha, beta)``.

    ``w`` are per-point weights (resampling counts; ones for a plain fit).
    """
    xc, yc, l = data.xc, data.yc, data.l
    L = np.exp(l)
    wsum = float(w.sum())

    def fg(p: np.ndarray) -> tuple[float, np.ndarray]:
        a_c, b_c, e, al, be = p
        t1 = a_c - al * xc
        t2 = b_c - be * yc
        m = np.maximum(np.maximum(t1, t2), e)
        e1 = np.exp(t1 - m)
        e2 = np.exp(t2 - m)
        e3 = np.exp(e - m)
        s = e1 + e2 + e3
        if loss == "mse":
            r = m + np.log(s) - l
            f = float(w @ (r * r)) / wsum
            q = (2.0 / wsum) * w * r / s
        else:
            if loss == "huber":
                r = m + np.log(s) - l
                scale = 1.0 / s
            else:  # huber_loss_space: r = L̂ - L, dr/dlog L̂ = L̂
                scale = np.exp(m)
                r = s * scale - L
            c = np.clip(r, -delta, delta)
            f = float(w @ (c * (r - 0.5 * c)))
            q = w * c * scale
        g1 = q * e1
        g2 = q * e2
        return f, np.array([g1.sum(), g2.sum(), q @ e3, -(g1 @ xc), -(g2 @ yc)])

    return fg


def _log_pred(data: _Data, p: np.ndarray) -> np.ndarray:
    a_c, b_c, e, al, be = p
    return np.logaddexp(np.logaddexp(a_c - al * data.xc, b_c - be * data.yc), e)


def _hessian(data: _Data, w: np.ndarray, loss: str, delta: float, p: np.ndarray) -> np.ndarray:
    """Analytic Hessian of the objective in internal coordinates ``(a', b', e, alpha, beta)``."""
    a_c, b_c, e, al, be = p
    lse = _log_pred(data, p)
    sig = np.exp(np.stack([a_c - al * data.xc, b_c - be * data.yc, np.full_like(lse, e)]) - lse)
    n = lse.size
    M = np.zeros((n, 3, 5))  # d t_j / d p for t = (a' - alpha·xc, b' - beta·yc, e)
    M[:, 0, 0] = 1.0
    M[:, 1, 1] = 1.0
    M[:, 2, 2] = 1.0
    M[:, 0, 3] = -data.xc
    M[:, 1, 4] = -data.yc
    S = sig.T
    grad_lse = np.einsum("nj,njk->nk", S, M)
    curv = np.einsum("nj,njk,njl->nkl", S, M, M) - np.einsum("nk,nl->nkl", grad_lse, grad_lse)
    if loss == "huber_loss_space":  # r = exp(lse) - L
        Lh = np.exp(lse)
        r = Lh - np.exp(data.l)
        grad_r = Lh[:, None] * grad_lse
        hess_r = Lh[:, None, None] * (curv + np.einsum("nk,nl->nkl", grad_lse, grad_lse))
    else:
        r = lse - data.l
        grad_r, hess_r = grad_lse, curv
    if loss == "mse":
        d1, d2 = 2.0 * r / w.sum(), np.full_like(r, 2.0) / w.sum()
    else:
        d1, d2 = np.clip(r, -delta, delta), (np.abs(r) <= delta).astype(float)
    return np.einsum("n,nk,nl->kl", w * d2, grad_r, grad_r) + np.einsum(
        "n,nkl->kl", w * d1, hess_r
    )
