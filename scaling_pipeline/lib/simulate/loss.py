"""Per-step curves of one simulated run: learning rate, noise-free and noisy losses, wall time."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .design import FamilyTruth, SimConfig, Plan

def _anneal_left(steps: np.ndarray, p: Plan) -> np.ndarray:
    """Part of the cosine decay still ahead: 1 up to the end of warm-up, 0 at the last step."""
    span = max(p.total_steps - p.warmup_steps, 1)
    progress = np.clip((steps - p.warmup_steps) / span, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * progress))


def _lr(steps: np.ndarray, p: Plan, cfg: SimConfig) -> np.ndarray:
    floor = cfg.final_lr_frac * p.lr
    decay = floor + (p.lr - floor) * _anneal_left(steps, p)
    return np.where(steps < p.warmup_steps, p.lr * steps / p.warmup_steps, decay)


def lr_optimum(n_params: Any, cfg: SimConfig) -> Any:
    """The simulated optimal peak learning rate LR*(N) = c * N^-gamma (``cfg.lr_law``)."""
    c, gamma = cfg.lr_law
    return c * np.power(n_params, -gamma)


def _lr_penalty(p: Plan, cfg: SimConfig) -> float:
    """Nats a run loses by training at peak LR ``p.lr`` instead of LR*(N); 0 without LR sweeps."""
    if not cfg.lr_sweep:
        return 0.0
    return cfg.lr_penalty * math.log(p.lr / lr_optimum(p.n_params, cfg)) ** 2


def _expected_loss(truth: FamilyTruth, p: Plan, steps: np.ndarray,
                   cfg: SimConfig) -> np.ndarray:
    """Noise-free loss (nats/token) at ``steps``; exactly L(N, D) (+ the LR penalty) at the last step."""
    law = truth.loss(p.n_params, steps * float(p.batch_tokens))
    loss = law + cfg.anneal_gap * (law - truth.E) * _anneal_left(steps, p) + _lr_penalty(p, cfg)
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
    mean = _expected_loss(truth, p, steps, cfg)
    sigma = cfg.train_noise * (1.0 + 2.0 * np.exp(-steps / (0.05 * p.total_steps)))
    train = mean * np.exp(sigma * rng.standard_normal(steps.size))
    evals = mean * np.exp(cfg.eval_noise * rng.standard_normal(steps.size))
    jitter = np.exp(0.02 * rng.standard_normal(steps.size))
    gaps = np.diff(steps, prepend=0) * _seconds_per_step(p, cfg) * jitter
    return Rows(steps, train, np.where(is_eval, evals, np.nan), is_eval, _lr(steps, p, cfg),
                  30.0 + np.cumsum(gaps))

