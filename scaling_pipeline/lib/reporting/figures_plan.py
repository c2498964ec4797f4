"""The planning figures: per family the compute-optimal N*(C) and D*(C) with the IsoFLOP minima, tokens per
parameter against C, the training curves (loss against tokens), the backtest (predicted against observed) and,
for families with learning-rate sweeps, loss against LR per size and LR* against N; for the page, every
family's compute-optimal frontier on one figure.

Each ``*_figure`` function maps data to a :class:`matplotlib.figure.Figure`; :func:`plan_figures` and
:func:`frontiers_figure` save them through :func:`.figures.save_png` with their captions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaling_pipeline.lib.hparams import OK
from scaling_pipeline.lib.quality import THRESHOLDS

from .figcache import cached_figure, figure_call, figure_inputs
from .family import Family, interval, optimum, predict
from .figures import (matplotlib, mcolors, plt, _flops_axis, _human_axis, _loss_axis, _new_fig, _save, _size_colorbar, _size_norm, save_png)
from .formatting import esc, fmt_flops, fmt_human, fmt_pct, identified, mpl_text, num, plural

_GRID = 120  # budgets per curve


def _budget_grid(f: Family) -> np.ndarray:
    """FLOPs from half the smallest run to 1000× the largest (the range the plan table covers)."""
    return np.geomspace(f.pts.flops.min() / 2, f.max_flops * 1e3, _GRID)


def _band(ax, x, samples: np.ndarray, level: float, color) -> bool:
    """Shade the bootstrap interval of ``samples`` (S, K) where it is identified; True if anything was drawn."""
    if not len(samples):
        return False
    lo, hi = interval(samples, level)
    ok = np.array([identified(a, b) for a, b in zip(lo, hi)])
    if ok.any():
        ax.fill_between(x, np.where(ok, lo, np.nan), np.where(ok, hi, np.nan), color=color, alpha=0.18, lw=0)
    return bool(ok.any())


def _label(ax, xlabel: str, ylabel: str, title: str, legend: str | None = None) -> None:
    """Axis labels, title, the legend at ``legend`` (a matplotlib location; None: no legend) and a light grid."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(frameon=False, loc=legend)
    ax.grid(True, which="major", alpha=0.2)


def _against_compute(ax, f: Family, ylabel: str, title: str) -> None:
    """Log-log axes against compute (FLOPs), a dotted line at the largest run, labels, legend and grid."""
    ax.axvline(f.max_flops, color="0.5", ls=":", lw=1)
    ax.annotate("largest run", (f.max_flops, 0.98), xycoords=("data", "axes fraction"), fontsize=8, color="0.4",
                ha="right", va="top", rotation=90)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _flops_axis(ax.xaxis)
    _human_axis(ax.yaxis)
    _label(ax, "training compute C = 6·N·D (FLOPs)", ylabel, mpl_text(f"{f.name}: {title}"), "upper left")


@figure_inputs("name", "slug", "pts", "P", "boot", "level", "max_flops", "slices")
def allocation_figure(f: Family):
    """N*(C) and D*(C) of the fit (bands: bootstrap), with each IsoFLOP slice's best run (N, D = C/(6N))."""
    fig, ax = _new_fig()
    c = _budget_grid(f)
    n, d, _ = (v[0] for v in optimum(f.P, c))
    boot = optimum(f.boot, c) if len(f.boot) else (np.empty((0, c.size)),) * 3
    for y, samples, color, label in ((n, boot[0], "C0", "N* (parameters)"), (d, boot[1], "C1", "D* (tokens)")):
        ax.plot(c, y, color=color, lw=2, label=label)
        _band(ax, c, samples, f.level, color)
    if f.slices:
        s = pd.DataFrame(f.slices)
        ax.scatter(s.compute, s.best_n, marker="o", s=46, color="C0", edgecolor="k", zorder=4,
                   label="best run of an IsoFLOP slice: N")
        ax.scatter(s.compute, s.compute / (6 * s.best_n), marker="s", s=40, color="C1", edgecolor="k", zorder=4,
                   label="… and its D = C/(6N)")
    _against_compute(ax, f, "parameters N / tokens D", "compute-optimal N* and D*")
    return fig


