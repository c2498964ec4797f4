"""The settings file: search order, precedence (flag > file > default), errors naming file, line and key, and
a real file changing a real materialization (and showing in the report's "what changed")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scaling_pipeline.cli import main
from scaling_pipeline.defs.resources import PipelineSettings
from scaling_pipeline.lib.settings import N_BOOT, SettingsError, build_settings
from scaling_pipeline.lib.settings_file import SETTINGS_FILE, find_settings_file, read_settings_file
from tests.conftest import Materialized, materialize_all


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_file_values_and_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("SCALING_SETTINGS", raising=False)
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    assert find_settings_file(None, logs) is None
    here = _write(tmp_path / SETTINGS_FILE, "[clean]\nmin_tokens = 5e8\n")
    assert find_settings_file(None, logs) == Path.cwd() / SETTINGS_FILE  # the project root's
    beside = _write(logs / SETTINGS_FILE, """
[clean]
min_tokens = 1e9
min_steps = 10
hparam_selection = "all"
[fit]
bootstrap = 7
[report]
headline_compute = 1e22
[families.atlas]
param_convention = "total"
""")
    assert find_settings_file(None, logs) == beside  # beside the logs wins over the working directory
    monkeypatch.setenv("SCALING_SETTINGS", str(here))
    assert find_settings_file(None, logs) == here  # then $SCALING_SETTINGS
    assert find_settings_file(beside, logs) == beside  # an explicit path first
    monkeypatch.delenv("SCALING_SETTINGS")

    s = build_settings(read_settings_file(beside))
    assert (s.clean.min_tokens, s.clean.min_steps, s.fit.bootstrap, s.report.headline_compute) == (1e9, 10, 7, 1e22)
    assert s.clean.family.hparam_selection == "all" and s.clean.options("other").param_convention == "non_embedding"
    # a family's own options start from the file's defaults
    assert (s.clean.options("atlas").param_convention, s.clean.options("atlas").hparam_selection) == ("total", "all")
    # the resource: its fields (CLI flags) > the file > the defaults
    r = PipelineSettings(logs_dir=str(logs), min_tokens=2e9, families={"atlas": {"hparam_selection": "envelope"}})
    s = r.resolve({"bootstrap": 3})
    assert (s.clean.min_tokens, s.clean.min_steps, s.fit.bootstrap, s.fit.seed) == (2e9, 10, 3, 0)
    assert s.clean.options("atlas") == s.clean.family.__class__(hparam_selection="envelope", param_convention="total")
    assert PipelineSettings(logs_dir=str(tmp_path / "none")).resolve().clean.min_tokens == 5e8  # cwd's file
    (tmp_path / SETTINGS_FILE).unlink()
    assert PipelineSettings(logs_dir=str(tmp_path / "none")).resolve().fit.bootstrap == N_BOOT


@pytest.mark.parametrize("text, message", [
    ("[clean]\nmin_tokens = \n", r"x\.toml: not valid TOML: .*line 2"),
    ("[clean]\n\nmin_token = 1e9\n", r"x\.toml, line 3: \[clean\] min_token: unknown key; allowed: divergence_nats, "
                                     r"dominated_tolerance, smooth_points, min_tokens, min_steps, hparam_selection"),
    ("[fit]\nseed = 1\nbootstrap = -1\n", r"x\.toml, line 3: \[fit\] bootstrap: expected a whole number in "
                                          r"\[0, 10000\], got -1"),
    ("[clean]\nhparam_selection = 'best'\n", r"line 2: \[clean\] hparam_selection: expected one of envelope, all, "
                                             r"got 'best'"),
    ("[clean]\nmin_tokens = '1e9'\n", r"line 2: \[clean\] min_tokens: expected a number >= 0, got '1e9'"),
    ("[families.atlas]\nparam_convention = 'embedding'\n",
     r"line 2: \[families\.atlas\] param_convention: expected one of non_embedding, total, got 'embedding'"),
    ("[families.atlas]\nmin_tokens = 1\n", r"line 2: \[families\.atlas\] min_tokens: unknown key; allowed: "
                                           r"hparam_selection, param_convention, completion_tolerance"),
    ("[cleaning]\nmin_tokens = 1\n", r"unknown section 'cleaning'; allowed sections: clean, fit, report, families"),
    ("min_tokens = 1\n", r"unknown key 'min_tokens'"),
])
def test_bad_file_is_a_clear_error(tmp_path, text, message):
    path = _write(tmp_path / "x.toml", text)
    with pytest.raises(SettingsError, match=message):
        read_settings_file(path)


def test_unknown_setting_name_is_an_error():
    with pytest.raises(SettingsError, match="unknown setting 'n_boot'"):
        build_settings({"n_boot": 3})


def test_cli_names_a_bad_settings_file(tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    _write(logs / SETTINGS_FILE, "[fit]\nbootstrap = 'many'\n")
    code = main(["run", "--logs", str(logs), "--db", str(tmp_path / "w.duckdb"), "--reports", str(tmp_path / "r")])
    assert code == 2
    assert (f"error: {logs / SETTINGS_FILE}, line 2: [fit] bootstrap: expected a whole number in [0, 10000], "
            "got 'many'") in capsys.readouterr().err
    assert main(["fit-family", str(tmp_path / "p.parquet"), "--out", str(tmp_path), "--settings",
                 str(tmp_path / "absent.toml")]) == 2
    assert "settings file" in capsys.readouterr().err


def test_settings_file_changes_a_materialization_and_shows_in_what_changed(demo_dir, tmp_path):
    logs, db, reports = tmp_path / "logs", tmp_path / "w.duckdb", tmp_path / "reports"
    shutil.copytree(demo_dir / "csv", logs / "csv")
    assert materialize_all(logs, db, reports, bootstrap=0).success
    m = Materialized(logs, db, reports, None)
    (before,) = m.query("SELECT n_points FROM fits.chinchilla")[0]
    assert before == 40
    # the file sets min_tokens (used) and bootstrap (the run config's 0 wins: flag > file)
    _write(logs / SETTINGS_FILE, "[clean]\nmin_tokens = 1e9\n[fit]\nbootstrap = 5\n[report]\nheadline_compute = 1e21\n")
    assert materialize_all(logs, db, reports, bootstrap=0).success
    short = dict(m.query("SELECT run_id, detail FROM clean.exclusions WHERE reason = 'below_min_budget'"))
    assert len(short) == 40 - m.query("SELECT n_points FROM fits.chinchilla")[0][0] > 0
    assert all("below the minimum (1e+09 tokens / 0 steps)" in d for d in short.values())
    assert m.query("SELECT min(n_tokens) >= 1e9 FROM clean.points")[0][0]
    assert json.loads(m.query("SELECT settings FROM fits.chinchilla")[0][0])["bootstrap"] == 0
    assert m.query("SELECT count(*) FROM fits.bootstrap")[0][0] == 0
    summary = json.loads((reports / "latest" / "summary.json").read_text())
    assert summary["settings"]["min_tokens"] == 1e9 and summary["settings"]["bootstrap"] == 0
    html = (reports / "latest" / "index.html").read_text()
    assert ("<b>Settings changed</b> since the previous report (a cause of refits and of changed points): "
            "headline_compute unset → 1e+21; min_tokens 0 → 1e+09.") in html
    # the parameter convention is stated in the report, the plan table and the CLI's allocate / fit-family output
    assert ("<b>Parameter counts.</b> N counts non-embedding parameters (param_convention non_embedding): atlas."
            in html)
    assert m.query("SELECT DISTINCT param_convention FROM plans.allocations") == [("non_embedding",)]


def test_parameter_convention_is_stated_by_the_cli(demo_dir, tmp_path, capsys):
    logs, db = tmp_path / "logs", tmp_path / "w.duckdb"
    shutil.copytree(demo_dir / "csv", logs / "csv")
    _write(logs / SETTINGS_FILE, "[fit]\nbootstrap = 0\n[families.atlas]\nparam_convention = 'total'\n")
    assert main(["run", "--logs", str(logs), "--db", str(db), "--reports", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.startswith(f"settings  read from {logs / SETTINGS_FILE}\n")
    assert main(["allocate", "--family", "atlas", "--db", str(db), "--compute", "1e20", "--force"]) == 0
    assert capsys.readouterr().out.startswith("N counts total parameters (embeddings included) (param_convention total)\n")
    assert json.loads(_cli_json(capsys, ["allocate", "--family", "atlas", "--db", str(db), "--compute", "1e20",
                                         "--force", "--json"]))["param_convention"] == "total"
    assert main(["export-points", "--db", str(db), "--out", str(tmp_path / "points")]) == 0
    capsys.readouterr()
    points = tmp_path / "points" / "family=atlas" / "points.parquet"
    assert main(["fit-family", str(points), "--out", str(tmp_path / "fits"), "--bootstrap", "0"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("N counts total parameters (embeddings included) "
                                                     "(param_convention total)")
    import pandas as pd  # a CSV exported from clean.points states its convention; a bare one does not

    pd.read_parquet(points).to_csv(tmp_path / "atlas.csv", index=False)
    assert main(["fit", str(tmp_path / "atlas.csv")]) == 0
    assert "\nN counts total parameters (embeddings included) (param_convention total)\n" in capsys.readouterr().out
    pd.read_parquet(points).drop(columns="param_convention").to_csv(tmp_path / "bare.csv", index=False)
    assert main(["fit", str(tmp_path / "bare.csv")]) == 0
    assert "\nN counts parameters as given (param_convention not stated)\n" in capsys.readouterr().out


def _cli_json(capsys, argv) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_plan_intervals_use_the_fit_level(tmp_path):
    from scaling_pipeline.lib.settings import FitSettings
    from scaling_pipeline.lib.simulate import write_demo
    from scaling_pipeline.lib.warehouse import fit_families, plan_families
    from tests.ladder_files import ingest_and_clean

    write_demo(tmp_path / "logs", seed=0, fmt="csv", n_families=1)
    con = ingest_and_clean(tmp_path / "logs")
    widths = {}
    for level in (0.5, 0.95):
        fit_families(con, FitSettings(bootstrap=40, level=level))
        plans = plan_families(con)
        assert len(plans)
        widths[level] = float((plans.n_params_hi / plans.n_params_lo).median())
    assert 1 < widths[0.5] < widths[0.95]
