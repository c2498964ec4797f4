"""Resources: where the warehouse, the log root and the reports live.

Defaults are relative to the working directory (the project root under ``make``) and can be
overridden with environment variables or the CLI (``scaling-pipeline run --db/--logs/--reports``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from scaling_pipeline.lib.cleaning import CleanConfig, FamilyOptions
from scaling_pipeline.lib.connection import LOCK_WAIT_SECONDS, WarehouseLocked, connect_waiting

DEFAULT_LOGS = "data"
DEFAULT_DB = "data/warehouse.duckdb"
DEFAULT_REPORTS = "reports"
# DuckDB's own default is 80% of RAM, which its buffer cache fills on a large ingest (2.9 GiB RSS at 100M
# rows, benchmarks/README.md); 1GB keeps a 100M-row ingest under 2 GiB and spills larger work to disk
DEFAULT_MEMORY_LIMIT = "1GB"


class FamilyCleanOptions(dg.Config):
    """A family's own cleaning options (see :class:`~scaling_pipeline.lib.cleaning.FamilyOptions`);
    unset ones are the pipeline's."""

    hparam_selection: str | None = None
    param_convention: str | None = None
    completion_tolerance: float | None = None


class PipelineSettings(dg.ConfigurableResource):
    """Where logs are read from and reports written to, and the cleaning thresholds and per-family
    options (defaults: every family's, ``family_options``: family name -> its own)."""

    logs_dir: str = DEFAULT_LOGS
    reports_dir: str = DEFAULT_REPORTS
    min_tokens: float = 0.0  # runs trained on fewer tokens give no point
    min_steps: int = 0  # runs with fewer optimizer steps give no point
    divergence_nats: float = 1.0
    dominated_tolerance: float = 0.10
    hparam_selection: str = FamilyOptions.hparam_selection  # 'envelope' (best run per (N, D)) or 'all'
    param_convention: str = FamilyOptions.param_convention  # N: 'non_embedding' or 'total' parameters
    completion_tolerance: float = FamilyOptions.completion_tolerance  # fraction of the plan a run may stop short
    family_options: dict[str, FamilyCleanOptions] = {}

    @property
    def logs_path(self) -> Path:
        return Path(self.logs_dir)

    @property
    def reports_path(self) -> Path:
        return Path(self.reports_dir)

    def clean_config(self) -> CleanConfig:
        """The cleaning knobs; a bad option value raises ValueError naming it (and the family)."""
        default = FamilyOptions(hparam_selection=self.hparam_selection, param_convention=self.param_convention,
                                completion_tolerance=self.completion_tolerance)
        families = {}
        for family, given in self.family_options.items():
            try:
                families[family] = replace(default, **{k: v for k, v in given.model_dump().items() if v is not None})
            except ValueError as exc:
                raise ValueError(f"family_options[{family!r}]: {exc}") from None
        return CleanConfig(divergence_nats=self.divergence_nats, dominated_tolerance=self.dominated_tolerance,
                           min_tokens=self.min_tokens, min_steps=self.min_steps, family=default, families=families)


def build_resources(logs: str | os.PathLike | None = None, db: str | os.PathLike | None = None,
                    reports: str | os.PathLike | None = None, **settings) -> dict[str, object]:
    """Resources for a run; unset arguments come from SCALING_LOGS / SCALING_DB / SCALING_REPORTS,
    then the defaults (data/, data/warehouse.duckdb, reports/). SCALING_DUCKDB_MEMORY_LIMIT caps DuckDB's
    memory (default DEFAULT_MEMORY_LIMIT; empty: DuckDB's default, 80% of RAM)."""
    db_path = Path(db or os.environ.get("SCALING_DB", DEFAULT_DB))
    memory = os.environ.get("SCALING_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT)
    return {
        "duckdb": DuckDBResource(database=str(db_path), connection_config={"memory_limit": memory} if memory else {}),
        "settings": PipelineSettings(
            logs_dir=str(logs or os.environ.get("SCALING_LOGS", DEFAULT_LOGS)),
            reports_dir=str(reports or os.environ.get("SCALING_REPORTS", DEFAULT_REPORTS)),
            **{k: v for k, v in settings.items() if v is not None},
        ),
    }


@contextmanager
def warehouse(resource: DuckDBResource, *, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse file (its folder created on first use). A lock held by another
    process is waited for up to ``wait_seconds``, then reported as a clear failure naming the file."""
    db = resource.database
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    try:
        con = connect_waiting(db, resource.connection_config, wait_seconds=wait_seconds)
    except WarehouseLocked as exc:
        raise dg.Failure(str(exc)) from None
    except duckdb.IOException as exc:
        raise dg.Failure(f"cannot open the warehouse {db!r}: {exc}") from None
    try:
        yield con
    finally:
        con.close()
