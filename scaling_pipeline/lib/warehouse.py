"""Warehouse stages after cleaning: per-family fits (``fits`` schema) and plans (``plans`` schema).

Each family is written with delete-then-insert in one transaction, so a rerun is idempotent, and a
family whose points and fit settings did not change is not refit (its input hash is stored).
Every fit row carries its quality assessment (:mod:`scaling_pipeline.lib.quality`: ``publishable``,
``verdict``, ``reasons``), recomputed on every run for the fits that were kept; only publishable fits
get plans.
Families are fitted in a pool of worker processes (the parent writes each one as it finishes, so an
interrupted stage keeps the families already written); :func:`fit_family` is the per-family unit,
also used by :mod:`scaling_pipeline.lib.family_parquet` to fit families on other machines.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, as_completed, wait
from dataclasses import asdict, dataclass, field

import duckdb
import numpy as np
import pandas as pd

from scaling_pipeline.lib.allocate import DEFAULT_BUDGETS, law_allocation_table
from scaling_pipeline.lib.fitting.chinchilla import CHINCHILLA_PARAMS, fit_chinchilla
from scaling_pipeline.lib.fitting.common import FitError, blas_controller
from scaling_pipeline.lib.fitting.compare import Given, compare_forms, compared_rows, comparison_frames, rejudge
from scaling_pipeline.lib.fitting.resample import backtest_chinchilla, bootstrap_chinchilla
from scaling_pipeline.lib.laws import FORMS, Chinchilla
from scaling_pipeline.lib.process import exit_with
from scaling_pipeline.lib.quality import assess, beyond_limit, plan_verdict
from scaling_pipeline.lib.settings import FitSettings
from scaling_pipeline.lib.curves.points import create_curve_tables, fit_points
from scaling_pipeline.lib.tables import (FITS_BOOTSTRAP, FITS_CHINCHILLA, FITS_COMPARISON, FITS_COMPARISON_PARAMS,
                                         PLANS_ALLOCATIONS, create, insert_frame, interval_columns, intervals, replace,
                                         transaction)

PARAMS = CHINCHILLA_PARAMS


@dataclass
class FitStageSummary:
    fitted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    workers: int = 1  # processes the families were fitted across (1: in the calling process)

    def to_metadata(self) -> dict:
        return asdict(self)


def ensure_fit_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``fits.chinchilla``, ``fits.bootstrap``, ``fits.comparison`` and ``fits.comparison_params``
    (dropping them all when one has an older layout), and the curve-law tables where absent."""
    create(con, FITS_CHINCHILLA, FITS_BOOTSTRAP, FITS_COMPARISON, FITS_COMPARISON_PARAMS)
    create_curve_tables(con)


def input_hash(points: pd.DataFrame, settings: FitSettings) -> str:
    """SHA-256 of a family's points (run_id, n_params, n_tokens, loss, unique_tokens when present), the fit
    settings and the compared law forms (a newly registered form refits every family)."""
    h = hashlib.sha256(json.dumps([asdict(settings), sorted(FORMS)], sort_keys=True).encode())
    cols = points[["run_id", "n_params", "n_tokens", "loss", *(["unique_tokens"] if "unique_tokens" in points else [])]]
    cols = cols.sort_values("run_id")
    h.update(cols.to_csv(index=False, float_format="%.17g").encode())
    return h.hexdigest()


_MIN_POOL_FAMILIES = 3  # fewer families are fitted in-process: starting workers costs ~1 s


def family_workers(n_jobs: int | None, n_families: int) -> int:
    """Processes to fit ``n_families`` across: ``n_jobs`` (``None``: one per core this process may
    use), at most one per family; 1 (in-process) for fewer than 3 families or inside a daemonic
    process (which cannot start workers)."""
    if n_jobs is not None and n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1 or None, got {n_jobs}")
    if n_families < _MIN_POOL_FAMILIES or multiprocessing.current_process().daemon:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(n_jobs or cores, n_families)


