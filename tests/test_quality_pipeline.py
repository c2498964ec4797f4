"""One verdict per family everywhere: the publication gate (fits.chinchilla), its asset check, plans.allocations,
the report (summary.json and the page), the `run` summary and `allocate --family` agree, on the demo as
materialized and on a copy where one family's largest runs break away from the law (withheld)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from scaling_pipeline.cli import main
from scaling_pipeline.cli.run import print_summary
from scaling_pipeline.lib.quality import EXTRAPOLATION_LIMIT
from tests.conftest import Materialized

BROKEN = "fjord"  # its 4 largest-compute runs reach 10% lower losses than the law of the others predicts


@pytest.fixture(scope="module")
def degraded(demo_run, tmp_path_factory) -> Materialized:
    """The demo warehouse with BROKEN's largest runs 10% lower, refitted, planned and reported through Dagster."""
    from scaling_pipeline.definitions import ASSETS, CHECKS
    from scaling_pipeline.defs.fit import fit_run_config
    from scaling_pipeline.defs.resources import build_resources

    work = tmp_path_factory.mktemp("degraded")
    db, reports = work / "w.duckdb", work / "reports"
    shutil.copy(demo_run.db, db)
    with duckdb.connect(str(db)) as con:
        con.execute("""UPDATE clean.points SET loss = loss * 0.9 WHERE run_id IN (
                           SELECT run_id FROM clean.points WHERE family = ? ORDER BY flops DESC LIMIT 4)""", [BROKEN])
    result = dg.materialize([*ASSETS, *CHECKS], selection=["fits/chinchilla", "plans/allocations",
                                                            "reports/planning_report"],
                            resources=build_resources(demo_run.logs, db, reports),
                            instance=dg.DagsterInstance.ephemeral(), run_config=fit_run_config(50))
    return Materialized(demo_run.logs, db, reports, result)


def verdicts(m: Materialized, capsys) -> dict[str, dict]:
    """Per family what each reader says: gate, check, plans, summary.json, page, CLI run summary."""
    out: dict[str, dict] = {}
    for fam, verdict, publishable, codes in m.query(
            "SELECT family, verdict, publishable, reasons FROM fits.chinchilla ORDER BY family"):
        out[fam] = {"gate": (verdict, publishable, tuple(codes))}
    (check,) = [c for c in m.result.get_asset_check_evaluations() if c.check_name == "fits_publishable"]
    withheld = check.metadata["withheld"].value
    for fam in out:
        out[fam]["check"] = withheld[fam]["verdict"] if fam in withheld else "published"
    for fam, verdicts_, n, far in m.query("""SELECT family, list(DISTINCT verdict ORDER BY verdict), count(*),
                                                    bool_and(beyond_limit = (verdict = 'extrapolated')
                                                             AND publishable = NOT beyond_limit
                                                             AND beyond_limit = (extrapolation > ?))
                                             FROM plans.allocations GROUP BY family""", [EXTRAPOLATION_LIMIT]):
        assert far, f"{fam}: beyond_limit, publishable and verdict disagree in plans.allocations"
        out[fam]["plans"] = [v for v in verdicts_ if v != "extrapolated"]
    summary = json.loads((m.reports / "latest" / "summary.json").read_text())
    for fam, s in summary["families"].items():
        out[fam]["summary"] = (s["verdict"], s["publishable"], tuple(r["code"] for r in s["reasons"]))
    page = (m.reports / "latest" / "index.html").read_text()
    for fam, badge in re.findall(r"<h2 id='fam-[^']*'>Family (\S+) <span class='badge (\w+)'>", page):
        out[fam]["page"] = badge
    with duckdb.connect(str(m.db), read_only=True) as con:
        print_summary(con, m.reports, 1.0)
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index(next(x for x in lines if x.startswith("fitted"))) + 2:]
    for line in table:
        words = line.split()
        if words and words[0] in out:
            out[words[0]]["cli"] = words[-1]
    return out


def _agree(view: dict) -> None:
    verdict, publishable, codes = view["gate"]
    assert view["summary"] == view["gate"]
    assert view["page"] == view["cli"] == verdict
    assert view["check"] == ("published" if publishable else verdict)
    assert view.get("plans", []) == ([verdict] if publishable else [])


