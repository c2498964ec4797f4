"""Per-family model comparison: every registered form is fitted and scored in the fit stage (fits.comparison),
the right form is chosen on a known Chinchilla truth, and a newly registered form takes part with no other edit."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import duckdb
import numpy as np
import pandas as pd
import pytest

from scaling_pipeline.lib.fitting.common import FitResult
from scaling_pipeline.lib.fitting.compare import compare_forms, information_criteria
from scaling_pipeline.lib.laws import FORMS, DataConstrained, Law, register
from scaling_pipeline.lib.laws.base import arr, out
from scaling_pipeline.lib.laws.selection import NotApplicable
from scaling_pipeline.lib.fitting.isoflop import isoflop_approach2
from scaling_pipeline.lib.reporting import load_inputs, render_report
from scaling_pipeline.lib.reporting.family import family_views
from scaling_pipeline.lib.reporting.family_section import slice_text
from scaling_pipeline.lib.reporting.inputs import normalised
from scaling_pipeline.lib.simulate import DEFAULT_TRUTHS
from scaling_pipeline.lib.warehouse import FitSettings, fit_families, plan_families
from tests.conftest import require_reference

TRUTH = DEFAULT_TRUTHS[1]  # boreal: E=1.82, A=482, B=2085, alpha=0.35, beta=0.37


def ladder(seed: int = 0) -> pd.DataFrame:
    """The simulator's ladder design (7 sizes 1e7…2e9 × 5 budgets 5…160 tokens/param) on the boreal truth,
    0.3% log-normal noise, as clean.points rows (flops = 6·N·D exactly, unique tokens unknown)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in np.geomspace(1e7, 2e9, 7):
        for tpp in np.geomspace(5, 160, 5):
            d = n * tpp
            rows.append(dict(run_id=f"boreal-{n:.3g}-{tpp:.3g}", family="boreal", n_params=n, n_tokens=d,
                             flops=6.0 * n * d, loss=TRUTH.loss(n, d) * math.exp(rng.normal(0, 0.003)),
                             loss_source="final_eval", final_step=1000, unique_tokens=np.nan))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    pts = ladder()  # noqa: F841 (used by SQL)
    con = duckdb.connect(str(tmp_path_factory.mktemp("compare") / "w.duckdb"))
    con.execute("CREATE SCHEMA clean")
    con.execute("CREATE TABLE clean.points AS SELECT * FROM pts")
    fit_families(con, FitSettings(bootstrap=20), n_jobs=1)
    return con


def test_fit_stage_compares_every_form_and_chooses_chinchilla(warehouse):
    rows = warehouse.execute("SELECT * FROM fits.comparison WHERE family = 'boreal'").df().set_index(["form", "subset"])
    assert set(rows.index.get_level_values("form")) == set(FORMS)
    chin = rows.loc[("chinchilla", "")]
    assert chin.chosen and chin.eligible and chin.status == "ok" and chin.n_points == 35 and chin.n_fitted_params == 5
    assert rows.chosen.sum() == 1
    fit = warehouse.execute("SELECT objective, backtest FROM fits.chinchilla").fetchone()
    assert chin.objective == fit[0]  # the family's fit is reused, not refitted
    # the Chinchilla truth beats the one-variable forms on the held-out largest runs
    assert chin.backtest_mean_error < 0.01
    for form in ("kaplan_n", "kaplan_d", "kaplan_c"):
        row = rows.loc[form].iloc[0]
        assert row.status == "ok" and row.n_fitted_params == 2 and row.backtest_mean_error > chin.backtest_mean_error
        assert row.bic - row.aic == pytest.approx(3 * (math.log(row.n_points) - 2))  # k = 2 parameters + sigma
    sat = rows.loc["saturating"]
    assert len(sat) == 5 and set(sat.index) == {"D/N≈5", "D/N≈11.9", "D/N≈28.3", "D/N≈67.3", "D/N≈160"}
    assert (sat.status == "ok").all() and (sat.n_points == 7).all() and not sat.has_allocation.any()
    mult = rows.loc[("multiplicative", "")]
    assert not mult.applicable and mult.status == "not_applicable"
    assert "not identifiable: flops = 6·n_params·n_tokens exactly" in mult.reason
    assert not rows.loc[("data_constrained", "")].applicable
    assert rows.loc[("data_constrained", "")].reason == "unique_tokens unknown for every run"


def test_comparison_params_have_intervals_where_a_bootstrap_exists(warehouse):
    p = warehouse.execute("SELECT * FROM fits.comparison_params WHERE family = 'boreal'").df()
    chin = p[p.form == "chinchilla"].set_index("param")
    assert list(chin.index) == ["E", "A", "B", "alpha", "beta"]
    assert (chin.lo < chin.value).all() and (chin.value < chin.hi).all()
    assert chin.loc["alpha", "value"] == pytest.approx(TRUTH.alpha, abs=0.03)
    assert p[p.form != "chinchilla"].lo.isna().all()
    sat = p[(p.form == "saturating") & (p.param == "L0")]
    assert len(sat) == 5 and (sat.value.between(1.5, 2.1)).all()  # each budget's floor near E = 1.82
    src = warehouse.execute("SELECT form, interval_source FROM fits.comparison WHERE form IN ('chinchilla', 'kaplan_n')"
                            " ORDER BY form").fetchall()
    assert src == [("chinchilla", "bootstrap, 20 resamples, 95%"), ("kaplan_n", "none")]


