"""Shared fixtures: the default demo ladder materialized once per session through the real Definitions."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]


def reference_data() -> Path:
    """Published reference data (``$SCALING_REFERENCE_DATA``, default ``../shared/data``)."""
    return Path(os.environ.get("SCALING_REFERENCE_DATA", REPO.parent / "shared" / "data"))


def require_reference(sub: str) -> Path:
    path = reference_data() / sub
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (set SCALING_REFERENCE_DATA to the shared/data folder)")
    return path


@dataclass
class Materialized:
    logs: Path
    db: Path
    reports: Path
    result: dg.ExecuteInProcessResult

    def query(self, sql: str, params=None):
        with duckdb.connect(str(self.db), read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    def df(self, sql: str, params=None):
        with duckdb.connect(str(self.db), read_only=True) as con:
            return con.execute(sql, params or []).df()


def fits_snapshot(con: duckdb.DuckDBPyConnection) -> tuple[list, list]:
    """fits.chinchilla (without wall times) and fits.bootstrap rows; NaN as a marker so equal tables compare equal."""
    cur = con.execute("SELECT * EXCLUDE (fitted_at, fit_seconds) FROM fits.chinchilla ORDER BY family")
    names = [d[0] for d in cur.description]
    fits = []
    for r in cur.fetchall():
        row = dict(zip(names, ("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r)))
        if row["backtest"]:  # the backtest's own fit records its wall time
            backtest = json.loads(row["backtest"])
            backtest.get("fit", {}).pop("fit_seconds", None)
            row["backtest"] = backtest
        fits.append(row)
    boot = con.execute("SELECT * FROM fits.bootstrap ORDER BY family, sample").fetchall()
    return fits, boot


def materialize_all(logs: Path, db: Path, reports: Path, *, bootstrap: int = 50, **settings) -> dg.ExecuteInProcessResult:
    """Materialize every asset and check of the real code location against temp paths."""
    from scaling_pipeline.definitions import ASSETS, CHECKS
    from scaling_pipeline.defs.fit import fit_run_config
    from scaling_pipeline.defs.resources import build_resources

    return dg.materialize(
        [*ASSETS, *CHECKS],
        resources=build_resources(logs, db, reports, **settings),
        instance=dg.DagsterInstance.ephemeral(),
        run_config=fit_run_config(bootstrap),
    )


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    from scaling_pipeline.lib.simulate import write_demo

    out = tmp_path_factory.mktemp("demo") / "logs"
    write_demo(out, seed=0)
    return out


@pytest.fixture(scope="session")
def demo_run(demo_dir, tmp_path_factory) -> Materialized:
    work = tmp_path_factory.mktemp("demo_run")
    db, reports = work / "warehouse.duckdb", work / "reports"
    result = materialize_all(demo_dir, db, reports)
    return Materialized(demo_dir, db, reports, result)


@pytest.fixture(scope="session")
def demo_truth(demo_dir) -> dict:
    return json.loads((demo_dir / "truth.json").read_text())


@pytest.fixture(scope="session")
def demo_faults(demo_dir) -> dict:
    return json.loads((demo_dir / "faults.json").read_text())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding a ``slow`` test run first (otherwise in collection order, each file's tests together), so
    that pytest-xdist's workers, which take whole files in order (``make test``), do not end on a long file."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)
