"""Log layouts end to end, through the real Definitions: run folders or files of the same name under
different parents are different runs (their id is their path relative to the log root; real
tensorboardX event files, W&B-style run folders, CSV files); tables of tokens and losses without a
step column, and W&B chart exports, give their runs' points."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scaling_pipeline.lib.formats.writing import write_csv
from scaling_pipeline.lib.formats.jsonl_log import write_jsonl
from tests.conftest import Materialized, materialize_all
from tests.ladder_files import shrunk_line_at_end

MODELS = {"base": 1.0e7, "large": 4.0e7, "xl": 1.6e8, "xxl": 6.4e8}  # folder -> parameters
BATCH_TOKENS, TOTAL_STEPS, WARMUP_STEPS = 2**20, 200, 20
STEPS = range(10, TOTAL_STEPS + 1, 10)


def final_loss(n_params: float, family: str) -> float:
    """A Chinchilla-like final loss (nats/token), different per model and per family."""
    shift = {"tb": 0.0, "wb": 0.05, "csv": 0.1, "digitised": 0.15, "wbexport": 0.2}[family]
    return 1.7 + shift + 400.0 / n_params**0.34 + 410.0 / (TOTAL_STEPS * BATCH_TOKENS) ** 0.28


def curve(n_params: float, family: str) -> list[dict]:
    """Logged rows: train loss every 10 steps falling to the final loss, eval at the last step."""
    end = final_loss(n_params, family)
    return [{"step": s, "tokens": float(s * BATCH_TOKENS), "train_loss": end + 2.0 * (1 - s / TOTAL_STEPS) ** 2,
             "eval_loss": end if s == TOTAL_STEPS else None} for s in STEPS]


def meta(n_params: float, family: str) -> dict:
    """Run metadata without a run id: the run is named by its folder."""
    return {"family": family, "n_params": n_params, "batch_tokens": float(BATCH_TOKENS),
            "total_steps": TOTAL_STEPS, "warmup_steps": WARMUP_STEPS, "status": "completed"}


def write_tensorboard(root: Path) -> None:
    from tensorboardX import SummaryWriter

    for folder, n in MODELS.items():
        run_dir = root / folder / "train"
        with SummaryWriter(logdir=str(run_dir)) as writer:
            for row in curve(n, "tb"):
                writer.add_scalar("train/loss", row["train_loss"], global_step=row["step"])
                writer.add_scalar("train/tokens", row["tokens"], global_step=row["step"])
                if row["eval_loss"] is not None:
                    writer.add_scalar("eval/loss", row["eval_loss"], global_step=row["step"])
        (run_dir / "config.yaml").write_text(yaml.safe_dump(meta(n, "tb")))


def write_wandb(root: Path) -> None:
    for folder, n in MODELS.items():
        run_dir = root / folder / "train"
        run_dir.mkdir(parents=True)
        config = {"wandb_version": 1, **{k: {"desc": None, "value": v} for k, v in meta(n, "wb").items()}}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        write_jsonl(run_dir / "wandb-history.jsonl",
                    ({"_step": r["step"], "train/loss": r["train_loss"], "tokens": r["tokens"],
                      **({"eval/loss": r["eval_loss"]} if r["eval_loss"] is not None else {})}
                     for r in curve(n, "wb")))


def write_tables(root: Path) -> None:
    """``<model>/metrics.csv`` (no run-id column) and a manifest naming the runs by a unique suffix of their
    id (``base/metrics`` for ``csv/base/metrics``, the path relative to the log root without the suffix)."""
    for folder, n in MODELS.items():
        (root / folder).mkdir(parents=True)
        write_csv(root / folder / "metrics.csv", ["step", "tokens", "train_loss", "eval_loss"], curve(n, "csv"))
    pd.DataFrame([{"run_id": f"{folder}/metrics", **meta(n, "csv")} for folder, n in MODELS.items()]).to_csv(
        root / "runs.csv", index=False)


def digitised(n_params: float) -> list[tuple[float, float]]:
    """(tokens, loss) points read off a plot: out of order, one point taken twice (the later one counts)."""
    rows = [(float(r["tokens"]), round(r["train_loss"], 4)) for r in curve(n_params, "digitised")][::2]
    return [*rows[::-1], (rows[-1][0], rows[-1][1] - 0.01)]


def write_curves(root: Path) -> None:
    """One table of digitised curves (run, tokens, loss; no step column) and its manifest."""
    root.mkdir(parents=True)
    write_csv(root / "kaplan.csv", ["run", "tokens", "loss"],
              [{"run": folder, "tokens": t, "loss": loss} for folder, n in MODELS.items() for t, loss in digitised(n)])
    pd.DataFrame([{"run_id": folder, "family": "digitised", "n_params": n, "status": "completed"}
                  for folder, n in MODELS.items()]).to_csv(root / "runs.csv", index=False)


def write_chart_export(root: Path) -> None:
    """A W&B chart export (every field quoted, MIN/MAX companions, empty cells) and a manifest mapping
    its run names to the family and sizes."""
    root.mkdir(parents=True)
    names = {folder: f"gpt {folder} - lr=3e-4" for folder in MODELS}
    series = {folder: {r["step"]: r["train_loss"] for r in curve(n, "wbexport")} for folder, n in MODELS.items()}
    with open(root / "train_loss.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(["Step", *(f"{names[f]} - train/loss{s}" for f in MODELS for s in ("", "__MIN", "__MAX"))])
        for step in STEPS:
            writer.writerow([step, *(v for f in MODELS for v in (
                (series[f][step], series[f][step] - 0.5, series[f][step] + 0.5)
                if f != "xxl" or step % 20 == 0 else ("", "", "")))])  # xxl logged every 20 steps
    pd.DataFrame([{"run_id": names[f], **meta(n, "wbexport")} for f, n in MODELS.items()]).to_csv(
        root / "runs.csv", index=False)


@pytest.fixture(scope="module")
def same_names(tmp_path_factory) -> Materialized:
    work = tmp_path_factory.mktemp("identity")
    logs = work / "logs"
    write_tensorboard(logs / "tb")
    write_wandb(logs / "wandb")
    write_tables(logs / "csv")
    write_curves(logs / "curves")
    write_chart_export(logs / "exports")
    db, reports = work / "warehouse.duckdb", work / "reports"
    return Materialized(logs, db, reports, materialize_all(logs, db, reports, bootstrap=0))


@pytest.mark.parametrize(("family", "top", "name"), [("tb", "tb", "train"), ("wb", "wandb", "train"),
                                                     ("csv", "csv", "metrics")])
def test_same_named_runs_under_different_parents_are_different_runs(same_names: Materialized, family: str,
                                                                    top: str, name: str) -> None:
    assert same_names.result.success
    points = {run_id: (n, loss) for run_id, n, loss in same_names.query(
        "SELECT run_id, n_params, loss FROM clean.points WHERE family = ?", [family])}
    assert points.keys() == {f"{top}/{folder}/{name}" for folder in MODELS}
    for folder, n in MODELS.items():
        got_n, loss = points[f"{top}/{folder}/{name}"]
        assert got_n == n
        assert math.isclose(loss, final_loss(n, family), rel_tol=1e-6)  # its own final eval (float32 in tb)
    assert len({loss for _, loss in points.values()}) == len(MODELS)
    steps = same_names.query("SELECT run_id, count(*) FROM clean.steps WHERE family = ? GROUP BY run_id", [family])
    assert sorted(n for _, n in steps) == [len(STEPS) - 1] * len(MODELS)  # all but the warm-up step
    dropped = same_names.query("SELECT run_id, reason FROM clean.exclusions WHERE family = ? AND reason <> 'warmup'",
                               [family])
    assert dropped == []


def test_raw_rows_carry_the_relative_ids(same_names: Materialized) -> None:
    ids = {r for (r,) in same_names.query("SELECT DISTINCT run_id FROM raw.metrics")}
    assert ids == {*(f"{top}/{folder}/{name}" for top, name in (("tb", "train"), ("wandb", "train"),
                                                                ("csv", "metrics")) for folder in MODELS),
                   *MODELS, *(f"gpt {folder} - lr=3e-4" for folder in MODELS)}
    assert same_names.query("SELECT count(*) FROM raw.quarantine") == [(0,)]


def test_digitised_curves_give_points_ordered_and_deduplicated_by_tokens(same_names: Materialized) -> None:
    points = {r[0]: r[1:] for r in same_names.query(
        "SELECT run_id, n_params, n_tokens, loss, loss_source FROM clean.points WHERE family = 'digitised'")}
    assert points.keys() == MODELS.keys()
    for folder, n in MODELS.items():
        rows = digitised(n)
        assert points[folder] == pytest.approx((n, max(t for t, _ in rows), *shrunk_line_at_end(rows)))
    assert same_names.query("SELECT run_id, reason, n_rows FROM clean.exclusions WHERE family = 'digitised' "
                            "ORDER BY run_id") == [(folder, "duplicate_steps", 1) for folder in sorted(MODELS)]


def test_wandb_chart_export_gives_a_point_per_run(same_names: Materialized) -> None:
    points = {r[0]: r[1:] for r in same_names.query(
        "SELECT run_id, n_params, n_tokens, loss FROM clean.points WHERE family = 'wbexport'")}
    assert points.keys() == {f"gpt {folder} - lr=3e-4" for folder in MODELS}
    for folder, n in MODELS.items():
        rows = [(r["step"], r["train_loss"]) for r in curve(n, "wbexport") if folder != "xxl" or r["step"] % 20 == 0]
        got = points[f"gpt {folder} - lr=3e-4"]
        assert got == pytest.approx((n, TOTAL_STEPS * BATCH_TOKENS, shrunk_line_at_end(rows)[0]))


def test_a_manifest_id_ending_several_runs_is_a_reported_conflict(tmp_path: Path) -> None:
    """`train` names both `a/train` and `b/train`: never a silent pick, reported with the candidates."""
    import duckdb

    from scaling_pipeline.lib.cleaning import clean
    from scaling_pipeline.lib.ingest import ingest

    logs = tmp_path / "logs"
    for folder in ("a", "b"):
        (logs / folder).mkdir(parents=True)
        write_csv(logs / folder / "train.csv", ["step", "tokens", "train_loss", "eval_loss"], curve(1e8, "csv"))
    pd.DataFrame([{"run_id": "train", **meta(1e8, "csv")}]).to_csv(logs / "runs.csv", index=False)
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        ingest(logs, con)
        clean(con)
        rows = con.execute("SELECT run_id, reason, detail FROM clean.exclusions WHERE run_id = 'train'").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("train", "conflicting_metadata")]
    assert "ends 2 logged runs (a/train, b/train)" in rows[0][2]
