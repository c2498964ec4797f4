"""The planning report: ``reports/<date>/index.html`` (self-contained), its PNG figures, ``summary.json``,
and ``reports/latest`` pointing at the newest dated report.

Layout of the page, in the order a researcher reads it:

* **At a glance**: per family one line: at a headline budget (the decade nearest 10× the family's largest run,
  or ``headline_compute``), N*, D* and the expected loss with 95% bootstrap intervals, and a verdict on
  whether the fit can be trusted (residuals, backtest on the largest runs, identifiability of the exponent).
* **What changed since the last refit**: parameter drift, plan drift at standard budgets, and how the previous
  report's law predicted the runs that were added since (read from the previous report's ``summary.json``).
* **Overview** table of the fitted laws, then one section per family: verdict, law with intervals, diagnostics,
  backtest, four figures (loss vs D per N, loss vs C with the compute-optimal frontier, residuals, IsoFLOP
  curves), the allocation table and the exclusions; then the quarantined inputs and the method.

Every figure is embedded in ``index.html`` as a base64 data URI (the file alone can be published) and also
written beside it as ``<family-slug>_<figure>.png``. The report is built in a hidden temporary folder under
``reports_root`` and swapped in at the end, so a failed render never leaves a half-written report and never
writes outside ``reports_root``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import html
import io
import json
import math
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scaling_pipeline.lib.allocate import chinchilla_reference  # noqa: E402
from scaling_pipeline.lib.jsonutil import jsonable  # noqa: E402

SUMMARY_SCHEMA = 1
STANDARD_BUDGETS = tuple(10.0 ** k for k in range(18, 27))  # 1e18 … 1e26 FLOPs, always in summary.json
PARAMS = ("E", "A", "B", "alpha", "beta")
ISO_TOLERANCE = 0.15  # runs within ±15% of a budget count as "at" that budget (IsoFLOP slices)

# Verdict thresholds (documented in the Method section).
RMS_BAD, RMS_WARN = 0.05, 0.02  # rms of log L̂ − log L
BACKTEST_BAD, BACKTEST_WARN = 0.05, 0.02  # mean |L̂/L − 1| on the held-out largest runs
A_CI_BAD, A_CI_WARN = 0.20, 0.10  # width of the 95% interval of a = β/(α+β)
DRIFT_BIG = 0.05  # relative changes above this are highlighted

_COLUMNS = {
    "points": ["run_id", "family", "n_params", "n_tokens", "flops", "loss", "loss_source", "final_step",
               "unique_tokens"],
    "fits": ["family", "status", "error", "publishable", "withheld_reason", "E", "A", "B", "alpha", "beta",
             "a_exponent", "G", "objective", "loss",
             "delta", "n_points", "fit_seconds", "max_observed_flops", "ci", "diagnostics", "backtest", "warnings",
             "settings", "input_hash", "fitted_at"],
    "bootstrap": ["family", "sample", *PARAMS],
    "plans": ["family", "compute", "n_params", "n_tokens", "tokens_per_param", "loss", "constraint", "n_params_lo",
              "n_params_hi", "n_tokens_lo", "n_tokens_hi", "loss_lo", "loss_hi", "extrapolation"],
    "exclusions": ["run_id", "family", "kind", "reason", "detail", "step", "n_rows"],
    "quarantine": ["source_path", "reader", "location", "field", "reason", "scope", "quarantined_at"],
}


@dataclass(frozen=True)
class ReportInputs:
    points: pd.DataFrame
    fits: pd.DataFrame
    bootstrap: pd.DataFrame
    plans: pd.DataFrame
    exclusions: pd.DataFrame
    quarantine: pd.DataFrame


def load_inputs(con: duckdb.DuckDBPyConnection) -> ReportInputs:
    """Read every table the report shows from the warehouse (a missing table reads as empty)."""

    def q(sql: str, kind: str) -> pd.DataFrame:
        try:
            return con.execute(sql).df()
        except duckdb.CatalogException:
            return pd.DataFrame(columns=_COLUMNS[kind])

    return ReportInputs(
        points=q("SELECT * FROM clean.points ORDER BY family, n_params, n_tokens", "points"),
        fits=q("SELECT * FROM fits.chinchilla ORDER BY family", "fits"),
        bootstrap=q("SELECT * FROM fits.bootstrap ORDER BY family, sample", "bootstrap"),
        plans=q("SELECT * FROM plans.allocations ORDER BY family, compute", "plans"),
        exclusions=q("SELECT * FROM clean.exclusions ORDER BY family, run_id, kind", "exclusions"),
        quarantine=q("SELECT * FROM raw.quarantine ORDER BY source_path, location", "quarantine"),
    )


# --------------------------------------------------------------------------------------------------------------
# Entry point


def render_report(inputs: ReportInputs, reports_root: Path, *, date: dt.date | None = None,
                  title: str = "Scaling-law planning report", headline_compute: float | None = None) -> Path:
    """Write ``reports_root/<date>/index.html`` (+ figures and ``summary.json``), point ``reports_root/latest``
    at the newest dated report, and return the index path.

    ``headline_compute``: the budget (FLOPs) of the "at a glance" lines for every family; by default each
    family gets the power of ten nearest 10× its largest run.
    """
    date = date or dt.date.today()
    reports_root = Path(reports_root)
    reports_root.mkdir(parents=True, exist_ok=True)
    out = reports_root / date.isoformat()
    now = dt.datetime.now().astimezone()
    # The previous report: this folder's own summary when the same date is rewritten (read before it is
    # replaced), else the most recent earlier dated folder with a readable summary.
    previous = _previous_summary(reports_root, date)

    inp = _normalised(inputs)
    fams = _family_views(inp, headline_compute)
    drift = _Drift.build(previous, fams) if previous else None
    tmp = reports_root / f".{date.isoformat()}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        with _plot_style():
            sections = [_family_section(f, tmp) for f in fams]
        summary = _summary(fams, date, now, title)
        body = "\n".join([
            f"<h1>{_e(title)}</h1>",
            f"<p class=meta>{_e(date.isoformat())} · generated {_e(now.isoformat(timespec='seconds'))} · "
            f"{len(inp.points)} schedule-valid runs in {inp.points.family.nunique()} families · "
            f"{int((inp.exclusions.kind == 'run').sum())} runs excluded · {len(inp.quarantine)} inputs quarantined"
            "</p>",
            _glance_section(fams),
            _drift_section(previous, drift),
            _overview(fams),
            *sections,
            _quarantine_section(inp.quarantine),
            _reference_section(),
            _method_section(),
        ])
        (tmp / "summary.json").write_text(json.dumps(jsonable(summary), indent=1, allow_nan=False) + "\n",
                                          encoding="utf-8")
        (tmp / "index.html").write_text(_PAGE.format(title=_e(title), body=body), encoding="utf-8")
        old = None
        if out.exists() or out.is_symlink():
            old = reports_root / f".{date.isoformat()}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            if old is not None:
                old.rename(out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _point_latest(reports_root)
    return out / "index.html"


def _dated_folders(root: Path) -> list[tuple[dt.date, Path]]:
    found = []
    for child in root.iterdir() if root.is_dir() else []:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", child.name) or child.is_symlink() or not child.is_dir():
            continue
        try:
            found.append((dt.date.fromisoformat(child.name), child))
        except ValueError:
            continue
    return sorted(found)


def _point_latest(root: Path) -> None:
    dated = _dated_folders(root)
    if not dated:
        return
    target = dated[-1][1]
    latest = root / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.is_dir():
        shutil.rmtree(latest)
    try:
        os.symlink(target.name, latest, target_is_directory=True)
    except OSError:  # filesystems without symlinks: a copy
        shutil.copytree(target, latest)


def _normalised(inputs: ReportInputs) -> ReportInputs:
    """Every table with at least its expected columns, family names as strings."""

    def norm(df: pd.DataFrame | None, kind: str) -> pd.DataFrame:
        df = pd.DataFrame(columns=_COLUMNS[kind]) if df is None else df.copy()
        for c in _COLUMNS[kind]:
            if c not in df:
                df[c] = np.nan if c not in ("family", "run_id", "kind", "reason") else ""
        if "family" in df:
            df["family"] = df["family"].map(lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x))
                                            else str(x))
        return df.reset_index(drop=True)

    return ReportInputs(points=norm(inputs.points, "points"), fits=norm(inputs.fits, "fits"),
                        bootstrap=norm(inputs.bootstrap, "bootstrap"), plans=norm(inputs.plans, "plans"),
                        exclusions=norm(inputs.exclusions, "exclusions"),
                        quarantine=norm(inputs.quarantine, "quarantine"))


# --------------------------------------------------------------------------------------------------------------
# Vectorised law evaluation. ``P`` is an (S, 5) array of (E, A, B, alpha, beta) rows.


def _cols(P: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(P[:, i][:, None] for i in range(5))


def _predict(P: np.ndarray, N, D) -> np.ndarray:
    """(S, K) losses for S parameter rows at K points (N, D broadcast to length K)."""
    E, A, B, al, be = _cols(P)
    N, D = np.broadcast_arrays(np.atleast_1d(np.asarray(N, float)), np.atleast_1d(np.asarray(D, float)))
    with np.errstate(all="ignore"):
        return E + A * N[None, :] ** -al + B * D[None, :] ** -be


def _optimum(P: np.ndarray, C) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, K) arrays of N*, D*, L* for S parameter rows at K budgets (closed form, C = 6·N·D)."""
    E, A, B, al, be = _cols(P)
    C = np.atleast_1d(np.asarray(C, float))[None, :]
    with np.errstate(all="ignore"):
        G = (al * A / (be * B)) ** (1.0 / (al + be))
        n = G * (C / 6.0) ** (be / (al + be))
        d = C / 6.0 / n
        loss = E + A * n ** -al + B * d ** -be
    return n, d, loss


