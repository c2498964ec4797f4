"""Curve-law points: schedule-valid loss estimates at smaller budgets from one long run per model size.

Per (family, N) the completed run with the most tokens is the *source*. The sources of a family share one
Multi-Power Law loss-drop shape and ``alpha`` (:func:`~scaling_pipeline.lib.curves.family.fit_family` on their
whole curves, the per-step LR from the described schedule or the logged LR, with the weak prior
:data:`SHAPE_PRIOR` on the drop shape: one decay per size with noisy losses does not pin it); each source has its own ``L0`` and
``A`` (:func:`~scaling_pipeline.lib.curves.family.forecast_run` on its whole curve). A run of the same size and
batch decayed at ``f·D`` (``f`` in :data:`FRACTIONS`) follows the source's LR profile compressed in time to
``f·T`` steps (the same warm-up share, decay shape and end LR: a cosine to its own end stays one, a WSD keeps
its decay share; a constant-LR source, which never decays, gets the :data:`COOLDOWN` cool-down at each budget,
its loss drop from the family's decayed sources). The source's law at that run's last step, times the source's
gap between its evaluations and its fitted curve (an eval loss sits above or below the train loss the law is
fitted to), is the point's loss, ``loss_source = 'curve_law'``.

Only budgets inside the source's observed range: the budget's LR area must be at least the area at the
first fitted point, and ``f < 1`` (the source's own budget is an observed point). Beyond the run's own tokens
the law would extrapolate its forward term A·S1^(−α) past the data that fixed it, the very extrapolation a
scaling ladder is run to avoid; below its first points the curve is warm-up transient the law does not
describe.

Uncertainty (``loss_sd``, nats), in quadrature: the run's own (L0, A) by the delta method (Gauss-Newton
covariance from the relative residuals, inflated for their lag-1 autocorrelation); the shared shape by a
jackknife over the sources (the family's shape refitted without each source in turn, from 3 sources on); the
standard error of the eval gap (without evals: of the final loss, ``clean.points.loss_se``); the family fit's misfit
at its curves' ends. The backtest (below) measures how well that covers the real error (benchmarks/README.md,
"Curve-law points").

Backtest: a curve-law point with an observed run at the same N and D (within :data:`MATCH_TOKENS`) names it
and its loss (``observed_run``, ``observed_loss``): the evidence for turning the setting on. With at least
:data:`MIN_PAIRS` such pairs a family's points come from the candidate with the least backtest rms: the MPL's
above, or an observed curve's (``curves.observed``: the source's own logged curve as its forward part, a share
of the MPL's loss drop; for curves the MPL does not describe), its ``loss_sd`` then the choice's
leave-one-pair-out error; ``fits.curve_sources.detail`` says which and both errors.

A source whose curve cannot be fitted (no LR logged and no schedule described, too few points, a family none
of whose sources decays so no loss drop to fit) gives no points and a row in ``fits.curve_sources`` with the
reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from scaling_pipeline.lib import tables as T
from scaling_pipeline.lib.curves.family import FamilyCurves, ShapePrior, fit_family, forecast_run
from scaling_pipeline.lib.curves.fit import Curve
from scaling_pipeline.lib.curves.laws import MultiPowerLaw, Units
from scaling_pipeline.lib.curves.observed import DROP_SHARES, TIME_POWERS, ObservedCurve
from scaling_pipeline.lib.curves.schedule import CurveError
from scaling_pipeline.lib.forecast import run_curve, run_schedule
from scaling_pipeline.lib.settings import FitSettings

__all__ = ["COOLDOWN", "FRACTIONS", "SHAPE_PRIOR", "CurvePoints", "create_curve_tables", "curve_law_points", "decays",
           "fit_points", "read_curve_points", "source_runs", "stretched_lr", "target_lr"]

FRACTIONS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2)  # budgets of the curve-law points, fractions of the source's
MIN_STEPS = 10  # a virtual run needs at least this many steps
COOLDOWN = (0.2, 0.1)  # a constant-LR source's budgets: linear decay over this share of the steps to this share of the LR
MATCH_TOKENS = 0.02  # an observed run within this fraction of a curve-law point's D backtests it
# Prior on the family's loss-drop shape (ln C, beta, gamma; C absolute): centred on the mean of the Multi-Power Law
# paper's fitted shapes for its 25M, 100M and 400M models (Luo et al. 2025, arXiv:2503.12811; published parameters
# in ../shared/data/multipower_curves/reference_values.json: C 2.066/2.132/2.025, beta 0.583/0.598/0.594, gamma
# 0.641/0.655/0.635), with standard deviations PRIOR_WIDTH times the spread of those three fits (sd 0.026, 0.0078,
# 0.0105): three sizes of one recipe understate how much the shape varies between recipes, so the prior is wide.
PRIOR_WIDTH = 10.0
SHAPE_PRIOR = ShapePrior(mean=(0.7294, 0.5914, 0.6438),
                         sd=(PRIOR_WIDTH * 0.0262, PRIOR_WIDTH * 0.0078, PRIOR_WIDTH * 0.0105))
NO_CURVE_FIT = "no_curve_fit"  # no LR and no described schedule, or a series the law cannot be fitted to
NO_BUDGET = "no_budget_in_range"  # every budget falls before the first fitted point
MIN_PAIRS = 4  # backtest pairs a family needs before its points may come from an observed-curve candidate


@dataclass(frozen=True)
class CurvePoints:
    """Curve-law points (the ``fits.curve_points`` columns) and per source run its status
    (``fits.curve_sources``)."""

    points: pd.DataFrame
    sources: pd.DataFrame


def stretched_lr(lr: np.ndarray, last: int) -> np.ndarray:
    """The per-step LR ``lr`` (steps 0 … T) compressed in time to steps 0 … ``last``: step t of the result
    has the LR of step t·T/last of ``lr`` (linear between steps)."""
    grid = np.arange(len(lr), dtype=float)
    return np.interp(np.arange(last + 1) * (len(lr) - 1) / last, grid, lr)


def decays(lr: np.ndarray) -> bool:
    """Whether the LR falls after its peak (else the run is constant-LR after its warm-up)."""
    top = int(np.argmax(lr))
    return bool(np.any(lr[top:] < lr[top] * (1 - 1e-6)))


def target_lr(lr: np.ndarray, last: int) -> np.ndarray:
    """The per-step LR (steps 0 … ``last``) of a run of the source's recipe decayed at step ``last``: the
    source's profile ``lr`` compressed in time (:func:`stretched_lr`); a source that never decays gets the
    :data:`COOLDOWN` cool-down over the last steps."""
    eta = stretched_lr(lr, last)
    if not decays(lr):
        share, end = COOLDOWN
        start = int(round((1 - share) * last))
        eta[start:] = np.linspace(eta[start], end * eta[start], last + 1 - start)
    return eta


def source_runs(points: pd.DataFrame) -> pd.DataFrame:
    """Per (family, n_params) of ``points`` (clean.points rows) the one with the most tokens."""
    order = points.sort_values(["family", "n_params", "n_tokens", "run_id"])
    return order.drop_duplicates(["family", "n_params"], keep="last").reset_index(drop=True)


def _prediction_sd(law: MultiPowerLaw, curve: Curve, targets: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Relative standard errors of the law's loss at the last step of each (steps, per-step LR) target, from
    the run's own parameters (L0, A) at the family's shared ones."""
    lr = curve.lr[: curve.steps[-1] + 1]
    units = Units.of([lr], [curve.steps])
    z = MultiPowerLaw.internal({k: getattr(law, k) for k in MultiPowerLaw.params}, units)
    own = [MultiPowerLaw.index(name) for name in ("L0", "A")]
    pred, jac = MultiPowerLaw.model(z, MultiPowerLaw.terms(lr, curve.steps, units), jac=True)
    r = (pred - curve.loss) / curve.loss
    jr = jac[:, own] / curve.loss[:, None]
    n, k = jr.shape
    rho = float(np.clip(np.corrcoef(r[:-1], r[1:])[0, 1], 0.0, 0.9)) if n > 3 else 0.0
    cov = float(r @ r) / max(n - k, 1) * (1 + rho) / (1 - rho) * np.linalg.pinv(jr.T @ jr)
    out = []
    for last, eta in targets:
        p, g = MultiPowerLaw.model(z, MultiPowerLaw.terms(eta, np.array([last]), units), jac=True)
        out.append(float(np.sqrt(max(float(g[0, own] @ cov @ g[0, own]), 0.0))) / float(p[0]))
    return np.array(out)


