"""One family's section of the page: verdict box, law with intervals, backtest, figures, allocation table and
exclusions; and the verdict badge and IsoFLOP-slice sentence the page's summaries reuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaling_pipeline.lib.quality import EXTRAPOLATION_LIMIT, THRESHOLDS
from scaling_pipeline.lib.tables.catalog import NO_CURVE_LAW, NO_FORECAST

from .comparison import comparison_section
from .family import Family
from .figures import plot_fit, plot_frontier, plot_isoflop, plot_residuals
from .exports import plan_exports
from .figures_plan import plan_figures
from .formatting import (esc, fmt_ci, fmt_flops, fmt_hci, fmt_human, fmt_pct, fmt_times, fmt_tpp, nearly_equal, num,
                         plural, prose)
from .in_flight import in_flight_block

_VERDICT_LABEL = {"ok": "fit OK", "caution": "use with care", "withheld": "PLAN WITHHELD", "failed": "FIT FAILED",
                  "missing": "NOT FITTED"}


def badge(f: Family) -> str:
    return f"<span class='badge {f.verdict}'>{_VERDICT_LABEL[f.verdict]}</span>"


def best_slice(f: Family) -> dict:
    """The most telling slice: an interior optimum first, then the most model sizes, then the largest budget."""
    return max(f.slices, key=lambda s: (not s["edge"], s["n_sizes"], s["compute"]))


def slice_text(s: dict) -> str:
    """One IsoFLOP slice in words: its best run and where the fit puts N*."""
    text = (f"at C = {fmt_flops(s['compute'], 2)} ({s['n_sizes']} sizes) the lowest loss is "
            f"N = {fmt_human(s['best_n'])} ({s['best_loss']:.3f})"
            + (", at the edge of the slice" if s["edge"] else ""))
    if "approach2_n" in s:
        text += f"; a parabola in log N (Approach 2) puts the minimum at N = {fmt_human(s['approach2_n'])}"
    if "fit_n" in s:
        text += f"; the fit puts N* at {fmt_hci(s['fit_n'], s.get('fit_n_lo'), s.get('fit_n_hi'))}"
    return text


def family_section(f: Family, out: Path) -> str:
    """The family's ``<section>``: verdict, law, backtest, figures (PNGs written into ``out``), plans, exclusions."""
    parts = [f"<h2 id='{f.anchor}'>Family {esc(f.name)} {badge(f)}</h2>"]
    parts.append(_verdict_box(f))
    figs: list[tuple[str, str, str]] = []
    if not len(f.pts):
        parts.append("<p class=bad>No schedule-valid run of this family is left in clean.points.</p>")
    elif not f.ok:
        if len(f.pts):
            figs.append(("data", *plot_fit(f, out)))
    else:
        fit, ci = f.fit, f.ci
        fitted_at = fit.get("fitted_at")
        parts.append(
            f"<p class=law>L(N, D) = {fmt_ci(fit['E'], ci.get('E'))} + {fmt_ci(fit['A'], ci.get('A'))} / "
            f"N<sup>{fmt_ci(fit['alpha'], ci.get('alpha'))}</sup> + {fmt_ci(fit['B'], ci.get('B'))} / "
            f"D<sup>{fmt_ci(fit['beta'], ci.get('beta'))}</sup></p>"
            f"<p class=note>nats/token; N parameters, D training tokens; "
            f"{'95% bootstrap intervals in brackets' if ci else 'no bootstrap: no intervals'}.</p>"
            f"<p>Compute-optimal: N* = {num(fit.get('G')):.4g}·(C/6)<sup>{num(fit.get('a_exponent')):.3f}</sup>, "
            f"D* = (C/6)/N*. Fitted on {plural(int(num(fit.get('n_points'), 0)), 'run')} up to "
            f"{fmt_flops(f.max_flops, 2)} FLOPs; objective {num(fit.get('objective')):.5g} (sum of Huber "
            f"δ={num(fit.get('delta')):g} on log-loss residuals), {num(fit.get('fit_seconds'), 0) * 1e3:.0f} ms"
            + (f", fitted {esc(str(fitted_at)[:19])}" if fitted_at is not None and str(fitted_at) != "NaT" else "")
            + ".</p>")
        parts.append(_backtest_block(f))
    if f.ok and len(f.pts):
        figs += [("fit", *plot_fit(f, out)), ("frontier", *plot_frontier(f, out)),
                 ("residuals", *plot_residuals(f, out)), ("isoflop", *plot_isoflop(f, out))]
    figs += plan_figures(f, out)
    if figs:
        parts.append("<div class=figs>" + "".join(
            f"<figure data-fig='{kind}'><img src='data:image/png;base64,{b64}' alt='{esc(kind)} figure for "
            f"{esc(f.name)}'><figcaption>{caption}</figcaption></figure>" for kind, b64, caption in figs) + "</div>")
    parts.append(comparison_section(f.comparison))
    if f.ok:
        parts.append(_plan_table(f) + plan_exports(f, out))
    parts.append(in_flight_block(f, out))
    parts.append(_exclusion_table(f.excl))
    return f"<section data-family='{esc(f.name)}'>" + "\n".join(parts) + "</section>"