def _interval(v: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of the finite, positive entries (as the allocation table does)."""
    v = np.where(np.isfinite(v) & (v > 0), v, np.nan)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(v, q, axis=0) if v.shape[0] else (np.full(v.shape[1:], np.nan),) * 2
    return lo, hi


# --------------------------------------------------------------------------------------------------------------
# Per-family view: everything the page and summary.json say about one family, computed once.


@dataclass
class _Family:
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
            return {k: _f(r[k]) for k in ("compute", "n_params", "n_tokens", "tokens_per_param", "loss", "n_params_lo",
                                          "n_params_hi", "n_tokens_lo", "n_tokens_hi", "loss_lo", "loss_hi")}
        n, d, loss = (v[0, 0] for v in _optimum(self.P, c))
        row = dict(compute=c, n_params=n, n_tokens=d, tokens_per_param=d / n, loss=loss)
        for name, v in zip(("n_params", "n_tokens", "loss"), _optimum(self.boot, c) if len(self.boot) else ()):
            lo, hi = _interval(v, self.level)
            row[f"{name}_lo"], row[f"{name}_hi"] = float(lo[0]), float(hi[0])
        return {k: _f(v) for k, v in row.items()}


def _family_views(inp: ReportInputs, headline_compute: float | None) -> list[_Family]:
    names = sorted(set(inp.fits.family) | set(inp.points.family))
    slugs = _slugs(names)
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
        f = _Family(name=name, slug=slugs[name], pts=pts.sort_values("flops"), fit=fit, P=None,
                    boot=np.empty((0, 5)), plans=inp.plans[inp.plans.family == name].sort_values("compute"),
                    excl=inp.exclusions[inp.exclusions.family == name])
        if fit is not None:
            f.ci = _loads(fit.get("ci"), {})
            f.diagnostics = _loads(fit.get("diagnostics"), {})
            f.backtest = _loads(fit.get("backtest"), {})
            f.warnings = [str(w) for w in _loads(fit.get("warnings"), [])]
            f.level = float(_loads(fit.get("settings"), {}).get("level", 0.95) or 0.95)
            P = np.array([[_f(fit.get(p)) for p in PARAMS]])
            if fit.get("status") == "ok" and np.isfinite(P).all():
                f.P = P
                b = inp.bootstrap[inp.bootstrap.family == name][list(PARAMS)].to_numpy(float)
                f.boot = b[np.isfinite(b).all(axis=1)]
            n_fit = _f(fit.get("n_points"))
            f.stale = f.ok and np.isfinite(n_fit) and int(n_fit) != len(pts)
            pub = fit.get("publishable")
            f.publishable = f.ok and (pub is None or pub is pd.NA or (isinstance(pub, float) and np.isnan(pub))
                                      or bool(pub))
            f.withheld = str(fit.get("withheld_reason") or "") if f.ok and not f.publishable else ""
        mf = _f(fit.get("max_observed_flops")) if fit else float("nan")
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


def _slice_optima(f: _Family) -> list[dict[str, float]]:
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
            row["fit_n"] = float(_optimum(f.P, c)[0][0, 0])
            if len(f.boot):
                lo, hi = _interval(_optimum(f.boot, c)[0], f.level)
                row["fit_n_lo"], row["fit_n_hi"] = float(lo[0]), float(hi[0])
        out.append(row)
    return out


def _best_slice(f: _Family) -> dict:
    """The most telling slice: an interior optimum first, then the most model sizes, then the largest budget."""
    return max(f.slices, key=lambda s: (not s["edge"], s["n_sizes"], s["compute"]))


def _slice_text(s: dict) -> str:
    text = (f"at C = {_flops(s['compute'], 2)} ({s['n_sizes']} sizes) the lowest loss is N = {_human(s['best_n'])} "
            f"({s['best_loss']:.3f})" + (", at the edge of the slice" if s["edge"] else ""))
    if "fit_n" in s:
        text += f"; the fit puts N* at {_hci(s['fit_n'], s.get('fit_n_lo'), s.get('fit_n_hi'))}"
    return text


def _assess(f: _Family) -> None:
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
    rms = _f(d.get("rmse_log_residual"))
    if np.isfinite(rms):
        msg = (f"the law misses the fitted runs by {rms:.1%} rms (log residual; a good fit of one family is "
               f"well under {RMS_WARN:.0%})")
        (sev if rms > RMS_BAD else cau if rms > RMS_WARN else [None]).append(msg)
    if "error" in bt:
        cau.append(f"no backtest: {bt['error']}")
    elif bt:
        mean_abs = _f(bt.get("mean_abs_rel_error"))
        rel = np.asarray(bt.get("holdout", {}).get("rel_error", []), float)
        bias = float(np.mean(rel)) if rel.size else float("nan")
        if np.isfinite(mean_abs) and mean_abs > BACKTEST_WARN:
            way = "too high" if bias > 0 else "too low"
            msg = (f"fitted without its {bt.get('n_holdout', '?')} largest-compute runs, the law predicts them "
                   f"{abs(bias):.1%} {way} on average (max {_f(bt.get('max_abs_rel_error')):.1%})")
            (sev if mean_abs > BACKTEST_BAD else cau).append(msg)
    a_ci = f.ci.get("a")
    if a_ci is not None and len(a_ci) == 2 and all(np.isfinite(_f(v)) for v in a_ci):
        width = _f(a_ci[1]) - _f(a_ci[0])
        if width > A_CI_WARN:
            msg = (f"the compute-optimal exponent a = β/(α+β) = {_f(f.fit.get('a_exponent')):.3f} has 95% interval "
                   f"[{_f(a_ci[0]):.2f}, {_f(a_ci[1]):.2f}]: how to split larger budgets between N and D is "
                   f"{'not determined' if width > A_CI_BAD else 'loosely determined'} by these runs")
            (sev if width > A_CI_BAD else cau).append(msg)
    for name in d.get("at_bounds", []) or []:
        if name == "E":
            cau.append(f"E = {_f(f.fit.get('E')):.3g} is at its bound: no irreducible loss was identified, so "
                       "predicted losses keep falling without limit at large compute")
        else:
            cau.append(f"{name} is at the edge of its allowed range")
    cond = _f(d.get("hessian_condition"))
    if not np.isfinite(cond) or cond > 1e8:
        cau.append("some parameter combination is flat (Hessian condition "
                   f"{'∞' if not np.isfinite(cond) else f'{cond:.1e}'}): individual parameters are not identified")
    if not len(f.boot):
        cau.append("no bootstrap samples stored: no uncertainty bands on the frontier, N* or the plans")
    if f.stale:
        cau.append(f"the fit used {int(_f(f.fit.get('n_points')))} runs but the family now has {len(f.pts)}: "
                   "it predates the current points (rerun the fit stage)")
    n = int(_f(f.fit.get("n_points"), 0))
    if 0 < n < 15:
        cau.append(f"only {n} runs fitted")
    covered = ("poor fit", " bound ", "Hessian", "term vanishes", "numerical limit")
    cau += [f"fitter: {w}" for w in f.warnings if not any(k in w for k in covered)]
    f.verdict = "unreliable" if sev else "caution" if cau else "ok"


# --------------------------------------------------------------------------------------------------------------
# summary.json and the comparison with the previous report


def _summary(fams: list[_Family], date: dt.date, now: dt.datetime, title: str) -> dict:
    out: dict[str, Any] = {"schema": SUMMARY_SCHEMA, "generated_at": now.isoformat(timespec="seconds"),
                           "report_date": date.isoformat(), "title": title, "families": {}}
    for f in fams:
        fit = f.fit or {}
        fam: dict[str, Any] = {
            "status": "missing" if f.fit is None else str(fit.get("status")),
            "error": fit.get("error") if f.fit is not None and not f.ok else None,
            "verdict": f.verdict, "verdict_reasons": f.severe + f.cautions,
            "n_points": int(_f(fit.get("n_points"), len(f.pts))) if f.fit else len(f.pts),
            "run_ids": sorted(str(r) for r in f.pts.run_id),
            "losses": {str(r.run_id): float(r.loss) for r in f.pts.itertuples(index=False)},
            "max_observed_flops": f.max_flops,
            "fitted_at": str(fit.get("fitted_at")) if fit.get("fitted_at") is not None else None,
            "input_hash": fit.get("input_hash"),
        }
        if f.ok:
            fam.update(
                params={p: float(f.P[0, i]) for i, p in enumerate(PARAMS)},
                a=float(_f(fit.get("a_exponent"))), G=float(_f(fit.get("G"))),
                ci={k: [_f(v[0]), _f(v[1])] for k, v in f.ci.items() if isinstance(v, list | tuple) and len(v) == 2},
                level=f.level, objective=_f(fit.get("objective")),
                rmse_log_residual=_f(f.diagnostics.get("rmse_log_residual")),
                backtest_mean_abs_rel_error=_f(f.backtest.get("mean_abs_rel_error")),
                headline=f.headline, isoflop_slices=f.slices,
                publishable=f.publishable, withheld_reason=f.withheld or None,
                plans=[f.plan_at(c) for c in _summary_budgets(f)] if f.publishable else [],
                bootstrap=f.boot.tolist(),
            )
        out["families"][f.name] = fam
    return out


def _summary_budgets(f: _Family) -> list[float]:
    """Standard budgets (1e18…1e26 FLOPs), every budget of the stored plan table, and the headline budget."""
    cs = set(STANDARD_BUDGETS) | {float(c) for c in f.plans.compute if np.isfinite(_f(c)) and _f(c) > 0}
    if f.headline:
        cs.add(f.headline["compute"])
    return sorted(cs)


def _previous_summary(root: Path, date: dt.date) -> dict | None:
    """The most recent earlier report's summary (this date's own folder first), or None."""
    same = root / date.isoformat() / "summary.json"
    candidates = [same] if same.is_file() else []
    candidates += [p / "summary.json" for d, p in reversed(_dated_folders(root)) if d < date]
    for path in candidates:
        s = _read_summary(path)
        if s is not None:
            s["_folder"] = path.parent.name
            s["_same_folder"] = path == same
            return s
    return None


def _read_summary(path: Path) -> dict | None:
    try:
        s = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(s, dict) or not isinstance(s.get("families"), dict):
        return None
    return s


@dataclass
class _Drift:
    params: list[dict]  # per family: status change, run changes, parameter old/new
    plans: list[dict]  # per family and budget: N*, D*, loss old/new
    scored: pd.DataFrame  # runs new since the previous fit, scored against the previous law
    unchanged: bool

    @classmethod
    def build(cls, prev: dict, fams: list[_Family]) -> _Drift:
        pf = prev["families"]
        cur = {f.name: f for f in fams}
        params, plans, scored = [], [], []
        for name in sorted(set(pf) | set(cur)):
            old, new = pf.get(name), cur.get(name)
            row: dict[str, Any] = {"family": name, "new": new, "old": old}
            if old is None or new is None:
                params.append(row)
                continue
            old_ids = {str(r) for r in old.get("run_ids") or []}
            new_losses = dict(zip(new.pts.run_id.astype(str), new.pts.loss.astype(float)))
            old_losses = old.get("losses") if isinstance(old.get("losses"), dict) else {}
            row.update(added=sorted(set(new_losses) - old_ids), removed=sorted(old_ids - set(new_losses)),
                       changed=sorted(r for r in set(new_losses) & set(old_losses)
                                      if not _close(old_losses[r], new_losses[r])),
                       n_old=old.get("n_points"), n_new=int(_f((new.fit or {}).get("n_points"), len(new.pts))))
            op = old.get("params") if old.get("status") == "ok" else None
            if op and new.ok:
                row["values"] = {p: (_f(op.get(p)), float(new.P[0, i])) for i, p in enumerate(PARAMS)}
                row["values"]["a"] = (_f(old.get("a")), _f(new.fit.get("a_exponent")))
            row["same"] = (not (row["added"] or row["removed"] or row["changed"])
                           and old.get("status") == (new.fit or {}).get("status", "missing")
                           and all(_close(o, n) for o, n in row.get("values", {}).values()))
            if "values" in row and not row["same"]:
                plans += cls._plan_rows(name, old, new)
            params.append(row)
            P_old = np.array([[_f(op.get(p)) for p in PARAMS]]) if op else None
            if P_old is not None and np.isfinite(P_old).all() and row["added"]:
                pts = new.pts[new.pts.run_id.astype(str).isin(row["added"])]
                pred = _predict(P_old, pts.n_params.to_numpy(float), pts.n_tokens.to_numpy(float))[0]
                try:
                    boot = np.array([[_f(v) for v in r] for r in old.get("bootstrap") or []], float).reshape(-1, 5)
                    boot = boot[np.isfinite(boot).all(axis=1)]
                except (TypeError, ValueError):
                    boot = np.empty((0, 5))
                if len(boot):
                    lo, hi = _interval(_predict(boot, pts.n_params.to_numpy(float), pts.n_tokens.to_numpy(float)),
                                       _f(old.get("level"), 0.95))
                else:
                    lo = hi = np.full(len(pts), np.nan)
                scored.append(pd.DataFrame({
                    "family": name, "run_id": pts.run_id.astype(str).to_numpy(), "n_params": pts.n_params.to_numpy(),
                    "n_tokens": pts.n_tokens.to_numpy(), "flops": pts.flops.to_numpy(), "loss": pts.loss.to_numpy(),
                    "predicted": pred, "lo": lo, "hi": hi,
                    "extrapolation": pts.flops.to_numpy() / _f(old.get("max_observed_flops"))}))
        scored_df = (pd.concat(scored, ignore_index=True) if scored else pd.DataFrame(
            columns=["family", "run_id", "n_params", "n_tokens", "flops", "loss", "predicted", "lo", "hi",
                     "extrapolation"]))
        scored_df["rel_error"] = scored_df.predicted.astype(float) / scored_df.loss.astype(float) - 1.0
        unchanged = all(r.get("same", False) for r in params)
        return cls(params=params, plans=plans, scored=scored_df, unchanged=unchanged)

    @staticmethod
    def _plan_rows(name: str, old: dict, new: _Family) -> list[dict]:
        old_plans = {float(p["compute"]): p for p in old.get("plans") or [] if p.get("compute")}
        near = [c for c in old_plans if 0.1 <= c / new.max_flops <= 1000]  # what the team may train next
        if not near:
            near = [c for c in STANDARD_BUDGETS if c in old_plans][:3]
        rows = []
        for c in sorted(near):
            now = new.plan_at(c)
            o = old_plans[c]
            rows.append({"family": name, "compute": c, "extrapolation": c / new.max_flops,
                         **{k: (_f(o.get(k)), _f(now.get(k))) for k in ("n_params", "n_tokens", "loss")}})
        return rows


def _close(a, b, rtol: float = 1e-9) -> bool:
    a, b = _f(a), _f(b)
    return (np.isnan(a) and np.isnan(b)) or bool(np.isclose(a, b, rtol=rtol, atol=0))


# --------------------------------------------------------------------------------------------------------------
# HTML sections


_VERDICT_LABEL = {"ok": "fit OK", "caution": "use with care", "unreliable": "NOT RELIABLE", "failed": "FIT FAILED",
                  "missing": "NOT FITTED"}


def _badge(f: _Family) -> str:
    return f"<span class='badge {f.verdict}'>{_VERDICT_LABEL[f.verdict]}</span>"


def _glance_section(fams: list[_Family]) -> str:
    if not fams:
        return "<h2>At a glance</h2><p>No family has schedule-valid runs yet.</p>"
    lines = []
    for f in fams:
        link = f"<a href='#{f.anchor}'><b>{_e(f.name)}</b></a>"
        if not f.ok or f.headline is None:
            what = f"plan withheld: {f.withheld}" if f.ok and not f.publishable else "; ".join(f.severe) or "no plan"
            more = len(f.severe) + len(f.cautions) - 1
            why = (f"<div class=glance-why>{_e(f.severe[1] if len(f.severe) > 1 else '')}"
                   f"{f' (+{more - 1} more issues)' if more > 1 else ''}</div>" if f.ok and len(f.severe) > 1 else "")
            if f.slices:
                why += f"<div class=glance-obs>Runs alone: {_slice_text(_best_slice(f))}.</div>"
            lines.append(f"<li class={f.verdict}>{_badge(f)} {link}: {_e(what)}{why}</li>")
            continue
        h = f.headline
        text = (f"with C = <b>{_flops(h['compute'])}</b> FLOPs ({_times(h['compute'] / f.max_flops)} largest run): "
                f"N* = <b>{_hci(h['n_params'], h.get('n_params_lo'), h.get('n_params_hi'))}</b> params, "
                f"D* = <b>{_hci(h['n_tokens'], h.get('n_tokens_lo'), h.get('n_tokens_hi'))}</b> tokens "
                f"({_tpp(h['tokens_per_param'])} tokens/param), expected loss "
                f"<b>{_ci(h['loss'], (h.get('loss_lo'), h.get('loss_hi')), '.3f')}</b> nats/token")
        tail = ""
        if f.verdict == "unreliable":
            more = len(f.severe) + len(f.cautions) - 1
            tail = (f"<div class=glance-why>Do not plan from this fit: {_e(f.severe[0])}"
                    f"{f' (+{more} more issues)' if more else ''}.</div>")
        elif f.verdict == "caution":
            tail = f"<div class=glance-why>{_e(f.cautions[0])}.</div>"
        if f.verdict == "unreliable" and f.slices:
            tail += f"<div class=glance-obs>Runs alone: {_slice_text(_best_slice(f))}.</div>"
        lines.append(f"<li class={f.verdict}>{_badge(f)} {link}: {text}{tail}</li>")
    note = ("<p class=note>Brackets: 95% bootstrap intervals (parameter uncertainty only). Budget: the power of ten "
            "nearest 10× the family's largest run unless configured. Full tables per family below.</p>")
    return "<h2>At a glance</h2><ul class=glance>" + "".join(lines) + "</ul>" + note


def _drift_section(prev: dict | None, drift: _Drift | None) -> str:
    head = "<h2 id=drift>What changed since the last refit</h2>"
    if prev is None or drift is None:
        return head + ("<p>No previous report to compare with: this is the first report with a summary.json "
                       "under this folder.</p>")
    which = ("the earlier render of this same date" if prev.get("_same_folder") else f"the report of {prev['_folder']}")
    ref = (f"<p>Compared with {_e(which)} (generated {_e(prev.get('generated_at', '?'))}).</p>")
    if drift.unchanged:
        return head + ref + "<p>Nothing changed: same runs, same losses, same fitted parameters in every family.</p>"
    parts = [head, ref]
    # parameter drift
    rows = []
    same = [r["family"] for r in drift.params if r.get("same")]
    for r in drift.params:
        if r.get("same"):
            continue
        name = _e(r["family"])
        if r["old"] is None:
            rows.append(f"<tr><td>{name}</td><td colspan=7 class=text>new family ({len(r['new'].pts)} runs)</td></tr>")
            continue
        if r["new"] is None:
            rows.append(f"<tr><td>{name}</td><td colspan=7 class=text>no longer present (had "
                        f"{_e(r['old'].get('n_points'))} runs)</td></tr>")
            continue
        runs = f"{_e(r['n_old'])} → {_e(r['n_new'])}"
        notes = []
        if r["added"]:
            notes.append(f"+{len(r['added'])} new")
        if r["removed"]:
            notes.append(f"−{len(r['removed'])} dropped: {', '.join(_e(x) for x in r['removed'][:5])}"
                         + (" …" if len(r["removed"]) > 5 else ""))
        if r["changed"]:
            notes.append(f"{len(r['changed'])} with a changed loss")
        runs += f"<br><span class=ci>{'; '.join(notes)}</span>" if notes else ""
        if "values" not in r:
            old_s = r["old"].get("status")
            new_s = (r["new"].fit or {}).get("status", "not fitted")
            rows.append(f"<tr><td>{name}</td><td>{runs}</td><td colspan=6 class=text>fit {_e(old_s)} → "
                        f"{_e(new_s)}</td></tr>")
            continue
        cells = "".join(_drift_cell(r["family"], p, *r["values"][p]) for p in (*PARAMS, "a"))
        rows.append(f"<tr><td>{name}</td><td>{runs}</td>{cells}</tr>")
    parts.append("<h3>Fitted parameters (old → new)</h3><table class=drift><tr><th>family</th><th>runs fitted</th>"
                 "<th>E</th><th>A</th><th>B</th><th>α</th><th>β</th><th>a</th></tr>" + "".join(rows) + "</table>"
                 + (f"<p class=note>Unchanged (same runs and fit): {_e(', '.join(same))}.</p>" if same else ""))
    # plan drift
    if drift.plans:
        rows = []
        span = pd.Series([p["family"] for p in drift.plans]).value_counts().to_dict()
        for i, p in enumerate(drift.plans):
            cls = " class=extrap" if p["extrapolation"] > 100 else ""
            first = i == 0 or drift.plans[i - 1]["family"] != p["family"]
            fam_cell = f"<td rowspan={span[p['family']]}>{_e(p['family'])}</td>" if first else ""
            rows.append(f"<tr{cls}>{fam_cell}<td class=num>{_flops(p['compute'])}</td>"
                        f"<td>{_times(p['extrapolation'])}</td>"
                        + _drift_cell(p["family"], "n_params", *p["n_params"], fmt=_human, tag=p["compute"])
                        + _drift_cell(p["family"], "n_tokens", *p["n_tokens"], fmt=_human, tag=p["compute"])
                        + _drift_cell(p["family"], "loss", *p["loss"], fmt=lambda v: f"{v:.4f}", tag=p["compute"],
                                      absolute=True) + "</tr>")
        parts.append("<h3>Compute-optimal plans (old → new)</h3><table class=drift><tr><th>family</th>"
                     "<th>compute (FLOPs)</th><th>× largest run</th><th>N* (params)</th><th>D* (tokens)</th>"
                     "<th>loss (nats/token)</th></tr>" + "".join(rows) + "</table>")
    # prediction scoring
    parts.append("<h3>How the previous fit predicted the runs added since</h3>")
    s = drift.scored
    if s.empty:
        parts.append("<p>No run was added to a family that already had a fit.</p>")
    else:
        agg = []
        for fam, g in s.groupby("family", sort=True):
            inside = ((g.loss >= g.lo) & (g.loss <= g.hi)).sum() if g.lo.notna().any() else None
            agg.append(f"<li><b>{_e(fam)}</b>: {len(g)} new runs, mean |error| {g.rel_error.abs().mean():.2%}, "
                       f"mean signed {g.rel_error.mean():+.2%}, max |error| {g.rel_error.abs().max():.2%}"
                       + (f"; {inside} of {len(g)} inside the previous 95% band" if inside is not None else "")
                       + "</li>")
        parts.append("<ul>" + "".join(agg) + "</ul>")
        rows = "".join(
            f"<tr data-run='{_e(r.run_id)}'><td>{_e(r.family)}</td><td class=text>{_e(r.run_id)}</td>"
            f"<td>{_human(r.n_params)}</td><td>{_human(r.n_tokens)}</td><td>{_flops(r.flops, 2)}</td>"
            f"<td>{_times(r.extrapolation)}</td><td>{r.loss:.4f}</td>"
            f"<td>{_ci(r.predicted, (r.lo, r.hi), '.4f')}</td>"
            f"<td class='{'big' if abs(r.rel_error) > DRIFT_BIG else ''}'>{r.rel_error:+.2%}</td></tr>"
            for r in s.sort_values(["family", "flops"]).itertuples(index=False))
        table = ("<table class=scored><tr><th>family</th><th>run</th><th>N</th><th>D</th><th>C (FLOPs)</th>"
                 "<th>× previous largest run</th><th>observed loss</th><th>previous prediction [95%]</th>"
                 "<th>error L̂/L − 1</th></tr>" + rows + "</table>")
        parts.append(table if len(s) <= 25 else f"<details><summary>{len(s)} runs</summary>{table}</details>")
    return "\n".join(parts)


def _drift_cell(fam: str, key: str, old: float, new: float, *, fmt=None, tag=None, absolute: bool = False) -> str:
    fmt = fmt or (lambda v: f"{v:.4g}")
    o, n = _f(old), _f(new)
    if not (np.isfinite(o) and np.isfinite(n)):
        return f"<td>{_e(fmt(o) if np.isfinite(o) else '–')} → {_e(fmt(n) if np.isfinite(n) else '–')}</td>"
    if absolute:
        change, big = f"{n - o:+.4f}", o != 0 and abs(n / o - 1) > DRIFT_BIG / 5
    else:
        rel = n / o - 1 if o != 0 else float("inf")
        change, big = (f"{rel:+.1%}" if abs(rel) < 10 else f"×{n / o:.3g}"), abs(rel) > DRIFT_BIG
    attrs = f" data-family='{_e(fam)}' data-key='{_e(key)}' data-old='{o!r}' data-new='{n!r}'"
    if tag is not None:
        attrs += f" data-compute='{tag!r}'"
    return (f"<td{attrs} class='{'big' if big else ''}'>{_e(fmt(o))} → {_e(fmt(n))}"
            f"<br><span class=ci>{_e(change)}</span></td>")


def _overview(fams: list[_Family]) -> str:
    rows = []
    for f in fams:
        link = f"<a href='#{f.anchor}'>{_e(f.name)}</a>"
        if not f.ok:
            rows.append(f"<tr><td>{link}</td><td>{_badge(f)}</td><td>{len(f.pts)}</td>"
                        f"<td colspan=7 class='text bad'>{_e('; '.join(f.severe))}</td></tr>")
            continue
        ci, d = f.ci, f.diagnostics
        bt = _f(f.backtest.get("mean_abs_rel_error"))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in [
            link, _badge(f), _e(f.fit.get("n_points")),
            _ci(f.fit["E"], ci.get("E")), _ci(f.fit["alpha"], ci.get("alpha")), _ci(f.fit["beta"], ci.get("beta")),
            _ci(f.fit.get("a_exponent"), ci.get("a"), ".3f"),
            _pct(d.get("rmse_log_residual")), _pct(bt), len(f.warnings)]) + "</tr>")
    return ("<h2>Overview</h2><table><tr><th>family</th><th>verdict</th><th>runs fitted</th><th>E (nats)</th>"
            "<th>α</th><th>β</th><th>a = β/(α+β)</th><th>rms log residual</th><th>backtest mean |error|</th>"
            "<th>warnings</th></tr>" + "".join(rows) + "</table>")


def _family_section(f: _Family, out: Path) -> str:
    parts = [f"<h2 id='{f.anchor}'>Family {_e(f.name)} {_badge(f)}</h2>"]
    parts.append(_verdict_box(f))
    figs: list[tuple[str, str, str]] = []
    if not len(f.pts):
        parts.append("<p class=bad>No schedule-valid run of this family is left in clean.points.</p>")
    elif not f.ok:
        if len(f.pts):
            figs.append(("data", *_plot_fit(f, out)))
    else:
        fit, ci = f.fit, f.ci
        fitted_at = fit.get("fitted_at")
        parts.append(
            f"<p class=law>L(N, D) = {_ci(fit['E'], ci.get('E'))} + {_ci(fit['A'], ci.get('A'))} / "
            f"N<sup>{_ci(fit['alpha'], ci.get('alpha'))}</sup> + {_ci(fit['B'], ci.get('B'))} / "
            f"D<sup>{_ci(fit['beta'], ci.get('beta'))}</sup></p>"
            f"<p class=note>nats/token; N parameters, D training tokens; "
            f"{'95% bootstrap intervals in brackets' if ci else 'no bootstrap: no intervals'}.</p>"
            f"<p>Compute-optimal: N* = {_f(fit.get('G')):.4g}·(C/6)<sup>{_f(fit.get('a_exponent')):.3f}</sup>, "
            f"D* = (C/6)/N*. Fitted on {_e(fit.get('n_points'))} runs up to {_flops(f.max_flops, 2)} FLOPs; objective "
            f"{_f(fit.get('objective')):.5g} (sum of Huber δ={_f(fit.get('delta')):g} on log-loss residuals), "
            f"{_f(fit.get('fit_seconds'), 0) * 1e3:.0f} ms"
            + (f", fitted {_e(str(fitted_at)[:19])}" if fitted_at is not None and str(fitted_at) != "NaT" else "")
            + ".</p>")
        parts.append(_backtest_block(f))
    if f.ok and len(f.pts):
        figs += [("fit", *_plot_fit(f, out)), ("frontier", *_plot_frontier(f, out)),
                 ("residuals", *_plot_residuals(f, out)), ("isoflop", *_plot_isoflop(f, out))]
    if figs:
        parts.append("<div class=figs>" + "".join(
            f"<figure data-fig='{kind}'><img src='data:image/png;base64,{b64}' alt='{_e(kind)} figure for "
            f"{_e(f.name)}'><figcaption>{caption}</figcaption></figure>" for kind, b64, caption in figs) + "</div>")
    if f.ok:
        parts.append(_plan_table(f))
    parts.append(_exclusion_table(f.excl))
    return f"<section data-family='{_e(f.name)}'>" + "\n".join(parts) + "</section>"


def _verdict_box(f: _Family) -> str:
    if f.verdict == "ok":
        d, bt = f.diagnostics, f.backtest
        bits = [f"rms log residual {_pct(d.get('rmse_log_residual'))}"]
        if "mean_abs_rel_error" in bt:
            bits.append(f"backtest error {_pct(bt['mean_abs_rel_error'])} on the {bt.get('n_holdout')} largest runs")
        if "a" in f.ci:
            bits.append(f"a = {_ci(f.fit.get('a_exponent'), f.ci['a'], '.3f')}")
        return f"<div class='verdict ok'><b>Fit looks reliable</b>: {', '.join(bits)}.{_raw_warnings(f)}</div>"
    title = {"caution": "Use with care", "unreliable": "Do not use this fit for planning",
             "failed": "No fit", "missing": "No fit"}[f.verdict]
    items = [f"<li class=sev>{_e(s)}</li>" for s in f.severe] + [f"<li>{_e(s)}</li>" for s in f.cautions]
    extra = ""
    if f.verdict == "unreliable":
        what = "The frontier and IsoFLOP optima" if not f.publishable else "The plans, frontier and IsoFLOP optima"
        extra = (f"<p>{what} below are what this law implies, not what the runs support; the residual plot shows "
                 "the pattern the law misses (e.g. a different functional form, too few large runs, or "
                 "learning-rate/schedule effects across sizes).</p>")
    return f"<div class='verdict {f.verdict}'><b>{title}</b><ul>{''.join(items)}</ul>{extra}{_raw_warnings(f)}</div>"


def _slices_note(f: _Family) -> str:
    if not f.slices:
        return ""
    return ("<p class=slices><b>IsoFLOP check</b> (model-free): "
            + "; ".join(_slice_text(s) for s in f.slices) + ".</p>")


def _raw_warnings(f: _Family) -> str:
    if not f.warnings:
        return _slices_note(f)
    return _slices_note(f) + "<p class=note>Fitter diagnostics: " + "; ".join(_e(w) for w in f.warnings) + ".</p>"


def _backtest_block(f: _Family) -> str:
    bt = f.backtest
    if not bt:
        return ""
    if "error" in bt:
        return f"<p><b>Backtest</b>: not possible: {_e(bt['error'])}</p>"
    h = bt.get("holdout", {})
    rel = np.asarray(h.get("rel_error", []), float)
    text = (f"<p><b>Backtest</b>: fitted on the {_e(bt.get('n_train'))} smallest-compute runs (up to "
            f"{_flops(_f(bt.get('train_max_flops')), 2)} FLOPs), the law predicts the {_e(bt.get('n_holdout'))} "
            f"largest with mean |error| {_pct(bt.get('mean_abs_rel_error'))} (max {_pct(bt.get('max_abs_rel_error'))}"
            + (f", mean signed {np.mean(rel):+.2%}" if rel.size else "") + ").</p>")
    if not rel.size:
        return text
    ids = []
    for n, d in zip(h.get("n_params", []), h.get("n_tokens", [])):
        m = f.pts[np.isclose(f.pts.n_params, n, rtol=1e-9) & np.isclose(f.pts.n_tokens, d, rtol=1e-9)]
        ids.append(", ".join(m.run_id.astype(str)) if len(m) else "")
    rows = "".join(
        f"<tr><td class=text>{_e(i)}</td><td>{_human(n)}</td><td>{_human(d)}</td><td>{_flops(c, 2)}</td>"
        f"<td>{lo:.4f}</td><td>{p:.4f}</td><td class='{'big' if abs(r) > BACKTEST_WARN else ''}'>{r:+.2%}</td></tr>"
        for i, n, d, c, lo, p, r in zip(ids, h.get("n_params", []), h.get("n_tokens", []), h.get("flops", []),
                                       h.get("loss", []), h.get("predicted", []), rel))
    return (text + "<table class=small><tr><th>held-out run</th><th>N</th><th>D</th><th>C (FLOPs)</th>"
            "<th>observed loss</th><th>predicted</th><th>error</th></tr>" + rows + "</table>")


def _plan_table(f: _Family) -> str:
    plans = f.plans
    if not f.publishable:
        return (f"<h3>Compute-optimal allocation</h3><p class=bad>Withheld by the fit stage's publication gate: "
                f"{_e(f.withheld or 'no reason recorded')}.</p>")
    if plans.empty:
        return "<h3>Compute-optimal allocation</h3><p>No allocation table (plans stage not run for this fit).</p>"
    has_ci = plans.n_params_lo.notna().any()
    head = ("<tr><th>compute (FLOPs)</th><th>N* (params)</th><th>D* (tokens)</th><th>tokens/param</th>"
            "<th>predicted loss (nats/token)</th><th>× largest run</th></tr>")
    rows = []
    hc = f.headline["compute"] if f.headline else None
    for p in plans.itertuples(index=False):
        n = _hci(p.n_params, p.n_params_lo, p.n_params_hi) if has_ci else _human(p.n_params)
        d = _hci(p.n_tokens, p.n_tokens_lo, p.n_tokens_hi) if has_ci else _human(p.n_tokens)
        loss = _ci(p.loss, (p.loss_lo, p.loss_hi) if has_ci else None, fmt=".4f")
        ext = _f(p.extrapolation)
        cls = ("headline" if hc is not None and _close(p.compute, hc) else "extrap" if ext > 100 else "")
        rows.append(f"<tr class='{cls}'><td>{_flops(p.compute)}</td><td>{n}</td><td>{d}</td>"
                    f"<td>{_tpp(p.tokens_per_param)}</td><td>{loss}</td><td>{_times(ext)}</td></tr>")
    return ("<h3>Compute-optimal allocation</h3><p class=note>Bold: the headline budget. Greyed rows extrapolate "
            "more than 100× beyond the largest observed run.</p><table>" + head + "".join(rows) + "</table>")


def _exclusion_table(excl: pd.DataFrame) -> str:
    runs = excl[excl.kind == "run"]
    rows = excl[excl.kind == "rows"]
    parts = ["<h3>Exclusions</h3>"]
    if runs.empty:
        parts.append("<p>No run was excluded.</p>")
    else:
        parts.append("<table><tr><th>run</th><th>reason</th><th>step</th><th>detail</th></tr>" + "".join(
            f"<tr><td>{_e(r.run_id)}</td><td>{_e(r.reason)}</td><td>{_e(r.step)}</td><td class=text>{_e(r.detail)}</td></tr>"
            for r in runs.itertuples(index=False)) + "</table>")
    if not rows.empty:
        rows = rows.assign(n_rows=pd.to_numeric(rows.n_rows, errors="coerce").fillna(0))
        by = rows.groupby("reason").agg(n_rows=("n_rows", "sum"), n_runs=("run_id", "nunique"))
        parts.append("<p>Rows dropped inside kept runs: " + "; ".join(
            f"{int(r.n_rows)} {_e(str(reason).replace('_', ' '))} rows in {int(r.n_runs)} runs"
            for reason, r in by.iterrows()) + ".</p>")
        special = rows[rows.reason != "warmup"]
        if not special.empty:
            parts.append("<ul>" + "".join(f"<li>{_e(r.run_id)}: {_e(r.detail)}</li>"
                                          for r in special.itertuples(index=False)) + "</ul>")
    return "\n".join(parts)


def _quarantine_section(q: pd.DataFrame) -> str:
    if q.empty:
        return "<h2>Quarantined inputs</h2><p>None: every file was read.</p>"
    rows = "".join(f"<tr><td>{_e(r.source_path)}</td><td>{_e(r.scope)}</td><td>{_e(r.location)}</td>"
                   f"<td>{_e(r.field)}</td><td class=text>{_e(r.reason)}</td></tr>" for r in q.itertuples(index=False))
    return ("<h2>Quarantined inputs</h2><table><tr><th>source</th><th>scope</th><th>where</th><th>field</th>"
            "<th>reason</th></tr>" + rows + "</table>")


def _reference_section() -> str:
    """Hoffmann et al.'s published law as a yardstick, with parameter caps and the common naive formula."""
    ref = chinchilla_reference()
    caps = [c[: -len("_n_params")] for c in ref.columns if c.startswith("cap_") and c.endswith("_n_params")]
    head = ("<tr><th>compute (FLOPs)</th><th>N* (params)</th><th>D* (tokens)</th><th>loss (nats)</th>"
            "<th>naive N = (C/(6B))<sup>β/(α+β)</sup></th>"
            + "".join(f"<th>N ≤ {float(c[4:]):.0e}: loss (efficiency)</th>" for c in caps) + "</tr>")
    rows = []
    for _, r in ref.iterrows():
        cells = [f"{r.compute:.3g}", f"{r.n_params:.3g}", f"{r.n_tokens:.3g}", f"{r.loss:.4f}",
                 f"{r.naive_n_params:.3g} ({r.naive_rel_diff:+.0%})"]
        cells += [f"{r[c + '_loss']:.4f} ({r[c + '_efficiency']:.3f})" if r[c + "_efficiency"] < 1
                  else f"{r[c + '_loss']:.4f} (cap not binding)" for c in caps]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<h2>Reference: Chinchilla's published law</h2><p>Hoffmann et al. (2022): E = 1.69, A = 406.4, "
            "B = 410.7, α = 0.34, β = 0.28 (nats/token). Compute-optimal N* = G·(C/6)<sup>a</sup> with a = β/(α+β), "
            "G = (αA/(βB))<sup>1/(α+β)</sup>; under a parameter cap the budget is spent on more tokens "
            "(C = 6·N·D) and efficiency = optimal loss / capped loss. The naive formula "
            "N = (C/(6B))<sup>β/(α+β)</sup> found in planning scripts drops G and misuses B: it "
            f"disagrees with N* by {ref.naive_rel_diff.iloc[0]:+.0%} at every budget.</p>"
            "<table>" + head + "".join(rows) + "</table>")


