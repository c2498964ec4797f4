"""One family as the report sees it (:class:`Family`): its points, fit, bootstrap samples and plans; the law
evaluated on them (vectorised over parameter rows ``P``, an (S, 5) array of (E, A, B, alpha, beta)); the
IsoFLOP slices of its runs; and the verdict on whether its plans can be trusted (the fit's stored
:class:`~scaling_pipeline.lib.quality.Assessment`, made by the fit stage)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaling_pipeline.lib.fitting.isoflop import parabola_vertex
from scaling_pipeline.lib.laws import Chinchilla
from scaling_pipeline.lib.quality import Assessment, Reason, beyond_limit
from scaling_pipeline.lib.tables import intervals

from .formatting import loads_or, num, plural, slugs
from .inputs import PARAMS, ReportInputs

ISO_TOLERANCE = 0.15  # runs within ±15% of a budget count as "at" that budget (IsoFLOP slices)


def predict(P: np.ndarray, N, D) -> np.ndarray:
    """(S, K) losses for S parameter rows at K points (N, D broadcast to length K)."""
    N, D = np.broadcast_arrays(np.atleast_1d(np.asarray(N, float)), np.atleast_1d(np.asarray(D, float)))
    with np.errstate(all="ignore"):
        return Chinchilla.stack(P).predict(N[None, :], D[None, :])


def optimum(P: np.ndarray, C) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, K) arrays of N*, D*, L* for S parameter rows at K budgets (closed form, C = 6·N·D)."""
    law = Chinchilla.stack(P)
    with np.errstate(all="ignore"):
        n, d = law.optimal_allocation(np.atleast_1d(np.asarray(C, float))[None, :])
        return n, d, law.predict(n, d)


