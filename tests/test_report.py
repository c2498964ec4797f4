"""The planning report, rendered from a small real warehouse (demo logs -> ingest -> clean -> fit -> plan):
self-contained page with every figure, summary.json, the drift section and the scoring of earlier predictions,
robustness to failed fits / odd family names / missing pieces, and ``reports/latest``."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import json
import re
import shutil
from pathlib import Path

import duckdb
import matplotlib.figure
import matplotlib.text
import numpy as np
import pandas as pd
import pytest

from scaling_pipeline.cli import main as cli_main
from scaling_pipeline.lib.cleaning import clean
from scaling_pipeline.lib.ingest import ingest
from scaling_pipeline.lib.laws import Chinchilla
from scaling_pipeline.lib.reporting import STANDARD_BUDGETS, load_inputs, render_report
from scaling_pipeline.lib.reporting.formatting import fmt_human
from scaling_pipeline.lib.reporting.quarantine import EXCERPT_CHARS, QUARANTINE_ROWS
from scaling_pipeline.lib.simulate import write_demo
from scaling_pipeline.lib.tables import intervals
from scaling_pipeline.lib.warehouse import FitSettings, fit_families, plan_families
from tests.conftest import REPO

SETTINGS = FitSettings(bootstrap=20)
DAY1, DAY2, DAY3 = dt.date(2026, 1, 5), dt.date(2026, 1, 6), dt.date(2026, 1, 7)
FIGURES = {"fit", "frontier", "residuals", "isoflop", "allocation", "tokens_per_param", "backtest", "curves"}
PNG = b"\x89PNG\r\n\x1a\n"
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # controls that reorder text


@pytest.fixture(scope="module")
def base_db(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("report_warehouse")
    write_demo(work / "logs", seed=0, n_families=2)
    db = work / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        ingest(work / "logs", con)
        clean(con)
        fit_families(con, SETTINGS)
        plan_families(con)
    return db


@pytest.fixture
def con(base_db, tmp_path):
    """A private, writable copy of the warehouse."""
    db = tmp_path / "w.duckdb"
    shutil.copy(base_db, db)
    with duckdb.connect(str(db)) as c:
        yield c


def render(con, root: Path, day: dt.date) -> tuple[Path, str]:
    index = render_report(load_inputs(con), root, date=day)
    return index, index.read_text(encoding="utf-8")


def refit(con) -> None:
    fit_families(con, SETTINGS)
    plan_families(con)


def sections(page: str) -> dict[str, str]:
    return {html.unescape(name): body for name, body in
            re.findall(r"<section data-family='([^']*)'>(.*?)</section>", page, flags=re.S)}


def images(page: str) -> list[bytes]:
    srcs = re.findall(r"<img[^>]*\ssrc=['\"]([^'\"]*)['\"]", page)
    assert srcs, "no images"
    out = []
    for src in srcs:
        assert src.startswith("data:image/png;base64,"), src[:80]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG) and len(data) > 5_000
        out.append(data)
    return out


def drift_cells(page: str) -> dict[tuple, tuple[float, float]]:
    cells = {}
    for fam, key, old, new, compute in re.findall(
            r"<td data-family='([^']*)' data-key='([^']*)' data-old='([^']*)' data-new='([^']*)'"
            r"(?: data-compute='([^']*)')?", page):
        cells[(html.unescape(fam), key, float(compute) if compute else None)] = (float(old), float(new))
    return cells


def fit_row(con, family: str) -> dict:
    df = con.execute("SELECT * FROM fits.chinchilla WHERE family = ?", [family]).df()
    return df.iloc[0].to_dict()


# ----------------------------------------------------------------------------------------------------------


def test_report_is_self_contained_with_every_figure_and_summary(con, tmp_path):
    root = tmp_path / "reports"
    index, page = render(con, root, DAY1)
    assert index == root / DAY1.isoformat() / "index.html"
    assert (root / "latest" / "index.html").read_text(encoding="utf-8") == page

    # self-contained: every image is an embedded PNG, nothing is fetched from elsewhere
    embedded = images(page)
    assert not re.search(r"<(script|link|iframe)\b", page)
    assert not re.search(r"url\(", page)

    families = sorted(r[0] for r in con.execute("SELECT DISTINCT family FROM clean.points").fetchall())
    secs = sections(page)
    assert sorted(secs) == families == ["atlas", "boreal"]
    for fam in families:
        assert f"Family {fam}" in secs[fam]
        assert set(re.findall(r"<figure data-fig='(\w+)'>", secs[fam])) == FIGURES
        for kind in FIGURES:  # written beside the page too, the same bytes as embedded
            assert (root / DAY1.isoformat() / f"{fam}_{kind}.png").read_bytes() in embedded
    assert len(embedded) == len(FIGURES) * len(families) + 1  # + every family's frontier on one figure
    assert (root / DAY1.isoformat() / "all_frontiers.png").read_bytes() in embedded

    # header: one line per family at the headline budget (the decade nearest 10x the largest run)
    glance = page.split("<h2>At a glance</h2>", 1)[1].split("</ul>", 1)[0]
    summary = json.loads((root / DAY1.isoformat() / "summary.json").read_text())
    for fam in families:
        max_c = con.execute("SELECT max(flops) FROM clean.points WHERE family = ?", [fam]).fetchone()[0]
        h = summary["families"][fam]["headline"]
        assert h["compute"] == 10.0 ** round(np.log10(10 * max_c))
        plan = con.execute("SELECT n_params, n_tokens, loss, loss_lo, loss_hi FROM plans.allocations "
                           "WHERE family = ? AND compute = ?", [fam, h["compute"]]).fetchone()
        assert (h["n_params"], h["n_tokens"], h["loss"], h["loss_lo"], h["loss_hi"]) == plan
        assert f"<b>{fam}</b></a>: with C = <b>1e23</b> FLOPs" in glance
        assert f"<b>{plan[2]:.3f} <span class=ci>[{plan[3]:.3f}, {plan[4]:.3f}]</span></b>" in glance
    assert "No previous report to compare with" in page
    for fam in families:  # each plan table beside the page as CSV and Parquet: the rows of plans.allocations
        want = con.execute("SELECT * FROM plans.allocations WHERE family = ? ORDER BY compute", [fam]).df()
        csv_name, parquet_name = f"plans_{fam}.csv", f"plans_{fam}.parquet"
        assert f"<a href='{csv_name}' download>CSV</a>" in secs[fam] and f"<a href='{parquet_name}'" in secs[fam]
        for got in (pd.read_csv(root / DAY1.isoformat() / csv_name),
                    pd.read_parquet(root / DAY1.isoformat() / parquet_name)):
            assert len(got) == len(want) and set(got.columns) == set(want.columns)
            pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)
    counted = re.findall(r"(?<![\d,.])1 (runs?|rows?|families|family|inputs?)\b", page)
    assert counted and all(w in ("run", "row", "family", "input") for w in counted), counted  # "1 run", never "1 runs"

    # summary.json: what the next report compares against, every key documented
    assert summary["schema"] == 2 and summary["report_date"] == DAY1.isoformat()
    doc = (REPO / "docs" / "summary_json.md").read_text(encoding="utf-8")
    keys = set(summary) | {k for s in summary["families"].values() for k in s}
    keys |= {k for s in summary["families"].values() for p in s["plans"] + s["isoflop_slices"] for k in p}
    assert not [k for k in keys if f"`{k}`" not in doc], sorted(k for k in keys if f"`{k}`" not in doc)
    dt.datetime.fromisoformat(summary["generated_at"])
    for fam in families:
        s, fit = summary["families"][fam], fit_row(con, fam)
        assert s["status"] == "ok" and s["verdict"] == "ok"
        assert s["params"] == {p: fit[p] for p in ("E", "A", "B", "alpha", "beta")}
        assert s["ci"] == {k: list(v) for k, v in intervals(fit).items()}
        assert set(s["ci"]) == {"E", "A", "B", "alpha", "beta", "a"}
        assert s["n_points"] == fit["n_points"]
        ids = sorted(r[0] for r in con.execute("SELECT run_id FROM clean.points WHERE family = ?", [fam]).fetchall())
        assert s["run_ids"] == ids
        assert len(s["bootstrap"]) == SETTINGS.bootstrap
        plans = {p["compute"]: p for p in s["plans"]}
        assert set(STANDARD_BUDGETS) <= set(plans)
        for c, n, d, loss in con.execute("SELECT compute, n_params, n_tokens, loss FROM plans.allocations "
                                         "WHERE family = ?", [fam]).fetchall():
            assert (plans[c]["n_params"], plans[c]["n_tokens"], plans[c]["loss"]) == (n, d, loss)

    # the next report reads it: a family that vanished and one that appeared are named, unchanged ones listed
    summary["families"]["gone"] = summary["families"].pop("boreal")
    (root / DAY1.isoformat() / "summary.json").write_text(json.dumps(summary))
    _, page2 = render(con, root, DAY2)
    drift = page2.split("<h2 id=drift>", 1)[1].split("<h2>Overview</h2>", 1)[0]
    assert f"Compared with the report of {DAY1.isoformat()}" in drift
    assert "<td>boreal</td><td colspan=7 class=text>new family (40 runs)</td>" in drift
    assert "<td>gone</td><td colspan=7 class=text>no longer present (had 40 runs)</td>" in drift
    assert "Unchanged (same runs and fit): atlas." in drift
    assert "No run was added to a family that already had a fit." in drift


def test_second_report_shows_drift_and_scores_earlier_predictions(con, tmp_path, capsys):
    root = tmp_path / "reports"
    late = ["atlas-2B-tpp160", "atlas-2B-tpp67"]  # the two largest atlas runs arrive on day 2
    dropped = "boreal-10M-tpp5"  # and one boreal run disappears
    con.execute("DELETE FROM clean.points WHERE run_id IN (?, ?)", late)
    refit(con)
    old = {fam: fit_row(con, fam) for fam in ("atlas", "boreal")}
    old_plan = dict(con.execute("SELECT compute, loss FROM plans.allocations WHERE family = 'atlas'").fetchall())
    render(con, root, DAY1)

    clean(con)  # rebuilds clean.points from raw: the late runs are back
    con.execute("DELETE FROM clean.points WHERE run_id = ?", [dropped])
    refit(con)
    new = {fam: fit_row(con, fam) for fam in ("atlas", "boreal")}
    new_plan = dict(con.execute("SELECT compute, loss FROM plans.allocations WHERE family = 'atlas'").fetchall())
    _, page = render(con, root, DAY2)
    drift = page.split("<h2 id=drift>", 1)[1].split("<h2>Overview</h2>", 1)[0]
    assert f"Compared with the report of {DAY1.isoformat()}" in drift

    # parameter drift: exact old -> new values, and the run changes
    cells = drift_cells(drift)
    for fam in ("atlas", "boreal"):
        for p in ("E", "A", "B", "alpha", "beta"):
            assert cells[(fam, p, None)] == (old[fam][p], new[fam][p])
        assert cells[(fam, "a", None)] == (old[fam]["a_exponent"], new[fam]["a_exponent"])
    assert "38 → 40" in drift and "+2 new" in drift
    assert "40 → 39" in drift and f"dropped: {dropped}" in drift

    # plan drift at the budgets the team may train next (within 0.1x-1000x the largest run)
    max_c = con.execute("SELECT max(flops) FROM clean.points WHERE family = 'atlas'").fetchone()[0]
    budgets = sorted(c for (fam, key, c) in cells if fam == "atlas" and key == "loss")
    assert budgets == [c for c in sorted(new_plan) if 0.1 <= c / max_c <= 1000] and len(budgets) >= 3
    for c in budgets:
        assert cells[("atlas", "loss", c)] == (old_plan[c], new_plan[c])

    # how the day-1 law predicted the runs added since: exactly the late runs, with its predictions
    scored = dict(re.findall(r"<tr data-run='([^']*)'>(.*?)</tr>", drift, flags=re.S))
    assert sorted(scored) == sorted(late)
    law = Chinchilla(*(old["atlas"][p] for p in ("E", "A", "B", "alpha", "beta")))
    for run, n, d, loss in con.execute("SELECT run_id, n_params, n_tokens, loss FROM clean.points "
                                       "WHERE run_id IN (?, ?)", late).fetchall():
        pred = law.predict(n, d)
        assert f"<td>{loss:.4f}</td><td>{pred:.4f} <span class=ci>[" in scored[run]
        assert f"{pred / loss - 1:+.2%}" in scored[run]
    assert "<b>atlas</b>: 2 new runs" in drift and "<b>boreal</b>" not in drift.split("How the previous fit")[1]

    # `scaling-pipeline compare DAY1 DAY2` prints the same drift from the two folders alone
    assert cli_main(["compare", str(root / DAY1.isoformat()), str(root / "latest")]) == 0
    text = capsys.readouterr().out
    assert "38 → 40 (+2 new)" in text and "40 → 39 (−1 dropped)" in text
    for p in ("E", "alpha"):
        assert f"{fmt_human(old['atlas'][p], 4)} → {fmt_human(new['atlas'][p], 4)}" in text
    for c in budgets:
        assert f"{old_plan[c]:.4f} → {new_plan[c]:.4f}" in text
    for run, n, d, loss in con.execute("SELECT run_id, n_params, n_tokens, loss FROM clean.points "
                                       "WHERE run_id IN (?, ?)", late).fetchall():
        assert re.search(rf"atlas\s+{run}\s.*{loss:.4f}\s+{law.predict(n, d):.4f}\s+"
                         rf"{re.escape(f'{law.predict(n, d) / loss - 1:+.2%}')}", text), text
    assert cli_main(["compare", str(root / "nowhere"), str(root / "latest")]) == 2
    assert "not a readable summary.json" in capsys.readouterr().err

    # rewriting the same date compares with that date's earlier render (read before it is replaced)
    _, again = render(con, root, DAY2)
    assert "Compared with the earlier render of this same date" in again
    assert "Nothing changed: same runs, same losses, same fitted parameters" in again
    assert (root / "latest").resolve() == (root / DAY2.isoformat()).resolve()


def test_failed_fit_odd_names_and_missing_pieces_render(con, tmp_path):
    odd = "at\"las' <b>&amp;</b> $x$"  # quotes, markup, mathtext
    evil = "../../evil/ñame 模型 ü"  # path traversal, unicode, spaces
    failing = "it's <failing>"
    con.execute("UPDATE clean.points SET family = ? WHERE family = 'atlas'", [odd])
    con.execute("UPDATE clean.points SET family = ? WHERE family = 'boreal'", [evil])
    con.execute("""INSERT INTO clean.points SELECT * REPLACE ('x-' || run_id AS run_id, ? AS family)
                   FROM clean.points WHERE family = ? ORDER BY run_id LIMIT 4""", [failing, evil])
    con.execute("DELETE FROM clean.exclusions")
    fit_families(con, SETTINGS)
    con.execute("DELETE FROM fits.bootstrap WHERE family = ?", [evil])
    con.execute("""UPDATE fits.chinchilla SET E_lo = 'NaN', E_hi = 'NaN', alpha_lo = 'NaN', alpha_hi = 0.3,
                   a_exponent_lo = 0.4, a_exponent_hi = 'NaN' WHERE family = ?""", [odd])
    plan_families(con)
    assert fit_row(con, failing)["status"] == "failed"

    before = {p for p in tmp_path.rglob("*")}
    root = tmp_path / "reports"
    index, page = render(con, root, DAY1)
    created = {p for p in tmp_path.rglob("*")} - before
    folder = root / DAY1.isoformat()
    assert created and all(p == root or p.parent in (root, folder) for p in created), sorted(created)
    assert not (tmp_path / "evil").exists() and not (root.parent / "evil").exists()
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+\.png", p.name) for p in folder.glob("*.png"))
    assert not list(root.glob(".*"))  # no partial folder left behind

    # escaped everywhere: no raw markup from a family name reaches the page
    assert "<b>&amp;</b>" not in page and "<failing>" not in page
    assert html.escape(odd) in page and html.escape(evil) in page
    secs = sections(page)
    assert set(secs) == {odd, evil, failing}
    assert set(re.findall(r"<figure data-fig='(\w+)'>", secs[odd])) == FIGURES
    assert set(re.findall(r"<figure data-fig='(\w+)'>", secs[evil])) == FIGURES
    assert re.findall(r"<figure data-fig='(\w+)'>", secs[failing]) == ["data"]  # runs shown, no fit
    assert "FIT FAILED" in secs[failing] and "need at least 5 points" in secs[failing]
    assert "no bootstrap samples stored" in secs[evil]
    assert "No run was excluded." in secs[odd]
    images(page)

    summary = json.loads((folder / "summary.json").read_text())  # strict JSON: NaN became null
    assert set(summary["families"]) == {odd, evil, failing}
    assert summary["families"][failing]["status"] == "failed"
    assert summary["families"][evil]["bootstrap"] == []
    assert "E" not in summary["families"][odd]["ci"]  # no bound known: no interval
    assert summary["families"][odd]["ci"]["alpha"] == [None, 0.3]
    assert summary["families"][odd]["ci"]["a"] == [0.4, None]


def test_bidi_controls_and_markup_in_names_are_neutralised_on_the_page_and_in_figures(con, tmp_path, monkeypatch):
    fam, run = "rtl\u202e<script>alert(1)</script>\u2066x", "run\u202egpj.exe"
    for table in ("clean.points", "clean.exclusions", "fits.chinchilla", "fits.bootstrap", "plans.allocations"):
        con.execute(f"UPDATE {table} SET family = ? WHERE family = 'atlas'", [fam])
    con.execute("INSERT INTO clean.exclusions (run_id, family, kind, reason, detail) VALUES (?, ?, 'run', ?, ?)",
                [run, fam, "diverged\u200f", "loss \u2067NaN\u2069 at step 7"])
    texts = []  # every text drawn in a figure
    savefig = matplotlib.figure.Figure.savefig

    def recording(fig, *args, **kwargs):
        texts.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    index, page = render(con, tmp_path / "reports", DAY1)

    assert not [c for c in BIDI if c in page] and "<script>" not in page
    shown = "rtl\\u202e<script>alert(1)</script>\\u2066x"
    assert sections(page).keys() == {shown, "boreal"}
    assert html.escape(shown) in page.split("<h2>At a glance</h2>")[1].split("</ul>")[0]
    excluded = sections(page)[shown].split("<h3>Exclusions</h3>")[1]
    assert ("<td>run\\u202egpj.exe</td><td class=text>diverged\\u200f</td><td></td>"
            "<td class=text>loss \\u2067NaN\\u2069 at step 7</td>") in excluded
    assert len(texts) > 20 and not [t for t in texts if any(c in t for c in BIDI)]
    titles = [t for t in texts if t.startswith(shown + ": ")]
    assert len(titles) == len(FIGURES), texts  # one per figure of the family
    summary = json.loads((index.parent / "summary.json").read_text(encoding="utf-8"))
    assert fam in summary["families"]  # the data keeps the real name


def test_large_quarantine_is_capped_on_the_page_and_complete_in_the_csv(con, tmp_path):
    con.execute("""INSERT INTO raw.quarantine (source_path, reader, location, field, reason, scope)
                   SELECT 'csv/run-' || (i % 40) || '.csv', 'csv', 'line ' || i, 'loss',
                          'line ' || i || ': field ''loss'': expected a number, got ''x' || i || '''', 'row'
                   FROM range(4000) t(i)""")
    evil = "line 7: <script>alert(1)</script>\u202e" + "y" * 10_000  # a hostile, huge reason
    con.execute("INSERT INTO raw.quarantine (source_path, reader, location, field, reason, scope) "
                "VALUES (?, 'jsonl', 'line 7', NULL, ?, 'row')", ["jsonl/evil\u202etxt.jsonl", evil])
    expected = con.execute("SELECT source_path, location, field, reason FROM raw.quarantine "
                           "ORDER BY source_path, location").fetchall()
    n_files = len({r[0] for r in expected})
    root = tmp_path / "reports"
    _, page = render(con, root, DAY1)

    section = page.split("<h2>Quarantined inputs</h2>", 1)[1].split("<h2>", 1)[0]
    assert f"{len(expected):,} inputs from {n_files} files (<a href='quarantine.csv'>quarantine.csv</a>" in section
    by_kind, listed = re.findall(r"<table>(.*?)</table>", section, flags=re.S)
    kinds = re.findall(r"<tr><td>([\d,]+)</td><td>([\d,]+)</td>", by_kind)  # rows and files of each kind
    assert ("4,000", "40") in kinds and sum(int(n.replace(",", "")) for n, _ in kinds) == len(expected)
    assert listed.count("<tr>") == 1 + QUARANTINE_ROWS and f"The first {QUARANTINE_ROWS} of" in section
    assert len(section) < 120_000  # 4,003 rows listed in full would be ~500 kB

    assert "<script>" not in page and not [c for c in BIDI if c in page]
    assert html.escape("jsonl/evil\\u202etxt.jsonl line 7") in by_kind
    cell = next(html.unescape(c) for c in re.findall(r"<td class=text>(.*?)</td>", by_kind) if "alert" in c)
    assert cell.startswith("<script>alert(N)</script>\\u202eyyy") and cell.endswith("y…")
    assert len(cell) == EXCERPT_CHARS + len("\\u202e") - 1  # cut first, then the control is spelled out

    with open(root / DAY1.isoformat() / "quarantine.csv", newline="", encoding="utf-8") as fh:
        rows = [(r["source_path"], r["location"], r["field"] or None, r["reason"]) for r in csv.DictReader(fh)]
    assert rows == expected  # every row, unabridged


def test_no_headline_beyond_the_extrapolation_limit(con, tmp_path):
    root = tmp_path / "reports"
    index = render_report(load_inputs(con), root, date=DAY1, headline_compute=1e26)
    page = index.read_text(encoding="utf-8")
    glance = page.split("<h2>At a glance</h2>", 1)[1].split("</ul>", 1)[0]
    summary = json.loads((index.parent / "summary.json").read_text())
    for fam in ("atlas", "boreal"):
        max_c = con.execute("SELECT max(flops) FROM clean.points WHERE family = ?", [fam]).fetchone()[0]
        assert 1e26 > 1000 * max_c and summary["families"][fam]["headline"] is None
        assert f"<b>{fam}</b></a>: no headline: C = 1e26 FLOPs is more than 1,000× its largest run" in glance
        far = con.execute("SELECT count(*) FROM plans.allocations WHERE family = ? AND beyond_limit",
                          [fam]).fetchone()[0]
        table = sections(page)[fam].split("<h3>Compute-optimal allocation</h3>", 1)[1]
        assert far >= 2 and table.count("<tr class='extrap'>") == table.count(" (extrapolated)</td>") == far
        plans = summary["families"][fam]["plans"]
        assert sum(p["beyond_limit"] for p in plans) == sum(p["compute"] > 1000 * max_c for p in plans) >= far


def test_empty_warehouse_renders(tmp_path):
    with duckdb.connect() as c:
        _, page = render(c, tmp_path / "reports", DAY1)
    assert "No family has schedule-valid runs yet" in page
    assert json.loads((tmp_path / "reports" / DAY1.isoformat() / "summary.json").read_text())["families"] == {}


def test_latest_points_at_the_newest_dated_report(con, tmp_path):
    for table in ("clean.points", "fits.chinchilla", "fits.bootstrap", "plans.allocations"):  # one family is enough
        con.execute(f"DELETE FROM {table} WHERE family = 'boreal'")
    root = tmp_path / "reports"
    render(con, root, DAY2)
    _, backfill = render(con, root, DAY1)  # an older date written later: latest stays on the newest date
    assert (root / "latest").resolve() == (root / DAY2.isoformat()).resolve()
    assert "No previous report to compare with" in backfill  # only earlier dates count as "previous"
    _, page = render(con, root, DAY3)
    assert (root / "latest").resolve() == (root / DAY3.isoformat()).resolve()
    assert f"Compared with the report of {DAY2.isoformat()}" in page
    assert sorted(p.name for p in root.iterdir()) == [DAY1.isoformat(), DAY2.isoformat(), DAY3.isoformat(), "latest"]


def test_wide_intervals_read_not_identified_and_captions_match_the_figures(con, tmp_path):
    # A's interval over 10.8 decades: says nothing about A
    con.execute("UPDATE fits.chinchilla SET A_lo = 4.2, A_hi = 2.5e11 WHERE family = 'atlas'")
    _, page = render(con, tmp_path / "reports", DAY1)
    law = {fam: re.search(r"<p class=law>(.*?)</p>", body).group(1) for fam, body in sections(page).items()}
    assert law["atlas"].count("[not identified]") == 1 and "2.5e11" not in law["atlas"].replace("title=", "")
    assert re.search(r"\+ [\d.]+ <span class='ci unidentified' title='interval \[4\.2, 250B\]", law["atlas"])
    assert "[not identified]" not in law["boreal"] and law["boreal"].count("<span class=ci>[") == 5
    for fam, body in sections(page).items():
        plans = [float(c) for c in con.execute("SELECT compute FROM plans.allocations WHERE family = ? "
                                               "ORDER BY compute", [fam]).fetchall() for c in c]
        assert np.all(np.diff(np.log10(plans)).round(9) == 1) and plans[0] <= 1e17  # every decade
        cap = re.search(r"<figure data-fig='isoflop'>.*?<figcaption>(.*?)</figcaption>", body, flags=re.S).group(1)
        assert "IsoFLOP slices at C = 9.8e16, 5.7e17, 3.3e18, 1e19" in cap
        assert "▼: the fit's optimum N* (4 of 4 inside the plotted range; horizontal bar: its 95% bootstrap " \
               "interval, drawn for 4)" in cap and "Dots: runs within ±15% of 4 of these budgets" in cap


def test_planning_figures_draw_the_fit_the_runs_and_the_curves(con):
    from scaling_pipeline.lib.reporting.family import family_views, optimum
    from scaling_pipeline.lib.reporting.figures_plan import (allocation_figure, backtest_figure, curves_figure,
                                                             frontiers_figure, tokens_per_param_figure)
    from scaling_pipeline.lib.reporting.inputs import normalised

    fams = family_views(normalised(load_inputs(con)), None)
    f = fams[0]
    fig = allocation_figure(f)
    (n_line, d_line), ax = [ln for ln in fig.axes[0].lines if ln.get_label().startswith(("N*", "D*"))], fig.axes[0]
    c = n_line.get_xdata()
    n, d, _ = optimum(f.P, c)
    assert np.allclose(n_line.get_ydata(), n[0]) and np.allclose(d_line.get_ydata(), d[0])
    best = np.array([s["best_n"] for s in f.slices])
    assert len(best) == 4 and np.allclose(ax.collections[-2].get_offsets()[:, 1], best)  # IsoFLOP minima overlaid
    tpp = tokens_per_param_figure(f).axes[0].lines[0]
    assert np.allclose(tpp.get_ydata(), d[0] / n[0])

    runs = set(f.pts.run_id)
    steps = dict(con.execute("SELECT run_id, count(*) FROM clean.steps WHERE run_id IN (SELECT run_id FROM "
                             "clean.points WHERE family = ?) AND tokens > 0 AND coalesce(train_loss, eval_loss) "
                             "IS NOT NULL GROUP BY run_id", [f.name]).fetchall())
    curves = {ln.get_gid(): ln for ln in curves_figure(f).axes[0].lines}
    assert set(curves) == set(steps) == runs  # one curve per fitted run
    for run, count in steps.items():  # every logged step, or about CURVE_POINTS of them
        shown = len(curves[run].get_xdata())
        assert shown == count if count <= 200 else 100 <= shown <= 201, (run, shown, count)
    labels = [t.get_text() for t in curves_figure(f).axes[0].get_xticklabels()]
    assert 2 <= len(labels) <= 9 and len(set(labels)) == len(labels)

    h = f.backtest["holdout"]
    held = backtest_figure(f).axes[0].collections[1].get_offsets()
    assert np.allclose(held, np.column_stack([h["loss"], h["predicted"]]))

    both = frontiers_figure(fams)
    assert [ln.get_label() for ln in both.axes[0].lines] == ["atlas", "boreal"] and len(both.axes) == 2  # + colour bar
