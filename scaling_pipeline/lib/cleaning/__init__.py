"""Clean the raw logs into schedule-valid scaling points (the ``cleaning`` package).

Reads the ``raw`` schema written by :mod:`scaling_pipeline.lib.ingest` and (re)builds the ``clean``
schema in one transaction:

``clean.runs``        one row per run: the metadata its sources agree on (a field two sources give
                      different values is NULL, and the run is excluded as conflicting).
``clean.steps``       one row per (run, step): within a file the last write of a step wins (resumed
                      runs log steps again, also after going back to an earlier checkpoint);
                      identical copies in other files count once; non-finite losses removed,
                      warm-up steps cut.
``clean.points``      one schedule-valid point per completed run: N (parameters, in the family's
                      ``param_convention``), D (tokens seen), C = 6·N·D (FLOPs), final loss
                      (nats/token), peak LR and where they came from; of a hyperparameter sweep
                      (runs of a family at one (N, D)), only the best run unless the family's
                      ``hparam_selection`` is 'all'.
``clean.exclusions``  every run or row that did not make it, with the reason code (kind 'run' or
                      'rows'), and runs that keep their point with a flag (kind 'flag', e.g.
                      overshoot): nothing silently disappears.
``clean.lr_*``        the learning-rate sweeps, their optimum per size and LR*(N) = c·N^-gamma per
                      family (:mod:`.sweeps`).

Only a run that reached the end of its planned schedule (steps or tokens, within the family's
``completion_tolerance``) gives a point: the loss half-way through a cosine schedule is not the loss
of a shorter run. Sources that contradict each other about a run (metadata, or the values logged at
a step in two files) are never resolved by picking one: the run is excluded with both sources named
until the logs are fixed (:func:`merge_sources`).

Modules, one concern each: :mod:`.merge` (sources -> ``clean.runs`` and deduplicated steps, conflicts),
:mod:`.steps` (``clean.steps`` and per-run log summaries), :mod:`.completion` (run verdicts: diverged,
missing metadata, losses in other units, schedule completion), :mod:`.points` (parameter convention,
plausibility of a point), :mod:`.selection` (sweep envelope, duplicated series, dominated runs),
:mod:`.sweeps` (learning-rate tables), :mod:`.stage` (the transaction that writes the tables),
:mod:`.config` (reason codes, knobs, per-family options).
"""

from .config import (BELOW_MIN_BUDGET, COMPLETED_STATUSES, CONFLICTING_LOGS, CONFLICTING_METADATA, DIVERGED,
                     DOMINATED, DUPLICATE_SERIES, DUPLICATE_STEPS, HPARAM_SELECTIONS, IMPLAUSIBLE_LOSS_SCALE,
                     IMPLAUSIBLE_POINT, INCOMPLETE, NO_LOSS, NO_METADATA, NONFINITE_ROWS, NOT_BEST_HPARAMS, OVERSHOOT,
                     PARAM_CONVENTIONS, UNKNOWN_SCHEDULE, WARMUP_ROWS, CleanConfig, CleanSummary, FamilyOptions)
from .merge import merge_sources
from .stage import clean

__all__ = ["BELOW_MIN_BUDGET", "COMPLETED_STATUSES", "CONFLICTING_LOGS", "CONFLICTING_METADATA", "DIVERGED",
           "DOMINATED", "DUPLICATE_SERIES", "DUPLICATE_STEPS", "HPARAM_SELECTIONS", "IMPLAUSIBLE_LOSS_SCALE",
           "IMPLAUSIBLE_POINT", "INCOMPLETE", "NO_LOSS", "NO_METADATA", "NONFINITE_ROWS", "NOT_BEST_HPARAMS",
           "OVERSHOOT", "PARAM_CONVENTIONS", "UNKNOWN_SCHEDULE", "WARMUP_ROWS", "CleanConfig", "CleanSummary",
           "FamilyOptions", "clean", "merge_sources"]
