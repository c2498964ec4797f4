"""Figures are reused, not redrawn, when their inputs and the code are unchanged (``lib/reporting/figcache.py``):
a second render of the same warehouse draws no figure and writes byte-identical figures and sections; of a changed
family only the figures whose inputs changed are redrawn (and the all-families frontier)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import warnings
from pathlib import Path

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

from scaling_pipeline.lib.reporting import figcache, figures, figures_plan, load_inputs, render_report
from scaling_pipeline.lib.reporting.figcache import FigureCache, cached_figure, fingerprint
from scaling_pipeline.lib.simulate import write_demo
from tests.conftest import materialize_all
from tests.test_report import base_db, con, sections  # noqa: F401  (fixtures)

DAY1, DAY2 = dt.date(2026, 1, 5), dt.date(2026, 1, 6)


@pytest.fixture
def savefig_calls(monkeypatch) -> list[str]:
    """Every figure matplotlib writes (``Figure.savefig``) during the test."""
    calls: list[str] = []
    real = matplotlib.figure.Figure.savefig

    def counting(self, *args, **kwargs):
        calls.append(self.axes[0].get_title() if self.axes else "")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", counting)
    return calls


@pytest.fixture
def drawn_pngs(monkeypatch) -> list[str]:
    """The name of every PNG a figure function writes (drawn, not restored from the cache) during the test."""
    names: list[str] = []
    real = figures.save_png

    def recording(fig, stem, out):
        names.append(f"{stem}.png")
        return real(fig, stem, out)

    for module in (figures, figures_plan):
        monkeypatch.setattr(module, "save_png", recording)
    return names


def _render(con, root: Path, day: dt.date) -> tuple[FigureCache, str, dict[str, bytes]]:
    cache = FigureCache(root)
    index = render_report(load_inputs(con), root, date=day, cache=cache)
    pngs = {p.name: p.read_bytes() for p in sorted(index.parent.glob("*.png"))}
    return cache, index.read_text(encoding="utf-8"), pngs


def _changed(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    return {name for name in after if before.get(name) != after[name]}


def test_unchanged_inputs_draw_no_figure_and_give_identical_output(con, tmp_path, savefig_calls, drawn_pngs):
    first, page1, png1 = _render(con, tmp_path, DAY1)
    families = sorted(sections(page1))
    # every figure is one cached call: each family's and every family's frontier on one figure
    assert len(families) == 2 and first.drawn == len(png1) == len(savefig_calls) > 16 and first.reused == 0
    assert "all_frontiers.png" in png1
    savefig_calls.clear()
    drawn_pngs.clear()

    again, page2, png2 = _render(con, tmp_path, DAY2)
    assert (again.drawn, again.reused) == (0, len(png1)) and savefig_calls == []
    assert png2 == png1  # same names, same bytes
    assert sections(page2) == sections(page1)  # the family sections, figures embedded, byte for byte

    # one family's points change: its figures that show them are redrawn, and the all-families frontier
    changed = families[0]
    own = {name for name in png1 if name.startswith(f"{changed}_")}
    con.execute("UPDATE clean.points SET loss = loss * 1.01 WHERE family = ?", [changed])
    third, page3, png3 = _render(con, tmp_path, DAY2)
    # not the learning-rate figures (they show clean.lr_*, unchanged) nor the runs in flight
    assert set(drawn_pngs) == own - {f"{changed}_lr_sweeps.png", f"{changed}_lr_scaling.png",
                                     f"{changed}_in_flight.png"} | {"all_frontiers.png"}
    assert len(drawn_pngs) == len(set(drawn_pngs)) == len(savefig_calls) == third.drawn
    assert third.reused == len(png1) - third.drawn
    assert {f"{changed}_fit.png", "all_frontiers.png"} <= _changed(png1, png3) <= set(drawn_pngs)
    assert sections(page3)[families[1]] == sections(page1)[families[1]]
    assert sections(page3)[changed] != sections(page1)[changed]
    # the cache keeps the entries the last render used: one per figure and one per family section
    assert len(list((tmp_path / figcache.CACHE_DIR).iterdir())) == len(png1) + len(families)


def test_within_a_family_only_the_figures_whose_inputs_changed_are_redrawn(con, tmp_path, drawn_pngs):
    _, page1, png1 = _render(con, tmp_path, DAY1)
    family = sorted(sections(page1))[1]
    drawn_pngs.clear()
    # the backtest (fits.chinchilla.backtest) is read by the residual and backtest figures only
    backtest = json.loads(con.execute("SELECT backtest FROM fits.chinchilla WHERE family = ?", [family]).fetchone()[0])
    backtest["train_max_flops"] *= 0.5
    backtest["holdout"]["predicted"] = [p * 1.01 for p in backtest["holdout"]["predicted"]]
    con.execute("UPDATE fits.chinchilla SET backtest = ? WHERE family = ?", [json.dumps(backtest), family])
    cache, page2, png2 = _render(con, tmp_path, DAY2)
    assert set(drawn_pngs) == _changed(png1, png2) == {f"{family}_residuals.png", f"{family}_backtest.png"}
    assert (cache.drawn, cache.reused) == (2, len(png1) - 2)
    assert sections(page2)[family] != sections(page1)[family]  # the backtest table changed too


def test_a_code_change_redraws(con, tmp_path, monkeypatch, savefig_calls):
    _, _, png1 = _render(con, tmp_path, DAY1)
    savefig_calls.clear()
    monkeypatch.setattr(figcache, "code_version", lambda: "another version of the code")
    cache, _, png2 = _render(con, tmp_path, DAY1)
    assert (cache.drawn, cache.reused) == (len(png1), 0) and len(savefig_calls) == len(png1)
    assert png2 == png1


class _Subject:
    def __init__(self, values, other="x"):
        self.values, self.other = values, other


@cached_figure("values")
def _draw(subject, out: Path) -> tuple[str, int]:
    (out / "drawn.txt").write_text(repr(subject.values))
    return "caption", len(subject.values)


@cached_figure("values")
def _draw_undeclared(subject, out: Path) -> str:
    return subject.other


def test_cached_figure_returns_and_writes_what_the_draw_did(tmp_path):
    cache = FigureCache(tmp_path / "root")
    (a := tmp_path / "a").mkdir()
    (b := tmp_path / "b").mkdir()
    assert _draw(_Subject([1.0]), a) == ("caption", 1)  # no active cache: drawn
    with cache.active():
        assert _draw(_Subject([1.0, 2.0]), a) == ("caption", 2)
        assert _draw(_Subject([1.0, 2.0], other="ignored"), b) == ("caption", 2)  # a tuple again, from JSON
        assert (cache.drawn, cache.reused) == (1, 1)
        assert (b / "drawn.txt").read_text() == (a / "drawn.txt").read_text() == "[1.0, 2.0]"
        # a value that cannot be fingerprinted: drawn every time, nothing stored
        lock = threading.Lock()
        _draw(_Subject([lock]), a)
        _draw(_Subject([lock]), a)
        assert cache.drawn == 3
        # reading an attribute it did not declare: drawn right, never stored, and said
        with pytest.warns(RuntimeWarning, match=r"read \['other'\], not among its declared inputs"):
            assert _draw_undeclared(_Subject([1.0], other="first"), a) == "first"
        with pytest.warns(RuntimeWarning):
            assert _draw_undeclared(_Subject([1.0], other="second"), a) == "second"
        assert cache.drawn == 5


def test_the_report_figures_read_only_what_they_declare(con, tmp_path):
    """Every figure of a report with every kind of figure reads only its declared inputs (else a stale figure
    could be reused): a render warns of any other read."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _render(con, tmp_path, DAY1)


