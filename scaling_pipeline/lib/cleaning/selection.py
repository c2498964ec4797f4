"""Selection among a family's candidate points: hyperparameter sweeps reduced to their best run per
(N, D), runs logged twice under two names counted once, runs no scaling law can explain dropped.

The candidates are a DataFrame with run_id, family, n_params, n_tokens, unique_tokens, loss, lr (NaN
when unknown), ``sweep`` (:func:`sweep_groups`: one id per family, (N, D) and unique tokens) and
``series`` (a hash of the logged steps and losses).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

SAME_SIZE_RTOL = 0.01  # runs whose N agree within 1 %, and whose D (tokens seen) do, are at one (N, D)


def _clusters(values: np.ndarray, rtol: float) -> np.ndarray:
    """Cluster labels of ``values`` (positive): sorted, a value more than ``rtol`` above its cluster's
    first value starts a new cluster."""
    labels = np.empty(values.size, dtype=int)
    start, label = None, -1
    for i in np.argsort(values, kind="stable"):
        if start is None or values[i] > start * (1 + rtol):
            start, label = values[i], label + 1
        labels[i] = label
    return labels


def sweep_groups(points: pd.DataFrame, rtol: float = SAME_SIZE_RTOL) -> np.ndarray:
    """Group id per row: rows of one family at the same N and D (within ``rtol``) and the same unique
    tokens (runs on repeated data are no hyperparameter variants of runs on fresh data) share one."""
    ids = np.empty(len(points), dtype=int)
    next_id = 0
    for _, g in points.groupby(["family", "unique_tokens"], sort=True, dropna=False):
        rows = np.flatnonzero(points.index.isin(g.index))
        by_n = _clusters(g.n_params.to_numpy(dtype=float), rtol)
        for label in np.unique(by_n):
            members = rows[by_n == label]
            by_d = _clusters(points.n_tokens.to_numpy(dtype=float)[members], rtol)
            ids[members] = next_id + by_d
            next_id += by_d.max() + 1
    return ids


def _same_point(row) -> str:
    return f"at the same N ({row.n_params:.3g}) and D ({row.n_tokens:.3g})"


def drop_duplicate_series(points: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Keep one run (the first run id) of each set of runs at one (N, D) (column ``sweep``) that logged
    the very same steps and losses (column ``series``): a run logged under two names would count twice."""
    dropped: list[tuple[str, str]] = []
    ordered = points.sort_values("run_id")
    shared = ordered[ordered.duplicated(["sweep", "series"], keep=False)]  # only these can be dropped
    for _, same in shared.groupby(["sweep", "series"], sort=False):
        for row in same.iloc[1:].itertuples():
            dropped.append((row.run_id, f"logs the very same steps and losses as run {same.run_id.iloc[0]!r} "
                                        f"{_same_point(row)}: one run logged under two names, counted once"))
    return _without(points, dropped), dropped


def select_envelope(points: pd.DataFrame, selection: Callable[[str], str]
                    ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Per (N, D) (column ``sweep``) of each family whose ``selection(family)`` is 'envelope', keep only
    the run with the lowest final loss (ties: the first run id); the others are returned with a detail
    naming it."""
    losers: list[tuple[str, str]] = []
    for _, sweep in points.sort_values(["loss", "run_id"]).groupby("sweep", sort=False):
        if len(sweep) < 2 or selection(sweep.family.iloc[0]) != "envelope":
            continue
        best = sweep.iloc[0]
        for row in sweep.iloc[1:].itertuples():
            lrs = f" (lr {row.lr:.3g} vs {best.lr:.3g})" if np.isfinite(row.lr) and np.isfinite(best.lr) else ""
            losers.append((row.run_id, f"final loss {row.loss:.4f} is {row.loss / best.loss - 1:.2%} above run "
                                       f"{best.run_id!r} ({best.loss:.4f}) {_same_point(row)}{lrs}: "
                                       "hparam_selection 'envelope' keeps the best run of each (N, D)"))
    return _without(points, losers), losers


def _without(points: pd.DataFrame, dropped: list[tuple[str, str]]) -> pd.DataFrame:
    return points[~points.run_id.isin({run_id for run_id, _ in dropped})].reset_index(drop=True)


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
    return _without(points, bad), bad
