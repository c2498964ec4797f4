"""What the readers produce: staging layouts, column aliases and plausible ranges.

Every reader in :mod:`scaling_pipeline.lib.formats` produces rows in the *staging* layouts below
(``METRIC_COLUMNS``, ``RUN_COLUMNS``: the columns of ``raw.metrics``/``raw.runs`` in
:mod:`scaling_pipeline.lib.tables`); ingest adds ``source_path`` and stores them in the ``raw``
schema of the warehouse. Units: tokens are counted in tokens, losses in nats per token, FLOPs in
floating-point operations, ``wall_time`` in seconds since the run's first launch.
"""

from __future__ import annotations

import math

from scaling_pipeline.lib.tables import RAW_METRICS, RAW_RUNS

# (name, DuckDB type) of the staging layouts: the raw tables' columns (lib/tables.py) without source_path.
METRIC_COLUMNS: list[tuple[str, str]] = RAW_METRICS.pairs(without=("source_path",))
RUN_COLUMNS: list[tuple[str, str]] = RAW_RUNS.pairs(without=("source_path",))

# Plausible run metadata: closed ranges in the units of RUN_COLUMNS. A value outside its range, or not
# finite, is rejected at ingest (raw.quarantine) and left out of the run's metadata.
TOKEN_RANGE = (1.0, 1e16)  # tokens (1e16: ~100x the largest training runs known)
STEP_RANGE = (1, 10**15)  # optimizer steps
RUN_RANGES: dict[str, tuple[float, float]] = {
    "n_params": (1e3, 1e15),
    "n_params_total": (1e3, 1e15),
    "n_params_non_embedding": (1e3, 1e15),
    "tokens_planned": TOKEN_RANGE,
    "batch_tokens": TOKEN_RANGE,
    "unique_tokens": TOKEN_RANGE,
    "total_steps": STEP_RANGE,
    "warmup_steps": (0, STEP_RANGE[1]),
    "lr": (1e-10, 1e3),
}
# A mean cross-entropy in nats per token is positive and, for any model that learnt something, below
# log(vocabulary size) (20 nats = log of a 4.9e8-token vocabulary). A loss outside is in other units
# (summed over a batch or sequence, a log-likelihood, ...) and is never fitted.
LOSS_RANGE = (1e-6, 20.0)

# Recognised column aliases (lower-cased, exact match) -> canonical metric column.
METRIC_ALIASES: dict[str, list[str]] = {
    "run_id": ["run_id", "run", "run_name", "runid", "name"],
    "family": ["family", "model_family"],
    "step": ["step", "_step", "global_step", "iteration", "iter", "steps"],
    "tokens": ["tokens", "tokens_seen", "num_tokens", "n_tokens", "consumed_tokens", "train/tokens"],
    "train_loss": ["train_loss", "loss", "train/loss", "training_loss", "loss/train", "train"],
    "eval_loss": ["eval_loss", "val_loss", "eval/loss", "val/loss", "validation_loss", "loss/eval",
                  "loss/val", "valid_loss"],
    "lr": ["lr", "learning_rate", "train/lr"],
    "wall_time": ["wall_time", "_runtime", "elapsed", "time_s"],
}

# Run metadata (manifests and each format's config/params/hparams), never metric tables: here
# ``tokens``/``n_tokens`` name the tokens the run was planned for, in METRIC_ALIASES the tokens seen.
RUN_ALIASES: dict[str, list[str]] = {
    "run_id": ["run_id", "run", "run_name", "runid", "name"],
    "family": ["family", "model_family"],
    "n_params": ["n_params", "params", "num_params", "parameters", "model_size", "n"],
    "n_params_total": ["n_params_total", "total_params", "num_params_total"],
    "n_params_non_embedding": ["n_params_non_embedding", "non_embedding_params", "n_params_nonembedding",
                               "num_params_non_embedding"],
    "tokens_planned": ["tokens_planned", "total_tokens", "planned_tokens", "train_tokens",
                       "n_tokens", "tokens"],
    "batch_tokens": ["batch_tokens", "tokens_per_step", "batch_size_tokens"],
    "total_steps": ["total_steps", "max_steps", "train_steps", "num_steps"],
    "warmup_steps": ["warmup_steps", "warmup"],
    "schedule": ["schedule", "lr_schedule", "scheduler", "decay"],
    "status": ["status", "state"],
    "unique_tokens": ["unique_tokens", "unique", "u"],
    "lr": ["lr", "peak_lr", "learning_rate", "max_lr"],
}


def out_of_range(value: float, bounds: tuple[float, float]) -> str | None:
    """Why ``value`` is not a finite number within ``bounds`` (closed), or None when it is."""
    low, high = bounds
    if not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    if not low <= value <= high:
        return f"expected a value in [{low:g}, {high:g}], got {value!r}"
    return None
