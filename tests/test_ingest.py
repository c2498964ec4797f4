"""ingest(): idempotence, change detection, removal, quarantine and the real GPU ladder, on real
log files and a real DuckDB file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from scaling_pipeline.lib import formats
from scaling_pipeline.lib.formats import FORMATS, write_logs
from scaling_pipeline.lib.ingest import IngestSummary, ingest
from tests.test_formats import ladder

REFERENCE = (
    Path(
        os.environ.get(
            "SCALING_REFERENCE_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
        )
    )
    / "gpu_ladder"
)
TABLES = ("raw.files", "raw.metrics", "raw.runs", "raw.quarantine")


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


def table_rows(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Rows as sorted reprs (NaN-safe comparison)."""
    return sorted(map(repr, con.execute(f"SELECT * FROM {table}").fetchall()))


def by_source(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, list[str]]]:
    """source_path -> table -> rows (reprs, incl. timestamps)."""
    out: dict[str, dict[str, list[str]]] = {}
    for table in TABLES:
        for row in con.execute(f"SELECT source_path, * FROM {table}").fetchall():
            out.setdefault(row[0], {}).setdefault(table, []).append(repr(row[1:]))
    return {path: {t: sorted(rows) for t, rows in tables.items()} for path, tables in out.items()}


def mixed_root(root: Path) -> Path:
    """The test ladder once in every format, each in its own sub-directory."""
    runs, metrics = ladder()
    for fmt in FORMATS:
        write_logs(fmt, root / fmt, runs, metrics)
    return root