def test_fingerprint_is_by_content():
    df = pd.DataFrame({"n": [1e6, 2e6], "family": ["a", "b"], "at": pd.to_datetime(["2026-01-01", "2026-01-02"])})
    same = pd.DataFrame({"n": [1e6, 2e6], "family": ["a", "b"], "at": pd.to_datetime(["2026-01-01", "2026-01-02"])})
    value = {"pts": df, "P": np.array([[1.7, 400.0, 410.0, 0.34, 0.28]]), "notes": ["x"], "fit": None}
    assert fingerprint(value) == fingerprint({**value, "pts": same, "P": value["P"].copy()})
    for changed in ({**value, "pts": df.assign(n=[1e6, 2.000001e6])},
                    {**value, "pts": df[["family", "n", "at"]]},  # column order
                    {**value, "pts": df.astype({"n": "float32"})},
                    {**value, "P": value["P"][:, ::-1]},
                    {**value, "notes": ("x",)},  # a tuple is not a list
                    {**value, "fit": float("nan")}):
        assert fingerprint(changed) != fingerprint(value)
    assert fingerprint("ab", "c") != fingerprint("a", "bc")
    with pytest.raises(TypeError):
        fingerprint(threading.Lock())


def _add_better_copy(logs: Path) -> str:
    """Add a run (its log file and a manifest naming it) that copies a completed run with losses 1% lower: it
    becomes its family's point at that N and D. Return its family."""
    manifest = pd.read_csv(logs / "csv" / "runs.csv")
    meta = manifest[manifest.status == "completed"].iloc[0]
    steps = pd.read_csv(logs / "csv" / f"{meta.run_id}.csv")
    new_id = f"{meta.run_id}-better"
    steps.assign(run_id=new_id, train_loss=steps.train_loss * 0.99, eval_loss=steps.eval_loss * 0.99).to_csv(
        logs / "csv" / f"{new_id}.csv", index=False)
    meta.to_frame().T.assign(run_id=new_id).to_csv(logs / "csv" / "runs-better.csv", index=False)
    return str(meta.family)


