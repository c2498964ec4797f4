"""MLflow file-store runs: ``mlruns/<experiment_id>/<run_uuid>/``.

A run directory holds ``meta.yaml``, ``metrics/<key>`` (lines ``<timestamp ms> <value> <step>``;
MLflow's older two-field lines mean step 0), ``params/<key>`` and ``tags/<key>`` (one value per
file; keys with '/' are sub-directories). Metric keys map via METRIC_ALIASES; ``record`` is the
1-based index of the row's first metric line, counting the lines of the used metric files in
canonical field order (tokens, train_loss, eval_loss, lr, wall_time). Without a wall-time key,
wall_time is the line timestamp minus the run's first one (s).

Run metadata: params, plus user tags (not ``mlflow.*``); all are text, so numeric-looking extras
become numbers. run_id = param ``run_id`` (or another RUN_ALIASES name), else tag
``mlflow.runName``, else ``run_name`` in meta.yaml, else the directory name.
"""

from __future__ import annotations

import math
import re
import uuid
from pathlib import Path
from typing import Any

import duckdb
import yaml

from .common import (
    ReadReport,
    RejectionLog,
    SourceUnit,
    event_mapping,
    file_rejection,
    row_rejection,
    shorten,
)
from .run_meta import run_report, run_row, to_bigint, to_double
from .writing import format_text, iter_runs
from .metric_sql import EVENT_COLUMNS, TempTable, stage_metric_events
from .safe_yaml import load_yaml
from .text import TextLine, iter_lines

READER = "mlflow"
EVENT_FIELDS = ("tokens", "train_loss", "eval_loss", "lr", "wall_time")
EXPERIMENT_ID = "0"
START_MS = 1_700_000_000_000  # writer: run start (ms since epoch); metric timestamps add wall_time
RUN_FINISHED = 3  # mlflow.entities.RunStatus.FINISHED
SOURCE_LOCAL = 4  # mlflow.entities.SourceType.LOCAL
_EVENTS = "_fmt_mlflow_events"
_KEY_RE = re.compile(r"[\w.\- /]+")  # MLflow's rule for metric/param/tag names


def _value_file(path: Path) -> str:
    """A param/tag file's value (MLflow writes it without a trailing newline)."""
    return path.read_text(encoding="utf-8", errors="replace").removesuffix("\n")


_LINE_FIELDS = (
    ("timestamp", to_bigint, "an integer"),
    ("value", to_double, "a number"),
    ("step", to_bigint, "an integer"),
)


def _metric_line(line: TextLine) -> tuple[tuple[int, float, int] | None, str | None, str]:
    """((timestamp ms, value, step) or None, field at fault, problem)."""
    if not line.terminated:
        problem = "truncated final line (no newline at end of file): expected a complete line"
        return None, None, problem
    parts = (line.text or "").strip().split(" ")
    if len(parts) not in (2, 3):
        return None, None, f"expected '<timestamp> <value> <step>', got {shorten(line.text)}"
    parsed = []
    for (name, cast, kind), text in zip(_LINE_FIELDS, parts, strict=False):
        try:
            parsed.append(cast(text))
        except (ValueError, OverflowError):
            parsed.append(None)
        if parsed[-1] is None:
            return None, name, f"expected {kind}, got {shorten(text)}"
    return (parsed[0], parsed[1], parsed[2] if len(parsed) == 3 else 0), None, ""


