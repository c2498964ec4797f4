"""The production instance (deploy/dagster.prod.yaml) against a real PostgreSQL server.

A throw-away cluster is initdb'ed in a temp folder, started on 127.0.0.1 on a free port and stopped
at the end; the whole graph is materialized on a small demo through an instance built from the
production dagster.yaml, and the run and its materializations are read back from PostgreSQL both
through Dagster and with plain SQL (psql). Skipped when PostgreSQL's server binaries
(Debian: `apt-get install postgresql`) or dagster-postgres (`pip install -e '.[prod]'`) are absent.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import REPO

PROD_YAML = REPO / "deploy" / "dagster.prod.yaml"
PG_USER, PG_PASSWORD, PG_DB = "dagster", "s3cret 'pw'", "dagster_prod"


def _pg_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                        if Path(p).parent.name.isdigit() else 0)
    for d in [*reversed(candidates), os.path.dirname(shutil.which("initdb") or "")]:
        if d and all(os.access(Path(d) / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "psql")):
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres(monkeypatch):
    """A running PostgreSQL cluster; DAGSTER_PG_* set for it. Yields (bindir, port)."""
    pytest.importorskip("dagster_postgres", reason="dagster-postgres is not installed (pip install -e '.[prod]')")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, psql) not found: apt-get install postgresql")
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: run the cluster as the postgres user
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root and `runuser` is absent: cannot start postgres as a non-root user")
        prefix = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp_path: /tmp/pytest-of-root is 0700, so the postgres user could not enter it.
    data = Path(tempfile.mkdtemp(prefix="scaling-pg-"))
    if prefix:
        shutil.chown(data, "postgres", "postgres")
    pwfile = data.parent / f"{data.name}.pw"
    port = _free_port()
    started = False
    try:
        pwfile.write_text(PG_PASSWORD + "\n")
        pwfile.chmod(0o644)
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data / "db"), "-U", PG_USER, f"--pwfile={pwfile}",
                        "-A", "scram-sha-256", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "server.log"),
                        "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "-w", "-t", "60", "start"],
                       check=True, capture_output=True, timeout=90)
        started = True
        env = {**os.environ, "PGPASSWORD": PG_PASSWORD}
        subprocess.run([str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, "-d", "postgres",
                        "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{PG_DB}"'],
                       check=True, capture_output=True, env=env, timeout=60)
        for key, value in {"DAGSTER_PG_USERNAME": PG_USER, "DAGSTER_PG_PASSWORD": PG_PASSWORD,
                           "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_DB": PG_DB}.items():
            monkeypatch.setenv(key, value)
        yield bindir, port
    except subprocess.CalledProcessError as exc:
        log = (data / "server.log").read_text(errors="replace") if (data / "server.log").exists() else ""
        pytest.fail(f"{exc.cmd[len(prefix)]} failed: {exc.stderr!r}\n{log[-2000:]}")
    finally:
        if started:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=60)
        pwfile.unlink(missing_ok=True)
        shutil.rmtree(data, ignore_errors=True)


def _psql(bindir: Path, port: int, sql: str) -> list[list[str]]:
    out = subprocess.run([str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, "-d", PG_DB,
                          "-v", "ON_ERROR_STOP=1", "-tA", "-F", "\t", "-c", sql], check=True, capture_output=True,
                         text=True, env={**os.environ, "PGPASSWORD": PG_PASSWORD}, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines() if line]


@pytest.mark.slow
def test_full_graph_on_the_production_instance_is_stored_in_postgres(postgres, tmp_path, monkeypatch):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from scaling_pipeline.definitions import ASSETS, CHECKS
    from scaling_pipeline.defs.fit import fit_run_config
    from scaling_pipeline.defs.ingest import RAW_METRICS
    from scaling_pipeline.defs.report import PLANNING_REPORT
    from scaling_pipeline.defs.resources import build_resources
    from scaling_pipeline.lib.simulate import write_demo

    bindir, port = postgres
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(PROD_YAML.read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    logs = tmp_path / "logs"
    write_demo(logs, seed=0, fmt="csv", n_families=2)

    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert not instance.telemetry_enabled
        result = dg.materialize([*ASSETS, *CHECKS], instance=instance, run_config=fit_run_config(20),
                                resources=build_resources(logs, tmp_path / "w.duckdb", tmp_path / "reports"),
                                tags={"scaling_pipeline/warehouse": "1"})
        assert result.success
        run_id = result.run_id

    # A fresh instance from the same dagster.yaml (new connections) sees the run and its materializations.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags.get("scaling_pipeline/warehouse") == "1"
        materialized = {ev.dagster_event.event_specific_data.materialization.asset_key
                        for ev in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)}
        expected = {key for a in ASSETS for key in a.keys}
        assert materialized == expected
        latest = instance.get_latest_materialization_event(RAW_METRICS)
        assert latest is not None and latest.run_id == run_id
        assert latest.asset_materialization.metadata["dagster/row_count"].value > 10_000
        assert instance.get_latest_materialization_event(PLANNING_REPORT).run_id == run_id
        checks = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        assert len(checks) == len(CHECKS)

    # And plain SQL against PostgreSQL agrees.
    assert _psql(bindir, port, f"SELECT run_id, status FROM runs WHERE run_id = '{run_id}'") == [[run_id, "SUCCESS"]]
    (n_mat,), = _psql(bindir, port, "SELECT count(*) FROM event_logs WHERE run_id = '{}' AND "
                                    "dagster_event_type = 'ASSET_MATERIALIZATION'".format(run_id))
    assert int(n_mat) == len(expected)
    keys = {row[0] for row in _psql(bindir, port, "SELECT asset_key FROM asset_keys")}
    assert {key.to_string() for key in expected} <= keys
