"""Unit tests of lib/cleaning/ on hand-built raw tables with known faults."""

from __future__ import annotations

import dataclasses
import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from scaling_pipeline.lib import cleaning as C
from scaling_pipeline.lib.cleaning.steps import final_losses
from scaling_pipeline.lib.formats import write_logs
from scaling_pipeline.lib.schema import METRIC_COLUMNS, RUN_COLUMNS
from scaling_pipeline.lib.simulate import SimConfig, simulate_ladder
from scaling_pipeline.lib.tables import RAW_METRICS, RAW_RUNS, create
from tests.ladder_files import ingest_and_clean, shrunk_line_at_end


def _raw(con, runs: list[dict], metrics: list[dict]) -> None:
    create(con, RAW_RUNS, RAW_METRICS)
    # executemany, not a DataFrame scan: DuckDB reads a pandas NaN as NULL, and NaN must stay NaN here
    for table, cols, rows in (("raw.runs", RUN_COLUMNS, runs), ("raw.metrics", METRIC_COLUMNS, metrics)):
        names = [c for c, _ in cols] + ["source_path"]
        con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(names))})",
                        [[r.get(c) for c in names] for r in rows])


def _run(run_id, n, steps=100, family="f", status="completed", warmup=5, batch=1000.0):
    return dict(run_id=run_id, family=family, n_params=n, tokens_planned=steps * batch, batch_tokens=batch,
                total_steps=steps, warmup_steps=warmup, schedule="cosine", status=status, source_path="runs.csv")


def _curve(run_id, final, steps=100, last=None, every=10, path=None):
    """Loss decreasing to ``final`` at ``steps``; logged every ``every`` steps up to ``last``; eval at each log."""
    rows = []
    for i, s in enumerate(range(every, (last or steps) + 1, every)):
        loss = final + 2.0 * (1 - s / steps) ** 2
        rows.append(dict(run_id=run_id, step=s, tokens=s * 1000.0, train_loss=loss + 0.01, eval_loss=loss,
                         wall_time=float(s), record=i + 1, source_path=path or f"{run_id}.csv"))
    return rows


@pytest.fixture()
def con():
    c = duckdb.connect()
    yield c
    c.close()


def test_valid_runs_become_points_with_final_eval(con):
    _raw(con, [_run("a", 1e6), _run("b", 2e6, steps=200)], _curve("a", 3.0) + _curve("b", 2.5, steps=200))
    s = C.clean(con)
    pts = con.execute("SELECT run_id, n_params, n_tokens, flops, loss, loss_source FROM clean.points ORDER BY run_id").fetchall()
    assert pts == [("a", 1e6, 100_000.0, 6e11, 3.0, "final_eval"), ("b", 2e6, 200_000.0, 2.4e12, 2.5, "final_eval")]
    assert s.points == 2 and s.excluded_runs == 0


def test_resumed_run_keeps_last_write_and_counts_duplicates(con):
    first = _curve("r", 3.0, last=60)
    # resumed from step 40: steps 50, 60 logged again, later and slightly different
    second = [dict(r, train_loss=r["train_loss"] + 0.5, wall_time=r["wall_time"] + 1000, record=100 + i)
              for i, r in enumerate(_curve("r", 3.0)) if r["step"] >= 50]
    _raw(con, [_run("r", 1e6)], first + second)
    s = C.clean(con)
    assert s.dropped_rows[C.DUPLICATE_STEPS] == 2
    (n_dupe_rows,) = con.execute("SELECT n_rows FROM clean.exclusions WHERE reason = ?", [C.DUPLICATE_STEPS]).fetchone()
    assert n_dupe_rows == 2
    assert con.execute("SELECT count(*) FROM clean.steps WHERE run_id='r'").fetchone()[0] == 10
    # the second write (higher train loss) won
    (tl,) = con.execute("SELECT train_loss FROM clean.steps WHERE run_id='r' AND step=50").fetchone()
    assert tl == pytest.approx(3.0 + 2.0 * 0.25 + 0.51)
    assert s.points == 1


