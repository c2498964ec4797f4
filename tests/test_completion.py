"""Schedule completion by steps or tokens within a tolerance, overshoot flags, exclusion messages naming
the missing fact, losses that cannot be nats/token, and the parameter count each family uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaling_pipeline.defs.resources import PipelineSettings
from scaling_pipeline.lib import cleaning as C
from tests.ladder_files import curve, ingest_and_clean, run_exclusions, write_csv, write_jsonl

PLANNED_STEPS = 176_703


def _completion_logs(root: Path) -> None:
    """Runs planned by steps (total_steps) or by tokens (n_tokens, as users write it in manifests)."""
    runs = [  # (run id, manifest fields, logged rows)
        ("short3", dict(total_steps=PLANNED_STEPS),
         curve("short3", 3.0, steps=PLANNED_STEPS, every=20_000, last=PLANNED_STEPS - 3)),
        ("short177", dict(total_steps=PLANNED_STEPS),
         curve("short177", 3.0, steps=PLANNED_STEPS, every=20_000, last=PLANNED_STEPS - 177)),
        ("tokens-done", dict(n_tokens=200_000), curve("tokens-done", 3.0, last=199, batch=1005.0)),
        ("tokens-short", dict(n_tokens=200_000), curve("tokens-short", 3.0, last=190)),
        ("over", dict(total_steps=200), curve("over", 3.0, last=220)),
        ("plan-no-progress", dict(n_tokens=200_000, status="running"), curve("plan-no-progress", 3.0, batch=None)),
        ("no-plan", dict(status="running"), curve("no-plan", 3.0)),
        ("no-plan-completed", dict(status="completed"), curve("no-plan-completed", 3.0)),
    ]
    manifest = []
    for n, (run_id, fields, rows) in enumerate(runs):
        write_csv(root / f"{run_id}.csv", rows)
        manifest.append({"run_id": run_id, "family": "loose" if run_id == "short177" else "f",
                         "n_params": 1e6 * (n + 1), "total_steps": "", "n_tokens": "", "status": "", **fields})
    write_csv(root / "runs.csv", manifest)


def test_completion_by_steps_or_tokens_within_the_tolerance(tmp_path: Path) -> None:
    _completion_logs(tmp_path)
    con = ingest_and_clean(tmp_path)
    planned = dict(con.execute("SELECT run_id, tokens_planned FROM clean.runs").fetchall())
    assert planned["tokens-done"] == 200_000.0  # the manifest's n_tokens is the planned tokens
    points = dict(con.execute("SELECT run_id, n_tokens FROM clean.points").fetchall())
    assert set(points) == {"short3", "tokens-done", "over", "no-plan-completed"}
    assert points["tokens-done"] == 199 * 1005.0  # D is the tokens seen, 0.0025 % short of the plan
    excluded = run_exclusions(con)
    assert excluded["short177"] == (C.INCOMPLETE, f"stopped at step {PLANNED_STEPS - 177} of {PLANNED_STEPS} planned "
                                                  "(99.9%); a mid-schedule loss is not a valid point")
    assert excluded["tokens-short"] == (C.INCOMPLETE, "stopped at 1.9e+05 tokens of 2e+05 planned (95.0%); "
                                                      "a mid-schedule loss is not a valid point")
    # the message names the fact that is missing, not one that is given
    assert excluded["plan-no-progress"] == (
        C.UNKNOWN_SCHEDULE, "planned tokens known (2e+05) but not the tokens seen: the log has no tokens column and "
                            "the run metadata no batch_tokens or total_steps; status is 'running', not completed")
    assert excluded["no-plan"] == (
        C.UNKNOWN_SCHEDULE, "planned schedule length unknown: the run metadata gives neither total_steps nor "
                            "tokens_planned; status is 'running', not completed")
    assert len(excluded) == 4
    # a run logged past its plan keeps its point and is flagged
    assert run_exclusions(con, "flag") == {"over": (C.OVERSHOOT, "logged to step 220 of 200 planned (110.0%): trained "
                                                    "past its schedule; the point uses the tokens seen (2.2e+05)")}
    # the tolerance is a family setting
    loose = C.CleanConfig(families={"loose": C.FamilyOptions(completion_tolerance=0.002)})
    assert "short177" in {r[0] for r in ingest_and_clean(tmp_path, loose).execute(
        "SELECT run_id FROM clean.points").fetchall()}


def test_losses_that_cannot_be_nats_per_token_are_never_fitted(tmp_path: Path) -> None:
    summed = curve("summed", 3.0, scale=40_960.0)  # summed over a 40,960-token batch: ~1e5
    log_likelihood = [dict(r, train_loss=-r["train_loss"], eval_loss=-r["eval_loss"])
                      for r in curve("log-likelihood", 3.0)]
    blown_up = curve("blown-up", 3.0)  # healthy, then far above its best: diverged, whatever its median
    for r in blown_up[4:]:
        r["train_loss"] = r["eval_loss"] = 40.0
    for rows in (summed, log_likelihood, blown_up, curve("fine", 3.0)):
        write_jsonl(tmp_path / f"{rows[0]['run_id']}.jsonl", rows)
    write_csv(tmp_path / "runs.csv", [dict(run_id=run_id, n_params=1e6 * (i + 1), total_steps=200)
                                      for i, run_id in enumerate(("summed", "log-likelihood", "blown-up", "fine"))])
    con = ingest_and_clean(tmp_path)
    excluded = run_exclusions(con)
    assert {run_id: reason for run_id, (reason, _) in excluded.items()} == {
        "summed": C.IMPLAUSIBLE_LOSS_SCALE, "log-likelihood": C.IMPLAUSIBLE_LOSS_SCALE, "blown-up": C.DIVERGED}
    assert excluded["summed"][1].startswith("logged losses have median 140083 and lowest 123290, not a loss in "
                                            "nats per token (expected a value in [1e-06, 20], got 140083.2")
    assert "got -" in excluded["log-likelihood"][1]
    assert con.execute("SELECT run_id FROM clean.points").fetchall() == [("fine",)]


def _convention_logs(root: Path) -> None:
    """Family a gives both counts (and n_params), family b only some of them."""
    runs = [
        dict(run_id="a1", family="a", n_params=1.0e6, n_params_total=1.5e6, n_params_non_embedding=1.0e6),
        dict(run_id="a2", family="a", n_params=2.0e6, n_params_total=2.6e6, n_params_non_embedding=""),
        dict(run_id="b1", family="b", n_params=1.0e6, n_params_total=1.4e6, n_params_non_embedding=9.0e5),
        dict(run_id="b2", family="b", n_params=2.1e6, n_params_total="", n_params_non_embedding=2.0e6),
        dict(run_id="b3", family="b", n_params="", n_params_total="", n_params_non_embedding=3.0e6),
    ]
    for i, run in enumerate(runs):
        write_csv(root / f"{run['run_id']}.csv", curve(run["run_id"], 3.0 - 0.1 * i))
    write_csv(root / "runs.csv", [dict(run, total_steps=200) for run in runs])


def test_parameter_convention_is_chosen_per_family(tmp_path: Path) -> None:
    _convention_logs(tmp_path)
    settings = PipelineSettings(families={"b": {"param_convention": "total"}})
    con = ingest_and_clean(tmp_path, settings.resolve().clean)
    points = {r[0]: r[1:] for r in con.execute(
        "SELECT run_id, n_params, flops, param_convention, n_params_source FROM clean.points").fetchall()}
    assert points == {
        "a1": (1.0e6, 6 * 1.0e6 * 2e5, "non_embedding", "n_params_non_embedding"),
        "a2": (2.0e6, 6 * 2.0e6 * 2e5, "non_embedding", "n_params"),  # no non-embedding count: its n_params
        "b1": (1.4e6, 6 * 1.4e6 * 2e5, "total", "n_params_total"),
        "b2": (2.1e6, 6 * 2.1e6 * 2e5, "total", "n_params"),
    }
    assert run_exclusions(con) == {"b3": (C.NO_METADATA, "number of parameters unknown (param_convention total): "
                                                         "no run metadata names n_params_total or n_params")}


def test_family_options_are_validated_once() -> None:
    with pytest.raises(ValueError, match=r"families\['x'\]: param_convention: expected one of "
                                         r"non_embedding, total, got 'embedding'"):
        PipelineSettings(families={"x": {"param_convention": "embedding"}}).resolve()
    with pytest.raises(ValueError, match="hparam_selection: expected one of envelope, all, got 'best'"):
        C.FamilyOptions(hparam_selection="best")


def test_token_only_runs_are_judged_by_tokens_not_by_their_derived_steps(tmp_path: Path) -> None:
    """A table with tokens but no step column gets step = tokens: that is no step progress to compare
    with total_steps (once a spurious overshoot, logged to 'step 200000 of 200'), unless the run metadata
    gives batch_tokens, which turns the tokens into optimizer steps."""
    def token_rows(run_id: str, last: int) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("run_id", "step")} for r in curve(run_id, 3.0, last=last)]

    runs = {"done": (200, dict(batch_tokens=1000)), "short": (100, dict(batch_tokens=1000)),
            "no-batch": (200, dict(status="completed")), "no-batch-running": (200, dict(status="running"))}
    for run_id, (last, _) in runs.items():
        write_csv(tmp_path / f"{run_id}.csv", token_rows(run_id, last))
    write_csv(tmp_path / "runs.csv", [{"run_id": run_id, "n_params": 1e6 * (i + 1), "total_steps": 200,
                                       "batch_tokens": "", "status": "", **fields}
                                      for i, (run_id, (_, fields)) in enumerate(runs.items())])
    con = ingest_and_clean(tmp_path)
    assert dict(con.execute("SELECT run_id, n_tokens FROM clean.points").fetchall()) == {"done": 2e5, "no-batch": 2e5}
    assert dict(con.execute("SELECT run_id, max(step) FROM clean.steps GROUP BY run_id").fetchall()) == {
        "done": 200, "short": 100, "no-batch": 2e5, "no-batch-running": 2e5}
    assert run_exclusions(con, "flag") == {}
    assert run_exclusions(con) == {
        "short": (C.INCOMPLETE, "stopped at step 100 of 200 planned (50.0%); a mid-schedule loss is not a "
                                "valid point"),
        "no-batch-running": (C.UNKNOWN_SCHEDULE, "planned steps known (200) but not the steps taken: the log has tokens "
                                                 "and no step column, and the run metadata no tokens_planned or "
                                                 "batch_tokens; status is 'running', not completed")}
