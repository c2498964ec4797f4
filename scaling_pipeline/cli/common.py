"""Helpers shared by the subcommands: the user-error type, argument types, settings and warehouse access."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scaling_pipeline.lib.settings import MAX_BOOTSTRAP, SettingsError


class UserError(Exception):
    """A problem the user can fix (bad path, locked database, bad input): printed without a trace."""



def settings_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--settings", metavar="FILE.toml",
                   help="settings file (default: $SCALING_SETTINGS, else scaling-pipeline.toml in the log root, "
                        "else in the working directory); flags win over it")



def resolve_settings(resource, run_config: dict | None = None):
    """The settings a run would use (flags > settings file > defaults); a bad file or value as UserError."""
    try:
        return resource.resolve(run_config)
    except SettingsError as exc:
        raise UserError(str(exc)) from None



def file_settings(path: str | None, flags: dict):
    """The settings of a command without a pipeline run: ``flags`` > the settings file > the defaults."""
    from scaling_pipeline.defs.resources import build_resources

    return resolve_settings(build_resources(settings_file=path)["settings"], flags)



def bootstrap_count(text: str) -> int:
    """argparse type of every --bootstrap: a whole number in [0, MAX_BOOTSTRAP]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_BOOTSTRAP:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_BOOTSTRAP}, got {value}")
    return value



def column_list(text: str) -> list[str]:
    """argparse type of --vars: comma-separated column names."""
    names = [c.strip() for c in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names



def open_warehouse(db: str, *, read_only: bool):
    """A DuckDB connection to ``db``; a lock held by another process (after the lock wait) and other open
    errors as UserError."""
    import duckdb

    from scaling_pipeline.lib.connection import WarehouseLocked, connect_waiting

    try:
        return connect_waiting(db, read_only=read_only)
    except WarehouseLocked as exc:
        raise UserError(str(exc)) from None
    except duckdb.IOException as exc:
        raise UserError(f"cannot open the warehouse {db!r}: {exc}") from None



def existing_warehouse(db: str | None) -> str:
    """Path of the warehouse ``db`` (else $SCALING_DB, else the default), which must exist."""
    import os

    from scaling_pipeline.defs.resources import DEFAULT_DB

    path = db or os.environ.get("SCALING_DB", DEFAULT_DB)
    if not Path(path).is_file():
        raise UserError(f"warehouse {path!r} not found (run `scaling-pipeline run` first, or pass --db)")
    return path



@contextmanager
def family_file_errors() -> Iterator[None]:
    """Family-Parquet problems as UserErrors (exit 2 with the message)."""
    import duckdb

    from scaling_pipeline.lib.family_parquet import FamilyFileError

    try:
        yield
    except FamilyFileError as exc:
        raise UserError(str(exc)) from None
    except duckdb.CatalogException as exc:
        raise UserError(f"the warehouse has no clean.points (run `scaling-pipeline run` first): {exc}") from None
