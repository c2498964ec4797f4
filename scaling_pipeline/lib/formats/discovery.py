"""Finding source units (files and run directories) under a root, at any depth.

Rules, checked per directory top-down (hidden files and directories, '.'-prefixed, are skipped):

1. A directory holding ``events.out.tfevents.*`` files is a tensorboard run (with the event files
   of its sub-directories and its ``config.yaml``/``hparams.yaml``).
2. A directory with ``meta.yaml`` and a ``metrics/`` directory is an MLflow run (members: meta.yaml
   and the files under metrics/, params/, tags/; artifacts are not read).
3. A directory with ``wandb-history.jsonl``, or ``history.csv`` next to ``config.yaml``, is a W&B
   run.
4. Otherwise each file is a unit: ``runs.csv``/``runs.yaml``/``runs.yml`` -> manifest;
   ``*.csv`` -> csv, or manifest when its header has run-id and n_params columns but no step
   column; ``*.jsonl`` -> jsonl; ``*.parquet`` -> parquet (``*.csv.gz``/``*.jsonl.gz``: the same,
   gzip-compressed); anything else is ignored.

A run directory is claimed whole: nothing below it is discovered again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from scaling_pipeline.lib.schema import METRIC_ALIASES, RUN_ALIASES

from .common import SourceUnit, resolve_aliases
from .tensorboard_log import CONFIG_NAMES, EVENTS_PREFIX
from .text import GZIP_SUFFIX, csv_records, iter_lines
from .wandb_log import CONFIG_NAME, HISTORY_NAMES

MANIFEST_NAMES = ("runs.csv", "runs.yaml", "runs.yml")
TABLE_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}  # csv: or manifest
GZIP_READERS = ("csv", "jsonl")  # read from *.gz too


def _walk(top: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk without hidden entries, sorted; clearing a yielded dirs list prunes the walk."""
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files = sorted(f for f in filenames if not f.startswith(".") and (here / f).is_file())
        yield here, dirnames, files


def _files_under(top: Path) -> list[Path]:
    return [here / f for here, _, files in _walk(top) for f in files]


def _run_directory(here: Path, dirs: list[str], files: list[str]) -> SourceUnit | None:
    if any(f.startswith(EVENTS_PREFIX) for f in files):
        members = [p for p in _files_under(here) if p.name.startswith(EVENTS_PREFIX)]
        members += [here / f for f in files if f in CONFIG_NAMES]
        return SourceUnit(here, "tensorboard", tuple(sorted(members)))
    if "meta.yaml" in files and "metrics" in dirs:
        members = [here / "meta.yaml"]
        members += [
            p for d in ("metrics", "params", "tags") if d in dirs for p in _files_under(here / d)
        ]
        return SourceUnit(here, "mlflow", tuple(sorted(members)))
    if HISTORY_NAMES[0] in files or (HISTORY_NAMES[1] in files and CONFIG_NAME in files):
        history = HISTORY_NAMES[0] if HISTORY_NAMES[0] in files else HISTORY_NAMES[1]
        members = [here / history] + ([here / CONFIG_NAME] if CONFIG_NAME in files else [])
        return SourceUnit(here, "wandb", tuple(sorted(members)))
    return None


def _csv_reader(path: Path) -> str:
    """'manifest' for a CSV whose header has run-id and n_params columns but no step column."""
    lines = iter_lines(path)
    try:
        header = next(csv_records(lines), None)
        names = (header.fields or []) if header else []
    except (ValueError, OSError):  # unreadable: the csv reader will report it
        names = []
    finally:
        lines.close()
    if "step" in resolve_aliases(names, METRIC_ALIASES):
        return "csv"
    run_columns = resolve_aliases(names, RUN_ALIASES)
    return "manifest" if "run_id" in run_columns and "n_params" in run_columns else "csv"


def _by_name(name: str) -> str | None:
    """The reader a file goes to by its name ('csv': csv or manifest, see :func:`_csv_reader`)."""
    lower = name.lower()
    if lower in MANIFEST_NAMES:
        return "manifest"
    compressed = lower.endswith(GZIP_SUFFIX)
    reader = TABLE_SUFFIXES.get(os.path.splitext(lower[: -len(GZIP_SUFFIX)] if compressed else lower)[1])
    return reader if reader and (not compressed or reader in GZIP_READERS) else None


def _file_unit(path: Path) -> SourceUnit | None:
    reader = _by_name(path.name)
    if reader is None:
        return None
    return SourceUnit(path, _csv_reader(path) if reader == "csv" else reader, (path,))


def discover(root: Path) -> list[SourceUnit]:
    """All source units under ``root``, sorted by path."""
    units: list[SourceUnit] = []
    for here, dirs, files in _walk(root):
        if unit := _run_directory(here, dirs, files):
            units.append(unit)
            dirs[:] = []
            continue
        units += [unit for f in files if (unit := _file_unit(here / f))]
    return sorted(units, key=lambda unit: unit.path)
