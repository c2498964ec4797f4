"""Curve-law points (lib.curves.points): one long run per size stands in for a ladder's smaller budgets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from scaling_pipeline.lib.curves.family import fit_family
from scaling_pipeline.lib.curves.fit import Curve
from scaling_pipeline.lib.curves.laws import MultiPowerLaw
from scaling_pipeline.lib.curves.observed import ObservedCurve, loss_drop
from scaling_pipeline.lib.curves.points import (NO_CURVE_FIT, SHAPE_PRIOR, curve_law_points, read_curve_points,
                                               source_runs, stretched_lr, target_lr)
from scaling_pipeline.lib.curves.schedule import CurveError
from scaling_pipeline.lib.fitting.chinchilla import fit_chinchilla
from scaling_pipeline.lib.formats import write_logs
from scaling_pipeline.lib.simulate import SCHEDULE_FIELDS, SimConfig, simulate_ladder
from scaling_pipeline.lib.warehouse import FitSettings, fit_families
from tests.conftest import require_reference
from tests.ladder_files import curve, ingest_and_clean, write_csv, write_jsonl

# 5 sizes x 5 budgets (5 … 160 tokens/param), every run of a size on one batch and one Multi-Power Law
SHARED = SimConfig(n_sizes=5, n_budgets=5, isoflop_flops=None, inject_faults=False, shared_size_law=True,
                   schedules=("wsd",), log_points=80)


def frames(config: SimConfig, n_families: int) -> tuple:
    """(ladder, runs with the schedule description in ``extra``, steps, final-eval points) of a simulated ladder."""
    ladder = simulate_ladder(0, n_families, config)
    runs = ladder.runs.copy()
    runs["extra"] = [json.dumps({k: None if pd.isna(r[k]) else r[k] for k in SCHEDULE_FIELDS})
                     for _, r in runs.iterrows()]
    m = ladder.metrics
    steps = pd.DataFrame({"run_id": m.run_id, "step": m.step, "train_loss": m.train_loss.to_numpy(float, na_value=np.nan),
                          "eval_loss": m.eval_loss.to_numpy(float, na_value=np.nan), "lr": m.lr})
    final = steps.groupby("run_id").tail(1).set_index("run_id").loc[runs.run_id, "eval_loss"].to_numpy()
    points = runs[["run_id", "family", "n_params"]].assign(n_tokens=runs.tokens_planned.to_numpy(), loss=final,
                                                           loss_se=np.nan)
    return ladder, runs, steps, points


def exponents(frame: pd.DataFrame) -> np.ndarray:
    fit = fit_chinchilla(frame.n_params.to_numpy(), frame.n_tokens.to_numpy(), frame.loss.to_numpy())
    return np.array([fit.params["alpha"], fit.params["beta"]])


def test_shared_size_law_one_batch_per_size_and_final_losses_near_the_law() -> None:
    """Simulator option: the runs of a size share one batch (steps grow with the budget) and one MPL, whose
    decayed losses stay within 0.2% of L(N, D) over the grid (noise-free)."""
    cfg = SimConfig(**{**SHARED.__dict__, "train_noise": 0.0, "eval_noise": 0.0})
    ladder, runs, _, points = frames(cfg, 2)
    assert (runs.groupby(["family", "n_params"]).batch_tokens.nunique() == 1).all()
    assert runs.total_steps.max() / runs.total_steps.min() > 20
    truth = np.array([ladder.truth[f].loss(n, d) for f, n, d in zip(points.family, points.n_params, points.n_tokens)])
    gap = points.loss / truth - 1
    assert np.abs(gap).max() < 2e-3 and np.abs(gap).max() > 1e-5  # near the law, not forced onto it


def test_stretched_lr_compresses_the_profile_in_time() -> None:
    lr = np.concatenate([np.linspace(0, 1, 11), np.ones(70), np.linspace(1, 0.1, 20)])  # 101 steps: warm-up, WSD
    short = stretched_lr(lr, 25)
    assert len(short) == 26 and short[0] == 0 and short[-1] == pytest.approx(0.1)
    assert short[10] == pytest.approx(lr[40]) and np.all(np.diff(short[-5:]) < 0)


def test_one_long_run_per_size_recovers_the_full_grid_exponents_noise_free() -> None:
    """Known truth (noise-free; budgets 5, 10, 20, 40, 80 tokens/param, so the points at 1/2 … 1/16 of the
    longest run's tokens land on grid runs; losses not squashed below log(vocab), which the MPL does not
    describe): the points sit on the simulated runs within 0.3%, and the exponents fitted to the long runs
    plus those points are within 0.01 of the full-grid fit, in every family."""
    cfg = SimConfig(**{**SHARED.__dict__, "tpp_max": 80.0, "train_noise": 0.0, "eval_noise": 0.0, "cap_start": 10.8})
    ladder, runs, steps, points = frames(cfg, 3)
    made = curve_law_points(runs, steps, points)
    assert (made.sources.status == "ok").all() and len(made.sources) == 15
    virtual = made.points
    assert len(virtual) == 75 and (virtual.loss_source == "curve_law").all()
    assert set(virtual.source_run) == set(source_runs(points).run_id)
    assert (virtual.loss_sd > 0).all() and (virtual.fraction < 1).all()
    backtested = virtual[virtual.observed_loss.notna()]
    assert len(backtested) == 60 and set(backtested.fraction) == {1 / 2, 1 / 4, 1 / 8, 1 / 16}
    assert np.abs(backtested.loss / backtested.observed_loss - 1).max() < 3e-3
    long = source_runs(points)
    for family, grid in points.groupby("family"):
        v = virtual[virtual.family == family]
        truth = ladder.truth[family]
        inside = v[v.n_tokens >= cfg.tpp_min * v.n_params * 0.98]  # the size laws match L(N, D) over the grid
        assert np.abs(inside.loss / truth.loss(inside.n_params, inside.n_tokens) - 1).max() < 3e-3, family
        cheap = exponents(pd.concat([long[long.family == family], v], ignore_index=True))
        assert np.abs(cheap - exponents(grid)).max() < 0.01, family


def test_a_constant_lr_source_gets_a_cool_down_and_the_family_s_loss_drop() -> None:
    """A size whose longest run is constant-LR (a WSD run stopped before its decay): its curve-law points
    add a 20% linear cool-down to 10% of the LR, the simulator's WSD recipe, and land on L(N, D)."""
    cfg = SimConfig(**{**SHARED.__dict__, "tpp_max": 80.0, "train_noise": 0.0, "eval_noise": 0.0, "cap_start": 10.8})
    ladder, runs, steps, points = frames(cfg, 1)
    src = source_runs(points).iloc[1]
    run = runs.set_index("run_id").loc[src.run_id]
    stop = int(0.75 * run.total_steps)  # the decay starts at 80%
    kept = steps[(steps.run_id != src.run_id) | (steps.step <= stop)]
    last = kept[kept.run_id == src.run_id].iloc[-1]
    runs = runs.assign(schedule=np.where(runs.run_id == src.run_id, "constant", runs.schedule),
                       total_steps=np.where(runs.run_id == src.run_id, last.step, runs.total_steps))
    points = points.copy()
    points.loc[points.run_id == src.run_id, ["n_tokens", "loss"]] = [last.step * run.batch_tokens, last.train_loss]
    made = curve_law_points(runs, kept, points)
    status = made.sources.set_index("run_id").loc[src.run_id]
    assert status.status == "ok" and "constant LR" in status.detail
    v = made.points[made.points.source_run == src.run_id]
    inside = v[v.n_tokens >= cfg.tpp_min * v.n_params]
    assert len(inside) >= 2
    truth = ladder.truth["atlas"].loss(inside.n_params, inside.n_tokens)
    assert np.abs(inside.loss / truth - 1).max() < 5e-3


