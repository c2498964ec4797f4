"""Fitting a runs CSV (:func:`fit_csv`): the front end of ``scaling-pipeline fit``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from scaling_pipeline.lib.fitting.common import FitError
from scaling_pipeline.lib.fitting.joint import fit_chinchilla_joint
from scaling_pipeline.lib.laws import get

__all__ = ["fit_csv"]


def _derive(df: Any, need: list[str], notes: list[str]) -> Any:
    """Add a needed ``n_tokens`` (= flops/(6·n_params)) or ``flops`` (= 6·n_params·n_tokens) the CSV lacks."""
    if "n_tokens" in need and "n_tokens" not in df.columns and {"flops", "n_params"} <= set(df.columns):
        df = df.assign(n_tokens=_csv_column(df, "flops") / (6.0 * _csv_column(df, "n_params")))
        notes.append("n_tokens derived as flops / (6·n_params)")
    if "flops" in need and "flops" not in df.columns and {"n_params", "n_tokens"} <= set(df.columns):
        df = df.assign(flops=6.0 * _csv_column(df, "n_params") * _csv_column(df, "n_tokens"))
        notes.append("flops derived as 6·n_params·n_tokens")
    return df


def _csv_column(df: Any, name: str) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(np.isnan(values))
    if bad.size:
        lines = ", ".join(str(int(i) + 2) for i in df.index[bad][:5])
        raise FitError(
            f"column {name!r} has {bad.size} missing or non-numeric value(s) (CSV line(s) {lines})"
        )
    return values


def fit_csv(
    path: str | os.PathLike,
    *,
    form: str = "chinchilla",
    loss: str = "huber",
    delta: float = 1e-3,
    family: str | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    joint: bool = False,
    free_all: bool = False,
    x: str | None = None,
    y: str = "loss",
    vars: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Fit a law form of :data:`~scaling_pipeline.lib.laws.FORMS` to a runs CSV; return the JSON-ready dict.

    The form's inputs come from its default columns (``n_params`` parameters, ``n_tokens`` tokens,
    ``unique_tokens``, ``flops`` FLOPs; see each class's ``variables``), ``x`` renames the input of a
    one-variable form, ``vars`` lists the inputs of a form whose inputs the user names; ``y`` is the
    fitted column (default ``loss``, nats/token). ``n_tokens = flops/(6·n_params)`` and
    ``flops = 6·n_params·n_tokens`` are derived when needed and absent. ``family`` keeps only that
    family's rows (``family`` column); other columns are ignored. ``bootstrap`` (with ``seed``) applies
    to ``chinchilla``; ``free_all`` to ``data_constrained`` (fit all seven parameters instead of
    ``rd_star``, ``rn_star`` with Muennighoff et al.'s published values for the rest). Returns
    ``{"form", "loss", "delta", "n_points", "params", "objective", "fit_seconds", "ci" (with
    ``bootstrap > 0``), "diagnostics"}``; ``diagnostics["source"]`` names the file and the columns used.

    ``joint=True`` fits every family of the CSV's ``family`` column at once with shared exponents
    (:func:`fit_chinchilla_joint`) and returns ``{"form": "chinchilla_joint", ..., "params": {"alpha",
    "beta"}, "families": {name: {"E", "A", "B", "n_points", "objective"}}}``.
    """
    import pandas as pd

    try:
        law = get(form)
    except ValueError as exc:
        raise FitError(str(exc)) from None
    if bootstrap and form != "chinchilla":
        raise FitError("bootstrap is only implemented for form 'chinchilla'")
    if bootstrap < 0:
        raise FitError(f"bootstrap must be >= 0, got {bootstrap}")
    if free_all and form != "data_constrained":
        raise FitError("free_all applies only to form 'data_constrained'")
    if joint and (form != "chinchilla" or bootstrap or family is not None):
        raise FitError("a joint fit is form 'chinchilla' over all families, without --family or --bootstrap")
    columns = law.columns(x=x, vars=None if vars is None else list(vars))
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise FitError(f"cannot read runs CSV {os.fspath(path)!r}: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    n_rows = len(df)
    notes: list[str] = []
    if family is not None:
        if "family" not in df.columns:
            raise FitError(
                f"family {family!r} requested but {os.fspath(path)!r} has no 'family' column"
            )
        available = sorted(df["family"].dropna().astype(str).unique())
        df = df[df["family"].astype(str) == family]
        if df.empty:
            raise FitError(f"no rows with family {family!r}; available: {available}")
    elif "family" in df.columns and df["family"].nunique() > 1:
        fams = sorted(df["family"].dropna().astype(str).unique())
        notes.append(
            f"CSV holds {len(fams)} families {fams} and no family was selected: fitted them pooled"
        )
    need = [*columns.values(), y]
    df = _derive(df, need, notes)
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise FitError(
            f"{os.fspath(path)!r} lacks required column(s) {missing} for form {form!r} "
            f"(has {list(df.columns)})"
        )
    inputs = {v: _csv_column(df, c) for v, c in columns.items()}
    target = _csv_column(df, y)
    if joint:
        if "family" not in df.columns:
            raise FitError(f"a joint fit needs a 'family' column in {os.fspath(path)!r}")
        return fit_chinchilla_joint(inputs["N"], inputs["D"], target, df["family"].astype(str).to_numpy(),
                                    loss=loss, delta=delta).to_dict()
    options: dict[str, Any] = {}
    if bootstrap:
        options.update(bootstrap=bootstrap, seed=seed)
    if free_all:
        options["free_all"] = True
    result = law.fit(inputs, target, loss=loss, delta=delta, **options)
    if result.loss != loss:
        notes.append(f"loss {loss!r} is not available for form {form!r}: used {result.loss!r}")
    diagnostics = {
        **result.diagnostics,
        "source": {"path": os.fspath(path), "family": family, "rows_read": n_rows,
                   "columns": {**columns, "y": y}},
        "warnings": notes + list(result.diagnostics.get("warnings", [])),
    }
    return replace(result, diagnostics=diagnostics).to_dict()
