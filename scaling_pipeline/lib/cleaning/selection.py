"""Selection among a family's candidate points: runs no scaling law can explain are dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd


def drop_dominated(points: pd.DataFrame, tolerance: float) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Remove points whose loss exceeds, by more than ``tolerance``, the loss of a run of the same family
    with no more parameters and no more tokens. Such a run cannot be explained by any scaling law with
    loss decreasing in N and D: its training was broken (e.g. a far too high learning rate)."""
    bad: list[tuple[str, str]] = []
    for _, g in points.groupby("family"):
        n, d, loss = g.n_params.to_numpy(), g.n_tokens.to_numpy(), g.loss.to_numpy()
        for i in range(len(g)):
            mask = (n <= n[i]) & (d <= d[i] * (1 + 1e-9)) & (np.arange(len(g)) != i)
            if not mask.any():
                continue
            j = np.flatnonzero(mask)[np.argmin(loss[mask])]
            if loss[i] > loss[j] * (1 + tolerance):
                bad.append((g.run_id.iloc[i],
                            f"final loss {loss[i]:.4f} is {loss[i] / loss[j] - 1:.0%} above run {g.run_id.iloc[j]!r} "
                            f"({loss[j]:.4f}) which has no more parameters ({n[j]:.3g}) and no more tokens "
                            f"({d[j]:.3g}): broken training (e.g. learning rate)"))
    bad_ids = {b[0] for b in bad}
    return points[~points.run_id.isin(bad_ids)].reset_index(drop=True), bad
