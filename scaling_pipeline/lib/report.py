"""The planning report: ``reports/<date>/index.html`` with PNG figures, and ``reports/latest``.

Per family: the fitted law with intervals, the observed runs against the fitted surface, the
compute-optimal frontier, the allocation table and the exclusions; globally the quarantined inputs.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scaling_pipeline.lib.laws import Chinchilla  # noqa: E402


@dataclass(frozen=True)
class ReportInputs:
    points: pd.DataFrame
    fits: pd.DataFrame
    bootstrap: pd.DataFrame
    plans: pd.DataFrame
    exclusions: pd.DataFrame
    quarantine: pd.DataFrame


def load_inputs(con: duckdb.DuckDBPyConnection) -> ReportInputs:
    """Read every table the report shows from the warehouse."""
    q = lambda sql: con.execute(sql).df()  # noqa: E731
    return ReportInputs(
        points=q("SELECT * FROM clean.points ORDER BY family, n_params, n_tokens"),
        fits=q("SELECT * FROM fits.chinchilla ORDER BY family"),
        bootstrap=q("SELECT * FROM fits.bootstrap ORDER BY family, sample"),
        plans=q("SELECT * FROM plans.allocations ORDER BY family, compute"),
        exclusions=q("SELECT * FROM clean.exclusions ORDER BY family, run_id, kind"),
        quarantine=q("SELECT * FROM raw.quarantine ORDER BY source_path, location"),
    )


def render_report(inputs: ReportInputs, reports_root: Path, *, date: dt.date | None = None,
                  title: str = "Scaling-law planning report") -> Path:
    """Write ``reports_root/<date>/index.html`` (+ figures), point ``reports_root/latest`` at it,
    and return the index path."""
    date = date or dt.date.today()
    out = reports_root / date.isoformat()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sections = [_family_section(fam, inputs, out) for fam in sorted(inputs.fits.family.unique())]
    body = "\n".join([
        f"<h1>{_e(title)}</h1>",
        f"<p class=meta>Generated {dt.datetime.now().isoformat(timespec='seconds')} · "
        f"{len(inputs.points)} schedule-valid runs in {inputs.points.family.nunique()} families · "
        f"{int((inputs.exclusions.kind == 'run').sum())} runs excluded · {len(inputs.quarantine)} inputs quarantined</p>",
        _overview(inputs),
        *sections,
        _quarantine_section(inputs.quarantine),
        _method_section(inputs.fits),
    ])
    index = out / "index.html"
    index.write_text(_PAGE.format(title=_e(title), body=body), encoding="utf-8")
    _point_latest(reports_root, out)
    return index


def _point_latest(root: Path, target: Path) -> None:
    latest = root / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.is_dir():
        shutil.rmtree(latest)
    try:
        os.symlink(target.name, latest, target_is_directory=True)
    except OSError:  # filesystems without symlinks: a copy
        shutil.copytree(target, latest)


def _overview(inp: ReportInputs) -> str:
    rows = []
    for f in inp.fits.itertuples(index=False):
        if f.status != "ok":
            rows.append(f"<tr><td>{_e(f.family)}</td><td colspan=7 class=bad>fit failed: {_e(f.error)}</td></tr>")
            continue
        ci = json.loads(f.ci or "{}")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in [
            f"<a href='#fam-{_e(f.family)}'>{_e(f.family)}</a>", f.n_points,
            _ci(f.E, ci.get("E")), _ci(f.alpha, ci.get("alpha")), _ci(f.beta, ci.get("beta")),
            _ci(f.a_exponent, ci.get("a")), f"{f.objective:.4g}", len(json.loads(f.warnings or "[]"))]) + "</tr>")
    return ("<h2>Overview</h2><table><tr><th>family</th><th>runs fitted</th><th>E (nats)</th><th>α</th><th>β</th>"
            "<th>a = β/(α+β)</th><th>Huber objective</th><th>warnings</th></tr>" + "".join(rows) + "</table>")


def _family_section(fam: str, inp: ReportInputs, out: Path) -> str:
    fit = inp.fits[inp.fits.family == fam].iloc[0]
    pts = inp.points[inp.points.family == fam]
    excl = inp.exclusions[(inp.exclusions.family == fam)]
    parts = [f"<h2 id='fam-{_e(fam)}'>Family {_e(fam)}</h2>"]
    if fit.status != "ok":
        parts.append(f"<p class=bad>Fit failed: {_e(fit.error)}</p>")
    else:
        law = Chinchilla(E=fit.E, A=fit.A, B=fit.B, alpha=fit.alpha, beta=fit.beta)
        boot = inp.bootstrap[inp.bootstrap.family == fam]
        samples = [Chinchilla(E=r.E, A=r.A, B=r.B, alpha=r.alpha, beta=r.beta) for r in boot.itertuples(index=False)]
        ci = json.loads(fit.ci or "{}")
        parts.append(
            f"<p class=law>L(N, D) = {_ci(fit.E, ci.get('E'))} + {_ci(fit.A, ci.get('A'))} / N<sup>{_ci(fit.alpha, ci.get('alpha'))}</sup>"
            f" + {_ci(fit.B, ci.get('B'))} / D<sup>{_ci(fit.beta, ci.get('beta'))}</sup> &nbsp; (nats/token; N parameters, "
            f"D tokens; 95% bootstrap intervals in brackets)</p>"
            f"<p>Compute-optimal: N* = {fit.G:.4g}·(C/6)<sup>{fit.a_exponent:.3f}</sup>, D* = (C/6)/N*. Fitted on {fit.n_points} runs, "
            f"objective {fit.objective:.5g} (sum of Huber δ={fit.delta:g} on log-loss residuals), {fit.fit_seconds * 1e3:.0f} ms.</p>")
        warnings = json.loads(fit.warnings or "[]")
        if warnings:
            parts.append("<div class=warn><b>Diagnostics</b><ul>" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul></div>")
        backtest = json.loads(fit.backtest or "{}")
        if backtest:
            parts.append(f"<p>Backtest (fit without the largest-compute runs, predict them): {_e(_backtest_text(backtest))}</p>")
        fig1 = _plot_fit(fam, pts, law, out / f"{_slug(fam)}_fit.png")
        fig2 = _plot_frontier(fam, pts, law, samples, out / f"{_slug(fam)}_frontier.png")
        parts.append(f"<div class=figs><img src='{fig1}' alt='loss vs tokens for {_e(fam)}'>"
                     f"<img src='{fig2}' alt='compute-optimal frontier for {_e(fam)}'></div>")
        parts.append(_plan_table(inp.plans[inp.plans.family == fam]))
    parts.append(_exclusion_table(excl))
    return "<section>" + "\n".join(parts) + "</section>"


def _backtest_text(bt: dict) -> str:
    if "error" in bt:
        return f"not possible: {bt['error']}"
    keys = [k for k in ("n_holdout", "mean_abs_rel_error", "max_abs_rel_error") if k in bt]
    return ", ".join(f"{k.replace('_', ' ')} {bt[k]:.3g}" if isinstance(bt[k], float) else f"{k.replace('_', ' ')} {bt[k]}"
                     for k in keys) or json.dumps(bt)


def _plot_fit(fam: str, pts: pd.DataFrame, law: Chinchilla, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    sizes = np.sort(pts.n_params.unique())
    cmap = plt.get_cmap("viridis")
    dgrid = np.geomspace(pts.n_tokens.min() / 1.5, pts.n_tokens.max() * 1.5, 100)
    for i, n in enumerate(sizes):
        color = cmap(i / max(len(sizes) - 1, 1))
        sub = pts[pts.n_params == n]
        ax.scatter(sub.n_tokens, sub.loss, color=color, s=22, zorder=3, label=f"N = {n:.3g}")
        ax.plot(dgrid, law.predict(n, dgrid), color=color, lw=1.2, alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training tokens D")
    ax.set_ylabel("final loss (nats/token)")
    ax.set_title(f"{fam}: observed runs (dots) and fitted law (lines)")
    ax.legend(fontsize=7, ncol=2, frameon=False)
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _plot_frontier(fam: str, pts: pd.DataFrame, law: Chinchilla, samples: list[Chinchilla], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    cgrid = np.geomspace(pts.flops.min() / 2, pts.flops.max() * 1e3, 120)
    with np.errstate(all="ignore"):
        opt = law.loss_at_optimum(cgrid)
        band = np.array([s.loss_at_optimum(cgrid) for s in samples]) if samples else None
    ax.scatter(pts.flops, pts.loss, s=18, color="0.35", zorder=3, label="observed runs")
    ax.plot(cgrid, opt, color="C3", lw=2, label="compute-optimal frontier (fit)")
    if band is not None:
        lo, hi = np.nanpercentile(np.where(np.isfinite(band), band, np.nan), [2.5, 97.5], axis=0)
        ax.fill_between(cgrid, lo, hi, color="C3", alpha=0.2, label="95% bootstrap band")
    ymin = min(pts.loss.min(), np.nanmin(opt)) * 0.85
    ax.set_ylim(ymin, pts.loss.max() * 1.15)
    ax.axvline(pts.flops.max(), color="0.5", ls=":", lw=1)
    ax.text(pts.flops.max(), pts.loss.max() * 1.1, " largest run", va="top", fontsize=7, color="0.4")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C = 6·N·D (FLOPs)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"{fam}: loss vs compute")
    ax.legend(fontsize=7, frameon=False)
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _plan_table(plans: pd.DataFrame) -> str:
    if plans.empty:
        return "<p>No allocation table.</p>"
    has_ci = "n_params_lo" in plans and plans.n_params_lo.notna().any()
    head = ("<tr><th>compute (FLOPs)</th><th>N* (params)</th><th>D* (tokens)</th><th>tokens/param</th>"
            "<th>predicted loss (nats)</th><th>× largest run</th></tr>")
    rows = []
    for p in plans.itertuples(index=False):
        n = _ci(p.n_params, (p.n_params_lo, p.n_params_hi) if has_ci else None, fmt=".3g")
        d = _ci(p.n_tokens, (p.n_tokens_lo, p.n_tokens_hi) if has_ci else None, fmt=".3g")
        loss = _ci(p.loss, (p.loss_lo, p.loss_hi) if has_ci else None, fmt=".4f")
        cls = " class=extrap" if p.extrapolation > 100 else ""
        rows.append(f"<tr{cls}><td>{p.compute:.0e}</td><td>{n}</td><td>{d}</td><td>{p.tokens_per_param:.1f}</td>"
                    f"<td>{loss}</td><td>{p.extrapolation:.3g}</td></tr>")
    return ("<h3>Compute-optimal allocation</h3><p class=note>Greyed rows extrapolate more than 100× beyond the "
            "largest observed run.</p><table>" + head + "".join(rows) + "</table>")


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
        by = rows.groupby("reason").agg(n_rows=("n_rows", "sum"), n_runs=("run_id", "nunique"))
        parts.append("<p>Rows dropped inside kept runs: " + "; ".join(
            f"{int(r.n_rows)} {_e(reason.replace('_', ' '))} rows in {int(r.n_runs)} runs" for reason, r in by.iterrows())
            + ".</p>")
        special = rows[rows.reason != "warmup"]
        if not special.empty:
            parts.append("<ul>" + "".join(f"<li>{_e(r.run_id)}: {_e(r.detail)}</li>"
                                          for r in special.itertuples(index=False)) + "</ul>")
    return "\n".join(parts)


def _quarantine_section(q: pd.DataFrame) -> str:
    if q.empty:
        return "<h2>Quarantined inputs</h2><p>None: every file was read.</p>"
    rows = "".join(f"<tr><td>{_e(r.source_path)}</td><td>{_e(r.scope)}</td><td>{_e(r.location)}</td>"
                   f"<td>{_e(r.field)}</td><td>{_e(r.reason)}</td></tr>" for r in q.itertuples(index=False))
    return ("<h2>Quarantined inputs</h2><table><tr><th>source</th><th>scope</th><th>where</th><th>field</th>"
            "<th>reason</th></tr>" + rows + "</table>")


def _method_section(fits: pd.DataFrame) -> str:
    return ("<h2>Method</h2><p>Each run contributes one point: its final eval loss (else the mean of its last "
            "logged train losses) at the end of its planned schedule; runs that stopped early, diverged, or are "
            "worse than a smaller and shorter run of the same family are excluded (listed above). The law "
            "L = E + A/N<sup>α</sup> + B/D<sup>β</sup> is fitted per family by minimising the sum of Huber(δ) "
            "losses of log L̂ − log L with a global search over the exponents (Besiroglu et al. 2024 protocol); "
            "intervals come from resampling runs (bootstrap). Allocations use C = 6·N·D.</p>")


def _ci(value, interval, fmt: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    s = format(value, fmt)
    if interval is not None and all(v is not None and np.isfinite(v) for v in interval):
        s += f" <span class=ci>[{format(interval[0], fmt)}, {format(interval[1], fmt)}]</span>"
    return s


def _e(x) -> str:
    return html.escape("" if x is None or (isinstance(x, float) and np.isnan(x)) else str(x))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:80] or "family"


_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; font-size: 90%; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }} td.text {{ text-align: left; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
.ci {{ color: #777; font-size: 85%; }} .bad {{ color: #b00; }} .meta, .note {{ color: #666; }}
.warn {{ background: #fff6e0; border-left: 4px solid #e0a000; padding: .3em 1em; }}
tr.extrap td {{ color: #999; }} .figs img {{ width: 49%; }} section {{ border-top: 2px solid #ddd; margin-top: 2em; }}
.law {{ font-size: 110%; }}
</style></head><body>
{body}
</body></html>
"""
