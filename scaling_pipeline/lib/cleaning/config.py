"""Reason codes of ``clean.exclusions``, the cleaning knobs and the stage summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Reason codes in clean.exclusions (stable: tests, report and UI use them).
DUPLICATE_STEPS = "duplicate_steps"  # rows: a step logged more than once (kept the last write)
CONFLICTING_METADATA = "conflicting_metadata"  # run: sources give different values for one field
CONFLICTING_LOGS = "conflicting_logs"  # run: two files log different values at the same step
NONFINITE_ROWS = "nonfinite_loss"  # rows: NaN/inf/missing losses dropped
WARMUP_ROWS = "warmup"  # rows: warm-up steps cut
DIVERGED = "diverged"  # run: loss blew up (NaN/inf or stayed far above its best)
INCOMPLETE = "incomplete_schedule"  # run: stopped before its planned last step
UNKNOWN_SCHEDULE = "unknown_schedule"  # run: no planned length and no 'completed' status
NO_METADATA = "no_metadata"  # run: N (parameters) unknown
NO_LOSS = "no_final_loss"  # run: no finite loss near the end
DOMINATED = "dominated"  # run: worse than a run with fewer parameters and fewer tokens
BELOW_MIN_BUDGET = "below_min_budget"  # run: fewer tokens/steps than the configured minimum
IMPLAUSIBLE_POINT = "implausible_point"  # run: N, D or loss outside the plausible range

COMPLETED_STATUSES = ("completed", "finished", "resumed", "done", "success")


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
    """

    divergence_nats: float = 1.0
    dominated_tolerance: float = 0.10
    smooth_points: int = 5
    min_tokens: float = 0.0
    min_steps: int = 0

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

    def to_metadata(self) -> dict:
        return asdict(self)
