"""Front end of ``scaling-pipeline curve-fit``: loss-curve CSV files in, one JSON-able result out.

Each CSV holds one run: columns ``step``, ``loss`` and optionally ``lr`` under any of the metric aliases
of the ingest (``schema.METRIC_ALIASES``: e.g. ``global_step``, ``train_loss``, ``learning_rate``). Rows
without a loss only log the LR; rows without an LR only log the loss. A schedules file maps a CSV's stem
to a schedule (:class:`~scaling_pipeline.lib.curves.schedule.Schedule`); the list form of
``multipower_curves/schedules.json`` (objects named by their ``schedule`` key) is read as well.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling_pipeline.lib.curves.fit import Curve, curve_errors, fit_curves
from scaling_pipeline.lib.curves.schedule import CurveError, Schedule
from scaling_pipeline.lib.formats.common import alias_list, resolve_aliases
from scaling_pipeline.lib.jsonutil import jsonable
from scaling_pipeline.lib.schema import METRIC_ALIASES

__all__ = ["read_curve", "read_schedules", "curve_fit_files"]


def read_schedules(path: Path) -> dict[str, Schedule]:
    """``{stem: Schedule}`` from a JSON object mapping stems to schedules, or a list of schedules named
    by their ``schedule`` key."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CurveError(f"cannot read schedules {str(path)!r}: {exc}") from None
    if isinstance(raw, list):
        named = [s for s in raw if isinstance(s, dict) and isinstance(s.get("schedule"), str)]
        if len(named) != len(raw):
            raise CurveError(f"{path}: a list of schedules needs a 'schedule' name in every entry")
        raw = {s["schedule"]: s for s in named}
    if not isinstance(raw, dict):
        raise CurveError(f"{path}: expected a JSON object mapping file stems to schedules")
    return {str(stem): Schedule.from_mapping(spec, f"{path}: schedule {stem!r}") for stem, spec in raw.items()}


def _column(df: pd.DataFrame, name: str, path: Path) -> np.ndarray:
    """Column ``name`` as floats (NaN where empty); a cell that is not a number is an error naming its line."""
    text = df[name]
    values = pd.to_numeric(text, errors="coerce")
    bad = values.isna() & text.notna() & (text.astype(str).str.strip() != "")
    if bad.any():
        row = int(np.nonzero(bad.to_numpy())[0][0])
        raise CurveError(f"{path} line {row + 2}: {name} {text.iloc[row]!r} is not a number")
    return values.to_numpy(dtype=float)


def read_curve(path: Path, schedule: Schedule | None = None) -> Curve:
    """The run in CSV ``path`` (:class:`CurveError` naming the file when it cannot be fitted)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CurveError(f"cannot read {str(path)!r}: {exc}") from None
    found = resolve_aliases(df.columns, METRIC_ALIASES)
    loss_name = (found.get("train_loss") or found.get("eval_loss") or [None])[0]
    if "step" not in found or loss_name is None:
        raise CurveError(f"{path}: expected a step column ({alias_list(METRIC_ALIASES, 'step')}) and a loss column "
                         f"({alias_list(METRIC_ALIASES, 'train_loss', 'eval_loss')}); found {list(df.columns)}")
    steps = _column(df, found["step"][0], path)
    if np.isnan(steps).any():
        raise CurveError(f"{path} line {int(np.nonzero(np.isnan(steps))[0][0]) + 2}: no step")
    loss = _column(df, loss_name, path)
    lr = _column(df, found["lr"][0], path) if "lr" in found else None
    has_loss = ~np.isnan(loss)
    return Curve.build(str(path), steps[has_loss], loss[has_loss], lr=lr, lr_steps=steps, schedule=schedule)


def curve_fit_files(train: Sequence[Path], form: str, predict: Sequence[Path] = (),
                    schedules: Path | None = None, *, n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
    """Fit ``form`` to the ``train`` CSVs and score it on them and on the ``predict`` CSVs: ``{"form",
    "params", "objective", "fit_seconds", "train": [{"file", "mean_rel_err", "max_rel_err"}],
    "predictions": [...], "notes"}`` (relative errors |L̂ − L|/L over each file's rows), and ``"ci"``
    (bootstrap intervals) when ``n_boot`` > 0."""
    described = read_schedules(schedules) if schedules is not None else {}
    curves = {p: read_curve(p, described.get(Path(p).stem)) for p in [*train, *predict]}
    fit = fit_curves([curves[p] for p in train], form, n_boot=n_boot, seed=seed)
    law = fit.law

    def scores(paths: Sequence[Path]) -> list[dict[str, Any]]:
        return [dict(zip(("file", "mean_rel_err", "max_rel_err"), (str(p), *curve_errors(law, curves[p]))))
                for p in paths]

    out = {"form": fit.form, "params": fit.params, "objective": fit.objective, "fit_seconds": fit.fit_seconds,
           "train": scores(train), "predictions": scores(predict),
           "notes": [n for c in curves.values() for n in c.notes]}
    if n_boot > 0:
        out["ci"] = fit.ci
    return jsonable(out)