def _method_section() -> str:
    return (
        "<h2>Method</h2><p>Each run contributes one point: its final eval loss (else the mean of its last logged "
        "train losses) at the end of its planned schedule; runs that stopped early, diverged, or are worse than a "
        "smaller and shorter run of the same family are excluded (listed per family). The law "
        "L = E + A/N<sup>α</sup> + B/D<sup>β</sup> is fitted per family by minimising the sum of Huber(δ) losses of "
        "log L̂ − log L with a global search over the exponents (Besiroglu et al. 2024 protocol); intervals come "
        "from resampling runs (bootstrap) and reflect parameter uncertainty only, not run-to-run noise. "
        "Allocations use C = 6·N·D.</p>"
        f"<p>Verdict: <i>not reliable</i> when the rms log residual exceeds {RMS_BAD:.0%}, the backtest (fit "
        f"without the ~10% largest-compute runs, predict them) is off by more than {BACKTEST_BAD:.0%} on average, "
        f"or the 95% interval of a = β/(α+β) is wider than {A_CI_BAD:g}, or when the fit stage's publication gate "
        "withheld the plan (parameters at their bounds, backtest error over its threshold); <i>use with care</i> above "
        f"{RMS_WARN:.0%} / {BACKTEST_WARN:.0%} / {A_CI_WARN:g}, with a parameter at its bound, a flat direction "
        "of the objective, no bootstrap, a stale fit or fewer than 15 runs.</p>"
        f"<p>IsoFLOP panels use compute budgets at which the family has at least 3 model sizes within "
        f"±{ISO_TOLERANCE:.0%} of the same C (IsoFLOP slices), completed with powers of ten spanning the data. "
        "“What changed” compares with the previous report's summary.json: this date's earlier render when the "
        "report is rewritten, else the most recent earlier date. Every report folder holds summary.json (fitted "
        "parameters, intervals, run ids, plans at standard budgets, bootstrap samples) for this comparison.</p>")


