"""Synthetic training ladders with a known truth, for demos, tests and benchmarks.

Every family follows the Chinchilla law ``L(N, D) = E + A/N^alpha + B/D^beta`` (nats/token;
``N`` parameters, ``D`` training tokens). A family's ladder is a grid of model sizes x token
budgets (tokens per parameter) plus an IsoFLOP slice; every run has a cosine schedule (linear
warm-up, decay to ``final_lr_frac`` of the peak at its own last step) and logs ~150 of its
steps (defaults: 7 sizes x 5 budgets + 5 IsoFLOP runs per family; 6 families: ~36k metric rows).

Loss model of a run planned for ``D`` tokens, at a step that has seen ``t`` tokens::

    loss(t) = L(N, t) + anneal_gap * (L(N, t) - E) * a(t)

where ``a`` is the part of the cosine decay still ahead (1 during warm-up and at the peak, 0 at
the last step): the final, schedule-complete loss is exactly ``L(N, D)``, while mid-run losses sit
above ``L(N, t)`` because the learning rate has not annealed (they are not scaling points). Values
above ``cap_start`` are squashed smoothly below ``log(vocab_size)`` (the loss of a uniform guess),
which only touches the first logged steps. Train losses get multiplicative log-normal noise
(``train_noise``, three times larger at the start), evaluations (every ~10 % of the schedule and at
the last step) smaller noise (``eval_noise``). Everything is deterministic given the seed.

Learning-rate sweeps (``lr_sweep``, off by default): every grid point is trained at several peak
learning rates, and a run at peak LR ``lr`` loses ``lr_penalty * ln(lr / LR*(N))**2`` nats over its
whole curve, where ``LR*(N) = c * N**-gamma`` (``lr_law``) is the known optimal learning rate: its
final loss is ``L(N, D)`` plus that penalty.

Deliberate faults (:func:`simulate_ladder` records them in ``Ladder.faults``; fault ``j`` lands in
family ``j % n_families``, so in distinct families when there are at least 6):

``bad_row`` (family 0)   a grid run; :func:`write_demo` replaces one row's train loss with ``abc``.
``truncated`` (family 1) an extra run (duplicate of a grid point); :func:`write_demo` cuts its
                         metrics file in the middle of a line, so on disk it stops at ~60 %.
``resumed`` (family 2)   a grid run killed at ~60 % and resumed from its ~50 % checkpoint: the steps
                         in between are logged twice, the second copy later in wall time (the
                         first line after the resume has a slightly higher train loss).
``diverged`` (family 3)  an extra run at 4x the learning rate: loss spikes, then NaN/inf; the
                         trainer stops a few logged steps later; status 'diverged'.
``diverged_silent`` (4)  the same at 6x, but it logs NaN/inf up to its last step; status
                         'completed' (the status alone does not flag it).
``killed`` (family 5)    an extra run that stops at ~40 % of its schedule; status 'running'.

Only the grid and IsoFLOP runs are scaling points; the extra runs duplicate grid points and never
give a valid final loss. ``write_demo`` writes a whole log tree (every format when ``fmt='mixed'``)
plus ``truth.json`` and ``faults.json``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from scaling_pipeline.lib.laws import Chinchilla

__all__ = ["DEFAULT_TRUTHS", "DemoSummary", "FamilyTruth", "Ladder", "SimConfig",
           "lr_optimum", "simulate_ladder", "write_demo"]

MIXED = "mixed"
FAULT_ORDER = ("bad_row", "truncated", "resumed", "diverged", "diverged_silent", "killed")
RUN_FIELDS = ["run_id", "family", "n_params", "n_params_total", "n_params_non_embedding", "tokens_planned",
              "batch_tokens", "total_steps", "warmup_steps", "schedule", "status", "unique_tokens", "lr"]
TEXT_SUFFIXES = {"csv": ".csv", "jsonl": ".jsonl"}  # formats whose metric files get file faults
BAD_TOKEN = "abc"


@dataclass(frozen=True)
class FamilyTruth:
    """Chinchilla law of one model family: ``L = E + A/N^alpha + B/D^beta`` (nats/token)."""

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n_params: Any, tokens: Any) -> Any:
        """Loss (nats/token) of a schedule-complete run with ``n_params`` trained on ``tokens``."""
        return Chinchilla(self.E, self.A, self.B, self.alpha, self.beta).predict(n_params, tokens)


DEFAULT_TRUTHS: tuple[FamilyTruth, ...] = (
    FamilyTruth("atlas", E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),  # Hoffmann et al.
    FamilyTruth("boreal", E=1.82, A=482.0, B=2085.0, alpha=0.35, beta=0.37),
    FamilyTruth("cirrus", E=2.05, A=1200.0, B=640.0, alpha=0.42, beta=0.30),
    FamilyTruth("delta", E=1.75, A=310.0, B=1500.0, alpha=0.31, beta=0.36),
    FamilyTruth("ember", E=1.95, A=1800.0, B=700.0, alpha=0.44, beta=0.31),
    FamilyTruth("fjord", E=1.62, A=850.0, B=4000.0, alpha=0.38, beta=0.42),
)


@dataclass(frozen=True)
class SimConfig:
    """Ladder design and noise; the scale knobs for benchmarks are ``n_sizes``, ``n_budgets``,
    ``isoflop_points`` (runs per family) and ``log_points`` (logged rows per run).

    Sizes: ``n_sizes`` log-spaced from ``n_min`` to ``n_max`` parameters (2 significant digits).
    With ``inject_faults`` the grid needs at least 5 sizes and 4 budgets.
    Budgets: ``n_budgets`` log-spaced from ``tpp_min`` to ``tpp_max`` tokens per parameter (2
    significant digits).
    IsoFLOP slice: ``isoflop_points`` sizes at ``isoflop_flops`` FLOPs (C = 6ND), from
    ``isoflop_tpp[1]`` down to ``isoflop_tpp[0]`` tokens per parameter (None: no slice).
    Steps: ``batch_tokens`` is the power of two nearest ``tokens_planned / target_steps``, clipped
    to [``min_batch_tokens``, ``max_batch_tokens``];
    ``total_steps = tokens_planned / batch_tokens`` (tokens_planned is rounded to whole steps).
    Logging: the train loss every ``ceil(total_steps / log_points)`` steps plus the last step;
    the eval loss at about ``eval_points`` evenly spaced logged steps and at the last step.
    Noise: ``train_noise`` / ``eval_noise`` are log-normal sigmas (fractions of the loss).
    Learning-rate sweeps: ``lr_sweep`` multipliers of each grid run's peak LR (the run id gets
    ``-lr<m>x``; empty: one run per grid point and no LR penalty); the optimal peak LR is
    ``lr_law = (c, gamma)``: LR*(N) = c * N^-gamma, and a run loses ``lr_penalty`` nats per
    ``ln(lr / LR*)^2``.
    """

    n_sizes: int = 7
    n_min: float = 1e7
    n_max: float = 2e9
    n_budgets: int = 5
    tpp_min: float = 5.0
    tpp_max: float = 160.0
    isoflop_flops: float | None = 1e19
    isoflop_points: int = 5
    isoflop_tpp: tuple[float, float] = (2.0, 300.0)
    target_steps: int = 3000
    min_batch_tokens: int = 2**15
    max_batch_tokens: int = 2**22
    log_points: int = 150
    eval_points: int = 10
    warmup_frac: float = 0.02  # of total steps
    final_lr_frac: float = 0.1  # cosine floor, fraction of the peak LR
    anneal_gap: float = 0.1  # un-annealed excess at the LR peak, fraction of L(N, t) - E
    train_noise: float = 0.012
    eval_noise: float = 0.003
    vocab_size: int = 50257
    cap_start: float = 8.0  # nats; losses above are squashed below log(vocab_size)
    throughput: float = 4e15  # FLOP/s of the simulated cluster (wall_time)
    inject_faults: bool = True
    lr_sweep: tuple[float, ...] = ()
    lr_law: tuple[float, float] = (1.6, 0.4)
    lr_penalty: float = 0.05  # nats per ln(lr / LR*)^2


@dataclass
class Ladder:
    """A simulated ladder: ``runs`` (RUN_COLUMNS without extra), ``metrics`` (METRIC_COLUMNS
    without record, in logging order), the truth per family and the injected faults.

    ``metrics.train_loss``/``eval_loss`` are Arrow doubles: null = not logged, NaN = a logged NaN.
    """

    runs: pd.DataFrame
    metrics: pd.DataFrame
    truth: dict[str, FamilyTruth]
    faults: dict[str, Any]
    config: SimConfig
    seed: int


@dataclass
class DemoSummary:
    """What :func:`write_demo` wrote (paths absolute; ``faults`` as in faults.json)."""

    out_dir: Path
    seed: int
    fmt: str
    formats: dict[str, str]  # family -> format
    files: list[Path]
    n_runs: int
    n_metric_rows: int
    truth_path: Path
    faults_path: Path
    faults: dict[str, Any] = field(repr=False)

    def __str__(self) -> str:
        return (f"{len(self.formats)} families, {self.n_runs} runs, {self.n_metric_rows} metric "
                f"rows, {len(self.files)} files ({self.fmt})")


# ---------------------------------------------------------------------------------------------
# truths and ladder design
# ---------------------------------------------------------------------------------------------

def _round_sig(x: float, digits: int = 2) -> float:
    return float(f"{x:.{digits - 1}e}")


def _sizes(cfg: SimConfig) -> list[float]:
    return [_round_sig(n) for n in np.geomspace(cfg.n_min, cfg.n_max, cfg.n_sizes)]


def _budgets(cfg: SimConfig) -> list[float]:
    return [_round_sig(r) for r in np.geomspace(cfg.tpp_min, cfg.tpp_max, cfg.n_budgets)]


def _family_truths(n_families: int, cfg: SimConfig) -> list[FamilyTruth]:
    """DEFAULT_TRUTHS, then drawn truths (seed-independent) whose terms both matter."""
    truths = list(DEFAULT_TRUTHS[:n_families])
    n_mid = math.sqrt(cfg.n_min * cfg.n_max)
    d_mid = n_mid * math.sqrt(cfg.tpp_min * cfg.tpp_max)
    for i in range(len(truths), n_families):
        rng = np.random.default_rng([7919, i])
        while True:
            alpha, beta = rng.uniform(0.28, 0.44, 2)
            truth = FamilyTruth(f"fam{i:03d}", E=round(rng.uniform(1.6, 2.2), 3),
                                A=round(rng.uniform(0.4, 0.8) * n_mid**alpha, 1),
                                B=round(rng.uniform(0.4, 0.9) * d_mid**beta, 1),
                                alpha=round(alpha, 3), beta=round(beta, 3))
            if truth.loss(cfg.n_min, cfg.n_min * cfg.tpp_min) < cfg.cap_start - 0.5:
                break
        truths.append(truth)
    return truths


@dataclass(frozen=True)
class _Plan:
    """One run to simulate (units: parameters, tokens, steps)."""

    run_id: str
    index: int  # within the family (seeds its noise)
    n_params: float
    tokens_planned: float
    batch_tokens: int
    total_steps: int
    warmup_steps: int
    lr: float
    status: str = "completed"
    fault: str | None = None


def _size_tag(n: float) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def _plan(run_id: str, index: int, n: float, tokens: float, cfg: SimConfig) -> _Plan:
    """Run of ``n`` parameters planned for about ``tokens`` tokens (rounded to whole steps)."""
    batch = 2 ** round(math.log2(tokens / cfg.target_steps))
    batch = int(min(max(batch, cfg.min_batch_tokens), cfg.max_batch_tokens))
    steps = max(round(tokens / batch), 10)
    lr = _round_sig(2e-3 * (n / 1e7) ** -0.25, 3)
    return _Plan(run_id, index, n, float(steps * batch), batch, steps,
                 max(1, round(cfg.warmup_frac * steps)), lr)


# Grid point (size index, budget index) each fault uses.
_FAULT_POINTS = {"bad_row": (2, 1), "truncated": (3, 2), "resumed": (4, 3), "diverged": (3, 2),
                 "diverged_silent": (2, 3), "killed": (4, 1)}
# Extra runs: (run-id suffix, peak-LR multiplier, logged status).
_EXTRA = {"truncated": ("rerun", 1, "completed"), "diverged": ("lr4x", 4, "diverged"),
          "diverged_silent": ("lr6x", 6, "completed"), "killed": ("try1", 1, "running")}


def _family_plans(fam: int, name: str, cfg: SimConfig, faults: dict[str, int]) -> list[_Plan]:
    """Grid, IsoFLOP and fault-carrying extra runs of family ``fam``.

    ``faults``: fault kind -> family index it is injected into."""
    sizes, budgets = _sizes(cfg), _budgets(cfg)
    plans: list[_Plan] = []
    grid: dict[tuple[int, int], _Plan] = {}
    for i, n in enumerate(sizes):
        for j, tpp in enumerate(budgets):
            base = _plan(f"{name}-{_size_tag(n)}-tpp{tpp:.3g}", len(plans), n, n * tpp, cfg)
            if not cfg.lr_sweep:
                grid[i, j] = base
                plans.append(base)
                continue
            for m in cfg.lr_sweep:  # the multiplier nearest 1 carries the grid point's faults
                plans.append(replace(base, run_id=f"{base.run_id}-lr{m:g}x", index=len(plans),
                                     lr=_round_sig(base.lr * m, 3)))
            grid[i, j] = plans[len(plans) - len(cfg.lr_sweep) + int(np.argmin(np.abs(np.log(cfg.lr_sweep))))]
    if cfg.isoflop_flops:
        c = cfg.isoflop_flops
        lo, hi = (math.sqrt(c / 6 / tpp) for tpp in (cfg.isoflop_tpp[1], cfg.isoflop_tpp[0]))
        tag = f"c{c:.0e}".replace("+", "")
        for n in np.geomspace(lo, hi, cfg.isoflop_points):
            n = _round_sig(n, 3)
            plans.append(_plan(f"{name}-{_size_tag(n)}-{tag}", len(plans), n, c / (6 * n), cfg))
    for kind in FAULT_ORDER:
        if faults.get(kind) != fam:
            continue
        base = grid[_FAULT_POINTS[kind]]
        if kind in _EXTRA:
            suffix, lr_mult, status = _EXTRA[kind]
            plans.append(replace(base, run_id=f"{base.run_id}-{suffix}", index=len(plans),
                                 lr=base.lr * lr_mult, status=status, fault=kind))
        else:
            plans[base.index] = replace(base, fault=kind)
    return plans


# ---------------------------------------------------------------------------------------------
# per-step curves
# ---------------------------------------------------------------------------------------------

def _anneal_left(steps: np.ndarray, p: _Plan) -> np.ndarray:
    """Part of the cosine decay still ahead: 1 up to the end of warm-up, 0 at the last step."""
    span = max(p.total_steps - p.warmup_steps, 1)
    progress = np.clip((steps - p.warmup_steps) / span, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * progress))


def _lr(steps: np.ndarray, p: _Plan, cfg: SimConfig) -> np.ndarray:
    floor = cfg.final_lr_frac * p.lr
    decay = floor + (p.lr - floor) * _anneal_left(steps, p)
    return np.where(steps < p.warmup_steps, p.lr * steps / p.warmup_steps, decay)


def lr_optimum(n_params: Any, cfg: SimConfig) -> Any:
    """The simulated optimal peak learning rate LR*(N) = c * N^-gamma (``cfg.lr_law``)."""
    c, gamma = cfg.lr_law
    return c * np.power(n_params, -gamma)


def _lr_penalty(p: _Plan, cfg: SimConfig) -> float:
    """Nats a run loses by training at peak LR ``p.lr`` instead of LR*(N); 0 without LR sweeps."""
    if not cfg.lr_sweep:
        return 0.0
    return cfg.lr_penalty * math.log(p.lr / lr_optimum(p.n_params, cfg)) ** 2


def _expected_loss(truth: FamilyTruth, p: _Plan, steps: np.ndarray,
                   cfg: SimConfig) -> np.ndarray:
    """Noise-free loss (nats/token) at ``steps``; exactly L(N, D) (+ the LR penalty) at the last step."""
    law = truth.loss(p.n_params, steps * float(p.batch_tokens))
    loss = law + cfg.anneal_gap * (law - truth.E) * _anneal_left(steps, p) + _lr_penalty(p, cfg)
    width = math.log(cfg.vocab_size) - cfg.cap_start
    squashed = cfg.cap_start + width * np.tanh((loss - cfg.cap_start) / width)
    return np.where(loss > cfg.cap_start, squashed, loss)


@dataclass
class _Curve:
    """Logged rows of one run (parallel arrays; ``eval`` is meaningful where ``is_eval``)."""

    step: np.ndarray
    train: np.ndarray
    eval: np.ndarray
    is_eval: np.ndarray
    lr: np.ndarray
    wall: np.ndarray

    def take(self, index: np.ndarray) -> _Curve:
        """The rows at ``index`` (copies)."""
        return _Curve(*(getattr(self, f.name)[index] for f in fields(self)))


def _logged_steps(p: _Plan, cfg: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """(logged steps, is-eval mask): every k-th step plus the last; evals ~every 10 %."""
    every = math.ceil(p.total_steps / cfg.log_points)
    steps = np.arange(every, p.total_steps + 1, every)
    if steps[-1] != p.total_steps:
        steps = np.append(steps, p.total_steps)
    eval_every = every * max(1, round(p.total_steps / (cfg.eval_points * every)))
    return steps, (steps % eval_every == 0) | (steps == p.total_steps)


def _seconds_per_step(p: _Plan, cfg: SimConfig) -> float:
    return 0.05 + 6.0 * p.n_params * p.batch_tokens / cfg.throughput


def _curve(truth: FamilyTruth, p: _Plan, cfg: SimConfig, rng: np.random.Generator) -> _Curve:
    """Logged rows of a clean run: noisy losses (nats/token), LR, wall time (s since launch)."""
    steps, is_eval = _logged_steps(p, cfg)
    mean = _expected_loss(truth, p, steps, cfg)
    sigma = cfg.train_noise * (1.0 + 2.0 * np.exp(-steps / (0.05 * p.total_steps)))
    train = mean * np.exp(sigma * rng.standard_normal(steps.size))
    evals = mean * np.exp(cfg.eval_noise * rng.standard_normal(steps.size))
    jitter = np.exp(0.02 * rng.standard_normal(steps.size))
    gaps = np.diff(steps, prepend=0) * _seconds_per_step(p, cfg) * jitter
    return _Curve(steps, train, np.where(is_eval, evals, np.nan), is_eval, _lr(steps, p, cfg),
                  30.0 + np.cumsum(gaps))


# ---------------------------------------------------------------------------------------------
# faults in the frames
# ---------------------------------------------------------------------------------------------

_SPIKE = np.array([1.2, 1.8, 3.0, 6.0])  # loss multipliers of the logged steps before NaN/inf
_STOP_AFTER = 4  # logged non-finite steps before a 'diverged' trainer stops
_RESTART_GAP_S = 900.0
_RESUME_BUMP = 0.015  # relative train-loss bump on the first line after a resume


def _last_at_most(steps: np.ndarray, limit: float) -> int:
    """Index of the last logged step <= ``limit``."""
    return int(np.searchsorted(steps, limit, side="right")) - 1


def _resume(c: _Curve, p: _Plan) -> tuple[_Curve, dict[str, Any]]:
    """Killed at ~60 %, resumed from the ~50 % checkpoint: steps in between logged twice."""
    ckpt = _last_at_most(c.step, 0.5 * p.total_steps)
    kill = _last_at_most(c.step, 0.6 * p.total_steps)
    first, second = c.take(np.arange(kill + 1)), c.take(np.arange(ckpt + 1, c.step.size))
    second.wall += c.wall[kill] + _RESTART_GAP_S - c.wall[ckpt]
    second.train[0] *= 1.0 + _RESUME_BUMP
    rows = _Curve(*(np.concatenate([getattr(first, f.name), getattr(second, f.name)])
                    for f in fields(_Curve)))
    return rows, {"checkpoint_step": int(c.step[ckpt]), "killed_at_step": int(c.step[kill]),
                  "resumed_first_step": int(second.step[0]), "duplicate_steps": int(kill - ckpt),
                  "restart_gap_s": _RESTART_GAP_S}


def _diverge(c: _Curve, stop: bool) -> tuple[_Curve, dict[str, Any]]:
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


def _apply_fault(c: _Curve, p: _Plan, family: str) -> tuple[_Curve, dict[str, Any]]:
    """Rows of fault-carrying run ``p`` and the fault record (steps are optimizer steps)."""
    info: dict[str, Any] = {"run_id": p.run_id, "family": family, "status": p.status,
                            "total_steps": p.total_steps}
    if p.fault == "resumed":
        c, extra = _resume(c, p)
    elif p.fault in ("diverged", "diverged_silent"):
        c, extra = _diverge(c, stop=p.fault == "diverged")
    elif p.fault == "killed":
        c = c.take(np.arange(_last_at_most(c.step, 0.4 * p.total_steps) + 1))
        extra = {"last_step": int(c.step[-1])}
    elif p.fault == "bad_row":  # a plain train row (not an eval) at ~30 % is damaged on disk
        index = int(np.flatnonzero(~c.is_eval & (c.step >= 0.3 * p.total_steps))[0])
        extra = {"step": int(c.step[index]), "field": "train_loss", "token": BAD_TOKEN}
    else:  # truncated: on disk, cut in the middle of the line of the ~60 % row
        index = _last_at_most(c.step, 0.6 * p.total_steps)
        extra = {"complete_rows": index, "last_complete_step": int(c.step[index - 1]),
                 "cut_step": int(c.step[index])}
    return c, {**info, **extra}


# ---------------------------------------------------------------------------------------------
# the ladder
# ---------------------------------------------------------------------------------------------

def _run_record(p: _Plan, family: str) -> dict[str, Any]:
    """The RUN_FIELDS of run ``p`` (unknown values NaN)."""
    return {"run_id": p.run_id, "family": family, "n_params": p.n_params, "n_params_total": np.nan,
            "n_params_non_embedding": np.nan, "tokens_planned": p.tokens_planned,
            "batch_tokens": float(p.batch_tokens), "total_steps": p.total_steps, "warmup_steps": p.warmup_steps,
            "schedule": "cosine", "status": p.status, "unique_tokens": np.nan, "lr": p.lr}


def _arrow_losses(values: np.ndarray, logged: np.ndarray) -> pd.arrays.ArrowExtensionArray:
    """Arrow doubles keeping NaN/inf apart from null (not logged)."""
    return pd.arrays.ArrowExtensionArray(pa.array(values, mask=~logged, from_pandas=False))


def simulate_ladder(seed: int = 0, n_families: int = 6, config: SimConfig | None = None) -> Ladder:
    """Simulate ``n_families`` ladders (see the module docstring); deterministic in ``seed``.

    Families beyond the 6 defaults get drawn truths named ``famNNN``. With ``inject_faults`` the
    6 faults go to families 0..5 (modulo ``n_families``)."""
    cfg = config or SimConfig()
    if n_families < 1:
        raise ValueError(f"n_families must be at least 1, got {n_families}")
    if cfg.log_points < 20:
        raise ValueError(f"log_points must be at least 20, got {cfg.log_points}")
    if cfg.inject_faults and (cfg.n_sizes < 5 or cfg.n_budgets < 4):
        raise ValueError("fault injection needs at least 5 sizes and 4 budgets "
                         f"(got {cfg.n_sizes} x {cfg.n_budgets}); or set inject_faults=False")
    truths = _family_truths(n_families, cfg)
    fault_family = ({kind: j % n_families for j, kind in enumerate(FAULT_ORDER)}
                    if cfg.inject_faults else {})
    runs: list[dict[str, Any]] = []
    parts: list[pd.DataFrame] = []
    faults: dict[str, Any] = {}
    for fam, truth in enumerate(truths):
        for p in _family_plans(fam, truth.name, cfg, fault_family):
            curve = _curve(truth, p, cfg, np.random.default_rng([seed, fam, p.index]))
            if p.fault:
                curve, faults[p.fault] = _apply_fault(curve, p, truth.name)
            runs.append(_run_record(p, truth.name))
            logged = np.ones(curve.step.size, dtype=bool)
            parts.append(pd.DataFrame({
                "run_id": p.run_id, "family": truth.name, "step": curve.step.astype(np.int64),
                "tokens": curve.step * float(p.batch_tokens),
                "train_loss": _arrow_losses(np.round(curve.train, 6), logged),
                "eval_loss": _arrow_losses(np.round(curve.eval, 6), curve.is_eval),
                "lr": np.round(curve.lr, 10), "wall_time": np.round(curve.wall, 3)}))
    metrics = pd.concat(parts, ignore_index=True)
    runs_df = pd.DataFrame(runs, columns=RUN_FIELDS)
    if runs_df["run_id"].duplicated().any():
        raise ValueError("the ladder design gives duplicate run ids: sizes or budgets too dense")
    if cfg.inject_faults:
        faults["counts"] = _counts(runs_df, metrics, faults)
    return Ladder(runs_df, metrics, {t.name: t for t in truths}, faults, cfg, seed)


def _counts(runs: pd.DataFrame, metrics: pd.DataFrame, faults: dict[str, Any]) -> dict[str, Any]:
    """Exact totals of the frames, for tests of ingest and clean."""
    extra = sorted(faults[kind]["run_id"] for kind in _EXTRA)
    train = metrics["train_loss"].to_numpy(dtype=float, na_value=np.nan)
    return {"runs": len(runs), "metric_rows": len(metrics),
            "families": int(runs["family"].nunique()),
            "duplicate_steps": int(metrics.duplicated(["run_id", "step"]).sum()),
            "nonfinite_train_rows": int((~np.isfinite(train)).sum()),
            "extra_run_ids": extra, "scaling_points": len(runs) - len(extra)}


# ---------------------------------------------------------------------------------------------
# the demo log tree
# ---------------------------------------------------------------------------------------------

@contextmanager
def _quiet_tensorboardx() -> Iterator[None]:
    """Silence tensorboardX's warning about the NaN/inf losses the diverged runs log on purpose."""
    logger = logging.getLogger("tensorboardX")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def write_demo(out_dir: Path, seed: int = 0, fmt: str = MIXED, n_families: int = 6,
               config: SimConfig | None = None) -> DemoSummary:
    """Simulate a ladder and write it as logs under ``out_dir/<format>/``, plus ``truth.json`` and
    ``faults.json``; then damage files as recorded in ``faults['truncated'|'bad_row']``.

    ``fmt='mixed'``: family ``i`` in ``FORMATS[i % 6]`` (every reader gets exercised); otherwise
    all families in ``fmt``. File faults need csv/jsonl metric files; else they are recorded as
    skipped. Same seed -> byte-identical csv/jsonl/json files. Writes nothing outside ``out_dir``.
    """
    from scaling_pipeline.lib.formats import FORMATS, write_logs  # noqa: PLC0415 - lazy

    if fmt != MIXED and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected {MIXED!r} or one of "
                         f"{', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty: write the demo into a new or empty folder "
                         "(TensorBoard and MLflow writers would add a second copy of every run)")
    ladder = simulate_ladder(seed, n_families, config)
    family_fmt = {name: FORMATS[i % len(FORMATS)] if fmt == MIXED else fmt
                  for i, name in enumerate(ladder.truth)}
    files: list[Path] = []
    with _quiet_tensorboardx():
        for f in dict.fromkeys(family_fmt.values()):
            names = [name for name, g in family_fmt.items() if g == f]
            files += write_logs(f, out_dir / f, ladder.runs[ladder.runs["family"].isin(names)],
                                ladder.metrics[ladder.metrics["family"].isin(names)])
    faults = json.loads(json.dumps(ladder.faults))  # a copy; file facts are added below
    for kind, damage in (("truncated", _truncate), ("bad_row", _bad_row)):
        if kind in faults:
            f = family_fmt[faults[kind]["family"]]
            path = out_dir / f / f"{faults[kind]['run_id']}{TEXT_SUFFIXES.get(f, '')}"
            if f in TEXT_SUFFIXES and path.is_file():
                faults[kind].update(applied=True, file=path.relative_to(out_dir).as_posix(),
                                    **damage(path, faults[kind]))
            else:
                faults[kind].update(applied=False,
                                    reason=f"no csv/jsonl metric file ({f} format)")
    truth = {"seed": seed, "fmt": fmt, "n_families": n_families,
             "law": "L = E + A/N^alpha + B/D^beta (nats/token; N = n_params, D = tokens_planned)",
             "config": asdict(ladder.config),
             "families": {name: {**asdict(t), "format": family_fmt[name]}
                          for name, t in ladder.truth.items()}}
    truth_path, faults_path = out_dir / "truth.json", out_dir / "faults.json"
    truth_path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    faults_path.write_text(json.dumps(faults, indent=2) + "\n", encoding="utf-8")
    return DemoSummary(out_dir.resolve(), seed, fmt, family_fmt, files, len(ladder.runs),
                       len(ladder.metrics), truth_path.resolve(), faults_path.resolve(), faults)


