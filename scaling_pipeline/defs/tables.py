"""Warehouse tables as Dagster assets: key, group, column schema and row count, all from
:mod:`scaling_pipeline.lib.tables` (the one place a table's columns are written)."""

from __future__ import annotations

import dagster as dg
import duckdb

from scaling_pipeline.lib.tables import TABLES, Table, row_count


def asset_key(table: Table) -> dg.AssetKey:
    """``schema/name``: asset keys are prefixed by their DuckDB schema."""
    return dg.AssetKey(table.name.split("."))


def column_schema(table: Table) -> dg.TableSchema:
    """The table's columns (DuckDB types, descriptions) and primary key, as Dagster shows them."""
    key = set(table.key)
    columns = [dg.TableColumn(c.name, c.type, description=c.description,
                              constraints=dg.TableColumnConstraints(nullable=False, unique=table.key == (c.name,))
                              if c.name in key else None)
               for c in table.columns]
    constraints = dg.TableConstraints(other=[f"primary key ({', '.join(table.key)})"]) if len(key) > 1 else None
    return dg.TableSchema(columns=columns, constraints=constraints)


def table_spec(table: Table, *, deps: list[dg.AssetKey] = (), description: str | None = None) -> dg.AssetSpec:
    """The asset of ``table``: group named after its schema, column schema as definition metadata."""
    return dg.AssetSpec(asset_key(table), deps=list(deps), group_name=table.schema, kinds={"duckdb"},
                        description=description or table.description,
                        metadata={"dagster/column_schema": column_schema(table), "dagster/table_name": table.name})


def table_metadata(con: duckdb.DuckDBPyConnection, table: Table) -> dict[str, object]:
    """Materialization metadata every table asset publishes: its row count and column schema."""
    return {"dagster/row_count": dg.MetadataValue.int(row_count(con, table)),
            "dagster/column_schema": column_schema(table)}


def table_result(con: duckdb.DuckDBPyConnection, table: Table, **metadata: object) -> dg.MaterializeResult:
    """The MaterializeResult of ``table``'s asset: :func:`table_metadata` plus ``metadata``."""
    return dg.MaterializeResult(asset_key=asset_key(table), metadata={**table_metadata(con, table), **metadata})


def table_key(name: str) -> dg.AssetKey:
    """The asset key of the warehouse table ``schema.name``."""
    return asset_key(TABLES[name])
