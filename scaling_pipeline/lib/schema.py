"""Canonical table layouts shared by ingest, clean, fit and report.

Every reader in :mod:`scaling_pipeline.lib.formats` produces rows in the *staging* layouts below
(``METRIC_COLUMNS``, ``RUN_COLUMNS``); ingest adds ``source_path`` and stores them in the ``raw``
schema of the warehouse. Units: tokens are counted in tokens, losses in nats per token, FLOPs in
floating-point operations, ``wall_time`` in seconds since the run's first launch.
"""

from __future__ import annotations

import math

# (name, DuckDB type) — order matters: staging tables and raw tables use this column order.
METRIC_COLUMNS: list[tuple[str, str]] = [
    ("run_id", "VARCHAR"),  # never NULL
    ("family", "VARCHAR"),  # NULL when the log does not say; filled from run metadata in clean
    ("step", "BIGINT"),  # optimizer steps done; never NULL
    ("tokens", "DOUBLE"),  # tokens seen at this step (NULL: derive from step x batch_tokens)
    ("train_loss", "DOUBLE"),  # nats/token; NULL when not logged; NaN/inf kept as logged
    ("eval_loss", "DOUBLE"),  # nats/token; NULL when not evaluated at this step
    ("lr", "DOUBLE"),
    ("wall_time", "DOUBLE"),  # seconds
    ("record", "BIGINT"),  # 1-based line (text formats) or record/event index in the source
]

RUN_COLUMNS: list[tuple[str, str]] = [
    ("run_id", "VARCHAR"),
    ("family", "VARCHAR"),
    ("n_params", "DOUBLE"),  # parameters N, as the run names them (total or non-embedding: unsaid)
    ("n_params_total", "DOUBLE"),  # all parameters, embeddings included
    ("n_params_non_embedding", "DOUBLE"),  # parameters without the (input/output) embeddings
    ("tokens_planned", "DOUBLE"),  # tokens the LR schedule was planned for (D of a completed run)
    ("batch_tokens", "DOUBLE"),  # tokens per optimizer step
    ("total_steps", "BIGINT"),  # steps the schedule was planned for
    ("warmup_steps", "BIGINT"),
    ("schedule", "VARCHAR"),  # e.g. cosine, linear, constant, wsd
    ("status", "VARCHAR"),  # as logged by the trainer (completed/diverged/...); informative only
    ("unique_tokens", "DOUBLE"),  # unique tokens U in the data (data-constrained runs)
    ("lr", "DOUBLE"),  # peak learning rate
    ("extra", "VARCHAR"),  # JSON object with every other metadata field, as strings/numbers
    ("location", "VARCHAR"),  # where in the source: "line 3", "record 2", "config.yaml", "params", ...
]

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

QUARANTINE_COLUMNS: list[tuple[str, str]] = [
    ("source_path", "VARCHAR"),  # the file or run directory
    ("reader", "VARCHAR"),
    ("location", "VARCHAR"),  # "line 17", "record 3", "file", "metrics/train_loss line 4", ...
    ("field", "VARCHAR"),  # column/key at fault, NULL when the whole record/file is bad
    ("reason", "VARCHAR"),  # human-readable, says what was expected
    ("scope", "VARCHAR"),  # 'field' (that field left out, rest of the row kept), 'row' (row dropped,
                           # rest of file kept) or 'file' (nothing kept)
]

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


def ddl(table: str, columns: list[tuple[str, str]], extra: str = "") -> str:
    """CREATE TABLE IF NOT EXISTS statement for ``columns`` (+ ``extra`` column definitions)."""
    cols = ", ".join(f'"{name}" {typ}' for name, typ in columns)
    if extra:
        cols = f"{cols}, {extra}"
    return f"CREATE TABLE IF NOT EXISTS {table} ({cols})"


def out_of_range(value: float, bounds: tuple[float, float]) -> str | None:
    """Why ``value`` is not a finite number within ``bounds`` (closed), or None when it is."""
    low, high = bounds
    if not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    if not low <= value <= high:
        return f"expected a value in [{low:g}, {high:g}], got {value!r}"
    return None