def test_restart_from_an_earlier_checkpoint_is_a_resumed_segment_not_a_divergence(con):
    """Steps go backwards in the file (60 -> 40) and the wall clock restarts at 0: the later lines win
    each step, so the NaN losses the run logged before it was restarted are replaced, not a divergence."""
    first = _curve("r", 3.0, last=60)
    for r in first:
        if r["step"] >= 50:
            r["train_loss"], r["eval_loss"] = math.nan, None
    second = [dict(r, wall_time=r["wall_time"] - 40.0, record=100 + i)
              for i, r in enumerate(_curve("r", 3.0)) if r["step"] >= 40]
    _raw(con, [_run("r", 1e6)], first + second)
    s = C.clean(con)
    assert con.execute("SELECT reason, step, n_rows FROM clean.exclusions").fetchall() == [(C.DUPLICATE_STEPS, 40, 3)]
    assert con.execute("SELECT loss, loss_source FROM clean.points").fetchall() == [(3.0, "final_eval")]
    assert con.execute("SELECT count(*) FROM clean.steps WHERE NOT isfinite(train_loss)").fetchone() == (0,)
    assert s.points == 1 and s.excluded_runs == 0


def test_diverged_incomplete_dominated_and_missing_metadata_are_excluded(con):
    nan_rows = _curve("nan", 3.0)
    for r in nan_rows:
        if r["step"] >= 70:
            r["train_loss"], r["eval_loss"] = (math.nan if r["step"] % 20 else math.inf), None
    spike = _curve("spike", 3.0)
    for r in spike:
        if r["step"] >= 60:
            r["train_loss"] = 9.0
    _raw(con,
         [_run("ok", 1e6), _run("nan", 1e6), _run("spike", 1e6), _run("killed", 1e6), _run("bad_lr", 2e6),
          dict(_run("orphan", None), n_params=None)],
         _curve("ok", 3.0) + nan_rows + spike + _curve("killed", 3.0, last=40)
         + _curve("bad_lr", 3.6) + _curve("orphan", 3.0))
    s = C.clean(con)
    ex = dict(con.execute("SELECT run_id, reason FROM clean.exclusions WHERE kind='run'").fetchall())
    assert ex == {"nan": C.DIVERGED, "spike": C.DIVERGED, "killed": C.INCOMPLETE, "bad_lr": C.DOMINATED,
                  "orphan": C.NO_METADATA}
    steps = dict(con.execute("SELECT run_id, step FROM clean.exclusions WHERE kind='run'").fetchall())
    assert steps["nan"] == 70 and steps["spike"] == 50 and steps["killed"] == 40
    assert s.points == 1 and s.excluded_by_reason[C.DIVERGED] == 2
    # NaN/inf rows never reach clean.steps, and are counted
    assert con.execute("SELECT count(*) FROM clean.steps WHERE NOT isfinite(train_loss)").fetchone()[0] == 0
    assert s.dropped_rows[C.NONFINITE_ROWS] == 4


def test_warmup_cut_and_train_loss_fallback(con):
    rows = _curve("w", 3.0, every=1)
    for r in rows:
        r["eval_loss"] = None
    _raw(con, [_run("w", 1e6, warmup=10)], rows)
    s = C.clean(con, C.CleanConfig(smooth_points=5))
    assert s.dropped_rows[C.WARMUP_ROWS] == 9  # steps 1..9 < warmup 10
    (loss, src) = con.execute("SELECT loss, loss_source FROM clean.points").fetchone()
    # steps 96..100 (the last 4% of the steps, 5 points): their mean, 3.0112, is above the curve at step 100 (3.01);
    # the line through them is within 0.0004 of it and the trend is sure (w = 0.98), so the estimate is too
    assert (loss, src) == pytest.approx(shrunk_line_at_end([(r["step"], r["train_loss"]) for r in rows]))
    assert src == "train_shrunk_line_last_5" and abs(loss - 3.01) < 0.0004


_MEAN_OF_LAST_5 = ("SELECT run_id, avg(train_loss) FROM (SELECT run_id, train_loss FROM clean.steps "
                   "QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY step DESC) <= 5) GROUP BY run_id")


