"""Fast tests of scaling_pipeline.lib.fitting / laws on synthetic data (no reference files needed)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import brentq, minimize_scalar

from scaling_pipeline.lib.fitting.chinchilla import chinchilla_objective, fit_chinchilla
from scaling_pipeline.lib.fitting.common import FitError
from scaling_pipeline.lib.fitting.csv import fit_csv
from scaling_pipeline.lib.fitting.data_constrained import fit_data_constrained
from scaling_pipeline.lib.fitting.isoflop import isoflop_approach2
from scaling_pipeline.lib.fitting.log_linear import fit_log_linear
from scaling_pipeline.lib.fitting.one_variable import fit_kaplan, fit_power_law, fit_saturating
from scaling_pipeline.lib.fitting.resample import backtest_chinchilla, bootstrap_chinchilla
from scaling_pipeline.lib.laws import FORMS, MUENNIGHOFF, Chinchilla, DataConstrained, Kaplan

HOFFMANN = Chinchilla(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
EPOCH = Chinchilla(E=1.8172, A=477.8, B=2143.4, alpha=0.3473, beta=0.3672)
TRUTHS = [
    HOFFMANN,
    EPOCH,
    Chinchilla(E=2.0, A=300.0, B=1000.0, alpha=0.30, beta=0.30),
    Chinchilla(E=1.5, A=1000.0, B=5000.0, alpha=0.45, beta=0.40),
    Chinchilla(E=1.9, A=120.0, B=600.0, alpha=0.25, beta=0.30),
]


def ladder(law: Chinchilla, *, sizes: int = 8, noise: float = 0.01, seed: int = 0):
    """``sizes × sizes`` grid: N 1e7..3e10 params, D 2e8..6e11 tokens, multiplicative noise."""
    n_grid = np.geomspace(1e7, 10**10.5, sizes)
    d_grid = np.geomspace(10**8.3, 10**11.8, sizes)
    N, D = (a.ravel() for a in np.meshgrid(n_grid, d_grid))
    L = law.predict(N, D) * np.exp(np.random.default_rng(seed).normal(0.0, noise, N.size))
    return N, D, L


def numeric_optimum(law: Chinchilla, C: float) -> float:
    """N* (params) minimising L(N, C/(6N)), found by bounded Brent search on log N."""
    res = minimize_scalar(
        lambda t: law.predict(math.exp(t), C / (6 * math.exp(t))),
        bounds=(math.log(1e3), math.log(C / 6 / 1e3)),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return math.exp(res.x)


# ------------------------------------------------------------------ Chinchilla fit


@pytest.mark.parametrize("truth", TRUTHS, ids=lambda t: f"a{t.alpha}-b{t.beta}")
@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_exponents_from_noisy_ladder(truth, seed):
    N, D, L = ladder(truth, seed=seed)
    fit = fit_chinchilla(N, D, L)
    assert fit.params["alpha"] == pytest.approx(truth.alpha, abs=0.03)
    assert fit.params["beta"] == pytest.approx(truth.beta, abs=0.03)
    assert fit.n_points == 64 and fit.form == "chinchilla" and fit.loss == "huber"
    assert fit.diagnostics["rmse_log_residual"] < 0.02


@pytest.mark.parametrize("loss", ["huber", "huber_loss_space", "mse"])
def test_exact_data_recovers_all_parameters(loss):
    N, D, L = ladder(EPOCH, sizes=6, noise=0.0)
    fit = fit_chinchilla(N, D, L, loss=loss)
    for name in ("E", "A", "B", "alpha", "beta"):
        assert fit.params[name] == pytest.approx(getattr(EPOCH, name), rel=1e-4), name
    assert fit.objective < 1e-12
    assert fit.delta == (None if loss == "mse" else 1e-3)


def test_global_fit_polishes_every_profile_minimum():
    """A surface with two basins in alpha (a steep extra D term bends the small-budget runs): the
    best cell of the coarse profile grid lies in the worse basin (alpha ~0.21, 3% above the
    optimum), the other basin's cell has a higher profile value but polishes to the optimum
    (alpha ~0.46). The global fit must polish both and return the better one."""
    N, T = (a.ravel() for a in np.meshgrid(np.geomspace(5.2e6, 4.2e9, 5), np.geomspace(5.7, 360, 4)))
    D = N * T
    noise = np.exp(np.random.default_rng(8).normal(0.0, 0.011, N.size))
    L = (1.7 + 60 * N**-0.35 + 280 * D**-0.24 + 7.1e6 * D**-1.3) * noise
    low = fit_chinchilla(N, D, L, bounds={"alpha": (0.0, 0.3)})
    high = fit_chinchilla(N, D, L, bounds={"alpha": (0.3, 3.0)})
    assert low.diagnostics["at_bounds"] == [] and high.diagnostics["at_bounds"] == []  # two interior minima
    assert high.objective < 0.98 * low.objective
    fit = fit_chinchilla(N, D, L)
    starts = fit.diagnostics["optimizer"]["starts"]
    assert starts[0][0][0] < 0.3 and starts[0][1] == pytest.approx(low.objective, rel=1e-9)  # grid's best cell
    assert fit.objective == pytest.approx(high.objective, rel=1e-9)
    assert fit.params["alpha"] == pytest.approx(high.params["alpha"], abs=1e-4)


def test_fit_is_deterministic_and_order_independent():
    N, D, L = ladder(HOFFMANN, sizes=6, seed=3)
    a, b = fit_chinchilla(N, D, L), fit_chinchilla(N, D, L)
    assert a.params == b.params and a.objective == b.objective
    perm = np.random.default_rng(0).permutation(N.size)
    c = fit_chinchilla(N[perm], D[perm], L[perm])
    assert c.objective == pytest.approx(a.objective, rel=1e-7)
    assert c.params["alpha"] == pytest.approx(a.params["alpha"], abs=1e-4)


def test_objective_helper_matches_fit():
    N, D, L = ladder(EPOCH, sizes=5, seed=4)
    fit = fit_chinchilla(N, D, L)
    assert chinchilla_objective(fit.params, N, D, L) == pytest.approx(fit.objective, rel=1e-12)
    assert chinchilla_objective(fit.params, N, D, L, loss="mse") > 0


def test_result_is_json_ready_and_builds_law():
    fit = fit_chinchilla(*ladder(EPOCH, sizes=5, seed=5))
    d = fit.to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d) == {"form", "loss", "delta", "n_points", "params", "objective", "fit_seconds",
                      "diagnostics"}
    assert isinstance(fit.law, Chinchilla)
    assert fit.law.predict(1e9, 2e10) == pytest.approx(
        fit.params["E"] + fit.params["A"] / 1e9 ** fit.params["alpha"]
        + fit.params["B"] / 2e10 ** fit.params["beta"]
    )
    diag = d["diagnostics"]
    for key in ("hessian_condition", "flat_direction", "rmse_log_residual", "max_abs_rel_error",
                "at_bounds", "warnings"):
        assert key in diag
    assert diag["warnings"] == [] and diag["at_bounds"] == []
    assert 1 < diag["hessian_condition"] < 1e8


def test_bounds_are_respected_and_reported():
    N, D, L = ladder(EPOCH, sizes=6, seed=6)
    fit = fit_chinchilla(N, D, L, bounds={"alpha": (0.1, 0.3)})
    assert fit.params["alpha"] == pytest.approx(0.3, abs=1e-6)
    assert fit.diagnostics["at_bounds"] == ["alpha"]
    assert any("alpha" in w and "upper bound" in w for w in fit.diagnostics["warnings"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"bounds": {"A": (1, 10)}}, "bounds on A are not supported"),
        ({"bounds": {"gamma": (0, 1)}}, "unknown bound 'gamma'"),
        ({"bounds": {"alpha": (0.5, 0.1)}}, "0 <= lo < hi"),
        ({"loss": "l1"}, "loss must be one of"),
        ({"delta": 0.0}, "delta must be finite and > 0"),
    ],
)
def test_bad_options_raise_fit_error(kwargs, match):
    with pytest.raises(FitError, match=match):
        fit_chinchilla(*ladder(EPOCH, sizes=5), **kwargs)


GOOD_N = np.repeat(np.geomspace(1e8, 1e10, 4), 4)
GOOD_D = np.tile(np.geomspace(1e9, 1e11, 4), 4)
GOOD_L = EPOCH.predict(GOOD_N, GOOD_D)


@pytest.mark.parametrize(
    "N, D, L, match",
    [
        (GOOD_N[:4], GOOD_D[:4], GOOD_L[:4], "need at least 5 points to fit 5 parameters, got 4"),
        (GOOD_N, GOOD_D, np.where(np.arange(16) == 3, np.nan, GOOD_L),
         r"L must be finite and > 0; 1 bad value\(s\): \[3\]=nan"),
        (GOOD_N, -GOOD_D, GOOD_L, "D must be finite and > 0; 16 bad value"),
        (np.where(np.arange(16) == 0, 0.0, GOOD_N), GOOD_D, GOOD_L, r"N must be .*\[0\]=0.0"),
        (GOOD_N, GOOD_D, np.where(np.arange(16) == 5, np.inf, GOOD_L), r"\[5\]=inf"),
        (np.full(16, 1e9), GOOD_D, GOOD_L, "only 1 distinct model sizes"),
        (GOOD_N, np.full(16, 2e10), GOOD_L, "only 1 distinct token budgets"),
        (np.where(GOOD_N > 1e9, 1e10, 1e8), GOOD_D, GOOD_L, "only 2 distinct model sizes"),
        (GOOD_N, GOOD_D[:-1], GOOD_L, "same length"),
        (GOOD_N.reshape(4, 4), GOOD_D, GOOD_L, "1-D"),
        (["x"] * 16, GOOD_D, GOOD_L, "N must be numeric"),
    ],
)
def test_bad_inputs_raise_clear_fit_error(N, D, L, match):
    with pytest.raises(FitError, match=match):
        fit_chinchilla(N, D, L)


def test_fit_error_is_a_value_error():
    assert issubclass(FitError, ValueError)


def test_weak_designs_are_flagged_not_silently_fitted():
    n = np.geomspace(1e7, 1e10, 10)
    collinear = fit_chinchilla(n, 20 * n, EPOCH.predict(n, 20 * n))
    assert any("collinear" in w for w in collinear.diagnostics["warnings"])
    three = fit_chinchilla(np.repeat([1e8, 3e8, 1e9], 6), np.tile(np.geomspace(1e9, 1e11, 6), 3),
                           EPOCH.predict(np.repeat([1e8, 3e8, 1e9], 6),
                                         np.tile(np.geomspace(1e9, 1e11, 6), 3)))
    assert any("only 3 distinct model sizes" in w for w in three.diagnostics["warnings"])
    N, D, _ = ladder(EPOCH, sizes=6)
    no_d = fit_chinchilla(N, D, 1.8 + 477.0 / N**0.34)  # the loss does not depend on D at all
    assert any("not positive definite" in w or "condition" in w
               for w in no_d.diagnostics["warnings"])


# ------------------------------------------------------------------ compute-optimal allocation


@pytest.mark.parametrize("law", TRUTHS)
@pytest.mark.parametrize("C", [1e19, 3.3e21, 5.76e23, 1e26])
def test_optimal_allocation_matches_brute_force(law, C):
    n_opt, d_opt = law.optimal_allocation(C)
    assert 6 * n_opt * d_opt == pytest.approx(C, rel=1e-12)
    assert n_opt == pytest.approx(numeric_optimum(law, C), rel=1e-5)
    grid = np.geomspace(n_opt / 3, n_opt * 3, 2001)  # brute force along the iso-FLOP line
    assert law.loss_at_optimum(C) <= law.predict(grid, C / (6 * grid)).min() + 1e-15


def test_hoffmann_published_params_closed_form_at_chinchilla_budget():
    C = 5.76e23  # Chinchilla / Gopher compute
    n_opt, d_opt = HOFFMANN.optimal_allocation(C)
    assert n_opt == pytest.approx(3.2189859151368e10, rel=1e-9)  # the closed form's value
    assert d_opt == pytest.approx(2.9823056866628e12, rel=1e-9)
    # independent numeric minimisation: stationary point of L along C = 6ND (Brent root of
    # dL/dlogN) and a bounded Brent minimisation of L itself
    A, B, alpha, beta = 406.4, 410.7, 0.34, 0.28

    def dlogn(t):
        N = math.exp(t)
        return -alpha * A * N**-alpha + beta * B * (C / (6 * N)) ** -beta

    root = math.exp(brentq(dlogn, math.log(1e6), math.log(1e15), xtol=1e-14, rtol=1e-15))
    assert n_opt == pytest.approx(root, rel=1e-6)
    assert n_opt == pytest.approx(numeric_optimum(HOFFMANN, C), rel=1e-5)
    assert HOFFMANN.a == pytest.approx(0.28 / 0.62) and HOFFMANN.b == pytest.approx(0.34 / 0.62)


# ------------------------------------------------------------------ bootstrap


def test_bootstrap_is_reproducible_and_independent_of_processes():
    N, D, L = ladder(EPOCH, sizes=5, seed=7)
    serial = bootstrap_chinchilla(N, D, L, n_boot=40, seed=11, n_jobs=1)
    parallel = bootstrap_chinchilla(N, D, L, n_boot=40, seed=11, n_jobs=2)
    assert np.array_equal(serial.samples, parallel.samples)
    assert serial.ci == parallel.ci
    other = bootstrap_chinchilla(N, D, L, n_boot=40, seed=12, n_jobs=1)
    assert not np.array_equal(serial.samples, other.samples)
    assert serial.samples.shape == (40, 5)
    assert set(serial.ci) == {"E", "A", "B", "alpha", "beta", "a"}
    assert serial.fit.ci == serial.ci
    json.dumps(serial.fit.to_dict(), allow_nan=False)


def test_bootstrap_derived_ci():
    N, D, L = ladder(EPOCH, sizes=5, seed=8)
    boot = bootstrap_chinchilla(N, D, L, n_boot=60, seed=0, n_jobs=1)
    C = np.array([1e21, 1e23])
    derived = boot.derived_ci(C)
    point_n, point_d = boot.fit.law.optimal_allocation(C)
    point_loss = boot.fit.law.loss_at_optimum(C)
    for name, point in (("N_opt", point_n), ("D_opt", point_d), ("loss_opt", point_loss)):
        lo, hi = derived[name].T
        assert derived[name].shape == (2, 2)
        assert np.all(lo <= point) and np.all(point <= hi), name
    with pytest.raises(FitError, match="budgets"):
        boot.derived_ci([-1.0])


def test_bootstrap_flags_bound_limited_intervals():
    N, D, _ = ladder(EPOCH, sizes=5)
    boot = bootstrap_chinchilla(N, D, 1.8 + 477.0 / N**0.34, n_boot=30, n_jobs=1)  # no D term
    assert boot.at_bounds.get("B", 0) >= 15
    assert any(w.startswith("B is at a bound in") for w in boot.fit.diagnostics["warnings"])
    assert boot.fit.diagnostics["bootstrap_at_bounds"] == boot.at_bounds
    clean = bootstrap_chinchilla(*ladder(EPOCH, sizes=5, seed=1), n_boot=30, n_jobs=1)
    assert clean.at_bounds == {} and clean.fit.diagnostics["warnings"] == []


def _coverage(n_rep: int, n_boot: int, sizes: int) -> dict[str, float]:
    N, D, _ = ladder(EPOCH, sizes=sizes)
    truth = {"alpha": EPOCH.alpha, "beta": EPOCH.beta, "a": EPOCH.a, "E": EPOCH.E}
    hits = dict.fromkeys(truth, 0)
    for rep in range(n_rep):
        L = EPOCH.predict(N, D) * np.exp(np.random.default_rng(1000 + rep).normal(0, 0.01, N.size))
        ci = bootstrap_chinchilla(N, D, L, n_boot=n_boot, seed=rep).ci
        for k, v in truth.items():
            hits[k] += ci[k][0] <= v <= ci[k][1]
    return {k: v / n_rep for k, v in hits.items()}


def test_bootstrap_ci_coverage_quick():
    cov = _coverage(n_rep=12, n_boot=60, sizes=5)
    assert all(c >= 0.75 for c in cov.values()), cov


@pytest.mark.slow
def test_bootstrap_ci_coverage_100_replicas():
    cov = _coverage(n_rep=100, n_boot=100, sizes=6)
    assert all(0.85 <= c <= 1.0 for c in cov.values()), cov


# ------------------------------------------------------------------ backtest


def test_backtest_holds_out_largest_compute():
    N, D, L = ladder(EPOCH, sizes=7, noise=0.005, seed=9)
    bt = backtest_chinchilla(N, D, L, n_holdout=5)
    assert bt["n_train"] == 44 and bt["n_holdout"] == 5
    assert min(bt["holdout"]["flops"]) >= bt["train_max_flops"]
    assert bt["max_abs_rel_error"] < 0.03
    json.dumps(bt, allow_nan=False)
    assert backtest_chinchilla(N, D, L, holdout_fraction=0.2)["n_holdout"] == 10
    with pytest.raises(FitError, match="n_holdout"):
        backtest_chinchilla(N, D, L, n_holdout=49)


# ------------------------------------------------------------------ other forms


def test_log_linear_fit_and_its_refusals():
    """Several log inputs: exact exponents when they vary independently; a power-law relation among them or a
    constant input is refused with the relation written out, whatever its coefficient and exponents."""
    rng = np.random.default_rng(3)
    a, b, c = rng.uniform(1.0, 1e3, (3, 12))
    params = lambda log_k, e: {"k": math.exp(log_k), **e}  # noqa: E731
    fit = fit_log_linear({"a": a, "b": b, "c": c}, 2.5 * a**0.3 * b**-0.7 * c**1.2, form="multiplicative",
                         params=params)
    assert fit.params == pytest.approx({"k": 2.5, "a": 0.3, "b": -0.7, "c": 1.2}, rel=1e-10)
    assert fit.loss == "mse" and fit.objective < 1e-25 and fit.diagnostics["condition"] < 10
    with pytest.raises(FitError, match=r"^c = a\^0\.5·b\^2 exactly: the exponents of c, a and b are not "
                                        r"identifiable; drop one of them or use data where c varies "
                                        r"independently of a and b$"):
        fit_log_linear({"a": a, "b": b, "c": a**0.5 * b**2}, c, form="multiplicative", params=params)
    with pytest.raises(FitError, match=r"^b = 3·a\^-1 exactly: .* where b varies independently of a$"):
        fit_log_linear({"a": a, "b": 3.0 / a, "c": c}, c, form="multiplicative", params=params)
    noisy = a**2 * np.exp(rng.normal(0, 1e-8, a.size))
    with pytest.raises(FitError, match=r"^b = a\^2 up to a relative deviation of [0-9.]+e-08: "):
        fit_log_linear({"a": a, "b": noisy}, c, form="multiplicative", params=params)
    with pytest.raises(FitError, match=r"^b = 7 in every run: its exponent is not identifiable"):
        fit_log_linear({"a": a, "b": np.full(a.size, 7.0)}, c, form="multiplicative", params=params)
    with pytest.raises(FitError, match="need at least 4 points to fit 4 parameters, got 3"):
        fit_log_linear({"a": a[:3], "b": b[:3], "c": c[:3]}, c[:3], form="multiplicative", params=params)


def test_power_law_and_kaplan():
    x = np.geomspace(1e6, 1e11, 9)
    pl = fit_power_law(x, 5.0 * x**-0.1)
    assert pl.params == pytest.approx({"f": 5.0, "alpha": 0.1}, rel=1e-10)
    k = fit_kaplan(x, (8.8e13 / x) ** 0.076, "N")
    assert k.form == "kaplan_n" and isinstance(k.law, Kaplan) and k.law.variable == "N"
    assert k.params["xc"] == pytest.approx(8.8e13, rel=1e-8)
    assert k.params["alpha"] == pytest.approx(0.076, rel=1e-10)
    c = fit_kaplan(x, (x / 3.1e8) ** -0.05, "C")
    assert c.params["xc"] == pytest.approx(3.1e8, rel=1e-8)
    with pytest.raises(FitError, match="variable"):
        fit_kaplan(x, x, "Q")
    with pytest.raises(FitError, match="distinct x"):
        fit_power_law([1.0, 1.0], [2.0, 3.0])


def test_saturating_recovers_floor():
    x = np.geomspace(1e7, 1e10, 12)
    y = 1.7 + 400.0 * x**-0.34
    fit = fit_saturating(x, y)
    assert fit.params == pytest.approx({"L0": 1.7, "k": 400.0, "alpha": 0.34}, rel=1e-5)
    pure = fit_saturating(x, 3.0 * x**-0.1)
    assert pure.params["alpha"] == pytest.approx(0.1, rel=1e-6)
    assert any("no saturation" in w for w in pure.diagnostics["warnings"])


def test_data_constrained_recovers_decay_constants():
    truth = DataConstrained(E=1.87, A=520.8, B=1487.7, alpha=0.35, beta=0.35, rd_star=12.0,
                            rn_star=4.0)
    rng = np.random.default_rng(0)
    U = np.repeat([1e8, 4e8, 1.5e9, 6e9], 12)
    D = U * np.tile(np.geomspace(1, 60, 6), 8)
    N = np.tile(np.repeat(np.geomspace(3e7, 3e9, 2), 6), 4)
    L = truth.predict(N, D, U) * np.exp(rng.normal(0, 0.002, U.size))
    fixed = {k: getattr(truth, k) for k in ("E", "A", "B", "alpha", "beta")}
    fit = fit_data_constrained(N, D, U, L, fixed=fixed)
    assert fit.params["rd_star"] == pytest.approx(12.0, rel=0.1)
    assert fit.params["rn_star"] == pytest.approx(4.0, rel=0.25)
    assert set(fit.params) == set(FORMS["data_constrained"].params)
    assert isinstance(fit.law, DataConstrained)
    with pytest.raises(FitError, match="unknown fixed"):
        fit_data_constrained(N, D, U, L, fixed={"gamma": 1.0})


def dc_ladder(truth: DataConstrained):
    """3 sizes x 3 unique-token budgets x 4 epoch counts (1..60), 0.2% noise."""
    U = np.repeat([1e8, 1e9, 1e10], 12)
    D = U * np.tile(np.geomspace(1, 60, 4), 9)
    N = np.tile(np.repeat(np.geomspace(3e7, 3e9, 3), 4), 3)
    return N, D, U, truth.predict(N, D, U) * np.exp(np.random.default_rng(0).normal(0, 0.002, U.size))


def test_data_constrained_holds_published_constants_unless_free_all():
    """Default: the paper's protocol, only R*_D and R*_N fitted, the rest at Muennighoff et al.'s values;
    free_all fits all seven and recovers a law with other constants."""
    truth = DataConstrained(E=2.0, A=300.0, B=3000.0, alpha=0.3, beta=0.4, rd_star=12.0, rn_star=4.0)
    N, D, U, L = dc_ladder(truth)
    protocol = fit_data_constrained(N, D, U, L)
    held = ("E", "A", "B", "alpha", "beta")
    assert protocol.diagnostics["fixed"] == sorted(held)
    assert {k: protocol.params[k] for k in held} == {k: getattr(MUENNIGHOFF, k) for k in held}
    free = fit_data_constrained(N, D, U, L, free_all=True, starts=(10.0,))
    assert free.diagnostics["fixed"] == []
    for name in ("E", "alpha", "beta"):
        assert free.params[name] == pytest.approx(getattr(truth, name), rel=0.02), name
    assert free.params["rd_star"] == pytest.approx(12.0, rel=0.1)
    assert free.params["rn_star"] == pytest.approx(4.0, rel=0.1)
    assert free.objective < 0.1 * protocol.objective
    with pytest.raises(FitError, match="not both"):
        fit_data_constrained(N, D, U, L, fixed={"E": 2.0}, free_all=True)


def test_isoflop_approach2_recovers_a():
    rng = np.random.default_rng(0)
    budgets = np.geomspace(1e18, 1e21, 7)
    C = np.repeat(budgets, 9)
    N = np.concatenate([EPOCH.optimal_allocation(c)[0] * np.geomspace(0.2, 5, 9) for c in budgets])
    L = EPOCH.predict(N, C / (6 * N)) + rng.normal(0, 1e-4, N.size)
    iso = isoflop_approach2(C, N, L)
    assert iso.a == pytest.approx(EPOCH.a, abs=0.02)
    assert iso.skipped == [] and iso.budgets.size == 7
    with pytest.raises(FitError, match="at least 2 compute budgets"):
        isoflop_approach2(C[:9], N[:9], L[:9])


# ------------------------------------------------------------------ CSV entry point


def write_runs(path, N, D, L, **extra):
    cols = {"run_id": [f"r{i}" for i in range(len(N))], "n_params": N, "n_tokens": D, "loss": L,
            **extra}
    lines = [",".join(cols)] + [",".join(str(cols[c][i]) for c in cols) for i in range(len(N))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_csv_returns_cli_dict(tmp_path):
    N, D, L = ladder(EPOCH, sizes=5, seed=10)
    fam = ["a"] * N.size + ["b"] * 5
    NN, DD, LL = (np.concatenate([v, v[:5]]) for v in (N, D, L * 1.5))
    path = write_runs(tmp_path / "runs.csv", NN, DD, np.concatenate([L, L[:5] * 1.5]), family=fam)
    out = fit_csv(path, family="a")
    assert list(out) == ["form", "loss", "delta", "n_points", "params", "objective", "fit_seconds",
                         "diagnostics"]
    assert set(out["params"]) == {"E", "A", "B", "alpha", "beta"} and out["n_points"] == 25
    assert out["params"] == fit_chinchilla(N, D, L).params
    json.dumps(out, allow_nan=False)
    pooled = fit_csv(path)
    assert pooled["n_points"] == 30
    assert any("pooled" in w for w in pooled["diagnostics"]["warnings"])
    boot = fit_csv(path, family="a", bootstrap=30, seed=1)
    assert set(boot["ci"]) == {"E", "A", "B", "alpha", "beta", "a"}
    assert all(lo <= hi for lo, hi in boot["ci"].values())
    assert "ci" in list(boot)[:-1]  # before diagnostics


def test_fit_csv_errors_name_the_problem(tmp_path):
    N, D, L = ladder(EPOCH, sizes=5)
    path = tmp_path / "runs.csv"
    path.write_text("n_params,n_tokens\n1e9,2e10\n")
    with pytest.raises(FitError, match=r"lacks required column\(s\) \['loss'\]"):
        fit_csv(path)
    with pytest.raises(FitError, match="no 'family' column"):
        fit_csv(path, family="x")
    with pytest.raises(FitError, match="cannot read runs CSV"):
        fit_csv(tmp_path / "missing.csv")
    bad = write_runs(tmp_path / "bad.csv", N, D, [*L[:-1], "oops"])
    msg = r"column 'loss' has 1 missing or non-numeric value\(s\) \(CSV line\(s\) 26\)"
    with pytest.raises(FitError, match=msg):
        fit_csv(bad)
    with pytest.raises(FitError, match="form must be one of"):
        fit_csv(bad, form="cubic")
    with pytest.raises(FitError, match="no rows with family 'x'"):
        fit_csv(write_runs(tmp_path / "f.csv", N, D, L, family=["a"] * N.size), family="x")


def test_fit_csv_derives_tokens_from_flops(tmp_path):
    N, D, L = ladder(EPOCH, sizes=5, seed=2)
    path = tmp_path / "runs.csv"
    path.write_text("n_params,flops,loss\n" + "".join(
        f"{n!r},{6 * n * d!r},{l!r}\n" for n, d, l in zip(N.tolist(), D.tolist(), L.tolist())))
    out = fit_csv(path)
    direct = fit_chinchilla(N, D, L).params["alpha"]
    assert out["params"]["alpha"] == pytest.approx(direct, abs=1e-6)
    assert any("flops" in w for w in out["diagnostics"]["warnings"])


def test_fit_csv_other_forms(tmp_path):
    N, D, L = ladder(EPOCH, sizes=5, seed=2)
    path = write_runs(tmp_path / "runs.csv", N, D, L, unique_tokens=D / 2)
    kap = fit_csv(path, form="kaplan_c")
    assert kap["form"] == "kaplan_c" and set(kap["params"]) == {"xc", "alpha"}
    assert any("not available" in w for w in kap["diagnostics"]["warnings"])
    with pytest.raises(FitError, match="bootstrap is only implemented"):
        fit_csv(path, form="kaplan_n", bootstrap=10)
    with pytest.raises(FitError, match="free_all applies only to form 'data_constrained'"):
        fit_csv(path, free_all=True)


def test_joint_fit_shares_exponents_and_recovers_them():
    """Three families with the same exponents but different E, A, B: the joint fit recovers the shared
    alpha, beta, each family's E, and can only be worse than the separate fits (it is constrained)."""
    from scaling_pipeline.lib.fitting.joint import fit_chinchilla_joint
    from scaling_pipeline.lib.laws import Chinchilla

    rng = np.random.default_rng(7)
    truths = {"f1": Chinchilla(1.7, 400.0, 1500.0, 0.34, 0.36), "f2": Chinchilla(2.0, 900.0, 700.0, 0.34, 0.36),
              "f3": Chinchilla(1.5, 300.0, 3000.0, 0.34, 0.36)}
    N, D, L, F = [], [], [], []
    for name, law in truths.items():
        for n in np.geomspace(2e7, 2e9, 6):
            for tpp in (5, 12, 28, 67, 160):
                N.append(n), D.append(n * tpp), F.append(name)
                L.append(law.predict(n, n * tpp) * np.exp(rng.normal(0, 0.003)))
    N, D, L, F = map(np.array, (N, D, L, F))
    joint = fit_chinchilla_joint(N, D, L, F)
    assert joint.alpha == pytest.approx(0.34, abs=0.02) and joint.beta == pytest.approx(0.36, abs=0.02)
    for name, law in truths.items():
        assert joint.families[name]["E"] == pytest.approx(law.E, abs=0.05)
        assert joint.law(name).predict(1e9, 2e10) == pytest.approx(law.predict(1e9, 2e10), rel=0.01)
    separate = sum(fit_chinchilla(N[F == f], D[F == f], L[F == f]).objective for f in truths)
    assert joint.objective >= separate * (1 - 1e-9)
    assert joint.objective == pytest.approx(sum(v["objective"] for v in joint.families.values()), rel=1e-9)
    assert joint.to_dict()["form"] == "chinchilla_joint" and joint.n_points == len(N)
    with pytest.raises(FitError, match="at least 2 families"):
        fit_chinchilla_joint(N[F == "f1"], D[F == "f1"], L[F == "f1"], F[F == "f1"])