def interval(v: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of the finite, positive entries (as the allocation table does)."""
    v = np.where(np.isfinite(v) & (v > 0), v, np.nan)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(v, q, axis=0) if v.shape[0] else (np.full(v.shape[1:], np.nan),) * 2
    return lo, hi


@dataclass
class Family:
    """Everything the page and summary.json say about one family, computed once."""

    name: str
    slug: str
    pts: pd.DataFrame
    fit: dict[str, Any] | None
    P: np.ndarray | None  # (1, 5) fitted parameters, None without a usable fit
    boot: np.ndarray  # (S, 5) bootstrap samples (finite rows), possibly empty
    plans: pd.DataFrame
    excl: pd.DataFrame
    ci: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    backtest: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    level: float = 0.95
    max_flops: float = float("nan")
    headline: dict[str, float] | None = None
    headline_beyond: float | None = None  # the asked headline budget (FLOPs), beyond the extrapolation limit
    assessment: Assessment | None = None  # the fit's, as stored by the fit stage; None: not fitted
    notes: list[str] = field(default_factory=list)  # what the stored data lack (stale fit, bootstrap rows)
    iso_budgets: list[tuple[float, bool]] = field(default_factory=list)  # (C, is an observed IsoFLOP slice)
    slices: list[dict[str, float]] = field(default_factory=list)  # model-free optimum of each observed slice
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # loss vs tokens of its fitted runs
    lr: dict[str, pd.DataFrame] = field(default_factory=dict)  # its rows of clean.lr_sweeps/_optima/_scaling
    forecasts: dict[str, pd.DataFrame] = field(default_factory=dict)  # its rows of in_flight.load_forecasts
    comparison: pd.DataFrame = field(default_factory=pd.DataFrame)  # its rows of reporting.comparison.SQL

    @property
    def ok(self) -> bool:
        return self.P is not None

    @property
    def verdict(self) -> str:
        """ok | caution | withheld | failed (the assessment's) | missing (no fit row)."""
        return self.assessment.verdict if self.assessment else "missing"

    @property
    def publishable(self) -> bool:
        return bool(self.ok and self.assessment and self.assessment.publishable)

    @property
    def reasons(self) -> tuple[Reason, ...]:
        if self.assessment is None:
            return (Reason("not_assessed", "not fitted yet (no row in fits.chinchilla)"),)
        return self.assessment.reasons

    @property
    def blocking(self) -> list[str]:
        """Messages of the reasons that withhold the plan (or say why there is no fit)."""
        return [r.message for r in self.reasons if r.severity == "blocks"]

    @property
    def cautions(self) -> list[str]:
        return [r.message for r in self.reasons if r.severity == "caution"]

    @property
    def anchor(self) -> str:
        return f"fam-{self.slug}"

    def plan_at(self, c: float) -> dict[str, float]:
        """The allocation at ``c`` FLOPs: the stored plan row when there is one, else computed the same way."""
        p = self.plans[np.isclose(self.plans.compute.astype(float), c, rtol=1e-9, atol=0)] if len(self.plans) else []
        if len(p):
            r = p.iloc[0]
            return {k: num(r[k]) for k in ("compute", "n_params", "n_tokens", "tokens_per_param", "loss", "n_params_lo",
                                           "n_params_hi", "n_tokens_lo", "n_tokens_hi", "loss_lo", "loss_hi")}
        n, d, loss = (v[0, 0] for v in optimum(self.P, c))
        row = dict(compute=c, n_params=n, n_tokens=d, tokens_per_param=d / n, loss=loss)
        for name, v in zip(("n_params", "n_tokens", "loss"), optimum(self.boot, c) if len(self.boot) else ()):
            lo, hi = interval(v, self.level)
            row[f"{name}_lo"], row[f"{name}_hi"] = float(lo[0]), float(hi[0])
        return {k: num(v) for k, v in row.items()}


def family_views(inp: ReportInputs, headline_compute: float | None) -> list[Family]:
    """One view per family with points or a fit, sorted by name, each with its verdict. The headline is the
    plan at ``headline_compute`` (default: the power of ten nearest 10× the largest run), never one beyond
    the extrapolation limit."""
    names = sorted(set(inp.fits.family) | set(inp.points.family))
    slug_of = slugs(names)
    views = []
    for name in names:
        pts = inp.points[inp.points.family == name].copy()
        for c in ("n_params", "n_tokens", "loss"):
            pts[c] = pd.to_numeric(pts[c], errors="coerce")
        flops = pd.to_numeric(pts.flops, errors="coerce")
        pts["flops"] = flops.where(np.isfinite(flops) & (flops > 0), 6.0 * pts.n_params * pts.n_tokens)
        pts = pts[np.isfinite(pts[["n_params", "n_tokens", "loss", "flops"]].to_numpy(float)).all(axis=1)
                  & (pts.loss > 0) & (pts.n_params > 0) & (pts.n_tokens > 0)]
        frow = inp.fits[inp.fits.family == name]
        fit = frow.iloc[0].to_dict() if len(frow) else None
        f = Family(name=name, slug=slug_of[name], pts=pts.sort_values("flops"), fit=fit, P=None,
                   boot=np.empty((0, 5)), plans=inp.plans[inp.plans.family == name].sort_values("compute"),
                   excl=inp.exclusions[inp.exclusions.family == name], curves=inp.curves[inp.curves.family == name],
                   lr={k: v[v.family == name] for k, v in (("sweeps", inp.lr_sweeps), ("optima", inp.lr_optima),
                                                           ("scaling", inp.lr_scaling))},
                   forecasts={k: t[t.family == name] for k, t in inp.forecasts.items()},
                   comparison=inp.comparison[inp.comparison.family == name])
        if fit is not None:
            f.ci = intervals(fit)
            f.diagnostics = loads_or(fit.get("diagnostics"), {})
            f.backtest = loads_or(fit.get("backtest"), {})
            said = fit.get("warnings")
            f.warnings = [str(w) for w in said] if isinstance(said, list | tuple | np.ndarray) else []
            f.level = float(loads_or(fit.get("settings"), {}).get("level", 0.95) or 0.95)
            P = np.array([[num(fit.get(p)) for p in PARAMS]])
            if fit.get("status") == "ok" and np.isfinite(P).all():
                f.P = P
                b = inp.bootstrap[inp.bootstrap.family == name][list(PARAMS)].to_numpy(float)
                f.boot = b[np.isfinite(b).all(axis=1)]
            f.assessment = Assessment.from_columns(fit.get("verdict"), fit.get("reasons"), fit.get("reason_messages"))
            n_fit = num(fit.get("n_points"))
            if f.ok and np.isfinite(n_fit) and int(n_fit) != len(pts):
                f.notes.append(f"the fit used {plural(int(n_fit), 'run')} but the family now has {len(pts)}: it "
                               "predates the current points (rerun the fit stage)")
            if f.ok and not len(f.boot) and "no_bootstrap" not in f.assessment.codes:
                f.notes.append("no bootstrap samples stored: no uncertainty bands on the frontier, N* or the plans")
        mf = num(fit.get("max_observed_flops")) if fit else float("nan")
        f.max_flops = mf if np.isfinite(mf) and mf > 0 else (float(pts.flops.max()) if len(pts) else float("nan"))
        if f.publishable and np.isfinite(f.max_flops):
            c = float(headline_compute or 10.0 ** round(math.log10(10 * f.max_flops)))
            if beyond_limit(c, f.max_flops):
                f.headline_beyond = c
            else:
                f.headline = f.plan_at(c)
        if len(pts):
            f.iso_budgets = _isoflop_budgets(pts.flops.to_numpy(float), pts.n_params.to_numpy(float))
            f.slices = _slice_optima(f)
        views.append(f)
    return views


def _slice_optima(f: Family) -> list[dict[str, float]]:
    """For each observed IsoFLOP slice: the best run (model-free optimum), the Approach 2 parabola vertex
    (:func:`~scaling_pipeline.lib.fitting.isoflop.parabola_vertex`, when the minimum is bracketed) and the
    fitted N* at that budget."""
    out = []
    for c, is_slice in f.iso_budgets:
        if not is_slice:
            continue
        near = f.pts[np.abs(f.pts.flops / c - 1) <= ISO_TOLERANCE]
        best = near.loc[near.loss.idxmin()]
        row = dict(compute=c, n_runs=len(near), n_sizes=int(near.n_params.nunique()), best_run=str(best.run_id),
                   best_n=float(best.n_params), best_loss=float(best.loss),
                   edge=bool(best.n_params in (near.n_params.min(), near.n_params.max())))
        vertex = parabola_vertex(near.n_params, near.loss)  # Approach 2 (Hoffmann et al.) at this slice
        if vertex is not None:
            row["approach2_n"], row["approach2_loss"] = vertex
        if f.ok:
            row["fit_n"] = float(optimum(f.P, c)[0][0, 0])
            if len(f.boot):
                lo, hi = interval(optimum(f.boot, c)[0], f.level)
                row["fit_n_lo"], row["fit_n_hi"] = float(lo[0]), float(hi[0])
        out.append(row)
    return out


def _isoflop_budgets(flops: np.ndarray, n_params: np.ndarray, tol: float = ISO_TOLERANCE) -> list[tuple[float, bool]]:
    """3–4 budgets: those with >= 3 model sizes within ±tol of the same C (IsoFLOP slices, up to 4), completed
    with powers of ten (or, for data spanning under two decades, log-spaced values) spanning the data."""
    remaining = np.ones(flops.size, bool)
    slices: list[float] = []
    while len(slices) < 4:
        best = None
        for i in np.flatnonzero(remaining):
            m = remaining & (np.abs(flops / flops[i] - 1) <= tol)
            k = np.unique(n_params[m]).size
            if k >= 3 and (best is None or (k, m.sum()) > best[0]):
                best = ((k, m.sum()), m)
        if best is None:
            break
        m = best[1]
        centre = float(np.exp(np.mean(np.log(flops[m]))))
        around = remaining & (np.abs(flops / centre - 1) <= tol)
        if np.unique(n_params[around]).size >= 3:
            m = around
        slices.append(centre)
        remaining &= ~m
    chosen = [(c, True) for c in slices]
    if len(chosen) < 3 and flops.size:
        lo, hi = np.log10(flops.min()), np.log10(flops.max())
        cands = [10.0 ** k for k in range(math.ceil(lo), math.floor(hi) + 1)]
        if len(cands) < 4:
            cands = list(np.geomspace(flops.min() * 1.2, flops.max() / 1.2, 4)) if hi > lo else [float(flops[0])]
        target = 4 if not slices else 3
        while len(chosen) < target and cands:
            dist = [min((abs(math.log10(c / x)) for x, _ in chosen), default=np.inf) for c in cands]
            j = int(np.argmax(dist))
            if chosen and dist[j] < 0.3:
                break
            chosen.append((cands.pop(j), False))
    return sorted(chosen)
