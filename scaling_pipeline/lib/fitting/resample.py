"""Resampling checks of a fit: bootstrap intervals of a Chinchilla fit (:func:`bootstrap_chinchilla`) and a
backtest on the largest-compute runs (:func:`backtest` for any form, :func:`backtest_chinchilla`)."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from scaling_pipeline.lib.fitting.chinchilla import CHINCHILLA_PARAMS, _INTERNAL_NAMES, _at_bound, fit_chinchilla
from scaling_pipeline.lib.fitting.common import (
    FitError,
    FitResult,
    _one_blas_thread,
    _positive,
    _quantiles,
    _same_length,
)
from scaling_pipeline.lib.fitting.objective import _Data
from scaling_pipeline.lib.fitting.search import _BOOT_GRID, _BOOT_OPTIONS, _global_fit, _internal_bounds
from scaling_pipeline.lib.jsonutil import jsonable
from scaling_pipeline.lib.laws import Chinchilla, get
from scaling_pipeline.lib.process import exit_with

__all__ = ["Bootstrap", "bootstrap_chinchilla", "backtest", "backtest_chinchilla"]


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap of a Chinchilla fit over resampled runs.

    ``samples`` has one row per resample and columns :data:`CHINCHILLA_PARAMS`
    (E, A, B, alpha, beta); ``ci`` holds percentile intervals at ``level`` for every parameter
    and for ``a = beta/(alpha+beta)``; ``at_bounds`` counts resamples whose fit ended at a
    bound, per parameter (those intervals are bound-limited; ``fit.diagnostics`` warns).
    """

    fit: FitResult
    samples: np.ndarray
    objectives: np.ndarray
    at_bounds: dict[str, int]
    level: float
    seed: int
    seconds: float
    n_jobs: int
    ci: dict[str, tuple[float, float]]

    def derived_ci(self, C: ArrayLike, level: float | None = None) -> dict[str, np.ndarray]:
        """Percentile intervals of ``N*`` (params), ``D*`` (tokens) and the loss at the optimum
        (nats/token) for budgets ``C`` (FLOPs): ``{name: array of shape (len(C), 2)}``."""
        C = np.atleast_1d(np.asarray(C, dtype=float))
        if np.any(~np.isfinite(C) | (C <= 0)):
            raise FitError("compute budgets C must be finite and > 0 FLOPs")
        laws = Chinchilla.stack(self.samples)
        n_opt, d_opt = laws.optimal_allocation(C)
        loss = laws.predict(n_opt, d_opt)
        q = _quantiles(self.level if level is None else level)
        return {
            name: np.nanquantile(v, q, axis=0).T
            for name, v in (("N_opt", n_opt), ("D_opt", d_opt), ("loss_opt", loss))
        }


# --------------------------------------------------------------------------------------------
# Bootstrap


