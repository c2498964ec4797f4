"""The laws registry: every form is one class that fits, predicts (also stacked) and round-trips its params."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling_pipeline.cli import main
from scaling_pipeline.lib.fitting.common import FitError
from scaling_pipeline.lib.fitting.csv import fit_csv
from scaling_pipeline.lib.laws import FORMS, Chinchilla, DataConstrained, get

TRUTH = Chinchilla(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory) -> tuple[str, pd.DataFrame]:
    """A 6 x 5 ladder with every column a form may read; compute varies independently of 6·N·D (hardware
    efficiency) and some runs repeat their data."""
    rng = np.random.default_rng(4)
    N = np.repeat(np.geomspace(2e7, 2e9, 6), 5)
    D = N * np.tile(np.geomspace(4.0, 160.0, 5), 6)
    L = TRUTH.predict(N, D) * np.exp(rng.normal(0.0, 0.004, N.size))
    df = pd.DataFrame({"n_params": N, "n_tokens": D, "unique_tokens": D / rng.choice([1.0, 1.0, 2.0, 4.0], N.size),
                       "flops": 6.0 * N * D * rng.uniform(1.0, 3.0, N.size), "loss": L})
    path = tmp_path_factory.mktemp("laws") / "runs.csv"
    df.to_csv(path, index=False)
    return str(path), df


def test_registry_names_every_form():
    assert {"chinchilla", "data_constrained", "kaplan_n", "kaplan_d", "kaplan_c", "power_law",
            "saturating"} <= set(FORMS)
    for name, law in FORMS.items():
        assert law.name == name and get(name) is law
        assert law.formula and set(law.params) <= set(law.units)
    assert FORMS["chinchilla"].optimal_allocation is not None and FORMS["power_law"].optimal_allocation is None
    with pytest.raises(ValueError, match="form must be one of"):
        get("cubic")


@pytest.mark.parametrize("name", sorted(FORMS))
def test_every_form_fits_a_csv_and_its_class_reproduces_the_fit(runs_csv, name):
    """The fitted law, evaluated by its class, has the residuals the fitter reported; a stack of perturbed
    laws predicts row by row what each law predicts alone."""
    path, df = runs_csv
    law_cls = get(name)
    out = fit_csv(path, form=name)
    json.dumps(out, allow_nan=False)
    assert out["form"] == name
    law = law_cls.from_params(out["params"])
    assert law.to_params() == pytest.approx(out["params"], rel=1e-15)
    columns = out["diagnostics"]["source"]["columns"]
    inputs = {v: df[c].to_numpy(float) for v, c in columns.items() if v != "y"}
    r = np.log(law.predict(**inputs)) - np.log(df[columns["y"]].to_numpy(float))
    assert np.sqrt(np.mean(r**2)) == pytest.approx(out["diagnostics"]["rmse_log_residual"], rel=1e-9)

    names = list(law.to_params())
    rows = np.array(list(law.to_params().values())) * np.exp(np.random.default_rng(1).normal(0, 0.01, (4, len(names))))
    stacked = law_cls.stack(rows, names).predict(**inputs)
    assert stacked.shape == (4, len(df))
    for i, row in enumerate(rows):
        single = law_cls.from_params(dict(zip(names, row))).predict(**inputs)
        np.testing.assert_array_equal(stacked[i], single)


def test_chinchilla_closed_forms_agree_with_predict():
    C = np.array([1e20, 1e22, 1e24])
    n, d = TRUTH.optimal_allocation(C)
    np.testing.assert_allclose(6 * n * d, C, rtol=1e-14)
    np.testing.assert_allclose(TRUTH.loss_at_optimum(C), TRUTH.E + TRUTH.K * (C / 6) ** -TRUTH.gamma, rtol=1e-13)
    np.testing.assert_allclose(TRUTH.compute_for_loss(TRUTH.loss_at_optimum(C)), C, rtol=1e-10)
    ln_n, ln_d = TRUTH.log_inputs_for(2.3, np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_allclose(TRUTH.predict(np.exp(ln_n), np.exp(ln_d)), 2.3, rtol=1e-13)
    # N_opt(U): the optimal size at the budget whose optimal data is U
    assert TRUTH.n_opt_for_data(d[1]) == pytest.approx(n[1], rel=1e-12)


def test_chinchilla_sql_expression_equals_predict():
    """The law's SQL expression (what DuckDB evaluates, e.g. the scale simulator) equals ``predict``, with the
    parameters as columns and as bound ``?`` values."""
    import duckdb

    rng = np.random.default_rng(11)
    k = 200
    frame = pd.DataFrame({"E": rng.uniform(0.5, 3, k), "A": rng.uniform(10, 5e3, k), "B": rng.uniform(10, 5e3, k),
                          "alpha": rng.uniform(0.05, 1.5, k), "beta": rng.uniform(0.05, 1.5, k),
                          "n": np.exp(rng.uniform(np.log(1e5), np.log(1e12), k)),
                          "steps": rng.integers(1, 10_000, k), "batch": rng.integers(1, 4_000_000, k)})
    with duckdb.connect() as con:
        con.register("frame", frame)
        sql = Chinchilla.sql_expression({"N": "n", "D": "steps * batch"})
        got = np.array(con.execute(f"SELECT {sql} FROM frame").fetchall(), float)[:, 0]
        bound = Chinchilla.sql_expression({"N": "n", "D": "?"}, {"E": "?", "alpha": "?"})
        one = con.execute(f"SELECT {bound} FROM frame LIMIT 1", [1.7, 0.3, 5e11]).fetchone()[0]
    want = Chinchilla.stack(frame[list(Chinchilla.params)].to_numpy()).predict(
        frame.n.to_numpy(), (frame.steps * frame.batch).to_numpy().astype(float))
    np.testing.assert_allclose(got, np.diag(want), rtol=1e-13)
    row = frame.iloc[0]
    assert one == pytest.approx(Chinchilla(1.7, row.A, row.B, 0.3, row.beta).predict(row.n, 5e11), rel=1e-13)
    with pytest.raises(NotImplementedError, match="power_law"):
        FORMS["power_law"].sql_expression({"x": "x"})


def test_data_constrained_choice_of_unique_tokens():
    """With U as given, a run of D < U tokens counts U as its data; with cap_unique only the min(U, D) tokens
    it sees count, so a single pass with no excess parameters is the Chinchilla law."""
    law = DataConstrained.of(TRUTH, 15.0, 5.0)
    D, U = 2e9, 8e9
    N = TRUTH.n_opt_for_data(D) / 2
    assert law.predict(N, D, U, cap_unique=True) == pytest.approx(TRUTH.predict(N, D), rel=1e-14)
    assert law.predict(N, D, U) == pytest.approx(TRUTH.predict(N, U), rel=1e-14)
    assert law.predict(N, 4 * U, U) == law.predict(N, 4 * U, U, cap_unique=True) > TRUTH.predict(N, 4 * U)


def test_fit_columns_are_chosen_per_form(runs_csv, tmp_path, capsys):
    path, df = runs_csv
    by_tokens = fit_csv(path, form="power_law", x="n_tokens")
    assert by_tokens["diagnostics"]["source"]["columns"] == {"x": "n_tokens", "y": "loss"}
    assert by_tokens["params"]["alpha"] == pytest.approx(fit_csv(path, form="kaplan_d")["params"]["alpha"], rel=1e-12)
    assert fit_csv(path, form="kaplan_c")["diagnostics"]["source"]["columns"]["x"] == "flops"
    other = tmp_path / "other.csv"
    df.rename(columns={"loss": "val_loss", "n_params": "params"}).to_csv(other, index=False)
    moved = fit_csv(other, form="saturating", x="params", y="val_loss")
    assert moved["params"] == fit_csv(path, form="saturating")["params"]
    with pytest.raises(FitError, match="form 'chinchilla' has no single input x"):
        fit_csv(path, x="n_tokens")
    with pytest.raises(FitError, match="form 'power_law' takes no list of input columns"):
        fit_csv(path, form="power_law", vars=["n_params"])
    with pytest.raises(FitError, match=r"lacks required column\(s\) \['val_loss'\]"):
        fit_csv(path, form="power_law", y="val_loss")
    assert main(["fit", path, "--form", "kaplan_n", "--x", "n_tokens", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["form"] == "kaplan_n" and out["diagnostics"]["source"]["columns"]["x"] == "n_tokens"
    assert main(["fit", path, "--x", "n_tokens"]) == 2
    assert "has no single input x" in capsys.readouterr().err