def test_a_run_with_one_or_two_train_losses_gets_their_mean():
    """No trend can be told from under 3 losses: the final loss is their mean, with no standard error; from 3 equal
    losses, that loss with standard error 0."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA clean")
    con.execute("CREATE TABLE clean.steps (run_id VARCHAR, step BIGINT, train_loss DOUBLE, eval_loss DOUBLE)")
    con.executemany("INSERT INTO clean.steps VALUES (?, ?, ?, NULL)",
                    [("one", 10, 3.0), ("two", 10, 3.0), ("two", 20, 2.9), *(("flat", s, 2.5) for s in (1, 2, 3))])
    at_end = final_losses(con, 5)[0]
    assert at_end.train_at_end.to_dict() == pytest.approx({"one": 3.0, "two": 2.95, "flat": 2.5})
    assert at_end.train_at_end_se.isna().to_dict() == {"one": True, "two": True, "flat": False}
    assert at_end.train_at_end_se["flat"] == 0.0


def _errors_without_evals(tmp_path, config: SimConfig) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(clean.points, its loss / the noise-free loss at the last step - 1, the same for the mean of the last 5 train
    losses) of a simulated 1-family ladder written as csv files with its evals removed."""
    ladder = simulate_ladder(0, 1, config)
    no_evals = pd.array([None] * len(ladder.metrics), dtype="double[pyarrow]")
    write_logs("csv", tmp_path, ladder.runs, ladder.metrics.assign(eval_loss=no_evals))
    con = ingest_and_clean(tmp_path)
    points = con.execute("SELECT run_id, family, n_params, n_tokens, loss, loss_source, loss_se FROM clean.points").df()
    mean5 = dict(con.execute(_MEAN_OF_LAST_5).fetchall())
    truth = np.array([ladder.truth[p.family].loss(p.n_params, p.n_tokens) for p in points.itertuples()])
    return points, points.loss.to_numpy() / truth - 1, np.array([mean5[r] for r in points.run_id]) / truth - 1


def test_a_decay_without_final_eval_gives_the_loss_at_its_last_step(tmp_path):
    """Known truth: a simulated WSD ladder (5 x 4 runs, 60 logged steps each, the last 20% a linear LR decay) with
    its evals removed; each run's noise-free loss at its last step is L(N, D). The loss still falls over the last
    logged steps, so the mean of the last 5 train losses sits 2% above it; the point's loss (their mean plus their
    line's trend to the last step, shrunk by its evidence) is within 0.3% on average, 1% rms (train-loss noise 1.2%
    per logged step). Its standard error (loss_se, from the residuals of the 5 losses) is that error's size: their
    rms is within 30% of the error's."""
    config = SimConfig(n_sizes=5, n_budgets=4, isoflop_flops=None, inject_faults=False, schedules=("wsd",),
                       log_points=60)
    points, new, old = _errors_without_evals(tmp_path, config)
    assert len(points) == 20 and (points.loss_source == "train_shrunk_line_last_5").all()
    assert old.mean() > 0.015
    rms = np.sqrt(np.mean(new**2))
    assert abs(new.mean()) < 0.003 and rms < 0.01
    assert 0.7 * rms < np.sqrt(np.mean((points.loss_se / points.loss) ** 2)) < 1.3 * rms


def test_a_constant_lr_run_without_final_eval_is_about_as_precise_as_the_mean_of_its_last_losses():
    """Known truth: simulated ladders at a constant LR (2 families x 20 runs x 3 seeds, 150 logged steps each). Their
    loss hardly falls over their last 6-7 logged steps, whose mean is within 0.55% rms of the noise-free loss at the
    last step; a line through them at the last step is 1.47 times further off (its slope's noise). The final loss,
    whose trend is shrunk by the evidence for it, is within 1.03 times the mean's rms (1.15 asserted)."""
    config = SimConfig(n_sizes=5, n_budgets=4, isoflop_flops=None, inject_faults=False, schedules=("cosine",),
                       final_lr_frac=0.999, anneal_gap=1e-6, log_points=150)
    new, old = [], []
    for seed in range(3):
        ladder = simulate_ladder(seed, 2, config)
        steps = ladder.metrics[["run_id", "step", "train_loss", "eval_loss"]]
        con = duckdb.connect()
        con.execute("CREATE SCHEMA clean")
        con.execute("CREATE TABLE clean.steps AS SELECT * FROM steps WHERE train_loss IS NOT NULL")
        at_end = final_losses(con, 5)[0].train_at_end
        mean5 = dict(con.execute(_MEAN_OF_LAST_5).fetchall())
        for r in ladder.runs.itertuples():
            truth = ladder.truth[r.family].loss(r.n_params, r.tokens_planned)
            new.append(at_end[r.run_id] / truth - 1)
            old.append(mean5[r.run_id] / truth - 1)
    rms, rms_mean = np.sqrt(np.mean(np.square(new))), np.sqrt(np.mean(np.square(old)))
    assert len(new) == 120 and rms_mean < 0.006 and rms < 1.15 * rms_mean and abs(np.mean(new)) < 0.002


