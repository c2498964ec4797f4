"""Scaling points: plausibility of (N, D, loss) and the small value helpers the stage uses."""

from __future__ import annotations

import math

import pandas as pd

from scaling_pipeline.lib.schema import RUN_RANGES, TOKEN_RANGE, out_of_range


def implausible_point(n_params: float, tokens: float, loss: float) -> str | None:
    """Why (N params, D tokens, final loss in nats/token) is no scaling point, or None (keeps the
    points_valid check true whatever one run logged)."""
    for what, problem in (("n_params", out_of_range(n_params, RUN_RANGES["n_params"])),
                          ("tokens seen", out_of_range(tokens, TOKEN_RANGE))):
        if problem:
            return f"{what}: {problem}"
    if not (math.isfinite(loss) and loss > 0):
        return f"final loss: expected a positive finite loss (nats/token), got {loss!r}"
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