# --------------------------------------------------------------------------------------------------------------
# Figures (matplotlib, rendered once into PNG bytes: embedded in the page and written beside it)


@contextlib.contextmanager
def _plot_style():
    """Readable fonts; quiet about glyphs a family name needs that the font lacks (they render as boxes)."""
    rc = {"font.size": 10.5, "axes.titlesize": 11.5, "axes.labelsize": 10.5, "xtick.labelsize": 9.5,
          "ytick.labelsize": 9.5, "legend.fontsize": 8.5, "axes.spines.top": False, "axes.spines.right": False}
    with plt.rc_context(rc), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Glyph .* missing from.*")
        warnings.filterwarnings("ignore", message=r".*Matplotlib currently does not support.*")
        yield


def _new_fig():
    fig, ax = plt.subplots(figsize=(6.4, 4.5), dpi=110)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.91)
    return fig, ax


def _save(fig, f: _Family, kind: str, out: Path) -> str:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    data = buf.getvalue()
    path = out / f"{f.slug}_{kind}.png"
    if path.resolve().parent != out.resolve():  # the slug cannot escape, but never write outside the folder
        raise ValueError(f"refusing to write {path} outside {out}")
    path.write_bytes(data)
    return base64.b64encode(data).decode("ascii")


def _size_norm(f: _Family):
    n = f.pts.n_params.to_numpy(float)
    lo, hi = (n.min(), n.max()) if n.size else (1.0, 10.0)
    return mcolors.LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 10)


