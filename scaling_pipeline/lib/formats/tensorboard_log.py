"""TensorBoard run directories: ``events.out.tfevents.*`` files, one run per directory.

Events are streamed with the ``tensorboard`` package's own record reader
(``RawEventFileLoader``) and decoded with its ``Event`` protobuf; event files in sub-directories
belong to the same run (``add_hparams`` of tensorboardX/PyTorch writes one there). Scalars (legacy
``simple_value`` or rank-0 tensors of the scalars plugin) whose tag maps via METRIC_ALIASES
(``train/loss``, ``eval/loss``, ``train/tokens``, ``train/lr``, ``wall_time``, ...) become metric
rows keyed by event step; ``record`` is the 1-based event index over the run's event files in
path order. Without a wall-time tag, wall_time is event time minus the run's first scalar event.

Run metadata: ``config.yaml``/``hparams.yaml`` beside the events, overridden by hparams-plugin
session-start info. run_id = the metadata's run id, else the directory's path relative to the log
root (``large/train``; see :func:`.common.path_run_id`).

Precision: ``SummaryWriter.add_scalar`` stores float32 (``simple_value``), so the writer is exact
for values representable in float32 (step counts, token counts below 2**24 times a power of two,
NaN/inf) and rounds other values to the nearest float32 (relative error <= 6e-8). Double-precision
tensor scalars written by other tools are read back exactly. The run metadata goes through
hparams (float64 numbers, strings, bools) and is exact; null fields are omitted.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import duckdb
from google.protobuf.message import DecodeError

from scaling_pipeline.lib.lazy import LazyModule

from .common import (
    ReadReport,
    RejectionLog,
    SourceUnit,
    event_mapping,
    file_rejection,
    path_run_id,
    row_rejection,
    shorten,
)
from .run_meta import run_report, run_row
from .writing import iter_runs, safe_name
from .metric_sql import EVENT_COLUMNS, TempTable, stage_metric_events
from .safe_yaml import load_yaml

# tensorboard takes ~0.5 s to import: only when an event file is read
event_file_loader = LazyModule("tensorboard.backend.event_processing.event_file_loader")
event_pb2 = LazyModule("tensorboard.compat.proto.event_pb2")
pywrap_tensorflow = LazyModule("tensorboard.compat.tensorflow_stub.pywrap_tensorflow")
plugin_data_pb2 = LazyModule("tensorboard.plugins.hparams.plugin_data_pb2")
tensor_util = LazyModule("tensorboard.util.tensor_util")

READER = "tensorboard"
EVENTS_PREFIX = "events.out.tfevents."
CONFIG_NAMES = ("config.yaml", "hparams.yaml")
RECORD_OVERHEAD = 16  # TFRecord framing: length (8) + length crc (4) + data crc (4) bytes
TAGS = {
    "train_loss": "train/loss",
    "eval_loss": "eval/loss",
    "tokens": "train/tokens",
    "lr": "train/lr",
    "wall_time": "wall_time",
}
_EVENTS = "_fmt_tb_events"


def _hparams(value: Any) -> dict[str, Any]:
    """Run metadata from an hparams-plugin summary value (empty unless session-start info)."""
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    if not data.HasField("session_start_info"):
        return {}
    out: dict[str, Any] = {}
    for key, item in data.session_start_info.hparams.items():
        kind = item.WhichOneof("kind")
        if kind in ("number_value", "string_value", "bool_value"):
            out[key] = getattr(item, kind)
    return out


def _damage(path: Path, offset: int, size: int) -> str:
    """What is wrong with the TFRecord at byte ``offset`` of ``path`` (the reader stopped there)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        header = handle.read(12)  # data length (8 bytes) and its masked CRC-32C (4)
    if len(header) < 12:
        return "expected a complete TFRecord, got a truncated record (the file ends inside its header)"
    length, crc = struct.unpack("<QI", header)
    if pywrap_tensorflow.masked_crc32c(header[:8]) != crc:
        return "expected a TFRecord, got a corrupt record header (its length fails its checksum)"
    if offset + length + RECORD_OVERHEAD > size:
        return f"expected a complete TFRecord of {length} bytes, got a truncated record"
    return "expected a TFRecord, got a corrupt record (its data fails its checksum)"


