"""The cleaning stage: rebuild the ``clean`` schema from ``raw`` in one transaction, or keep it when nothing it is
made from changed (``clean.inputs`` holds the digest of raw.metrics, raw.runs, the settings, the code and the clean
tables written from them)."""

from __future__ import annotations

import duckdb
import pandas as pd

from scaling_pipeline.lib.digest import inputs_digest, stored_digest
from scaling_pipeline.lib.tables import (CLEAN_EXCLUSIONS, CLEAN_INPUTS, CLEAN_LR_OPTIMA, CLEAN_LR_SCALING,
                                         CLEAN_LR_SWEEPS, CLEAN_POINTS, CLEAN_RUNS, CLEAN_STEPS, RAW_METRICS, RAW_RUNS,
                                         insert_frame, replace, transaction)

from .completion import Verdict, overshoot, rejected_at_ingest, run_verdict
from .config import (BELOW_MIN_BUDGET, DOMINATED, DUPLICATE_SERIES, DUPLICATE_STEPS, IMPLAUSIBLE_LOSS_SCALE,
                     IMPLAUSIBLE_POINT, NO_LOSS, NO_METADATA, NONFINITE_ROWS, NOT_BEST_HPARAMS, OVERSHOOT,
                     PARAM_COLUMNS, WARMUP_ROWS, CleanConfig, CleanSummary)
from .merge import merge_sources
from .points import TRAIN_SHRUNK_LINE, as_int, first_finite, implausible_loss, implausible_point, params_used, product
from .selection import drop_dominated, drop_duplicate_series, select_envelope, sweep_groups
from .steps import build_steps, duplicate_steps, final_losses, run_stats, steps_from_tokens
from .sweeps import write_lr_tables

_EXCLUSION_COLUMNS = CLEAN_EXCLUSIONS.names
_POINT_COLUMNS = CLEAN_POINTS.names
_OUTPUTS = (CLEAN_RUNS, CLEAN_STEPS, CLEAN_POINTS, CLEAN_EXCLUSIONS, CLEAN_LR_SWEEPS, CLEAN_LR_OPTIMA, CLEAN_LR_SCALING)


def clean(con: duckdb.DuckDBPyConnection, config: CleanConfig = CleanConfig()) -> CleanSummary:
    """Rebuild the ``clean`` schema from ``raw`` in one transaction and summarise what was dropped. When raw,
    ``config`` and the code are as at the last clean and the clean tables still hold what it wrote, they are kept
    (``unchanged`` in the summary): a rebuild would write the very same rows."""
    with transaction(con):
        inputs = inputs_digest(con, (RAW_METRICS, RAW_RUNS), config.to_dict())
        if stored_digest(con, CLEAN_INPUTS) == _written(con, inputs):
            return _summary(con, unchanged=True)
        _clean(con, config)
        replace(con, CLEAN_INPUTS)
        con.execute(f"INSERT INTO {CLEAN_INPUTS.name} VALUES (?)", [_written(con, inputs)])
        return _summary(con)


def _written(con: duckdb.DuckDBPyConnection, inputs: str) -> str:
    """The digest of the inputs (``inputs``) together with what the clean tables hold now."""
    return inputs_digest(con, _OUTPUTS, {"inputs": inputs})


def _summary(con: duckdb.DuckDBPyConnection, unchanged: bool = False) -> CleanSummary:
    """What the clean tables hold: runs, steps, points, exclusions by reason, dropped rows, flags."""
    def counts(kind: str, value: str) -> dict[str, int]:
        sql = f"SELECT reason, {value} FROM clean.exclusions WHERE kind = ? GROUP BY reason ORDER BY reason"
        return {str(r): int(n) for r, n in con.execute(sql, [kind]).fetchall()}

    rows = counts("rows", "coalesce(sum(n_rows), 0)")
    excluded = counts("run", "count(*)")
    return CleanSummary(
        runs=con.execute("SELECT count(*) FROM clean.runs").fetchone()[0],
        steps=con.execute("SELECT count(*) FROM clean.steps").fetchone()[0],
        points=con.execute("SELECT count(*) FROM clean.points").fetchone()[0],
        excluded_runs=sum(excluded.values()),
        dropped_rows={r: rows.get(r, 0) for r in (DUPLICATE_STEPS, NONFINITE_ROWS, WARMUP_ROWS)},
        excluded_by_reason=excluded,
        families=[f for (f,) in con.execute("SELECT DISTINCT family FROM clean.points ORDER BY 1").fetchall()],
        flagged=counts("flag", "count(*)"),
        unchanged=unchanged,
    )


def _final_loss(run_id: str, st, at_end: pd.DataFrame, evals: pd.DataFrame) -> tuple[float, str, float | None] | None:
    """(loss at the last logged step in nats/token, loss_source, its standard error or None): the eval there (error
    not estimated), else the estimate from the last train losses (:func:`.steps.final_losses`); None when the run
    has neither."""
    if run_id in evals.index and evals.loc[run_id, "final_eval_step"] >= st.last_step:
        return float(evals.loc[run_id, "final_eval"]), "final_eval", None
    if run_id in at_end.index:
        n = int(at_end.loc[run_id, "n_fitted"])
        return (float(at_end.loc[run_id, "train_at_end"]), f"{TRAIN_SHRUNK_LINE}{n}",
                first_finite(at_end.loc[run_id, "train_at_end_se"]))
    return None


