"""Faults injected into a simulated run's logged rows (resumed, diverged, killed; file faults recorded)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

from .design import Plan
from .loss import Rows

BAD_TOKEN = "abc"

_SPIKE = np.array([1.2, 1.8, 3.0, 6.0])  # loss multipliers of the logged steps before NaN/inf
_STOP_AFTER = 4  # logged non-finite steps before a 'diverged' trainer stops
_RESTART_GAP_S = 900.0
_RESUME_BUMP = 0.015  # relative train-loss bump on the first line after a resume


def last_at_most(steps: np.ndarray, limit: float) -> int:
    """Index of the last logged step <= ``limit``."""
    return int(np.searchsorted(steps, limit, side="right")) - 1


def _resume(c: Rows, p: Plan) -> tuple[Rows, dict[str, Any]]:
    """Killed at ~60 %, resumed from the ~50 % checkpoint: steps in between logged twice."""
    ckpt = last_at_most(c.step, 0.5 * p.total_steps)
    kill = last_at_most(c.step, 0.6 * p.total_steps)
    first, second = c.take(np.arange(kill + 1)), c.take(np.arange(ckpt + 1, c.step.size))
    second.wall += c.wall[kill] + _RESTART_GAP_S - c.wall[ckpt]
    second.train[0] *= 1.0 + _RESUME_BUMP
    rows = Rows(*(np.concatenate([getattr(first, f.name), getattr(second, f.name)])
                    for f in fields(Rows)))
    return rows, {"checkpoint_step": int(c.step[ckpt]), "killed_at_step": int(c.step[kill]),
                  "resumed_first_step": int(second.step[0]), "duplicate_steps": int(kill - ckpt),
                  "restart_gap_s": _RESTART_GAP_S}


def _diverge(c: Rows, stop: bool) -> tuple[Rows, dict[str, Any]]:
    """Loss spikes from ~35 % of the logged steps, then alternates NaN/inf; ``stop``: the trainer
    stops ``_STOP_AFTER`` logged steps after the first non-finite loss."""
    start = int(0.35 * c.step.size)
    bad = start + _SPIKE.size
    c = c.take(np.arange(min(bad + _STOP_AFTER, c.step.size) if stop else c.step.size))
    c.train[start:bad] *= _SPIKE
    c.eval[start:bad] *= _SPIKE
    n_bad = c.step.size - bad
    c.train[bad:] = np.where(np.arange(n_bad) % 2 == 0, np.nan, np.inf)
    c.eval[bad:] = np.nan  # on eval steps; is_eval keeps the other rows null
    return c, {"divergence_step": int(c.step[start]), "first_nonfinite_step": int(c.step[bad]),
               "last_step": int(c.step[-1]), "nonfinite_rows": n_bad,
               "nonfinite_eval_rows": int(c.is_eval[bad:].sum())}


def apply_fault(c: Rows, p: Plan, family: str) -> tuple[Rows, dict[str, Any]]:
    """Rows of fault-carrying run ``p`` and the fault record (steps are optimizer steps)."""
    info: dict[str, Any] = {"run_id": p.run_id, "family": family, "status": p.status,
                            "total_steps": p.total_steps}
    if p.fault == "resumed":
        c, extra = _resume(c, p)
    elif p.fault in ("diverged", "diverged_silent"):
        c, extra = _diverge(c, stop=p.fault == "diverged")
    elif p.fault == "killed":
        c = c.take(np.arange(last_at_most(c.step, 0.4 * p.total_steps) + 1))
        extra = {"last_step": int(c.step[-1])}
    elif p.fault == "bad_row":  # a plain train row (not an eval) at ~30 % is damaged on disk
        index = int(np.flatnonzero(~c.is_eval & (c.step >= 0.3 * p.total_steps))[0])
        extra = {"step": int(c.step[index]), "field": "train_loss", "token": BAD_TOKEN}
    else:  # truncated: on disk, cut in the middle of the line of the ~60 % row
        index = last_at_most(c.step, 0.6 * p.total_steps)
        extra = {"complete_rows": index, "last_complete_step": int(c.step[index - 1]),
                 "cut_step": int(c.step[index])}
    return c, {**info, **extra}