def _size_colorbar(fig, ax, mappable, n_params: pd.Series) -> None:
    sizes = np.sort(n_params.unique())
    if sizes.size < 2:  # one model size: a label, not a colour scale
        ax.text(0.98, 0.97, f"N = {_human(sizes[0]) if sizes.size else '–'}", transform=ax.transAxes, ha="right",
                va="top", fontsize=9)
        return
    cb = fig.colorbar(mappable, ax=ax, pad=0.02, fraction=0.05)
    cb.set_label("model size N (parameters)")
    if sizes.size <= 8:
        cb.set_ticks(sizes)
    else:
        cb.ax.yaxis.set_major_locator(mticker.LogLocator(subs=(1, 2, 5)))
    cb.ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: _human(v)))
    cb.ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    cb.ax.yaxis.set_minor_locator(mticker.NullLocator())


def _loss_axis(axis, lo: float, hi: float) -> None:
    """Log loss axis from ``lo`` to ``hi`` with 3–9 ticks at plain numbers (1.5, 2, 2.5 …), not 2×10⁰."""
    ticks: list[float] = []
    if np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi:
        for subs in ((1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2, 2.2, 2.4, 2.6, 2.8, 3, 3.5, 4, 4.5, 5, 6, 7,
                      8, 9), (1, 1.2, 1.4, 1.6, 1.8, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9), (1, 1.5, 2, 3, 4, 5, 6, 8),
                     (1, 2, 3, 5), (1, 2, 5), (1, 3), (1,)):
            cand = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                    for m in subs]
            cand = [c for c in cand if lo <= c <= hi]
            if len(cand) <= 9:
                ticks = cand
                break
    axis.set_major_locator(mticker.FixedLocator(ticks) if len(ticks) >= 2 else mticker.LogLocator())
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_locator(mticker.NullLocator())
    axis.set_minor_formatter(mticker.NullFormatter())


