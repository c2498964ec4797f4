"""The four figures of a family (loss vs D per N, loss vs C with the compute-optimal frontier, residuals,
IsoFLOP curves), rendered once into PNG bytes: written beside the page and returned base64 for embedding."""

from __future__ import annotations

import base64
import contextlib
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_pipeline.lib.lazy import LazyModule

from .figcache import cached_figure
from .family import ISO_TOLERANCE, Family, interval, optimum, predict
from .formatting import fmt_flops, fmt_human, identified, mpl_text, num, plural


def _agg_pyplot() -> None:
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: figures are files, never windows
    import matplotlib.pyplot  # noqa: F401  (brings matplotlib.cm, .colors, .ticker)


# imported when the first figure is drawn: a report whose figures are all reused never loads matplotlib
matplotlib = LazyModule("matplotlib", _agg_pyplot)
mcolors, plt, mticker = (LazyModule(f"matplotlib.{name}", _agg_pyplot) for name in ("colors", "pyplot", "ticker"))


@contextlib.contextmanager
def plot_style():
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


def _save(fig, f: Family, kind: str, out: Path) -> str:
    return save_png(fig, f"{f.slug}_{kind}", out)


def save_png(fig, stem: str, out: Path) -> str:
    """Write ``fig`` as ``out/<stem>.png`` (closing it) and return the PNG base64 for embedding."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    data = buf.getvalue()
    path = out / f"{stem}.png"
    if path.resolve().parent != out.resolve():  # the slug cannot escape, but never write outside the folder
        raise ValueError(f"refusing to write {path} outside {out}")
    path.write_bytes(data)
    return base64.b64encode(data).decode("ascii")


def _size_norm(f: Family):
    n = f.pts.n_params.to_numpy(float)
    lo, hi = (n.min(), n.max()) if n.size else (1.0, 10.0)
    return mcolors.LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 10)


def _size_colorbar(fig, ax, mappable, n_params: pd.Series) -> None:
    sizes = np.sort(n_params.unique())
    if sizes.size < 2:  # one model size: a label, not a colour scale
        ax.text(0.98, 0.97, f"N = {fmt_human(sizes[0]) if sizes.size else '–'}", transform=ax.transAxes, ha="right",
                va="top", fontsize=9)
        return
    cb = fig.colorbar(mappable, ax=ax, pad=0.02, fraction=0.05)
    cb.set_label("model size N (parameters)")
    if sizes.size <= 8:
        cb.set_ticks(sizes)
    else:
        cb.ax.yaxis.set_major_locator(mticker.LogLocator(subs=(1, 2, 5)))
    cb.ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: fmt_human(v)))
    cb.ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    cb.ax.yaxis.set_minor_locator(mticker.NullLocator())


def _loss_axis(axis, lo: float, hi: float, fmt=lambda v: f"{v:.3g}", max_ticks: int = 9) -> None:
    """Log axis from ``lo`` to ``hi`` with 2 to ``max_ticks`` ticks at plain numbers (1.5, 2, 2.5 …), not
    2×10⁰, labelled by ``fmt``; over many decades, powers of ten."""
    ticks: list[float] = []
    if np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi:
        for subs in ((1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2, 2.2, 2.4, 2.6, 2.8, 3, 3.5, 4, 4.5, 5, 6, 7,
                      8, 9), (1, 1.2, 1.4, 1.6, 1.8, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9), (1, 1.5, 2, 3, 4, 5, 6, 8),
                     (1, 2, 3, 5), (1, 2, 5), (1, 3), (1,)):
            cand = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                    for m in subs]
            cand = [c for c in cand if lo <= c <= hi]
            if len(cand) <= max_ticks:
                ticks = cand
                break
        if len(ticks) < 2:  # narrower than 1 → 1.1: evenly spaced round numbers
            ticks = [t for t in mticker.MaxNLocator(nbins=5).tick_values(lo, hi) if lo <= t <= hi]
    axis.set_major_locator(mticker.FixedLocator(ticks) if len(ticks) >= 2 else mticker.LogLocator(numticks=8))
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: fmt(v)))
    axis.set_minor_locator(mticker.NullLocator())
    axis.set_minor_formatter(mticker.NullFormatter())


def _flops_axis(axis) -> None:
    """FLOPs axis with plain '1e15' labels (as in the tables) and no minor ticks: it spans many decades."""
    axis.set_major_locator(mticker.LogLocator(numticks=8))
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: fmt_flops(v)))
    axis.set_minor_locator(mticker.NullLocator())


def _human_axis(axis) -> None:
    """Log axis of counts (parameters, tokens) labelled 12.8k, 340M …, ticks spaced so that labels never
    collide, however narrow the range (call after the data or limits are set)."""
    lo, hi = axis.axes.get_xlim() if axis is axis.axes.xaxis else axis.axes.get_ylim()
    _loss_axis(axis, min(lo, hi), max(lo, hi), fmt_human)


@cached_figure("name", "slug", "pts", "P", "ok")
def plot_fit(f: Family, out: Path) -> tuple[str, str]:
    fig, ax = _new_fig()
    fig.subplots_adjust(right=0.88)
    pts = f.pts
    sizes = np.sort(pts.n_params.unique())
    norm, cmap = _size_norm(f), plt.get_cmap("viridis")
    dgrid = np.geomspace(pts.n_tokens.min() / 1.5, pts.n_tokens.max() * 1.5, 80)
    curves = predict(f.P, np.repeat(sizes, dgrid.size), np.tile(dgrid, sizes.size))[0].reshape(sizes.size, -1) \
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
    ax.set_title(mpl_text(f"{f.name}: loss vs tokens" + (", per model size" if f.ok else " (no fit)")))
    _size_colorbar(fig, ax, matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), pts.n_params)
    ax.text(0.02, 0.03, "dots: runs · lines: fitted law" if f.ok else "dots: runs", transform=ax.transAxes,
            fontsize=8.5, color="0.3")
    ax.grid(True, which="major", alpha=0.2)
    cap = ("Observed final losses (dots) and the fitted law at each model size N (lines)." if f.ok else
           "Observed final losses; no fitted law.")
    return _save(fig, f, "fit" if f.ok else "data", out), cap


@cached_figure("name", "slug", "pts", "P", "boot", "level", "headline", "publishable")
def plot_frontier(f: Family, out: Path) -> tuple[str, str]:
    fig, ax = _new_fig()
    pts = f.pts
    cmax = max(pts.flops.max() * 1e3, (f.headline or {}).get("compute", 0) * 3)
    cgrid = np.geomspace(pts.flops.min() / 2, cmax, 160)
    opt = optimum(f.P, cgrid)[2][0]
    fig.subplots_adjust(right=0.88)
    sc = ax.scatter(pts.flops, pts.loss, c=pts.n_params, cmap="viridis", norm=_size_norm(f), s=20, zorder=3,
                    edgecolor="white", linewidth=0.4, label="observed runs (colour: N)")
    _size_colorbar(fig, ax, sc, pts.n_params)
    ax.plot(cgrid, opt, color="C3", lw=2, label="compute-optimal frontier (fit)")
    if len(f.boot):
        lo, hi = interval(optimum(f.boot, cgrid)[2], f.level)
        ax.fill_between(cgrid, lo, hi, color="C3", alpha=0.18, lw=0, label="95% bootstrap band")
    h = f.headline
    if h and np.isfinite(h["loss"]):
        err = None
        if np.isfinite(h.get("loss_lo", np.nan)):
            err = [[max(h["loss"] - h["loss_lo"], 0)], [max(h["loss_hi"] - h["loss"], 0)]]
        ax.errorbar([h["compute"]], [h["loss"]], yerr=err, fmt="*", color="k", ms=11, capsize=3, zorder=4,
                    label=f"headline budget {fmt_flops(h['compute'])}: {h['loss']:.3f}")
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
    ax.set_title(mpl_text(f"{f.name}: loss vs compute" + ("" if f.publishable else " (plan withheld)")))
    ax.legend(frameon=False, loc="lower left")
    ax.grid(True, which="major", alpha=0.2)
    cap = ("Loss at the compute-optimal allocation implied by the fit (red; band: 95% bootstrap), against every "
           "run at its own allocation. Runs should sit on or above the frontier"
           + ("; ★ the headline budget." if f.headline else "."))
    return _save(fig, f, "frontier", out), cap


@cached_figure("name", "slug", "pts", "P", "backtest")
def plot_residuals(f: Family, out: Path) -> tuple[str, str]:
    fig, ax = _new_fig()
    fig.subplots_adjust(left=0.15, right=0.88)
    pts = f.pts
    r = np.log(predict(f.P, pts.n_params.to_numpy(float), pts.n_tokens.to_numpy(float))[0]) - np.log(pts.loss)
    rms = float(np.sqrt(np.mean(r ** 2))) if r.size else float("nan")
    ax.axhspan(-rms, rms, color="0.85", alpha=0.6, lw=0, label=f"± rms {rms:.2%}")
    ax.axhline(0, color="k", lw=1)
    sc = ax.scatter(pts.flops, r, c=pts.n_params, cmap="viridis", norm=_size_norm(f), s=26, zorder=3,
                    edgecolor="white", linewidth=0.4)
    ho = f.backtest.get("holdout", {}) if isinstance(f.backtest, dict) else {}
    if ho.get("flops"):
        thr = num(f.backtest.get("train_max_flops"))
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
    ax.set_title(mpl_text(f"{f.name}: residuals of the fit"))
    ax.legend(frameon=False, loc="upper left")
    ax.grid(True, which="major", alpha=0.2)
    cap = ("Fitted minus observed log-loss per run, coloured by model size (above zero: the law over-predicts the "
           "loss). Trends with C or N mean the law's form misses something; the shaded band is ± the rms residual.")
    return _save(fig, f, "residuals", out), cap


@cached_figure("name", "slug", "pts", "P", "boot", "level", "iso_budgets")
def plot_isoflop(f: Family, out: Path) -> tuple[str, str]:
    fig, ax = _new_fig()
    pts = f.pts
    N, C = pts.n_params.to_numpy(float), pts.flops.to_numpy(float)
    budgets = f.iso_budgets
    cs = np.array([c for c, _ in budgets])
    nstar, _, lstar = (v[0] for v in optimum(f.P, cs))
    n_lo = min(N.min(), np.nanmin(np.clip(nstar, N.min() / 100, N.max() * 100))) / 3
    n_hi = max(N.max(), np.nanmax(np.clip(nstar, N.min() / 100, N.max() * 100))) * 3
    ngrid = np.geomspace(n_lo, n_hi, 200)
    curves = predict(f.P, np.tile(ngrid, cs.size), (cs[:, None] / (6 * ngrid[None, :])).ravel())[0]
    curves = curves.reshape(cs.size, -1)
    if len(f.boot):
        band_lo, band_hi = interval(optimum(f.boot, cs)[0], f.level)
    else:
        band_lo = band_hi = np.full(cs.size, np.nan)
    cmap = plt.get_cmap("plasma")
    y_obs, y_min = [], []
    n_marked = n_banded = n_dotted = 0
    for k, ((c, is_slice), curve) in enumerate(zip(budgets, curves)):
        color = cmap(0.1 + 0.75 * k / max(len(budgets) - 1, 1))
        near = pts[np.abs(C / c - 1) <= ISO_TOLERANCE]
        label = f"C = {fmt_flops(c, 2)}" + (f" ({plural(len(near), 'run')})" if len(near) else "")
        ax.plot(ngrid, curve, color=color, lw=1.8, label=label)
        if len(near):
            ax.scatter(near.n_params, near.loss, color=color, s=36, zorder=4, edgecolor="k", linewidth=0.6)
            y_obs += list(near.loss)
            n_dotted += 1
        if np.isfinite(lstar[k]) and n_lo <= nstar[k] <= n_hi:
            xerr = None
            n_marked += 1
            if identified(band_lo[k], band_hi[k]):  # an unidentified band is not drawn as if it were one
                xerr = [[max(nstar[k] - band_lo[k], 0)], [max(band_hi[k] - nstar[k], 0)]]
                n_banded += 1
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
    ax.set_title(mpl_text(f"{f.name}: IsoFLOP curves of the fit"))
    if n_marked:
        ax.errorbar([], [], xerr=[[1], [1]] if n_banded else None, fmt="v", color="0.5", mec="k",
                    label="fitted optimum N*" + (" (95% band)" if n_banded else ""))
    if n_dotted:
        ax.scatter([], [], color="0.6", edgecolor="k", s=36, label=f"runs within ±{ISO_TOLERANCE:.0%} of C")
    ax.legend(frameon=False, loc="upper center", ncol=2)
    ax.grid(True, which="major", alpha=0.2)
    return _save(fig, f, "isoflop", out), _isoflop_caption(budgets, n_marked, n_banded, n_dotted, bool(len(f.boot)))


def _isoflop_caption(budgets: list[tuple[float, bool]], n_marked: int, n_banded: int, n_dotted: int,
                     has_boot: bool) -> str:
    """What the IsoFLOP panel shows, from what was drawn: which budgets, how many optima (with bands), dots."""
    slices = [c for c, s in budgets if s]
    others = [c for c, s in budgets if not s]
    which = []
    if slices:
        which.append(f"the data's IsoFLOP slices at C = {', '.join(fmt_flops(c, 2) for c in slices)} (budgets with "
                     f"≥ 3 model sizes within ±{ISO_TOLERANCE:.0%})")
    if others:
        which.append(f"{'further' if slices else 'no budget has ≥ 3 model sizes; instead'} budgets spanning the "
                     f"runs at C = {', '.join(fmt_flops(c, 2) for c in others)}")
    cap = f"Fitted loss along fixed compute C = 6·N·D as N varies (D = C/(6N)), at {' and '.join(which)}. "
    if n_marked:
        cap += (f"▼: the fit's optimum N* ({n_marked} of {len(budgets)} inside the plotted range"
                + (f"; horizontal bar: its 95% bootstrap interval, drawn for {n_banded}" if n_banded else
                   "; no interval: none is identified" if has_boot else "; no bootstrap, no interval") + "). ")
    else:
        cap += "No fitted optimum N* falls inside the plotted range. "
    if n_dotted:
        cap += (f"Dots: runs within ±{ISO_TOLERANCE:.0%} of {n_dotted} of these budgets"
                + (", whose lowest point should sit near ▼." if n_marked else "."))
    return cap
