"""Hoffmann et al.'s published law and the reference allocations the report shows (:func:`chinchilla_reference`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from scaling_pipeline.lib.laws import Chinchilla

from .plans import allocate

HOFFMANN = Chinchilla(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. (2022), Approach 3
# Besiroglu et al. (2024, Epoch AI), Hoffmann's Approach 3 refitted on the re-extracted data (arXiv:2404.10102)
BESIROGLU = Chinchilla(E=1.82, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)


def chinchilla_reference(budgets: Sequence[float] = (1e19, 1e20, 1e21, 1e22, 5.76e23),
                         caps: Sequence[float] = (1e9, 1e10, 1e11, 1e12), *, law: Chinchilla = HOFFMANN,
                         tolerance: float = 0.10) -> pd.DataFrame:
    """Reference allocations with Hoffmann et al.'s published law (E=1.69, A=406.4, B=410.7, α=0.34, β=0.28).

    Per budget (FLOPs): the closed-form ``n_params`` (N*), ``n_tokens`` (D*), ``loss`` (nats/token); for each
    parameter cap ``cap_<cap>_{n_params,n_tokens,loss,efficiency}``; the naive formula
    ``naive_n_params = (C/(6B))^(β/(α+β))`` (drops G and puts B inside the power) with
    ``naive_rel_diff = naive/N* - 1``; ``note`` says where they disagree by more than ``tolerance`` and which
    caps bind.
    """
    rows = []
    for c in budgets:
        p = allocate(law, c)
        naive = (c / (6.0 * law.B)) ** law.a
        rel = naive / p.n_params - 1.0
        row: dict[str, Any] = dict(compute=p.compute, n_params=p.n_params, n_tokens=p.n_tokens,
                                   tokens_per_param=p.tokens_per_param, loss=p.loss, naive_n_params=naive,
                                   naive_rel_diff=rel)
        binding = []
        for cap in caps:
            q = allocate(law, c, max_params=cap)
            tag = f"cap_{cap:.0e}"
            row.update({f"{tag}_n_params": q.n_params, f"{tag}_n_tokens": q.n_tokens, f"{tag}_loss": q.loss,
                        f"{tag}_efficiency": q.efficiency})
            if q.constraint != "none":
                binding.append(f"{cap:.0e}")
        if abs(rel) > tolerance:
            note = (f"naive (C/(6B))^(β/(α+β)) = {naive:.3g} disagrees with N* = {p.n_params:.3g} by {rel:+.1%} "
                    "(drops G, misuses B)")
        else:
            note = f"naive formula agrees with N* within {tolerance:.0%}"
        note += f"; parameter caps binding: {', '.join(binding)}" if binding else "; no parameter cap binds"
        row["note"] = note
        rows.append(row)
    return pd.DataFrame(rows)