def test_one_long_run_per_size_within_003_of_the_full_grid_with_noise() -> None:
    """With 1.2% train noise one decay per size does not pin the family's loss-drop shape (C, beta, gamma);
    the prior on it (SHAPE_PRIOR, from the MPL paper's fits) holds it where the data do not, and the exponents
    land within 0.03 of the full grid's (without the prior they move by 0.046 and 0.060)."""
    _, runs, steps, points = frames(SHARED, 3)
    made = curve_law_points(runs, steps, points)
    virtual = made.points
    # the curves follow the MPL, so its points stay: in boreal an observed curve misses the 5 backtest runs a
    # little less (1.12% against 1.17%) but chosen without the run it predicts misses by 1.94%
    assert made.sources.detail.str.contains("; points from the MPL: ").all()
    assert made.sources.detail.str.contains("least: the observed curve").any()
    long = source_runs(points)
    for family, grid in points.groupby("family"):
        cheap = exponents(pd.concat([long[long.family == family], virtual[virtual.family == family]]))
        assert np.abs(cheap - exponents(grid)).max() < 0.03, family


def test_the_shape_prior_yields_to_data_that_pin_the_shape() -> None:
    """Noise-free curves of one MPL whose drop shape (C 0.5, beta 0.8, gamma 0.4) is far from the prior's centre
    (ln C 5 prior sds away), three sizes decayed by WSD: the fit with the prior recovers the true shape."""
    truth = dict(alpha=0.45, B=400.0, C=0.5, beta=0.8, gamma=0.4)
    curves = []
    for k, (l0, a, total) in enumerate(((3.0, 0.5, 3000), (2.7, 0.55, 6000), (2.4, 0.6, 12000))):
        lr = np.concatenate([np.linspace(0, 3e-4, 101)[1:], np.full(int(0.8 * total) - 100, 3e-4),
                             np.linspace(3e-4, 3e-5, total - int(0.8 * total) + 1)])
        steps = np.linspace(200, total, 80).round().astype(int)
        loss = MultiPowerLaw(L0=l0, A=a, **truth).predict(steps, lr)
        curves.append(Curve(f"run{k}", steps, loss, lr))
    fitted = fit_family(curves, prior=SHAPE_PRIOR).shared
    assert fitted["beta"] == pytest.approx(0.8, abs=0.02) and fitted["gamma"] == pytest.approx(0.4, abs=0.02)
    assert fitted["C"] == pytest.approx(0.5, rel=0.05)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    """The shared-size-law ladder (1 family) ingested and cleaned."""
    root = tmp_path_factory.mktemp("curvepts") / "logs"
    ladder = simulate_ladder(0, 1, SHARED)
    write_logs("csv", root, ladder.runs, ladder.metrics)
    return ingest_and_clean(root)