def _data_lines(path: Path) -> tuple[list[bytes], int]:
    """Lines of a metric file (with newlines) and how many header lines precede the data."""
    lines = path.read_bytes().splitlines(keepends=True)
    return lines, 1 if path.suffix == ".csv" else 0


def _truncate(path: Path, fault: dict[str, Any]) -> dict[str, Any]:
    """Cut ``path`` in the middle of the line after its first ``fault['complete_rows']`` rows."""
    lines, header = _data_lines(path)
    index = header + fault["complete_rows"]
    kept = b"".join(lines[:index]) + lines[index][: len(lines[index]) // 2]
    path.write_bytes(kept)
    return {"line": index + 1, "rows_lost": len(lines) - index, "bytes_kept": len(kept)}


_JSON_NUMBER = r'(?P<value>-?[0-9][0-9.eE+-]*|NaN|-?Infinity)'


def _bad_row(path: Path, fault: dict[str, Any]) -> dict[str, Any]:
    """Replace field ``fault['field']`` of the first row logging ``fault['step']`` by BAD_TOKEN
    (CSV: the bare token; JSON lines: the token as a JSON string)."""
    lines, header = _data_lines(path)
    name, step = fault["field"], fault["step"]
    if header:
        columns = lines[0].decode().rstrip("\n").split(",")
        rows = [line.decode().rstrip("\n").split(",") for line in lines[header:]]
        index = header + [int(cells[columns.index("step")]) for cells in rows].index(step)
        cells = rows[index - header]
        original, cells[columns.index(name)] = cells[columns.index(name)], BAD_TOKEN
        lines[index] = (",".join(cells) + "\n").encode()
    else:
        index = [json.loads(line).get("step") for line in lines].index(step)
        text = lines[index].decode()
        match = re.search(rf'"{re.escape(name)}"\s*:\s*{_JSON_NUMBER}', text)
        if match is None:
            raise ValueError(f"{path} line {index + 1}: expected a numeric {name!r}")
        original = match["value"]
        lines[index] = (text[:match.start("value")] + json.dumps(BAD_TOKEN)
                        + text[match.end("value"):]).encode()
    path.write_bytes(b"".join(lines))
    return {"line": index + 1, "original": original}


# ---------------------------------------------------------------------------------------------
# the simulator at benchmark scale
# ---------------------------------------------------------------------------------------------

SCALE_FORMATS = ("csv", "jsonl", "parquet")
_SCALE_COLUMNS = ["run_id", "family", "step", "tokens", "train_loss", "eval_loss", "lr", "wall_time"]


@dataclass(frozen=True)
class ScaleSummary:
    """What :func:`write_scale_logs` wrote."""

    out_dir: Path
    fmt: str
    n_families: int
    n_runs: int
    rows_per_run: int
    n_rows: int  # metric rows (logged steps) in all files
    n_files: int  # metric files (one per run)


def write_scale_logs(out_dir: Path, fmt: str, *, n_families: int = 1000, runs_per_family: int = 100,
                     rows: int = 1_000_000, seed: int = 0) -> ScaleSummary:
    """The simulator at benchmark scale: ``n_families`` ladders (the default truths, then drawn ones)
    of ``runs_per_family`` runs (sizes x budgets grid, no faults), ``rows`` logged steps in all,
    spread evenly over the runs: one metric file per run, ``out_dir/metrics/<family>/<run>.<fmt>``,
    plus ``out_dir/runs.csv``. Rows are computed by DuckDB and streamed a few runs at a time (too
    many rows for pandas; ~1M rows in memory at a time).

    Same loss model as :func:`simulate_ladder` (law + un-annealed excess, cosine LR, warm-up, squash
    near log(vocab)), with deterministic noise hashed from (seed, run, step) instead of numpy draws."""
    import duckdb  # noqa: PLC0415 - lazy: only benchmarks write at scale
    import pyarrow.parquet as pq  # noqa: PLC0415

    from scaling_pipeline.lib.formats.writing import safe_name  # noqa: PLC0415

    if fmt not in SCALE_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(SCALE_FORMATS)}")
    n_sizes = max(1, math.isqrt(runs_per_family))
    n_budgets = runs_per_family // n_sizes
    extra = runs_per_family - n_sizes * n_budgets
    cfg = SimConfig(n_sizes=n_sizes, n_budgets=n_budgets, isoflop_points=extra,
                    isoflop_flops=1e19 if extra else None, inject_faults=False)
    n_runs = n_families * runs_per_family
    per_run = max(1, rows // n_runs)
    runs = []
    for fam, truth in enumerate(_family_truths(n_families, cfg)):
        for p in _family_plans(fam, truth.name, cfg, {}):
            runs.append({**_run_record(p, truth.name), "E": truth.E, "A": truth.A, "B": truth.B,
                         "alpha": truth.alpha, "beta": truth.beta})
    plans = pd.DataFrame(runs).sort_values("run_id", ignore_index=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plans[RUN_FIELDS].to_csv(out_dir / "runs.csv", index=False)
    n_files = len(plans)
    width = math.log(cfg.vocab_size) - cfg.cap_start
    every = max(1, -(-per_run // cfg.eval_points))
    z = ("sqrt(-2 * ln((hash(?, run_id, step, {k}) % 4294967296 + 0.5) / 4294967296)) "
         "* cos(2 * pi() * (hash(?, run_id, step, {k2}) % 4294967296 + 0.5) / 4294967296)")
    query = f"""
        WITH logged AS (
            SELECT p.*, k, greatest(1, CAST(ceil(k * total_steps / ?) AS BIGINT)) AS step
            FROM plans p, range(1, ? + 1) t(k)),
        curve AS (
            SELECT *, 0.5 * (1 + cos(pi() * least(greatest((step - warmup_steps)
                      / greatest(total_steps - warmup_steps, 1), 0), 1))) AS ahead,
                   E + A / pow(n_params, alpha) + B / pow(step * batch_tokens, beta) AS law
            FROM logged),
        capped AS (
            SELECT *, CASE WHEN raw > ? THEN ? + ? * tanh((raw - ?) / ?) ELSE raw END AS clean
            FROM (SELECT *, law + ? * (law - E) * ahead AS raw FROM curve))
        SELECT run_id, family, step, step * batch_tokens AS tokens,
               round(clean * exp(? * {z.format(k=1, k2=2)}), 6) AS train_loss,
               CASE WHEN k % ? = 0 OR k = ? THEN round(clean * exp(? * {z.format(k=3, k2=4)}), 6) END
                   AS eval_loss,
               round(CASE WHEN step < warmup_steps THEN lr * step / warmup_steps
                          ELSE ? * lr + (1 - ?) * lr * ahead END, 10) AS lr,
               round(6 * n_params * step * batch_tokens / ?, 3) AS wall_time
        FROM capped ORDER BY run_id, k"""
    params = [per_run, per_run, cfg.cap_start, cfg.cap_start, width, cfg.cap_start, width, cfg.anneal_gap,
              cfg.train_noise, seed, seed, every, per_run, cfg.eval_noise, seed, seed,
              cfg.final_lr_frac, cfg.final_lr_frac, cfg.throughput]
    text = {"csv": "concat_ws(',', run_id, family, step, tokens, train_loss, "
                   "coalesce(CAST(eval_loss AS VARCHAR), ''), lr, wall_time)",
            "jsonl": f"CAST(to_json(struct_pack({', '.join(_SCALE_COLUMNS)})) AS VARCHAR)"}.get(fmt)
    con = duckdb.connect(config={"temp_directory": tempfile.gettempdir(), "memory_limit": "1GB"})
    chunk = max(1, 1_000_000 // per_run)  # runs per query: ~1M rows, sorted in memory
    try:
        con.execute("SET enable_progress_bar = false")
        for start in range(0, len(plans), chunk):
            part_plans = plans.iloc[start:start + chunk]
            con.register("plans", part_plans)
            sql = f"SELECT {text} AS line FROM ({query})" if text else query
            rows = con.sql(sql, params=params).to_arrow_table()  # in run_id, step order
            for i, (family, run_id) in enumerate(zip(part_plans.family, part_plans.run_id, strict=True)):
                folder = out_dir / "metrics" / safe_name(family)
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{safe_name(run_id)}.{fmt}"
                part = rows.slice(i * per_run, per_run)
                if fmt == "parquet":
                    pq.write_table(part, path)
                else:
                    header = ",".join(_SCALE_COLUMNS) + "\n" if fmt == "csv" else ""
                    path.write_text(header + "\n".join(part.column(0).to_pylist()) + "\n", encoding="utf-8")
            con.unregister("plans")
    finally:
        con.close()
    return ScaleSummary(out_dir, fmt, n_families, n_runs, per_run, per_run * n_runs, n_files)
