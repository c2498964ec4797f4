"""Figures are reused, not redrawn, when a family's view and the code are unchanged (``lib/reporting/figcache.py``):
a second render of the same warehouse draws no figure and writes byte-identical figures and sections; a changed
family is redrawn and only it."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

from scaling_pipeline.lib.reporting import figcache, load_inputs, render_report
from scaling_pipeline.lib.reporting.figcache import FigureCache, fingerprint
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


def _render(con, root: Path, day: dt.date) -> tuple[FigureCache, str, dict[str, bytes]]:
    cache = FigureCache(root)
    index = render_report(load_inputs(con), root, date=day, cache=cache)
    pngs = {p.name: p.read_bytes() for p in sorted(index.parent.glob("*.png"))}
    return cache, index.read_text(encoding="utf-8"), pngs


def test_unchanged_inputs_draw_no_figure_and_give_identical_output(con, tmp_path, savefig_calls):
    first, page1, png1 = _render(con, tmp_path, DAY1)
    families = sorted(sections(page1))
    # one cached unit per family, plus every family's frontier on one figure
    assert len(families) == 2 and first.drawn == 3 and first.reused == 0
    assert len(savefig_calls) == len(png1) > 8
    savefig_calls.clear()

    again, page2, png2 = _render(con, tmp_path, DAY2)
    assert (again.drawn, again.reused) == (0, 3) and savefig_calls == []
    assert png2 == png1  # same names, same bytes
    assert sections(page2) == sections(page1)  # the family sections, figures embedded, byte for byte

    # one family's data change: it alone is redrawn (and the all-families frontier), the other is reused
    changed = families[0]
    own = [name for name in png1 if name.startswith(f"{changed}_")]
    con.execute("UPDATE clean.points SET loss = loss * 1.01 WHERE family = ?", [changed])
    third, page3, png3 = _render(con, tmp_path, DAY2)
    assert (third.drawn, third.reused) == (2, 1) and len(savefig_calls) == len(own) + 1
    assert sum(changed in title for title in savefig_calls) >= len(own)
    assert sections(page3)[families[1]] == sections(page1)[families[1]]
    assert sections(page3)[changed] != sections(page1)[changed]
    redrawn = {name for name in png3 if png3[name] != png1[name]}
    assert redrawn and all(png1[name] == png3[name] for name in png3 if name not in redrawn)
    # the cache keeps the entries the last render used: one per family and the frontier figure
    assert len(list((tmp_path / figcache.CACHE_DIR).iterdir())) == 3


def test_a_code_change_redraws(con, tmp_path, monkeypatch, savefig_calls):
    _, _, png1 = _render(con, tmp_path, DAY1)
    savefig_calls.clear()
    monkeypatch.setattr(figcache, "code_version", lambda: "another version of the code")
    cache, _, _ = _render(con, tmp_path, DAY1)
    assert (cache.drawn, cache.reused) == (3, 0) and len(savefig_calls) == len(png1)


def _draw(values, out: Path) -> tuple[str, int]:
    (out / "drawn.txt").write_text(repr(values))
    return "caption", len(values)


def test_call_returns_and_writes_what_the_draw_did(tmp_path):
    cache = FigureCache(tmp_path / "root")
    (a := tmp_path / "a").mkdir()
    (b := tmp_path / "b").mkdir()
    assert cache.call(_draw, [1.0, 2.0], out=a) == ("caption", 2)
    assert cache.call(_draw, [1.0, 2.0], out=b) == ("caption", 2)  # a tuple again, from JSON
    assert (cache.drawn, cache.reused) == (1, 1)
    assert (b / "drawn.txt").read_text() == (a / "drawn.txt").read_text() == "[1.0, 2.0]"
    # an argument that cannot be fingerprinted: drawn every time, nothing stored
    lock = threading.Lock()
    cache.call(_draw, [lock], out=a)
    cache.call(_draw, [lock], out=a)
    assert cache.drawn == 3


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