def fit_families(con: duckdb.DuckDBPyConnection, settings: FitSettings = FitSettings(), *,
                 n_jobs: int | None = None, progress: Callable[[str], object] | None = None) -> FitStageSummary:
    """Fit the Chinchilla law per family of ``clean.points``; skip families whose input is unchanged.

    ``n_jobs``: processes (``None``: one per available core; see :func:`family_workers`). With three
    or more families to fit they are fitted across a pool of that many workers (each family's
    bootstrap in its worker); otherwise in this process, each bootstrap using up to ``n_jobs``
    processes itself. Results do not depend on ``n_jobs``. Each family is written as soon as it is
    fitted. ``progress`` receives one line per family."""
    ensure_fit_tables(con)
    points = con.execute("SELECT * FROM clean.points ORDER BY family, run_id").df()
    points = fit_points(con, points, settings)  # + curve-law points with curve_law_points = 'use'
    stored = dict(con.execute("SELECT family, input_hash FROM fits.chinchilla").fetchall())
    summary = FitStageSummary()
    families = sorted(points.family.unique())
    todo = []
    for fam in families:
        pts = points[points.family == fam]
        if stored.get(fam) == input_hash(pts, settings):
            summary.unchanged.append(fam)
        else:
            todo.append((fam, pts))
    summary.workers = family_workers(n_jobs, len(todo))
    if progress and todo:
        where = f"across {summary.workers} worker processes" if summary.workers > 1 else "in this process"
        progress(f"fitting {len(todo)} of {len(families)} families ({len(summary.unchanged)} unchanged) {where}")

    def write(row: dict, boot: pd.DataFrame | None, comparison: tuple[pd.DataFrame, pd.DataFrame] | None) -> None:
        replace_family(con, row["family"], row, boot, comparison)
        if row["status"] != "ok":
            summary.failed[row["family"]] = row["error"]
        else:
            summary.fitted.append(row["family"])

    def started(i: int, fam: str, pts: pd.DataFrame) -> None:
        if progress:
            progress(f"[{i}/{len(todo)}] fitting {fam} ({len(pts)} points, {settings.bootstrap} bootstrap resamples)")

    if summary.workers == 1:
        for i, (fam, pts) in enumerate(todo, 1):
            started(i, fam, pts)
            write(*fit_family(fam, pts, settings, n_jobs=n_jobs))
    else:
        _fit_in_pool(todo, settings, summary.workers, started, write)
    summary.fitted.sort()
    summary.failed = dict(sorted(summary.failed.items()))
    _reassess(con, summary.unchanged, points)
    gone = sorted(set(stored) - set(families))
    for fam in gone:
        replace_family(con, fam, None, None)
    summary.removed = gone
    return summary


def _fit_in_pool(todo: list[tuple[str, pd.DataFrame]], settings: FitSettings, workers: int,
                 started: Callable[[int, str, pd.DataFrame], None],
                 write: Callable[..., None]) -> None:
    """Fit ``todo`` across ``workers`` processes, calling ``write`` in this process as each family
    finishes. At most two families per worker are queued, so ``started`` tracks the real progress
    and an error stops the stage within a few families."""
    # forkserver, not fork: the parent has DuckDB (and, under Dagster, Python) threads running.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])  # import numpy/scipy/pandas once, in the server
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),))
    running: set[Future] = set()
    try:
        for i, (fam, pts) in enumerate(todo, 1):
            if len(running) >= 2 * workers:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    write(*f.result())
            started(i, fam, pts)
            running.add(pool.submit(fit_family, fam, pts, settings, n_jobs=1))
        for f in as_completed(running):
            write(*f.result())
    finally:
        pool.shutdown(cancel_futures=True)


def _init_worker(run_pid: int) -> None:
    """Worker initializer: one BLAS thread per process (the pool parallelises across families); the
    worker exits when the run's process ``run_pid`` is gone (killed)."""
    exit_with(run_pid)
    blas_controller().limit(limits=1, user_api="blas")