def test_setting_off_fits_what_it_fitted_before_and_use_adds_the_points(warehouse) -> None:
    con = warehouse
    fit_families(con, FitSettings(bootstrap=0))
    off = con.execute("SELECT n_points, E, A, B, alpha, beta FROM fits.chinchilla").fetchone()
    observed = con.execute("SELECT n_params, n_tokens, loss FROM clean.points ORDER BY run_id").df()
    direct = fit_chinchilla(observed.n_params.to_numpy(), observed.n_tokens.to_numpy(), observed.loss.to_numpy())
    assert off[0] == 25 and off[1:] == pytest.approx([direct.params[k] for k in ("E", "A", "B", "alpha", "beta")])
    assert con.execute("SELECT count(*) FROM fits.curve_points").fetchone()[0] == 0

    fit_families(con, FitSettings(bootstrap=0, curve_law_points="store"))  # stored, not fitted
    assert con.execute("SELECT count(*) FROM fits.curve_points").fetchone()[0] == 25
    # backtest: each size's 1/32 point lands on its 5 tokens/param grid run
    assert con.execute("SELECT count(*) FROM fits.curve_points WHERE observed_loss IS NOT NULL "
                       "AND abs(loss / observed_loss - 1) < 0.05 AND fraction = 1 / 32").fetchone()[0] == 5
    assert con.execute("SELECT n_points, E, A, B, alpha, beta FROM fits.chinchilla").fetchone() == pytest.approx(off)

    fit_families(con, FitSettings(bootstrap=0, curve_law_points="use"))
    n_points, alpha, beta = con.execute("SELECT n_points, alpha, beta FROM fits.chinchilla").fetchone()
    assert n_points == 50
    assert abs(alpha - off[4]) < 0.1 and abs(beta - off[5]) < 0.1
    sources = con.execute("SELECT status, n_points FROM fits.curve_sources").fetchall()
    assert sources == [("ok", 5)] * 5