@figure_inputs("name", "slug", "pts", "P", "boot", "level", "max_flops", "slices")
def tokens_per_param_figure(f: Family):
    """D*/N* against C (band: bootstrap), with the ratio of each IsoFLOP slice's best run."""
    fig, ax = _new_fig()
    c = _budget_grid(f)
    n, d, _ = optimum(f.P, c)
    ax.plot(c, d[0] / n[0], color="C2", lw=2, label="fit: D*/N*")
    if len(f.boot):
        bn, bd, _ = optimum(f.boot, c)
        _band(ax, c, bd / bn, f.level, "C2")
    if f.slices:
        s = pd.DataFrame(f.slices)
        ax.scatter(s.compute, s.compute / (6 * s.best_n ** 2), s=46, color="C2", edgecolor="k", zorder=4,
                   label="best run of an IsoFLOP slice")
    runs = f.pts
    ax.scatter(runs.flops, runs.n_tokens / runs.n_params, s=12, color="0.6", zorder=3, label="runs")
    _against_compute(ax, f, "tokens per parameter D/N", "compute-optimal tokens per parameter")
    return fig


@figure_inputs("name", "slug", "pts", "curves")
def curves_figure(f: Family):
    """Loss against training tokens of every fitted run (clean.steps), coloured by model size; log axes with
    tick labels spaced for the range shown."""
    fig, ax = _new_fig()
    fig.subplots_adjust(right=0.88)
    cur = f.curves
    norm, cmap = _size_norm(f), plt.get_cmap("viridis")
    for run, g in cur.groupby("run_id", sort=False):
        ax.plot(g.tokens, g.loss, color=cmap(norm(num(g.n_params.iloc[0]))), lw=0.9, alpha=0.8, gid=str(run))
    ax.scatter(f.pts.n_tokens, f.pts.loss, c=f.pts.n_params, cmap=cmap, norm=norm, s=14, zorder=3,
               edgecolor="k", linewidth=0.4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    loss = pd.concat([cur.loss, f.pts.loss]).astype(float)
    lo, hi = loss.quantile(0.005) / 1.03, min(loss.max(), loss.quantile(0.995) * 1.3) * 1.03
    ax.set_ylim(lo, hi)
    _loss_axis(ax.yaxis, lo, hi)
    _human_axis(ax.xaxis)
    _size_colorbar(fig, ax, matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), f.pts.n_params)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(mpl_text(f"{f.name}: training curves"))
    ax.grid(True, which="major", alpha=0.2)
    return fig


