"""The multiplicative law P = k·Capacity^α·Data^β·Compute^γ: exponents recovered when compute varies on its
own, a refusal naming the relation when flops = 6·N·D, and the CLI contract (exp_<column>, k)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling_pipeline.cli import main
from scaling_pipeline.lib.fitting.common import FitError
from scaling_pipeline.lib.fitting.csv import fit_csv
from scaling_pipeline.lib.laws import FORMS
from scaling_pipeline.lib.laws.multiplicative import Multiplicative

TRUTH = {"k": 40.0, "exp_n_params": -0.08, "exp_n_tokens": -0.11, "exp_flops": 0.03}
REFUSAL = ("flops = 6·n_params·n_tokens exactly: the exponents of flops, n_params and n_tokens are not identifiable; "
           "drop one of them or use data where flops varies independently of n_params and n_tokens")


def runs(noise: float, efficiency: bool, seed: int = 0) -> pd.DataFrame:
    """A 6 x 5 ladder; with ``efficiency`` the FLOPs spent per 6·N·D vary from run to run (1 to 3x)."""
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(1e7, 3e9, 6), 5)
    D = N * np.tile(np.geomspace(5.0, 200.0, 5), 6)
    C = 6.0 * N * D * (rng.uniform(1.0, 3.0, N.size) if efficiency else 1.0)
    law = Multiplicative.from_params(TRUTH)
    loss = law.predict(n_params=N, n_tokens=D, flops=C) * np.exp(rng.normal(0.0, noise, N.size))
    return pd.DataFrame({"n_params": N, "n_tokens": D, "flops": C, "loss": loss})


def test_registered_with_its_parameters():
    assert FORMS["multiplicative"] is Multiplicative
    law = Multiplicative.from_params(TRUTH)
    assert law.exponents == {"n_params": -0.08, "n_tokens": -0.11, "flops": 0.03} and law.to_params() == TRUTH
    with pytest.raises(ValueError, match="needs params 'k'"):
        Multiplicative.from_params({"k": 1.0, "alpha": 0.3})


def test_recovers_exponents_when_compute_varies_independently():
    df = runs(noise=0.0, efficiency=True)
    inputs = {c: df[c].to_numpy() for c in ("n_params", "n_tokens", "flops")}
    exact = Multiplicative.fit(inputs, df.loss.to_numpy())
    assert exact.form == "multiplicative" and exact.params == pytest.approx(TRUTH, rel=1e-9)
    noisy = runs(noise=0.003, efficiency=True, seed=1)
    fit = Multiplicative.fit({c: noisy[c].to_numpy() for c in inputs}, noisy.loss.to_numpy())
    for key in ("exp_n_params", "exp_n_tokens", "exp_flops"):
        assert fit.params[key] == pytest.approx(TRUTH[key], abs=0.01)
    assert fit.diagnostics["rmse_log_residual"] < 0.005
    law = fit.law
    r = np.log(law.predict(**{c: noisy[c] for c in inputs})) - np.log(noisy.loss)
    assert np.sqrt(np.mean(r**2)) == pytest.approx(fit.diagnostics["rmse_log_residual"], rel=1e-9)


def test_refuses_when_flops_is_6nd(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    runs(noise=0.003, efficiency=False).to_csv(path, index=False)
    with pytest.raises(FitError) as err:
        fit_csv(path, form="multiplicative", vars=["n_params", "n_tokens", "flops"])
    assert str(err.value) == REFUSAL
    assert main(["fit", str(path), "--form", "multiplicative", "--vars", "n_params,n_tokens,flops", "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == f"error: {REFUSAL}\n"
    # flops derived from n_params and n_tokens is the same relation
    runs(noise=0.003, efficiency=False).drop(columns="flops").to_csv(path, index=False)
    with pytest.raises(FitError, match="^flops = 6·n_params·n_tokens exactly"):
        fit_csv(path, form="multiplicative", vars=["n_params", "n_tokens", "flops"])


def test_cli_prints_one_exponent_per_column(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    runs(noise=0.0, efficiency=True).to_csv(path, index=False)
    assert main(["fit", str(path), "--form", "multiplicative", "--vars", "n_params,n_tokens,flops", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["form"] == "multiplicative" and out["loss"] == "mse"
    assert list(out["params"]) == ["k", "exp_n_params", "exp_n_tokens", "exp_flops"]
    assert out["params"] == pytest.approx(TRUTH, rel=1e-9)
    assert main(["fit", str(path), "--form", "multiplicative", "--json"]) == 0  # default: n_params, n_tokens
    assert set(json.loads(capsys.readouterr().out)["params"]) == {"k", "exp_n_params", "exp_n_tokens"}
    assert main(["fit", str(path), "--form", "multiplicative", "--x", "flops"]) == 2
    assert "names its input columns with vars" in capsys.readouterr().err
