"""The per-family model comparison on the page: one table per family of every law form the fit stage compared
(``fits.comparison`` with its parameters from ``fits.comparison_params``; see
:mod:`scaling_pipeline.lib.fitting.compare` for the scores and the rule that picks the form plans are made from)."""

from __future__ import annotations

import pandas as pd

from scaling_pipeline.lib.laws import FORMS

from .formatting import esc, fmt_ci, fmt_pct, num, plural

SQL = """SELECT c.*, p.param, p.value, p.lo, p.hi FROM fits.comparison c
         LEFT JOIN fits.comparison_params p USING (family, form, subset)
         ORDER BY c.family, c.form, c.subset, p.rowid"""
COLUMNS = ["family", "form", "subset", "applicable", "status", "reason", "n_points", "n_fitted_params", "objective",
           "objective_kind", "aic", "bic", "backtest_mean_error", "backtest_max_error", "backtest_n_holdout",
           "backtest_note", "has_allocation", "verdict", "eligible", "chosen", "interval_source", "param", "value",
           "lo", "hi"]


def chosen_form(rows: pd.DataFrame) -> str | None:
    """The form the family's plans are made from (the comparison's ``chosen`` row), if any."""
    chosen = rows[rows.chosen.fillna(False).astype(bool)]
    return str(chosen.form.iloc[0]) if len(chosen) else None


def comparison_section(rows: pd.DataFrame) -> str:
    """The family's comparison table (``rows``: its rows of :data:`SQL`, one per parameter); ``""`` without any."""
    if rows is None or rows.empty:
        return ""
    order = {name: i for i, name in enumerate(FORMS)}
    fits = [g for _, g in sorted(rows.groupby(["form", "subset"], sort=False, dropna=False),
                                 key=lambda kv: (order.get(kv[0][0], len(order)), str(kv[0][0]), str(kv[0][1])))]
    head = ("<tr><th class=text>form</th><th class=text>runs</th><th>points</th><th>parameters</th><th>objective</th>"
            "<th>AIC</th><th>BIC</th><th>backtest error (mean, max)</th><th class=text>fitted parameters</th></tr>")
    body = "".join(_row(g) for g in fits)
    chosen = chosen_form(rows)
    plan = (f"Plans are made from <b>{esc(chosen)}</b>: the lowest backtest error among the publishable forms with a "
            "compute-optimal allocation (ties: fewer parameters)." if chosen else
            "No form with an allocation is publishable: no plan is made from this comparison.")
    return ("<h3>Model comparison</h3><p class=note>Every law form fitted to the runs it applies to. Objective: the "
            "form's own (Huber: sum over runs of Huber_δ of the log-loss residuals; mse: mean squared log residual). "
            "AIC/BIC: Gaussian likelihood of the log residuals with its maximum-likelihood variance (k = fitted "
            "parameters + 1), comparable only between rows fitted to the same runs. Backtest: refitted without the "
            "largest-compute 10% of those runs, |predicted/observed − 1| on them. Brackets: 95% bootstrap "
            f"intervals where a bootstrap exists (Chinchilla only). ★ marks the chosen form. {plan}</p>"
            f"<table class=small data-table='comparison'>{head}{body}</table>")


def _row(g: pd.DataFrame) -> str:
    r = g.iloc[0]
    form = esc(r.form) + (" ★" if bool(r.chosen) else "")
    runs = esc(r.subset) if isinstance(r.subset, str) and r.subset else "all"
    if r.status != "ok":
        why = "not applicable" if r.status == "not_applicable" else "fit failed"
        return (f"<tr data-form='{esc(r.form)}' class=na><td class=text>{form}</td>"
                f"<td class=text colspan=8>{why}: {esc(r.reason)}</td></tr>")
    kind = "Huber" if str(r.objective_kind).startswith("huber") else esc(r.objective_kind)
    bt = (f"{fmt_pct(r.backtest_mean_error)}, {fmt_pct(r.backtest_max_error)} "
          f"({plural(int(num(r.backtest_n_holdout, 0)), 'run')})" if pd.notna(r.backtest_mean_error)
          else f"– ({esc(r.backtest_note or 'not run')})")
    params = ", ".join(f"{esc(p.param)} = {fmt_ci(p.value, (p.lo, p.hi))}"
                       for p in g.itertuples(index=False) if isinstance(p.param, str))
    return (f"<tr data-form='{esc(r.form)}'{' class=headline' if bool(r.chosen) else ''}><td class=text>{form}</td>"
            f"<td class=text>{runs}</td><td>{int(num(r.n_points, 0))}</td><td>{int(num(r.n_fitted_params, 0))}</td>"
            f"<td>{num(r.objective):.4g} ({kind})</td><td>{num(r.aic):.1f}</td><td>{num(r.bic):.1f}</td>"
            f"<td>{bt}</td><td class=text>{params}</td></tr>")