@figure_inputs("name", "slug", "pts", "P", "backtest")
def backtest_figure(f: Family):
    """Held-out runs' losses predicted by the fit without them against the observed ones, with every fitted
    run's in-sample prediction for reference; the diagonal and ± the backtest caution threshold."""
    fig, ax = _new_fig()
    fig.subplots_adjust(left=0.14)
    pts = f.pts
    inside = predict(f.P, pts.n_params.to_numpy(float), pts.n_tokens.to_numpy(float))[0]
    ax.scatter(pts.loss, inside, s=12, color="0.65", zorder=3, label="fitted runs (full fit)")
    h = f.backtest.get("holdout", {}) if isinstance(f.backtest, dict) else {}
    obs, pred = np.asarray(h.get("loss", []), float), np.asarray(h.get("predicted", []), float)
    if obs.size:
        ax.scatter(obs, pred, s=48, color="C3", edgecolor="k", zorder=4,
                   label="held-out runs (fit without them), mean |error| "
                         f"{fmt_pct(f.backtest.get('mean_abs_rel_error'))}")
    every = np.concatenate([pts.loss.to_numpy(float), inside, obs, pred])
    every = every[np.isfinite(every) & (every > 0)]
    lo, hi = every.min() / 1.02, every.max() * 1.02
    x = np.geomspace(lo, hi, 10)
    t = THRESHOLDS.backtest_caution
    ax.plot(x, x, color="k", lw=1, label="predicted = observed")
    ax.fill_between(x, x * (1 - t), x * (1 + t), color="0.85", alpha=0.5, lw=0, label=f"± {t:.0%}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    _loss_axis(ax.xaxis, lo, hi)
    _loss_axis(ax.yaxis, lo, hi)
    _label(ax, "observed final loss (nats/token)", "predicted loss (nats/token)",
           mpl_text(f"{f.name}: backtest, predicted vs observed"), "upper left")
    return fig


@figure_inputs("name", "slug", "lr")
def lr_sweeps_figure(f: Family):
    """Loss against peak learning rate for every swept (N, D), coloured by N, with each sweep's fitted optimum."""
    fig, ax = _new_fig()
    fig.subplots_adjust(right=0.88)
    sw, opt = f.lr["sweeps"], f.lr["optima"]
    n = pd.to_numeric(sw.n_params, errors="coerce")
    norm = mcolors.LogNorm(vmin=n.min(), vmax=n.max() if n.max() > n.min() else n.min() * 10)
    cmap = plt.get_cmap("viridis")
    for (size, _), g in sw.groupby(["n_params", "n_tokens"], sort=True):
        g = g.sort_values("lr")
        ax.plot(g.lr, g.loss, "o-", color=cmap(norm(size)), ms=4, lw=1.1, alpha=0.85)
    ok = opt[opt.status == OK]
    ax.scatter(ok.lr_opt, ok.loss_opt, marker="*", s=110, c=ok.n_params.astype(float), cmap=cmap, norm=norm,
               edgecolor="k", zorder=4, label="fitted optimum (parabola in ln LR)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = sw.loss.min() / 1.01, min(sw.loss.max(), sw.loss.median() * 1.5) * 1.01
    ax.set_ylim(lo, hi)
    _loss_axis(ax.yaxis, lo, hi)
    _lr_axis(ax.xaxis)
    _size_colorbar(fig, ax, matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), n)
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("final loss (nats/token)")
    ax.set_title(mpl_text(f"{f.name}: loss vs learning rate per size"))
    ax.grid(True, which="major", alpha=0.2)
    return fig


def _lr_axis(axis) -> None:
    """Learning rates as 3e-4, 1e-3 (short labels, at most 6 ticks)."""
    lo, hi = axis.axes.get_xlim() if axis is axis.axes.xaxis else axis.axes.get_ylim()
    _loss_axis(axis, lo, hi, fmt=lambda v: fmt_flops(v, 2), max_ticks=6)


@figure_inputs("name", "slug", "lr")
def lr_scaling_figure(f: Family):
    """LR* against N: each sweep's optimum, and LR*(N) = c·N^−γ with its 95% confidence band (at the geometric
    mean token budget of the optima when D was fitted too)."""
    fig, ax = _new_fig()
    fig.subplots_adjust(left=0.14)
    opt, sc = f.lr["optima"], f.lr["scaling"]
    ok = opt[opt.status == OK]
    ax.scatter(ok.n_params, ok.lr_opt, s=40, color="C0", edgecolor="k", zorder=4, label="optimum of a sweep")
    best = opt[opt.status != OK]
    if len(best):
        ax.scatter(best.n_params, best.lr_best, s=30, marker="x", color="0.4", zorder=3,
                   label="best logged LR (optimum not bracketed)")
    fit = sc.iloc[0] if len(sc) else None
    if fit is not None and fit.status == OK and len(ok):
        lnn = np.log(ok.n_params.to_numpy(float))
        x = np.geomspace(ok.n_params.min() / 2, ok.n_params.max() * 2, 80)
        d_mean = float(np.exp(np.mean(np.log(ok.n_tokens.to_numpy(float)))))
        delta = num(fit.delta)
        line = num(fit.c) * x ** -num(fit.gamma) * (d_mean ** -delta if np.isfinite(delta) else 1.0)
        # OLS band of the line: half-width in ln LR* is h_gamma·sqrt(Sxx/n + (ln N − mean)²)
        h = (num(fit.gamma_hi) - num(fit.gamma_lo)) / 2
        half = h * np.sqrt(np.sum((lnn - lnn.mean()) ** 2) / lnn.size + (np.log(x) - lnn.mean()) ** 2)
        ax.plot(x, line, color="C3", lw=2, label=f"LR* = {num(fit.c):.3g}·N^−{num(fit.gamma):.3f}")
        ax.fill_between(x, line * np.exp(-half), line * np.exp(half), color="C3", alpha=0.18, lw=0,
                        label=f"{num(fit.level):.0%} band (γ in [{num(fit.gamma_lo):.3f}, {num(fit.gamma_hi):.3f}])")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _human_axis(ax.xaxis)
    _lr_axis(ax.yaxis)
    _label(ax, "model size N (parameters)", "optimal peak learning rate LR*",
           mpl_text(f"{f.name}: optimal learning rate vs model size"), "lower left")
    return fig


def frontiers_figure(fams: list[Family]):
    """Every fitted family's compute-optimal loss L*(C) on one axis (its own colour; dashed beyond the
    extrapolation limit), with all runs coloured by model size (colour bar)."""
    fig, ax = _new_fig()
    fig.set_size_inches(9.6, 5.4)
    fig.subplots_adjust(left=0.08, right=0.9)
    ok = [f for f in fams if f.ok and len(f.pts)]
    sizes = pd.concat([f.pts.n_params for f in ok]).astype(float)
    norm = mcolors.LogNorm(vmin=sizes.min(), vmax=sizes.max() if sizes.max() > sizes.min() else sizes.min() * 10)
    markers = "os^Dv<>ph*"
    losses = []
    for i, f in enumerate(ok):
        color = f"C{i % 10}"
        c = _budget_grid(f)
        loss = optimum(f.P, c)[2][0]
        near = c <= f.max_flops * 1e3
        ax.plot(c[near], loss[near], color=color, lw=2, label=mpl_text(f.name + ("" if f.publishable
                                                                                 else " (plan withheld)")))
        sc = ax.scatter(f.pts.flops, f.pts.loss, c=f.pts.n_params, cmap="viridis", norm=norm, s=16, zorder=3,
                        marker=markers[i % len(markers)], edgecolor=color, linewidth=0.6)
        losses += [*f.pts.loss, *loss[near & np.isfinite(loss)]]
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = min(losses) / 1.03, max(losses) * 1.03
    ax.set_ylim(lo, hi)
    _loss_axis(ax.yaxis, lo, hi)
    _flops_axis(ax.xaxis)
    cb = fig.colorbar(sc, ax=ax, pad=0.02, fraction=0.05)
    cb.set_label("model size N (parameters) of each run")
    cb.ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: fmt_human(v)))
    ax.set_xlabel("training compute C = 6·N·D (FLOPs)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("Compute-optimal frontiers of every family")
    ax.legend(frameon=False, loc="lower left", title="frontier L*(C) of the fit", ncol=2 if len(ok) > 6 else 1)
    ax.grid(True, which="major", alpha=0.2)
    return fig


def _png(make, f: Family, kind: str, out: Path) -> str:
    """``make(f)`` written as the family's ``kind`` figure (base64 returned), through the figure cache: redrawn only
    when what ``make`` reads of the family changed."""
    return figure_call(_draw_png, make.reads, f, out, make, kind)


def _draw_png(f: Family, out: Path, make, kind: str) -> str:
    return _save(make(f), f, kind, out)


def plan_figures(f: Family, out: Path) -> list[tuple[str, str, str]]:
    """(kind, PNG base64, caption) of the family's planning figures that its data allow."""
    figs = []
    if f.ok and len(f.pts):
        slices = (f"; dots: the best run of each IsoFLOP slice ({plural(len(f.slices), 'slice')}), the model-free "
                  "optimum the fit should pass near" if f.slices else "; no budget has ≥ 3 model sizes, so no "
                  "IsoFLOP minimum to compare")
        band = "shaded where the 95% bootstrap interval is identified" if len(f.boot) else "no bootstrap: no band"
        figs.append(("allocation", _png(allocation_figure, f, "allocation", out),
                     f"Compute-optimal model size N* and training tokens D* of the fit against compute ({band})"
                     f"{slices}. Right of the dotted line the fit extrapolates."))
        figs.append(("tokens_per_param", _png(tokens_per_param_figure, f, "tokens_per_param", out),
                     f"Tokens per parameter D*/N* at the compute-optimal allocation ({band}); grey: every run's "
                     "own D/N" + ("; large dots: the best run of each IsoFLOP slice." if f.slices else ".")))
        if f.backtest.get("holdout"):
            figs.append(("backtest", _png(backtest_figure, f, "backtest", out),
                         f"The law fitted without the {esc(f.backtest.get('n_holdout'))} largest-compute runs "
                         "predicts them (red); grey: every run against the full fit; shaded: "
                         f"± {THRESHOLDS.backtest_caution:.0%} of the observed loss."))
    if len(f.curves):
        figs.append(("curves", _png(curves_figure, f, "curves", out),
                     f"Training loss against tokens seen for the {plural(f.curves.run_id.nunique(), 'fitted run')} "
                     "(clean.steps after warm-up, up to 200 points a run); dots: each run's final loss as fitted."))
    if len(f.lr.get("sweeps", ())):
        figs.append(("lr_sweeps", _png(lr_sweeps_figure, f, "lr_sweeps", out),
                     f"Final loss against peak learning rate in each of the {len(f.lr['optima'])} sweeps (runs at one "
                     "(N, D) that differ only in LR); ★: the optimum of a parabola in ln LR through the best LR and "
                     "its neighbours (only where the best LR is inside the sweep)."))
        figs.append(("lr_scaling", _png(lr_scaling_figure, f, "lr_scaling", out), _lr_scaling_caption(f)))
    return figs


def _lr_scaling_caption(f: Family) -> str:
    sc = f.lr["scaling"]
    if not len(sc) or sc.iloc[0].status != OK:
        why = esc(sc.iloc[0].detail) if len(sc) else "no learning-rate law fitted"
        return f"Optimal learning rate of each sweep against model size; no power law drawn: {why}."
    r = sc.iloc[0]
    with_d = np.isfinite(num(r.delta))
    return (f"Optimal peak learning rate against model size: LR* = {num(r.c):.3g}·N<sup>−γ</sup>"
            + (f"·D<sup>−δ</sup> (δ = {num(r.delta):.3f}, drawn at the geometric-mean D of the sweeps)" if with_d
               else "")
            + f", γ = {num(r.gamma):.3f} [{num(r.gamma_lo):.3f}, {num(r.gamma_hi):.3f}] ({num(r.level):.0%} "
            f"Student-t interval, OLS of ln LR* over {plural(int(num(r.n_optima, 0)), 'optimum', 'optima')}); "
            "band: the confidence band of the line.")


@cached_figure("name", "pts", "P", "ok", "publishable", "max_flops")
def frontiers_section(fams: list[Family], out: Path) -> str:
    """The all-families frontier figure (only with two or more fitted families), as a page section."""
    if sum(f.ok and len(f.pts) > 0 for f in fams) < 2:
        return ""
    b64 = save_png(frontiers_figure(fams), "all_frontiers", out)
    return ("<h2>Compute-optimal frontiers</h2><figure data-fig='all_frontiers' class=wide>"
            f"<img src='data:image/png;base64,{b64}' alt='compute-optimal frontiers of every family'>"
            "<figcaption>The loss each family's fit predicts at the compute-optimal allocation (lines, up to "
            f"1000× its largest run), and every run at its own allocation (markers by family, colour: model size). "
            "A family whose frontier sits lower reaches a given loss with less compute; compare slopes where the "
            "families' runs overlap.</figcaption></figure>")


__all__ = ["allocation_figure", "backtest_figure", "curves_figure", "frontiers_figure", "frontiers_section",
           "lr_scaling_figure", "lr_sweeps_figure", "plan_figures", "tokens_per_param_figure"]