def test_second_ingest_is_a_noop_and_a_moved_root_too(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    root = mixed_root(tmp_path / "logs")
    first = ingest(root, con)
    # csv/jsonl/parquet: 3 run files + runs.csv each; tensorboard/mlflow/wandb: 3 run dirs each
    assert first.units_seen == first.units_ingested == 3 * 4 + 3 * 3
    assert first.units_partial == first.units_quarantined == first.rejections == 0
    assert first.metric_rows == 6 * 19 and first.run_rows == 6 * 3
    assert first.per_reader == {
        "csv": 3,
        "jsonl": 3,
        "parquet": 3,
        "manifest": 3,
        "tensorboard": 3,
        "mlflow": 3,
        "wandb": 3,
    }
    before = {table: table_rows(con, table) for table in TABLES}

    second = ingest(root, con)
    assert (second.units_ingested, second.units_unchanged, second.metric_rows) == (
        0,
        first.units_seen,
        0,
    )
    assert {table: table_rows(con, table) for table in TABLES} == before

    moved = tmp_path / "elsewhere" / "logs"
    shutil.move(root, moved)
    third = ingest(moved, con)
    assert (third.units_unchanged, third.units_removed) == (first.units_seen, 0)
    assert {table: table_rows(con, table) for table in TABLES} == before


def test_modified_file_changes_only_its_rows(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    root = mixed_root(tmp_path / "logs")
    ingest(root, con)
    before = by_source(con)
    target = next((root / "csv").glob("gpt_n13k*.csv"))
    with open(target, "a", encoding="utf-8") as handle:
        handle.write("gpt n13k,code-gpt,7,7168.0,1.5,,0.0035,2.6\n")
    summary = ingest(root, con)
    assert (summary.units_ingested, summary.metric_rows) == (1, 7)
    after = by_source(con)
    rel = target.relative_to(root).as_posix()
    assert {k: v for k, v in after.items() if k != rel} == {
        k: v for k, v in before.items() if k != rel
    }
    assert len(after[rel]["raw.metrics"]) == len(before[rel]["raw.metrics"]) + 1
    assert con.execute(
        "SELECT step, train_loss FROM raw.metrics WHERE source_path = ? AND step = 7", [rel]
    ).fetchall() == [(7, 1.5)]


def test_deleted_units_lose_their_rows(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    root = mixed_root(tmp_path / "logs")
    ingest(root, con)
    gone_file = next((root / "jsonl").glob("gpt*.jsonl"))
    gone_dir = next(p for p in (root / "tensorboard").iterdir() if p.name.startswith("gpt"))
    gone_file.unlink()
    shutil.rmtree(gone_dir)
    messages: list[str] = []
    summary = ingest(root, con, progress=messages.append)
    gone = sorted(p.relative_to(root).as_posix() for p in (gone_file, gone_dir))
    assert summary.removed_paths == gone and summary.units_removed == 2
    assert any(m.startswith(f"removed {gone[0]}") for m in messages)
    for table in TABLES:
        assert (
            con.execute(
                f"SELECT count(*) FROM {table} WHERE source_path IN (?, ?)", gone
            ).fetchone()[0]
            == 0
        )
    assert con.execute("SELECT count(DISTINCT source_path) FROM raw.metrics").fetchone()[0] == 16


def test_bad_row_is_quarantined_and_the_rest_kept(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "bad.csv").write_text("run_id,step,loss\nr,1,2.0\nr,abc,1.9\nr,3,1.8\n")
    (tmp_path / "logs" / "good.jsonl").write_text('{"run_id": "g", "step": 1, "loss": 3.0}\n')
    summary = ingest(tmp_path / "logs", con)
    assert (summary.units_partial, summary.rejections, summary.metric_rows) == (1, 1, 3)
    assert con.execute(
        "SELECT source_path, reader, location, field, reason, scope FROM raw.quarantine"
    ).fetchall() == [
        (
            "bad.csv",
            "csv",
            "line 3",
            "step",
            "line 3: field 'step': expected an integer, got 'abc'",
            "row",
        )
    ]
    assert con.execute(
        "SELECT step FROM raw.metrics WHERE source_path = 'bad.csv' ORDER BY step"
    ).fetchall() == [(1,), (3,)]
    assert con.execute(
        "SELECT source_path, status, n_metric_rows, n_rejections FROM raw.files ORDER BY 1"
    ).fetchall() == [("bad.csv", "partial", 2, 1), ("good.jsonl", "ok", 1, 0)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_truncated_last_line_is_quarantined(
    fmt: str, tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    runs, metrics = ladder()
    root = tmp_path / "logs"
    write_logs(fmt, root, runs, metrics)
    target = next(root.glob(f"gpt*.{fmt}"))
    data = target.read_bytes()
    target.write_bytes(data[: len(data) - 9])  # cut inside the last line
    n_lines = data.count(b"\n")
    ingest(root, con)
    rel = target.name
    (row,) = con.execute(
        "SELECT location, scope, reason FROM raw.quarantine WHERE source_path = ?", [rel]
    ).fetchall()
    assert row[0] == f"line {n_lines}" and row[1] == "row" and "truncated final line" in row[2]
    assert con.execute("SELECT count(*) FROM raw.metrics WHERE source_path = ?", [rel]).fetchone()[
        0
    ] == n_lines - 1 - (fmt == "csv")  # csv: minus the header
    assert (
        con.execute("SELECT count(*) FROM raw.quarantine WHERE source_path <> ?", [rel]).fetchone()[
            0
        ]
        == 0
    )


def test_garbage_parquet_is_quarantined_others_ingested(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    runs, metrics = ladder()
    root = tmp_path / "logs"
    write_logs("parquet", root, runs, metrics)
    (root / "garbage.parquet").write_bytes(os.urandom(4096))
    summary = ingest(root, con)
    assert summary.units_quarantined == 1 and summary.metric_rows == len(metrics)
    (row,) = con.execute(
        "SELECT source_path, location, field, scope, reason FROM raw.quarantine"
    ).fetchall()
    assert row[:4] == ("garbage.parquet", "file", None, "file")
    assert row[4].startswith("file: expected a Parquet file, DuckDB says:")
    assert con.execute(
        "SELECT status, n_metric_rows FROM raw.files WHERE source_path = 'garbage.parquet'"
    ).fetchall() == [("quarantined", 0)]


def test_failing_reader_and_vanished_file_do_not_stop_ingest(
    tmp_path: Path, con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs, metrics = ladder()
    root = tmp_path / "logs"
    write_logs("jsonl", root, runs, metrics)

    def broken_reader(
        unit: formats.SourceUnit, con: duckdb.DuckDBPyConnection
    ) -> formats.ReadReport:
        con.execute("INSERT INTO stage_metrics (run_id, step) VALUES ('half-staged', 1)")
        raise RuntimeError("reader bug")

    monkeypatch.setitem(formats.READERS, "manifest", broken_reader)  # a reader with a bug
    victim = sorted(root.glob("*.jsonl"))[-1]  # deleted after discovery, before it is hashed
    summary = ingest(root, con, progress=lambda message: victim.unlink(missing_ok=True))
    assert summary.units_quarantined == 2 and summary.metric_rows == 2 * 6
    reasons = dict(con.execute("SELECT source_path, reason FROM raw.quarantine").fetchall())
    assert reasons["runs.csv"] == "file: reader failed unexpectedly: RuntimeError: reader bug"
    assert reasons[victim.name].startswith("file: reader failed unexpectedly: FileNotFoundError")
    assert (
        con.execute("SELECT count(*) FROM raw.metrics WHERE run_id = 'half-staged'").fetchone()[0]
        == 0
    )
    monkeypatch.undo()
    write_logs("jsonl", root, runs, metrics)
    again = ingest(root, con)
    assert (again.units_ingested, again.units_quarantined) == (2, 0)


def test_missing_root_is_an_error_not_a_wipe(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    runs, metrics = ladder()
    write_logs("csv", tmp_path / "logs", runs, metrics)
    ingest(tmp_path / "logs", con)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        ingest(tmp_path / "typo", con)
    assert con.execute("SELECT count(*) FROM raw.files").fetchone()[0] == 4


def test_quotes_and_sql_in_values_survive(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    run_id = "x'); DROP TABLE raw.metrics; --"
    metrics = pd.DataFrame(
        {"run_id": [run_id], "family": ["f'\"; --"], "step": [1], "train_loss": [2.0]}
    )
    write_logs(
        "csv", tmp_path / "logs", pd.DataFrame({"run_id": [run_id], "n_params": [1.0]}), metrics
    )
    ingest(tmp_path / "logs", con)
    assert con.execute("SELECT run_id, family FROM raw.metrics").fetchall() == [
        (run_id, "f'\"; --")
    ]
    assert con.execute("SELECT run_id FROM raw.runs").fetchall() == [(run_id,)]


def test_progress_reports_each_unit(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    runs, metrics = ladder()
    write_logs("csv", tmp_path / "logs", runs, metrics)
    messages: list[str] = []
    summary = ingest(tmp_path / "logs", con, progress=messages.append)
    assert len(messages) == summary.units_seen == 4
    # plain metric files are stored in one batch, reported after it: the order is by batch
    assert sorted(m.split("]")[0] for m in messages) == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert "[4/4] manifest runs.csv: 0 metric rows, 3 runs, 0 rejections (ok)" in messages
    assert isinstance(summary, IngestSummary) and summary.to_metadata()["run_rows"] == 3


@pytest.mark.reference
def test_gpu_ladder(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    if not (REFERENCE / "runs.csv").is_file():
        pytest.skip(
            f"GPU ladder reference data not found at {REFERENCE} "
            "(set SCALING_REFERENCE_DATA to the folder holding gpu_ladder/)"
        )
    summary = ingest(REFERENCE, con)
    assert summary.per_reader == {"jsonl": 1, "manifest": 1}
    assert con.execute("SELECT count(*) FROM raw.runs").fetchone()[0] == 63
    assert con.execute("SELECT count(*) FROM raw.metrics").fetchone()[0] == 6961
    assert con.execute("SELECT count(*) FROM raw.quarantine").fetchone()[0] == 0
    assert (
        con.execute(
            "SELECT count(*) FROM (SELECT run_id, step FROM raw.metrics GROUP BY ALL "
            "HAVING count(*) > 1)"
        ).fetchone()[0]
        == 10
    )
    # values exactly as in the JSON lines, nulls kept
    sample = pd.read_json(REFERENCE / "metrics.jsonl", lines=True, nrows=200)
    got = con.execute(
        "SELECT run_id, family, step, tokens, train_loss, eval_loss, lr, wall_time "
        "FROM raw.metrics WHERE record <= 200 ORDER BY record"
    ).df()
    pd.testing.assert_frame_equal(got, sample, check_dtype=False)
    assert (
        con.execute("SELECT count(*) FROM raw.metrics WHERE eval_loss IS NOT NULL").fetchone()[0]
        == 744
    )
    run = con.execute(
        "SELECT n_params, total_steps, status, n_params_total "
        "FROM raw.runs WHERE run_id = 'code-gpt_n150k_tpp20'"
    ).fetchone()
    assert run[0] == 150080.0 and run[2] == "resumed" and int(run[3]) == 174656
    assert ingest(REFERENCE, con).units_unchanged == 2
