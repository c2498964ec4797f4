"""The `scaling-pipeline` command: contracts other tools depend on, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling_pipeline.cli import main
from scaling_pipeline.lib.laws import DataConstrained
from tests.conftest import require_reference

FIT_KEYS = {"form", "loss", "delta", "n_points", "params", "objective", "fit_seconds", "diagnostics"}


@pytest.fixture(scope="module")
def epoch_csv(tmp_path_factory):
    runs = pd.read_csv(require_reference("chinchilla_epoch") / "runs.csv")
    path = tmp_path_factory.mktemp("epoch") / "runs240.csv"
    runs[~runs.epoch_excluded].to_csv(path, index=False)
    return path


def _json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_fit_json_contract_reproduces_epoch(epoch_csv, capsys):
    out = _json(capsys, ["fit", str(epoch_csv), "--form", "chinchilla", "--loss", "huber", "--delta", "1e-3", "--json"])
    assert set(out) == FIT_KEYS
    assert out["n_points"] == 240 and out["loss"] == "huber" and out["delta"] == 1e-3
    assert set(out["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert out["objective"] == pytest.approx(0.0010182740178, rel=1e-6)
    assert out["params"]["alpha"] == pytest.approx(0.34731, abs=0.005)
    out = _json(capsys, ["fit", str(epoch_csv), "--bootstrap", "50", "--seed", "1", "--json"])
    assert set(out) == FIT_KEYS | {"ci"}
    lo, hi = out["ci"]["E"]
    assert lo <= out["params"]["E"] <= hi


def test_fit_data_constrained_follows_the_paper_unless_free_all(tmp_path, capsys):
    folder = require_reference("datablations")
    ref = json.loads((folder / "reference_values.json").read_text())
    pub, tol = ref["published_params"], ref["suggested_tolerances"]
    out = _json(capsys, ["fit", str(folder / "runs.csv"), "--form", "data_constrained", "--json"])
    assert out["n_points"] == 182 and out["diagnostics"]["fixed"] == ["A", "B", "E", "alpha", "beta"]
    assert out["params"]["E"] == pub["E"] and out["params"]["alpha"] == pub["alpha"]
    assert out["params"]["rd_star"] == pytest.approx(pub["R_D_star"], rel=tol["R_D_star_rel"])
    assert out["params"]["rn_star"] == pytest.approx(pub["R_N_star"], rel=tol["R_N_star_rel"])
    # --free-all fits all seven: 36 runs of a law with other constants (3 sizes x 3 unique budgets x 4 epochs)
    U = np.repeat([1e8, 1e9, 1e10], 12)
    D = U * np.tile(np.geomspace(1, 60, 4), 9)
    N = np.tile(np.repeat(np.geomspace(3e7, 3e9, 3), 4), 3)
    truth = DataConstrained(E=2.0, A=300.0, B=3000.0, alpha=0.3, beta=0.4, rd_star=12.0, rn_star=4.0)
    L = truth.predict(N, D, U) * np.exp(np.random.default_rng(0).normal(0, 0.002, U.size))
    pd.DataFrame({"n_params": N, "n_tokens": D, "unique_tokens": U, "loss": L}).to_csv(tmp_path / "dc.csv", index=False)
    free = _json(capsys, ["fit", str(tmp_path / "dc.csv"), "--form", "data_constrained", "--free-all", "--json"])
    assert free["diagnostics"]["fixed"] == [] and free["params"]["alpha"] == pytest.approx(0.3, rel=0.02)
    assert main(["fit", str(tmp_path / "dc.csv"), "--free-all"]) == 2
    assert "free_all applies only to form 'data_constrained'" in capsys.readouterr().err


def test_allocate_from_fit_json(epoch_csv, tmp_path, capsys):
    fit = _json(capsys, ["fit", str(epoch_csv), "--json"])
    (tmp_path / "fit.json").write_text(json.dumps(fit))
    out = _json(capsys, ["allocate", "--fit", str(tmp_path / "fit.json"), "--compute", "1e21", "--compute", "1e23",
                         "--max-params", "1e10", "--json"])
    free, capped = out["plans"]
    assert (free["compute"], capped["compute"]) == (1e21, 1e23)
    P = fit["params"]
    a = P["beta"] / (P["alpha"] + P["beta"])
    G = (P["alpha"] * P["A"] / (P["beta"] * P["B"])) ** (1 / (P["alpha"] + P["beta"]))
    assert free["n_params"] == pytest.approx(G * (1e21 / 6) ** a, rel=1e-9)
    assert free["constraint"] == "none" and free["efficiency"] == pytest.approx(1.0)
    assert capped["n_params"] == pytest.approx(1e10) and capped["constraint"] == "max_params"
    assert 6 * capped["n_params"] * capped["n_tokens"] == pytest.approx(1e23, rel=1e-12)
    assert capped["efficiency"] < 1


def test_clear_errors_exit_2(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read runs CSV" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("n_params,loss\n1e6,3.0\n")
    assert main(["fit", str(tmp_path / "bad.csv")]) == 2
    assert "n_tokens" in capsys.readouterr().err
    assert main(["run", "--logs", str(tmp_path / "nope"), "--db", str(tmp_path / "w.duckdb")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["allocate", "--fit", str(tmp_path / "bad.csv"), "--compute", "1e21"]) == 2
    assert "cannot read fit JSON" in capsys.readouterr().err


def test_run_refuses_a_locked_warehouse(tmp_path, capsys):
    db = tmp_path / "w.duckdb"
    (tmp_path / "logs").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(db)!r}); con.execute("CREATE TABLE t (x INT)")
        print("locked", flush=True); sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["run", "--logs", str(tmp_path / "logs"), "--db", str(db)]) == 2
        err = capsys.readouterr().err
        # the holder is named by pid and command line, after the documented 5 s wait
        assert f"is locked by process {holder.pid} (`{sys.executable} -c" in err and str(db) in err
        assert "(waited 5 s)" in err
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


_OPTS = ["--form", "--loss", "--delta", "--family", "--bootstrap", "--seed", "--json", "--compute", "--max-params",
         "--max-tokens", "--unique-tokens", "--inference-tokens", "--target-loss", "--level", "--fit"]
_VALUES = ["1e21", "-1", "0", "nan", "inf", "abc", "", "chinchilla", "kaplan_n", "mse", "3", "1e400", "../x", "é 'q\""]


@settings(max_examples=int(os.environ.get("CLI_FUZZ_EXAMPLES", "80")), deadline=None,
          derandomize=os.environ.get("HYPOTHESIS_PROFILE") != "nightly")
@given(cmd=st.sampled_from(["fit", "allocate"]),
       args=st.lists(st.one_of(st.sampled_from(_OPTS), st.sampled_from(_VALUES), st.text(max_size=8)), max_size=8),
       target=st.sampled_from(["good_csv", "good_fit", "missing", "garbage"]))
def test_cli_arguments_never_crash(cmd, args, target, fuzz_files):
    """Any argument list ends in a result (exit 0) or a clear usage/user error (exit 2), never a traceback."""
    path = str(fuzz_files[target])
    argv = [cmd, path, *args] if cmd == "fit" else [cmd, "--fit", path, *args]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    assert code in (0, 2)


@pytest.fixture(scope="module")
def fuzz_files(tmp_path_factory, epoch_csv):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "fit.json").write_text(json.dumps({"form": "chinchilla", "params": {
        "E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}}))
    (d / "garbage").write_bytes(b"\x00\xff{not json,,\n")
    return {"good_csv": epoch_csv, "good_fit": d / "fit.json", "missing": d / "missing", "garbage": d / "garbage"}


@pytest.mark.parametrize("cmd", [["fit", "runs.csv"], ["run"], ["fit-family", "points.parquet", "--out", "x"]])
@pytest.mark.parametrize("value,ok", [("0", True), ("10000", True), ("10001", False), ("-1", False), ("1e9", False)])
def test_bootstrap_count_is_bounded_everywhere(cmd, value, ok, capsys):
    from scaling_pipeline.cli import _parser

    if ok:
        assert _parser().parse_args([*cmd, "--bootstrap", value]).bootstrap == int(value)
        return
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args([*cmd, "--bootstrap", value])
    assert exc.value.code == 2
    assert "--bootstrap" in capsys.readouterr().err