def fit_family(family: str, pts: pd.DataFrame, s: FitSettings, *,
               n_jobs: int | None = None) -> tuple[dict, pd.DataFrame | None, tuple[pd.DataFrame, pd.DataFrame]]:
    """Fit one family's points (columns run_id, n_params, n_tokens, loss; flops and unique_tokens for the
    forms that read them): its ``fits.chinchilla`` row (as a dict; a failed fit has status "failed"), its
    ``fits.bootstrap`` rows (None without a bootstrap) and its ``fits.comparison`` / ``comparison_params``
    rows (every law form, :func:`~scaling_pipeline.lib.fitting.compare.compare_forms`, reusing this Chinchilla
    fit). ``n_jobs``: processes for the bootstrap (see ``bootstrap_chinchilla``)."""
    n, d, loss = (pts[c].to_numpy(float) for c in ("n_params", "n_tokens", "loss"))
    ident = dict(family=family, settings=json.dumps(asdict(s)), input_hash=input_hash(pts, s))
    try:  # the bootstrap fits the full data first: its fit is the fit (with the bootstrap's warnings)
        boot = (bootstrap_chinchilla(n, d, loss, n_boot=s.bootstrap, seed=s.seed, level=s.level, loss=s.loss,
                                     delta=s.delta, n_jobs=n_jobs) if s.bootstrap else None)
        fit = boot.fit if boot else fit_chinchilla(n, d, loss, loss=s.loss, delta=s.delta)
    except FitError as exc:
        row = dict(**ident, status="failed", error=str(exc), n_points=len(pts), loss=s.loss, delta=s.delta)
        return {**row, **assessment_columns(row, pts)}, None, comparison_frames(family, compare_forms(pts))
    boot_df = None
    if boot:
        boot_df = pd.DataFrame(boot.samples, columns=list(CHINCHILLA_PARAMS))
        boot_df.insert(0, "sample", np.arange(len(boot_df), dtype=np.int32))
        boot_df.insert(0, "family", family)
    try:
        backtest = backtest_chinchilla(n, d, loss, loss=s.loss, delta=s.delta)
    except FitError as exc:
        backtest = {"error": str(exc)}
    diag = fit.diagnostics
    law = fit.law
    row = dict(**ident, status="ok", error=None,
               **{p: float(fit.params[p]) for p in PARAMS}, a_exponent=law.a, G=law.G,
               objective=fit.objective, loss=fit.loss, delta=fit.delta, n_points=fit.n_points,
               fit_seconds=fit.fit_seconds, max_observed_flops=float(np.max(6 * n * d)),
               **interval_columns(boot.ci if boot else None), diagnostics=json.dumps(diag, default=float),
               backtest=json.dumps(backtest, default=float), warnings=[str(w) for w in diag.get("warnings", [])])
    row = {**row, **assessment_columns(row, pts)}
    given = Given(fit, backtest, row["publishable"], row["verdict"],
                  f"bootstrap, {s.bootstrap} resamples, {s.level:.0%}" if boot else "")
    return row, boot_df, comparison_frames(family, compare_forms(pts, {"chinchilla": given}))


def assessment_columns(row: dict, pts: pd.DataFrame) -> dict:
    """The quality columns of a ``fits.chinchilla`` row (``publishable``, ``verdict``, ``reasons``: codes,
    ``reason_messages``): :func:`scaling_pipeline.lib.quality.assess` of its fit on the family's points."""
    def loads(v: object) -> dict:
        return json.loads(v) if isinstance(v, str) and v else {}

    ok = row.get("status") == "ok"
    return assess(pts.n_params, pts.n_tokens, pts.loss, params={p: row[p] for p in PARAMS} if ok else None,
                  error=row.get("error"), diagnostics=loads(row.get("diagnostics")),
                  backtest=loads(row.get("backtest")), ci=intervals(row),
                  n_boot=int(loads(row.get("settings")).get("bootstrap", 0))).to_columns()


