"""Per-family Parquet files, so the fit stage can run on separate workers (DuckDB has one writer).

Layout under a root folder (local, or shared storage mounted on every worker)::

    <root>/family=<safe name>/points.parquet      the family's clean.points rows      (export_points)
    <root>/family=<safe name>/fit.parquet         its fits.chinchilla row             (fit_family_file)
    <root>/family=<safe name>/bootstrap.parquet   its fits.bootstrap rows
    <root>/family=<safe name>/comparison.parquet  its fits.comparison rows (every law form; the chosen one)
    <root>/family=<safe name>/comparison_params.parquet  their fits.comparison_params rows

``<safe name>`` is ASCII ``[A-Za-z0-9._-]`` (with a short hash when the name had to change), so a
family name can never lead outside the root; the real name is in every file's ``family`` column (read
the files with ``hive_partitioning = false``, else DuckDB takes ``family`` from the folder name).
A family is fitted by :func:`~scaling_pipeline.lib.warehouse.fit_family`, exactly as the fit stage
does it, so imported fits equal in-warehouse ones (model comparison and chosen form included) and later
runs do not refit them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import duckdb

from scaling_pipeline.lib.formats.writing import safe_name
from scaling_pipeline.lib.warehouse import FitSettings, ensure_fit_tables, fit_family, input_hash, replace_family

POINTS, FIT, BOOTSTRAP = "points.parquet", "fit.parquet", "bootstrap.parquet"
COMPARISON, COMPARISON_PARAMS = "comparison.parquet", "comparison_params.parquet"
_ROWS = {BOOTSTRAP: "bootstrap", COMPARISON: "comparison", COMPARISON_PARAMS: "comparison_params",
         FIT: "chinchilla"}  # file -> its fits table, in writing order (fit.parquet last: the family is complete)
_POINT_COLUMNS = ("run_id", "family", "n_params", "n_tokens", "loss")


class FamilyFileError(ValueError):
    """A per-family file that cannot be used (missing, unreadable, wrong columns or settings, stale)."""


def family_dir(root: Path, family: str) -> Path:
    """``root/family=<safe name>``: the folder of ``family``'s files, always directly under ``root``."""
    path = Path(root) / f"family={safe_name(family)}"
    if path.resolve().parent != Path(root).resolve():
        raise FamilyFileError(f"family {family!r} maps to {path}, outside {root}")
    return path


def _write(con: duckdb.DuckDBPyConnection, query: str, params: list, path: Path) -> None:
    """Write ``query``'s result to ``path`` as Parquet, atomically (readers never see a partial file)."""
    tmp = path.with_name(path.name + ".tmp")
    con.execute(f"COPY ({query}) TO ? (FORMAT parquet)", [*params, str(tmp)])
    os.replace(tmp, path)


def _read(con: duckdb.DuckDBPyConnection, path: Path, query: str = "SELECT * FROM {file}"
          ) -> duckdb.DuckDBPyConnection:
    """Run ``query`` over the Parquet file ``path``; errors name the file. Hive partitioning is off: on,
    DuckDB would replace the real family name by the folder's safe name (and guess its type)."""
    try:
        return con.execute(query.format(file="read_parquet(?, hive_partitioning = false)"), [str(path)])
    except duckdb.Error as exc:
        raise FamilyFileError(f"cannot read {path}: {exc}") from None


