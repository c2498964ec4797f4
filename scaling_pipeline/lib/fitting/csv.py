"""Fitting a runs CSV (:func:`fit_csv`): the front end of ``scaling-pipeline fit``."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np

from scaling_pipeline.lib.fitting.chinchilla import fit_chinchilla
from scaling_pipeline.lib.fitting.common import FitError
from scaling_pipeline.lib.fitting.data_constrained import fit_data_constrained
from scaling_pipeline.lib.fitting.joint import fit_chinchilla_joint
from scaling_pipeline.lib.fitting.one_variable import fit_kaplan
from scaling_pipeline.lib.fitting.resample import bootstrap_chinchilla

__all__ = ["fit_csv"]

_CSV_FORMS: dict[str, tuple[str, ...]] = {
    "chinchilla": ("n_params", "n_tokens", "loss"),
    "data_constrained": ("n_params", "n_tokens", "unique_tokens", "loss"),
    "kaplan_n": ("n_params", "loss"),
    "kaplan_d": ("n_tokens", "loss"),
    "kaplan_c": ("flops", "loss"),
}


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
) -> dict[str, Any]:
    """Fit a law to a runs CSV and return the JSON-ready result dict.

    ``joint=True`` fits every family of the CSV's ``family`` column at once with shared exponents
    (:func:`fit_chinchilla_joint`) and returns ``{"form": "chinchilla_joint", ..., "params": {"alpha",
    "beta"}, "families": {name: {"E", "A", "B", "n_points", "objective"}}}``.

    Columns: ``n_params`` (parameters), ``n_tokens`` (tokens), ``loss`` (nats/token); optional
    ``flops`` (used for ``n_tokens = flops/(6·n_params)`` when ``n_tokens`` is absent and for
    ``kaplan_c``), ``unique_tokens`` (``data_constrained``), ``family`` (filter); others are
    ignored. ``data_constrained`` fits ``rd_star`` and ``rn_star`` with Muennighoff et al.'s
    published values for the rest, or all seven parameters with ``free_all=True``. Returns ``{"form", "loss", "delta", "n_points", "params", "objective",
    "fit_seconds", "ci" (only with ``bootstrap > 0``; Chinchilla only), "diagnostics"}``.
    """
    import pandas as pd

    if form not in _CSV_FORMS:
        raise FitError(f"form must be one of {sorted(_CSV_FORMS)}, got {form!r}")
    if bootstrap and form != "chinchilla":
        raise FitError("bootstrap is only implemented for form 'chinchilla'")
    if bootstrap < 0:
        raise FitError(f"bootstrap must be >= 0, got {bootstrap}")
    if free_all and form != "data_constrained":
        raise FitError("free_all applies only to form 'data_constrained'")
    if joint and (form != "chinchilla" or bootstrap or family is not None):
        raise FitError("a joint fit is form 'chinchilla' over all families, without --family or --bootstrap")
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
    if "n_tokens" not in df.columns and {"flops", "n_params"} <= set(df.columns):
        df = df.assign(n_tokens=_csv_column(df, "flops") / (6.0 * _csv_column(df, "n_params")))
        notes.append("n_tokens derived as flops / (6·n_params)")
    has_nd = {"n_params", "n_tokens"} <= set(df.columns)
    if form == "kaplan_c" and "flops" not in df.columns and has_nd:
        df = df.assign(flops=6.0 * _csv_column(df, "n_params") * _csv_column(df, "n_tokens"))
        notes.append("flops derived as 6·n_params·n_tokens")
    missing = [c for c in _CSV_FORMS[form] if c not in df.columns]
    if missing:
        raise FitError(
            f"{os.fspath(path)!r} lacks required column(s) {missing} for form {form!r} "
            f"(has {list(df.columns)})"
        )
    cols = {c: _csv_column(df, c) for c in _CSV_FORMS[form]}
    if joint:
        if "family" not in df.columns:
            raise FitError(f"a joint fit needs a 'family' column in {os.fspath(path)!r}")
        return fit_chinchilla_joint(cols["n_params"], cols["n_tokens"], cols["loss"],
                                    df["family"].astype(str).to_numpy(), loss=loss, delta=delta).to_dict()
    if form == "chinchilla":
        args = (cols["n_params"], cols["n_tokens"], cols["loss"])
        if bootstrap:
            boot = bootstrap_chinchilla(*args, n_boot=bootstrap, seed=seed, loss=loss, delta=delta)
            result = boot.fit
            extra = {"bootstrap": {"n_boot": bootstrap, "seed": seed, "level": boot.level,
                                   "seconds": boot.seconds, "n_jobs": boot.n_jobs}}
        else:
            result, extra = fit_chinchilla(*args, loss=loss, delta=delta), {}
    elif form == "data_constrained":
        result, extra = fit_data_constrained(
            cols["n_params"], cols["n_tokens"], cols["unique_tokens"], cols["loss"], delta=delta, free_all=free_all
        ), {}
    else:
        x = cols[_CSV_FORMS[form][0]]
        result, extra = fit_kaplan(x, cols["loss"], form[-1].upper()), {}
    if result.loss != loss:
        notes.append(f"loss {loss!r} is not available for form {form!r}: used {result.loss!r}")
    diagnostics = {
        **result.diagnostics,
        **extra,
        "source": {"path": os.fspath(path), "family": family, "rows_read": n_rows},
        "warnings": notes + list(result.diagnostics.get("warnings", [])),
    }
    return replace(result, diagnostics=diagnostics).to_dict()