def test_min_budget_filter_and_rebuild_is_idempotent(con):
    _raw(con, [_run("small", 1e6, steps=50), _run("big", 1e6, steps=200)],
         _curve("small", 3.2, steps=50) + _curve("big", 3.0, steps=200))
    C.clean(con, C.CleanConfig(min_steps=100))
    first = con.execute("SELECT * FROM clean.exclusions ORDER BY ALL").fetchall()
    C.clean(con, C.CleanConfig(min_steps=100))
    assert con.execute("SELECT * FROM clean.exclusions ORDER BY ALL").fetchall() == first
    assert [r[0] for r in con.execute("SELECT run_id FROM clean.points").fetchall()] == ["big"]
    assert ("small", C.BELOW_MIN_BUDGET) in [(r[0], r[3]) for r in first]


CLEAN_TABLES = ("clean.runs", "clean.steps", "clean.points", "clean.exclusions", "clean.lr_sweeps", "clean.lr_optima",
                "clean.lr_scaling")


def _tables(con) -> dict[str, list[tuple]]:
    """Every clean table's rows in stored order (what a reader without ORDER BY sees)."""
    return {t: con.execute(f"SELECT * FROM {t}").fetchall() for t in CLEAN_TABLES}


def _rebuilt(con, config: C.CleanConfig) -> dict[str, list[tuple]]:
    """The clean tables a full rebuild from the same raw tables writes, in a fresh warehouse."""
    with duckdb.connect() as fresh:
        _raw(fresh, *(
            [dict(zip([d[0] for d in cur.description], row)) for row in cur.fetchall()]
            for cur in (con.execute(f"SELECT * FROM {t} ORDER BY rowid") for t in ("raw.runs", "raw.metrics"))))
        assert not C.clean(fresh, config).unchanged
        return _tables(fresh)


def test_unchanged_raw_keeps_the_tables_and_a_new_file_rebuilds_them_as_a_full_rebuild_would(con):
    cfg = C.CleanConfig()
    runs = [_run("a", 1e6), _run("b", 2e6), _run("c", 2e6), _run("d", 4e6, steps=200, warmup=10)]
    _raw(con, runs, _curve("a", 3.0) + _curve("b", 2.8) + _curve("c", 2.9) + _curve("d", 2.5, steps=200, last=150))
    first = C.clean(con, cfg)
    assert not first.unchanged and first.points == 2 and first.excluded_by_reason == {
        C.INCOMPLETE: 1, C.NOT_BEST_HPARAMS: 1}
    tables = _tables(con)

    again = C.clean(con, cfg)  # nothing changed: kept, with the same summary
    assert again.unchanged and again == dataclasses.replace(first, unchanged=True)
    assert _tables(con) == tables == _rebuilt(con, cfg)

    # one new file (a new run's log): rebuilt, the same rows as a rebuild from scratch
    _raw(con, [_run("e", 8e6)], _curve("e", 2.2))
    third = C.clean(con, cfg)
    assert not third.unchanged and third.points == 3 and third.runs == 5
    assert _tables(con) == _rebuilt(con, cfg) != tables
    # a setting changes: rebuilt too
    fourth = C.clean(con, C.CleanConfig(min_steps=150))
    assert not fourth.unchanged and fourth.excluded_by_reason[C.BELOW_MIN_BUDGET] == 4 and fourth.points == 0
    assert C.clean(con, C.CleanConfig(min_steps=150)).unchanged


def test_clean_tables_changed_by_hand_are_rebuilt(con):
    _raw(con, [_run("a", 1e6), _run("b", 2e6)], _curve("a", 3.0) + _curve("b", 2.8))
    C.clean(con)
    tables = _tables(con)
    con.execute("DELETE FROM clean.points WHERE run_id = 'a'")
    assert not C.clean(con).unchanged and _tables(con) == tables  # raw unchanged, but not what clean wrote
    assert C.clean(con).unchanged
