"""Compute-optimal allocation of a FLOP budget between parameters and tokens.

With C ≈ 6·N·D (FLOPs) and L(N, D) = E + A/N^α + B/D^β the unconstrained optimum is
N* = G·(C/6)^a, D* = (C/6)/N*, with a = β/(α+β) and G = (αA/(βB))^(1/(α+β)).
Along C = 6·N·D the loss is unimodal in log N, so a cap on parameters or tokens moves the optimum
to the cap; the budget is still spent exactly (C = 6·N·D).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling_pipeline.lib.laws import Chinchilla

DEFAULT_BUDGETS = tuple(10.0 ** k for k in range(18, 27))  # 1e18 … 1e26 FLOPs


@dataclass(frozen=True)
class Plan:
    """One allocation: ``compute`` FLOPs split into ``n_params`` parameters × ``n_tokens`` tokens."""

    compute: float
    n_params: float
    n_tokens: float
    loss: float  # predicted loss, nats/token
    constraint: str  # 'none', 'max_params' or 'max_tokens': which cap is binding

    @property
    def tokens_per_param(self) -> float:
        return self.n_tokens / self.n_params


def allocate(law: Chinchilla, compute: float, *, max_params: float | None = None,
             max_tokens: float | None = None) -> Plan:
    """Loss-minimising (N, D) for ``compute`` FLOPs, honouring optional caps on N and D."""
    if not (np.isfinite(compute) and compute > 0):
        raise ValueError(f"compute must be a positive number of FLOPs, got {compute!r}")
    n, _ = law.optimal_allocation(compute)
    constraint = "none"
    if max_params is not None and n > max_params:
        n, constraint = float(max_params), "max_params"
    if max_tokens is not None and compute / (6.0 * n) > max_tokens:
        if constraint == "max_params":
            raise ValueError(f"budget {compute:.3g} FLOPs cannot be spent with at most {max_params:.3g} "
                             f"parameters and {max_tokens:.3g} tokens (6·N·D = {6 * max_params * max_tokens:.3g})")
        n, constraint = compute / (6.0 * max_tokens), "max_tokens"
    d = compute / (6.0 * n)
    return Plan(compute=float(compute), n_params=float(n), n_tokens=float(d),
                loss=float(law.predict(n, d)), constraint=constraint)


def _capped(n: np.ndarray, compute: float, max_params: float | None, max_tokens: float | None) -> np.ndarray:
    """Parameter counts ``n`` moved to the binding cap (vectorised; NaN where no plan exists)."""
    n = np.asarray(n, dtype=float)
    if max_params is not None:
        n = np.minimum(n, max_params)
    if max_tokens is not None:
        n = np.maximum(n, compute / (6.0 * max_tokens))
        if max_params is not None and compute / (6.0 * max_tokens) > max_params:
            n = np.full_like(n, np.nan)
    return n


def allocation_table(law: Chinchilla, budgets, *, samples: list[Chinchilla] | None = None, level: float = 0.95,
                     max_params: float | None = None, max_tokens: float | None = None) -> pd.DataFrame:
    """One row per budget: N*, D*, tokens/param, predicted loss and, given bootstrap ``samples`` of the
    law, percentile intervals ``*_lo``/``*_hi`` at ``level`` for N*, D* and the loss."""
    rows = []
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    for c in budgets:
        p = allocate(law, c, max_params=max_params, max_tokens=max_tokens)
        row = dict(compute=p.compute, n_params=p.n_params, n_tokens=p.n_tokens,
                   tokens_per_param=p.tokens_per_param, loss=p.loss, constraint=p.constraint)
        if samples:
            with np.errstate(all="ignore"):
                n = _capped(np.array([s.optimal_allocation(c)[0] for s in samples], dtype=float), c,
                            max_params, max_tokens)
                d = c / (6.0 * n)
                loss = np.array([s.predict(ni, di) for s, ni, di in zip(samples, n, d)], dtype=float)
            for name, v in (("n_params", n), ("n_tokens", d), ("loss", loss)):
                v = v[np.isfinite(v) & (v > 0)]
                lo, hi = np.percentile(v, q) if v.size else (np.nan, np.nan)
                row[f"{name}_lo"], row[f"{name}_hi"] = float(lo), float(hi)
        rows.append(row)
    return pd.DataFrame(rows)
