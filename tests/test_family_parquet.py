"""Per-family Parquet outputs: export the demo warehouse's points, fit every family in its own
`scaling-pipeline fit-family` process (as a job array would), import, and get exactly the fits the
in-warehouse fit stage makes; a hostile family name stays inside the output folder; outputs that do
not match (columns, settings, changed points) are rejected naming the file, before anything is written."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest

from scaling_pipeline.cli import main
from scaling_pipeline.lib.family_parquet import FamilyFileError, fit_family_file, import_fits
from scaling_pipeline.lib.warehouse import FitSettings, fit_families
from tests.conftest import REPO, Materialized, fits_snapshot

N_BOOT = 50  # the demo_run fixture's bootstrap (tests/conftest.materialize_all)
SETTINGS = FitSettings(bootstrap=N_BOOT)
HOSTILE = "../../evil 'q\" ü/x"


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("scaling-pipeline")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "scaling_pipeline.cli"]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def reference(demo_run: Materialized, tmp_path_factory) -> Path:
    """The demo warehouse plus a copy of one family under a hostile name, fitted by the in-warehouse stage."""
    db = tmp_path_factory.mktemp("family_parquet") / "reference.duckdb"
    shutil.copy(demo_run.db, db)
    with duckdb.connect(str(db)) as con:
        con.execute("""INSERT INTO clean.points SELECT * REPLACE (? AS family, 'h-' || run_id AS run_id)
                       FROM clean.points WHERE family = 'atlas'""", [HOSTILE])
        assert fit_families(con, SETTINGS).fitted == [HOSTILE]  # the demo families were fitted with SETTINGS
    return db


@pytest.fixture(scope="module")
def fitted(reference: Path, tmp_path_factory) -> tuple[Path, Path]:
    """Points exported and every family fitted by its own `fit-family` process, two at a time:
    (points folder, fits folder)."""
    work = tmp_path_factory.mktemp("family_parquet_out")
    points_dir, fits_dir = work / "points", work / "fits"
    done = _cli("export-points", "--db", str(reference), "--out", str(points_dir))
    assert done.returncode == 0, done.stderr
    files = sorted(points_dir.glob("family=*/points.parquet"))
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda p: _cli("fit-family", str(p), "--out", str(fits_dir), "--bootstrap", str(N_BOOT)),
                             files))
    assert [r.returncode for r in runs] == [0] * len(files), [r.stderr for r in runs]
    return points_dir, fits_dir


def _empty_copy(reference: Path, dest: Path) -> Path:
    """A copy of the reference warehouse without fits."""
    shutil.copy(reference, dest)
    with duckdb.connect(str(dest)) as con:
        for table in ("chinchilla", "bootstrap", "comparison", "comparison_params"):
            con.execute(f"DELETE FROM fits.{table}")
    return dest


def comparison_snapshot(con: duckdb.DuckDBPyConnection) -> tuple[list, list]:
    """fits.comparison and fits.comparison_params rows (NaN as a marker so equal tables compare equal)."""
    def rows(sql: str) -> list:
        return [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r)
                for r in con.execute(sql).fetchall()]

    return (rows("SELECT * FROM fits.comparison ORDER BY family, form, subset"),
            rows("SELECT * FROM fits.comparison_params ORDER BY family, form, subset, param"))


@pytest.mark.slow
def test_separate_processes_give_the_in_warehouse_fits(reference, fitted, tmp_path):
    points_dir, fits_dir = fitted
    with duckdb.connect(str(reference), read_only=True) as con:
        expected, compared = fits_snapshot(con), comparison_snapshot(con)
        chosen = con.execute("SELECT family, form FROM fits.comparison WHERE chosen ORDER BY family").fetchall()
        families = [r[0] for r in con.execute("SELECT DISTINCT family FROM clean.points ORDER BY 1").fetchall()]
    for root, name in ((points_dir, "points.parquet"), (fits_dir, "fit.parquet"), (fits_dir, "bootstrap.parquet"),
                       (fits_dir, "comparison.parquet"), (fits_dir, "comparison_params.parquet")):
        files = sorted(root.rglob(name))
        assert len(files) == len(families) and all(f.parent.parent == root for f in files)
    # the hostile name became a plain folder name; the real name is inside the files
    (hostile_dir,) = [d for d in points_dir.iterdir() if "evil" in d.name]
    assert hostile_dir.name.startswith("family=") and hostile_dir.resolve().parent == points_dir.resolve()
    with duckdb.connect() as con:
        stored = con.execute("SELECT DISTINCT family FROM read_parquet(?, hive_partitioning = false)",
                             [str(hostile_dir / "points.parquet")]).fetchall()
        assert stored == [(HOSTILE,)]
    work = points_dir.parent
    assert {p.relative_to(work).parts[:2] for p in work.rglob("*evil*")} == {
        ("points", hostile_dir.name), ("fits", hostile_dir.name)}
    assert not [p for p in work.parent.iterdir() if "evil" in p.name]  # nothing escaped the output folders

    db = _empty_copy(reference, tmp_path / "w.duckdb")
    done = _cli("import-fits", "--db", str(db), str(fits_dir))
    assert done.returncode == 0, done.stderr
    assert f"imported {len(families)} families" in done.stdout
    with duckdb.connect(str(db)) as con:
        assert fits_snapshot(con) == expected
        # the model comparison comes along: every form's row, and the form plans are made from
        assert comparison_snapshot(con) == compared and len(compared[0]) > len(families)
        assert con.execute("SELECT family, form FROM fits.comparison WHERE chosen ORDER BY family").fetchall() == chosen
        assert len(chosen) == len(families)  # every demo family has a form plans are made from
        assert import_fits(con, fits_dir) == families  # importing again is harmless
        assert fits_snapshot(con) == expected and comparison_snapshot(con) == compared
        rerun = fit_families(con, SETTINGS)  # the imported fits carry the stage's input hashes: nothing is refit
        assert rerun.unchanged == families and not rerun.fitted


def _expect_rejected(db: Path, fits_dir: Path, bad_file: Path, match: str, **kwargs) -> None:
    with duckdb.connect(str(db)) as con:
        before = fits_snapshot(con)
        with pytest.raises(FamilyFileError, match=match) as err:
            import_fits(con, fits_dir, **kwargs)
        assert str(bad_file) in str(err.value)
        assert fits_snapshot(con) == before  # checked before anything is written


def test_mismatching_outputs_are_rejected_naming_the_file(reference, fitted, tmp_path):
    points_dir, fits_dir = fitted
    db = _empty_copy(reference, tmp_path / "w.duckdb")
    atlas_fit = fits_dir / "family=atlas" / "fit.parquet"

    other = tmp_path / "settings"
    shutil.copytree(fits_dir, other)
    fit_family_file(points_dir / "family=atlas" / "points.parquet", other, FitSettings(bootstrap=5))
    _expect_rejected(db, other, other / "family=atlas" / "fit.parquet", "was fitted with")
    first = sorted(fits_dir.glob("family=*/fit.parquet"))[0]
    _expect_rejected(db, fits_dir, first, "this import asks for", settings=FitSettings(bootstrap=200))

    columns = tmp_path / "columns"
    shutil.copytree(fits_dir, columns)
    bad = columns / "family=atlas" / "fit.parquet"
    with duckdb.connect() as con:
        con.execute("COPY (SELECT * EXCLUDE (warnings) FROM read_parquet(?, hive_partitioning = false)) "
                    "TO ? (FORMAT parquet)",
                    [str(atlas_fit), str(bad)])
    _expect_rejected(db, columns, bad, "columns .* do not match fits.chinchilla")

    missing = tmp_path / "missing"
    shutil.copytree(fits_dir, missing)
    (missing / "family=atlas" / "comparison.parquet").unlink()
    _expect_rejected(db, missing, missing / "family=atlas" / "comparison.parquet", "missing .*older fit-family")

    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE clean.points SET loss = loss * 1.01 WHERE family = 'atlas'")
    _expect_rejected(db, fits_dir, atlas_fit, "points changed since they were exported")


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["fit-family", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["export-points", "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    db = tmp_path / "w.duckdb"
    duckdb.connect(str(db)).close()
    assert main(["import-fits", "--db", str(db), str(tmp_path)]) == 2
    assert "no family=*/fit.parquet under" in capsys.readouterr().err