class _EventScan:
    """Streams a run's event files into the events table; collects hparams and problems."""

    def __init__(self, table: TempTable, log: RejectionLog) -> None:
        self.table, self.log = table, log
        self.record = 0
        self.hparams: dict[str, Any] = {}
        # tag -> plugin named by its first value (later values of a tag may omit the metadata)
        self.plugins: dict[str, str] = {}
        self.damaged: tuple[str, str] | None = None  # (where, what) of the first file the reader stopped inside

    def scan(self, path: Path, name: str) -> None:
        consumed = records = 0
        for raw in event_file_loader.RawEventFileLoader(str(path)).Load():
            consumed += len(raw) + RECORD_OVERHEAD
            records += 1
            self.record += 1
            try:
                self._event(event_pb2.Event.FromString(raw))
            except (DecodeError, ValueError, TypeError) as exc:
                self.log.add(
                    row_rejection(
                        f"{name} record {self.record}",
                        None,
                        f"expected a readable event, got: {shorten(str(exc))}",
                    )
                )
        size = path.stat().st_size
        if consumed < size:
            where, what = f"{name} byte {consumed}", f"{_damage(path, consumed, size)} at record {records + 1} of the file"
            self.damaged = self.damaged or (where, what)
            self.log.add(row_rejection(where, None, f"{what}; its last {size - consumed} bytes were skipped"))

    def _event(self, event: event_pb2.Event) -> None:
        for value in event.summary.value:
            plugin = self.plugins.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                self.table.add(
                    (self.record, value.tag, event.step, value.simple_value, event.wall_time)
                )
            elif kind == "tensor" and plugin == "scalars":
                number = tensor_util.make_ndarray(value.tensor).item()
                self.table.add((self.record, value.tag, event.step, float(number), event.wall_time))
            elif plugin == "hparams":
                self.hparams.update(_hparams(value))


def _config(unit: SourceUnit) -> tuple[dict[str, Any], list[str]]:
    """Metadata from config.yaml / hparams.yaml beside the events, and the names of the files
    read (ValueError if one is not YAML)."""
    meta: dict[str, Any] = {}
    names = []
    for path in unit.members:
        if path.name in CONFIG_NAMES and path.parent == unit.path:
            try:
                config = load_yaml(path)
            except ValueError as exc:
                raise ValueError(f"{path.name}: {exc}") from exc
            meta.update(config if isinstance(config, dict) else {})
            names.append(path.name)
    return meta, names


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one TensorBoard run directory."""
    try:
        meta, config_names = _config(unit)
    except ValueError as exc:
        return file_rejection(READER, str(exc))
    log = RejectionLog()
    with TempTable(con, _EVENTS, EVENT_COLUMNS) as table:
        scan = _EventScan(table, log)
        for path in unit.members:
            if path.name.startswith(EVENTS_PREFIX):
                scan.scan(path, path.relative_to(unit.path).as_posix())
        table.flush()
        tags = [
            tag
            for (tag,) in con.execute(f"SELECT DISTINCT tag FROM {_EVENTS} ORDER BY tag").fetchall()
        ]
        mapping, problem = event_mapping(tags, TAGS, "scalar tag")
        if scan.damaged and (problem or not scan.record):  # the damage is why: say so, not what is missing
            where, what = scan.damaged
            rest = "the rest of the run has no loss scalar tag" if scan.record else "no record is readable"
            return file_rejection(READER, f"corrupt event file: {what}; {rest}", where)
        if not scan.record:
            return file_rejection(READER, "expected TensorBoard event records, got none readable")
        if problem:
            return file_rejection(READER, problem)
        where = "hparams" if scan.hparams else " + ".join(config_names) or "hparams"
        run, rejection = run_row(
            {**meta, **scan.hparams}, where, untyped=False, fallback_run_id=path_run_id(unit)
        )
        rows = stage_metric_events(
            con, _EVENTS, mapping, run_id=run["run_id"], family=run.get("family")
        )
    return run_report(READER, con, log, run, rejection, rows)


def write(
    out_dir: Path, runs: list[dict[str, Any]], metrics: dict[str, list[dict[str, Any]]]
) -> list[Path]:
    """``<run>/events.out.tfevents.*`` (scalars) + ``<run>/hparams/events.out.tfevents.*``.

    Written with tensorboardX's SummaryWriter: ``add_scalar`` per logged value (tags in TAGS,
    event step = step) and ``add_hparams`` for the run metadata (nulls omitted)."""
    from tensorboardX import SummaryWriter

    paths: list[Path] = []
    for run_id, meta, rows in iter_runs(runs, metrics):
        run_dir = out_dir / safe_name(run_id)
        with SummaryWriter(logdir=str(run_dir)) as writer:
            for row in rows:
                for name, tag in TAGS.items():
                    if row.get(name) is not None:
                        writer.add_scalar(tag, row[name], global_step=row["step"])
            hparams = {k: _hparam_value(v) for k, v in meta.items() if v is not None}
            writer.add_hparams(hparams, {}, name="hparams")
        paths += sorted(p for p in run_dir.rglob(f"{EVENTS_PREFIX}*") if p.is_file())
    return paths


def _hparam_value(value: Any) -> Any:
    """hparams hold numbers, strings and bools; anything else is stored as its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value if isinstance(value, (bool, int, float, str)) else str(value)
