"""The report's notes on why families gave no point and which settings changed (lib/reporting/why.py), on
tables as the warehouse holds them."""

from __future__ import annotations

import pandas as pd

from scaling_pipeline.lib.reporting.why import Reason, no_point_reasons, settings_note, why_section
from scaling_pipeline.lib.settings import Settings, build_settings

EXCL_COLUMNS = ["run_id", "family", "kind", "reason", "detail", "step", "n_rows"]


def _exclusions(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame([dict(zip(EXCL_COLUMNS, r)) for r in rows], columns=EXCL_COLUMNS)


def test_top_reasons_per_family_without_points():
    excl = _exclusions([
        ("b2", "b", "run", "incomplete_schedule", "stopped at step 5 of 10", 5, None),
        ("b1", "b", "run", "incomplete_schedule", "stopped at step 4 of 10", 4, None),
        ("b3", "b", "run", "no_metadata", "number of parameters unknown", None, None),
        ("b1", "b", "rows", "warmup", "3 warm-up rows cut", None, 3),  # rows, not runs
        ("a9", "a", "run", "diverged", "non-finite loss", 7, None),  # family a has points
        ("x1", None, "run", "no_metadata", "no family", None, None),
    ])
    points = pd.DataFrame({"family": ["a", "a"]})
    assert no_point_reasons(excl, points) == {
        "": [Reason("no_metadata", 1, "x1", "no family")],
        "b": [Reason("incomplete_schedule", 2, "b1", "stopped at step 4 of 10"),
              Reason("no_metadata", 1, "b3", "number of parameters unknown")]}
    html = why_section(excl, points, pd.DataFrame())
    assert "<h2>Families with no point: why</h2>" in html
    assert "<li><code>incomplete_schedule</code>: 2 runs, e.g. <code>b1</code>: stopped at step 4 of 10</li>" in html
    assert "(no family)" in html and "diverged" not in html
    assert why_section(excl[excl.family == "a"], points, pd.DataFrame()) == ""  # every family has points
    # no run at all: a warning that names the quarantined inputs
    html = why_section(_exclusions([]), pd.DataFrame({"family": []}), pd.DataFrame({"source_path": ["x.csv"]}))
    assert "every input was quarantined (1 input; see raw.quarantine)" in html


def test_settings_note_names_what_changed():
    old = Settings().flat()
    new = build_settings({"min_tokens": 1e9, "families": {"atlas": {"param_convention": "total"}}}).flat()
    assert settings_note({"settings": old}, new).endswith(
        "families.atlas.param_convention unset → total; min_tokens 0 → 1e+09.</p>")
    assert settings_note({"settings": old}, old) == ""
    assert settings_note({}, new) == settings_note(None, new) == ""  # no previous settings: nothing to compare
