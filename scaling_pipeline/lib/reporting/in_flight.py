"""A family's "Runs in flight" block: forecast of each unfinished run's final loss against the family's law
(``forecasts.in_flight``), the backtest of those forecasts, and a curve figure per family (observed, fitted,
forecast band, the planned learning rate on a second axis); runs in flight without a forecast are named here and
listed with the reason in the family's exclusions (``pipeline.exclusions``, kind 'forecast')."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from scaling_pipeline.lib.tables.catalog import NO_FORECAST

from .figcache import cached_figure
from .formatting import esc, mpl_text, plural

QUERIES = {
    "in_flight": "SELECT * FROM forecasts.in_flight ORDER BY family, run_id",
    "curves": "SELECT * FROM forecasts.curves ORDER BY family, run_id, step",
    "backtest": """SELECT family, cut, count(*) AS runs, avg(abs(rel_error)) AS mean_abs_rel_error,
                          avg(covered::INT) AS coverage FROM forecasts.backtest GROUP BY family, cut ORDER BY ALL""",
    "observed": """SELECT s.family, s.run_id, s.step, coalesce(s.train_loss, s.eval_loss) AS loss
                   FROM clean.steps s SEMI JOIN forecasts.in_flight f USING (run_id) ORDER BY s.run_id, s.step""",
}


def load_forecasts(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    """The forecast tables the report shows (none when the forecast stage has not run)."""
    try:
        return {name: con.execute(sql).df() for name, sql in QUERIES.items()}
    except duckdb.CatalogException:
        return {}


def in_flight_block(f, out: Path) -> str:
    """HTML of family ``f``'s runs in flight (``f.forecasts``: the tables of :func:`load_forecasts`, its rows);
    empty without any forecast or exclusion. The figure's PNG is written into ``out``."""
    tables = f.forecasts
    live, missing = tables.get("in_flight", pd.DataFrame()), _no_forecast(f.excl)
    if live.empty and missing.empty:
        return ""
    parts = ["<h3>Runs in flight</h3>"]
    if not live.empty:
        level = float(live.level.iloc[0])
        head = ("<tr><th>run</th><th>progress</th><th>forecast final loss</th>"
                f"<th>{level:.0%} interval</th><th>law's expectation</th><th>flag</th></tr>")
        rows = "".join(
            f"<tr{' class=bad' if r.flag == 'off_track' else ''}><td>{esc(r.run_id)}</td><td>{r.progress:.0%}</td>"
            f"<td>{r.forecast:.3f}</td><td>[{r.lo:.3f}, {r.hi:.3f}]</td>"
            f"<td>{'' if pd.isna(r.law) else f'{r.law:.3f}'}</td><td>{esc(r.flag)}</td></tr>"
            for r in live.itertuples(index=False))
        parts.append("<table>" + head + rows + "</table>")
        parts += [f"<p class=bad>{esc(m)}</p>" for m in live[live.flag == "off_track"].message]
    back = tables.get("backtest", pd.DataFrame())
    if not back.empty:
        parts.append("<p class=note>Backtest (completed runs cut part-way, forecast at their planned end by a curve "
                     "fit without them): " + "; ".join(
            f"at {r.cut:.0%} of the steps {r.mean_abs_rel_error:.2%} mean error, interval coverage {r.coverage:.0%} "
            f"({plural(int(r.runs), 'run')})" for r in back.itertuples(index=False)) + ".</p>")
    if not missing.empty:
        parts.append(f"<p class=note>No forecast for {plural(len(missing), 'run')} in flight "
                     f"({esc(', '.join(missing.run_id))}): the reasons are under Exclusions below.</p>")
    if not live.empty:
        b64, cap = plot_in_flight(f, out)
        parts.append(f"<div class=figs><figure data-fig='in_flight'><img src='data:image/png;base64,{b64}' "
                     f"alt='runs in flight of {esc(f.name)}'><figcaption>{cap}</figcaption></figure></div>")
    return "\n".join(parts)


def _no_forecast(excl: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``excl`` (``pipeline.exclusions``) of runs in flight the forecast stage left out."""
    return excl[excl.kind == NO_FORECAST] if "kind" in excl else excl.iloc[:0]


@cached_figure("name", "slug", "forecasts")
def plot_in_flight(f, out: Path) -> tuple[str, str]:
    """Observed loss (dots), fitted curve law (line), forecast band to the planned end, the law's expectation
    (diamond) per run in flight; the planned LR (dotted) on the right axis."""
    from .figures import _new_fig, _save, plt  # noqa: PLC0415 - figures imports the family views (a cycle)

    tables = f.forecasts

    fig, ax = _new_fig()
    fig.subplots_adjust(right=0.86)
    lr_ax = ax.twinx()
    colors = plt.get_cmap("tab10")
    observed, curves = tables["observed"], tables["curves"]
    ends = []
    for i, r in enumerate(tables["in_flight"].itertuples(index=False)):
        color, x = colors(i % 10), 1.0 / r.total_steps  # steps as a fraction of the planned ones
        obs, cur = observed[observed.run_id == r.run_id], curves[curves.run_id == r.run_id]
        ax.scatter(obs.step * x, obs.loss, s=6, color=color, alpha=0.5, zorder=2)
        ahead = cur.step >= r.last_step
        ax.plot(cur.step[~ahead] * x, cur.fitted[~ahead], color=color, lw=1.2, label=mpl_text(r.run_id))
        ax.fill_between(cur.step[ahead] * x, cur.lo[ahead], cur.hi[ahead], color=color, alpha=0.25, lw=0)
        ax.errorbar([1.0], [r.forecast], yerr=[[r.forecast - r.lo], [r.hi - r.forecast]], color=color, fmt="o", ms=4,
                    capsize=3)
        if not pd.isna(r.law):
            ax.scatter([1.0], [r.law], marker="D", s=30, facecolor="none", edgecolor=color, zorder=4)
        lr_ax.plot(cur.step * x, cur.lr, color=color, lw=0.8, ls=":")
        ends += [r.lo, r.hi, r.law]
    tail = observed.loss.to_numpy(float)
    low = np.nanmin([*ends, *tail]) if len(tail) or ends else np.nan
    high = np.nanquantile(tail, 0.9) if len(tail) else np.nan
    if np.isfinite(low) and np.isfinite(high) and high > low:
        ax.set_ylim(low * 0.98, max(high, np.nanmax(ends)) * 1.02)
    ax.set_xlabel("fraction of the planned steps")
    ax.set_ylabel("loss (nats/token)")
    lr_ax.set_ylabel("learning rate (dotted)")
    ax.set_title(mpl_text(f"{f.name}: runs in flight"))
    ax.legend(loc="upper right", fontsize=7.5)
    ax.grid(True, alpha=0.2)
    cap = ("Runs in flight: logged loss (dots), the fitted curve law (line), the forecast band to the planned end "
           "and the forecast with its interval (point) at the planned end (1.0), the family law's expectation at the "
           "planned (N, D) (diamond); the planned learning rate on the right axis (dotted).")
    return _save(fig, f, "in_flight", out), cap
