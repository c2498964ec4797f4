"""Reason codes of ``clean.exclusions`` and the stage summary; the cleaning knobs (:class:`CleanConfig`,
:class:`FamilyOptions`) are settings, defined in :mod:`scaling_pipeline.lib.settings`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from scaling_pipeline.lib.settings import (  # noqa: F401 (re-exported for the cleaning modules)
    HPARAM_SELECTIONS, PARAM_COLUMNS, PARAM_CONVENTIONS, CleanConfig, FamilyOptions)

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

COMPLETED_STATUSES = ("completed", "finished", "resumed", "done", "success")


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
    unchanged: bool = False  # raw tables, settings and code as at the last clean: the tables were kept

    def to_metadata(self) -> dict:
        return asdict(self)
