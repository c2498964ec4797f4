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
    from scaling_pipeline.cli.parser import build_parser

    if ok:
        assert build_parser().parse_args([*cmd, "--bootstrap", value]).bootstrap == int(value)
        return
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*cmd, "--bootstrap", value])
    assert exc.value.code == 2
    assert "--bootstrap" in capsys.readouterr().err


def test_fit_reads_ingest_aliases_filters_rows_and_names_ignored_columns(tmp_path, capsys):
    runs = pd.read_csv(require_reference("chinchilla_epoch") / "runs.csv")
    runs = runs.rename(columns={"loss": "final_eval_loss", "n_tokens": "tokens_seen"}).assign(notes="x")
    path = tmp_path / "runs.csv"
    runs.to_csv(path, index=False)
    out = _json(capsys, ["fit", str(path), "--where", "not epoch_excluded", "--json"])
    assert out["n_points"] == 240  # the published 240-run subset: the same fit as without the excluded rows
    assert out["objective"] == pytest.approx(0.0010182740178, rel=1e-6)
    source = out["diagnostics"]["source"]
    assert source["ignored_columns"] == ["run_id", "family", "flops", "notes"]
    assert (source["rows_read"], source["rows_fitted"]) == (len(runs), 240)
    assert "read 'tokens_seen' as 'n_tokens', 'final_eval_loss' as 'loss'" in out["diagnostics"]["warnings"]
    assert main(["fit", str(path), "--where", "not epoch_excluded and n_params >= 1e9"]) == 0
    text = capsys.readouterr().out
    assert "note: ignored columns run_id, family, flops, notes" in text
    big = runs[~runs.epoch_excluded & (runs.n_params >= 1e9)]
    assert text.startswith(f"form chinchilla  ({len(big)} points")
    # bad filters: the token and what was expected
    assert main(["fit", str(path), "--where", "n_params >= and not epoch_excluded"]) == 2
    assert ("--where: unexpected 'and' at position 13 of 'n_params >= and not epoch_excluded'; expected a number, "
            "a quoted string, true or false after '>='") in capsys.readouterr().err
    assert main(["fit", str(path), "--where", "family == 'x'"]) == 2
    assert "no row of" in capsys.readouterr().err
    assert main(["fit", str(path), "--where", "notes"]) == 2
    assert "column 'notes' is not true/false" in capsys.readouterr().err


def test_run_says_why_nothing_was_fitted(tmp_path, capsys):
    from tests.ladder_files import curve, write_csv

    logs = tmp_path / "logs"
    for i in range(3):  # planned for 1,000 steps, logged to 200: incomplete
        write_csv(logs / f"r{i}.csv", curve(f"r{i}", 3.0 - 0.1 * i))
    write_csv(logs / "runs.csv", [dict(run_id=f"r{i}", family="f", n_params=1e6 * (i + 1), total_steps=1000)
                                  for i in range(3)] + [dict(run_id="r3", family="g", n_params="", total_steps=200)])
    write_csv(logs / "r3.csv", curve("r3", 3.0))
    reports = tmp_path / "reports"
    argv = ["run", "--logs", str(logs), "--db", str(tmp_path / "w.duckdb"), "--reports", str(reports), "--bootstrap", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "nothing fitted: every run was excluded; top reasons\n  f:\n    incomplete_schedule       3 runs  e.g. r0: " \
           "stopped at step 200 of 1000 planned (20.0%)" in out
    assert "  g:\n    no_metadata               1 run   e.g. r3: number of parameters unknown" in out
    html = (reports / "latest" / "index.html").read_text()
    assert "<h2>Nothing fitted: why</h2>" in html and "<code>incomplete_schedule</code>: 3 runs, e.g. <code>r0</code>" in html
    # an empty log root: a clear warning, in the terminal and at the top of the report
    (tmp_path / "empty").mkdir()
    assert main([*argv[:2], str(tmp_path / "empty"), *argv[3:]]) == 0
    assert "warning: the log root gave no runs: no log file was found" in capsys.readouterr().err
    html = (reports / "latest" / "index.html").read_text()
    assert "<h2>No runs</h2>" in html
