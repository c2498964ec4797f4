"""Tests of scaling_pipeline.lib.allocate: every optimum is checked against an independent numeric search."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import brentq, minimize_scalar

from scaling_pipeline.lib.allocate import (
    HOFFMANN,
    allocate,
    allocation_table,
    chinchilla_reference,
    compute_for_loss,
    inference_plan,
    law_from_fit,
    laws_from_samples,
    plan_for_loss,
    plans_from_fit,
)
from scaling_pipeline.lib.fitting.common import FitResult
from scaling_pipeline.lib.laws import RD_STAR, RN_STAR, Chinchilla, DataConstrained

HOFF = Chinchilla(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. 2022, written out
EPOCH = Chinchilla(E=1.8172, A=477.8, B=2143.4, alpha=0.3473, beta=0.3672)  # Besiroglu et al. 2024
SKEWED = Chinchilla(E=2.0, A=1e3, B=50.0, alpha=0.5, beta=0.2)
LAWS = [HOFF, EPOCH, SKEWED]


def brute_force(law, C, *, n_max=None, d_max=None, unique=None):
    """Minimise the loss along C = 6·N·D over log N: dense grid, then bounded Brent around the best point.

    Knows nothing of the closed form. With ``unique`` the data-constrained law of laws.py is used with the
    unique tokens actually seen, min(U, D)."""
    lo, hi = math.log(1.0), math.log(C / 6.0)  # N >= 1, D >= 1
    if n_max is not None:
        hi = min(hi, math.log(n_max))
    if d_max is not None:
        lo = max(lo, math.log(C / (6.0 * d_max)))
    dc = None if unique is None else DataConstrained(law.E, law.A, law.B, law.alpha, law.beta, RD_STAR, RN_STAR)

    def f(x):
        n = np.exp(x)
        d = C / (6.0 * n)
        if dc is None:
            return law.predict(n, d)
        return dc.predict(n, d, np.minimum(unique, d))

    grid = np.linspace(lo, hi, 20001)
    i = int(np.argmin(f(grid)))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    r = minimize_scalar(lambda x: float(f(x)), bounds=(a, b), method="bounded", options={"xatol": 1e-12})
    x = r.x if r.fun <= f(grid[i]) else grid[i]
    n = math.exp(x)
    return n, C / (6.0 * n), float(f(x))


def perturbed(law, n=60, seed=0):
    rng = np.random.default_rng(seed)
    base = np.array([law.E, law.A, law.B, law.alpha, law.beta])
    return laws_from_samples(base * np.exp(rng.normal(0.0, [0.01, 0.05, 0.05, 0.01, 0.01], (n, 5))))


DEGENERATE = [Chinchilla(float("nan"), 400.0, 400.0, 0.3, 0.3), Chinchilla(1.7, 400.0, 400.0, -0.3, 0.28),
              Chinchilla(1.7, float("inf"), 400.0, 0.3, 0.3)]


# ---------------------------------------------------------------------------------------------------------
# Unconstrained closed form and the Hoffmann reference


@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("C", [1e18, 1e21, 1e24])
def test_closed_form_matches_brute_force(law, C):
    p = allocate(law, C)
    n, d, loss = brute_force(law, C)
    assert p.n_params == pytest.approx(n, rel=1e-5)
    assert p.n_tokens == pytest.approx(d, rel=1e-5)
    assert p.loss == pytest.approx(loss, rel=1e-12)
    assert p.loss <= loss + 1e-14  # the closed form is the true minimum
    assert 6 * p.n_params * p.n_tokens == pytest.approx(C, rel=1e-12)
    assert (p.constraint, p.efficiency, p.kind) == ("none", 1.0, "budget")
    assert p.n_params == pytest.approx(law.G * (C / 6) ** law.a, rel=1e-12)


def test_hoffmann_5p76e23_reference_values():
    C = 5.76e23
    n, d, loss = brute_force(HOFF, C)
    # the published parameters give ~32B params / ~3.0T tokens, not Chinchilla's 70B / 1.4T
    assert 3.1e10 < n < 3.3e10 and 2.9e12 < d < 3.1e12 and 1.92 < loss < 1.94
    ref = chinchilla_reference()
    row = ref[ref.compute == C].iloc[0]
    assert row.n_params == pytest.approx(n, rel=1e-4)
    assert row.n_tokens == pytest.approx(d, rel=1e-4)
    assert row.loss == pytest.approx(loss, rel=1e-9)
    naive = (C / (6 * 410.7)) ** (0.28 / (0.34 + 0.28))
    assert 1.5e9 < naive < 1.65e9
    assert row.naive_n_params == pytest.approx(naive, rel=1e-12)
    assert row.naive_rel_diff == pytest.approx(naive / n - 1, rel=1e-4)
    assert row.naive_rel_diff < -0.9  # off by ~20x
    assert "disagrees" in row.note and "-95.1%" in row.note
    assert "parameter caps binding: 1e+09, 1e+10" in row.note
    # capped plans: 1e9 and 1e10 bind, 1e11 and 1e12 do not
    assert row["cap_1e+09_n_params"] == 1e9 and row["cap_1e+10_n_params"] == 1e10
    assert row["cap_1e+09_n_tokens"] == pytest.approx(C / 6e9, rel=1e-12)
    nb, db, lb = brute_force(HOFF, C, n_max=1e9)
    assert row["cap_1e+09_loss"] == pytest.approx(lb, rel=1e-9)
    assert row["cap_1e+09_efficiency"] == pytest.approx(loss / lb, rel=1e-9) and row["cap_1e+09_efficiency"] < 0.95
    assert row["cap_1e+11_n_params"] == row.n_params and row["cap_1e+11_efficiency"] == 1.0
    assert list(ref.compute) == [1e19, 1e20, 1e21, 1e22, 5.76e23]
    first = ref.iloc[0]  # 1e19 FLOPs: N* ~ 2.3e8 < every cap
    assert "no parameter cap binds" in first.note and "disagrees" in first.note


def test_reference_note_when_the_naive_formula_agrees():
    # G = 1 and B = 1 make the naive formula exact
    law = Chinchilla(E=1.0, A=1.0, B=1.0, alpha=0.3, beta=0.3)
    ref = chinchilla_reference(budgets=(1e20,), caps=(1e3,), law=law)
    assert ref.naive_rel_diff.iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert "agrees" in ref.note.iloc[0] and "1e+03" in ref.note.iloc[0]


# ---------------------------------------------------------------------------------------------------------
# Caps


@pytest.mark.parametrize("law", LAWS)
def test_non_binding_caps_change_nothing(law):
    C = 1e22
    free = allocate(law, C)
    p = allocate(law, C, max_params=2 * free.n_params, max_tokens=2 * free.n_tokens)
    assert (p.n_params, p.n_tokens, p.loss) == (free.n_params, free.n_tokens, free.loss)
    assert p.constraint == "none" and p.efficiency == 1.0


@pytest.mark.parametrize("law", LAWS)
def test_binding_parameter_cap(law):
    C = 1e22
    free = allocate(law, C)
    cap = free.n_params / 7
    p = allocate(law, C, max_params=cap)
    assert p.n_params == cap and p.constraint == "max_params"
    assert 6 * p.n_params * p.n_tokens == pytest.approx(C, rel=1e-12)
    _, _, loss = brute_force(law, C, n_max=cap)
    assert p.loss == pytest.approx(loss, rel=1e-10)
    assert p.efficiency == pytest.approx(free.loss / p.loss, rel=1e-12) and p.efficiency < 1


@pytest.mark.parametrize("law", LAWS)
def test_binding_token_cap(law):
    C = 1e22
    free = allocate(law, C)
    cap = free.n_tokens / 5
    p = allocate(law, C, max_tokens=cap)
    assert p.n_tokens == pytest.approx(cap, rel=1e-12) and p.constraint == "max_tokens"
    assert 6 * p.n_params * p.n_tokens == pytest.approx(C, rel=1e-12)
    _, _, loss = brute_force(law, C, d_max=cap)
    assert p.loss == pytest.approx(loss, rel=1e-10)
    assert p.efficiency < 1


def test_caps_that_cannot_spend_the_budget():
    C = 1e23
    with pytest.raises(ValueError, match=r"6·max_params·max_tokens = 6e\+21"):
        allocate(HOFF, C, max_params=1e9, max_tokens=1e12)
    # the token cap alone would need more parameters than allowed (N* < max_params < C/(6·max_tokens))
    free = allocate(HOFF, C)
    with pytest.raises(ValueError, match="cannot be spent"):
        allocate(HOFF, C, max_params=2 * free.n_params, max_tokens=free.n_tokens / 10)
    # exactly saturated caps are fine
    p = allocate(HOFF, C, max_params=1e10, max_tokens=C / 6e10)
    assert p.n_params == pytest.approx(1e10, rel=1e-12) and p.n_tokens == pytest.approx(C / 6e10, rel=1e-12)
    assert p.constraint == "max_params+max_tokens"


@pytest.mark.parametrize("bad", [0, -1e21, float("nan"), float("inf"), "lots"])
def test_non_positive_compute_is_rejected(bad):
    with pytest.raises(ValueError, match="compute"):
        allocate(HOFF, bad)


# ---------------------------------------------------------------------------------------------------------
# Limited unique data (Muennighoff et al. 2023)


@pytest.mark.parametrize("law", [HOFF, EPOCH])
def test_unique_data_plentiful_is_the_unconstrained_plan(law):
    C = 1e23
    free = allocate(law, C)
    for U in (1e30, 3 * free.n_tokens):  # U >= D*: R_D = 0, D' = D, and N' = N at N*
        p = allocate(law, C, unique_tokens=U)
        assert p.loss == pytest.approx(free.loss, rel=1e-13)
        assert p.n_params == pytest.approx(free.n_params, rel=1e-4)
        assert p.efficiency == pytest.approx(1.0, abs=1e-13) and p.efficiency <= 1.0
        assert p.constraint == "none" and p.epochs < 1
        assert 6 * p.n_params * p.n_tokens == pytest.approx(C, rel=1e-12)


@pytest.mark.parametrize("law", [HOFF, EPOCH])
def test_unique_data_scarce(law):
    C = 1e23
    free = allocate(law, C)
    prev = free
    for U in (free.n_tokens / 3, free.n_tokens / 30, free.n_tokens / 300):
        p = allocate(law, C, unique_tokens=U)
        n, d, loss = brute_force(law, C, unique=U)
        assert p.loss == pytest.approx(loss, rel=1e-9) and p.loss <= loss * (1 + 1e-12)
        if p.epochs < 100:  # beyond, both effective terms saturate and the loss is flat in N to ~1e-12
            assert p.n_params == pytest.approx(n, rel=1e-3)
        dc = DataConstrained(law.E, law.A, law.B, law.alpha, law.beta, RD_STAR, RN_STAR)
        assert p.loss == pytest.approx(dc.predict(p.n_params, p.n_tokens, min(U, p.n_tokens)), rel=1e-13)
        assert p.epochs == pytest.approx(p.n_tokens / U) and p.epochs > 1
        assert p.constraint == "unique_tokens"
        assert 6 * p.n_params * p.n_tokens == pytest.approx(C, rel=1e-12)
        assert p.loss > prev.loss and p.efficiency < prev.efficiency and p.efficiency < 1
        assert p.efficiency == pytest.approx(free.loss / p.loss, rel=1e-12)
        if prev.epochs is not None:
            assert p.epochs > prev.epochs
        prev = p


def test_unique_data_with_a_cap_and_own_decay_constants():
    C, U = 1e23, 1e11
    p = allocate(HOFF, C, unique_tokens=U)
    capped = allocate(HOFF, C, unique_tokens=U, max_params=p.n_params / 2)
    assert capped.n_params == pytest.approx(p.n_params / 2, rel=1e-12)
    assert capped.constraint == "max_params+unique_tokens" and capped.loss > p.loss
    # slower decay of repeated data (larger R*_D) -> repetition hurts less
    lenient = allocate(HOFF, C, unique_tokens=U, rd_star=2 * RD_STAR)
    assert lenient.loss < p.loss
    with pytest.raises(ValueError, match="unique_tokens"):
        allocate(HOFF, C, unique_tokens=0)


# ---------------------------------------------------------------------------------------------------------
# Target loss


@pytest.mark.parametrize("law", LAWS)
def test_target_loss_unconstrained(law):
    for target in (law.E + 1.0, law.E + 0.3, law.E + 0.05):
        p = plan_for_loss(law, target)
        assert p.loss == pytest.approx(target, rel=1e-6) and p.loss <= target
        lo = allocate(law, p.compute * (1 - 1e-6))
        assert lo.loss > target  # a slightly smaller budget does not reach it
        c_ref = math.exp(brentq(lambda lc: law.loss_at_optimum(math.exp(lc)) - target, 0.0, 300.0, xtol=1e-14))
        assert p.compute == pytest.approx(c_ref, rel=1e-9)
        assert compute_for_loss(law, target) == pytest.approx(c_ref, rel=1e-9)
        assert p.kind == "target_loss" and p.target_loss == target and p.efficiency == pytest.approx(1.0)


@pytest.mark.parametrize("kw", [dict(max_params=5e9), dict(max_tokens=3e11), dict(unique_tokens=1e11),
                                dict(unique_tokens=3e11, max_params=5e9)])
def test_target_loss_constrained_is_the_cheapest_budget(kw):
    target = 2.05
    p = plan_for_loss(HOFF, target, **kw)
    assert p.loss == pytest.approx(target, rel=1e-6) and p.loss <= target
    assert allocate(HOFF, p.compute * (1 - 1e-6), **kw).loss > target
    again = allocate(HOFF, p.compute, **kw)
    assert again.n_params == pytest.approx(p.n_params, rel=1e-9)
    assert p.constraint != "none" and p.efficiency < 1
    assert p.compute > compute_for_loss(HOFF, target)


def test_unreachable_targets_name_the_floor():
    with pytest.raises(ValueError, match=r"irreducible loss E = 1\.69"):
        plan_for_loss(HOFF, 1.6)
    with pytest.raises(ValueError, match=r"E = 1\.69"):
        plan_for_loss(HOFF, 1.69)
    with pytest.raises(ValueError, match=r"E = 1\.69"):
        inference_plan(HOFF, 1.5, 1e12)
    with pytest.raises(ValueError, match=r"E = 1\.69"):
        compute_for_loss(HOFF, 1.0)
    floor = HOFF.E + HOFF.A / 1e9 ** HOFF.alpha  # best loss with at most 1e9 parameters
    with pytest.raises(ValueError, match=rf"best achievable loss is {floor:.8g}.*E = 1\.69"):
        plan_for_loss(HOFF, floor - 1e-3, max_params=1e9)
    plan_for_loss(HOFF, floor + 1e-3, max_params=1e9)  # just above the floor is reachable
    with pytest.raises(ValueError, match="best achievable"):
        plan_for_loss(HOFF, 1.9, unique_tokens=1e10)


# ---------------------------------------------------------------------------------------------------------
# Inference-aware plans (Sardana et al. 2024)


def brute_inference(law, target, t_inf):
    """Minimise 6·N·D(N) + 2·N·T over log N, D(N) = (B/(L − E − A/N^α))^(1/β) from the loss constraint."""
    n_min = (law.A / (target - law.E)) ** (1 / law.alpha)

    def total(x):
        n = math.exp(x)
        d = (law.B / (target - law.E - law.A / n ** law.alpha)) ** (1 / law.beta)
        return 6 * n * d + 2 * n * t_inf

    grid = np.linspace(math.log(n_min) + 1e-9, math.log(n_min) + 30, 30001)
    vals = np.array([total(x) for x in grid])
    i = int(np.argmin(vals))
    r = minimize_scalar(total, bounds=(grid[max(i - 1, 0)], grid[i + 1]), method="bounded",
                        options={"xatol": 1e-12})
    return math.exp(r.x), r.fun


def test_inference_plan_without_inference_is_chinchilla_optimal():
    target = 2.0
    c = math.exp(brentq(lambda lc: HOFF.loss_at_optimum(math.exp(lc)) - target, 0.0, 300.0, xtol=1e-14))
    n_chin, d_chin = HOFF.optimal_allocation(c)
    p = inference_plan(HOFF, target, 0.0)
    assert p.n_params == pytest.approx(n_chin, rel=1e-3)
    assert p.n_tokens == pytest.approx(d_chin, rel=1e-3)
    assert p.compute == pytest.approx(c, rel=1e-9) and p.total_flops == pytest.approx(c, rel=1e-9)
    assert p.loss == pytest.approx(target, rel=1e-12)
    assert p.reference.n_params == pytest.approx(n_chin, rel=1e-3)
    assert p.savings_flops == pytest.approx(0.0, abs=1e-9 * c)


def test_inference_plan_trades_parameters_for_tokens():
    target = 2.0
    prev = inference_plan(HOFF, target, 0.0)
    for t_inf in (1e11, 1e12, 1e13, 1e14):
        p = inference_plan(HOFF, target, t_inf)
        n_bf, total_bf = brute_inference(HOFF, target, t_inf)
        assert p.total_flops == pytest.approx(total_bf, rel=1e-9) and p.total_flops <= total_bf * (1 + 1e-12)
        assert p.n_params == pytest.approx(n_bf, rel=1e-3)
        assert p.loss == pytest.approx(target, rel=1e-12)
        assert p.inference_flops == pytest.approx(2 * p.n_params * t_inf, rel=1e-15)
        assert p.total_flops == pytest.approx(6 * p.n_params * p.n_tokens + 2 * p.n_params * t_inf, rel=1e-15)
        ref = p.reference
        assert ref.total_flops == pytest.approx(ref.compute + 2 * ref.n_params * t_inf, rel=1e-15)
        assert p.total_flops < ref.total_flops and p.savings_flops > 0
        assert p.compute > ref.compute  # more training, much less inference
        assert p.n_params < prev.n_params and p.n_tokens > prev.n_tokens
        assert p.efficiency < 1 and p.kind == "inference"
        prev = p
    d = prev.to_dict()
    assert d["savings_fraction"] == pytest.approx(d["savings_flops"] / d["chinchilla_optimal"]["total_flops"])
    assert 0.3 < d["savings_fraction"] < 1  # 1e14 inference tokens: the small model saves a lot


def test_inference_plan_with_caps():
    target = 2.0
    p0 = inference_plan(HOFF, target, 0.0, max_params=1e10)
    assert p0.compute == pytest.approx(plan_for_loss(HOFF, target, max_params=1e10).compute, rel=1e-8)
    assert p0.n_params == pytest.approx(1e10, rel=1e-9) and p0.constraint == "max_params"
    free = inference_plan(HOFF, target, 1e14)
    capped = inference_plan(HOFF, target, 1e14, max_tokens=free.n_tokens / 2)
    assert capped.n_tokens == pytest.approx(free.n_tokens / 2, rel=1e-9) and capped.constraint == "max_tokens"
    assert capped.total_flops > free.total_flops
    with pytest.raises(ValueError, match="inference_tokens"):
        inference_plan(HOFF, target, -1.0)


# ---------------------------------------------------------------------------------------------------------
# Bootstrap intervals


def contains(ci, value):
    lo, hi = ci
    return lo <= value <= hi


@pytest.mark.parametrize("kw", [{}, dict(max_params=5e9), dict(unique_tokens=1e11)])
def test_budget_intervals_contain_the_point(kw):
    samples = perturbed(HOFF) + DEGENERATE
    p = allocate(HOFF, 1e23, samples=samples, level=0.9, **kw)
    assert p.ci_samples == 60 and p.ci_level == 0.9
    for name in ("n_params", "n_tokens", "loss"):
        assert contains(p.ci[name], getattr(p, name)), name
    assert p.ci["loss"][0] < p.ci["loss"][1]  # (n_params can sit on the cap in every sample)
    wide = allocate(HOFF, 1e23, samples=samples, level=0.99, **kw)
    assert wide.ci["loss"][0] <= p.ci["loss"][0] and wide.ci["loss"][1] >= p.ci["loss"][1]
    assert allocate(HOFF, 1e23, samples=[], **kw).ci is None


def test_target_and_inference_intervals_contain_the_point():
    samples = perturbed(HOFF, seed=1) + DEGENERATE
    for p in (plan_for_loss(HOFF, 2.0, samples=samples), plan_for_loss(HOFF, 2.1, unique_tokens=1e11, samples=samples),
              inference_plan(HOFF, 2.0, 1e13, samples=samples)):
        assert p.ci_samples == 60
        for name in ("n_params", "n_tokens", "compute", "loss"):
            assert contains(p.ci[name], getattr(p, name)), (p.kind, name)
        if p.kind == "inference":
            assert contains(p.ci["total_flops"], p.total_flops)
    # samples as an (S, 5) array give the same intervals
    arr = np.array([[s.E, s.A, s.B, s.alpha, s.beta] for s in samples])
    assert plan_for_loss(HOFF, 2.0, samples=arr).ci == plan_for_loss(HOFF, 2.0, samples=samples).ci


def test_allocation_table_keeps_the_warehouse_contract():
    samples = perturbed(HOFF, seed=2)
    t = allocation_table(HOFF, [1e20, 1e22, 1e24], samples=samples, level=0.95)
    stored = ["compute", "n_params", "n_tokens", "tokens_per_param", "loss", "constraint", "n_params_lo",
              "n_params_hi", "n_tokens_lo", "n_tokens_hi", "loss_lo", "loss_hi"]
    assert set(stored) <= set(t.columns) and "efficiency" in t.columns
    for name in ("n_params", "n_tokens", "loss"):
        assert (t[f"{name}_lo"] <= t[name]).all() and (t[name] <= t[f"{name}_hi"]).all()
    assert t.n_params.tolist() == pytest.approx([HOFF.optimal_allocation(c)[0] for c in (1e20, 1e22, 1e24)])
    assert (t.constraint == "none").all() and (t.efficiency == 1.0).all()
    plain = allocation_table(HOFF, [1e20], samples=[])
    assert "n_params_lo" not in plain.columns
    capped = allocation_table(HOFF, [1e24], max_params=1e10, unique_tokens=1e12)
    assert capped.constraint.iloc[0] == "max_params+unique_tokens" and capped.epochs.iloc[0] > 1


# ---------------------------------------------------------------------------------------------------------
# Fit JSON -> plans


def fit_json(with_ci=True, **params):
    res = FitResult(form="chinchilla", params={"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28,
                                               **params},
                    loss="huber", delta=1e-3, n_points=40, objective=0.0123, fit_seconds=0.5,
                    diagnostics={"warnings": ["E is not below the lowest observed loss"]},
                    ci={"alpha": (0.3, 0.38), "beta": (0.25, 0.31)} if with_ci else None)
    return json.loads(json.dumps(res.to_dict()))  # exactly what `fit --json` prints, read back


def test_plans_from_fit_budgets_target_and_inference():
    out = plans_from_fit(fit_json(), [1e21, 1e22], target_loss=2.0, inference_tokens=1e13)
    json.dumps(out, allow_nan=False)
    assert [p["kind"] for p in out["plans"]] == ["budget", "budget", "inference"]
    b = out["plans"][0]
    assert b["n_params"] == pytest.approx(HOFF.optimal_allocation(1e21)[0], rel=1e-12)
    assert b["inference_flops"] == pytest.approx(2 * b["n_params"] * 1e13)
    assert b["total_flops"] == pytest.approx(1e21 + b["inference_flops"])
    for key in ("compute", "n_params", "n_tokens", "tokens_per_param", "loss", "constraint", "efficiency"):
        assert key in b
    assert "ci" not in b
    inf = out["plans"][2]
    assert inf["loss"] == pytest.approx(2.0, rel=1e-9) and inf["savings_flops"] > 0
    assert inf["total_flops"] <= inf["chinchilla_optimal"]["total_flops"]
    assert out["law"]["a"] == pytest.approx(0.28 / 0.62) and out["law"]["G"] == pytest.approx(HOFF.G)
    notes = " ".join(out["notes"])
    assert "no bootstrap samples" in notes and "'ci'" in notes
    assert "fit warning: E is not below" in notes


def test_plans_from_fit_target_only_unique_data_and_samples():
    out = plans_from_fit(fit_json(with_ci=False), None, target_loss=2.05, unique_tokens=1e11)
    (p,) = out["plans"]
    assert p["kind"] == "target_loss" and p["loss"] == pytest.approx(2.05, rel=1e-6)
    assert p["epochs"] == pytest.approx(p["n_tokens"] / 1e11) and p["epochs"] > 1
    assert out["law"]["rd_star"] == RD_STAR and out["law"]["rn_star"] == RN_STAR
    assert not any("no bootstrap samples" in n for n in out["notes"])
    own = plans_from_fit(fit_json(rd_star=30.0, rn_star=5.0), [1e23], unique_tokens=1e11)
    assert own["law"]["rd_star"] == 30.0 and "(fit)" in " ".join(own["notes"])
    samples = perturbed(HOFF, seed=3) + DEGENERATE[:1]
    out = plans_from_fit(fit_json(), [1e22], max_params=5e9, samples=samples, level=0.8)
    (p,) = out["plans"]
    assert p["constraint"] == "max_params" and p["n_params"] == 5e9
    assert set(p["ci"]) == {"n_params", "n_tokens", "loss"} and p["ci_level"] == 0.8 and p["ci_samples"] == 60
    assert p["ci"]["loss"][0] <= p["loss"] <= p["ci"]["loss"][1]
    assert any("1 of 61 bootstrap laws" in n for n in out["notes"])
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize("kwargs, match", [
    (dict(compute=[0.0]), "compute"),
    (dict(compute=[-1e21]), "compute"),
    (dict(compute=[1e23], max_params=1e9, max_tokens=1e12), "cannot be spent"),
    (dict(compute=None, target_loss=1.5), r"E = 1\.69"),
    (dict(compute=None), "nothing to plan"),
    (dict(compute=[], target_loss=2.0, inference_tokens=1e12, unique_tokens=1e11), "not supported"),
])
def test_plans_from_fit_rejects_impossible_requests(kwargs, match):
    compute = kwargs.pop("compute")
    with pytest.raises(ValueError, match=match):
        plans_from_fit(fit_json(), compute, **kwargs)


def test_plans_from_fit_needs_a_chinchilla_fit():
    dc = fit_json()
    dc["form"] = "data_constrained"
    with pytest.raises(ValueError, match="'chinchilla' fit.*'data_constrained'"):
        plans_from_fit(dc, [1e21])
    broken = fit_json()
    broken["params"]["alpha"] = None  # non-finite values are printed as null
    with pytest.raises(ValueError, match="alpha"):
        law_from_fit(broken)
    assert law_from_fit(fit_json()) == HOFFMANN
