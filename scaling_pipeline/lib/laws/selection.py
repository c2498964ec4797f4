"""How a form takes its data from one family's points, for the per-family model comparison.

Each form's :meth:`~.base.Law.samples` returns the :class:`Sample` s it is compared on (usually one: every run;
a form fitted per token budget gives one per budget), or raises :class:`NotApplicable` with the reason. The
helpers below are the selections the seed forms use. ``points`` is a family's rows of ``clean.points``
(``n_params`` parameters, ``n_tokens`` tokens, ``loss`` nats/token, optionally ``flops`` and ``unique_tokens``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["NotApplicable", "Sample", "sample_of", "largest_budget_per_size", "compute_frontier", "budget_groups"]

SAME_BUDGET = 0.01  # runs whose token counts (or tokens per parameter) agree within 1% share a budget


class NotApplicable(ValueError):
    """The form cannot be fitted to this family's points; the message says why (e.g. a missing column)."""


@dataclass(frozen=True)
class Sample:
    """The data one form is compared on: ``inputs`` (``predict`` keyword -> values), ``y`` (loss, nats/token),
    ``compute`` (``6·N·D`` FLOPs of the same runs: the backtest holds out the largest), ``subset`` (which runs,
    ``""``: all of them) and ``options`` (keywords for the form's ``fit``)."""

    inputs: Mapping[str, np.ndarray]
    y: np.ndarray
    compute: np.ndarray
    subset: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        return int(self.y.size)


def sample_of(points: pd.DataFrame, columns: Mapping[str, str], subset: str = "",
              options: Mapping[str, Any] | None = None) -> Sample:
    """The :class:`Sample` of ``points`` with ``inputs[keyword] = points[column]`` for ``columns`` (keyword ->
    column); :class:`NotApplicable` when a column is missing or has a value that is not finite and > 0."""
    values = {}
    for keyword, column in columns.items():
        v = pd.to_numeric(points[column], errors="coerce").to_numpy(float) if column in points else None
        if v is None or not len(v) or not (np.isfinite(v) & (v > 0)).all():
            raise NotApplicable(f"needs {column} (finite and > 0) for every run")
        values[keyword] = v
    n, d = (points[c].to_numpy(float) for c in ("n_params", "n_tokens"))
    return Sample(values, points["loss"].to_numpy(float), 6.0 * n * d, subset, dict(options or {}))


def largest_budget_per_size(points: pd.DataFrame) -> pd.DataFrame:
    """Per model size, the run with the most tokens (ties: the lowest loss)."""
    order = points.sort_values(["n_params", "n_tokens", "loss"], ascending=[True, False, True])
    return order.drop_duplicates("n_params")


def compute_frontier(points: pd.DataFrame) -> pd.DataFrame:
    """The runs on the compute frontier: in order of compute ``6·N·D``, each run with a lower loss than every
    run of less compute."""
    order = points.assign(_c=6.0 * points.n_params * points.n_tokens).sort_values(["_c", "loss"])
    best = np.minimum.accumulate(order.loss.to_numpy(float))
    keep = np.r_[True, order.loss.to_numpy(float)[1:] < best[:-1]]
    return order[keep].drop(columns="_c")


def _groups(values: np.ndarray, rtol: float) -> list[np.ndarray]:
    """Indices of ``values`` in runs of neighbours (sorted) within ``rtol`` of each other, in increasing order."""
    order = np.argsort(values, kind="stable")
    gaps = np.diff(np.log(values[order])) > np.log1p(rtol)
    return np.split(order, np.flatnonzero(gaps) + 1)


def budget_groups(points: pd.DataFrame, min_sizes: int, rtol: float = SAME_BUDGET) -> list[tuple[str, pd.DataFrame]]:
    """Runs sharing a token budget ``D`` (within ``rtol``) across at least ``min_sizes`` model sizes, each as
    ``("D≈…", rows)``; a ladder whose budgets are set per size (no shared ``D``) is grouped by tokens per
    parameter instead (``"D/N≈…"``). Empty when neither gives such a group."""
    for label, values in (("D", points.n_tokens.to_numpy(float)),
                          ("D/N", (points.n_tokens / points.n_params).to_numpy(float))):
        out = []
        for idx in _groups(values, rtol):
            rows = points.iloc[idx]
            if rows.n_params.nunique() >= min_sizes:
                out.append((f"{label}≈{float(np.exp(np.log(values[idx]).mean())):.3g}", rows))
        if out:
            return out
    return []
