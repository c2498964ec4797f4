"""The real byte-level ladder (../shared/data/gpu_ladder) through the whole asset graph, unconverted."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Materialized, materialize_all, require_reference


@pytest.fixture(scope="module")
def ladder(tmp_path_factory) -> Materialized:
    logs = require_reference("gpu_ladder")
    work = tmp_path_factory.mktemp("gpu")
    result = materialize_all(logs, work / "w.duckdb", work / "reports", bootstrap=20)
    return Materialized(logs, work / "w.duckdb", work / "reports", result)


def test_ingests_every_run_and_row(ladder):
    assert ladder.result.success
    assert ladder.query("SELECT count(DISTINCT run_id) FROM raw.runs")[0][0] == 63
    assert ladder.query("SELECT count(*) FROM raw.metrics")[0][0] == 6961
    assert ladder.query("SELECT count(*) FROM raw.quarantine")[0][0] == 0


def test_faulty_runs_are_flagged_with_reasons(ladder):
    runs = dict(ladder.query("SELECT run_id, reason FROM clean.exclusions WHERE kind = 'run'"))
    assert runs == {
        "code-gpt_n312k_tpp10_lr1.0": "diverged",
        "text-gpt_n312k_tpp10_lr1.0": "diverged",
        # completed per its status, but 37% worse than its twin with the normal learning rate at the same
        # (N, D): a two-point learning-rate sweep, of which the envelope keeps the best run
        "text-gpt_n150k_tpp20_lr0.3": "not_best_hparams",
    }
    (detail,) = ladder.query("SELECT detail FROM clean.exclusions "
                             "WHERE run_id = 'text-gpt_n150k_tpp20_lr0.3' AND kind = 'run'")[0]
    assert detail.startswith("final loss 3.0824 is 37.44% above run 'text-gpt_n150k_tpp20' (2.2426)"), detail
    assert "(lr 0.3 vs 0.003)" in detail
    dupes = dict(ladder.query("SELECT run_id, n_rows FROM clean.exclusions WHERE reason = 'duplicate_steps'"))
    assert dupes == {"code-gpt_n150k_tpp20": 8, "code-gpt_n312k_tpp10_lr1.0": 1, "text-gpt_n312k_tpp10_lr1.0": 1}
    # the killed-and-resumed run is complete and valid; its point is its final eval loss
    (loss, src), = ladder.query("SELECT loss, loss_source FROM clean.points WHERE run_id = 'code-gpt_n150k_tpp20'")
    assert src == "final_eval"
    expected = {r["run_id"]: r for r in _runs_csv()}["code-gpt_n150k_tpp20"]["final_eval_loss"]
    assert loss == pytest.approx(float(expected), abs=1e-6)


def test_points_match_the_published_final_losses(ladder):
    ref = {r["run_id"]: r for r in _runs_csv() if r["status"] != "diverged" and r["slice"] != "lr_fault"}
    pts = {r[0]: r[1:] for r in ladder.query("SELECT run_id, n_params, n_tokens, loss FROM clean.points")}
    assert set(pts) == set(ref) and len(pts) == 60
    for run_id, (n, d, loss) in pts.items():
        assert n == float(ref[run_id]["n_params"])
        assert d == float(ref[run_id]["tokens_seen"])
        assert loss == pytest.approx(float(ref[run_id]["final_eval_loss"]), abs=1e-6)


def test_min_tokens_fit_matches_or_beats_the_sanity_fit(tmp_path):
    logs = require_reference("gpu_ladder")
    materialize_all(logs, tmp_path / "w.duckdb", tmp_path / "r", bootstrap=0, min_tokens=2e6)
    m = Materialized(logs, tmp_path / "w.duckdb", tmp_path / "r", None)
    ref = json.loads((logs / "fit.json").read_text())
    for fam, n, obj in m.query("SELECT family, n_points, objective FROM fits.chinchilla ORDER BY family"):
        sub = ref[fam]["min_tokens_2e6"]
        assert n == sub["n_runs"] == 14
        # a global search must do at least as well as the 432-start grid used for fit.json
        assert obj <= sub["huber_objective"] * (1 + 1e-4)


def _runs_csv() -> list[dict]:
    import csv

    with open(require_reference("gpu_ladder") / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))
