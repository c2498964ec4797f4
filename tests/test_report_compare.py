"""`scaling-pipeline compare` on two hand-written summary.json files (as the report writes them): the added run is
scored against A's law when B records its size, and said to be unscored when B predates ``sizes``."""

from __future__ import annotations

import json
from pathlib import Path

from scaling_pipeline.cli import main
from scaling_pipeline.lib.laws import Chinchilla

LAW = {"E": 1.7, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28}


def _report(folder: Path, runs: dict[str, tuple[float, float, float]], alpha: float, sizes: bool = True) -> Path:
    folder.mkdir()
    fam = {"status": "ok", "n_points": len(runs), "run_ids": sorted(runs), "max_observed_flops": 6e19,
           "losses": {r: v[2] for r, v in runs.items()}, "params": {**LAW, "alpha": alpha}, "a": 0.45,
           "plans": [], "bootstrap": []}
    if sizes:
        fam["sizes"] = {r: [n, d, 6 * n * d] for r, (n, d, _) in runs.items()}
    (folder / "summary.json").write_text(json.dumps({"schema": 2, "generated_at": "2026-01-05T00:00:00+00:00",
                                                     "families": {"f": fam}}))
    return folder


def test_compare_scores_the_added_runs_against_the_old_law(tmp_path, capsys):
    old_runs = {"r1": (1e8, 2e9, 3.1), "r2": (2e8, 4e9, 2.9)}
    new_runs = {**old_runs, "r3": (4e8, 8e9, 2.7)}
    a = _report(tmp_path / "a", old_runs, 0.34)
    assert main(["compare", str(a), str(_report(tmp_path / "b", new_runs, 0.35))]) == 0
    out = capsys.readouterr().out
    pred = Chinchilla(**LAW).predict(4e8, 8e9)
    assert "2 → 3 (+1 new)" in out and "0.34 → 0.35 (+2.9%)" in out
    assert f"f  r3 400M 8B    1.9e19        2.7000              {pred:.4f}         {pred / 2.7 - 1:+.2%}" in out
    assert main(["compare", str(a), str(_report(tmp_path / "old_b", new_runs, 0.35, sizes=False))]) == 0
    out = capsys.readouterr().out
    assert "r3" not in out and "1 added run(s) not scored: report B's summary.json has no 'sizes'" in out