def test_demo_families_are_all_published_and_every_reader_agrees(demo_run, capsys):
    views = verdicts(demo_run, capsys)
    assert len(views) == 6
    for fam, view in views.items():
        _agree(view)
        assert view["gate"] == ("ok", True, ()), fam
    # plans run to 1e26 FLOPs, far beyond the largest demo run: marked, never a headline
    rows = demo_run.query("SELECT count(*) FILTER (beyond_limit), count(*), max(extrapolation) FROM plans.allocations")
    assert 0 < rows[0][0] < rows[0][1] and rows[0][2] > 1e4
    summary = json.loads((demo_run.reports / "latest" / "summary.json").read_text())
    for s in summary["families"].values():
        assert s["headline"]["compute"] <= EXTRAPOLATION_LIMIT * s["max_observed_flops"]
        assert any(p["beyond_limit"] for p in s["plans"]) and not all(p["beyond_limit"] for p in s["plans"])


def test_a_withheld_family_is_withheld_everywhere(degraded, capsys):
    assert degraded.result.success
    views = verdicts(degraded, capsys)
    for view in views.values():
        _agree(view)
    verdict, publishable, codes = views[BROKEN]["gate"]
    assert (verdict, publishable) == ("withheld", False) and "backtest_error_high" in codes
    assert all(v["gate"][0] == "ok" for f, v in views.items() if f != BROKEN)  # the others were kept and re-judged
    # the report: no plan, no headline, the reasons
    summary = json.loads((degraded.reports / "latest" / "summary.json").read_text())["families"][BROKEN]
    assert summary["plans"] == [] and summary["headline"] is None
    page = (degraded.reports / "latest" / "index.html").read_text()
    glance = page.split("<h2>At a glance</h2>", 1)[1].split("</ul>", 1)[0]
    line = next(x for x in glance.split("<li ") if f"<b>{BROKEN}</b>" in x)
    assert "PLAN WITHHELD" in line and "plan withheld: fitted without its 4 largest-compute runs" in line
    assert "with C =" not in line
    section = page.split(f"<section data-family='{BROKEN}'>", 1)[1].split("</section>", 1)[0]
    assert set(re.findall(r"data-code='(\w+)'", section)) == set(codes)
    assert "Withheld by the fit's quality assessment: fitted without its 4 largest-compute runs" in section
    assert "<th>compute (FLOPs)</th>" not in section  # no allocation table
    # the run summary names the top reason under the family
    with duckdb.connect(str(degraded.db), read_only=True) as con:
        print_summary(con, degraded.reports, 1.0)
    out = capsys.readouterr().out
    assert re.search(rf"\n  {BROKEN} .* withheld\n +backtest_error_high: fitted without its 4 largest", out)


def test_allocate_refuses_a_withheld_family_unless_forced(degraded, capsys):
    db = str(degraded.db)
    codes = degraded.query("SELECT reasons FROM fits.chinchilla WHERE family = ?", [BROKEN])[0][0]
    assert main(["allocate", "--family", BROKEN, "--db", db, "--compute", "1e21"]) == 2
    err = capsys.readouterr().err
    assert f"the plan of family '{BROKEN}' is withheld (verdict withheld)" in err and "--force" in err
    assert "backtest_error_high: fitted without its 4 largest-compute runs" in err
    assert all(f"  {c}: " in err for c in codes if c in ("backtest_error_high", "poor_fit", "param_unidentified"))

    assert main(["allocate", "--family", BROKEN, "--db", db, "--compute", "1e21", "--compute", "1e23",
                 "--target-loss", "2.5", "--json", "--force"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["plans"]) == 3 and [p["verdict"] for p in out["plans"]] == ["withheld"] * 3
    assert out["assessment"]["verdict"] == "withheld" and not out["assessment"]["publishable"]

    assert main(["allocate", "--family", BROKEN, "--db", db, "--compute", "1e21", "--compute", "1e23",
                 "--force"]) == 0
    captured = capsys.readouterr()
    plan_lines = [x for x in captured.out.splitlines() if x.startswith("budget")]
    assert len(plan_lines) == 2 and all(x.endswith("WITHHELD") for x in plan_lines)
    assert "withheld; printed because of --force" in captured.err


def test_allocate_marks_extrapolated_plans_of_a_published_family(degraded, capsys):
    (max_flops,) = degraded.query("SELECT max_observed_flops FROM fits.chinchilla WHERE family = 'atlas'")[0]
    near, far = 10 * max_flops, 2 * EXTRAPOLATION_LIMIT * max_flops
    assert main(["allocate", "--family", "atlas", "--db", str(degraded.db), "--compute", str(near),
                 "--compute", str(far), "--json"]) == 0
    plans = json.loads(capsys.readouterr().out)["plans"]
    assert [(p["verdict"], p["beyond_limit"]) for p in plans] == [("ok", False), ("extrapolated", True)]
    assert main(["allocate", "--fit", str(Path(degraded.db)), "--compute", "1e21", "--force"]) == 2
    assert "--force applies to --family only" in capsys.readouterr().err
