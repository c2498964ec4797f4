"""The page-wide sections around the per-family ones: at a glance, what changed since the last refit, the
overview table, Chinchilla's published law as a reference, and the method."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_pipeline.lib.allocate import BESIROGLU, HOFFMANN, chinchilla_reference
from scaling_pipeline.lib.quality import EXTRAPOLATION_LIMIT, THRESHOLDS

from .family import ISO_TOLERANCE, Family
from .family_section import badge, best_slice, slice_text
from .formatting import (MAX_DECADES, esc, fmt_ci, fmt_flops, fmt_hci, fmt_human, fmt_pct, fmt_times, fmt_tpp, num,
                         plural, prose)
from .inputs import PARAMS
from .summary import DRIFT_BIG, Drift


def glance_section(fams: list[Family]) -> str:
    """Per family one line: the plan at its headline budget, or why there is none, with the verdict."""
    if not fams:
        return "<h2>At a glance</h2><p>No family has schedule-valid runs yet.</p>"
    lines = []
    for f in fams:
        link = f"<a href='#{f.anchor}'><b>{esc(f.name)}</b></a>"
        if f.headline is None:
            if f.publishable:  # the asked headline budget is beyond the extrapolation limit
                what = (f"no headline: C = {fmt_flops(f.headline_beyond)} FLOPs is more than "
                        f"{EXTRAPOLATION_LIMIT:,.0f}× its largest run ({fmt_flops(f.max_flops, 2)} FLOPs), an "
                        "extrapolation; see its allocation table")
                lines.append(f"<li class={f.verdict}>{badge(f)} {link}: {prose(what)}</li>")
                continue
            what = ("plan withheld: " if f.ok else "") + (f.blocking[0] if f.blocking else "no plan")
            more = len(f.reasons) - 1
            why = f"<div class=glance-why>+{plural(more, 'more issue')} (see below)</div>" if more else ""
            if f.slices:
                why += f"<div class=glance-obs>Runs alone: {slice_text(best_slice(f))}.</div>"
            lines.append(f"<li class={f.verdict}>{badge(f)} {link}: {prose(what)}{why}</li>")
            continue
        h = f.headline
        text = (f"with C = <b>{fmt_flops(h['compute'])}</b> FLOPs "
                f"({fmt_times(h['compute'] / f.max_flops)} largest run): "
                f"N* = <b>{fmt_hci(h['n_params'], h.get('n_params_lo'), h.get('n_params_hi'))}</b> params, "
                f"D* = <b>{fmt_hci(h['n_tokens'], h.get('n_tokens_lo'), h.get('n_tokens_hi'))}</b> tokens "
                f"({fmt_tpp(h['tokens_per_param'])} tokens/param), expected loss "
                f"<b>{fmt_ci(h['loss'], (h.get('loss_lo'), h.get('loss_hi')), '.3f')}</b> nats/token")
        tail = ""
        if f.cautions:
            more = len(f.cautions) - 1
            tail = (f"<div class=glance-why>{prose(f.cautions[0])}"
                    + (f" (+{plural(more, 'more caution')})" if more else "") + ".</div>")
        lines.append(f"<li class={f.verdict}>{badge(f)} {link}: {text}{tail}</li>")
    note = ("<p class=note>Brackets: 95% bootstrap intervals (parameter uncertainty only); "
            f"<i>not identified</i>: the interval spans more than {MAX_DECADES:g} decades or reaches zero, so the "
            "runs do not pin the value down (hover for its ends). Budget: the power of ten "
            "nearest 10× the family's largest run unless configured. Full tables per family below.</p>")
    return "<h2>At a glance</h2><ul class=glance>" + "".join(lines) + "</ul>" + note


def drift_section(prev: dict | None, drift: Drift | None, note: str = "") -> str:
    """Parameter and plan drift since the previous report, and how its law predicted the runs added since;
    ``note`` (HTML) first, e.g. the settings that changed."""
    head = "<h2 id=drift>What changed since the last refit</h2>" + note
    if prev is None or drift is None:
        return head + ("<p>No previous report to compare with: this is the first report with a summary.json "
                       "under this folder.</p>")
    which = ("the earlier render of this same date" if prev.get("_same_folder") else f"the report of {prev['_folder']}")
    ref = (f"<p>Compared with {esc(which)} (generated {esc(prev.get('generated_at', '?'))}).</p>")
    if drift.unchanged:
        return head + ref + "<p>Nothing changed: same runs, same losses, same fitted parameters in every family.</p>"
    parts = [head, ref]
    # parameter drift
    rows = []
    same = [r["family"] for r in drift.params if r.get("same")]
    for r in drift.params:
        if r.get("same"):
            continue
        name = esc(r["family"])
        if r["old"] is None:
            rows.append(f"<tr><td>{name}</td><td colspan=7 class=text>new family "
                        f"({plural(len(r['new'].pts), 'run')})</td></tr>")
            continue
        if r["new"] is None:
            rows.append(f"<tr><td>{name}</td><td colspan=7 class=text>no longer present (had "
                        f"{plural(int(num(r['old'].get('n_points'), 0)), 'run')})</td></tr>")
            continue
        runs = f"{esc(r['n_old'])} → {esc(r['n_new'])}"
        notes = []
        if r["added"]:
            notes.append(f"+{len(r['added'])} new")
        if r["removed"]:
            notes.append(f"−{len(r['removed'])} dropped: {', '.join(esc(x) for x in r['removed'][:5])}"
                         + (" …" if len(r["removed"]) > 5 else ""))
        if r["changed"]:
            notes.append(f"{len(r['changed'])} with a changed loss")
        runs += f"<br><span class='ci wrap'>{'; '.join(notes)}</span>" if notes else ""  # a list: it wraps
        if "values" not in r:
            old_s = r["old"].get("status")
            new_s = (r["new"].fit or {}).get("status", "not fitted")
            rows.append(f"<tr><td>{name}</td><td>{runs}</td><td colspan=6 class=text>fit {esc(old_s)} → "
                        f"{esc(new_s)}</td></tr>")
            continue
        cells = "".join(_drift_cell(r["family"], p, *r["values"][p]) for p in (*PARAMS, "a"))
        rows.append(f"<tr><td>{name}</td><td>{runs}</td>{cells}</tr>")
    parts.append("<h3>Fitted parameters (old → new)</h3><table class=drift><tr><th>family</th><th>runs fitted</th>"
                 "<th>E</th><th>A</th><th>B</th><th>α</th><th>β</th><th>a</th></tr>" + "".join(rows) + "</table>"
                 + (f"<p class=note>Unchanged (same runs and fit): {esc(', '.join(same))}.</p>" if same else ""))
    # plan drift
    if drift.plans:
        rows = []
        span = pd.Series([p["family"] for p in drift.plans]).value_counts().to_dict()
        for i, p in enumerate(drift.plans):
            cls = " class=extrap" if p["extrapolation"] > 100 else ""
            first = i == 0 or drift.plans[i - 1]["family"] != p["family"]
            fam_cell = f"<td rowspan={span[p['family']]}>{esc(p['family'])}</td>" if first else ""
            rows.append(f"<tr{cls}>{fam_cell}<td class=num>{fmt_flops(p['compute'])}</td>"
                        f"<td>{fmt_times(p['extrapolation'])}</td>"
                        + _drift_cell(p["family"], "n_params", *p["n_params"], fmt=fmt_human, tag=p["compute"])
                        + _drift_cell(p["family"], "n_tokens", *p["n_tokens"], fmt=fmt_human, tag=p["compute"])
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
            agg.append(f"<li><b>{esc(fam)}</b>: {plural(len(g), 'new run')}, "
                       f"mean |error| {g.rel_error.abs().mean():.2%}, "
                       f"mean signed {g.rel_error.mean():+.2%}, max |error| {g.rel_error.abs().max():.2%}"
                       + (f"; {inside} of {len(g)} inside the previous 95% band" if inside is not None else "")
                       + "</li>")
        parts.append("<ul>" + "".join(agg) + "</ul>")
        rows = "".join(
            f"<tr data-run='{esc(r.run_id)}'><td>{esc(r.family)}</td><td class=text>{esc(r.run_id)}</td>"
            f"<td>{fmt_human(r.n_params)}</td><td>{fmt_human(r.n_tokens)}</td><td>{fmt_flops(r.flops, 2)}</td>"
            f"<td>{fmt_times(r.extrapolation)}</td><td>{r.loss:.4f}</td>"
            f"<td>{fmt_ci(r.predicted, (r.lo, r.hi), '.4f')}</td>"
            f"<td class='{'big' if abs(r.rel_error) > DRIFT_BIG else ''}'>{r.rel_error:+.2%}</td></tr>"
            for r in s.sort_values(["family", "flops"]).itertuples(index=False))
        table = ("<table class=scored><tr><th>family</th><th class=text>run</th><th>N</th><th>D</th><th>C (FLOPs)</th>"
                 "<th>× previous largest run</th><th>observed loss</th><th>previous prediction [95%]</th>"
                 "<th>error L̂/L − 1</th></tr>" + rows + "</table>")
        parts.append(table if len(s) <= 25 else f"<details><summary>{len(s)} runs</summary>{table}</details>")
    return "\n".join(parts)


def _drift_cell(fam: str, key: str, old: float, new: float, *, fmt=None, tag=None, absolute: bool = False) -> str:
    fmt = fmt or (lambda v: fmt_human(v, 4))
    o, n = num(old), num(new)
    if not (np.isfinite(o) and np.isfinite(n)):
        return f"<td>{esc(fmt(o) if np.isfinite(o) else '–')} → {esc(fmt(n) if np.isfinite(n) else '–')}</td>"
    if absolute:
        change, big = f"{n - o:+.4f}", o != 0 and abs(n / o - 1) > DRIFT_BIG / 5
    else:
        rel = n / o - 1 if o != 0 else float("inf")
        change, big = (f"{rel:+.1%}" if abs(rel) < 10 else f"×{n / o:.3g}"), abs(rel) > DRIFT_BIG
    attrs = f" data-family='{esc(fam)}' data-key='{esc(key)}' data-old='{o!r}' data-new='{n!r}'"
    if tag is not None:
        attrs += f" data-compute='{tag!r}'"
    return (f"<td{attrs} class='{'big' if big else ''}'>{esc(fmt(o))} → {esc(fmt(n))}"
            f"<br><span class=ci>{esc(change)}</span></td>")


def overview_section(fams: list[Family]) -> str:
    """One row per family: verdict, fitted exponents and E with intervals, residual and backtest errors."""
    rows = []
    for f in fams:
        link = f"<a href='#{f.anchor}'>{esc(f.name)}</a>"
        if not f.ok:
            rows.append(f"<tr><td>{link}</td><td>{badge(f)}</td><td>{len(f.pts)}</td>"
                        f"<td colspan=7 class='text bad'>{prose('; '.join(f.blocking))}</td></tr>")
            continue
        ci, d = f.ci, f.diagnostics
        bt = num(f.backtest.get("mean_abs_rel_error"))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in [
            link, badge(f), esc(f.fit.get("n_points")),
            fmt_ci(f.fit["E"], ci.get("E")), fmt_ci(f.fit["alpha"], ci.get("alpha")),
            fmt_ci(f.fit["beta"], ci.get("beta")),
            fmt_ci(f.fit.get("a_exponent"), ci.get("a"), ".3f"),
            fmt_pct(d.get("rmse_log_residual")), fmt_pct(bt), len(f.warnings)]) + "</tr>")
    return ("<h2>Overview</h2><table><tr><th>family</th><th>verdict</th><th>runs fitted</th><th>E (nats)</th>"
            "<th>α</th><th>β</th><th>a = β/(α+β)</th><th>rms log residual</th><th>backtest mean |error|</th>"
            "<th>warnings</th></tr>" + "".join(rows) + "</table>")


def reference_section() -> str:
    """The published laws as yardsticks: Hoffmann et al.'s and Epoch's corrected refit of it (Besiroglu et al.
    2024) at the same budgets; under Hoffmann's, parameter caps and the common naive formula."""
    laws = {"Hoffmann et al. 2022": HOFFMANN, "Besiroglu et al. 2024 (Epoch)": BESIROGLU}
    refs = {name: chinchilla_reference(law=law) for name, law in laws.items()}
    head = ("<tr><th rowspan=2>compute (FLOPs)</th>" + "".join(f"<th colspan=4 class=group>{esc(n)}</th>" for n in laws)
            + "</tr><tr>" + "<th>N* (params)</th><th>D* (tokens)</th><th>tokens/param</th><th>loss (nats)</th>"
            * len(laws) + "</tr>")
    rows = []
    for i, c in enumerate(refs[next(iter(laws))].compute):
        cells = [fmt_flops(c, 3)]
        for ref in refs.values():
            r = ref.iloc[i]
            cells += [fmt_human(r.n_params), fmt_human(r.n_tokens), fmt_tpp(r.tokens_per_param), f"{r.loss:.4f}"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    law_text = "; ".join(f"{esc(n)}: E = {law.E:g}, A = {law.A:g}, B = {law.B:g}, α = {law.alpha:g}, "
                         f"β = {law.beta:g}" for n, law in laws.items())
    ref = refs["Hoffmann et al. 2022"]
    caps = [c[: -len("_n_params")] for c in ref.columns if c.startswith("cap_") and c.endswith("_n_params")]
    cap_head = ("<tr><th>compute (FLOPs)</th><th>naive N = (C/(6B))<sup>β/(α+β)</sup></th>"
                + "".join(f"<th>N ≤ {fmt_human(float(c[4:]))}: loss (efficiency)</th>" for c in caps) + "</tr>")
    cap_rows = []
    for _, r in ref.iterrows():
        cells = [fmt_flops(r.compute, 3), f"{fmt_human(r.naive_n_params)} ({r.naive_rel_diff:+.0%})"]
        cells += [f"{r[c + '_loss']:.4f} ({r[c + '_efficiency']:.3f})" if r[c + "_efficiency"] < 1
                  else f"{r[c + '_loss']:.4f} (cap not binding)" for c in caps]
        cap_rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    tpp = "; ".join(f"{esc(n)} {fmt_tpp(r.tokens_per_param.min())}–{fmt_tpp(r.tokens_per_param.max())}"
                    for n, r in refs.items())
    return ("<h2>Reference: published Chinchilla laws</h2><p>" + law_text + " (nats/token). Epoch refitted "
            "Hoffmann's Approach 3 on the same runs (re-extracted from the paper) and corrected it; the two disagree "
            f"on the tokens per parameter at these budgets ({tpp}). Compute-optimal N* = G·(C/6)<sup>a</sup> with "
            "a = β/(α+β), G = (αA/(βB))<sup>1/(α+β)</sup>, D* = C/(6N*).</p>"
            "<table class=reference>" + head + "".join(rows) + "</table>"
            "<h3>Hoffmann's law under a parameter cap, and a common mistake</h3><p>Under a parameter cap the budget "
            "is spent on more tokens (C = 6·N·D); efficiency = optimal loss / capped loss. The naive formula "
            "N = (C/(6B))<sup>β/(α+β)</sup> found in planning scripts drops G and misuses B: it disagrees with N* "
            f"by {ref.naive_rel_diff.iloc[0]:+.0%} at every budget.</p>"
            "<table>" + cap_head + "".join(cap_rows) + "</table>")


def method_section() -> str:
    return (
        "<h2>Method</h2><p>Each run contributes one point: its final eval loss (else the mean of its last logged "
        "train losses) at the end of its planned schedule; runs that stopped early, diverged, or are worse than a "
        "smaller and shorter run of the same family are excluded (listed per family). The law "
        "L = E + A/N<sup>α</sup> + B/D<sup>β</sup> is fitted per family by minimising the sum of Huber(δ) losses of "
        "log L̂ − log L with a global search over the exponents (Besiroglu et al. 2024 protocol); intervals come "
        "from resampling runs (bootstrap) and reflect parameter uncertainty only, not run-to-run noise. "
        "Allocations use C = 6·N·D.</p>"
        f"<p>Verdict (one assessment per fit, made by the fit stage; it decides which plans are published): "
        f"<i>plan withheld</i> when the fit failed, a parameter sits at its bound, the rms log residual exceeds "
        f"{THRESHOLDS.poor_fit_rms:.0%}, the bootstrap interval of A or B spans more than "
        f"{THRESHOLDS.coef_decades:g} decades or that of α or β is wider than {THRESHOLDS.exponent_width:g} (of "
        f"a = β/(α+β) wider than {THRESHOLDS.a_width:g}), or the backtest (fit without the ~10% largest-compute "
        f"runs, predict them) is off by more than {THRESHOLDS.backtest_max_error:.0%} on a run or "
        f"{THRESHOLDS.backtest_mean_error:.0%} on average, or could not be run; <i>use with care</i> above "
        f"{THRESHOLDS.loose_fit_rms:.0%} rms / {THRESHOLDS.backtest_caution:.0%} backtest / a-interval "
        f"{THRESHOLDS.a_caution:g}, with a flat direction of the objective, resampled fits at a bound, no "
        f"bootstrap, fewer than {THRESHOLDS.few_points} runs, fewer than {THRESHOLDS.min_distinct} distinct sizes "
        "or token budgets, collinear sizes and budgets, or E not below the lowest loss. Plans more than "
        f"{EXTRAPOLATION_LIMIT:,.0f}× the largest observed run are marked extrapolated and never headlined.</p>"
        f"<p>IsoFLOP panels use compute budgets at which the family has at least 3 model sizes within "
        f"±{ISO_TOLERANCE:.0%} of the same C (IsoFLOP slices), completed with powers of ten spanning the data. "
        "“What changed” compares with the previous report's summary.json: this date's earlier render when the "
        "report is rewritten, else the most recent earlier date. Every report folder holds summary.json (fitted "
        "parameters, intervals, run ids, plans at standard budgets, bootstrap samples) for this comparison.</p>")