def test_a_run_without_lr_or_schedule_gets_no_points_and_says_why(tmp_path: Path) -> None:
    """Bad input: the longest run of a size logs no LR and its schedule is not described. The exclusions users read
    (pipeline.exclusions, the family's Exclusions in the report) name it with the reason; with the setting off the
    fit stage makes no curve-law points, so none is named."""
    from scaling_pipeline.lib.forecast import forecast_families
    from scaling_pipeline.lib.reporting import load_inputs, render_report

    rows = [*curve("f-1m-long", 3.0, steps=400, every=10), *curve("f-2m-long", 2.8, steps=400, every=10)]
    write_jsonl(tmp_path / "logs" / "metrics.jsonl", rows)
    write_csv(tmp_path / "logs" / "runs.csv", [dict(run_id=r, family="f", n_params=n, total_steps=400, batch_tokens=1000)
                                               for r, n in (("f-1m-long", 1e6), ("f-2m-long", 2e6))])
    con = ingest_and_clean(tmp_path / "logs")
    assert con.execute("SELECT count(*) FROM clean.points").fetchone()[0] == 2
    fit_families(con, FitSettings(bootstrap=0, curve_law_points="use"))
    sources = con.execute("SELECT run_id, status, reason, detail FROM fits.curve_sources ORDER BY run_id").fetchall()
    assert [(r, s, why) for r, s, why, _ in sources] == [("f-1m-long", "excluded", NO_CURVE_FIT),
                                                         ("f-2m-long", "excluded", NO_CURVE_FIT)]
    assert all("no learning rate" in detail and "no schedule is described" in detail for *_, detail in sources)
    assert con.execute("SELECT count(*) FROM fits.curve_points").fetchone()[0] == 0

    forecast_families(con)  # creates the view
    assert con.execute("SELECT run_id, family, kind, reason, detail, step, n_rows FROM pipeline.exclusions "
                       "WHERE stage = 'fit' ORDER BY run_id").fetchall() == [
        (r, "f", "curve_law", why, detail, None, None) for r, _, why, detail in sources]
    page = render_report(load_inputs(con), tmp_path / "reports").read_text()
    section = page.split("<section data-family='f'>")[1].split("</section>")[0]
    excluded = section.split("<h3>Exclusions</h3>")[1]
    assert "<p>Runs that gave no curve-law points (setting curve_law_points;" in excluded
    for run_id in ("f-1m-long", "f-2m-long"):
        assert f"<li>{run_id}: gave no curve-law points (no_curve_fit): {run_id}: no learning rate" in excluded

    fit_families(con, FitSettings(bootstrap=0))  # off: the view reads the emptied fits.curve_sources
    assert con.execute("SELECT count(*) FROM pipeline.exclusions WHERE stage = 'fit'").fetchone() == (0,)
    page = render_report(load_inputs(con), tmp_path / "reports").read_text()
    section = page.split("<section data-family='f'>")[1].split("</section>")[0]
    assert "<h3>Exclusions</h3>" in section and "curve-law points" not in section