def _verdict_box(f: Family) -> str:
    notes = "".join(f"<li class=note>{esc(n)}</li>" for n in f.notes)
    if f.verdict == "ok":
        d, bt = f.diagnostics, f.backtest
        bits = [f"rms log residual {fmt_pct(d.get('rmse_log_residual'))}"]
        if "mean_abs_rel_error" in bt:
            bits.append(f"backtest error {fmt_pct(bt['mean_abs_rel_error'])} on the "
                        f"{plural(int(num(bt.get('n_holdout'), 0)), 'largest run')}")
        if "a" in f.ci:
            bits.append(f"a = {fmt_ci(f.fit.get('a_exponent'), f.ci['a'], '.3f')}")
        return (f"<div class='verdict ok'><b>Fit looks reliable</b>: {', '.join(bits)}."
                + (f"<ul>{notes}</ul>" if notes else "") + f"{_raw_warnings(f)}</div>")
    title = {"caution": "Use with care", "withheld": "Plan withheld: do not use this fit for planning",
             "failed": "No fit", "missing": "No fit"}[f.verdict]
    items = "".join(f"<li{' class=sev' if r.severity == 'blocks' else ''} data-code='{esc(r.code)}'>{prose(r.message)}"
                    "</li>" for r in f.reasons)
    extra = ""
    if f.verdict == "withheld" and f.ok:
        extra = ("<p>The frontier and IsoFLOP optima below are what this law implies, not what the runs support; the "
                 "residual plot shows the pattern the law misses (e.g. a different functional form, too few large "
                 "runs, or learning-rate/schedule effects across sizes).</p>")
    return f"<div class='verdict {f.verdict}'><b>{title}</b><ul>{items}{notes}</ul>{extra}{_raw_warnings(f)}</div>"


def _slices_note(f: Family) -> str:
    if not f.slices:
        return ""
    return ("<p class=slices><b>IsoFLOP check</b> (model-free): "
            + "; ".join(slice_text(s) for s in f.slices) + ".</p>")


def _raw_warnings(f: Family) -> str:
    if not f.warnings:
        return _slices_note(f)
    return _slices_note(f) + "<p class=note>Fitter diagnostics: " + "; ".join(prose(w) for w in f.warnings) + ".</p>"


def _backtest_block(f: Family) -> str:
    bt = f.backtest
    if not bt:
        return ""
    if "error" in bt:
        return f"<p><b>Backtest</b>: not possible: {esc(bt['error'])}</p>"
    h = bt.get("holdout", {})
    rel = np.asarray(h.get("rel_error", []), float)
    text = (f"<p><b>Backtest</b>: fitted on the {esc(bt.get('n_train'))} smallest-compute runs (up to "
            f"{fmt_flops(num(bt.get('train_max_flops')), 2)} FLOPs), the law predicts the {esc(bt.get('n_holdout'))} "
            f"largest with mean |error| {fmt_pct(bt.get('mean_abs_rel_error'))} "
            f"(max {fmt_pct(bt.get('max_abs_rel_error'))}"
            + (f", mean signed {np.mean(rel):+.2%}" if rel.size else "") + ").</p>")
    if not rel.size:
        return text
    ids = []
    for n, d in zip(h.get("n_params", []), h.get("n_tokens", [])):
        m = f.pts[np.isclose(f.pts.n_params, n, rtol=1e-9) & np.isclose(f.pts.n_tokens, d, rtol=1e-9)]
        ids.append(", ".join(m.run_id.astype(str)) if len(m) else "")
    big = THRESHOLDS.backtest_caution
    rows = "".join(
        f"<tr><td class=text>{esc(i)}</td><td>{fmt_human(n)}</td><td>{fmt_human(d)}</td><td>{fmt_flops(c, 2)}</td>"
        f"<td>{lo:.4f}</td><td>{p:.4f}</td><td class='{'big' if abs(r) > big else ''}'>{r:+.2%}</td></tr>"
        for i, n, d, c, lo, p, r in zip(ids, h.get("n_params", []), h.get("n_tokens", []), h.get("flops", []),
                                        h.get("loss", []), h.get("predicted", []), rel))
    return (text + "<table class=small><tr><th>held-out run</th><th>N</th><th>D</th><th>C (FLOPs)</th>"
            "<th>observed loss</th><th>predicted</th><th>error</th></tr>" + rows + "</table>")


