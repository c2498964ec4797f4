"""Fitting a runs CSV (:func:`fit_csv`): the front end of ``scaling-pipeline fit``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from scaling_pipeline.lib.fitting.common import FitError
from scaling_pipeline.lib.fitting.joint import fit_chinchilla_joint
from scaling_pipeline.lib.fitting.row_filter import apply_where, parse_where
from scaling_pipeline.lib.formats.common import resolve_aliases
from scaling_pipeline.lib.laws import get
from scaling_pipeline.lib.schema import METRIC_ALIASES, RUN_ALIASES

__all__ = ["fit_csv", "CSV_ALIASES"]

# A runs CSV's columns under the names ingest accepts (lower-cased, exact), best first: parameters and
# unique tokens as in run metadata, tokens as the tokens seen, the loss as a final loss, eval before train.
CSV_ALIASES: dict[str, list[str]] = {
    "family": RUN_ALIASES["family"],
    "n_params": RUN_ALIASES["n_params"],
    "n_tokens": METRIC_ALIASES["tokens"],
    "unique_tokens": RUN_ALIASES["unique_tokens"],
    "flops": ["flops", "compute", "c", "train_flops"],
    "loss": ["loss", "final_loss", "final_eval_loss", *METRIC_ALIASES["eval_loss"], "final_train_loss",
             *METRIC_ALIASES["train_loss"]],
}


def _canonical_columns(df: Any, notes: list[str], keep: set[str]) -> Any:
    """Rename alias columns (e.g. ``final_eval_loss``, ``tokens_seen``) to the canonical names the CSV lacks;
    columns in ``keep`` (named by the caller, e.g. ``--x params``) keep their names."""
    present = set(df.columns)
    renames = {}
    for canonical, found in resolve_aliases(df.columns, CSV_ALIASES).items():
        if canonical not in present and found[0] not in renames and found[0] not in keep:
            renames[found[0]] = canonical
    if renames:
        notes.append("read " + ", ".join(f"{src!r} as {dst!r}" for src, dst in renames.items()))
    return df.rename(columns=renames)


def _derive(df: Any, need: list[str], notes: list[str]) -> Any:
    """Add a needed ``n_tokens`` (= flops/(6·n_params)) or ``flops`` (= 6·n_params·n_tokens) the CSV lacks."""
    if "n_tokens" in need and "n_tokens" not in df.columns and {"flops", "n_params"} <= set(df.columns):
        df = df.assign(n_tokens=_csv_column(df, "flops") / (6.0 * _csv_column(df, "n_params")))
        notes.append("n_tokens derived as flops / (6·n_params)")
    if "flops" in need and "flops" not in df.columns and {"n_params", "n_tokens"} <= set(df.columns):
        df = df.assign(flops=6.0 * _csv_column(df, "n_params") * _csv_column(df, "n_tokens"))
        notes.append("flops derived as 6·n_params·n_tokens")
    return df


def _stated_convention(df: Any) -> str | None:
    """The parameter convention a CSV states in its ``param_convention`` column (e.g. an export of
    clean.points): its value(s), ',' joined; None when it has no such column."""
    if "param_convention" not in df.columns:
        return None
    return ",".join(sorted(df["param_convention"].dropna().astype(str).unique())) or None


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
    where: str | None = None,
) -> dict[str, Any]:
    """Fit a law form of :data:`~scaling_pipeline.lib.laws.FORMS` to a runs CSV; return the JSON-ready dict.

    The form's inputs come from its default columns (``n_params`` parameters, ``n_tokens`` tokens,
    ``unique_tokens``, ``flops`` FLOPs; see each class's ``variables``), ``x`` renames the input of a
    one-variable form, ``vars`` lists the inputs of a form whose inputs the user names; ``y`` is the
    fitted column (default ``loss``, nats/token). ``n_tokens = flops/(6·n_params)`` and
    ``flops = 6·n_params·n_tokens`` are derived when needed and absent. Columns named as ingest names them
    are read under the canonical name the CSV lacks (:data:`CSV_ALIASES`, e.g. ``final_eval_loss`` as
    ``loss``). ``where`` keeps the rows that match a filter (:mod:`.row_filter`, e.g. ``"not
    epoch_excluded and n_params >= 1e7"``). ``family`` keeps only that family's rows (``family`` column);
    other columns are ignored and listed in ``diagnostics["source"]["ignored_columns"]``. ``bootstrap`` (with ``seed``) applies
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
    df = _canonical_columns(df, notes, keep={*columns.values(), y})
    clauses = parse_where(where) if where else []
    if clauses:
        df = apply_where(df, clauses)
        if df.empty:
            raise FitError(f"no row of {os.fspath(path)!r} matches --where {where!r} (of {n_rows} rows)")
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
    given = list(df.columns)
    df = _derive(df, need, notes)
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise FitError(
            f"{os.fspath(path)!r} lacks required column(s) {missing} for form {form!r} "
            f"(has {list(df.columns)})"
        )
    inputs = {v: _csv_column(df, c) for v, c in columns.items()}
    target = _csv_column(df, y)
    used = {*need, *(c.column for c in clauses), "param_convention",
            *(["family"] if family is not None or joint else [])}
    used |= {"flops", "n_params"} if "n_tokens" in set(need) - set(given) else set()
    used |= {"n_params", "n_tokens"} if "flops" in set(need) - set(given) else set()
    ignored = [c for c in given if c not in used]
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
        "source": {"path": os.fspath(path), "family": family, "rows_read": n_rows, "rows_fitted": len(df),
                   "where": where, "columns": {**columns, "y": y}, "ignored_columns": ignored,
                   "param_convention": _stated_convention(df)},
        "warnings": notes + list(result.diagnostics.get("warnings", [])),
    }
    return replace(result, diagnostics=diagnostics).to_dict()
