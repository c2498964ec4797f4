"""Run verdicts: why a run gives no scaling point (diverged, no metadata, losses in other units,
schedule not completed), and whether a completed run overshot its plan."""

from __future__ import annotations

import json
from collections import defaultdict

import pandas as pd

from scaling_pipeline.lib.schema import LOSS_RANGE, RUN_ALIASES, out_of_range

from .config import (COMPLETED_STATUSES, DIVERGED, IMPLAUSIBLE_LOSS_SCALE, INCOMPLETE, NO_LOSS, NO_METADATA,
                     PARAM_COLUMNS, UNKNOWN_SCHEDULE, CleanConfig, FamilyOptions)
from .points import as_int

Verdict = tuple[str, str, int | None]  # (reason, detail, step)


def run_verdict(run, n_params: float | None, stats: pd.DataFrame, cfg: CleanConfig, opts: FamilyOptions,
                rejected: dict[str, str]) -> Verdict | None:
    """Why ``run`` gives no point, or None if it is a valid candidate. ``n_params``: N in the family's
    parameter convention (None: unknown); ``rejected``: run_id -> parameter counts rejected at ingest."""
    if run.run_id not in stats.index:
        return NO_LOSS, "no logged steps", None
    st = stats.loc[run.run_id]
    if not st.n_steps or pd.isna(st.last_step):
        return NO_LOSS, "no logged steps", None
    # the whole series in other units (a diverged run's median can be huge, but its lowest loss is not)
    if not pd.isna(st.median_loss) and out_of_range(float(st.min_loss), LOSS_RANGE) and (
            problem := out_of_range(float(st.median_loss), LOSS_RANGE)):
        return (IMPLAUSIBLE_LOSS_SCALE, f"logged losses have median {st.median_loss:.6g} and lowest {st.min_loss:.6g}, "
                f"not a loss in nats per token ({problem}): summed over a batch or sequence, or not a "
                "cross-entropy?", None)
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
    if n_params is None:
        column = PARAM_COLUMNS[opts.param_convention]
        given = rejected.get(run.run_id)
        return NO_METADATA, f"number of parameters unknown (param_convention {opts.param_convention}): " + (
            f"{given} was rejected at ingest (reason in raw.quarantine)" if given
            else f"no run metadata names {column} or n_params"), None
    return schedule_verdict(run, st, opts)


def steps_are_tokens(st) -> bool:
    """Whether a run's steps are its tokens: a table with tokens but no step column gets step = tokens
    (see ``formats.metric_sql``), which is no step progress to compare with ``total_steps``."""
    return not pd.isna(st.last_tokens) and float(st.last_step) == round(float(st.last_tokens))


def _progress(run, st) -> list[tuple[str, float, float]]:
    """(what, logged, planned) for each measure of progress known on both sides: optimizer steps
    (planned: total_steps, or tokens_planned / batch_tokens; not for a run whose steps are its tokens) and
    tokens (logged tokens column; planned: tokens_planned, else total_steps · batch_tokens)."""
    out = []
    derived = steps_are_tokens(st)
    if not pd.isna(run.total_steps) and not derived:
        out.append(("step", float(st.last_step), float(run.total_steps)))
    planned_tokens = run.tokens_planned
    if pd.isna(planned_tokens) and derived and not (pd.isna(run.total_steps) or pd.isna(run.batch_tokens)):
        planned_tokens = float(run.total_steps) * float(run.batch_tokens)
    if not pd.isna(planned_tokens) and not pd.isna(st.last_tokens):
        out.append(("tokens", float(st.last_tokens), float(planned_tokens)))
    return out


def _describe(progress: list[tuple[str, float, float]]) -> str:
    return " and ".join(f"step {logged:.0f} of {planned:.0f} planned ({logged / planned:.1%})" if what == "step"
                        else f"{logged:.4g} tokens of {planned:.4g} planned ({logged / planned:.1%})"
                        for what, logged, planned in progress)


def schedule_verdict(run, st, opts: FamilyOptions) -> Verdict | None:
    """INCOMPLETE unless the logged steps or tokens reach the plan within ``opts.completion_tolerance``;
    UNKNOWN_SCHEDULE, naming the missing fact, when progress cannot be compared with a plan and the
    status does not say completed."""
    progress = _progress(run, st)
    if progress:
        if max(logged / planned for _, logged, planned in progress) >= 1 - opts.completion_tolerance:
            return None
        return (INCOMPLETE, f"stopped at {_describe(progress)}; a mid-schedule loss is not a valid point",
                int(st.last_step))
    if run.status in COMPLETED_STATUSES:
        return None
    if steps_are_tokens(st) and not pd.isna(run.total_steps):
        missing = (f"planned steps known ({run.total_steps:.0f}) but not the steps taken: the log has tokens and no "
                   "step column, and the run metadata no tokens_planned or batch_tokens")
    elif pd.isna(run.tokens_planned):
        missing = "planned schedule length unknown: the run metadata gives neither total_steps nor tokens_planned"
    else:
        missing = (f"planned tokens known ({run.tokens_planned:.4g}) but not the tokens seen: the log has no "
                   "tokens column and the run metadata no batch_tokens or total_steps")
    return UNKNOWN_SCHEDULE, f"{missing}; status is {run.status!r}, not completed", as_int(st.last_step)


def overshoot(run, st, opts: FamilyOptions) -> str | None:
    """Why a complete run counts as logged past its plan (beyond ``opts.completion_tolerance``), or None."""
    over = [p for p in _progress(run, st) if p[1] > p[2] * (1 + opts.completion_tolerance)]
    return f"logged to {_describe(over)}: trained past its schedule" if over else None


def rejected_at_ingest(meta: pd.DataFrame, fields: tuple[str, ...]) -> dict[str, str]:
    """run_id -> "<key> = <value> in <source>" for runs without any of ``fields`` whose metadata gave a
    value that ingest rejected (a rejected value stays in ``extra`` under its source key). ``meta``: the
    run metadata rows under the logged run ids (columns run_id, source_path, location, extra and ``fields``;
    the TEMP table ``run_meta`` of :func:`merge_sources`)."""
    aliases = {alias for field in fields for alias in RUN_ALIASES[field]}
    rows = meta[meta[list(fields)].isna().all(axis=1)]
    out: dict[str, list[str]] = defaultdict(list)
    for r in rows.sort_values(["run_id", "source_path", "location"]).itertuples(index=False):
        source = " ".join(str(v) for v in (r.source_path, r.location) if isinstance(v, str))
        given = [f"{key} = {value!r}" for key, value in json.loads(r.extra if isinstance(r.extra, str) else "{}").items()
                 if key.strip().lower() in aliases]
        if given:
            out[r.run_id].append(f"{', '.join(given)} in {source}")
    return {run_id: "; ".join(values) for run_id, values in out.items()}