def _plan_table(f: Family) -> str:
    plans = f.plans
    if not f.publishable:
        return ("<h3>Compute-optimal allocation</h3><p class=bad>Withheld by the fit's quality assessment: "
                f"{prose('; '.join(f.blocking) or 'no reason recorded')}.</p>")
    if plans.empty:
        return "<h3>Compute-optimal allocation</h3><p>No allocation table (plans stage not run for this fit).</p>"
    has_ci = plans.n_params_lo.notna().any()
    head = ("<tr><th>compute (FLOPs)</th><th>N* (params)</th><th>D* (tokens)</th><th>tokens/param</th>"
            "<th>predicted loss (nats/token)</th><th>× largest run</th></tr>")
    rows = []
    hc = f.headline["compute"] if f.headline else None
    for p in plans.itertuples(index=False):
        n = fmt_hci(p.n_params, p.n_params_lo, p.n_params_hi) if has_ci else fmt_human(p.n_params)
        d = fmt_hci(p.n_tokens, p.n_tokens_lo, p.n_tokens_hi) if has_ci else fmt_human(p.n_tokens)
        loss = fmt_ci(p.loss, (p.loss_lo, p.loss_hi) if has_ci else None, fmt=".4f")
        far = num(p.beyond_limit, 0) > 0
        cls = "headline" if hc is not None and nearly_equal(p.compute, hc) else "extrap" if far else ""
        rows.append(f"<tr class='{cls}'><td>{fmt_flops(p.compute)}</td><td>{n}</td><td>{d}</td>"
                    f"<td>{fmt_tpp(p.tokens_per_param)}</td><td>{loss}</td><td>{fmt_times(p.extrapolation)}"
                    + (" (extrapolated)" if far else "") + "</td></tr>")
    return ("<h3>Compute-optimal allocation</h3><p class=note>Bold: the headline budget. Greyed rows are "
            f"extrapolated: more than {EXTRAPOLATION_LIMIT:,.0f}× the largest observed run, beyond what these runs "
            "can support (never a headline).</p><table>" + head + "".join(rows) + "</table>")


def _exclusion_table(excl: pd.DataFrame) -> str:
    runs = excl[excl.kind == "run"]
    rows = excl[excl.kind == "rows"]
    parts = ["<h3>Exclusions</h3>"]
    if runs.empty:
        parts.append("<p>No run was excluded.</p>")
    else:
        head = "<tr><th>run</th><th class=text>reason</th><th>step</th><th class=text>detail</th></tr>"
        parts.append("<table>" + head + "".join(
            f"<tr><td>{esc(r.run_id)}</td><td class=text>{esc(r.reason)}</td><td>{esc(r.step)}</td>"
            f"<td class=text>{prose(r.detail)}</td></tr>"
            for r in runs.itertuples(index=False)) + "</table>")
    if not rows.empty:
        rows = rows.assign(n_rows=pd.to_numeric(rows.n_rows, errors="coerce").fillna(0))
        by = rows.groupby("reason").agg(n_rows=("n_rows", "sum"), n_runs=("run_id", "nunique"))
        parts.append("<p>Rows dropped inside kept runs: " + "; ".join(
            f"{plural(int(r.n_rows), esc(str(reason).replace('_', ' ')) + ' row')} in {plural(int(r.n_runs), 'run')}"
            for reason, r in by.iterrows()) + ".</p>")
        special = rows[rows.reason != "warmup"]
        if not special.empty:
            parts.append("<ul>" + "".join(f"<li>{esc(r.run_id)}: {prose(r.detail)}</li>"
                                          for r in special.itertuples(index=False)) + "</ul>")
    parts.append(_excluded_list(excl, NO_CURVE_LAW, "Runs that gave no curve-law points (setting curve_law_points; the "
                                "run's own point is kept as it is):", "gave no curve-law points"))
    parts.append(_excluded_list(excl, NO_FORECAST, "Runs in flight without a forecast (no curve fit; the run is otherwise "
                                "kept as it is):", "no forecast"))
    return "\n".join(parts)


def _excluded_list(excl: pd.DataFrame, kind: str, intro: str, what: str) -> str:
    """HTML list of the rows of ``excl`` (``pipeline.exclusions``) of ``kind``, "<run>: <what> (<reason>): <detail>",
    under the sentence ``intro``; empty without any."""
    rows = excl[excl.kind == kind]
    if rows.empty:
        return ""
    return (f"<p>{intro}</p><ul>" + "".join(f"<li>{esc(r.run_id)}: {what} ({esc(r.reason)}): {prose(r.detail)}</li>"
                                             for r in rows.itertuples(index=False)) + "</ul>")
