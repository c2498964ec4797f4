"""Round trips write_logs -> discover -> read_unit for every format, alias recognition, and the
reader-level rejections, on real files and a real DuckDB file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from scaling_pipeline.lib.formats import (
    FORMATS,
    ReadReport,
    SourceUnit,
    create_staging,
    discover,
    read_unit,
    write_logs,
)
from scaling_pipeline.lib.schema import METRIC_COLUMNS, RUN_COLUMNS

RUN_FIELDS = [name for name, _ in RUN_COLUMNS if name not in ("extra", "location")]
METRIC_FIELDS = [name for name, _ in METRIC_COLUMNS if name != "record"]
FLOAT_FIELDS = ["tokens", "train_loss", "eval_loss", "lr", "wall_time"]
EXTRAS = ["device", "n_layers", "weight_decay", "notes"]


def ladder() -> tuple[pd.DataFrame, pd.DataFrame]:
    """3 runs (odd ids/families), 6 steps each: eval every 3rd step (null otherwise), a NaN and an
    inf train loss in the diverged run, step 4 logged twice in the resumed run."""
    runs = pd.DataFrame(
        {
            "run_id": ["gpt n13k", 'run "q\'uoted" ü', "Ω/../../escape"],
            "family": ["code-gpt", "fam 'ü' \"x\"", "code-gpt"],
            "n_params": [12768.0, 25472.0, 56640.0],
            "n_params_total": [14000.0, None, 60000.0],
            "n_params_non_embedding": [12768.0, 25472.0, None],
            "tokens_planned": [63488.0, 126976.0, 253952.0],
            "batch_tokens": [1024.0, 1024.0, 2048.0],
            "total_steps": [62, 124, 124],
            "warmup_steps": [3, 6, 6],
            "schedule": ["cosine", "cosine", "wsd"],
            "status": ["completed", "resumed", "diverged"],
            "unique_tokens": [None, 1.0e5, None],
            "lr": [0.003, 0.0024, 1.0],
            "device": ["cpu fp32", "cpu fp32", "cpu, fp32"],
            "n_layers": [1, 2, 2],
            "weight_decay": [0.1, 0.1, 0.1],
            "notes": [None, 'killed, "requeued"', "lr fault"],
        }
    )
    rows = []
    for run in runs.itertuples():
        steps = [1, 2, 3, 4, 4, 5, 6] if run.status == "resumed" else [1, 2, 3, 4, 5, 6]
        for i, step in enumerate(steps):
            train = 5.0 / math.sqrt(step) + 0.001 * i
            if run.status == "diverged" and step >= 5:
                train = math.nan if step == 5 else math.inf
            rows.append(
                {
                    "run_id": run.run_id,
                    "family": run.family,
                    "step": step,
                    "tokens": float(step * run.batch_tokens),
                    "train_loss": train,
                    "eval_loss": 4.0 / step + 0.1 if step % 3 == 0 else None,
                    "lr": run.lr * step / 6,
                    "wall_time": 0.37 * i + 0.01,
                }
            )
    metrics = pd.DataFrame({name: [r[name] for r in rows] for name in METRIC_FIELDS})
    for name in FLOAT_FIELDS:  # Arrow-backed: NaN and null stay apart
        metrics[name] = pd.Series(
            pa.array([r[name] for r in rows], pa.float64()), dtype=pd.ArrowDtype(pa.float64())
        )
    return runs, metrics


def read_all(
    root: Path, con: duckdb.DuckDBPyConnection
) -> tuple[list[SourceUnit], list[ReadReport], list[tuple], list[tuple]]:
    """Discover + read every unit under ``root``; (units, reports, metric rows, run rows)."""
    units, reports, metrics, runs = discover(root), [], [], []
    for unit in units:
        create_staging(con)
        reports.append(read_unit(unit, con))
        metrics += con.execute("SELECT * FROM stage_metrics").fetchall()
        runs += con.execute("SELECT * FROM stage_runs").fetchall()
    return units, reports, metrics, runs


def same(a: Any, b: Any) -> bool:
    """Equal, treating NaN == NaN and None == None."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def float32(value: float | None) -> float | None:
    return None if value is None else float(np.float32(value))


