"""Warehouse stages after cleaning: per-family fits (``fits`` schema) and plans (``plans`` schema).

Each family is written with delete-then-insert in one transaction, so a rerun is idempotent, and a
family whose points and fit settings did not change is not refit (its input hash is stored).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import duckdb
import numpy as np
import pandas as pd

from scaling_pipeline.lib.allocate import DEFAULT_BUDGETS, allocation_table
from scaling_pipeline.lib.fit import CHINCHILLA_PARAMS, FitError, backtest_chinchilla, bootstrap_chinchilla, fit_chinchilla
from scaling_pipeline.lib.laws import Chinchilla

PARAMS = CHINCHILLA_PARAMS


@dataclass(frozen=True)
class FitSettings:
    """How each family is fitted (recorded with every fit; a change refits every family)."""

    loss: str = "huber"
    delta: float = 1e-3
    n_boot: int = 200
    seed: int = 0
    level: float = 0.95
    max_backtest_error: float = 0.10  # a plan is published only if held-out runs are predicted this well


@dataclass
class FitStageSummary:
    fitted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    def to_metadata(self) -> dict:
        return asdict(self)


_FITS_DDL = """
CREATE TABLE IF NOT EXISTS fits.chinchilla (
    family VARCHAR PRIMARY KEY, status VARCHAR, error VARCHAR, publishable BOOLEAN, withheld_reason VARCHAR,
    E DOUBLE, A DOUBLE, B DOUBLE, alpha DOUBLE, beta DOUBLE, a_exponent DOUBLE, G DOUBLE,
    objective DOUBLE, loss VARCHAR, delta DOUBLE, n_points BIGINT, fit_seconds DOUBLE,
    max_observed_flops DOUBLE, ci VARCHAR, diagnostics VARCHAR, backtest VARCHAR, warnings VARCHAR,
    settings VARCHAR, input_hash VARCHAR, fitted_at TIMESTAMP DEFAULT current_timestamp)
"""
_BOOT_DDL = """
CREATE TABLE IF NOT EXISTS fits.bootstrap (
    family VARCHAR, sample INTEGER, E DOUBLE, A DOUBLE, B DOUBLE, alpha DOUBLE, beta DOUBLE)
