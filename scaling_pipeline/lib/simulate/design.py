"""The ladder design of the simulator: family truths, the configuration, the runs to simulate."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from scaling_pipeline.lib.curves.schedule import Schedule
from scaling_pipeline.lib.laws import Chinchilla

FAULT_ORDER = ("bad_row", "truncated", "resumed", "diverged", "diverged_silent", "killed")
RUN_FIELDS = ["run_id", "family", "n_params", "n_params_total", "n_params_non_embedding", "tokens_planned",
              "batch_tokens", "total_steps", "warmup_steps", "schedule", "status", "unique_tokens", "lr"]
# Manifest columns describing a run's schedule beyond RUN_FIELDS (lib.curves.schedule.Schedule keys)
SCHEDULE_FIELDS = ["end_lr", "decay_start", "stage_a_steps", "lr_b"]


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
    Schedules: the runs of a family cycle through ``schedules`` (:data:`SCHEDULES`: cosine, wsd,
    constant_cooldown, two_stage); every one warms up linearly over ``warmup_frac`` of the steps and
    ends at ``final_lr_frac`` of the peak LR. Loss curves follow a Multi-Power Law whose loss-drop
    shape ``mpl_shape = (C, beta, gamma)`` is shared by the family and whose weight B makes the
    drop at the middle of the ladder ``anneal_gap`` of L - E (see :mod:`.loss`).
    Shared size laws (``shared_size_law``, off by default): the runs of one size share one batch size (the
    one ``_plan`` gives the size's middle grid budget, so steps grow with the budget) and, per peak LR, one
    Multi-Power Law (:func:`.loss.size_mpl`), as a real ladder whose runs of one size differ only in where
    the LR decays; the final loss is then that law's, within 0.1% of L(N, D) for the first schedule kind
    (see :mod:`.loss`).
    Runs in flight: ``in_flight`` fractions, one extra run per fraction and family, stopped there
    (status 'running'; the manifest keeps the planned end); the last one of each family has
    ``off_track`` nats added to its whole curve (0: all on track).
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
    anneal_gap: float = 0.4  # drop of a full LR decay at mid-ladder, fraction of L - E (scale logs: the excess)
    train_noise: float = 0.012
    eval_noise: float = 0.003
    vocab_size: int = 50257
    cap_start: float = 8.0  # nats; losses above are squashed below log(vocab_size)
    throughput: float = 4e15  # FLOP/s of the simulated cluster (wall_time)
    inject_faults: bool = True
    lr_sweep: tuple[float, ...] = ()
    lr_law: tuple[float, float] = (1.6, 0.4)
    lr_penalty: float = 0.05  # nats per ln(lr / LR*)^2
    schedules: tuple[str, ...] = ("cosine",)
    mpl_shape: tuple[float, float, float] = (2.0, 0.6, 0.6)  # C (absolute LR units), beta, gamma
    in_flight: tuple[float, ...] = ()
    off_track: float = 0.0  # nats
    shared_size_law: bool = False



def _round_sig(x: float, digits: int = 2) -> float:
    return float(f"{x:.{digits - 1}e}")


def _sizes(cfg: SimConfig) -> list[float]:
    return [_round_sig(n) for n in np.geomspace(cfg.n_min, cfg.n_max, cfg.n_sizes)]


def _budgets(cfg: SimConfig) -> list[float]:
    return [_round_sig(r) for r in np.geomspace(cfg.tpp_min, cfg.tpp_max, cfg.n_budgets)]


def family_truths(n_families: int, cfg: SimConfig) -> list[FamilyTruth]:
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


def schedule_of(p: Plan, cfg: SimConfig) -> Schedule:
    """The learning-rate schedule of run ``p`` (absolute LR, optimizer steps)."""
    end, total = cfg.final_lr_frac * p.lr, p.total_steps
    base = {"peak_lr": p.lr, "warmup_steps": p.warmup_steps, "total_steps": total}
    if p.schedule == "cosine":
        return Schedule("cosine", end_lr=end, **base)
    if p.schedule == "wsd":  # stable, then linear decay over the last 20 % of the steps
        return Schedule("wsd_linear_decay", end_lr=end, decay_start=max(p.warmup_steps, round(0.8 * total)), **base)
    if p.schedule == "constant_cooldown":  # constant, then a geometric cool-down over the last 10 %
        return Schedule("wsd_exponential_decay", end_lr=end, decay_start=max(p.warmup_steps, round(0.9 * total)),
                        **base)
    if p.schedule == "two_stage":  # the peak LR, then a tenth of it from 75 % of the steps
        return Schedule("two_stage", stage_a_steps=max(p.warmup_steps, round(0.75 * total)), lr_b=end, **base)
    raise ValueError(f"unknown simulated schedule {p.schedule!r}; expected one of {', '.join(SCHEDULES)}")


SCHEDULES = ("cosine", "wsd", "constant_cooldown", "two_stage")


@dataclass(frozen=True)
class Plan:
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
    schedule: str = "cosine"  # a key of SCHEDULES
    stop_frac: float = 1.0  # a run in flight stops at this fraction of its steps
    offset: float = 0.0  # nats added to the whole curve (a planted off-track run)


def _size_tag(n: float) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def base_lr(n_params: float) -> float:
    """Peak learning rate of a grid run with ``n_params`` parameters (3 significant digits)."""
    return _round_sig(2e-3 * (n_params / 1e7) ** -0.25, 3)


def _plan(run_id: str, index: int, n: float, tokens: float, cfg: SimConfig) -> Plan:
    """Run of ``n`` parameters planned for about ``tokens`` tokens (rounded to whole steps); the batch is
    sized for ``target_steps`` steps at ``tokens`` (with ``shared_size_law``: at the size's middle budget)."""
    sized_for = n * math.sqrt(cfg.tpp_min * cfg.tpp_max) if cfg.shared_size_law else tokens
    batch = 2 ** round(math.log2(sized_for / cfg.target_steps))
    batch = int(min(max(batch, cfg.min_batch_tokens), cfg.max_batch_tokens))
    steps = max(round(tokens / batch), 10)
    lr = base_lr(n)
    return Plan(run_id, index, n, float(steps * batch), batch, steps,
                 max(1, round(cfg.warmup_frac * steps)), lr)


# Grid point (size index, budget index) each fault uses.
_FAULT_POINTS = {"bad_row": (2, 1), "truncated": (3, 2), "resumed": (4, 3), "diverged": (3, 2),
                 "diverged_silent": (2, 3), "killed": (4, 1)}
# Extra runs: (run-id suffix, peak-LR multiplier, logged status).
EXTRA_RUNS = {"truncated": ("rerun", 1, "completed"), "diverged": ("lr4x", 4, "diverged"),
              "diverged_silent": ("lr6x", 6, "completed"), "killed": ("try1", 1, "running")}


def family_plans(fam: int, name: str, cfg: SimConfig, faults: dict[str, int]) -> list[Plan]:
    """Grid, IsoFLOP and fault-carrying extra runs of family ``fam``.

    ``faults``: fault kind -> family index it is injected into."""
    sizes, budgets = _sizes(cfg), _budgets(cfg)
    plans: list[Plan] = []
    grid: dict[tuple[int, int], Plan] = {}
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
    if unknown := set(cfg.schedules) - set(SCHEDULES):
        raise ValueError(f"unknown schedules {sorted(unknown)}; expected some of {', '.join(SCHEDULES)}")
    plans = [replace(p, schedule=cfg.schedules[p.index % len(cfg.schedules)]) for p in plans]
    grid = {key: plans[p.index] for key, p in grid.items()}
    for kind in FAULT_ORDER:
        if faults.get(kind) != fam:
            continue
        base = grid[_FAULT_POINTS[kind]]
        if kind in EXTRA_RUNS:
            suffix, lr_mult, status = EXTRA_RUNS[kind]
            plans.append(replace(base, run_id=f"{base.run_id}-{suffix}", index=len(plans),
                                 lr=base.lr * lr_mult, status=status, fault=kind))
        else:
            plans[base.index] = replace(base, fault=kind)
    for k, frac in enumerate(cfg.in_flight):  # the larger budgets, sizes from the middle of the ladder up
        base = grid[(k + len(sizes) // 2) % len(sizes), len(budgets) - 1 - k % 2]
        plans.append(replace(base, run_id=f"{base.run_id}-live{k}", index=len(plans), status="running",
                             schedule=cfg.schedules[k % len(cfg.schedules)], stop_frac=frac,
                             offset=cfg.off_track if k == len(cfg.in_flight) - 1 else 0.0))
    return plans