def test_the_fit_tables_include_the_curve_law_tables_kept_when_current() -> None:
    """The fit stage's tables (also made by import-fits, which runs no fit_points) include fits.curve_sources, which
    pipeline.exclusions reads: created empty where absent or of another layout, kept (rows too) otherwise."""
    from scaling_pipeline.lib import tables as T
    from scaling_pipeline.lib.warehouse import ensure_fit_tables

    con = duckdb.connect()
    ensure_fit_tables(con)
    assert [T.stored_columns(con, t) for t in (T.FITS_CURVE_POINTS, T.FITS_CURVE_SOURCES)] == [
        T.FITS_CURVE_POINTS.names, T.FITS_CURVE_SOURCES.names]
    con.execute("INSERT INTO fits.curve_sources (family, run_id, status) VALUES ('f', 'r', 'excluded')")
    con.execute("CREATE OR REPLACE TABLE fits.curve_points (run_id VARCHAR)")  # an older layout
    ensure_fit_tables(con)
    assert con.execute("SELECT family, run_id FROM fits.curve_sources").fetchall() == [("f", "r")]
    assert T.stored_columns(con, T.FITS_CURVE_POINTS) == T.FITS_CURVE_POINTS.names


def test_gpu_ladder_points_come_from_the_observed_curve_and_beat_the_mpl() -> None:
    """The real byte-level ladder: its MPL fits put alpha at its bound and the MPL's points miss the observed runs
    by 4.6% / 4.1% rms (code / text). Each family's backtest picks an observed-curve candidate instead, which
    misses them by 3.0% / 1.6% rms and, chosen without the run it predicts, by 4.2% / 1.6%: still better than the MPL,
    so it is used. Its loss_sd is that leave-one-out error."""
    con = ingest_and_clean(require_reference("gpu_ladder"))
    points = con.execute("SELECT * FROM clean.points ORDER BY family, run_id").df()
    made = read_curve_points(con, points)
    assert (made.sources.status == "ok").all() and len(made.sources) == 10
    for family, mpl, chosen, held_out in (("code-gpt", 0.046, 0.030, 0.042), ("text-gpt", 0.041, 0.016, 0.016)):
        (detail,) = set(made.sources[made.sources.family == family].detail.str.split("; points from ").str[-1])
        numbers = [float(x) / 100 for x in re.findall(r"(\d+\.\d+)%", detail)]
        assert detail.startswith("the observed curve (p ") and len(numbers) == 4, detail
        assert numbers == pytest.approx([chosen, chosen, held_out, mpl], abs=1.5e-3), detail
        v = made.points[(made.points.family == family) & made.points.observed_loss.notna()]
        assert len(v) == 11
        rel = (v.loss / v.observed_loss - 1).to_numpy()
        assert np.sqrt(np.mean(rel**2)) == pytest.approx(chosen, abs=1.5e-3)
        z = (v.loss - v.observed_loss) / v.loss_sd
        assert np.sqrt(np.mean(z**2)) == pytest.approx(chosen / held_out, abs=0.1)


def test_observed_curve_reads_the_source_at_the_budget_s_training_time() -> None:
    """A source whose loss is a function of its LR area only (no loss drop: share 0, p 1), logged at every step, with
    evals 2% above its train losses: a run decayed at step 400 gets the source's loss at that run's LR area, times
    1.02. Without an eval loss there is no observed curve."""
    lr = np.concatenate([np.linspace(1e-3, 3e-3, 50), 3e-3 * (0.55 + 0.45 * np.cos(np.pi * np.arange(1951) / 1950))])
    area = np.cumsum(lr)
    steps = np.arange(1, 2001)
    logs = pd.DataFrame({"step": steps, "train_loss": 2.0 + 0.05 * area[steps] ** -0.3, "lr": lr[steps],
                         "eval_loss": np.where(steps % 200 == 0, 1.02 * (2.0 + 0.05 * area[steps] ** -0.3), np.nan)})
    shared = dict(alpha=0.3, B=100.0, C=2.0, beta=0.6, gamma=0.6)
    seen = ObservedCurve.of(logs, lr, shared, power=1.0, share=0.0)
    eta = target_lr(lr, 400)
    assert seen.predict(400, eta, shared) == pytest.approx(1.02 * (2.0 + 0.05 * eta.sum() ** -0.3), rel=1e-4)
    assert loss_drop(shared, np.array([400]), eta)[0] > 0.01  # what a share of 1 would take off
    with pytest.raises(CurveError, match="no observed curve"):
        ObservedCurve.of(logs.assign(eval_loss=np.nan), lr, shared, power=1.0, share=0.0)