"""


def _drop_if_layout_changed(con: duckdb.DuckDBPyConnection, schema: str, tables: dict[str, str]) -> None:
    """Fits are derived data: tables written by an older version with another column layout are
    dropped (and every family refit) instead of failing on insert."""
    probe = duckdb.connect()
    probe.execute(f"CREATE SCHEMA {schema}")
    for table, ddl in tables.items():
        probe.execute(ddl)
        want = [d[0] for d in probe.execute(f"SELECT * FROM {schema}.{table} LIMIT 0").description]
        have = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position", [schema, table]).fetchall()]
        if have and have != want:
            for t in tables:
                con.execute(f"DROP TABLE IF EXISTS {schema}.{t}")
            break
    probe.close()


def _input_hash(points: pd.DataFrame, settings: FitSettings) -> str:
    h = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode())
    cols = points[["run_id", "n_params", "n_tokens", "loss"]].sort_values("run_id")
    h.update(cols.to_csv(index=False, float_format="%.17g").encode())
    return h.hexdigest()


def fit_families(con: duckdb.DuckDBPyConnection, settings: FitSettings = FitSettings(), *,
                 progress=None) -> FitStageSummary:
    """Fit the Chinchilla law per family of ``clean.points``; skip families whose input is unchanged."""
    con.execute("CREATE SCHEMA IF NOT EXISTS fits")
    _drop_if_layout_changed(con, "fits", {"chinchilla": _FITS_DDL, "bootstrap": _BOOT_DDL})
    con.execute(_FITS_DDL)
    con.execute(_BOOT_DDL)
    points = con.execute("SELECT * FROM clean.points ORDER BY family, run_id").df()
    stored = dict(con.execute("SELECT family, input_hash FROM fits.chinchilla").fetchall())
    summary = FitStageSummary()
    families = sorted(points.family.unique())
    for i, fam in enumerate(families, 1):
        pts = points[points.family == fam]
        digest = _input_hash(pts, settings)
        if stored.get(fam) == digest:
            summary.unchanged.append(fam)
            continue
        if progress:
            progress(f"[{i}/{len(families)}] fitting {fam} ({len(pts)} points, {settings.n_boot} bootstrap resamples)")
        row, boot = _fit_one(pts, settings)
        row.update(family=fam, input_hash=digest, settings=json.dumps(asdict(settings)))
        _replace_family(con, fam, row, boot)
        if row["status"] != "ok":
            summary.failed[fam] = row["error"]
        else:
            summary.fitted.append(fam)
    gone = sorted(set(stored) - set(families))
    for fam in gone:
        _replace_family(con, fam, None, None)
    summary.removed = gone
    return summary


def _fit_one(pts: pd.DataFrame, s: FitSettings) -> tuple[dict, pd.DataFrame | None]:
    n, d, loss = (pts[c].to_numpy(float) for c in ("n_params", "n_tokens", "loss"))
    try:  # the bootstrap fits the full data first: its fit is the fit (with the bootstrap's warnings)
        boot = (bootstrap_chinchilla(n, d, loss, n_boot=s.n_boot, seed=s.seed, level=s.level, loss=s.loss,
                                     delta=s.delta) if s.n_boot else None)
        fit = boot.fit if boot else fit_chinchilla(n, d, loss, loss=s.loss, delta=s.delta)
    except FitError as exc:
        return dict(status="failed", error=str(exc), publishable=False, withheld_reason=f"fit failed: {exc}",
                    n_points=len(pts), loss=s.loss, delta=s.delta), None
    boot_df = None
    ci: dict = {}
    if boot:
        ci = {k: [float(v[0]), float(v[1])] for k, v in boot.ci.items()}
        boot_df = pd.DataFrame(boot.samples, columns=list(CHINCHILLA_PARAMS))
        boot_df.insert(0, "sample", np.arange(len(boot_df), dtype=np.int32))
    try:
        backtest = backtest_chinchilla(n, d, loss, loss=s.loss, delta=s.delta)
    except FitError as exc:
        backtest = {"error": str(exc)}
    diag = fit.diagnostics
    law = fit.law
    reasons = publication_problems(fit.params, diag, backtest, s.max_backtest_error)
    row = dict(status="ok", error=None, publishable=not reasons, withheld_reason="; ".join(reasons) or None,
               **{p: float(fit.params[p]) for p in PARAMS}, a_exponent=law.a, G=law.G,
               objective=fit.objective, loss=fit.loss, delta=fit.delta, n_points=fit.n_points,
               fit_seconds=fit.fit_seconds, max_observed_flops=float(np.max(6 * n * d)),
               ci=json.dumps(ci), diagnostics=json.dumps(diag, default=float), backtest=json.dumps(backtest, default=float),
               warnings=json.dumps(list(diag.get("warnings", []))))
    return row, boot_df


def publication_problems(params: dict, diagnostics: dict, backtest: dict, max_backtest_error: float) -> list[str]:
    """Why a fit's plan must not be published (empty: publish): non-finite parameters, parameters at
    their bounds (the data do not pin them down), or held-out runs predicted worse than allowed."""
    problems = []
    bad = [k for k in PARAMS if not np.isfinite(params[k])]
    if bad:
        problems.append(f"non-finite parameters {bad}")
    if diagnostics.get("at_bounds"):
        problems.append(f"parameters at their bounds {diagnostics['at_bounds']}: not determined by these runs")
    err = backtest.get("max_abs_rel_error")
    if err is None:
        problems.append(f"no backtest: {backtest.get('error', 'unknown reason')}")
    elif not err <= max_backtest_error:
        problems.append(f"backtest: largest-compute runs predicted with up to {err:.1%} error "
                        f"(> {max_backtest_error:.0%} allowed)")
    return problems


def _replace_family(con: duckdb.DuckDBPyConnection, fam: str, row: dict | None, boot: pd.DataFrame | None) -> None:
    con.execute("BEGIN")
    try:
        con.execute("DELETE FROM fits.chinchilla WHERE family = ?", [fam])
        con.execute("DELETE FROM fits.bootstrap WHERE family = ?", [fam])
        if row is not None:
            cols = list(row)
            con.execute(f"INSERT INTO fits.chinchilla ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [row[c] for c in cols])
        if boot is not None and len(boot):
            boot_rows = boot.assign(family=fam)[["family", "sample", *PARAMS]]  # noqa: F841 (used by SQL)
            con.execute("INSERT INTO fits.bootstrap SELECT * FROM boot_rows")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def plan_budgets(max_observed_flops: float) -> list[float]:
    """Budgets planned for a family: the standard 1e18…1e26 FLOPs grid plus every decade from a tenth of
    the largest observed run to 1000× it (what a next run of that team would actually cost)."""
    lo = int(np.floor(np.log10(max_observed_flops))) - 1
    near = [10.0 ** k for k in range(lo, lo + 5)]
    return sorted(set(DEFAULT_BUDGETS) | set(near))


def plan_families(con: duckdb.DuckDBPyConnection, *, level: float = 0.95) -> pd.DataFrame:
    """Rebuild ``plans.allocations`` from the publishable fits in ``fits.chinchilla`` (+ bootstrap
    intervals); families whose fit failed a publication check get no plan."""
    fits = con.execute("SELECT * FROM fits.chinchilla WHERE publishable ORDER BY family").df()
    boot = con.execute("SELECT * FROM fits.bootstrap ORDER BY family, sample").df()
    tables = []
    for f in fits.itertuples(index=False):
        law = Chinchilla(E=f.E, A=f.A, B=f.B, alpha=f.alpha, beta=f.beta)
        b = boot[boot.family == f.family]
        samples = [Chinchilla(E=r.E, A=r.A, B=r.B, alpha=r.alpha, beta=r.beta) for r in b.itertuples(index=False)]
        t = allocation_table(law, plan_budgets(f.max_observed_flops), samples=samples, level=level)
        t.insert(0, "family", f.family)
        t["extrapolation"] = t.compute / f.max_observed_flops
        tables.append(t)
    cols = ["family", "compute", "n_params", "n_tokens", "tokens_per_param", "loss", "constraint", "efficiency",
            "n_params_lo", "n_params_hi", "n_tokens_lo", "n_tokens_hi", "loss_lo", "loss_hi", "extrapolation"]
    plans = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=cols)
    plans = plans.reindex(columns=cols)
    con.execute("CREATE SCHEMA IF NOT EXISTS plans")
    con.execute("BEGIN")
    try:
        con.execute("CREATE OR REPLACE TABLE plans.allocations AS SELECT * FROM plans")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return plans
