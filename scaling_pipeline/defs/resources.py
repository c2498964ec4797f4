"""Resources: where the warehouse, the log root and the reports live, and the pipeline's settings
(a Dagster shell over :mod:`scaling_pipeline.lib.settings`: its fields, defaults and docs come from there).

Defaults are relative to the working directory (the project root under ``make``) and can be
overridden with environment variables or the CLI (``scaling-pipeline run --db/--logs/--reports``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field, create_model

from scaling_pipeline.lib.connection import LOCK_WAIT_SECONDS, WarehouseLocked, connect_waiting
from scaling_pipeline.lib.settings import (CleanConfig, FamilyOptions, ReportSettings, Settings, SettingsError,
                                           build_settings, doc)
from scaling_pipeline.lib.settings_file import SETTINGS_FILE, find_settings_file, read_settings_file

DEFAULT_LOGS = "data"
DEFAULT_DB = "data/warehouse.duckdb"
DEFAULT_REPORTS = "reports"
# DuckDB's own default is 80% of RAM, which its buffer cache fills on a large ingest (2.9 GiB RSS at 100M
# rows, benchmarks/README.md); 1GB keeps a 100M-row ingest under 2 GiB and spills larger work to disk
DEFAULT_MEMORY_LIMIT = "1GB"


def config_fields(*classes: type) -> dict[str, tuple]:
    """Pydantic fields of a Dagster config shell for the settings of ``classes`` (lib dataclasses): each
    optional (None: not set here, the settings file's value or the default applies), described by the lib's
    doc and default."""
    return {f.name: (f.metadata["kind"] | None, Field(None, description=doc(cls, f.name)))
            for cls in classes for f in fields(cls) if "kind" in f.metadata}


FamilyCleanOptions = create_model(
    "FamilyCleanOptions", __base__=dg.Config, __doc__="A family's own cleaning options; unset ones are the "
    "pipeline's.", **config_fields(FamilyOptions))


class _PipelineSettings(dg.ConfigurableResource):
    """Where logs are read from and reports written to, the settings file (unset: searched, see
    :func:`~scaling_pipeline.lib.settings_file.find_settings_file`), and the cleaning and report settings
    set here (they win over the file's; ``families``: family name -> its own options)."""

    logs_dir: str = DEFAULT_LOGS
    reports_dir: str = DEFAULT_REPORTS
    settings_file: str | None = Field(None, description="settings file (TOML); unset: $SCALING_SETTINGS, then "
                                      f"{SETTINGS_FILE} in the log root, then in the working directory")

    @property
    def logs_path(self) -> Path:
        return Path(self.logs_dir)

    @property
    def reports_path(self) -> Path:
        return Path(self.reports_dir)

    def settings_path(self) -> Path | None:
        """The settings file this resource reads (None: none found)."""
        return find_settings_file(self.settings_file, self.logs_path)

    def resolve(self, run_config: Mapping[str, Any] | None = None) -> Settings:
        """Every setting: ``run_config`` (e.g. the fit asset's) > this resource's fields > the settings file
        > the defaults. A bad value raises SettingsError naming it (and the file)."""
        path = self.settings_path()
        mine = self.model_dump(exclude={"logs_dir", "reports_dir", "settings_file"})
        return build_settings(read_settings_file(path) if path else {}, mine, run_config or {})


PipelineSettings = create_model(
    "PipelineSettings", __base__=_PipelineSettings, __doc__=_PipelineSettings.__doc__,
    **config_fields(CleanConfig, FamilyOptions, ReportSettings), families=(dict[str, FamilyCleanOptions], {}))


def resolved(settings: _PipelineSettings, run_config: Mapping[str, Any] | None = None) -> Settings:
    """``settings.resolve(run_config)`` in an asset: a bad settings file or value fails the step with its message."""
    try:
        return settings.resolve(run_config)
    except SettingsError as exc:
        raise dg.Failure(f"bad settings: {exc}") from None


def build_resources(logs: str | os.PathLike | None = None, db: str | os.PathLike | None = None,
                    reports: str | os.PathLike | None = None, **settings) -> dict[str, object]:
    """Resources for a run; unset arguments come from SCALING_LOGS / SCALING_DB / SCALING_REPORTS,
    then the defaults (data/, data/warehouse.duckdb, reports/). ``settings``: fields of PipelineSettings
    (``settings_file``, cleaning and report settings; None: unset). SCALING_DUCKDB_MEMORY_LIMIT caps DuckDB's
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
