"""The Dagster layer: the code location loads, its graph is what we expect, materializations are
idempotent and incremental."""

from __future__ import annotations

import math
import shutil

import dagster as dg
import pytest

from tests.conftest import Materialized, materialize_all

EXPECTED_GRAPH = {
    "raw/files": [],
    "raw/metrics": [],
    "raw/runs": [],
    "raw/quarantine": [],
    "clean/runs": ["raw/metrics", "raw/runs"],
    "clean/steps": ["clean/runs", "raw/metrics"],
    "clean/points": ["clean/runs", "clean/steps"],
    "clean/exclusions": ["clean/runs", "clean/steps"],
    "clean/lr_sweeps": ["clean/runs", "clean/steps"],
    "clean/lr_optima": ["clean/lr_sweeps"],
    "clean/lr_scaling": ["clean/lr_optima"],
    "fits/chinchilla": ["clean/points"],
    "plans/allocations": ["fits/chinchilla"],
    "reports/planning_report": ["clean/exclusions", "clean/points", "fits/chinchilla", "forecasts/in_flight",
                                "plans/allocations", "raw/quarantine"],
    "forecasts/in_flight": ["clean/exclusions", "clean/points", "fits/chinchilla"],
}
EXPECTED_CHECKS = {("clean/steps", "steps_unique"), ("clean/steps", "steps_finite"), ("clean/points", "points_valid"),
                   ("fits/chinchilla", "fits_finite"), ("fits/chinchilla", "fits_publishable"),
                   ("plans/allocations", "plans_consistent"), ("forecasts/in_flight", "forecasts_valid"),
                   ("forecasts/in_flight", "runs_on_track")}


def test_definitions_graph_snapshot():
    from scaling_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    got = {k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys)
           for k in graph.get_all_asset_keys()}
    assert got == EXPECTED_GRAPH
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert checks == EXPECTED_CHECKS
    blocking = {spec.name for ad in graph.assets_defs for spec in ad.check_specs if spec.blocking}
    assert blocking == {"steps_unique", "steps_finite", "points_valid", "fits_finite", "plans_consistent",
                        "forecasts_valid"}
    defs.resolve_implicit_global_asset_job_def()  # the whole graph is one valid job


def test_steps_run_in_the_run_process():
    """The job (schedule, sensor, Launchpad) and "Materialize all" run every step in the run's own process:
    a process per step paid the package's imports once per step (benchmarks/README.md)."""
    from scaling_pipeline.definitions import defs

    executors = {job.name: job.executor_def.name
                 for job in (defs.resolve_job_def("scaling_pipeline"), defs.resolve_implicit_global_asset_job_def())}
    assert executors == {"scaling_pipeline": "in_process", "__ASSET_JOB": "in_process"}


def test_full_materialization(demo_run: Materialized):
    r = demo_run.result
    assert r.success
    mats = {m.asset_key.to_user_string() for m in r.get_asset_materialization_events() for m in [m.materialization]}
    assert mats == set(EXPECTED_GRAPH)
    checks = r.get_asset_check_evaluations()
    assert len(checks) == len(EXPECTED_CHECKS) and all(c.passed for c in checks)
    assert (demo_run.reports / "latest" / "index.html").is_file()
    n_fam = demo_run.query("SELECT count(DISTINCT family) FROM clean.points")[0][0]
    assert demo_run.query("SELECT count(*) FROM fits.chinchilla WHERE status = 'ok'")[0][0] == n_fam >= 6


def _rows(m: Materialized, sql: str, params=None) -> list[tuple]:
    """Rows with NaN replaced by a marker, so that equal tables compare equal (NaN != NaN)."""
    return [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r) for r in m.query(sql, params)]


def _snapshot(m: Materialized) -> dict:
    tables = ["raw.metrics", "raw.runs", "raw.quarantine", "clean.steps", "clean.points", "clean.exclusions",
              "plans.allocations", "forecasts.in_flight", "forecasts.backtest", "forecasts.exclusions"]
    snap = {t: _rows(m, f"SELECT * EXCLUDE (quarantined_at) FROM {t} ORDER BY ALL" if t == "raw.quarantine"
                     else f"SELECT * FROM {t} ORDER BY ALL") for t in tables}
    snap["fits"] = _rows(m, "SELECT * EXCLUDE (fitted_at, fit_seconds) FROM fits.chinchilla ORDER BY family")
    return snap


@pytest.mark.slow
def test_materialize_twice_is_idempotent_and_refits_nothing(demo_dir, tmp_path):
    logs = tmp_path / "logs"
    shutil.copytree(demo_dir, logs)
    db, reports = tmp_path / "w.duckdb", tmp_path / "reports"
    first = Materialized(logs, db, reports, materialize_all(logs, db, reports, bootstrap=20))
    snap1 = _snapshot(first)
    second = materialize_all(logs, db, reports, bootstrap=20)
    assert _snapshot(first) == snap1
    fit_meta = [m.materialization.metadata for m in second.get_asset_materialization_events()
                if m.asset_key == dg.AssetKey(["fits", "chinchilla"])][0]
    assert fit_meta["refit"].value == [] and len(fit_meta["unchanged"].value) >= 6
    ingest_meta = [m.materialization.metadata for m in second.get_asset_materialization_events()
                   if m.asset_key == dg.AssetKey(["raw", "metrics"])][0]
    assert ingest_meta["ingest_units_ingested"].value == 0