def _flops_axis(axis) -> None:
    """FLOPs axis with plain '1e15' labels (as in the tables) and no minor ticks: it spans many decades."""
    axis.set_major_locator(mticker.LogLocator(numticks=8))
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: _flops(v)))
    axis.set_minor_locator(mticker.NullLocator())


def _human_axis(axis) -> None:
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: _human(v)))


def _plot_fit(f: _Family, out: Path) -> tuple[str, str]:
    fig, ax = _new_fig()
    fig.subplots_adjust(right=0.88)
    pts = f.pts
    sizes = np.sort(pts.n_params.unique())
    norm, cmap = _size_norm(f), plt.get_cmap("viridis")
    dgrid = np.geomspace(pts.n_tokens.min() / 1.5, pts.n_tokens.max() * 1.5, 80)
    curves = _predict(f.P, np.repeat(sizes, dgrid.size), np.tile(dgrid, sizes.size))[0].reshape(sizes.size, -1) \
        if f.ok else None
    for i, n in enumerate(sizes):
        color = cmap(norm(n))
        sub = pts[pts.n_params == n]
        ax.scatter(sub.n_tokens, sub.loss, color=color, s=24, zorder=3, edgecolor="white", linewidth=0.4)
        if curves is not None:
            ax.plot(dgrid, curves[i], color=color, lw=1.3, alpha=0.85)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = pts.loss.min() / 1.06, pts.loss.max() * 1.06
    ax.set_ylim(lo, hi)
    _loss_axis(ax.yaxis, lo, hi)
    _human_axis(ax.xaxis)
    ax.set_xlabel("training tokens D")
    ax.set_ylabel("final loss (nats/token)")
    ax.set_title(_mpl(f"{f.name}: loss vs tokens" + (", per model size" if f.ok else " (no fit)")))
    _size_colorbar(fig, ax, matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), pts.n_params)
    ax.text(0.02, 0.03, "dots: runs · lines: fitted law" if f.ok else "dots: runs", transform=ax.transAxes,
            fontsize=8.5, color="0.3")
    ax.grid(True, which="major", alpha=0.2)
    cap = ("Observed final losses (dots) and the fitted law at each model size N (lines)." if f.ok else
           "Observed final losses; no fitted law.")
    return _save(fig, f, "fit" if f.ok else "data", out), cap


