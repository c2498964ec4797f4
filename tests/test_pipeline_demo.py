"""The default demo ladder through the whole asset graph: known truth recovered, every planted fault
detected with the exact count."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_truth_recovered_for_every_family(demo_run, demo_truth):
    fits = {r[0]: r[1:] for r in demo_run.query("SELECT family, alpha, beta, E, status FROM fits.chinchilla")}
    truth = demo_truth["families"]
    assert set(fits) == set(truth) and len(truth) >= 6
    for fam, (alpha, beta, e, status) in fits.items():
        assert status == "ok"
        assert alpha == pytest.approx(truth[fam]["alpha"], abs=0.03), fam
        assert beta == pytest.approx(truth[fam]["beta"], abs=0.03), fam
        assert e == pytest.approx(truth[fam]["E"], abs=0.1), fam


def test_every_planted_fault_is_detected_exactly(demo_run, demo_faults):
    f = demo_faults
    runs = {r[0]: r[1:] for r in demo_run.query(
        "SELECT run_id, reason, step FROM clean.exclusions WHERE kind = 'run'")}
    assert runs == {
        f["diverged"]["run_id"]: ("diverged", f["diverged"]["first_nonfinite_step"]),
        f["diverged_silent"]["run_id"]: ("diverged", f["diverged_silent"]["first_nonfinite_step"]),
        f["killed"]["run_id"]: ("incomplete_schedule", f["killed"]["last_step"]),
        f["truncated"]["run_id"]: ("incomplete_schedule", f["truncated"]["last_complete_step"]),
    }
    dupes = demo_run.query("SELECT run_id, n_rows FROM clean.exclusions WHERE reason = 'duplicate_steps'")
    assert dupes == [(f["resumed"]["run_id"], f["resumed"]["duplicate_steps"])]
    nonfinite = dict(demo_run.query("SELECT run_id, n_rows FROM clean.exclusions WHERE reason = 'nonfinite_loss'"))
    assert nonfinite == {f["diverged"]["run_id"]: f["diverged"]["nonfinite_rows"],
                         f["diverged_silent"]["run_id"]: f["diverged_silent"]["nonfinite_rows"]}
    quarantine = demo_run.query("SELECT source_path, location, field, scope FROM raw.quarantine ORDER BY source_path")
    assert quarantine == sorted([
        (f["bad_row"]["file"], f"line {f['bad_row']['line']}", f["bad_row"]["field"], "row"),
        (f["truncated"]["file"], f"line {f['truncated']['line']}", None, "row"),
    ])
    # the resumed run and the run with one bad row still give valid points
    valid = {r[0] for r in demo_run.query("SELECT run_id FROM clean.points")}
    assert {f["resumed"]["run_id"], f["bad_row"]["run_id"]} <= valid
    n_runs = demo_run.query("SELECT count(DISTINCT run_id) FROM raw.runs")[0][0]
    assert len(valid) == n_runs - 4 == f["counts"]["runs"] - 4


def test_report_lists_families_and_exclusions(demo_run, demo_faults):
    html = (demo_run.reports / "latest" / "index.html").read_text()
    for fam in ("atlas", "fjord"):
        assert f"Family {fam}" in html
    assert demo_faults["killed"]["run_id"] in html and "incomplete_schedule" in html
    # Hoffmann et al.'s law as a yardstick: 5.76e23 FLOPs -> N* = 32.2B by the closed form (Epoch's corrected law:
    # 72.2B); naive formula -95%
    assert "Reference: published Chinchilla laws" in html and "<td>5.76e23</td><td>32.2B</td>" in html
    assert "<td>72.2B</td>" in html and "(-95%)" in html
    assert len(list((demo_run.reports / "latest").glob("*.png"))) >= 12