def _point(run, st, n_params: float, final: tuple[float, str, float | None] | None,
           cfg: CleanConfig) -> dict | Verdict:
    """The scaling point of a run that passed its verdict (without the family's convention columns),
    or why it gives none."""
    if final is None:
        return NO_LOSS, "no finite eval or train loss at the end of the run", as_int(st.last_step)
    loss, source, loss_se = final
    tokens = first_finite(st.last_tokens, product(st.last_step, run.batch_tokens), run.tokens_planned)
    if tokens is None:
        return NO_METADATA, "tokens seen unknown (no tokens column, batch_tokens or plan)", None
    if tokens < cfg.min_tokens or st.last_step < cfg.min_steps:
        return (BELOW_MIN_BUDGET, f"{tokens:.3g} tokens / {int(st.last_step)} steps is below the minimum "
                f"({cfg.min_tokens:.3g} tokens / {cfg.min_steps} steps)", as_int(st.last_step))
    if problem := implausible_point(n_params, tokens):
        return IMPLAUSIBLE_POINT, problem, as_int(st.last_step)
    if problem := implausible_loss(loss):
        return IMPLAUSIBLE_LOSS_SCALE, problem, as_int(st.last_step)
    return dict(run_id=run.run_id, family=run.family, n_params=n_params, n_tokens=tokens,
                flops=6.0 * n_params * tokens, loss=loss, loss_source=source, loss_se=loss_se,
                final_step=int(st.last_step),
                unique_tokens=first_finite(run.unique_tokens), lr=first_finite(run.lr, st.max_logged_lr),
                series=st.series)


def _clean(con: duckdb.DuckDBPyConnection, cfg: CleanConfig) -> None:
    conflicts = merge_sources(con)
    dupes = duplicate_steps(con)
    token_clashes = steps_from_tokens(con)
    build_steps(con)
    run_meta = con.execute("SELECT * FROM run_meta").df()  # merge_sources' metadata under the logged run ids
    rejected = {conv: rejected_at_ingest(run_meta, (column, "n_params")) for conv, column in PARAM_COLUMNS.items()}

    runs = con.execute("SELECT * FROM clean.runs ORDER BY run_id").df()
    stats = run_stats(con, cfg.divergence_nats)
    at_end, evals = final_losses(con, cfg.smooth_points)

    exclusions: list[dict] = []
    family_of = dict(zip(runs.run_id, runs.family))

    def exclude(run_id: str, kind: str, reason: str, detail: str, step=None, n_rows=None) -> None:
        exclusions.append(dict(run_id=run_id, family=family_of.get(run_id), kind=kind, reason=reason,
                               detail=detail, step=step, n_rows=n_rows))

    for run_id, dropped, first_step in dupes:
        exclude(run_id, "rows", DUPLICATE_STEPS,
                f"{int(dropped)} duplicate step rows dropped (kept the last write of each step in its file; "
                "equal copies in other files count once)", int(first_step), int(dropped))
    for run_id, dropped, first_step in token_clashes:
        exclude(run_id, "rows", DUPLICATE_STEPS,
                f"{dropped} rows dropped: logged by tokens without a step column, they fall on an optimizer step "
                "(tokens / batch_tokens) another row also falls on (kept the one with the most tokens)",
                first_step, dropped)
    for run_id, st in stats.iterrows():
        if st.n_nonfinite_rows:
            exclude(run_id, "rows", NONFINITE_ROWS, f"{int(st.n_nonfinite_rows)} rows with NaN/inf/missing losses dropped",
                    as_int(st.first_nonfinite_step), int(st.n_nonfinite_rows))
        if st.n_warmup_rows:
            exclude(run_id, "rows", WARMUP_ROWS, f"{int(st.n_warmup_rows)} warm-up rows cut", None, int(st.n_warmup_rows))

    points = []
    for run in runs.itertuples(index=False):
        if run.run_id in conflicts:
            exclude(run.run_id, "run", *conflicts[run.run_id])
            continue
        opts = cfg.options(run.family)
        n_params, n_params_source = params_used(run, opts.param_convention)
        verdict = run_verdict(run, n_params, stats, cfg, opts, rejected[opts.param_convention])
        if verdict is None:
            st = stats.loc[run.run_id]
            verdict = _point(run, st, n_params, _final_loss(run.run_id, st, at_end, evals), cfg)
        if isinstance(verdict, tuple):
            exclude(run.run_id, "run", *verdict)
            continue
        if flag := overshoot(run, st, opts):
            exclude(run.run_id, "flag", OVERSHOOT, f"{flag}; the point uses the tokens seen ({verdict['n_tokens']:.4g})",
                    as_int(st.last_step))
        points.append(dict(verdict, param_convention=opts.param_convention, n_params_source=n_params_source))

    points_df = pd.DataFrame(points, columns=[*_POINT_COLUMNS, "series"]).astype(
        {"lr": float, "unique_tokens": float, "loss_se": float})
    points_df["sweep"] = sweep_groups(points_df)
    points_df, removed = drop_duplicate_series(points_df)
    for run_id, detail in removed:
        exclude(run_id, "run", DUPLICATE_SERIES, detail)
    write_lr_tables(con, points_df)
    points_df, removed = select_envelope(points_df, lambda family: cfg.options(family).hparam_selection)
    for run_id, detail in removed:
        exclude(run_id, "run", NOT_BEST_HPARAMS, detail)
    points_df, removed = drop_dominated(points_df, cfg.dominated_tolerance)
    for run_id, detail in removed:
        exclude(run_id, "run", DOMINATED, detail)
    points_df = points_df[_POINT_COLUMNS]

    excl_df = pd.DataFrame(exclusions, columns=_EXCLUSION_COLUMNS).astype(
        {"step": "Int64", "n_rows": "Int64"})
    replace(con, CLEAN_POINTS)
    insert_frame(con, CLEAN_POINTS, points_df, order_by="family, run_id")
    replace(con, CLEAN_EXCLUSIONS)
    insert_frame(con, CLEAN_EXCLUSIONS, excl_df, order_by="family, run_id, kind, reason")
    con.execute("DROP TABLE deduped")