def _metadata(result, node: str) -> dict:
    """The metadata of every asset the step ``node`` materialized, merged."""
    return {k: v.value for m in result.asset_materializations_for_node(node) for k, v in m.metadata.items()}


@pytest.mark.slow
def test_a_new_run_redraws_only_its_familys_figures_and_the_frontier_in_a_dagster_run(tmp_path, drawn_pngs):
    """Three materializations of the real Definitions: first, no change (nothing cleaned again, refit or
    redrawn), one new run (its family's figures that show its points or fit, and the all-families frontier)."""
    logs, db, reports = tmp_path / "logs", tmp_path / "w.duckdb", tmp_path / "reports"
    write_demo(logs, seed=0, n_families=2)

    def run() -> tuple[dict, dict, dict[str, bytes]]:
        drawn_pngs.clear()
        result = materialize_all(logs, db, reports, bootstrap=8)
        pngs = {p.name: p.read_bytes() for p in sorted((reports / "latest").glob("*.png"))}
        return _metadata(result, "clean_tables"), _metadata(result, "reports__planning_report"), pngs

    _, first, png1 = run()
    assert first["figures_redrawn"] == len(drawn_pngs) == len(png1) > 15 and first["figures_reused"] == 0

    clean_md, report_md, png2 = run()
    assert clean_md["unchanged"] and drawn_pngs == [] and png2 == png1
    assert (report_md["figures_redrawn"], report_md["figures_reused"]) == (0, len(png1))

    family = _add_better_copy(logs)
    clean_md, report_md, png3 = run()
    assert not clean_md["unchanged"]
    drawn = set(drawn_pngs)
    assert len(drawn) == len(drawn_pngs) == report_md["figures_redrawn"]
    assert report_md["figures_reused"] == len(png3) - len(drawn)
    shows_fit = {f"{family}_{kind}.png" for kind in ("fit", "frontier", "residuals", "isoflop", "allocation",
                                                    "tokens_per_param", "backtest", "curves")} & set(png3)
    assert {f"{family}_fit.png", f"{family}_curves.png"} <= shows_fit
    assert shows_fit | {"all_frontiers.png"} <= drawn <= {n for n in png3 if n.startswith(f"{family}_")} | {
        "all_frontiers.png"}
    assert {n for n in png3 if png3[n] != png1.get(n)} <= drawn  # nothing changed without being redrawn
    assert all(png3[n] == png1[n] for n in png1 if not n.startswith(f"{family}_") and n != "all_frontiers.png")
