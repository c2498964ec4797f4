"""Hyperparameter sweeps: the best run per (N, D) is kept (or all, per family), duplicated series count
once, and the optimal learning rate is fitted per size and as LR*(N) = c·N^-gamma."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from scaling_pipeline.lib import cleaning as C
from scaling_pipeline.lib import hparams as H
from scaling_pipeline.lib.simulate import SimConfig, lr_optimum, write_demo
from tests.ladder_files import curve, ingest_and_clean, run_exclusions, write_csv, write_jsonl

SWEEP = {"1e-3": 3.10, "2e-3": 3.00, "4e-3": 3.04, "8e-3": 3.20}  # peak LR -> final loss (nats/token)


def _sweep_logs(root: Path) -> None:
    """Families f (csv) and g (jsonl), identical: N = 1e6 trained at 4 learning rates on 200k tokens, a
    copy of the 2e-3 run under another name, one run at the same N and D on 4 epochs of 50k unique tokens,
    and one run at N = 2e6."""
    for family, write, suffix in (("f", write_csv, ".csv"), ("g", write_jsonl, ".jsonl")):
        manifest = []
        for lr, final in SWEEP.items():
            run_id = f"{family}-1m-lr{lr}"
            write(root / family / f"{run_id}{suffix}", curve(run_id, final))
            manifest.append(dict(run_id=run_id, family=family, n_params=1e6, total_steps=200, lr=lr))
        copy = f"{family}-1m-lr2e-3-x"  # the 2e-3 run logged again under another name
        write(root / family / f"{copy}{suffix}", [dict(r, run_id=copy) for r in curve(f"{family}-1m-lr2e-3", 3.00)])
        write(root / family / f"{family}-2m{suffix}", curve(f"{family}-2m", 2.9))
        write(root / family / f"{family}-1m-4ep{suffix}", curve(f"{family}-1m-4ep", 3.15))
        manifest += [dict(run_id=copy, family=family, n_params=1e6, total_steps=200, lr="2e-3"),
                     dict(run_id=f"{family}-2m", family=family, n_params=2e6, total_steps=200, lr="1.5e-3"),
                     dict(run_id=f"{family}-1m-4ep", family=family, n_params=1e6, total_steps=200, lr="2e-3",
                          unique_tokens=5e4)]
        write_csv(root / family / "runs.csv", manifest)


def test_envelope_keeps_the_best_run_per_size_and_all_keeps_every_run(tmp_path: Path) -> None:
    _sweep_logs(tmp_path)
    config = C.CleanConfig(families={"g": C.FamilyOptions(hparam_selection="all")})
    con = ingest_and_clean(tmp_path, config)
    excluded = run_exclusions(con)
    points = {r[0]: r[1:] for r in con.execute("SELECT run_id, loss, lr FROM clean.points").fetchall()}
    assert set(points) == {"f-1m-lr2e-3", "f-2m", "g-1m-lr1e-3", "g-1m-lr2e-3", "g-1m-lr4e-3", "g-1m-lr8e-3", "g-2m",
                           "f-1m-4ep", "g-1m-4ep"}  # repeated data is no hyperparameter variant
    assert points["f-1m-lr2e-3"] == (3.00, 2e-3)
    for lr in ("1e-3", "4e-3", "8e-3"):  # the losers name the winner, their loss and both learning rates
        reason, detail = excluded[f"f-1m-lr{lr}"]
        assert reason == C.NOT_BEST_HPARAMS
        assert detail.startswith(f"final loss {SWEEP[lr]:.4f} is {SWEEP[lr] / 3.0 - 1:.2%} above run 'f-1m-lr2e-3' "
                                 f"(3.0000) at the same N (1e+06) and D (2e+05) (lr {float(lr):.3g} vs 0.002)")
    for family in ("f", "g"):  # an identical series under another name counts once, whatever the setting
        reason, detail = excluded[f"{family}-1m-lr2e-3-x"]
        assert reason == C.DUPLICATE_SERIES
        assert detail.startswith(f"logs the very same steps and losses as run '{family}-1m-lr2e-3' at the same N")
    assert len(excluded) == 5
    # the sweep itself is kept for the learning-rate analysis, in both families
    sweeps = con.execute("SELECT family, run_id, lr, loss, best FROM clean.lr_sweeps ORDER BY family, lr").fetchall()
    assert [(f, lr, loss, best) for f, _, lr, loss, best in sweeps if f == "f"] == [
        ("f", float(lr), loss, lr == "2e-3") for lr, loss in SWEEP.items()]
    assert len(sweeps) == 8
    optima = con.execute("SELECT family, n_lrs, lr_best, lr_opt, status FROM clean.lr_optima "
                         "ORDER BY family").fetchall()
    x = np.log([float(lr) for lr in SWEEP])
    a, b, _ = np.polyfit(x, list(SWEEP.values()), 2)  # all 4 points are within 2 of the best
    for family, n_lrs, lr_best, lr_opt, status in optima:
        assert (n_lrs, lr_best, status) == (4, 2e-3, H.OK)
        assert lr_opt == pytest.approx(math.exp(-b / (2 * a)), rel=1e-9)
    scaling = con.execute("SELECT family, status, detail FROM clean.lr_scaling ORDER BY family").fetchall()
    assert scaling == [(f, H.TOO_FEW_SIZES, "learning-rate optima at 1 model size; a power law with an interval "
                           "needs at least 3") for f in ("f", "g")]


def test_simulated_sweeps_recover_the_learning_rate_law(tmp_path: Path) -> None:
    """The simulator's LR sweeps (5 learning rates at each of 5 sizes x 2 budgets, a known LR*(N)) through
    ingest and clean: the envelope is the grid, and gamma is recovered within 0.05."""
    cfg = SimConfig(n_sizes=5, n_budgets=2, isoflop_flops=None, log_points=30, inject_faults=False,
                    lr_sweep=(0.25, 0.5, 1.0, 2.0, 4.0))
    write_demo(tmp_path / "logs", seed=0, fmt="csv", n_families=1, config=cfg)
    con = ingest_and_clean(tmp_path / "logs")
    excluded = run_exclusions(con)
    assert con.execute("SELECT count(*) FROM clean.points").fetchone() == (10,)
    assert {reason for reason, _ in excluded.values()} == {C.NOT_BEST_HPARAMS} and len(excluded) == 40
    for run_id, (_, detail) in excluded.items():  # the winner is a run of the same grid point
        assert detail.split("above run '")[1].startswith(run_id.rsplit("-lr", 1)[0] + "-lr"), (run_id, detail)
    optima = con.execute("SELECT n_params, lr_opt, status FROM clean.lr_optima").fetchall()
    assert len(optima) == 10 and {s for *_, s in optima} == {H.OK}
    for n, lr_opt, _ in optima:  # each optimum within 25 % of the truth
        assert lr_opt == pytest.approx(lr_optimum(n, cfg), rel=0.25)
    (gamma, lo, hi, delta, status), = con.execute(
        "SELECT gamma, gamma_lo, gamma_hi, delta, status FROM clean.lr_scaling").fetchall()
    truth = cfg.lr_law[1]
    assert status == H.OK and abs(gamma - truth) < 0.05 and lo < truth < hi
    assert abs(delta) < 0.05  # the truth does not depend on D


def test_all_setting_with_no_sweep_changes_nothing(tmp_path: Path) -> None:
    """Without sweeps the envelope is every run: both settings give the same points."""
    cfg = SimConfig(n_sizes=5, n_budgets=4, isoflop_points=3, log_points=30, inject_faults=False)
    write_demo(tmp_path / "logs", seed=1, fmt="jsonl", n_families=1, config=cfg)
    envelope = ingest_and_clean(tmp_path / "logs").execute("SELECT * FROM clean.points ORDER BY run_id").fetchall()
    every = ingest_and_clean(tmp_path / "logs", C.CleanConfig(family=C.FamilyOptions(hparam_selection="all")))
    assert every.execute("SELECT * FROM clean.points ORDER BY run_id").fetchall() == envelope
    assert len(envelope) == 23 and every.execute("SELECT count(*) FROM clean.lr_sweeps").fetchone() == (0,)


# ------------------------------------------------------------------------------------------------
# lib/hparams on exact data


def test_lr_optimum_places_the_vertex_and_says_why_when_it_cannot() -> None:
    lrs = np.geomspace(1e-4, 1e-2, 7)
    loss = 2.5 + 0.04 * np.log(lrs / 1.3e-3) ** 2
    opt = H.lr_optimum(lrs, loss)
    assert opt.status == H.OK and opt.lr_opt == pytest.approx(1.3e-3, rel=1e-9)
    assert opt.loss_opt == pytest.approx(2.5) and opt.curvature == pytest.approx(0.08)
    assert opt.n_lrs == 7 and opt.detail.startswith("parabola in ln LR through 5 of 7 learning rates")
    edge = H.lr_optimum(lrs[:3], loss[:3])
    assert edge.status == H.NOT_BRACKETED and math.isnan(edge.lr_opt)
    assert edge.detail == "the best logged LR 0.000464 is the largest of the 3 swept: the optimum is not bracketed"
    two = H.lr_optimum([1e-3, 2e-3, 2e-3], [3.0, 2.9, 2.95])  # a repeated LR counts once (its mean)
    assert (two.status, two.n_lrs, two.loss_best) == (H.TOO_FEW_LRS, 2, pytest.approx(2.925))
    assert two.detail == "2 learning rates swept; a parabola needs at least 3"


def test_lr_scaling_recovers_an_exact_law_with_intervals() -> None:
    rng = np.random.default_rng(0)
    n = np.repeat(np.geomspace(1e7, 1e9, 5), 2)
    d = n * np.tile([20.0, 200.0], 5)
    lr = 2.0 * n**-0.35 * d**-0.1 * np.exp(0.05 * rng.standard_normal(n.size))
    fit = H.lr_scaling(n, lr, d)
    assert fit.status == H.OK and fit.n_sizes == 5 and fit.n_optima == 10
    assert fit.gamma_lo < 0.35 < fit.gamma_hi and fit.delta_lo < 0.1 < fit.delta_hi
    assert fit.gamma_hi - fit.gamma_lo < 0.1
    assert fit.lr(1e8, 1e10) == pytest.approx(2.0 * 1e8**-0.35 * 1e10**-0.1, rel=0.1)
    tied = H.lr_scaling(n, 2.0 * n**-0.35, n * 20)  # D moves with N: only N is fitted, and it says why
    assert tied.gamma == pytest.approx(0.35) and math.isnan(tied.delta)
    assert tied.detail.endswith("D not fitted: the sweeps' token budgets move with N "
                                "(D's exponent is not identifiable)")
    few = H.lr_scaling([1e7, 1e8], [1e-3, 5e-4])
    assert few.status == H.TOO_FEW_SIZES and math.isnan(few.gamma)

