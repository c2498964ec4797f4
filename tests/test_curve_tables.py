"""Curves without a step column (digitised or exported: tokens and losses) and W&B chart exports, read
by the real readers from files written by pandas, pyarrow and the csv/json writers, into a real
DuckDB file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from scaling_pipeline.lib.formats import common, discover
from scaling_pipeline.lib.ingest import ingest

TOKENS = [4e8, 1e8, 3e8, 2e8, 3e8, 5e8]  # out of order; 3e8 logged twice (the later row is the last write)
LOSSES = [2.6, 3.4, 2.9, 3.1, 2.8, 2.5]
N_ROWS = 600  # rows of the long clean file: enough for the one-pass fast path (see native.one_pass_pays)


def write_table(fmt: str, path: Path, frame: pd.DataFrame) -> None:
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_token_only_tables_get_their_step_from_tokens(tmp_path: Path, con: duckdb.DuckDBPyConnection, fmt: str,
                                                      fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "FAST_PATH", fast)
    root = tmp_path / "logs"
    root.mkdir()
    write_table(fmt, root / f"curve.{fmt}", pd.DataFrame({"tokens_seen": TOKENS, "loss": LOSSES}))
    long = [(1e6 * (k + 1.4), round(5.0 - k / N_ROWS, 6)) for k in range(N_ROWS)]  # 1.4e6 ...: whole tokens
    write_table(fmt, root / f"long.{fmt}", pd.DataFrame(long, columns=["tokens", "val_loss"]))
    holes = pd.DataFrame({"tokens": [1e8, None, 2e8, None], "loss": [3.0, 2.9, 2.8, None], "lr": [1, 1, 1, 1e-3]})
    write_table(fmt, root / f"holes.{fmt}", holes)

    summary = ingest(root, con)

    rows = con.execute("SELECT run_id, step, tokens, train_loss, eval_loss, record FROM raw.metrics "
                       "ORDER BY run_id, record").fetchall()
    first = 2 if fmt == "csv" else 1  # record of the first data row
    assert [r for r in rows if r[0] == "curve"] == [
        ("curve", int(t), t, loss, None, first + i) for i, (t, loss) in enumerate(zip(TOKENS, LOSSES))]
    assert [r[1:5] for r in rows if r[0] == "long"] == [(round(t), t, None, loss) for t, loss in long]
    assert [r[1:4] for r in rows if r[0] == "holes"] == [(100_000_000, 1e8, 3.0), (200_000_000, 2e8, 2.8)]
    quarantined = con.execute("SELECT source_path, location, field, reason FROM raw.quarantine "
                              "ORDER BY location").fetchall()
    label = "row" if fmt == "parquet" else "line"
    assert [(q[0], q[1], q[2]) for q in quarantined] == [
        (f"holes.{fmt}", f"{label} {first + 1}", "tokens"), (f"holes.{fmt}", f"{label} {first + 3}", "tokens")]
    assert "expected a finite number of tokens (the table has no step column" in quarantined[0][3]
    assert summary.units_quarantined == 0 and summary.units_partial == 1
    if fmt != "parquet":
        assert summary.read_methods == ({f"{fmt}/fast": 2, f"{fmt}/exact": 1} if fast else {f"{fmt}/exact": 3})


def test_a_table_with_neither_step_nor_tokens_is_quarantined(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    (tmp_path / "x.csv").write_text("loss,lr\n2.0,0.1\n")
    ingest(tmp_path, con)
    (reason,) = con.execute("SELECT reason FROM raw.quarantine").fetchone()
    assert reason.startswith("file: expected a step column (one of step, _step")
    assert "or a tokens column (one of tokens, tokens_seen" in reason


def test_a_digitised_table_with_sizes_is_a_metric_table_not_a_manifest(
        tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    (tmp_path / "kaplan.csv").write_text(
        "run,n_params,tokens,loss\nsmall,1e6,1e8,4.1\nsmall,1e6,2e8,3.9\nbig,1e7,1e8,3.8\nbig,1e7,2e8,3.5\n")
    (tmp_path / "plan.csv").write_text("run_id,n_params,tokens\nsmall,1e6,2e8\nbig,1e7,2e8\n")
    assert {u.path.name: u.reader for u in discover(tmp_path)} == {"kaplan.csv": "csv", "plan.csv": "manifest"}
    ingest(tmp_path, con)
    assert con.execute("SELECT run_id, step, train_loss FROM raw.metrics ORDER BY ALL").fetchall() == [
        ("big", 100_000_000, 3.8), ("big", 200_000_000, 3.5), ("small", 100_000_000, 4.1),
        ("small", 200_000_000, 3.9)]
    assert con.execute("SELECT run_id, tokens_planned FROM raw.runs ORDER BY ALL").fetchall() == [
        ("big", 2e8), ("small", 2e8)]


# ---------------------------------------------------------------------------------------------
# W&B chart exports
# ---------------------------------------------------------------------------------------------

RUNS = ("gpt-125M lr=3e-4", "gpt-350M - v2")  # run names as W&B shows them (spaces, dashes, ' - ')


def write_export(path: Path, x: str, metric: str, rows: list[tuple]) -> None:
    """A chart export as the W&B UI writes it: every field quoted, each series with __MIN/__MAX."""
    header = [x] + [f"{run} - {metric}{suffix}" for run in RUNS for suffix in ("", "__MIN", "__MAX")]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def test_wandb_chart_export_is_one_series_per_run(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    write_export(tmp_path / "loss.csv", "Step", "train/loss", [
        (100, 3.5, 3.0, 4.0, "", "", ""),  # the second run not logged at step 100
        (200, 3.2, 3.1, 3.3, 3.0, 2.0, 4.0),
        (300, "", "", "", "2.8", "2.7", "2.9"),
        (400, 3.1, 3.1, 3.1, "n/a", "", ""),
    ])
    write_export(tmp_path / "eval.csv", "Step", "eval/loss", [(400, 3.05, 3.05, 3.05, 2.7, 2.7, 2.7)])
    (tmp_path / "runs.yaml").write_text(json.dumps({"runs": [
        {"run_id": RUNS[0], "family": "gpt", "n_params": 1.25e8},
        {"run_id": RUNS[1], "family": "gpt", "n_params": 3.5e8}]}))
    assert {u.path.name: u.reader for u in discover(tmp_path)} == {
        "eval.csv": "wandb_export", "loss.csv": "wandb_export", "runs.yaml": "manifest"}

    summary = ingest(tmp_path, con)

    assert summary.per_reader == {"wandb_export": 2, "manifest": 1} and summary.units_partial == 1
    assert con.execute("SELECT run_id, step, train_loss, eval_loss, record, source_path FROM raw.metrics "
                       "ORDER BY ALL").fetchall() == [
        (RUNS[0], 100, 3.5, None, 2, "loss.csv"), (RUNS[0], 200, 3.2, None, 3, "loss.csv"),
        (RUNS[0], 400, 3.1, None, 5, "loss.csv"), (RUNS[0], 400, None, 3.05, 2, "eval.csv"),
        (RUNS[1], 200, 3.0, None, 3, "loss.csv"), (RUNS[1], 300, 2.8, None, 4, "loss.csv"),
        (RUNS[1], 400, None, 2.7, 2, "eval.csv")]
    assert con.execute("SELECT source_path, location, field, reason FROM raw.quarantine").fetchall() == [
        ("loss.csv", "line 5", f"{RUNS[1]} - train/loss",
         f"line 5: field '{RUNS[1]} - train/loss': expected a number for train_loss, got 'n/a'")]
    assert con.execute("SELECT run_id, family, n_params FROM raw.runs ORDER BY ALL").fetchall() == [
        (RUNS[0], "gpt", 1.25e8), (RUNS[1], "gpt", 3.5e8)]


def test_wandb_export_against_tokens_derives_the_step(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    write_export(tmp_path / "by_tokens.csv", "train/tokens", "loss", [
        ("2e8", 3.0, 3.0, 3.0, 2.9, 2.9, 2.9), ("1e8", 3.3, 3.3, 3.3, "", "", "")])
    ingest(tmp_path, con)
    assert con.execute("SELECT run_id, step, tokens, train_loss FROM raw.metrics ORDER BY ALL").fetchall() == [
        (RUNS[0], 100_000_000, 1e8, 3.3), (RUNS[0], 200_000_000, 2e8, 3.0), (RUNS[1], 200_000_000, 2e8, 2.9)]


@pytest.mark.parametrize(("x", "metric", "problem"), [
    ("Step", "grad_norm", "expected a loss series, a '<run> - <metric>' column with a loss metric"),
    ("Wall Time", "train/loss", "expected the x-axis column first, a step or tokens column"),
])
def test_wandb_export_without_a_loss_or_a_step_axis_is_quarantined(
        tmp_path: Path, con: duckdb.DuckDBPyConnection, x: str, metric: str, problem: str) -> None:
    write_export(tmp_path / "chart.csv", x, metric, [(1, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0)])
    ingest(tmp_path, con)
    (reader, scope, reason), = con.execute("SELECT reader, scope, reason FROM raw.quarantine").fetchall()
    assert (reader, scope) == ("wandb_export", "file") and problem in reason
    assert con.execute("SELECT count(*) FROM raw.metrics").fetchone() == (0,)


def test_plain_csv_headers_are_not_taken_for_exports(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("step,loss\n1,2.0\n")
    (tmp_path / "b.csv").write_text('"Step","r - loss","other"\n1,2.0,3\n')  # not every column a series
    (tmp_path / "c.csv").write_text('"r - loss","Step"\n2.0,1\n')  # no x-axis column first
    (tmp_path / "d.csv").write_text('"Step","r - loss__MIN"\n1,2.0\n')  # companions only
    assert {u.path.name: u.reader for u in discover(tmp_path)} == {"a.csv": "csv", "b.csv": "csv", "c.csv": "csv",
                                                                   "d.csv": "csv"}


def test_a_large_token_only_csv_reads_the_same_fast_and_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    n = 60_000  # > 1 MiB: read by DuckDB's read_csv on the fast path
    pd.DataFrame({"tokens": [1e5 * (k + 1) for k in range(n)], "loss": [round(4.0 - k / n, 6) for k in range(n)]}
                 ).to_csv(root / "big.csv", index=False)
    assert (root / "big.csv").stat().st_size > 1 << 20
    got = {}
    for fast in (True, False):
        monkeypatch.setattr(common, "FAST_PATH", fast)
        with duckdb.connect(str(tmp_path / f"{fast}.duckdb")) as con:
            assert ingest(root, con).read_methods == {"csv/fast" if fast else "csv/exact": 1}
            got[fast] = con.execute("SELECT * FROM raw.metrics ORDER BY record").fetchall()
    assert got[True] == got[False] and len(got[True]) == n
    assert got[True][-1][2:5] == (6_000_000_000, 6e9, 3.000017)


@pytest.mark.parametrize(("cut", "kept"), [(0, True), (1, False), (5, False), (6, False)])
def test_wandb_export_without_a_final_newline(tmp_path: Path, con: duckdb.DuckDBPyConnection, cut: int,
                                              kept: bool) -> None:
    """A last record whose closing quote ends the file is complete; one cut inside or between its
    quoted fields is rejected (a cut-off number never passes for a whole one)."""
    write_export(tmp_path / "chart.csv", "Step", "loss", [(1, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0),
                                                         (2, 2.5, 2.5, 2.5, 1.75, 1.5, 2.0)])
    data = (tmp_path / "chart.csv").read_bytes()
    (tmp_path / "chart.csv").write_bytes(data[:len(data) - 1 - cut])  # without the newline, and `cut` more bytes
    ingest(tmp_path, con)
    steps = con.execute("SELECT run_id, step, train_loss FROM raw.metrics ORDER BY ALL").fetchall()
    assert steps == [(RUNS[0], 1, 3.0), *([(RUNS[0], 2, 2.5)] if kept else []),
                     (RUNS[1], 1, 2.0), *([(RUNS[1], 2, 1.75)] if kept else [])]
    assert con.execute("SELECT location FROM raw.quarantine").fetchall() == ([] if kept else [("line 3",)])
