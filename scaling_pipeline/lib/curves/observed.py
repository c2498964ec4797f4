"""Observed-curve points: a source run's own logged losses, read at the budget's training time, plus a share
of the family's Multi-Power Law loss drop.

Where the MPL's forward term ``L0 + A·S1^(−alpha)`` does not describe a family's curves (byte-level runs that fall
from ln 256 with a plateau and a late drop, ``alpha`` at its bound), the source's curve itself can stand in for
it. Training time is ``τ_p(t) = Σ_{k≤t} (η_k/η_max)^p`` (``p`` = 1: the LR area S1 of the MPL; ``p`` = 0: steps).
The source's train losses (each the mean over its log interval, placed at the interval's mid-time), plus a
share ``s`` of the loss drop ``B·LD`` of the family's MPL at those steps (undoing its own decay's share), give its
forward curve in ``τ_p``
(log-linear interpolation in log ``τ_p``); the evaluations' log ratio to that curve, interpolated the same way,
gives the train-to-eval gap. A run decayed at step T' with per-step LR ``η'`` then has the eval loss
``forward(τ'_p(T'))·exp(gap(τ'_p(T'))) − s·B·LD'(T')``.

``(p, s)`` is a per-family choice (:data:`TIME_POWERS` × :data:`DROP_SHARES`): ``curves.points`` picks it, or the
MPL points, by the backtest against the observed runs at the points' (N, D) (benchmarks/README.md, "Curve-law
points"). Units: steps, absolute LR, nats/token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling_pipeline.lib.curves.laws import MultiPowerLaw, Units
from scaling_pipeline.lib.curves.schedule import CurveError

__all__ = ["DROP_SHARES", "TIME_POWERS", "ObservedCurve", "loss_drop"]

TIME_POWERS = (0.25, 0.5, 0.75, 1.0)  # p of the training time τ_p
DROP_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)  # s: share of the family's MPL loss drop


def loss_drop(shared: dict[str, float], steps: np.ndarray, lr: np.ndarray) -> np.ndarray:
    """``B·LD(t)`` (nats/token) of the family's MPL (``shared``: alpha, B, C, beta, gamma) at ``steps`` of a run with
    per-step LR ``lr``."""
    steps = np.asarray(steps, dtype=np.int64)
    units = Units.of([lr], [steps])
    z = MultiPowerLaw.internal({**shared, "L0": 0.0, "A": 1.0}, units)
    shape = np.array([z[MultiPowerLaw.index(k)] for k in MultiPowerLaw.shape])
    return np.exp(z[MultiPowerLaw.index("B")]) * MultiPowerLaw.drop(MultiPowerLaw.terms(lr, steps, units), shape)


@dataclass(frozen=True)
class ObservedCurve:
    """A source's forward curve and eval gap on the time axis ``τ_p`` (module docstring)."""

    power: float
    share: float
    top: float  # η_max of the source (absolute LR)
    time: np.ndarray  # mid-times of the train-loss intervals
    forward: np.ndarray  # log of the forward train loss there
    eval_time: np.ndarray
    gap: np.ndarray  # log(eval / forward train) at the evaluations

    @classmethod
    def of(cls, steps: pd.DataFrame, lr: np.ndarray, shared: dict[str, float], power: float,
           share: float) -> ObservedCurve:
        """From the source's logged ``steps`` (step, train_loss, eval_loss; steps within ``lr``) and its per-step
        LR ``lr``; :class:`CurveError` with fewer than 2 train losses or no eval loss after the LR starts."""
        top = float(lr.max())
        tau = np.cumsum((lr / top) ** power)
        started = steps[tau[steps.step.to_numpy(np.int64)] > 0]
        tr, ev = started[started.train_loss.notna()], started[started.eval_loss.notna()]
        if len(tr) < 2 or ev.empty:
            raise CurveError(f"{len(tr)} train and {len(ev)} eval losses after the LR starts: no observed curve")
        end = tr.step.to_numpy(np.int64)
        start = np.concatenate([[0], end[:-1]])
        mid = np.clip((start + end) // 2, 0, len(lr) - 1)
        keep = np.concatenate([[True], np.diff(mid) > 0])
        forward = tr.train_loss.to_numpy(float)[keep] + share * loss_drop(shared, mid[keep], lr)
        time = ((tau[start] + tau[end]) / 2)[keep]
        at = ev.step.to_numpy(np.int64)
        eval_forward = ev.eval_loss.to_numpy(float) + share * loss_drop(shared, at, lr)
        gap = np.log(eval_forward) - np.interp(np.log(tau[at]), np.log(time), np.log(forward))
        return cls(power, share, top, np.log(time), np.log(forward), np.log(tau[at]), gap)

    def predict(self, last: int, eta: np.ndarray, shared: dict[str, float]) -> float:
        """Eval loss (nats/token) of a run decayed at step ``last`` with per-step LR ``eta`` (steps 0 … last)."""
        t = np.log(np.sum((eta[: last + 1] / self.top) ** self.power))
        train = np.exp(np.interp(t, self.time, self.forward) + np.interp(t, self.eval_time, self.gap))
        return float(train - self.share * loss_drop(shared, np.array([last]), eta)[0])