def _reassess(con: duckdb.DuckDBPyConnection, families: list[str], points: pd.DataFrame) -> None:
    """Recompute the assessment of fits kept as they were (the quality rules may have changed since they
    were written), and with it their comparison rows' eligibility and choice (:func:`~scaling_pipeline.lib.
    fitting.compare.rejudge`); rows whose judgement changed are updated in one transaction."""
    if not families:
        return
    rows = con.execute("SELECT * EXCLUDE (fitted_at) FROM fits.chinchilla WHERE list_contains(?, family)",
                       [families]).df()
    compared = dict(tuple(con.execute("SELECT * FROM fits.comparison WHERE list_contains(?, family)",
                                      [families]).df().groupby("family")))
    params = dict(tuple(con.execute("SELECT * FROM fits.comparison_params WHERE list_contains(?, family)",
                                    [families]).df().groupby("family")))
    by_family = dict(tuple(points.groupby("family")))
    changed, judged = [], []
    for row in rows.to_dict("records"):
        fam = row["family"]
        new = assessment_columns(row, by_family[fam])
        old = {k: list(v) if isinstance(v, np.ndarray | list) else v for k, v in ((k, row[k]) for k in new)}
        if old != new:
            changed.append([new["publishable"], new["verdict"], new["reasons"], new["reason_messages"], fam])
        if fam not in compared:
            continue
        stored = compared_rows(compared[fam], params.get(fam))
        before = [(r.eligible, r.verdict, r.chosen) for r in stored]
        given = {"chinchilla": (new["publishable"], new["verdict"])} if row["status"] == "ok" else {}
        rejudge(by_family[fam], stored, given)
        judged += [[r.eligible, r.verdict, r.chosen, fam, r.form, r.subset] for r, b in zip(stored, before)
                   if (bool(b[0]), b[1], bool(b[2])) != (r.eligible, r.verdict, r.chosen)]
    if not changed and not judged:
        return
    with transaction(con):
        for sql, values in (("UPDATE fits.chinchilla SET publishable = ?, verdict = ?, reasons = ?, reason_messages = ? "
                             "WHERE family = ?", changed),
                            ("UPDATE fits.comparison SET eligible = ?, verdict = ?, chosen = ? "
                             "WHERE family = ? AND form = ? AND subset = ?", judged)):
            if values:
                con.executemany(sql, values)