def expected_metrics(metrics: pd.DataFrame, fmt: str) -> list[tuple]:
    out = []
    for row in metrics.astype(object).to_dict("records"):
        values = {k: (None if v is pd.NA else v) for k, v in row.items()}
        if fmt == "tensorboard":  # scalars are float32 in TensorBoard
            values.update({k: float32(values[k]) for k in FLOAT_FIELDS})
        out.append(tuple(values[name] for name in METRIC_FIELDS))
    return out


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(fmt: str, tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    runs, metrics = ladder()
    out = tmp_path / "logs"
    paths = write_logs(fmt, out, runs, metrics)
    assert paths and all(p.is_file() and p.resolve().is_relative_to(out.resolve()) for p in paths)
    assert all(
        p.resolve().is_relative_to(out.resolve())
        for p in tmp_path.rglob("*")
        if p != out and "warehouse" not in p.name
    ), "nothing may be written outside out_dir"

    units, reports, got_metrics, got_runs = read_all(out, con)
    assert [r.rejections for r in reports] == [[] for _ in reports]
    assert {u.reader for u in units} == (
        {"manifest", fmt} if fmt in ("csv", "jsonl", "parquet") else {fmt}
    )
    # metric rows: identical (tensorboard: float32) including NaN/inf/null, duplicates kept
    records = [row[-1] for row in got_metrics]
    assert all(isinstance(r, int) and r >= 1 for r in records)
    got = [row[:-1] for row in sorted(got_metrics, key=lambda r: (r[0], r[2], r[-1]))]
    want = sorted(expected_metrics(metrics, fmt), key=lambda r: (r[0], r[2]))
    assert len(got) == len(want) == len(metrics)
    for g, w in zip(got, want, strict=True):
        assert all(same(a, b) for a, b in zip(g, w, strict=True)), (g, w)
    # run metadata: identical canonical columns, other columns in extra
    assert len(got_runs) == len(runs)
    by_id = {row[0]: row for row in got_runs}
    for run in runs.astype(object).to_dict("records"):
        row = dict(zip([n for n, _ in RUN_COLUMNS], by_id[run["run_id"]], strict=True))
        for name in RUN_FIELDS:
            want_value = (
                None if isinstance(run[name], float) and math.isnan(run[name]) else run[name]
            )
            assert same(row[name], want_value), (name, row[name], want_value)
        extras = {
            k: run[k]
            for k in EXTRAS
            if isinstance(run[k], (int, float, str))
            and not (isinstance(run[k], float) and math.isnan(run[k]))
        }
        assert json.loads(row["extra"]) == extras


def test_writer_outputs_follow_the_native_layouts(tmp_path: Path) -> None:
    runs, metrics = ladder()
    write_logs("mlflow", tmp_path, runs, metrics)
    experiment = yaml.safe_load((tmp_path / "mlruns" / "0" / "meta.yaml").read_text())
    assert experiment["experiment_id"] == "0" and experiment["lifecycle_stage"] == "active"
    run_meta = [
        yaml.safe_load(p.read_text()) for p in (tmp_path / "mlruns" / "0").glob("*/meta.yaml")
    ]
    assert sorted(m["run_name"] for m in run_meta) == sorted(runs["run_id"])
    write_logs("parquet", tmp_path / "pq", runs, metrics)
    table = pq.read_table(next((tmp_path / "pq").glob("gpt*.parquet")))
    assert table.schema.field("step").type == pa.int64()


def test_numpy_nan_is_null_and_unknown_format_rejected(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    metrics = pd.DataFrame({"run_id": ["r", "r"], "step": [1, 2], "train_loss": [1.5, np.nan]})
    write_logs("jsonl", tmp_path, pd.DataFrame({"run_id": ["r"]}), metrics)
    _, _, got, _ = read_all(tmp_path, con)
    assert [row[4] for row in sorted(got, key=lambda r: r[2])] == [1.5, None]
    with pytest.raises(ValueError, match="unknown format"):
        write_logs("xml", tmp_path, pd.DataFrame(), pd.DataFrame())


def test_mlflow_writer_refuses_keys_that_would_escape(tmp_path: Path) -> None:
    runs, metrics = ladder()
    runs["../../escaped"] = 1.0
    with pytest.raises(ValueError, match="invalid MLflow key"):
        write_logs("mlflow", tmp_path / "out", runs, metrics)
    assert not any(p.name == "escaped" for p in tmp_path.rglob("*"))


# ------------------------------------------------------------------------------------------------
# alias recognition, one source per format
# ------------------------------------------------------------------------------------------------


def write_tb(run_dir: Path, tags: dict[str, list[tuple[int, float]]]) -> None:
    from tensorboardX import SummaryWriter

    with SummaryWriter(logdir=str(run_dir)) as writer:
        for tag, points in tags.items():
            for step, value in points:
                writer.add_scalar(tag, value, global_step=step)


def test_aliases_all_formats(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    (tmp_path / "csvrun.csv").write_text(
        "Iter,loss,val_loss,tokens_seen,learning_rate,elapsed,grad_norm\n"
        "1,2.5,,1024,0.001,0.5,9\n2,2.25,2.4,2048,0.002,1.0,9\n"
    )
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "log.jsonl").write_text(
        '{"_step": 3, "train/loss": 1.5, "eval/loss": 1.75, "num_tokens": 3072, "run": "j1", '
        '"model_family": "fam"}\n'
    )
    pq.write_table(
        pa.table(
            {"global_step": [7], "Loss": [1.25], "valid_loss": [None], "consumed_tokens": [7.0e3]},
        ),
        tmp_path / "pq.parquet",
    )
    (tmp_path / "experiments.csv").write_text(
        "name,params,total_tokens,max_steps,peak_lr,custom\ncsvrun,1000,1e6,62.0,0.003,hello\n"
    )
    (tmp_path / "runs.yaml").write_text(
        yaml.safe_dump(
            {"runs": [{"run_name": "j1", "model_size": 2e5, "warmup": 5, "nested": {"depth": 2}}]}
        )
    )
    write_tb(
        tmp_path / "tb" / "dir-name",
        {
            "loss": [(1, 3.0), (2, 2.0)],
            "val_loss": [(2, 2.5)],
            "learning_rate": [(1, 0.5)],
            "other/tag": [(1, 9.0)],
        },
    )
    (tmp_path / "tb" / "dir-name" / "config.yaml").write_text("run_id: tb-run\nfamily: tbfam\n")
    ml = tmp_path / "mlruns" / "5" / "abc123"
    for rel, text in {
        "meta.yaml": "run_uuid: abc123\nrun_name: ignored\n",
        "metrics/loss": "1700000000000 2.0 1\n1700000002500 1.0 2\n",
        "metrics/val/loss": "1700000002500 1.5 2\n",
        "metrics/accuracy": "1 0.5 1\n",
        "params/model_size": "3000",
        "params/schedule": "cosine",
        "params/seed": "7",
        "tags/mlflow.runName": "ml-run",
        "tags/team": "x",
    }.items():
        (ml / rel).parent.mkdir(parents=True, exist_ok=True)
        (ml / rel).write_text(text)
    wb = tmp_path / "wandb" / "run-20240101-xyz" / "files"
    wb.mkdir(parents=True)
    (wb / "history.csv").write_text("_step,loss,_runtime,_timestamp\n0,4.0,1.5,1700000000\n")
    (wb / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "wandb_version": 1,
                "_wandb": {"desc": None, "value": {"cli_version": "0.16"}},
                "model_family": {"desc": None, "value": "wbfam"},
                "params": {"value": 1234.0},
                "optimizer": {"desc": None, "value": "adamw"},
            }
        )
    )

    units, reports, metrics, runs = read_all(tmp_path, con)
    assert {u.path.relative_to(tmp_path).as_posix(): u.reader for u in units} == {
        "a/b/log.jsonl": "jsonl",
        "csvrun.csv": "csv",
        "experiments.csv": "manifest",
        "mlruns/5/abc123": "mlflow",
        "pq.parquet": "parquet",
        "runs.yaml": "manifest",
        "tb/dir-name": "tensorboard",
        "wandb/run-20240101-xyz/files": "wandb",
    }
    assert all(r.status == "ok" for r in reports), [r.rejections for r in reports]
    got = {(m[0], m[2]): m[:-1] for m in metrics}
    assert got[("csvrun", 1)] == ("csvrun", None, 1, 1024.0, 2.5, None, 0.001, 0.5)
    assert got[("csvrun", 2)] == ("csvrun", None, 2, 2048.0, 2.25, 2.4, 0.002, 1.0)
    assert got[("j1", 3)] == ("j1", "fam", 3, 3072.0, 1.5, 1.75, None, None)
    assert got[("pq", 7)] == ("pq", None, 7, 7000.0, 1.25, None, None, None)
    assert got[("ml-run", 1)] == ("ml-run", None, 1, None, 2.0, None, None, 0.0)
    assert got[("ml-run", 2)] == ("ml-run", None, 2, None, 1.0, 1.5, None, 2.5)
    assert got[("wandb/run-20240101-xyz", 0)] == (  # no run id in its config: its path under the root
        "wandb/run-20240101-xyz",
        "wbfam",
        0,
        None,
        4.0,
        None,
        None,
        1.5,
    )
    tb = sorted(m for m in metrics if m[0] == "tb-run")
    assert [(m[1], m[2], m[4], m[5], m[6]) for m in tb] == [
        ("tbfam", 1, 3.0, None, 0.5),
        ("tbfam", 2, 2.0, 2.5, None),
    ]
    assert tb[0][7] == 0.0 and tb[1][7] >= 0.0  # wall_time from event times
    run_rows = {r[0]: dict(zip([n for n, _ in RUN_COLUMNS], r, strict=True)) for r in runs}
    assert run_rows["csvrun"]["n_params"] == 1000.0 and run_rows["csvrun"]["total_steps"] == 62
    assert run_rows["csvrun"]["tokens_planned"] == 1e6 and run_rows["csvrun"]["lr"] == 0.003
    assert json.loads(run_rows["csvrun"]["extra"]) == {"custom": "hello"}
    assert run_rows["j1"]["n_params"] == 2e5 and run_rows["j1"]["warmup_steps"] == 5
    assert json.loads(run_rows["j1"]["extra"]) == {"nested": {"depth": 2}}
    assert run_rows["ml-run"]["n_params"] == 3000.0 and run_rows["ml-run"]["schedule"] == "cosine"
    assert json.loads(run_rows["ml-run"]["extra"]) == {"seed": 7, "team": "x"}
    assert run_rows["tb-run"]["family"] == "tbfam"
    assert run_rows["wandb/run-20240101-xyz"]["n_params"] == 1234.0
    assert run_rows["wandb/run-20240101-xyz"]["family"] == "wbfam"
    assert json.loads(run_rows["wandb/run-20240101-xyz"]["extra"]) == {"optimizer": "adamw"}


