"""Weights & Biases run directories: ``wandb-history.jsonl`` (or a ``run.history()`` export
``history.csv``) plus ``config.yaml``.

The history is read like a jsonl/csv metric table (``_step`` is the step, ``_runtime`` the wall
time; labels "wandb-history.jsonl line N"), its rows labelled with the config's run id and family.
``config.yaml`` is W&B's format (``key: {value: ..., desc: ...}``, plus ``wandb_version`` and
``_wandb`` which are skipped) or plain ``key: value``. run_id = config run id, else the directory's
path relative to the log root (its parent's for W&B's ``files/`` directory; see
:func:`.common.path_run_id`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import yaml

from .common import ReadReport, RejectionLog, SourceUnit, file_rejection, path_run_id
from .run_meta import run_report, run_row
from .writing import iter_runs, safe_name
from .csv_log import stage_csv
from .jsonl_log import stage_jsonl, write_jsonl
from .safe_yaml import load_yaml

READER = "wandb"
HISTORY_NAMES = ("wandb-history.jsonl", "history.csv")
CONFIG_NAME = "config.yaml"
HISTORY_KEYS = {
    "step": "_step",
    "wall_time": "_runtime",
    "train_loss": "train_loss",
    "eval_loss": "eval_loss",
    "tokens": "tokens",
    "lr": "lr",
}  # writer: field -> key
_INTERNAL_KEYS = ("wandb_version", "_wandb")


def _unwrap(value: Any) -> Any:
    """W&B stores config entries as {value: ..., desc: ...}."""
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}:
        return value["value"]
    return value


def _config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"expected a mapping of config keys, got {type(data).__name__}")
    return {str(k): _unwrap(v) for k, v in data.items() if k not in _INTERNAL_KEYS}


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one W&B run directory."""
    by_name = {path.name: path for path in unit.members}
    history = next(by_name[name] for name in HISTORY_NAMES if name in by_name)
    try:
        meta = _config(by_name.get(CONFIG_NAME))
    except ValueError as exc:
        return file_rejection(READER, str(exc), CONFIG_NAME)
    folder = unit.path.parent if unit.path.name == "files" else unit.path
    run, rejection = run_row(meta, CONFIG_NAME, untyped=False, fallback_run_id=path_run_id(unit, folder))
    stage = stage_jsonl if history.suffix == ".jsonl" else stage_csv
    log = RejectionLog()
    try:
        rows, _ = stage(
            history,
            con,
            log,
            label=f"{history.name} line",
            run_id=run["run_id"],
            family=run.get("family"),
        )
    except ValueError as exc:
        return file_rejection(READER, str(exc), history.name)
    return run_report(READER, con, log, run, rejection, rows)


def write(
    out_dir: Path, runs: list[dict[str, Any]], metrics: dict[str, list[dict[str, Any]]]
) -> list[Path]:
    """``<run>/wandb-history.jsonl`` (keys of HISTORY_KEYS, nulls omitted as W&B does) and
    ``<run>/config.yaml`` in W&B's ``{value: ...}`` format (run metadata, nulls omitted)."""
    paths: list[Path] = []
    for run_id, meta, rows in iter_runs(runs, metrics):
        run_dir = out_dir / safe_name(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "wandb_version": 1,
            **{k: {"desc": None, "value": v} for k, v in meta.items() if v is not None},
        }
        config_path = run_dir / CONFIG_NAME
        config_path.write_text(
            yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        history = write_jsonl(
            run_dir / HISTORY_NAMES[0],
            (
                {key: row[name] for name, key in HISTORY_KEYS.items() if row.get(name) is not None}
                for row in rows
            ),
        )
        paths += [history, config_path]
    return paths