def _eval_gap(law: MultiPowerLaw, curve: Curve, g: pd.DataFrame, final_loss: float,
              final_se: float | None) -> tuple[float, float]:
    """(log of the evaluations' mean ratio to the fitted curve, its standard error); without logged evals,
    the final loss's ratio to the curve at its last step (the step the final loss is at), its error the final
    loss's relative standard error ``final_se`` / ``final_loss`` (clean.points.loss_se; 0 when unknown)."""
    ev = g[g.eval_loss.notna() & (g.step >= curve.steps[0]) & (g.step <= curve.steps[-1])]
    if ev.empty:
        end = float(law.predict(curve.steps[-1:], curve.lr)[0])
        se = 0.0 if final_se is None or not np.isfinite(final_se) else float(final_se) / final_loss
        return float(np.log(final_loss / end)), se
    ratio = np.log(ev.eval_loss.to_numpy(float) / law.predict(ev.step.to_numpy(np.int64), curve.lr))
    se = float(ratio.std(ddof=1) / np.sqrt(len(ratio))) if len(ratio) > 1 else 0.0
    return float(ratio.mean()), se


def _jackknife_sd(curve: Curve, replicates: list[FamilyCurves], targets: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Relative jackknife standard errors of the loss at each target over the family shapes fitted without
    one source each (``replicates``; zeros with fewer than 3)."""
    lr = curve.lr[: curve.steps[-1] + 1]
    preds = []
    for rep in replicates:
        try:
            law = forecast_run(curve, lr, rep).law
        except CurveError:  # this shape does not fit the run (A <= 0): no replicate from it
            continue
        preds.append([float(law.predict([steps], eta)[0]) for steps, eta in targets])
    if len(preds) < 3:
        return np.zeros(len(targets))
    logs = np.log(np.array(preds))
    k = len(preds)
    return np.sqrt((k - 1) / k * np.sum((logs - logs.mean(axis=0)) ** 2, axis=0))


def _from_source(src: Any, curve: Curve, g: pd.DataFrame, family: FamilyCurves, replicates: list[FamilyCurves],
                 fractions: tuple[float, ...]) -> tuple[list[dict], dict]:
    """The curve-law points of one source run and its ``fits.curve_sources`` row."""
    row = dict(family=src.family, run_id=src.run_id, n_params=src.n_params, n_tokens=src.n_tokens)
    last = int(curve.steps[-1])
    lr = curve.lr[: last + 1]
    law = forecast_run(curve, lr, family).law
    fitted = law.predict(curve.steps, lr)
    rms = float(np.sqrt(np.mean(np.square(fitted / curve.loss - 1))))
    first_area = float(np.cumsum(lr)[curve.steps[0]])
    targets, budgets = [], []
    for f in fractions:
        steps = int(round(f * last))
        if not 0 < f < 1 or steps < MIN_STEPS:
            continue
        eta = target_lr(lr, steps)
        if eta.sum() < first_area:  # before the first fitted point: warm-up transient, not in the law
            continue
        targets.append((steps, eta))
        budgets.append(f)
    if not targets:
        return [], {**row, "status": "excluded", "reason": NO_BUDGET, "n_points": 0, "rms": rms,
                    "detail": f"every budget {', '.join(f'{f:g}' for f in fractions)} of its tokens falls before "
                              f"its first fitted point (step {curve.steps[0]})"}
    gap, gap_se = _eval_gap(law, curve, g, float(src.loss), src.loss_se)
    rel_sd = np.sqrt(_prediction_sd(law, curve, targets) ** 2 + _jackknife_sd(curve, replicates, targets) ** 2
                     + gap_se**2 + family.end_sigma**2)
    out = []
    for f, (steps, eta), s in zip(budgets, targets, rel_sd):
        loss = float(law.predict([steps], eta)[0]) * np.exp(gap)
        d = f * float(src.n_tokens)
        sd = loss * float(s)
        out.append(dict(run_id=f"{src.run_id}@{f:g}", family=src.family, n_params=float(src.n_params), n_tokens=d,
                        flops=6.0 * float(src.n_params) * d, loss=loss, loss_sd=sd,
                        loss_source="curve_law", source_run=src.run_id, fraction=f, final_step=steps))
    detail = (f"MPL with the family's shared shape, L0 {law.L0:.4g}, A {law.A:.4g} on {len(curve.steps)} points "
              f"(rms {rms:.2%}); eval gap {np.expm1(gap):+.2%}"
              + ("" if decays(lr) else f"; constant LR: budgets with a linear cool-down over the last {COOLDOWN[0]:.0%} "
                                       f"of their steps to {COOLDOWN[1]:.0%} of the LR"))
    return out, {**row, "status": "ok", "reason": None, "detail": detail, "n_points": len(out), "rms": rms}


def curve_law_points(runs: pd.DataFrame, steps: pd.DataFrame, points: pd.DataFrame, *,
                     fractions: tuple[float, ...] = FRACTIONS) -> CurvePoints:
    """Curve-law points (module docstring) from ``clean.points`` rows ``points``, their runs' metadata
    ``runs`` (clean.runs columns plus ``extra`` from raw.runs: the schedule description) and their logged
    steps ``steps`` (run_id, step, train_loss, eval_loss, lr)."""
    meta = {r.run_id: r for r in runs.itertuples(index=False)}
    by_run = dict(tuple(steps.groupby("run_id"))) if len(steps) else {}
    out, sources = [], []

    def exclude(src: Any, reason: str, detail: str) -> None:
        sources.append(dict(family=src.family, run_id=src.run_id, n_params=src.n_params, n_tokens=src.n_tokens,
                            status="excluded", reason=reason, detail=detail, n_points=0, rms=None))

    for _, group in source_runs(points).groupby("family", sort=True):
        curves = []
        for src in group.itertuples(index=False):
            g = by_run.get(src.run_id, steps.iloc[:0])
            try:
                if src.run_id not in meta:
                    raise CurveError(f"{src.run_id}: no run metadata")
                try:
                    schedule = run_schedule(meta[src.run_id])
                except CurveError:  # an incomplete description: the LR is in the log
                    schedule = None
                curves.append((src, run_curve(meta[src.run_id], g, schedule), g))
            except CurveError as exc:
                exclude(src, NO_CURVE_FIT, str(exc))
        try:
            family = fit_family([c for _, c, _ in curves], prior=SHAPE_PRIOR)
        except CurveError as exc:
            for src, _, _ in curves:
                exclude(src, NO_CURVE_FIT, f"the family's curve law could not be fitted: {exc}")
            continue
        replicates = []
        for j in range(len(curves) if len(curves) >= 3 else 0):
            try:
                replicates.append(fit_family([c for i, (_, c, _) in enumerate(curves) if i != j], prior=SHAPE_PRIOR))
            except CurveError:  # without this source the shape cannot be fitted: one replicate fewer
                continue
        made, done = [], []
        for src, curve, g in curves:
            try:
                got, status = _from_source(src, curve, g, family, replicates, fractions)
            except CurveError as exc:
                got, status = [], None
                exclude(src, NO_CURVE_FIT, str(exc))
            made += got
            if status:
                done.append(status)
        chosen, how = _choose(_observed(pd.DataFrame(made, columns=T.FITS_CURVE_POINTS.names), points), curves, family)
        out.append(chosen)
        sources += [{**row, "detail": f"{row['detail']}; {how}"} for row in done]
    empty = pd.DataFrame(columns=T.FITS_CURVE_POINTS.names)
    frame = pd.concat(out, ignore_index=True) if out else _observed(empty, points)
    return CurvePoints(frame, pd.DataFrame(sources, columns=T.FITS_CURVE_SOURCES.names))


def _choose(made: pd.DataFrame, curves: list, family: FamilyCurves) -> tuple[pd.DataFrame, str]:
    """A family's points (``made``: the MPL's, with their backtest) from the candidate whose backtest rms relative
    error is least: the MPL's, or an observed curve's (:class:`~scaling_pipeline.lib.curves.observed.ObservedCurve`,
    one per (p, s)); and a sentence saying which. The choice left one pair out (each pair predicted by the candidate
    chosen on the other pairs) must beat the MPL's error, else the MPL's points stay (few pairs, many candidates:
    the least in-sample error alone overfits); an observed curve's ``loss_sd`` is its loss times that error."""
    pairs = made.observed_loss.notna().to_numpy()
    if pairs.sum() < MIN_PAIRS:
        return made, f"points from the MPL ({int(pairs.sum())} backtest pairs: too few to choose another candidate)"
    lrs = {src.run_id: curve.lr[: curve.steps[-1] + 1] for src, curve, _ in curves}
    logs = {src.run_id: g[g.step <= curve.steps[-1]] for src, curve, g in curves}
    candidates = {"MPL": made.loss.to_numpy(float)}
    for power in TIME_POWERS:
        for share in DROP_SHARES:
            try:
                seen = {k: ObservedCurve.of(logs[k], lrs[k], family.shared, power, share) for k in set(made.source_run)}
            except CurveError as exc:
                return made, f"points from the MPL (a source has {exc})"
            candidates[f"observed curve (p {power:g}, drop share {share:g})"] = np.array(
                [seen[v.source_run].predict(int(v.final_step), target_lr(lrs[v.source_run], int(v.final_step)),
                                            family.shared) for v in made.itertuples(index=False)])
    names = list(candidates)
    err = np.array([candidates[k][pairs] for k in names]) / made.observed_loss.to_numpy(float)[pairs] - 1
    best = int(np.argmin(np.mean(err**2, axis=1)))
    held = [err[int(np.argmin(np.mean(np.delete(err, i, axis=1) ** 2, axis=1))), i] for i in range(err.shape[1])]
    cv = float(np.sqrt(np.mean(np.square(held))))
    rms = np.sqrt(np.mean(err**2, axis=1))
    use = best if cv < rms[0] else 0  # the choice must beat the MPL without the run it predicts
    how = (f"points from the {names[use]}: backtest rms {rms[use]:.2%} on {int(pairs.sum())} observed runs (least: "
           f"the {names[best]}, {rms[best]:.2%}, chosen without the run it predicts {cv:.2%}; MPL {rms[0]:.2%})")
    if use == 0:
        return made, how
    return made.assign(loss=candidates[names[use]], loss_sd=candidates[names[use]] * cv), how