def _boot_chunk(
    args: tuple[_Data, np.ndarray, str, float, list, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit resamples given as per-run counts: parameters, objectives, at-bound flags."""
    data, counts, loss, delta, ibounds, warm = args
    out = np.empty((counts.shape[0], 5))
    obj = np.empty(counts.shape[0])
    bound = np.empty((counts.shape[0], 5), dtype=bool)
    with _one_blas_thread():
        for i, w in enumerate(counts):
            p, f, _ = _global_fit(
                data, w.astype(float), loss, delta, ibounds, _BOOT_GRID, _BOOT_OPTIONS, warm
            )
            params = data.to_params(p)
            out[i] = [params[k] for k in CHINCHILLA_PARAMS]
            obj[i] = f
            bound[i] = _at_bound(p, ibounds) != 0
    return out, obj, bound


MIN_POOL_RESAMPLES = 1000  # fewer are fitted in-process by default: ~4 ms each, starting workers costs ~0.5-1 s


def _n_workers(n_jobs: int | None, n_boot: int) -> int:
    """Worker processes: ``n_jobs``, or for ``None`` one per idle core (this process counts as
    idle; others' load from the 1-minute load average) once there are >= MIN_POOL_RESAMPLES resamples."""
    if multiprocessing.current_process().daemon:  # daemonic processes cannot have children
        return 1
    if n_jobs is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        others = max(os.getloadavg()[0] - 1.0, 0.0) if hasattr(os, "getloadavg") else 0.0
        idle = int((cpus or 1) - others + 0.5)
        return 1 if n_boot < MIN_POOL_RESAMPLES else max(1, min(idle, n_boot // 50))
    if n_jobs < 1:
        raise FitError(f"n_jobs must be >= 1 or None, got {n_jobs}")
    return min(n_jobs, n_boot)


def bootstrap_chinchilla(
    N: ArrayLike,
    D: ArrayLike,
    L: ArrayLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_jobs: int | None = None,
    loss: str = "huber",
    delta: float = 1e-3,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> Bootstrap:
    """Nonparametric bootstrap of :func:`fit_chinchilla` over runs (rows resampled with
    replacement, ``numpy.random.default_rng(seed)``).

    Each resample is warm-started from the full-data optimum and also checks the minima of a
    coarse exponent grid, so it stays global. Results depend only on the data and ``seed``, not
    on ``n_jobs`` (processes; 1: in-process; ``None``: one per idle core, judged from the load
    average, for >= MIN_POOL_RESAMPLES resamples).
    """
    t0 = time.perf_counter()
    if n_boot < 1:
        raise FitError(f"n_boot must be >= 1, got {n_boot}")
    q = _quantiles(level)
    full = fit_chinchilla(N, D, L, loss=loss, delta=delta, bounds=bounds)
    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    n = N.size
    data = _Data.build(N, D, L)
    ib = _internal_bounds(bounds)[1]
    warm = data.from_params(full.params)
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])
    workers = _n_workers(n_jobs, n_boot)
    chunks = [
        (data, c, loss, delta, ib, warm) for c in np.array_split(counts, min(n_boot, workers * 4))
    ]
    if workers == 1:
        parts = [_boot_chunk(c) for c in chunks]
    else:
        # not fork: it is unsafe once other threads exist, and Python does not see all of them (a DuckDB
        # connection runs its own; Dagster runs Python ones). The server imports the fitter once.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=exit_with, initargs=(os.getpid(),)) as pool:
            parts = list(pool.map(_boot_chunk, chunks))
    samples = np.concatenate([s for s, _, _ in parts])
    objectives = np.concatenate([o for _, o, _ in parts])
    hits = np.concatenate([b for _, _, b in parts]).sum(axis=0)
    at_bounds = {name: int(k) for name, k in zip(_INTERNAL_NAMES, hits) if k}
    derived = {"a": Chinchilla.stack(samples).a[:, 0]}
    ci = {
        name: tuple(float(v) for v in np.quantile(col, q))
        for name, col in [*zip(CHINCHILLA_PARAMS, samples.T), *derived.items()]
    }
    warnings = [
        f"{name} is at a bound in {k} of {n_boot} resamples: its interval reflects the bounds, "
        "not only the data"
        for name, k in at_bounds.items()
        if k >= max(1, 0.01 * n_boot)
    ]
    diagnostics = {
        **full.diagnostics,
        "bootstrap_at_bounds": at_bounds,
        "warnings": full.diagnostics["warnings"] + warnings,
    }
    return Bootstrap(
        fit=replace(full, ci=ci, diagnostics=diagnostics),
        samples=samples,
        objectives=objectives,
        at_bounds=at_bounds,
        level=level,
        seed=seed,
        seconds=time.perf_counter() - t0,
        n_jobs=workers,
        ci=ci,
    )


# --------------------------------------------------------------------------------------------
# Backtest


def backtest_chinchilla(
    N: ArrayLike,
    D: ArrayLike,
    L: ArrayLike,
    *,
    holdout_fraction: float = 0.1,
    n_holdout: int | None = None,
    loss: str = "huber",
    delta: float = 1e-3,
) -> dict[str, Any]:
    """:func:`backtest` of the Chinchilla law: fit on all but the largest-compute runs (``C = 6·N·D``
    FLOPs), predict those."""
    N, D, L = _positive("N", N), _positive("D", D), _positive("L", L)
    _same_length(N=N, D=D, L=L)
    return backtest("chinchilla", {"N": N, "D": D}, L, 6.0 * N * D, holdout_fraction=holdout_fraction,
                    n_holdout=n_holdout, loss=loss, delta=delta)


def backtest(
    form: str,
    inputs: Mapping[str, ArrayLike],
    y: ArrayLike,
    compute: ArrayLike,
    *,
    holdout_fraction: float = 0.1,
    n_holdout: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Fit ``form`` (a name of :data:`~scaling_pipeline.lib.laws.FORMS`) on all but the runs with the
    largest ``compute`` (FLOPs) and predict those; ``options`` go to the form's ``fit``.

    Holds out ``n_holdout`` runs (default ``ceil(holdout_fraction·n)``, at least 1). Returns a
    JSON-ready dict with the training fit, per-held-out-run inputs (keyed by the form's input columns),
    ``flops``, observed and predicted ``loss`` and relative errors ``L̂/L - 1``, and their mean/max
    absolute values.
    """
    law = get(form)
    X = {k: np.asarray(v, dtype=float) for k, v in inputs.items()}
    L, C = np.asarray(y, dtype=float), np.asarray(compute, dtype=float)
    n = _same_length(**X, y=L, compute=C)
    if n_holdout is None:
        if not 0 < holdout_fraction < 1:
            raise FitError(f"holdout_fraction must be in (0, 1), got {holdout_fraction!r}")
        n_holdout = max(1, math.ceil(holdout_fraction * n))
    if not 1 <= n_holdout < n:
        raise FitError(f"n_holdout must be in [1, {n - 1}], got {n_holdout}")
    order = np.argsort(C, kind="stable")
    train, test = order[:-n_holdout], order[-n_holdout:]
    fit = law.fit({k: v[train] for k, v in X.items()}, L[train], **options)
    pred = np.asarray(fit.law.predict(**{k: v[test] for k, v in X.items()}))
    rel = pred / L[test] - 1.0
    return jsonable(
        {
            "n_train": int(train.size),
            "n_holdout": int(test.size),
            "train_max_flops": float(np.max(C[train])),
            "holdout": {
                **{law.variables.get(k, k): v[test] for k, v in X.items()},
                "flops": C[test],
                "loss": L[test],
                "predicted": pred,
                "rel_error": rel,
            },
            "mean_abs_rel_error": float(np.mean(np.abs(rel))),
            "max_abs_rel_error": float(np.max(np.abs(rel))),
            "fit": fit.to_dict(),
        }
    )
