"""The simulated ladder as frames: runs, logged metrics, truth and faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .design import (EXTRA_RUNS, FAULT_ORDER, RUN_FIELDS, SCHEDULE_FIELDS, FamilyTruth, Plan, SimConfig,
                     family_plans, family_truths, schedule_of)
from .faults import apply_fault, last_at_most
from .loss import run_curve


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
    in_flight: dict[str, dict[str, Any]] = field(default_factory=dict)  # run_id -> what was planted

def run_record(p: Plan, family: str, cfg: SimConfig) -> dict[str, Any]:
    """The RUN_FIELDS of run ``p`` (unknown values NaN), then its schedule's SCHEDULE_FIELDS."""
    schedule = schedule_of(p, cfg)
    described = {name: np.nan if getattr(schedule, name) is None else getattr(schedule, name)
                 for name in SCHEDULE_FIELDS}
    return {"run_id": p.run_id, "family": family, "n_params": p.n_params, "n_params_total": np.nan,
            "n_params_non_embedding": np.nan, "tokens_planned": p.tokens_planned,
            "batch_tokens": float(p.batch_tokens), "total_steps": p.total_steps, "warmup_steps": p.warmup_steps,
            "schedule": schedule.kind, "status": p.status, "unique_tokens": np.nan, "lr": p.lr, **described}


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
    truths = family_truths(n_families, cfg)
    fault_family = ({kind: j % n_families for j, kind in enumerate(FAULT_ORDER)}
                    if cfg.inject_faults else {})
    runs: list[dict[str, Any]] = []
    parts: list[pd.DataFrame] = []
    faults: dict[str, Any] = {}
    in_flight: dict[str, dict[str, Any]] = {}
    for fam, truth in enumerate(truths):
        for p in family_plans(fam, truth.name, cfg, fault_family):
            curve = run_curve(truth, p, cfg, np.random.default_rng([seed, fam, p.index]))
            if p.fault:
                curve, faults[p.fault] = apply_fault(curve, p, truth.name)
            if p.stop_frac < 1.0:
                curve = curve.take(np.arange(last_at_most(curve.step, p.stop_frac * p.total_steps) + 1))
                in_flight[p.run_id] = {"family": truth.name, "schedule": p.schedule, "last_step": int(curve.step[-1]),
                                       "total_steps": p.total_steps, "offset": p.offset,
                                       "law": float(truth.loss(p.n_params, p.tokens_planned))}
            runs.append(run_record(p, truth.name, cfg))
            logged = np.ones(curve.step.size, dtype=bool)
            parts.append(pd.DataFrame({
                "run_id": p.run_id, "family": truth.name, "step": curve.step.astype(np.int64),
                "tokens": curve.step * float(p.batch_tokens),
                "train_loss": _arrow_losses(np.round(curve.train, 6), logged),
                "eval_loss": _arrow_losses(np.round(curve.eval, 6), curve.is_eval),
                "lr": np.round(curve.lr, 10), "wall_time": np.round(curve.wall, 3)}))
    metrics = pd.concat(parts, ignore_index=True)
    runs_df = pd.DataFrame(runs, columns=[*RUN_FIELDS, *SCHEDULE_FIELDS])
    if runs_df["run_id"].duplicated().any():
        raise ValueError("the ladder design gives duplicate run ids: sizes or budgets too dense")
    if cfg.inject_faults:
        faults["counts"] = _counts(runs_df, metrics, faults, len(in_flight))
    return Ladder(runs_df, metrics, {t.name: t for t in truths}, faults, cfg, seed, in_flight)


def _counts(runs: pd.DataFrame, metrics: pd.DataFrame, faults: dict[str, Any], n_in_flight: int) -> dict[str, Any]:
    """Exact totals of the frames, for tests of ingest and clean."""
    extra = sorted(faults[kind]["run_id"] for kind in EXTRA_RUNS)
    train = metrics["train_loss"].to_numpy(dtype=float, na_value=np.nan)
    return {"runs": len(runs), "metric_rows": len(metrics),
            "families": int(runs["family"].nunique()),
            "duplicate_steps": int(metrics.duplicated(["run_id", "step"]).sum()),
            "nonfinite_train_rows": int((~np.isfinite(train)).sum()),
            "extra_run_ids": extra, "scaling_points": len(runs) - len(extra) - n_in_flight}

