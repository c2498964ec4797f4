"""Per-step curves of one simulated run: learning rate, noise-free and noisy losses, wall time.

Each run follows a Multi-Power Law. By default it is the run's own (:func:`run_mpl`: ``L0`` puts its final
loss exactly on L(N, D)). With ``SimConfig.shared_size_law`` the runs of one size and peak LR share one law
(:func:`size_mpl`), whose ``L0`` and ``A`` are fitted so that its loss at the end of the family's first
schedule kind, decayed at each budget of the size's grid, is as close to L(N, D) as the MPL allows: its
decayed loss is not a power law in D (the loss drop of a decay grows with the decay's length), so the final
losses of that kind sit off L(N, D) by 0.04% rms, 0.1% at most on the default grid, 0.2% at the IsoFLOP
extremes; runs of the other kinds end where the same law puts them (up to 2.4% off L(N, D) with all four
kinds: the MPL ranks schedules). The truth of such a ladder is the law, and curve-law points from one long
run per size reproduce its other budgets. It is an option, not the default, for that reason: every other
test and benchmark relies on final losses exactly on L(N, D) for every schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

import numpy as np

from scaling_pipeline.lib.curves.laws import MultiPowerLaw

from .design import FamilyTruth, Plan, SimConfig, base_lr, schedule_of

SIZE_LAW_BUDGETS = 7  # budgets (log-spaced over the grid's tokens per parameter) a shared size law is fitted on

def lr_optimum(n_params: Any, cfg: SimConfig) -> Any:
    """The simulated optimal peak learning rate LR*(N) = c * N^-gamma (``cfg.lr_law``)."""
    c, gamma = cfg.lr_law
    return c * np.power(n_params, -gamma)


def _lr_penalty(p: Plan, cfg: SimConfig) -> float:
    """Nats a run loses by training at peak LR ``p.lr`` instead of LR*(N); 0 without LR sweeps."""
    if not cfg.lr_sweep:
        return 0.0
    return cfg.lr_penalty * math.log(p.lr / lr_optimum(p.n_params, cfg)) ** 2


def family_mpl(truth: FamilyTruth, cfg: SimConfig) -> tuple[float, float, float, float]:
    """The loss-drop parameters (B, C, beta, gamma) of family ``truth``'s Multi-Power Law: shared by its
    runs. B (nats/token per unit LR) makes the drop of a full decay at the middle of the ladder
    ``cfg.anneal_gap`` of L - E there."""
    n_mid = math.sqrt(cfg.n_min * cfg.n_max)
    d_mid = n_mid * math.sqrt(cfg.tpp_min * cfg.tpp_max)
    peak = base_lr(n_mid)
    weight = cfg.anneal_gap * (truth.loss(n_mid, d_mid) - truth.E) / ((1.0 - cfg.final_lr_frac) * peak)
    return (weight, *cfg.mpl_shape)


def run_mpl(truth: FamilyTruth, p: Plan, cfg: SimConfig, lr: np.ndarray) -> MultiPowerLaw:
    """The Multi-Power Law of run ``p`` with per-step LR ``lr`` (steps 0 … total_steps): the family's
    loss drop; ``alpha`` = the family's data exponent beta and ``A`` = B_D·(peak LR / batch tokens)^beta,
    so that at a constant LR the loss falls like B_D/D^beta; ``L0`` such that the loss at the planned
    last step is exactly L(N, D) + the LR penalty + ``p.offset``."""
    if cfg.shared_size_law:
        law = size_mpl(truth, p.n_params, p.lr, p.batch_tokens, cfg)
        return replace(law, L0=law.L0 + _lr_penalty(p, cfg) + p.offset)
    weight, c, beta, gamma = family_mpl(truth, cfg)
    amplitude = truth.B * (p.lr / p.batch_tokens) ** truth.beta
    shape = MultiPowerLaw(0.0, amplitude, truth.beta, weight, c, beta, gamma)
    end = truth.loss(p.n_params, p.tokens_planned) + _lr_penalty(p, cfg) + p.offset
    return replace(shape, L0=float(end - shape.predict([p.total_steps], lr)[0]))


@lru_cache(maxsize=4096)
def size_mpl(truth: FamilyTruth, n_params: float, lr: float, batch_tokens: int, cfg: SimConfig) -> MultiPowerLaw:
    """The Multi-Power Law shared by the runs of ``n_params`` parameters at peak LR ``lr`` and batch
    ``batch_tokens`` (``shared_size_law``): the family's loss drop and ``alpha`` = its data exponent beta;
    ``L0`` and ``A`` by least squares of relative errors so that the loss at the end of a
    ``cfg.schedules[0]`` schedule decayed at each of :data:`SIZE_LAW_BUDGETS` budgets from ``tpp_min`` to
    ``tpp_max`` tokens per parameter is L(N, D)."""
    weight, c, beta, gamma = family_mpl(truth, cfg)
    forward, drop, target = [], [], []
    for tpp in np.geomspace(cfg.tpp_min, cfg.tpp_max, SIZE_LAW_BUDGETS):
        steps = max(round(n_params * tpp / batch_tokens), 10)
        p = Plan("calibration", 0, n_params, float(steps * batch_tokens), batch_tokens, steps,
                 max(1, round(cfg.warmup_frac * steps)), lr, schedule=cfg.schedules[0])
        lr_steps = schedule_of(p, cfg).lr(steps)
        one, two = (MultiPowerLaw(0.0, a, truth.beta, weight, c, beta, gamma).predict([steps], lr_steps)[0]
                    for a in (1.0, 2.0))
        forward.append(two - one)  # S1^-alpha at the end
        drop.append(2.0 * one - two)  # -B·LD at the end
        target.append(truth.loss(n_params, p.tokens_planned))
    y, f, d = np.array(target), np.array(forward), np.array(drop)
    (l0, amplitude), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(y), f]) / y[:, None], (y - d) / y, rcond=None)
    return MultiPowerLaw(float(l0), float(amplitude), truth.beta, weight, c, beta, gamma)


def _expected_loss(law: MultiPowerLaw, steps: np.ndarray, lr: np.ndarray, cfg: SimConfig) -> np.ndarray:
    """Noise-free loss (nats/token) at ``steps``, squashed below log(vocab_size) above ``cap_start``."""
    loss = law.predict(steps, lr)
    width = math.log(cfg.vocab_size) - cfg.cap_start
    squashed = cfg.cap_start + width * np.tanh((loss - cfg.cap_start) / width)
    return np.where(loss > cfg.cap_start, squashed, loss)


@dataclass
class Rows:
    """Logged rows of one run (parallel arrays; ``eval`` is meaningful where ``is_eval``)."""

    step: np.ndarray
    train: np.ndarray
    eval: np.ndarray
    is_eval: np.ndarray
    lr: np.ndarray
    wall: np.ndarray

    def take(self, index: np.ndarray) -> Rows:
        """The rows at ``index`` (copies)."""
        return Rows(*(getattr(self, f.name)[index] for f in fields(self)))


def _logged_steps(p: Plan, cfg: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """(logged steps, is-eval mask): every k-th step plus the last; evals ~every 10 %."""
    every = math.ceil(p.total_steps / cfg.log_points)
    steps = np.arange(every, p.total_steps + 1, every)
    if steps[-1] != p.total_steps:
        steps = np.append(steps, p.total_steps)
    eval_every = every * max(1, round(p.total_steps / (cfg.eval_points * every)))
    return steps, (steps % eval_every == 0) | (steps == p.total_steps)


def _seconds_per_step(p: Plan, cfg: SimConfig) -> float:
    return 0.05 + 6.0 * p.n_params * p.batch_tokens / cfg.throughput


def run_curve(truth: FamilyTruth, p: Plan, cfg: SimConfig, rng: np.random.Generator) -> Rows:
    """Logged rows of a clean run: noisy losses (nats/token), LR, wall time (s since launch)."""
    steps, is_eval = _logged_steps(p, cfg)
    lr = schedule_of(p, cfg).lr(p.total_steps)
    mean = _expected_loss(run_mpl(truth, p, cfg, lr), steps, lr, cfg)
    sigma = cfg.train_noise * (1.0 + 2.0 * np.exp(-steps / (0.05 * p.total_steps)))
    train = mean * np.exp(sigma * rng.standard_normal(steps.size))
    evals = mean * np.exp(cfg.eval_noise * rng.standard_normal(steps.size))
    jitter = np.exp(0.02 * rng.standard_normal(steps.size))
    gaps = np.diff(steps, prepend=0) * _seconds_per_step(p, cfg) * jitter
    return Rows(steps, train, np.where(is_eval, evals, np.nan), is_eval, lr[steps],
                  30.0 + np.cumsum(gaps))