def test_plans_are_made_from_the_chosen_form(warehouse):
    plans = plan_families(warehouse)
    assert len(plans) and (plans.form == "chinchilla").all() and plans.n_params_lo.notna().all()


def repeated_data_warehouse(tmp_path: Path) -> tuple[duckdb.DuckDBPyConnection, pd.DataFrame]:
    """Runs of 1 and 2 epochs from a data-constrained truth, fitted (20 resamples): (warehouse, points)."""
    truth = DataConstrained(TRUTH.E, TRUTH.A, TRUTH.B, TRUTH.alpha, TRUTH.beta, rd_star=15.0, rn_star=5.0)
    rng = np.random.default_rng(0)
    pts = pd.concat([ladder().assign(unique_tokens=lambda p: p.n_tokens / epochs, run_id=lambda p: p.run_id + f"-{epochs}")
                     for epochs in (1, 2)], ignore_index=True)
    pts["loss"] = truth.predict(pts.n_params, pts.n_tokens, pts.unique_tokens) * np.exp(rng.normal(0, 0.003, len(pts)))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE SCHEMA clean")
    con.execute("CREATE TABLE clean.points AS SELECT * FROM pts")
    fit_families(con, FitSettings(bootstrap=20), n_jobs=1)
    return con, pts


def test_data_constrained_wins_on_repeated_data_and_plans_record_it(tmp_path):
    """Runs of 1 and 2 epochs from a data-constrained truth: Chinchilla is publishable but the data-constrained
    law predicts the held-out largest runs better, so the plans are made from it (no bootstrap: no intervals)."""
    con, pts = repeated_data_warehouse(tmp_path)
    rows = con.execute("SELECT form, backtest_mean_error, eligible, chosen FROM fits.comparison WHERE subset = '' "
                       "AND status = 'ok'").df().set_index("form")
    assert con.execute("SELECT publishable FROM fits.chinchilla").fetchone()[0]
    assert rows.loc["data_constrained"].chosen and rows.loc["chinchilla"].eligible and not rows.loc["chinchilla"].chosen
    assert rows.loc["data_constrained"].backtest_mean_error < rows.loc["chinchilla"].backtest_mean_error
    plans = plan_families(con)
    assert (plans.form == "data_constrained").all() and plans.n_params_lo.isna().all()
    params = dict(con.execute("SELECT param, value FROM fits.comparison_params WHERE form = 'data_constrained'").fetchall())
    law = DataConstrained.from_params(params)
    row = plans[plans.compute == 1e20].iloc[0]
    n, d = law.optimal_allocation(1e20, float(pts.unique_tokens.max()))
    assert (row.n_params, row.n_tokens) == pytest.approx((n, d), rel=1e-12)