def _plot_frontier(f: _Family, out: Path) -> tuple[str, str]:
    fig, ax = _new_fig()
    pts = f.pts
    cmax = max(pts.flops.max() * 1e3, (f.headline or {}).get("compute", 0) * 3)
    cgrid = np.geomspace(pts.flops.min() / 2, cmax, 160)
    opt = _optimum(f.P, cgrid)[2][0]
    ax.scatter(pts.flops, pts.loss, c=pts.n_params, cmap="viridis", norm=_size_norm(f), s=20, zorder=3,
               edgecolor="white", linewidth=0.4, label="observed runs (colour: N)")
    ax.plot(cgrid, opt, color="C3", lw=2, label="compute-optimal frontier (fit)")
    if len(f.boot):
        lo, hi = _interval(_optimum(f.boot, cgrid)[2], f.level)
        ax.fill_between(cgrid, lo, hi, color="C3", alpha=0.18, lw=0, label="95% bootstrap band")
    h = f.headline
    if h and np.isfinite(h["loss"]):
        err = None
        if np.isfinite(h.get("loss_lo", np.nan)):
            err = [[max(h["loss"] - h["loss_lo"], 0)], [max(h["loss_hi"] - h["loss"], 0)]]
        ax.errorbar([h["compute"]], [h["loss"]], yerr=err, fmt="*", color="k", ms=11, capsize=3, zorder=4,
                    label=f"headline budget {_flops(h['compute'])}: {h['loss']:.3f}")
    ymin_data, ymax = pts.loss.min(), pts.loss.max() * 1.15
    finite = opt[np.isfinite(opt) & (opt > 0)]
    ymin = min(ymin_data, finite.min() if finite.size else ymin_data, (h or {}).get("loss", np.inf)) * 0.9
    ax.set_ylim(max(ymin, ymin_data * 0.4), ymax)
    ax.set_yscale("log")
    _loss_axis(ax.yaxis, *ax.get_ylim())
    ax.axvline(pts.flops.max(), color="0.5", ls=":", lw=1)
    ax.annotate("largest run", (pts.flops.max(), 0.98), xycoords=("data", "axes fraction"), fontsize=8,
                color="0.4", ha="right", va="top", rotation=90)
    ax.set_xscale("log")
    _flops_axis(ax.xaxis)
    ax.set_xlabel("training compute C = 6·N·D (FLOPs)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(_mpl(f"{f.name}: loss vs compute" + ("" if f.publishable else " (plan withheld)")))
    ax.legend(frameon=False, loc="lower left")
    ax.grid(True, which="major", alpha=0.2)
    cap = ("Loss at the compute-optimal allocation implied by the fit (red; band: 95% bootstrap), against every "
           "run at its own allocation. Runs should sit on or above the frontier"
           + ("; ★ the headline budget." if f.headline else "."))
    return _save(fig, f, "frontier", out), cap


def _plot_residuals(f: _Family, out: Path) -> tuple[str, str]:
    fig, ax = _new_fig()
    fig.subplots_adjust(left=0.15, right=0.88)
    pts = f.pts
    r = np.log(_predict(f.P, pts.n_params.to_numpy(float), pts.n_tokens.to_numpy(float))[0]) - np.log(pts.loss)
    rms = float(np.sqrt(np.mean(r ** 2))) if r.size else float("nan")
    ax.axhspan(-rms, rms, color="0.85", alpha=0.6, lw=0, label=f"± rms {rms:.2%}")
    ax.axhline(0, color="k", lw=1)
    sc = ax.scatter(pts.flops, r, c=pts.n_params, cmap="viridis", norm=_size_norm(f), s=26, zorder=3,
                    edgecolor="white", linewidth=0.4)
    ho = f.backtest.get("holdout", {}) if isinstance(f.backtest, dict) else {}
    if ho.get("flops"):
        thr = _f(f.backtest.get("train_max_flops"))
        if np.isfinite(thr):
            ax.axvline(thr, color="0.5", ls=":", lw=1)
            ax.annotate(" backtest\n holdout →", (thr, 0.98), xycoords=("data", "axes fraction"), fontsize=8,
                        color="0.4", ha="left", va="top")
    _size_colorbar(fig, ax, sc, pts.n_params)
    lim = max(np.abs(r).max() * 1.15 if r.size else 0.01, 0.005)
    ax.set_ylim(-lim, lim)
    pct = ".1%" if lim < 0.03 else ".0%"
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: "0" if abs(v) < 1e-12 else format(v, "+" + pct)))
    ax.set_xscale("log")
    _flops_axis(ax.xaxis)
    ax.set_xlabel("training compute C = 6·N·D (FLOPs)")
    ax.set_ylabel(r"$\log\hat{L} - \log L$  (≈ relative error)")
    ax.set_title(_mpl(f"{f.name}: residuals of the fit"))
    ax.legend(frameon=False, loc="upper left")
    ax.grid(True, which="major", alpha=0.2)
    cap = ("Fitted minus observed log-loss per run, coloured by model size (above zero: the law over-predicts the "
           "loss). Trends with C or N mean the law's form misses something; the shaded band is ± the rms residual.")
    return _save(fig, f, "residuals", out), cap


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