def _scan_metrics(table: TempTable, files: dict[str, Path], log: RejectionLog) -> None:
    """Metric lines of ``files`` (key -> path, in reading order) into the events table."""
    record = 0
    for key, path in files.items():
        for line in iter_lines(path):
            if line.text is not None and not line.text.strip():
                continue
            record += 1
            location = f"metrics/{key} line {line.number}"
            if line.text is None:
                log.add(row_rejection(location, None, line.error or "unreadable line"))
                continue
            parsed, field_name, problem = _metric_line(line)
            if parsed is None:
                log.add(row_rejection(location, field_name, problem))
                continue
            timestamp, value, step = parsed
            table.add((record, key, step, value, timestamp / 1000))


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one MLflow run directory."""
    try:
        info = load_yaml(unit.path / "meta.yaml")
    except ValueError as exc:
        return file_rejection(READER, str(exc), "meta.yaml")
    parts: dict[str, dict[str, Path]] = {"metrics": {}, "params": {}, "tags": {}}
    for path in unit.members:
        kind, *key = path.relative_to(unit.path).parts
        if kind in parts and key:
            parts[kind]["/".join(key)] = path
    tags = {key: _value_file(path) for key, path in parts["tags"].items()}
    meta = {key: value for key, value in tags.items() if not key.startswith("mlflow.")}
    meta.update({key: _value_file(path) for key, path in parts["params"].items()})
    fallback = (
        tags.get("mlflow.runName")
        or (info.get("run_name") if isinstance(info, dict) else None)
        or unit.path.name
    )
    run, rejection = run_row(meta, "params", untyped=True, fallback_run_id=str(fallback))
    mapping, problem = event_mapping(sorted(parts["metrics"]), EVENT_FIELDS, "metric key")
    if problem:
        return file_rejection(READER, problem)
    log = RejectionLog()
    with TempTable(con, _EVENTS, EVENT_COLUMNS) as table:
        _scan_metrics(table, {key: parts["metrics"][key] for key in mapping}, log)
        table.flush()
        rows = stage_metric_events(
            con, _EVENTS, mapping, run_id=run["run_id"], family=run.get("family")
        )
    return run_report(READER, con, log, run, rejection, rows)


def _key_path(base: Path, key: str) -> Path:
    """``base/key`` for an MLflow key; refuses names MLflow refuses and any path escape."""
    if not _KEY_RE.fullmatch(key) or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"invalid MLflow key {key!r}: use letters, digits, _ - . space /")
    path = base / key
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=True), encoding="utf-8")
    return path


def write(
    out_dir: Path, runs: list[dict[str, Any]], metrics: dict[str, list[dict[str, Any]]]
) -> list[Path]:
    """``mlruns/0/meta.yaml`` + per run ``mlruns/0/<uuid5(run_id)>/{meta.yaml, metrics/<field>,
    params/<column>, tags/mlflow.runName}`` with the canonical field names as metric keys."""
    exp_dir = out_dir / "mlruns" / EXPERIMENT_ID
    exp_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        _write_yaml(
            exp_dir / "meta.yaml",
            {
                "artifact_location": exp_dir.resolve().as_uri(),
                "creation_time": START_MS,
                "experiment_id": EXPERIMENT_ID,
                "last_update_time": START_MS,
                "lifecycle_stage": "active",
                "name": "Default",
            },
        )
    ]
    for run_id, meta, rows in iter_runs(runs, metrics):
        run_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"scaling-pipeline/{run_id}").hex
        run_dir = exp_dir / run_uuid
        run_dir.mkdir(exist_ok=True)
        paths.append(
            _write_yaml(
                run_dir / "meta.yaml",
                {
                    "artifact_uri": (run_dir / "artifacts").resolve().as_uri(),
                    "end_time": START_MS,
                    "entry_point_name": "",
                    "experiment_id": EXPERIMENT_ID,
                    "lifecycle_stage": "active",
                    "run_id": run_uuid,
                    "run_name": run_id,
                    "run_uuid": run_uuid,
                    "source_name": "",
                    "source_type": SOURCE_LOCAL,
                    "source_version": "",
                    "start_time": START_MS,
                    "status": RUN_FINISHED,
                    "tags": [],
                    "user_id": "scaling-pipeline",
                },
            )
        )
        for key, value in [
            *((k, v) for k, v in meta.items() if v is not None),
            ("mlflow.runName", run_id),
        ]:
            path = _key_path(run_dir / ("tags" if key == "mlflow.runName" else "params"), key)
            path.write_text(format_text(value), encoding="utf-8")
            paths.append(path)
        for name in EVENT_FIELDS:
            lines = [
                f"{_timestamp(row)} {row[name]!r} {row['step']}\n"
                for row in rows
                if row.get(name) is not None
            ]
            if lines:
                path = _key_path(run_dir / "metrics", name)
                path.write_text("".join(lines), encoding="utf-8")
                paths.append(path)
    return paths


def _timestamp(row: dict[str, Any]) -> int:
    wall = row.get("wall_time")
    return START_MS + (round(wall * 1000) if wall is not None and math.isfinite(wall) else 0)