def test_report_shows_the_comparison_table(warehouse, tmp_path):
    plan_families(warehouse)
    page = Path(render_report(load_inputs(warehouse), tmp_path)).read_text()
    table = page[page.index("<table class=small data-table='comparison'>"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr data-form='([a-z_]+)'([^>]*)>(.*?)</tr>", table)
    assert [r[0] for r in rows] == ["chinchilla", "data_constrained", "kaplan_n", "kaplan_d", "kaplan_c",
                                    "multiplicative", "power_law"] + ["saturating"] * 5
    chin = rows[0][2]
    assert "chinchilla ★" in chin and "class=headline" in rows[0][1] and "<span class=ci>[" in chin
    assert sum("★" in r[2] for r in rows) == 1
    assert "not applicable: not identifiable: flops = 6·n_params·n_tokens exactly" in rows[5][2]
    assert "Plans are made from <b>chinchilla</b>" in page


def test_report_isoflop_check_is_approach_2():
    """The report's IsoFLOP check at an observed slice is the vertex of isoflop_approach2 at that budget."""
    n = np.geomspace(1e8, 3e9, 7)
    slice_pts = pd.DataFrame(dict(run_id=[f"iso-{i}" for i in range(7)], family="boreal", n_params=n,
                                  n_tokens=1e20 / (6 * n), flops=1e20, loss=TRUTH.loss(n, 1e20 / (6 * n))))
    pts = pd.concat([ladder(), slice_pts], ignore_index=True)  # noqa: F841 (used by SQL)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA clean")
    con.execute("CREATE TABLE clean.points AS SELECT * FROM pts")
    f, = family_views(normalised(load_inputs(con)), None)
    s, = [s for s in f.slices if s["compute"] == pytest.approx(1e20, rel=0.1)]
    near = pts[np.abs(pts.flops / s["compute"] - 1) <= 0.15]  # the slice's runs (±15%), as one budget
    c = np.full(len(near), 1e20)
    iso = isoflop_approach2(np.r_[c, 10 * c], np.r_[near.n_params, near.n_params], np.r_[near.loss, near.loss])
    assert (s["approach2_n"], s["approach2_loss"]) == pytest.approx((iso.n_opt[0], iso.loss_opt[0]), rel=1e-12)
    assert s["approach2_n"] == pytest.approx(s["best_n"], rel=0.3)
    assert "a parabola in log N (Approach 2) puts the minimum at N = " in slice_text(s)


def test_information_criteria_are_gaussian_on_log_residuals():
    r = np.array([0.01, -0.02, 0.015, -0.005])
    s2 = float(r @ r) / 4
    ll = -2 * (math.log(2 * math.pi * s2) + 1)
    assert information_criteria(r, 2) == pytest.approx((2 * 3 - 2 * ll, 3 * math.log(4) - 2 * ll))


def test_data_constrained_applies_to_datablations():
    folder = require_reference("datablations")
    runs = pd.read_csv(folder / "runs.csv")
    sample, = FORMS["data_constrained"].samples(runs)
    assert sample.n_points == len(runs) == 182 and sample.options == {"two_stage": True}
    assert set(sample.inputs) == {"N", "D", "U"}
    with pytest.raises(NotApplicable, match="no run repeats its data"):
        FORMS["data_constrained"].samples(runs.assign(unique_tokens=runs.n_tokens * 2))


@dataclass(frozen=True)
class Flat(Law):
    """A test form: the loss is a constant ``c`` (nats/token)."""

    name: ClassVar[str] = "test_flat"
    formula: ClassVar[str] = "L = c"
    params: ClassVar[tuple[str, ...]] = ("c",)
    units: ClassVar[dict[str, str]] = {"c": "nats/token"}
    variables: ClassVar[dict[str, str]] = {"N": "n_params"}

    c: float

    def predict(self, N) -> float | np.ndarray:
        return out(self.c + 0.0 * arr(N))

    @classmethod
    def fit(cls, inputs, y, **options) -> FitResult:
        c = float(np.exp(np.mean(np.log(y))))
        return FitResult(form=cls.name, params={"c": c}, loss="mse", delta=None, n_points=len(y),
                         objective=float(np.mean(np.log(np.asarray(y) / c) ** 2)), fit_seconds=0.0)


def test_a_newly_registered_form_is_compared_with_no_other_edit():
    pts = ladder()
    register(Flat)
    try:
        rows = {r.form: r for r in compare_forms(pts)}
    finally:
        del FORMS[Flat.name]
    flat = rows["test_flat"]
    assert flat.status == "ok" and flat.n_points == 35 and flat.n_fitted == 1 and not flat.chosen
    assert flat.params["c"] == pytest.approx(math.exp(np.log(pts.loss).mean()))
    assert flat.backtest_mean_error > 0.05  # a constant misses the largest runs (lowest losses)
    assert math.isfinite(flat.aic) and flat.aic > rows["chinchilla"].aic
    assert Flat.name not in FORMS


def test_rejudging_without_a_refit_recomputes_the_choice(tmp_path, monkeypatch):
    """A family kept as it was (same points, same settings) is judged again on every run, its comparison rows
    too: eligibility and the chosen form follow the quality rules of the run, through quality.assess."""
    from scaling_pipeline.lib import quality

    con, _ = repeated_data_warehouse(tmp_path)

    def judged() -> dict[str, tuple]:
        return {f: (e, v, c) for f, e, v, c in con.execute(
            "SELECT form, eligible, verdict, chosen FROM fits.comparison WHERE has_allocation AND status = 'ok'")
            .fetchall()}

    first = judged()
    assert first["data_constrained"][0] and first["data_constrained"][2] and first["chinchilla"][0]
    dc_error = con.execute("SELECT backtest_mean_error FROM fits.comparison WHERE form = 'data_constrained'").fetchone()[0]
    # stricter rules: every form's backtest error is now too high, so nothing may be planned from
    strict = quality.Thresholds(backtest_mean_error=dc_error / 2, backtest_max_error=dc_error / 2)
    monkeypatch.setitem(quality.assess.__kwdefaults__, "limits", strict)
    summary = fit_families(con, FitSettings(bootstrap=20), n_jobs=1)
    assert summary.unchanged == ["boreal"] and not summary.fitted
    now = judged()
    assert now["data_constrained"][:2] == (False, "withheld") and now["chinchilla"][:2] == (False, "withheld")
    assert not any(c for _, _, c in now.values())
    assert not con.execute("SELECT publishable FROM fits.chinchilla").fetchone()[0]
    assert plan_families(con).empty
    # the rules back as they were: the same rows, judged as when they were fitted
    monkeypatch.undo()
    fit_families(con, FitSettings(bootstrap=20), n_jobs=1)
    assert judged() == first
    assert (plan_families(con).form == "data_constrained").all()
