"""W&B chart exports: the CSV the W&B web UI downloads from a line plot (panel menu, Export, CSV).

Layout (every name and value quoted, as W&B writes it)::

    "Step","gpt-125M lr=3e-4 - train/loss","gpt-125M lr=3e-4 - train/loss__MIN","gpt-125M lr=3e-4 - train/loss__MAX",...
    "1000","3.21","3.21","3.21",...

The first column is the chart's x-axis: ``Step`` (any step alias), or tokens (a tokens alias such as
``train/tokens``: the step is then derived from the tokens, see :mod:`.metric_sql`). Every other
column is ``<run name> - <metric>`` (split at the last `` - ``, so run names may hold dashes and
spaces); W&B's ``__MIN``/``__MAX`` companions (the range of the points a chart bucket merged) are
dropped. Each run becomes its own run (run id = the run name as W&B shows it; a manifest maps it
to its family and size), each metric maps through METRIC_ALIASES (``train/loss``, ``eval/loss``,
``loss``, ...; others are ignored). A row gives a metric row for each run with a value in it;
empty cells (runs not logged at that step) are skipped. Records are read and typed as on the csv
reader's exact path (``line N`` locations; a bad cell names its column), except that a final line
without newline is complete when it ends in a closing quote and has every field: with every field
quoted, a record cut short cannot.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import duckdb

from scaling_pipeline.lib.schema import METRIC_ALIASES

from .common import (
    ReadReport,
    RejectionLog,
    SourceUnit,
    alias_list,
    excerpt,
    file_rejection,
    resolve_aliases,
)
from .csv_log import blank_to_null, read_header, split_records
from .metric_sql import Cells, stage_metric_cells
from .text import TextLine, csv_records, iter_lines

READER = "wandb_export"
SEPARATOR = " - "
COMPANIONS = ("__MIN", "__MAX")
X_FIELDS = ("step", "tokens")  # what the x-axis column may be
SERIES_FIELDS = ("tokens", "train_loss", "eval_loss", "lr", "wall_time")  # what a series may be


def _split(name: str) -> tuple[str, str] | None:
    """(run name, metric) of a series column, None for W&B's MIN/MAX companions; ValueError when
    ``name`` is not ``<run> - <metric>``."""
    run, sep, metric = name.rpartition(SEPARATOR)
    if not (sep and run.strip() and metric.strip()):
        raise ValueError(name)
    return None if metric.endswith(COMPANIONS) else (run, metric)


def is_export(names: Sequence[str]) -> bool:
    """Whether a CSV header is a W&B chart export's: an x-axis column, then only ``<run> - <metric>``
    columns (with or without their MIN/MAX companions)."""
    if len(names) < 2 or SEPARATOR in names[0]:
        return False
    try:
        series = [_split(name) for name in names[1:]]
    except ValueError:
        return False
    return any(series)


def _columns(names: list[str]) -> tuple[str, dict[str, dict[str, list[int]]]]:
    """(canonical field of the x-axis column, {run: {canonical field: 1-based columns, best alias
    first}}); ValueError saying what is missing."""
    x = resolve_aliases(names[:1], METRIC_ALIASES)
    x_field = next((name for name in X_FIELDS if name in x), None)
    if x_field is None:
        raise ValueError(f"expected the x-axis column first, a step or tokens column (one of "
                         f"{alias_list(METRIC_ALIASES, *X_FIELDS)}), got {excerpt(names[0])!r}")
    by_run: dict[str, dict[str, int]] = {}
    for index, name in enumerate(names[1:], 2):
        if (series := _split(name)) is not None:
            by_run.setdefault(series[0], {})[series[1]] = index
    runs = {}
    for run, metrics in by_run.items():
        resolved = resolve_aliases(list(metrics), METRIC_ALIASES)
        runs[run] = {field: [metrics[m] for m in found] for field, found in resolved.items()
                     if field in SERIES_FIELDS and field != x_field}
    if not any("train_loss" in fields or "eval_loss" in fields for fields in runs.values()):
        found = sorted({metric for metrics in by_run.values() for metric in metrics})
        raise ValueError(f"expected a loss series, a '<run> - <metric>' column with a loss metric (one of "
                         f"{alias_list(METRIC_ALIASES, 'train_loss', 'eval_loss')}), found metrics: "
                         f"{excerpt(', '.join(found))}")
    return x_field, runs


def _quoted_ends(lines: Iterator[TextLine]) -> Iterator[TextLine]:
    """``lines`` with a final line that lacks its newline but ends in a closing quote counted as
    complete (a cut-off quoted record either misses its closing quote or some fields)."""
    for line in lines:
        yield line if line.terminated or not (line.text or "").endswith('"') else line._replace(terminated=True)


def read(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """Stage one W&B chart export: a run per ``<run name>`` column group."""
    log, rows = RejectionLog(), 0
    lines = iter_lines(unit.path)
    try:
        names, _ = read_header(lines, "line")
        x_field, runs = _columns(names)
        with split_records(csv_records(_quoted_ends(lines), width=len(names)), con, log, width=len(names),
                           label="line") as records:
            for run, fields in runs.items():
                if not fields:
                    continue
                cells = [f"{blank_to_null('f[1]')} AS {x_field}"] + [
                    f"coalesce({', '.join(blank_to_null(f'f[{i}]') for i in columns)}) AS {field}"
                    for field, columns in fields.items()
                ]
                logged = " OR ".join(f"trim(f[{i}]) <> ''" for columns in fields.values() for i in columns)
                sources = {x_field: names[0]} | {field: names[columns[0] - 1] for field, columns in fields.items()}
                sql = f"SELECT record, {', '.join(cells)} FROM {records} WHERE {logged}"
                rows += stage_metric_cells(con, Cells(sql, [], sources), log, label="line", run_id=run)
    except ValueError as exc:
        return file_rejection(READER, str(exc))
    finally:
        lines.close()
    return ReadReport(READER, n_metric_rows=rows, rejections=log.to_list())
