"""Fitters against published reference numbers (../shared/data; see its README.md).

Set SCALING_REFERENCE_DATA to the data folder to run these elsewhere; they are skipped when a
dataset is absent.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling_pipeline.lib.fitting.chinchilla import chinchilla_objective, fit_chinchilla
from scaling_pipeline.lib.fitting.data_constrained import fit_data_constrained
from scaling_pipeline.lib.fitting.isoflop import isoflop_approach2
from scaling_pipeline.lib.fitting.resample import bootstrap_chinchilla
from scaling_pipeline.lib.laws import MUENNIGHOFF, Chinchilla, DataConstrained
from tests.conftest import require_reference

pytestmark = pytest.mark.reference


# ------------------------------------------------------------------ Epoch / Chinchilla

EPOCH_PUBLISHED_CI = {  # Besiroglu et al. 2024 bootstrap 95% intervals (README section 1)
    "A": (285, 744),
    "B": (1042, 5810),
    "E": (1.769, 1.871),
    "alpha": (0.317, 0.373),
    "beta": (0.331, 0.415),
}
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


@pytest.fixture(scope="module")
def epoch():
    runs = pd.read_csv(require_reference("chinchilla_epoch") / "runs.csv")
    excluded = runs["epoch_excluded"].astype(str).str.lower() == "true"
    assert excluded.sum() == 5
    runs = runs[~excluded]
    return runs["n_params"].to_numpy(), runs["n_tokens"].to_numpy(), runs["loss"].to_numpy()


@pytest.fixture(scope="module")
def epoch_fit(epoch):
    return fit_chinchilla(*epoch)


def test_epoch_fit_reaches_reference_optimum(epoch_fit):
    ref = json.loads((require_reference("chinchilla_epoch") / "reference_values.json").read_text())
    best = ref["ours_grid_lbfgsb"]
    p = epoch_fit.params
    assert epoch_fit.n_points == 240
    # the best known optimum is 0.0010182740178 (4,500-start grid; the published notebook has
    # 0.0010182740346). Note 1.01827e-3 itself is 4e-6 below it, i.e. unreachable.
    assert epoch_fit.objective <= 0.0010182740178 * (1 + 1e-6)
    assert epoch_fit.objective == pytest.approx(best["objective"], rel=1e-6)
    assert p["alpha"] == pytest.approx(best["alpha"], abs=0.005)
    assert p["beta"] == pytest.approx(best["beta"], abs=0.005)
    assert p["E"] == pytest.approx(best["E"], abs=0.01)
    assert p["A"] == pytest.approx(best["A"], rel=0.05)
    assert p["B"] == pytest.approx(best["B"], rel=0.10)
    assert epoch_fit.diagnostics["warnings"] == []


def test_hoffmann_params_score(epoch):
    assert chinchilla_objective(HOFFMANN, *epoch) == pytest.approx(0.00412, rel=0.01)


def test_epoch_bootstrap_overlaps_published_intervals(epoch):
    boot = bootstrap_chinchilla(*epoch, n_boot=200, seed=0)
    for name, (lo, hi) in EPOCH_PUBLISHED_CI.items():
        ours = boot.ci[name]
        assert ours[0] < hi and lo < ours[1], (name, ours, (lo, hi))
        assert ours[0] <= boot.fit.params[name] <= ours[1]
    assert boot.ci["a"][0] < Chinchilla(**boot.fit.params).a < boot.ci["a"][1]


# ------------------------------------------------------------------ datablations


@pytest.fixture(scope="module")
def datablations():
    folder = require_reference("datablations")
    runs = pd.read_csv(folder / "runs.csv")
    ref = json.loads((folder / "reference_values.json").read_text())
    cols = [runs[c].to_numpy() for c in ("n_params", "n_tokens", "unique_tokens", "loss")]
    return cols, {**ref["published_params"], "tolerances": ref["suggested_tolerances"]}


def published_law(ref) -> DataConstrained:
    return DataConstrained(
        E=ref["E"], A=ref["A"], B=ref["B"], alpha=ref["alpha"], beta=ref["beta"],
        rd_star=ref["R_D_star"], rn_star=ref["R_N_star"],
    )


def test_datablations_readme_examples(datablations):
    _, ref = datablations
    law = published_law(ref)
    assert law.predict(6.34e9, 242e9, 25e9) == pytest.approx(2.2256440889984477, abs=1e-6)
    assert law.predict(8.67e9, 178e9, 25e9) == pytest.approx(2.2269634075087867, abs=1e-6)


def test_datablations_objective_and_r2_at_published_params(datablations):
    (N, D, U, L), ref = datablations
    assert N.size == 182
    pred = np.asarray(published_law(ref).predict(N, D, U))
    r = np.log(pred) - np.log(L)
    c = np.clip(r, -1e-3, 1e-3)
    assert float(c @ (r - 0.5 * c)) == pytest.approx(0.0158259, rel=0.01)
    r2 = 1 - np.sum((pred - L) ** 2) / np.sum((L - L.mean()) ** 2)
    assert r2 == pytest.approx(ref["published_r2"], abs=0.005)


def test_published_constants_match_the_reference(datablations):
    _, ref = datablations
    assert MUENNIGHOFF == published_law(ref)


def test_datablations_refit_of_decay_constants(datablations):
    """The default data-constrained fit is the paper's protocol and finds R*_D ~ 15.4, R*_N ~ 5.3."""
    (N, D, U, L), ref = datablations
    tol = ref["tolerances"]
    fit = fit_data_constrained(N, D, U, L)
    assert fit.diagnostics["fixed"] == ["A", "B", "E", "alpha", "beta"]
    assert fit.params["rd_star"] == pytest.approx(ref["R_D_star"], rel=tol["R_D_star_rel"])
    assert fit.params["rn_star"] == pytest.approx(ref["R_N_star"], rel=tol["R_N_star_rel"])
    assert fit.objective == pytest.approx(ref["published_objective_float32"], rel=tol["objective_rel"])


# ------------------------------------------------------------------ IsoFLOP (Porian et al.)


def test_isoflop_approach2_matches_published_exponents():
    folder = require_reference("isoflop_porian")
    points = pd.read_csv(folder / "isoflops.csv")
    published = pd.read_csv(folder / "config_exponents.csv").set_index("config")["a_published"]
    assert len(published) == 15
    misses = {}
    for config, g in points.groupby("config"):
        a = isoflop_approach2(g["flops"], g["n_params"], g["loss"]).a
        if abs(a - published[config]) > 0.05:
            misses[config] = (a, published[config])
    assert not misses, misses
