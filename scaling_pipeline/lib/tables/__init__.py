"""Every warehouse table in one place: name, columns (name, DuckDB type, description), primary key and
DDL (the tables in :mod:`.catalog`); plus the one transaction helper (:mod:`.core`; connections that wait for a
locked file: :mod:`scaling_pipeline.lib.connection`).

Kinds of table (``Table.kind``):

* ``RAW``: the ingested source data (``raw.*``). Created if absent and never dropped: an older layout
  only gains the columns it lacks.
* ``KEPT``: derived tables updated in place (``fits.*``, ``forecasts.*``: unchanged families are not refit). Created if
  absent; when a stored layout differs from the registry's, the tables created together are dropped and
  rebuilt (derived data, recomputed on the next run).
* ``REBUILT``: derived tables written from scratch on every run (``clean.*``, ``plans.*``).

A :class:`View` joins tables that different stages write (each table has one writer): ``pipeline.exclusions``
(clean's, the fit stage's curve-law sources without points and the forecast stage's exclusions), created by the
forecast stage with :func:`create_view`.

Writers call :func:`create` (``RAW``/``KEPT``) or :func:`replace` (``REBUILT``) and never write DDL
themselves; the Dagster layer builds each asset's column schema from the same :class:`Table`.

Adding a table (about five lines): append ``Table("schema.name", "what a row is", [Column(...), ...],
key=(...), kind=KEPT)`` to ``_TABLES`` in :mod:`.catalog`, bind it to a constant (``FITS_X = TABLES["fits.x"]``), and
call ``create(con, FITS_X)`` / ``replace(con, FITS_X)`` in its writer; write rows with
``insert_frame(con, FITS_X, frame)``.

Units: tokens in tokens, losses in nats per token, FLOPs in floating-point operations, times in seconds.
"""

from .catalog import (CLEAN_EXCLUSIONS, CLEAN_INPUTS, CLEAN_LR_OPTIMA, CLEAN_LR_SCALING, CLEAN_LR_SWEEPS,
                      CLEAN_POINTS, CLEAN_RUNS, CLEAN_STEPS, FITS_BOOTSTRAP, FITS_CHINCHILLA, FITS_COMPARISON,
                      FITS_COMPARISON_PARAMS, FITS_CURVE_POINTS, FITS_CURVE_SOURCES, FORECASTS, FORECASTS_INPUTS,
                      FORECASTS_IN_FLIGHT, FORECASTS_SOURCES, INTERVALS, LAW_PARAMS, PIPELINE_EXCLUSIONS,
                      PLANS_ALLOCATIONS, RAW_FILES, RAW_METRICS, RAW_QUARANTINE, RAW_RUNS, TABLES, interval_columns,
                      intervals)
from .core import (KEPT, RAW, REBUILT, Column, Table, View, create, create_view, ddl, insert_frame, replace,
                   row_count, stored_columns, transaction)

__all__ = ["CLEAN_EXCLUSIONS", "CLEAN_INPUTS", "CLEAN_LR_OPTIMA", "CLEAN_LR_SCALING", "CLEAN_LR_SWEEPS",
           "CLEAN_POINTS", "CLEAN_RUNS", "CLEAN_STEPS", "FITS_BOOTSTRAP", "FITS_CHINCHILLA", "FITS_COMPARISON",
           "FITS_COMPARISON_PARAMS", "FITS_CURVE_POINTS", "FITS_CURVE_SOURCES", "FORECASTS", "FORECASTS_INPUTS",
           "FORECASTS_IN_FLIGHT", "FORECASTS_SOURCES", "INTERVALS", "LAW_PARAMS", "PIPELINE_EXCLUSIONS",
           "PLANS_ALLOCATIONS", "RAW_FILES", "RAW_METRICS", "RAW_QUARANTINE", "RAW_RUNS", "TABLES",
           "interval_columns", "intervals", "KEPT", "RAW", "REBUILT", "Column", "Table", "View", "create",
           "create_view", "ddl", "insert_frame", "replace", "row_count", "stored_columns", "transaction"]
