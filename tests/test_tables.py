"""The table registry: DDL, layout changes (derived tables rebuilt, raw tables never dropped), typed intervals."""

from __future__ import annotations

import math
from dataclasses import fields

import duckdb
import pytest

from scaling_pipeline.lib.hparams import LrOptimum, LrScaling
from scaling_pipeline.lib.tables import (CLEAN_LR_OPTIMA, CLEAN_LR_SCALING, CLEAN_POINTS, FITS_BOOTSTRAP,
                                         FITS_CHINCHILLA, RAW_RUNS, TABLES, create, interval_columns, intervals,
                                         replace, stored_columns, transaction)


def _types(con, name: str) -> list[tuple[str, str]]:
    return [r[:2] for r in con.execute(f"DESCRIBE {name}").fetchall()]


def test_every_table_is_created_with_its_registered_layout_and_key():
    con = duckdb.connect()
    for table in TABLES.values():
        (replace if table.kind == "rebuilt" else create)(con, table)
        assert _types(con, table.name) == [(c.name, c.type) for c in table.columns], table.name
    con.execute("INSERT INTO fits.bootstrap VALUES ('f', 0, 1, 2, 3, 0.3, 0.3)")
    with pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO fits.bootstrap VALUES ('f', 0, 1, 2, 3, 0.3, 0.3)")
    with pytest.raises(ValueError, match="use replace"):
        create(con, CLEAN_POINTS)
    with pytest.raises(ValueError, match="use create"):
        replace(con, FITS_CHINCHILLA)


def test_kept_tables_of_an_older_layout_are_rebuilt_together_raw_tables_only_gain_columns():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA fits")
    con.execute("CREATE TABLE fits.chinchilla (family VARCHAR, ci VARCHAR)")  # an older layout
    con.execute("CREATE TABLE fits.bootstrap AS SELECT * FROM (VALUES ('f', 0, 1.0, 2.0, 3.0, 0.3, 0.3)) "
                "t(family, sample, E, A, B, alpha, beta)")
    create(con, FITS_CHINCHILLA, FITS_BOOTSTRAP)
    assert stored_columns(con, FITS_CHINCHILLA) == FITS_CHINCHILLA.names
    assert con.execute("SELECT count(*) FROM fits.bootstrap").fetchone()[0] == 0  # dropped with its fits
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.runs (run_id VARCHAR, source_path VARCHAR)")
    con.execute("INSERT INTO raw.runs VALUES ('r1', 'a.csv')")
    create(con, RAW_RUNS)
    assert set(stored_columns(con, RAW_RUNS)) == set(RAW_RUNS.names)
    assert con.execute("SELECT run_id, source_path, n_params FROM raw.runs").fetchall() == [("r1", "a.csv", None)]


def test_transaction_rolls_back_on_error():
    con = duckdb.connect()
    replace(con, CLEAN_POINTS)
    with pytest.raises(RuntimeError), transaction(con):
        con.execute("INSERT INTO clean.points (run_id, family) VALUES ('r', 'f')")
        raise RuntimeError("stop")
    assert con.execute("SELECT count(*) FROM clean.points").fetchone()[0] == 0


def test_intervals_are_typed_columns_and_read_back():
    ci = {"E": (1.5, 1.9), "alpha": (0.3, 0.4), "a": (0.45, 0.55)}
    cols = interval_columns(ci)
    assert cols["E_lo"] == 1.5 and cols["a_exponent_hi"] == 0.55 and cols["A_lo"] is None
    assert set(cols) <= set(FITS_CHINCHILLA.names)
    assert intervals(cols) == ci
    odd = intervals({**cols, "E_lo": math.nan, "E_hi": math.nan, "beta_hi": 0.2})
    assert "E" not in odd and odd["beta"][1] == 0.2 and math.isnan(odd["beta"][0])


def test_lr_tables_hold_every_field_of_their_results():
    assert CLEAN_LR_OPTIMA.names[3:] == [f.name for f in fields(LrOptimum)]
    assert CLEAN_LR_SCALING.names[1:] == [f.name for f in fields(LrScaling)]