def _plot_isoflop(f: _Family, out: Path) -> tuple[str, str]:
    fig, ax = _new_fig()
    pts = f.pts
    N, C = pts.n_params.to_numpy(float), pts.flops.to_numpy(float)
    budgets = f.iso_budgets
    cs = np.array([c for c, _ in budgets])
    nstar, _, lstar = (v[0] for v in _optimum(f.P, cs))
    n_lo = min(N.min(), np.nanmin(np.clip(nstar, N.min() / 100, N.max() * 100))) / 3
    n_hi = max(N.max(), np.nanmax(np.clip(nstar, N.min() / 100, N.max() * 100))) * 3
    ngrid = np.geomspace(n_lo, n_hi, 200)
    curves = _predict(f.P, np.tile(ngrid, cs.size), (cs[:, None] / (6 * ngrid[None, :])).ravel())[0]
    curves = curves.reshape(cs.size, -1)
    if len(f.boot):
        band_lo, band_hi = _interval(_optimum(f.boot, cs)[0], f.level)
    else:
        band_lo = band_hi = np.full(cs.size, np.nan)
    cmap = plt.get_cmap("plasma")
    y_obs, y_min = [], []
    for k, ((c, is_slice), curve) in enumerate(zip(budgets, curves)):
        color = cmap(0.1 + 0.75 * k / max(len(budgets) - 1, 1))
        near = pts[np.abs(C / c - 1) <= ISO_TOLERANCE]
        label = f"C = {_flops(c, 2)}" + (f" ({len(near)} runs)" if len(near) else "")
        ax.plot(ngrid, curve, color=color, lw=1.8, label=label)
        if len(near):
            ax.scatter(near.n_params, near.loss, color=color, s=36, zorder=4, edgecolor="k", linewidth=0.6)
            y_obs += list(near.loss)
        if np.isfinite(lstar[k]) and n_lo <= nstar[k] <= n_hi:
            xerr = None
            if np.isfinite(band_lo[k]) and np.isfinite(band_hi[k]):
                xerr = [[max(nstar[k] - band_lo[k], 0)], [max(band_hi[k] - nstar[k], 0)]]
            ax.errorbar([nstar[k]], [lstar[k]], xerr=xerr, fmt="v", color=color, mec="k", ms=9, capsize=3,
                        zorder=5, lw=1.2)
        finite = curve[np.isfinite(curve)]
        if finite.size:
            y_min.append(finite.min())
    ylo = min(y_min + y_obs) if (y_min or y_obs) else 1.0
    yref = max(y_obs + y_min) if (y_min or y_obs) else 2.0
    yhi = yref + max(1.0 * (yref - ylo), 0.1 * yref)
    ax.set_ylim(ylo - 0.06 * (yhi - ylo), yhi)
    ax.set_xlim(n_lo, n_hi)
    ax.set_xscale("log")
    _human_axis(ax.xaxis)
    ax.set_xlabel("model size N (parameters), with D = C / (6N)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(_mpl(f"{f.name}: IsoFLOP curves of the fit"))
    ax.errorbar([], [], xerr=[[1], [1]], fmt="v", color="0.5", mec="k", label="fitted optimum N* (95% band)")
    ax.scatter([], [], color="0.6", edgecolor="k", s=36, label=f"runs within ±{ISO_TOLERANCE:.0%} of C")
    ax.legend(frameon=False, loc="upper center", ncol=2)
    ax.grid(True, which="major", alpha=0.2)
    slices = [c for c, s in budgets if s]
    which = (f"IsoFLOP slices of the data at {', '.join(_flops(c, 2) for c in slices)}"
             + (" and powers of ten spanning the data" if len(slices) < len(budgets) else "")
             if slices else "powers of ten spanning the data (no budget has ≥ 3 model sizes within ±15%)")
    cap = (f"Fitted loss along fixed compute C = 6·N·D as N varies, at {which}. ▼: the parametric optimum N* with "
           "its 95% bootstrap band; dots: observed runs near that C, whose minimum should sit near ▼.")
    return _save(fig, f, "isoflop", out), cap


# --------------------------------------------------------------------------------------------------------------
# Formatting helpers


def _f(x, default: float = float("nan")) -> float:
    """A float from anything (None, NA, strings, numpy scalars); ``default`` when that fails."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(v) and not math.isnan(default) else v


def _loads(text, default):
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return default
    if isinstance(text, dict | list):
        return text
    try:
        v = json.loads(text)
    except (TypeError, ValueError):
        return default
    return v if isinstance(v, type(default)) else default


def _ci(value, interval, fmt: str = ".4g") -> str:
    v = _f(value)
    if not np.isfinite(v):
        return "–"
    s = format(v, fmt)
    if interval is not None and len(interval) == 2 and all(np.isfinite(_f(x)) for x in interval):
        s += f" <span class=ci>[{format(_f(interval[0]), fmt)}, {format(_f(interval[1]), fmt)}]</span>"
    return s


def _hci(value, lo, hi) -> str:
    s = _human(value)
    if np.isfinite(_f(lo)) and np.isfinite(_f(hi)):
        s += f" <span class=ci>[{_human(lo)}, {_human(hi)}]</span>"
    return s


def _human(x) -> str:
    """12.8k, 340M, 14.3B, 1.16T; scientific notation beyond 1000T."""
    v = _f(x)
    if not np.isfinite(v):
        return "–"
    a = abs(v)
    if a >= 1e15 or (a < 1 and a != 0):
        return f"{v:.3g}"
    for thr, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= thr:
            return f"{v / thr:.3g}{suffix}"
    return f"{v:.3g}"


def _flops(c, digits: int = 1) -> str:
    """1e23, 2.7e12 (no '+', no leading zeros in the exponent)."""
    v = _f(c)
    if not np.isfinite(v) or v <= 0:
        return "–"
    m, e = f"{v:.{digits - 1}e}".split("e")
    m = m.rstrip("0").rstrip(".") if "." in m else m
    return f"{m}e{int(e)}"


def _times(x) -> str:
    v = _f(x)
    if not np.isfinite(v):
        return "–"
    return f"{v:.2g}×" if v < 10 else f"{v:,.0f}×" if v < 1e6 else f"{v:.1e}×"


def _tpp(x) -> str:
    """Tokens per parameter: 4.8, 81, 385, 120k."""
    v = _f(x)
    return "–" if not np.isfinite(v) else f"{v:.2g}" if v < 10 else f"{v:.0f}" if v < 1e4 else _human(v)


def _pct(x) -> str:
    v = _f(x)
    return f"{v:.2%}" if np.isfinite(v) else "–"


def _e(x) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA or x is pd.NaT:
        return ""
    return html.escape(str(x), quote=True)


def _mpl(s: str) -> str:
    """Text for matplotlib: a '$' in a family name must not start math mode."""
    return s.replace("\\", "\\\\").replace("$", r"\$")


def _slugs(names: list[str]) -> dict[str, str]:
    """File-name-safe, unique slugs; a name that had to be changed gets a short hash of the original."""
    out, used = {}, set()
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:60] or "family"
        slug = base if base == name else f"{base}-{hashlib.sha1(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
        while slug in used:
            slug = f"{slug}-{hashlib.sha1(slug.encode()).hexdigest()[:4]}"
        used.add(slug)
        out[name] = slug
    return out


_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1180px; margin: 2em auto;
        padding: 0 1em; color: #222; line-height: 1.4; }}
h1 {{ margin-bottom: .2em; }} h2 {{ margin-top: 1.6em; }} h3 {{ margin: 1.2em 0 .4em; }}
table {{ border-collapse: collapse; margin: .5em 0 1.2em; font-size: 88%; }}
th, td {{ border: 1px solid #d4d4d4; padding: 3px 8px; text-align: right; vertical-align: top; }}
td.text, td:first-child {{ text-align: left; }} td.num {{ text-align: right; }} th {{ background: #f3f3f3; }}
.ci {{ color: #777; font-size: 88%; white-space: nowrap; }} .bad {{ color: #b00; }}
.meta, .note {{ color: #666; }} .note {{ font-size: 90%; }}
.warn {{ background: #fff6e0; border-left: 4px solid #e0a000; padding: .3em 1em; margin: .6em 0; }}
.verdict {{ padding: .45em 1em; margin: .6em 0; border-left: 5px solid; }}
.verdict ul {{ margin: .3em 0; }} .verdict p {{ margin: .3em 0; }}
.verdict.ok {{ background: #eef8ee; border-color: #2e8b3a; }}
.verdict.caution {{ background: #fff6e0; border-color: #e0a000; }}
.verdict.unreliable, .verdict.failed, .verdict.missing {{ background: #fdecec; border-color: #c62828; }}
.verdict li.sev {{ font-weight: 600; }}
.badge {{ display: inline-block; font-size: 75%; font-weight: 700; padding: .1em .5em; border-radius: .7em;
          vertical-align: middle; white-space: nowrap; }}
.badge.ok {{ background: #dff0df; color: #1f6b29; }} .badge.caution {{ background: #ffe9b3; color: #7a5200; }}
.badge.unreliable, .badge.failed, .badge.missing {{ background: #c62828; color: #fff; }}
ul.glance {{ list-style: none; padding-left: 0; font-size: 96%; }} ul.glance li {{ margin: .35em 0; padding: .3em .6em;
          background: #fafafa; border-left: 4px solid #2e8b3a; }}
ul.glance li.caution {{ border-color: #e0a000; }}
ul.glance li.unreliable {{ border-color: #c62828; background: #fdf3f3; }}
.glance-obs {{ color: #333; font-size: 90%; margin-top: .15em; }} p.slices {{ font-size: 92%; }}
.glance-why {{ color: #a11; font-size: 90%; margin-top: .15em; }} li.caution .glance-why {{ color: #7a5200; }}
tr.extrap td {{ color: #999; }} tr.headline td {{ font-weight: 700; background: #f5f9ff; }}
td.big {{ background: #fff1d6; }} table.small {{ font-size: 82%; }}
.figs {{ display: grid; grid-template-columns: 1fr 1fr; gap: .8em; }} figure {{ margin: 0; }}
figure img {{ width: 100%; height: auto; }} figcaption {{ font-size: 85%; color: #555; }}
section {{ border-top: 2px solid #ddd; margin-top: 2em; }} .law {{ font-size: 110%; margin-bottom: 0; }}
details summary {{ cursor: pointer; color: #0645ad; }}
@media (max-width: 800px) {{ .figs {{ grid-template-columns: 1fr; }} }}
</style></head><body>
{body}
</body></html>
"""
