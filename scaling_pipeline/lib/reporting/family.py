"""One family as the report sees it (:class:`Family`): its points, fit, bootstrap samples and plans; the law
evaluated on them (vectorised over parameter rows ``P``, an (S, 5) array of (E, A, B, alpha, beta)); the
IsoFLOP slices of its runs; and the verdict on whether its plans can be trusted."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaling_pipeline.lib.laws import Chinchilla

from .formatting import loads_or, num, plural, slugs
from .inputs import PARAMS, ReportInputs

ISO_TOLERANCE = 0.15  # runs within ±15% of a budget count as "at" that budget (IsoFLOP slices)

# Verdict thresholds (documented in the Method section).
RMS_BAD, RMS_WARN = 0.05, 0.02  # rms of log L̂ − log L
BACKTEST_BAD, BACKTEST_WARN = 0.05, 0.02  # mean |L̂/L − 1| on the held-out largest runs
A_CI_BAD, A_CI_WARN = 0.20, 0.10  # width of the 95% interval of a = β/(α+β)


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
    verdict: str = "ok"  # ok | caution | unreliable | failed | missing
    severe: list[str] = field(default_factory=list)
    cautions: list[str] = field(default_factory=list)
    stale: bool = False
    iso_budgets: list[tuple[float, bool]] = field(default_factory=list)  # (C, is an observed IsoFLOP slice)
    slices: list[dict[str, float]] = field(default_factory=list)  # model-free optimum of each observed slice
    publishable: bool = False  # the fit stage's publication gate let its plan through
    withheld: str = ""  # why the plan is withheld (publishable is False)

    @property
    def ok(self) -> bool:
        return self.P is not None

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
    """One view per family with points or a fit, sorted by name, each with its verdict."""
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
                   excl=inp.exclusions[inp.exclusions.family == name])
        if fit is not None:
            f.ci = loads_or(fit.get("ci"), {})
            f.diagnostics = loads_or(fit.get("diagnostics"), {})
            f.backtest = loads_or(fit.get("backtest"), {})
            f.warnings = [str(w) for w in loads_or(fit.get("warnings"), [])]
            f.level = float(loads_or(fit.get("settings"), {}).get("level", 0.95) or 0.95)
            P = np.array([[num(fit.get(p)) for p in PARAMS]])
            if fit.get("status") == "ok" and np.isfinite(P).all():
                f.P = P
                b = inp.bootstrap[inp.bootstrap.family == name][list(PARAMS)].to_numpy(float)
                f.boot = b[np.isfinite(b).all(axis=1)]
            n_fit = num(fit.get("n_points"))
            f.stale = f.ok and np.isfinite(n_fit) and int(n_fit) != len(pts)
            pub = fit.get("publishable")
            f.publishable = f.ok and (pub is None or pub is pd.NA or (isinstance(pub, float) and np.isnan(pub))
                                      or bool(pub))
            f.withheld = str(fit.get("withheld_reason") or "") if f.ok and not f.publishable else ""
        mf = num(fit.get("max_observed_flops")) if fit else float("nan")
        f.max_flops = mf if np.isfinite(mf) and mf > 0 else (float(pts.flops.max()) if len(pts) else float("nan"))
        if f.ok and f.publishable and np.isfinite(f.max_flops):
            c = headline_compute or 10.0 ** round(math.log10(10 * f.max_flops))
            f.headline = f.plan_at(float(c))
        if len(pts):
            f.iso_budgets = _isoflop_budgets(pts.flops.to_numpy(float), pts.n_params.to_numpy(float))
            f.slices = _slice_optima(f)
        _assess(f)
        views.append(f)
    return views


def _slice_optima(f: Family) -> list[dict[str, float]]:
    """For each observed IsoFLOP slice: the best run (model-free optimum) and the fitted N* at that budget."""
    out = []
    for c, is_slice in f.iso_budgets:
        if not is_slice:
            continue
        near = f.pts[np.abs(f.pts.flops / c - 1) <= ISO_TOLERANCE]
        best = near.loc[near.loss.idxmin()]
        row = dict(compute=c, n_runs=len(near), n_sizes=int(near.n_params.nunique()), best_run=str(best.run_id),
                   best_n=float(best.n_params), best_loss=float(best.loss),
                   edge=bool(best.n_params in (near.n_params.min(), near.n_params.max())))
        if f.ok:
            row["fit_n"] = float(optimum(f.P, c)[0][0, 0])
            if len(f.boot):
                lo, hi = interval(optimum(f.boot, c)[0], f.level)
                row["fit_n_lo"], row["fit_n_hi"] = float(lo[0]), float(hi[0])
        out.append(row)
    return out


def _assess(f: Family) -> None:
    """Verdict: can the plans of this family be trusted? Fills ``verdict``, ``severe`` and ``cautions``."""
    if f.fit is None:
        f.verdict, f.severe = "missing", ["not fitted yet (no row in fits.chinchilla)"]
        return
    if not f.ok:
        f.verdict, f.severe = "failed", [f"fit failed: {f.fit.get('error') or 'no parameters'}"]
        return
    d, bt, sev, cau = f.diagnostics, f.backtest, f.severe, f.cautions
    if not f.publishable:
        sev.append(f"plan withheld by the fit stage's publication gate: {f.withheld or 'no reason recorded'}")
    rms = num(d.get("rmse_log_residual"))
    if np.isfinite(rms):
        msg = (f"the law misses the fitted runs by {rms:.1%} rms (log residual; a good fit of one family is "
               f"well under {RMS_WARN:.0%})")
        (sev if rms > RMS_BAD else cau if rms > RMS_WARN else [None]).append(msg)
    if "error" in bt:
        cau.append(f"no backtest: {bt['error']}")
    elif bt:
        mean_abs = num(bt.get("mean_abs_rel_error"))
        rel = np.asarray(bt.get("holdout", {}).get("rel_error", []), float)
        bias = float(np.mean(rel)) if rel.size else float("nan")
        if np.isfinite(mean_abs) and mean_abs > BACKTEST_WARN:
            way = "too high" if bias > 0 else "too low"
            msg = (f"fitted without its {bt.get('n_holdout', '?')} largest-compute runs, the law predicts them "
                   f"{abs(bias):.1%} {way} on average (max {num(bt.get('max_abs_rel_error')):.1%})")
            (sev if mean_abs > BACKTEST_BAD else cau).append(msg)
    a_ci = f.ci.get("a")
    if a_ci is not None and len(a_ci) == 2 and all(np.isfinite(num(v)) for v in a_ci):
        width = num(a_ci[1]) - num(a_ci[0])
        if width > A_CI_WARN:
            msg = (f"the compute-optimal exponent a = β/(α+β) = {num(f.fit.get('a_exponent')):.3f} has 95% interval "
                   f"[{num(a_ci[0]):.2f}, {num(a_ci[1]):.2f}]: how to split larger budgets between N and D is "
                   f"{'not determined' if width > A_CI_BAD else 'loosely determined'} by these runs")
            (sev if width > A_CI_BAD else cau).append(msg)
    for name in d.get("at_bounds", []) or []:
        if name == "E":
            cau.append(f"E = {num(f.fit.get('E')):.3g} is at its bound: no irreducible loss was identified, so "
                       "predicted losses keep falling without limit at large compute")
        else:
            cau.append(f"{name} is at the edge of its allowed range")
    cond = num(d.get("hessian_condition"))
    if not np.isfinite(cond) or cond > 1e8:
        cau.append("some parameter combination is flat (Hessian condition "
                   f"{'∞' if not np.isfinite(cond) else f'{cond:.1e}'}): individual parameters are not identified")
    if not len(f.boot):
        cau.append("no bootstrap samples stored: no uncertainty bands on the frontier, N* or the plans")
    if f.stale:
        cau.append(f"the fit used {plural(int(num(f.fit.get('n_points'))), 'run')} but the family now has "
                   f"{len(f.pts)}: it predates the current points (rerun the fit stage)")
    n = int(num(f.fit.get("n_points"), 0))
    if 0 < n < 15:
        cau.append(f"only {plural(n, 'run')} fitted")
    covered = ("poor fit", " bound ", "Hessian", "term vanishes", "numerical limit")
    cau += [f"fitter: {w}" for w in f.warnings if not any(k in w for k in covered)]
    f.verdict = "unreliable" if sev else "caution" if cau else "ok"


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