def _observed(virtual: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """``virtual`` with ``observed_run``/``observed_loss``: the observed point of the same family and N whose D
    is nearest, when within :data:`MATCH_TOKENS` (the backtest of the curve-law points)."""
    runs, losses = [], []
    for v in virtual.itertuples(index=False):
        same = points[(points.family == v.family) & (points.n_params == v.n_params)]
        gap = np.abs(np.log(same.n_tokens.to_numpy(float) / v.n_tokens))
        j = int(np.argmin(gap)) if len(gap) else -1
        hit = j >= 0 and gap[j] < np.log1p(MATCH_TOKENS)
        runs.append(same.run_id.iloc[j] if hit else None)
        losses.append(float(same.loss.iloc[j]) if hit else np.nan)
    return virtual.assign(observed_run=pd.Series(runs, index=virtual.index, dtype=object),
                          observed_loss=np.array(losses, dtype=float))


def read_curve_points(con: duckdb.DuckDBPyConnection, points: pd.DataFrame) -> CurvePoints:
    """Curve-law points of ``points`` (clean.points rows) from the warehouse's clean.runs, raw.runs and clean.steps."""
    runs = con.execute("""SELECT r.*, x.extra FROM clean.runs r LEFT JOIN (
                              SELECT run_id, min(extra) AS extra FROM raw.runs GROUP BY run_id) x USING (run_id)
                          WHERE list_contains(?, r.run_id)""", [sorted(source_runs(points).run_id)]).df()
    steps = con.execute("SELECT run_id, step, train_loss, eval_loss, lr FROM clean.steps WHERE list_contains(?, run_id) "
                        "ORDER BY run_id, step", [sorted(runs.run_id)]).df()
    return curve_law_points(runs, steps, points)


def create_curve_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``fits.curve_points`` and ``fits.curve_sources`` empty where absent or of another layout (their rows:
    :func:`fit_points`): the view ``pipeline.exclusions`` reads ``fits.curve_sources`` even where the fits were
    imported (``import-fits``) and no fit stage made it."""
    for table in (T.FITS_CURVE_POINTS, T.FITS_CURVE_SOURCES):
        if T.stored_columns(con, table) != table.names:
            T.replace(con, table)


def fit_points(con: duckdb.DuckDBPyConnection, points: pd.DataFrame, settings: FitSettings) -> pd.DataFrame:
    """The points the L(N, D) fit uses: ``points`` (clean.points), plus the curve-law points when
    ``settings.curve_law_points`` is 'use'. 'store' and 'use' rebuild ``fits.curve_points`` and
    ``fits.curve_sources`` (one transaction); 'off' empties them."""
    made = (read_curve_points(con, points) if settings.curve_law_points != "off" and len(points)
            else CurvePoints(pd.DataFrame(columns=T.FITS_CURVE_POINTS.names),
                             pd.DataFrame(columns=T.FITS_CURVE_SOURCES.names)))
    with T.transaction(con):
        for table, frame in ((T.FITS_CURVE_POINTS, made.points), (T.FITS_CURVE_SOURCES, made.sources)):
            T.replace(con, table)
            if len(frame):
                T.insert_frame(con, table, frame)
    if settings.curve_law_points != "use" or made.points.empty:
        return points
    extra = made.points.reindex(columns=points.columns)
    return pd.concat([points, extra], ignore_index=True).sort_values(["family", "run_id"], ignore_index=True)
