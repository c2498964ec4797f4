"""Curve-law point variants on gpu_ladder: which way of turning one long run per size into losses at smaller
budgets misses the observed runs least (benchmarks/README.md, "Curve-law points").

    PYTHONPATH=. python benchmarks/bench_curve_point_variants.py [--data ../shared/data/gpu_ladder]

Pairs: every completed run of a source's size and batch whose budget's LR area (the source's profile compressed
to its steps) reaches the source's first fitted point, predicted from the source; per family the rms relative error
over all pairs and over those at >= 1/10 of the source's steps. Variants: the MPL as in ``curves.points`` (shared
drop shape, with and without the shape prior), fitted only from 10% / 20% of the steps, with each train loss (a mean
over its log interval) placed at its interval's middle, fitted to the eval losses only, each source with its own
alpha and shape; the LR-annealing law (Tissue et al. 2024: shared alpha and C, each run's L0 and A); and the observed
curves of ``curves.observed`` for every (p, s), with the choice of (p, s) by leave-one-size-out (chosen on the
other sizes' pairs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaling_pipeline.lib.cleaning import CleanConfig, clean  # noqa: E402
from scaling_pipeline.lib.curves.family import fit_family, forecast_run  # noqa: E402
from scaling_pipeline.lib.curves.fit import Curve  # noqa: E402
from scaling_pipeline.lib.curves.laws import LRAnnealing, Units  # noqa: E402
from scaling_pipeline.lib.curves.observed import DROP_SHARES, TIME_POWERS, ObservedCurve  # noqa: E402
from scaling_pipeline.lib.curves.points import SHAPE_PRIOR, _eval_gap, source_runs, target_lr  # noqa: E402
from scaling_pipeline.lib.forecast import run_curve, run_schedule  # noqa: E402
from scaling_pipeline.lib.ingest import ingest  # noqa: E402

Predictor = Callable[[str, int], float]  # (source run, steps) -> loss


def _trimmed(c: Curve, g: pd.DataFrame, share: float) -> Curve:
    keep = c.steps >= share * c.steps[-1]
    return Curve(c.name, c.steps[keep], c.loss[keep], c.lr)


def _midpoints(c: Curve, g: pd.DataFrame) -> Curve:
    mid = np.maximum((np.concatenate([[0], c.steps[:-1]]) + c.steps) // 2, 1)
    keep = np.concatenate([[True], np.diff(mid) > 0])
    return Curve(c.name, mid[keep], c.loss[keep], c.lr)


def _evals(c: Curve, g: pd.DataFrame) -> Curve:
    ev = g[g.eval_loss.notna() & (g.step >= c.steps[0])]
    return Curve(c.name, ev.step.to_numpy(np.int64), ev.eval_loss.to_numpy(float), c.lr)


def mpl(curves: dict, logs: dict, prep=None, prior=SHAPE_PRIOR, own: bool = False, gap: bool = True) -> Predictor:
    """The MPL points of ``curves.points`` with the source curves passed through ``prep``."""
    used = {k: prep(c, logs[k]) if prep else c for k, c in curves.items()}
    family = None if own else fit_family(list(used.values()), prior=prior)
    laws = {}
    for k, c in used.items():
        law = forecast_run(c, c.lr, fit_family([c], prior=prior) if own else family).law
        laws[k] = (law, _eval_gap(law, c, logs[k], float(c.loss[-1]))[0] if gap else 0.0)
    return lambda k, steps: float(laws[k][0].predict([steps], target_lr(curves[k].lr, steps))[0] * np.exp(laws[k][1]))


def lr_annealing(curves: dict, logs: dict, decay: float) -> Predictor:
    """The LR-annealing law with shared alpha and C, each source's L0 and A (variable projection on alpha)."""
    units = Units.of([c.lr for c in curves.values()], [c.steps for c in curves.values()])
    terms = {k: LRAnnealing.terms(c.lr, c.steps, units, decay=decay) for k, c in curves.items()}

    def solve(alpha: float):
        rows = []
        for j, (k, c) in enumerate(curves.items()):
            block = np.zeros((len(c.loss), 2 * len(curves) + 1))
            block[:, 2 * j], block[:, 2 * j + 1] = 1.0, terms[k].s1 ** -alpha
            block[:, -1] = -terms[k].schedule
            rows.append(block / c.loss[:, None])
        m = np.vstack(rows)
        coef, *_ = np.linalg.lstsq(m, np.ones(len(m)), rcond=None)
        return coef, float(np.sum((m @ coef - 1) ** 2))

    grid = np.geomspace(1e-3, 3.0, 60)
    a0 = min(grid, key=lambda a: solve(a)[1])
    alpha = minimize_scalar(lambda a: solve(a)[1], bounds=(max(1e-3, a0 / 1.3), min(3.0, a0 * 1.3)),
                            method="bounded").x
    coef, _ = solve(alpha)
    laws = {}
    for j, (k, c) in enumerate(curves.items()):
        z = np.array([coef[2 * j], np.log(max(coef[2 * j + 1], 1e-300)), alpha, np.log(max(coef[-1], 1e-300))])
        law = LRAnnealing(**LRAnnealing.from_internal(z, units), decay=decay)
        laws[k] = (law, _eval_gap(law, c, logs[k], float(c.loss[-1]))[0])
    return lambda k, steps: float(laws[k][0].predict([steps], target_lr(curves[k].lr, steps))[0] * np.exp(laws[k][1]))


