"""Per-step learning rate of a training run, from a schedule description or from the logged LR.

The curve laws need the LR of every optimizer step ``η_0 … η_T`` (step 0 is the first step of training;
with a linear warm-up from 0, ``η_0 = 0``). Two sources:

* a **schedule description** (:class:`Schedule`, the keys of ``multipower_curves/schedules.json``): exact;
* the **logged LR** (``lr`` at some logged steps, e.g. every k steps): rebuilt by
  :func:`lr_from_log`, linear within the schedule's pieces, with a jump where the LR changes in one
  logging interval between two flat ones (a two-stage schedule), and a linear warm-up from 0 before the
  first logged step.

When both are given they must agree after the warm-up (:func:`per_step_lr`); a run with neither, or with
more than :data:`MAX_STEPS` steps (steps that are tokens), gets no curve fit (:class:`CurveError` naming the run
and what is wrong).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["CurveError", "MAX_STEPS", "Schedule", "SCHEDULE_KINDS", "lr_from_log", "per_step_lr"]

# kind -> keys it needs beyond kind and peak_lr ("wsd" is short for "wsd_linear_decay")
SCHEDULE_KINDS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "cosine": ("total_steps", "end_lr"),
    "linear": ("total_steps", "end_lr"),
    "two_stage": ("stage_a_steps", "lr_b"),
    "wsd_linear_decay": ("total_steps", "decay_start", "end_lr"),
    "wsd_exponential_decay": ("total_steps", "decay_start", "end_lr"),
}
_KIND_ALIASES = {"wsd": "wsd_linear_decay"}
JUMP_SLOPE_RATIO = 10.0  # a logging interval is a jump when its LR slope is this many times both neighbours'
LOG_MISMATCH = 1e-2  # relative difference between a description and the logged LR that is a conflict
MAX_STEPS = 10**7  # optimizer steps of a curve at most (~10x the longest runs known; the per-step LR is 80 MB)


class CurveError(ValueError):
    """A loss curve that cannot be fitted; the message names the run (file) and what is wrong."""


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: linear warm-up from 0 to ``peak_lr`` over ``warmup_steps``, then by kind:

    * ``constant``: ``peak_lr``;
    * ``cosine``: cosine from ``peak_lr`` to ``end_lr`` at ``total_steps``;
    * ``linear``: linear from ``peak_lr`` to ``end_lr`` at ``total_steps``;
    * ``two_stage``: ``peak_lr`` until ``stage_a_steps``, then ``lr_b``;
    * ``wsd_linear_decay`` (``wsd``) / ``wsd_exponential_decay``: ``peak_lr`` until ``decay_start``, then
      linear / geometric decay to ``end_lr`` at ``total_steps``.

    After ``total_steps`` the LR stays at its last value. Steps are optimizer steps; LRs are absolute.
    """

    kind: str
    peak_lr: float
    warmup_steps: int = 0
    total_steps: int | None = None
    end_lr: float | None = None
    decay_start: int | None = None
    stage_a_steps: int | None = None
    lr_b: float | None = None
    schedule: str | None = None  # a name, e.g. "cosine_24000"

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any], where: str) -> Schedule:
        """Validated schedule from a mapping with the keys of ``schedules.json``; ``where`` names its
        source in the error message."""
        if not isinstance(spec, Mapping):
            raise CurveError(f"{where}: a schedule must be a JSON object, got {type(spec).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise CurveError(f"{where}: unknown schedule keys {unknown} (known: {sorted(known)})")
        kind = _KIND_ALIASES.get(str(spec.get("kind")), spec.get("kind"))
        if kind not in SCHEDULE_KINDS:
            raise CurveError(f"{where}: schedule kind {spec.get('kind')!r} is not one of "
                             f"{sorted([*SCHEDULE_KINDS, *_KIND_ALIASES])}")
        missing = [k for k in ("peak_lr", *SCHEDULE_KINDS[kind]) if spec.get(k) is None]
        if missing:
            raise CurveError(f"{where}: a {kind} schedule needs {missing}")
        values: dict[str, Any] = {"kind": kind, "schedule": spec.get("schedule")}
        for key in ("peak_lr", "end_lr", "lr_b"):
            if spec.get(key) is not None:
                values[key] = _number(spec[key], key, where, low=0.0)
        for key in ("warmup_steps", "total_steps", "decay_start", "stage_a_steps"):
            if spec.get(key) is not None:
                values[key] = int(_number(spec[key], key, where, low=0.0, integer=True))
        if values["peak_lr"] <= 0 or (kind == "wsd_exponential_decay" and values["end_lr"] <= 0):
            raise CurveError(f"{where}: peak_lr (and end_lr of a geometric decay) must be > 0")
        out = cls(**values)
        for start in ("decay_start", "stage_a_steps"):
            at = getattr(out, start)
            if at is not None and at < out.warmup_steps:
                raise CurveError(f"{where}: {start} ({at}) is before the end of the warm-up ({out.warmup_steps})")
        if out.total_steps is not None and out.total_steps <= max(out.warmup_steps, out.decay_start or 0):
            raise CurveError(f"{where}: total_steps ({out.total_steps}) must be after the warm-up and decay start")
        return out

    def lr(self, last_step: int) -> np.ndarray:
        """LR of steps 0 … ``last_step`` (absolute units); :class:`CurveError` beyond :data:`MAX_STEPS`."""
        if last_step > MAX_STEPS:
            raise CurveError(f"{self.schedule or self.kind} schedule: {last_step} steps is more than {MAX_STEPS:.0e} "
                             "optimizer steps (total_steps or tokens_planned / batch_tokens in the run metadata)")
        t = np.arange(last_step + 1, dtype=float)
        peak, w = self.peak_lr, self.warmup_steps
        if self.kind == "constant":
            eta = np.full_like(t, peak)
        elif self.kind == "two_stage":
            eta = np.where(t < self.stage_a_steps, peak, self.lr_b)
        else:
            start = w if self.kind in ("cosine", "linear") else self.decay_start
            frac = np.clip((t - start) / (self.total_steps - start), 0.0, 1.0)
            end = self.end_lr
            if self.kind == "cosine":
                eta = end + (peak - end) * 0.5 * (1.0 + np.cos(np.pi * frac))
            elif self.kind == "wsd_exponential_decay":
                eta = peak * (end / peak) ** frac
            else:  # linear, wsd_linear_decay
                eta = peak + (end - peak) * frac
        if w > 0:
            eta = np.where(t < w, peak * t / w, eta)
        return eta


def _number(value: Any, key: str, where: str, *, low: float, integer: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise CurveError(f"{where}: {key} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < low or (integer and x != int(x)):
        kind = "a whole number" if integer else "a number"
        raise CurveError(f"{where}: {key} must be {kind} >= {low:g}, got {value!r}")
    return x


def lr_from_log(steps: ArrayLike, lr: ArrayLike, last_step: int, *, where: str = "curve") -> np.ndarray:
    """Per-step LR (steps 0 … ``last_step``) rebuilt from LRs logged at ``steps``.

    Between two logged steps the LR is linear, except in a *jump*: an interval whose LR slope exceeds
    :data:`JUMP_SLOPE_RATIO` times that of each neighbouring interval (e.g. a two-stage switch logged
    every k steps), where it changes in one step at the interval's midpoint (where within the interval
    is not in the log). Before the first logged step the LR rises linearly from 0 at step 0 (right when
    the log starts within or at the end of a linear warm-up). After the last logged step it stays at the
    last value, for at most one logging interval.
    """
    s = np.asarray(steps, dtype=float)
    v = np.asarray(lr, dtype=float)
    keep = np.isfinite(s) & np.isfinite(v)
    s, v = s[keep], v[keep]
    if len(s) == 0:
        raise CurveError(f"{where}: no logged learning rate")
    if np.any(v < 0) or not np.all(s == np.round(s)) or np.any(s < 0):
        raise CurveError(f"{where}: logged learning rates must be >= 0 at whole steps >= 0")
    order = np.argsort(s, kind="stable")
    s, v = s[order].astype(np.int64), v[order]
    dup = np.nonzero(np.diff(s) == 0)[0]
    if len(dup) and np.any(v[dup] != v[dup + 1]):
        i = dup[np.nonzero(v[dup] != v[dup + 1])[0][0]]
        raise CurveError(f"{where}: step {s[i]} logs two learning rates ({v[i]!r} and {v[i + 1]!r})")
    first = np.concatenate([[True], np.diff(s) > 0])
    s, v = s[first], v[first]
    gap = int(np.max(np.diff(s))) if len(s) > 1 else 0
    if last_step > s[-1] + gap:
        raise CurveError(f"{where}: the learning rate is logged only up to step {s[-1]}, the loss up to "
                         f"step {last_step}")
    t = np.arange(last_step + 1)
    eta = np.interp(t, s, v)  # linear between logged steps, last value after the last one
    slope = np.abs(np.diff(v)) / np.diff(s) if len(s) > 1 else np.zeros(0)
    for i in np.nonzero(slope > 0)[0]:
        neighbours = [slope[j] for j in (i - 1, i + 1) if 0 <= j < len(slope)]
        if neighbours and all(slope[i] > JUMP_SLOPE_RATIO * n for n in neighbours):
            mid = (s[i] + s[i + 1] + 1) // 2
            eta[s[i]:mid] = v[i]
            eta[mid:s[i + 1] + 1] = v[i + 1]
    if s[0] > 0:
        eta[: s[0]] = v[0] * t[: s[0]] / s[0]
    return eta


def per_step_lr(where: str, last_step: int, *, logged_steps: ArrayLike | None = None,
                logged_lr: ArrayLike | None = None, schedule: Schedule | None = None) -> np.ndarray:
    """Per-step LR of a run (steps 0 … ``last_step``) from its schedule description (preferred) or its
    logged LR. Both given: they must agree within :data:`LOG_MISMATCH` after the warm-up. Neither:
    :class:`CurveError` naming ``where``."""
    has_log = logged_lr is not None and np.isfinite(np.asarray(logged_lr, dtype=float)).any()
    if schedule is None and not has_log:
        raise CurveError(f"{where}: no learning rate: the run logs none (column lr, learning_rate or train/lr) "
                         "and no schedule is described for it, so its curve cannot be fitted")
    if last_step > MAX_STEPS:
        raise CurveError(f"{where}: logged up to step {last_step}, more than {MAX_STEPS:.0e} optimizer steps: are its "
                         "steps tokens (a table with tokens and no step column, whose run metadata gives no "
                         "batch_tokens to turn them into steps)?")
    if schedule is None:
        return lr_from_log(logged_steps, logged_lr, last_step, where=where)
    eta = schedule.lr(last_step)
    if has_log:
        s = np.asarray(logged_steps, dtype=float)
        v = np.asarray(logged_lr, dtype=float)
        ok = np.isfinite(v) & np.isfinite(s) & (s >= schedule.warmup_steps) & (s <= last_step)
        s, v = s[ok].astype(np.int64), v[ok]
        expect = eta[s]
        bad = np.nonzero(np.abs(v - expect) > LOG_MISMATCH * np.maximum(np.abs(expect), 1e-300))[0]
        if len(bad):
            i = bad[0]
            raise CurveError(f"{where}: the logged learning rate contradicts the described schedule at step "
                             f"{s[i]} (logged {v[i]:.6g}, schedule {expect[i]:.6g}; {len(bad)} steps differ)")
    return eta
