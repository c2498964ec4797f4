"""Scaling points: the parameter count a family uses, plausibility of (N, D, loss), value helpers."""

from __future__ import annotations

import math

import pandas as pd

from scaling_pipeline.lib.schema import LOSS_RANGE, RUN_RANGES, TOKEN_RANGE, out_of_range

from .config import PARAM_COLUMNS

# loss_source of a point whose loss is from its run's last k train losses: their mean plus their least-squares
# line's trend to the last step, shrunk by its evidence (cleaning.steps.final_losses); like 'final_eval', the loss
# at the point's final_step
TRAIN_SHRUNK_LINE = "train_shrunk_line_last_"


def params_used(run, convention: str) -> tuple[float | None, str | None]:
    """(N, the run column it came from) of ``run`` in ``convention`` (see PARAM_COLUMNS): that
    convention's column, else n_params; (None, None) when neither is known."""
    for column in (PARAM_COLUMNS[convention], "n_params"):
        if (value := first_finite(getattr(run, column))) is not None:
            return value, column
    return None, None


def implausible_point(n_params: float, tokens: float) -> str | None:
    """Why (N params, D tokens) is no scaling point, or None (keeps the points_valid check true
    whatever one run logged)."""
    for what, problem in (("n_params", out_of_range(n_params, RUN_RANGES["n_params"])),
                          ("tokens seen", out_of_range(tokens, TOKEN_RANGE))):
        if problem:
            return f"{what}: {problem}"
    return None


def implausible_loss(loss: float) -> str | None:
    """Why a final loss cannot be a mean loss in nats/token (see schema.LOSS_RANGE), or None."""
    if problem := out_of_range(loss, LOSS_RANGE):
        return f"final loss: {problem}; not a loss in nats per token (summed over a batch or sequence, or negative)"
    return None


def as_int(x) -> int | None:
    return None if x is None or pd.isna(x) else int(x)


def product(a, b) -> float | None:
    return None if a is None or b is None or pd.isna(a) or pd.isna(b) else float(a) * float(b)


def first_finite(*xs) -> float | None:
    for x in xs:
        if x is not None and not pd.isna(x) and math.isfinite(float(x)):
            return float(x)
    return None