def observed(curves: dict, logs: dict, power: float, share: float) -> Predictor:
    shared = fit_family(list(curves.values()), prior=SHAPE_PRIOR).shared
    obs = {k: ObservedCurve.of(logs[k][logs[k].step <= c.steps[-1]], c.lr, shared, power, share)
           for k, c in curves.items()}
    return lambda k, steps: obs[k].predict(steps, target_lr(curves[k].lr, steps), shared)


def study(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Relative error of every variant at every pair (rows: family, source, run, fraction; a column per variant)."""
    points = con.execute("SELECT * FROM clean.points ORDER BY family, run_id").df()
    runs = con.execute("""SELECT r.*, x.extra FROM clean.runs r LEFT JOIN (SELECT run_id, min(extra) AS extra
                          FROM raw.runs GROUP BY run_id) x USING (run_id)""").df().set_index("run_id", drop=False)
    steps = con.execute("SELECT run_id, step, train_loss, eval_loss, lr FROM clean.steps ORDER BY run_id, step").df()
    logs = dict(tuple(steps.groupby("run_id")))
    out = []
    for family, sources in source_runs(points).groupby("family"):
        curves = {}
        for k in sources.run_id:
            c = run_curve(runs.loc[k], logs[k], run_schedule(runs.loc[k]))
            curves[k] = Curve(c.name, c.steps, c.loss, c.lr[: c.steps[-1] + 1])
        variants = {"MPL, prior": mpl(curves, logs), "MPL, no prior": mpl(curves, logs, prior=None),
                    "MPL, from 10% of steps": mpl(curves, logs, prep=lambda c, g: _trimmed(c, g, 0.1)),
                    "MPL, from 20% of steps": mpl(curves, logs, prep=lambda c, g: _trimmed(c, g, 0.2)),
                    "MPL, train losses at interval middles": mpl(curves, logs, prep=_midpoints),
                    "MPL, eval losses only": mpl(curves, logs, prep=_evals, gap=False),
                    "MPL, own alpha and shape per source": mpl(curves, logs, own=True),
                    **{f"LR annealing, decay {d:g}": lr_annealing(curves, logs, d) for d in (0.999, 0.99)},
                    **{f"observed p {p:g} s {s:g}": observed(curves, logs, p, s)
                       for p in TIME_POWERS for s in DROP_SHARES}}
        for src in sources.itertuples(index=False):
            c = curves[src.run_id]
            batch = runs.loc[src.run_id, "batch_tokens"]
            same = points[(points.family == family) & (points.n_params == src.n_params) & (points.run_id != src.run_id)]
            for run in same.itertuples(index=False):
                n = int(runs.loc[run.run_id, "total_steps"])
                in_range = target_lr(c.lr, n).sum() >= c.lr[: c.steps[0] + 1].sum()
                if runs.loc[run.run_id, "batch_tokens"] != batch or not in_range:
                    continue
                out.append(dict(family=family, source=src.run_id, run=run.run_id, fraction=n / c.steps[-1],
                                **{name: f(src.run_id, n) / run.loss - 1 for name, f in variants.items()}))
    return pd.DataFrame(out)


def leave_one_size_out(errors: pd.DataFrame) -> pd.Series:
    """Per pair the error of the observed-curve (p, s) with the least rms on the other sizes' pairs of its family."""
    names = [c for c in errors.columns if c.startswith("observed ")]
    held = pd.Series(np.nan, index=errors.index)
    for (_, source), rows in errors.groupby(["family", "source"]):
        others = errors[(errors.family == rows.family.iloc[0]) & (errors.source != source)]
        held[rows.index] = rows[(others[names] ** 2).mean().idxmin()]
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    reference = Path(os.environ.get("SCALING_REFERENCE_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
    parser.add_argument("--data", type=Path, default=reference / "gpu_ladder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "w.duckdb"))
        ingest(args.data, con)
        clean(con, CleanConfig())
        errors = study(con)
    errors["observed, (p, s) chosen leaving the size out"] = leave_one_size_out(errors)
    names = [c for c in errors.columns if c not in ("family", "source", "run", "fraction")]
    table = {}
    for family, rows in errors.groupby("family"):
        for label, part in (("all", rows), (">= 1/10", rows[rows.fraction >= 0.1])):
            table[f"{family} {label} ({len(part)})"] = np.sqrt((part[names] ** 2).mean())
    print(pd.DataFrame(table).to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