# ------------------------------------------------------------------------------------------------
# rejections at reader level
# ------------------------------------------------------------------------------------------------


def read_one(path: Path, con: duckdb.DuckDBPyConnection) -> ReadReport:
    (unit,) = discover(path.parent)
    create_staging(con)
    return read_unit(unit, con)


@pytest.mark.parametrize(
    ("name", "content", "location", "field", "phrase"),
    [
        (
            "m.csv",
            "step,loss\n1,2.0\nabc,2.0\n",
            "line 3",
            "step",
            "expected an integer, got 'abc'",
        ),
        (
            "m.csv",
            "step,loss\n1,2.0\n2.5,2.0\n",
            "line 3",
            "step",
            "expected an integer, got '2.5'",
        ),
        (
            "m.csv",
            "step,loss\n1,2.0\n2,two\n",
            "line 3",
            "loss",
            "expected a number for train_loss",
        ),
        (
            "m.csv",
            "step,loss\n1,2.0\n2,1,5\n",
            "line 3",
            None,
            "expected 2 fields as in the header, got 3",
        ),
        ("m.csv", 'step,loss\n1,2.0\n2,"1.0\n', "line 3", None, "expected well-formed CSV"),
        ("m.csv", "step,loss\n1,2.0\n2,1.5", "line 3", None, "truncated final line"),
        ("m.csv", "step,loss\n1,2.0\n,1.5\n", "line 3", "step", "expected an integer, got null"),
        (
            "m.csv",
            b"step,loss\n1,2.0\n2,1.\xff5\n",
            "line 3",
            None,
            "expected UTF-8 text, got byte 0xff",
        ),
        (
            "m.jsonl",
            '{"step": 1, "loss": 2}\n{"step": 2, "loss": 2\n',
            "line 2",
            None,
            "expected a JSON object, got malformed JSON",
        ),
        (
            "m.jsonl",
            '{"step": 1, "loss": 2}\n[1, 2]\n',
            "line 2",
            None,
            "expected a JSON object, got a JSON array",
        ),
        (
            "m.jsonl",
            '{"step": 1, "loss": 2}\n{"step": 2, "lo',
            "line 2",
            None,
            "truncated final line",
        ),
        (
            "m.jsonl",
            '{"step": 1, "loss": 2}\n{"step": "x", "loss": 2}\n',
            "line 2",
            "step",
            "expected an integer, got 'x'",
        ),
        (
            "m.jsonl",
            '{"step": 1, "loss": 2}\n{"step": 2, "loss": true}\n',
            "line 2",
            "loss",
            "expected a number for train_loss, got 'true'",
        ),
        (
            "m.jsonl",
            '{"step": 1, "loss": 2, "run_id": "a"}\n{"step": 2, "loss": 1}\n',
            "line 2",
            "run_id",
            "expected a non-empty run id, got null",
        ),
        (
            "runs.yaml",
            "- {run_id: a, total_steps: 10}\n- just text\n",
            "record 2",
            None,
            "expected a mapping of run fields",
        ),
    ],
)
def test_row_rejections(
    name: str,
    content: str | bytes,
    location: str,
    field: str | None,
    phrase: str,
    tmp_path: Path,
    con: duckdb.DuckDBPyConnection,
) -> None:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    report = read_one(path, con)
    assert report.status == "partial"
    (rejection,) = report.rejections
    assert (rejection.location, rejection.field, rejection.scope) == (location, field, "row")
    assert rejection.reason.startswith(location) and phrase in rejection.reason, rejection.reason
    assert report.n_metric_rows + report.n_run_rows == 1


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("m.csv", "", "expected a header line"),
        ("m.csv", "a,b\n1,2\n", "expected a step column (one of step, _step"),
        ("m.csv", "step,lr\n1,2\n", "expected a loss column"),
        ("m.jsonl", "", "expected JSON lines (one JSON object per line), got an empty file"),
        ("m.jsonl", "\x00\x01garbage\nmore garbage\n", "got 2 lines and none is a JSON object"),
        ("m.jsonl", '{"iteration": 1}\n', "expected a loss column"),
        ("m.parquet", "PAR1 not really", "expected a Parquet file, DuckDB says"),
        ("runs.csv", "", "expected a header line"),
        ("runs.yaml", "runs: {a: 1}\n", "expected a list of runs"),
        ("runs.yaml", "runs: [a, b\n", "expected YAML"),
    ],
)
def test_file_rejections(
    name: str, content: str, phrase: str, tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    path = tmp_path / name
    path.write_text(content)
    report = read_one(path, con)
    assert report.status == "quarantined"
    (rejection,) = report.rejections
    assert (rejection.location, rejection.scope) == ("file", "file")
    assert phrase in rejection.reason, rejection.reason
    assert con.execute("SELECT count(*) FROM stage_metrics").fetchone()[0] == 0


def test_tensorboard_truncated_events_keep_complete_records(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    run_dir = tmp_path / "run"
    write_tb(run_dir, {"train/loss": [(s, 1.0 / s) for s in range(1, 11)]})
    (events,) = run_dir.glob("events.out.tfevents.*")
    events.write_bytes(events.read_bytes()[:-7])
    report = read_one(run_dir / "x", con)
    assert report.n_metric_rows == 9
    (rejection,) = report.rejections
    assert "expected a complete TFRecord" in rejection.reason and rejection.scope == "row"
    events.write_bytes(b"not an events file at all")
    assert read_one(run_dir / "x", con).status == "quarantined"


def test_mlflow_bad_metric_lines(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    run = tmp_path / "mlruns" / "0" / "r1"
    (run / "metrics").mkdir(parents=True)
    (run / "meta.yaml").write_text("run_name: r1\n")
    (run / "metrics" / "train_loss").write_text(
        "1 2.0 1\n2 x 2\n3 1.0\n4 1.0 4 9\n5 1.0 5.5\n6 0.5 6"
    )
    report = read_one(run / "x", con)
    reasons = [r.reason for r in report.rejections]
    assert reasons == [
        "metrics/train_loss line 2: field 'value': expected a number, got 'x'",
        "metrics/train_loss line 4: expected '<timestamp> <value> <step>', got '4 1.0 4 9'",
        "metrics/train_loss line 5: field 'step': expected an integer, got '5.5'",
        "metrics/train_loss line 6: truncated final line (no newline at end of file): expected a "
        "complete line",
    ]
    rows = con.execute("SELECT step, train_loss FROM stage_metrics ORDER BY step").fetchall()
    assert rows == [(0, 1.0), (1, 2.0)]  # a two-field line is MLflow's step 0


def test_wandb_bad_config_quarantines_run(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "wandb-history.jsonl").write_text('{"_step": 0, "loss": 1.0}\n')
    (run / "config.yaml").write_text("- not\n- a mapping\n")
    report = read_one(run / "x", con)
    assert report.status == "quarantined" and report.rejections[0].location == "config.yaml"
    (run / "config.yaml").write_text("lr: {value: oops}\nname: {value: wb}\n")
    report = read_one(run / "x", con)  # the bad field is left out, the rest of the metadata kept
    assert report.n_metric_rows == 1 and report.n_run_rows == 1
    assert report.rejections[0].reason == "config.yaml: field 'lr': expected a number, got 'oops'"
    assert report.rejections[0].scope == "field"
    assert con.execute("SELECT run_id FROM stage_metrics").fetchall() == [("wb",)]


def test_many_bad_rows_are_capped(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    lines = ["step,loss", *(f"{i},{'x' if i % 2 else 1.0}" for i in range(3000))]
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    report = read_one(path, con)
    assert report.n_metric_rows == 1500
    assert len(report.rejections) == 1001
    assert report.rejections[-1].reason.startswith("more rows: 500 further rows rejected")


def test_discovery_claims_run_directories_whole(tmp_path: Path) -> None:
    runs, metrics = ladder()
    write_logs("wandb", tmp_path / "wb", runs, metrics)
    write_logs("mlflow", tmp_path / "ml", runs, metrics)
    (tmp_path / "ml" / "mlruns" / "0" / "artifacts.csv").write_text("step,loss\n1,1\n")
    art = next((tmp_path / "ml" / "mlruns" / "0").glob("*/"))
    (art / "artifacts").mkdir()
    (art / "artifacts" / "table.csv").write_text("step,loss\n1,1\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.csv").write_text("step,loss\n1,1\n")
    (tmp_path / "README.md").write_text("hello")
    units = discover(tmp_path)
    assert units == sorted(units, key=lambda u: u.path)
    readers = [u.reader for u in units]
    assert (
        readers.count("wandb") == 3 and readers.count("mlflow") == 3 and readers.count("csv") == 1
    )
    assert all(m.is_relative_to(u.path) for u in units for m in u.members)
    assert not any("artifacts" in m.parts for u in units for m in u.members)
