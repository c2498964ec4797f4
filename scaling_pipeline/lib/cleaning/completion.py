"""Run verdicts: why a run gives no scaling point (diverged, no metadata, schedule not completed)."""

from __future__ import annotations

import json
from collections import defaultdict

import duckdb
import pandas as pd

from scaling_pipeline.lib.schema import RUN_ALIASES

from .config import COMPLETED_STATUSES, DIVERGED, INCOMPLETE, NO_LOSS, NO_METADATA, UNKNOWN_SCHEDULE, CleanConfig
from .points import as_int


def run_verdict(run, stats: pd.DataFrame, cfg: CleanConfig,
                rejected_n_params: dict[str, str]) -> tuple[str, str, int | None] | None:
    """(reason, detail, step) why ``run`` gives no point, or None if it is a valid candidate.
    ``rejected_n_params``: run_id -> the n_params value(s) rejected at ingest, and where."""
    if run.run_id not in stats.index:
        return NO_LOSS, "no logged steps", None
    st = stats.loc[run.run_id]
    if not st.n_steps or pd.isna(st.last_step):
        return NO_LOSS, "no logged steps", None
    if not pd.isna(st.first_nonfinite_step):
        step = int(st.first_nonfinite_step)
        healthy = "" if pd.isna(st.last_healthy_step) else (
            f"; last step within {cfg.divergence_nats:g} nat of its best loss: {int(st.last_healthy_step)}")
        return DIVERGED, f"non-finite loss (NaN/inf) from step {step}{healthy}", step
    if not pd.isna(st.last_train) and not pd.isna(st.best_train) and st.last_train > st.best_train + cfg.divergence_nats:
        step = as_int(st.last_healthy_step)
        return (DIVERGED, f"train loss ended at {st.last_train:.3f} nats, {st.last_train - st.best_train:.2f} above "
                f"its best {st.best_train:.3f}; last healthy step {step}", step)
    if run.status == "diverged":
        return DIVERGED, "trainer reported status 'diverged'", as_int(st.last_step)
    if pd.isna(run.n_params):
        given = rejected_n_params.get(run.run_id)
        return NO_METADATA, "number of parameters unknown: " + (
            f"{given} was rejected at ingest (reason in raw.quarantine)" if given
            else "no run metadata names n_params"), None
    if not pd.isna(run.total_steps):
        if st.last_step < run.total_steps:
            return (INCOMPLETE, f"stopped at step {int(st.last_step)} of {int(run.total_steps)} planned "
                    f"({st.last_step / run.total_steps:.0%}); a mid-schedule loss is not a valid point",
                    int(st.last_step))
    elif run.status not in COMPLETED_STATUSES:
        return (UNKNOWN_SCHEDULE, "planned schedule length unknown (no total_steps/tokens_planned) and status "
                f"is {run.status!r}, not completed", as_int(st.last_step))
    return None


def rejected_at_ingest(con: duckdb.DuckDBPyConnection, field: str) -> dict[str, str]:
    """run_id -> "<key> = <value> in <source>" for runs without ``field`` whose metadata gave one that
    ingest rejected (a rejected value stays in ``extra`` under its source key)."""
    aliases = set(RUN_ALIASES[field])
    out: dict[str, list[str]] = defaultdict(list)
    for run_id, source, extra in con.execute(
            f"""SELECT run_id, concat_ws(' ', source_path, location), extra FROM raw.runs
                WHERE {field} IS NULL ORDER BY ALL""").fetchall():
        given = [f"{key} = {value!r}" for key, value in json.loads(extra or "{}").items()
                 if key.strip().lower() in aliases]
        if given:
            out[run_id].append(f"{', '.join(given)} in {source}")
    return {run_id: "; ".join(values) for run_id, values in out.items()}
