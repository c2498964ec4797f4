"""Reason codes of ``clean.exclusions``, the cleaning knobs and the stage summary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

# Reason codes in clean.exclusions (stable: tests, report and UI use them).
DUPLICATE_STEPS = "duplicate_steps"  # rows: a step logged more than once (kept the last write)
CONFLICTING_METADATA = "conflicting_metadata"  # run: sources give different values for one field
CONFLICTING_LOGS = "conflicting_logs"  # run: two files log different values at the same step
NONFINITE_ROWS = "nonfinite_loss"  # rows: NaN/inf/missing losses dropped
WARMUP_ROWS = "warmup"  # rows: warm-up steps cut
DIVERGED = "diverged"  # run: loss blew up (NaN/inf or stayed far above its best)
INCOMPLETE = "incomplete_schedule"  # run: logged steps and tokens short of the plan (beyond the tolerance)
UNKNOWN_SCHEDULE = "unknown_schedule"  # run: progress not comparable with a plan, status not 'completed'
NO_METADATA = "no_metadata"  # run: N (parameters) unknown
NO_LOSS = "no_final_loss"  # run: no finite loss near the end
DOMINATED = "dominated"  # run: worse than a run with fewer parameters and fewer tokens
BELOW_MIN_BUDGET = "below_min_budget"  # run: fewer tokens/steps than the configured minimum
IMPLAUSIBLE_POINT = "implausible_point"  # run: N or D outside the plausible range
IMPLAUSIBLE_LOSS_SCALE = "implausible_loss_scale"  # run: its losses cannot be nats/token (summed, negative)
NOT_BEST_HPARAMS = "not_best_hparams"  # run: a sweep at its (N, D) has a run with a lower final loss
DUPLICATE_SERIES = "duplicate_series"  # run: logs the very loss series of another run at its (N, D)
OVERSHOOT = "overshoot"  # flag (the run keeps its point): logged past its planned steps/tokens

HPARAM_SELECTIONS = ("envelope", "all")
# param_convention -> the run column holding that parameter count (a run without it uses its n_params)
PARAM_COLUMNS = {"non_embedding": "n_params_non_embedding", "total": "n_params_total"}
PARAM_CONVENTIONS = tuple(PARAM_COLUMNS)

COMPLETED_STATUSES = ("completed", "finished", "resumed", "done", "success")


@dataclass(frozen=True)
class FamilyOptions:
    """Cleaning choices made per family (:attr:`CleanConfig.families` overrides them by family).

    hparam_selection: 'envelope' keeps, per (N, D), only the run with the lowest final loss (the best
        of a hyperparameter sweep; the others are excluded as not_best_hparams, naming it); 'all'
        keeps every run. Without sweeps both are the same.
    param_convention: the parameter count used as N: 'non_embedding' (manifest column
        n_params_non_embedding) or 'total' (n_params_total); a run without that column uses its
        n_params (which is then taken to be that count; clean.points.n_params_source says which
        column each point used).
    completion_tolerance: a run is schedule-complete when its logged steps reach its planned steps,
        or its logged tokens its planned tokens, within this fraction (0.001: stopping 3 steps short
        of 176,703 is complete, 177 short is not); logged past 1 + this fraction is an overshoot.
    """

    hparam_selection: str = "envelope"
    param_convention: str = "non_embedding"
    completion_tolerance: float = 0.001

    def __post_init__(self) -> None:
        for name, allowed in (("hparam_selection", HPARAM_SELECTIONS), ("param_convention", PARAM_CONVENTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0 <= self.completion_tolerance < 0.5:
            raise ValueError("completion_tolerance: expected a fraction in [0, 0.5), "
                             f"got {self.completion_tolerance!r}")


@dataclass(frozen=True)
class CleanConfig:
    """Knobs of the cleaning stage (all recorded with the result).

    divergence_nats: a run whose train loss ends more than this many nats above its best logged
        value, or that logs NaN/inf after warm-up, is diverged.
    dominated_tolerance: a run whose final loss is more than this fraction above that of a run
        with no more parameters and no more tokens (same family) is excluded as broken
        (e.g. a far too high learning rate that did not trip the divergence guard).
    smooth_points: number of final logged train losses averaged when there is no final eval.
    min_tokens, min_steps: runs with fewer training tokens / optimizer steps give no point
        (very short runs are dominated by warm-up and bend the fit).
    family: the per-family options of every family not in ``families``.
    families: family name -> its options (overrides ``family``).
    """

    divergence_nats: float = 1.0
    dominated_tolerance: float = 0.10
    smooth_points: int = 5
    min_tokens: float = 0.0
    min_steps: int = 0
    family: FamilyOptions = FamilyOptions()
    families: Mapping[str, FamilyOptions] = field(default_factory=dict)

    def options(self, family: str | None) -> FamilyOptions:
        """The options of ``family``."""
        return self.families.get(family, self.family) if family is not None else self.family

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CleanSummary:
    runs: int
    steps: int
    points: int
    excluded_runs: int
    dropped_rows: dict[str, int]
    excluded_by_reason: dict[str, int]
    families: list[str]
    flagged: dict[str, int] = field(default_factory=dict)  # flag code -> runs (they keep their point)

    def to_metadata(self) -> dict:
        return asdict(self)