def replace_family(con: duckdb.DuckDBPyConnection, fam: str, row: dict | None, boot: pd.DataFrame | None,
                   comparison: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> None:
    """Replace family ``fam``'s rows of ``fits.chinchilla`` (``row``: column -> value), ``fits.bootstrap``
    (``boot``: its columns) and ``fits.comparison`` / ``fits.comparison_params`` (``comparison``, from
    :func:`comparison_frames`) in one transaction; ``None`` removes them."""
    with transaction(con):
        for table in (FITS_CHINCHILLA, FITS_BOOTSTRAP, FITS_COMPARISON, FITS_COMPARISON_PARAMS):
            con.execute(f"DELETE FROM {table.name} WHERE family = ?", [fam])
        if row is not None:
            cols = list(row)
            con.execute(f"INSERT INTO fits.chinchilla ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [row[c] for c in cols])
        if boot is not None and len(boot):
            insert_frame(con, FITS_BOOTSTRAP, boot[FITS_BOOTSTRAP.names])
        if comparison is not None:
            insert_frame(con, FITS_COMPARISON, comparison[0])
            insert_frame(con, FITS_COMPARISON_PARAMS, comparison[1])


def plan_budgets(max_observed_flops: float, min_observed_flops: float | None = None) -> list[float]:
    """Budgets planned for a family (FLOPs): every decade, without gaps, from the lowest of the smallest run's
    (rounded up), a tenth of the largest run and 1e18 to the higher of 1000× the largest run's decade and 1e26
    (the standard grid, the range of the runs, and what a next run of that team would actually cost)."""
    lo = int(np.floor(np.log10(max_observed_flops))) - 1
    if min_observed_flops is not None and np.isfinite(min_observed_flops) and min_observed_flops > 0:
        lo = min(lo, int(np.ceil(np.log10(min_observed_flops) - 1e-9)))
    first, last = (round(np.log10(c)) for c in (DEFAULT_BUDGETS[0], DEFAULT_BUDGETS[-1]))
    return [10.0 ** k for k in range(min(lo, first), max(lo + 4, last) + 1)]


def family_conventions(con: duckdb.DuckDBPyConnection, family: str | None = None) -> dict[str, str]:
    """family -> the parameter convention of its points in ``clean.points`` (conventions joined by ',' if mixed;
    empty without the table or its column)."""
    try:
        return dict(con.execute("SELECT family, string_agg(DISTINCT param_convention, ',' ORDER BY param_convention) "
                                "FROM clean.points WHERE ? IS NULL OR family = ? GROUP BY family",
                                [family, family]).fetchall())
    except (duckdb.CatalogException, duckdb.BinderException):
        return {}


def _chosen_laws(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, dict[str, float]]]:
    """Family -> (form, parameters) of the comparison row marked ``chosen`` (the form plans are made from)."""
    rows = con.execute("SELECT p.family, p.form, p.param, p.value FROM fits.comparison c JOIN fits.comparison_params p "
                       "USING (family, form, subset) WHERE c.chosen ORDER BY p.family").fetchall()
    out: dict[str, tuple[str, dict[str, float]]] = {}
    for fam, form, param, value in rows:
        out.setdefault(fam, (form, {}))[1][param] = value
    return out


def plan_families(con: duckdb.DuckDBPyConnection, *, level: float = 0.95) -> pd.DataFrame:
    """Rebuild ``plans.allocations`` for the publishable families of ``fits.chinchilla``; withheld families
    get no plan. Each family is planned from the form its model comparison chose (``fits.comparison.chosen``;
    Chinchilla when there is none), recorded in the ``form`` column: Chinchilla with bootstrap intervals (at the
    fit's recorded level, else ``level``), the data-constrained law with the family's largest ``unique_tokens``
    as the unique data available. Each row carries its family's ``verdict`` (``extrapolated`` for budgets
    beyond the extrapolation limit, ``beyond_limit``) and ``publishable`` (within the limit)."""
    ensure_fit_tables(con)
    fits = con.execute("SELECT * FROM fits.chinchilla WHERE publishable ORDER BY family").df()
    boot = con.execute("SELECT * FROM fits.bootstrap ORDER BY family, sample").df()
    chosen = _chosen_laws(con)
    conventions = family_conventions(con)
    observed = {fam: (smallest, unique) for fam, smallest, unique in con.execute(  # unique_tokens: in the registry
        "SELECT family, min(coalesce(flops, 6 * n_params * n_tokens)), max(unique_tokens) FROM clean.points "
        "GROUP BY family").fetchall()}
    tables = []
    for f in fits.itertuples(index=False):
        form, params = chosen.get(f.family, ("chinchilla", {}))
        if form == "chinchilla":
            law = Chinchilla(E=f.E, A=f.A, B=f.B, alpha=f.alpha, beta=f.beta)
            b = boot[boot.family == f.family]
            samples = [Chinchilla(E=r.E, A=r.A, B=r.B, alpha=r.alpha, beta=r.beta) for r in b.itertuples(index=False)]
        else:
            law, samples = FORMS[form].from_params(params), None
        smallest, unique = observed.get(f.family, (None, None))
        fitted_level = json.loads(f.settings or "{}").get("level", level)  # the level of the fit's own intervals
        t = law_allocation_table(law, plan_budgets(f.max_observed_flops, smallest), samples=samples,
                                 level=fitted_level, unique_tokens=unique if form != "chinchilla" else None)
        t.insert(0, "family", f.family)
        t["form"] = form
        t["extrapolation"] = t.compute / f.max_observed_flops
        t["beyond_limit"] = beyond_limit(t.compute, f.max_observed_flops)
        t["verdict"] = [plan_verdict(f.verdict, far) for far in t.beyond_limit]
        t["publishable"] = ~t.beyond_limit
        t["param_convention"] = conventions.get(f.family)
        tables.append(t)
    cols = PLANS_ALLOCATIONS.names
    plans = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=cols)
    plans = plans.reindex(columns=cols)
    with transaction(con):
        replace(con, PLANS_ALLOCATIONS)
        if len(plans):
            insert_frame(con, PLANS_ALLOCATIONS, plans)
    return plans