def _columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the columns of the Parquet file ``path``."""
    return [r[:2] for r in _read(con, path, "DESCRIBE SELECT * FROM {file}").fetchall()]


def export_points(con: duckdb.DuckDBPyConnection, out_dir: Path) -> list[Path]:
    """Write ``clean.points`` as one ``points.parquet`` per family under ``out_dir``; returns the files
    (sorted by family)."""
    families = [r[0] for r in con.execute("SELECT DISTINCT family FROM clean.points ORDER BY family").fetchall()]
    paths = []
    for fam in families:
        folder = family_dir(out_dir, fam)
        folder.mkdir(parents=True, exist_ok=True)
        _write(con, "SELECT * FROM clean.points WHERE family = ? ORDER BY run_id", [fam], folder / POINTS)
        paths.append(folder / POINTS)
    return paths


def fit_family_file(points_parquet: Path, out_dir: Path, settings: FitSettings = FitSettings(), *,
                    n_jobs: int | None = 1) -> Path:
    """Fit the one family in ``points_parquet`` (no warehouse needed) and write its ``fit.parquet``,
    ``bootstrap.parquet`` and comparison files under ``out_dir/family=<safe name>/``; returns the fit file.
    ``n_jobs``: processes for the bootstrap (results do not depend on it). ``fit.parquet`` is written
    last, so its presence means the family is complete."""
    with duckdb.connect() as con:
        columns = [name for name, _ in _columns(con, points_parquet)]
        missing = [c for c in _POINT_COLUMNS if c not in columns]
        if missing:
            raise FamilyFileError(f"{points_parquet}: missing columns {missing} (written by export-points?)")
        pts = _read(con, points_parquet, "SELECT * FROM {file} ORDER BY family, run_id").df()
        families = pts.family.unique()
        if len(families) != 1:
            raise FamilyFileError(f"{points_parquet}: expected the points of one family, found {list(families)}")
        row, boot, comparison = fit_family(str(families[0]), pts, settings, n_jobs=n_jobs)
        ensure_fit_tables(con)
        replace_family(con, row["family"], row, boot, comparison)
        folder = family_dir(out_dir, row["family"])
        folder.mkdir(parents=True, exist_ok=True)
        for name, table in _ROWS.items():
            _write(con, f"SELECT * FROM fits.{table}", [], folder / name)
    return folder / FIT


def import_fits(con: duckdb.DuckDBPyConnection, fits_dir: Path, settings: FitSettings | None = None) -> list[str]:
    """Load every ``family=*/fit.parquet`` (+ ``bootstrap.parquet`` and the comparison files) under
    ``fits_dir`` into ``fits.chinchilla``, ``fits.bootstrap``, ``fits.comparison`` and
    ``fits.comparison_params`` (per family delete-then-insert in one transaction, so importing twice is
    harmless); returns the families loaded.

    Every file is checked before anything is written: columns and types must be the tables', all
    fits must share one set of settings (``settings``, when given), and each fit's input hash must
    match the family's current ``clean.points`` (else the points changed since the export)."""
    fits_dir = Path(fits_dir)
    fit_files = sorted(fits_dir.glob(f"family=*/{FIT}"))
    if not fit_files:
        raise FamilyFileError(f"no family=*/{FIT} under {fits_dir} (run fit-family first)")
    ensure_fit_tables(con)
    points = con.execute("SELECT * FROM clean.points ORDER BY family, run_id").df()
    want = {t: [r[:2] for r in con.execute(f"DESCRIBE fits.{t}").fetchall()] for t in _ROWS.values()}
    expected, source = (asdict(settings), "this import asks for") if settings else (None, "")
    staged = []
    for fit_path in fit_files:
        for name, table in _ROWS.items():
            path = fit_path.with_name(name)
            if not path.exists():
                raise FamilyFileError(f"{path}: missing (written by an older fit-family: fit the family again)")
            have = _columns(con, path)
            if have != want[table]:
                raise FamilyFileError(f"{path}: columns {have} do not match fits.{table} {want[table]}")
        cur = _read(con, fit_path)
        rows = cur.fetchall()
        if len(rows) != 1:
            raise FamilyFileError(f"{fit_path}: expected one fit row, found {len(rows)}")
        row = dict(zip([d[0] for d in cur.description], rows[0]))
        fam = row["family"]
        if fit_path.parent != family_dir(fits_dir, fam):
            raise FamilyFileError(f"{fit_path}: holds family {fam!r}, whose folder is {family_dir(fits_dir, fam).name}")
        try:
            fitted_with = FitSettings(**json.loads(row["settings"]))
        except (TypeError, ValueError) as exc:
            raise FamilyFileError(f"{fit_path}: unreadable fit settings {row['settings']!r}: {exc}") from None
        if expected is None:
            expected, source = asdict(fitted_with), f"{fit_path} was fitted with"
        if asdict(fitted_with) != expected:
            raise FamilyFileError(f"{fit_path}: fitted with settings {asdict(fitted_with)}, but {source} {expected}; "
                                  "fit every family with the same settings")
        pts = points[points.family == fam]
        if pts.empty:
            raise FamilyFileError(f"{fit_path}: family {fam!r} has no points in clean.points")
        if input_hash(pts, fitted_with) != row["input_hash"]:
            raise FamilyFileError(f"{fit_path}: family {fam!r}'s points changed since they were exported "
                                  "(export and fit it again)")
        boot, *comparison = (_read(con, fit_path.with_name(name)).df()
                             for name in (BOOTSTRAP, COMPARISON, COMPARISON_PARAMS))
        for name, frame in zip((BOOTSTRAP, COMPARISON, COMPARISON_PARAMS), (boot, *comparison)):
            if (frame.family != fam).any():
                raise FamilyFileError(f"{fit_path.with_name(name)}: holds rows of another family than {fam!r}")
        staged.append((fam, row, boot, tuple(comparison)))
    for fam, row, boot, comparison in staged:
        replace_family(con, fam, row, boot, comparison)
    return [fam for fam, *_ in staged]