@pytest.mark.slow
def test_changing_one_file_changes_only_its_rows(demo_dir, tmp_path):
    logs = tmp_path / "logs"
    shutil.copytree(demo_dir, logs)
    db, reports = tmp_path / "w.duckdb", tmp_path / "reports"
    m = Materialized(logs, db, reports, materialize_all(logs, db, reports, bootstrap=0))
    # a csv metrics file of a run that currently gives a valid point
    rel = m.query("""SELECT min(source_path) FROM raw.metrics JOIN clean.points USING (run_id)
                     WHERE source_path LIKE '%.csv'""")[0][0]
    target = logs / rel
    others = "SELECT * FROM raw.metrics WHERE source_path <> ? ORDER BY ALL"
    others_before = _rows(m, others, [rel])
    lines = target.read_text().splitlines()
    target.write_text("\n".join(lines[:-1]) + "\n")  # drop the last logged step
    second = materialize_all(logs, db, reports, bootstrap=0)
    assert _rows(m, others, [rel]) == others_before
    assert m.query("SELECT count(*) FROM raw.metrics WHERE source_path = ?", [rel])[0][0] == len(lines) - 2
    # the run lost its final step: it is now incomplete, and only its family is refit
    run_id, fam = m.query("SELECT DISTINCT run_id, family FROM raw.metrics WHERE source_path = ?", [rel])[0]
    assert m.query("SELECT reason FROM clean.exclusions WHERE run_id = ? AND kind = 'run'", [run_id]) == [
        ("incomplete_schedule",)]
    fit_meta = [e.materialization.metadata for e in second.get_asset_materialization_events()
                if e.asset_key == dg.AssetKey(["fits", "chinchilla"])][0]
    assert fit_meta["refit"].value == [fam]


def test_groups_match_key_prefixes_and_tables_have_schemas():
    from scaling_pipeline.definitions import defs
    from scaling_pipeline.lib.tables import TABLES

    graph = defs.resolve_asset_graph()
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {k: k.split("/")[0] for k in EXPECTED_GRAPH}
    assert set(groups.values()) == {"raw", "clean", "fits", "plans", "forecasts", "reports"}
    for key in EXPECTED_GRAPH:
        if key.startswith("reports/"):
            continue
        table = TABLES[key.replace("/", ".")]
        schema = graph.get(dg.AssetKey(key.split("/"))).metadata["dagster/column_schema"]
        assert [(c.name, c.type) for c in schema.columns] == [(c.name, c.type) for c in table.columns]


def _metadata(m: Materialized) -> dict[str, dict]:
    return {e.asset_key.to_user_string(): e.materialization.metadata for e in m.result.get_asset_materialization_events()}


def test_table_assets_publish_row_counts_and_the_stored_schema(demo_run: Materialized):
    """Each table asset's row count is the table's, and its column schema is the layout DuckDB stored."""
    meta = _metadata(demo_run)
    for key in EXPECTED_GRAPH:
        if key.startswith("reports/"):
            continue
        table = key.replace("/", ".")
        assert meta[key]["dagster/row_count"].value == demo_run.query(f"SELECT count(*) FROM {table}")[0][0], key
        stored = [(name, typ) for name, typ, *_ in demo_run.query(f"DESCRIBE {table}")]
        schema = meta[key]["dagster/column_schema"].schema
        assert [(c.name, c.type) for c in schema.columns] == stored, key
    assert meta["raw/files"]["dagster/row_count"].value == sum(meta["raw/files"]["by_status"].value.values()) > 10
    assert meta["fits/chinchilla"]["bootstrap_rows"].value == demo_run.query("SELECT count(*) FROM fits.bootstrap")[0][0]


def test_fit_publishes_parameters_as_numbers_and_the_report_its_latest_path(demo_run: Materialized):
    meta = _metadata(demo_run)["fits/chinchilla"]
    fits = demo_run.query("SELECT family, E, alpha, beta, a_exponent FROM fits.chinchilla WHERE status = 'ok' "
                          "ORDER BY family")
    assert len(fits) >= 6
    for family, *values in fits:
        for name, value in zip(("E", "alpha", "beta", "a_exponent"), values):
            entry = meta[f"{family}/{name}"]
            assert isinstance(entry, dg.FloatMetadataValue) and entry.value == value
    assert "plotted_families" not in meta  # fewer families than the cap
    report = _metadata(demo_run)["reports/planning_report"]
    assert report["path"].value == str((demo_run.reports / "latest" / "index.html").resolve())


def test_parameter_metadata_is_capped_with_a_note():
    from scaling_pipeline.defs.fit import PLOTTED_FAMILIES, parameter_metadata

    rows = [(f"f{i:03d}", 1.5, 0.3, 0.3, 0.5) for i in range(PLOTTED_FAMILIES + 5)]
    meta = parameter_metadata(rows)
    assert f"f{PLOTTED_FAMILIES - 1:03d}/alpha" in meta and f"f{PLOTTED_FAMILIES:03d}/alpha" not in meta
    assert len(meta) == 4 * PLOTTED_FAMILIES + 1
    assert f"first {PLOTTED_FAMILIES} of {PLOTTED_FAMILIES + 5}" in meta["plotted_families"].value
