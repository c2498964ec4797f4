"""Final loss of a run without an eval at its last step, on simulated ladders with a known truth.

``python benchmarks/bench_final_loss.py`` prints, per schedule and logging density, the bias and rms (% of the
loss) of estimates of the noise-free loss at a run's last step from its logged train losses: the mean of the
last 5 and ``cleaning.steps.final_losses`` over the last 4% of the steps (at least 5) for a few shrinkages c:
c = 0 is the least-squares line in step at the last step, c > 0 the losses' mean plus that line's trend shrunk by
max(0, 1 - c var(slope) / slope^2). Then the Chinchilla exponents fitted on ``clean.points`` (the default c) of
ladders whose evals are removed, against the fit on the noise-free final losses (``--exponents``: only those). Results: benchmarks/README.md, "Final loss from train losses".
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from scaling_pipeline.lib.cleaning import clean
from scaling_pipeline.lib.cleaning.points import TRAIN_SHRUNK_LINE
from scaling_pipeline.lib.cleaning.steps import final_losses
from scaling_pipeline.lib.fitting.chinchilla import fit_chinchilla
from scaling_pipeline.lib.formats import write_logs
from scaling_pipeline.lib.ingest import ingest
from scaling_pipeline.lib.simulate import SimConfig, simulate_ladder
from scaling_pipeline.lib.simulate.design import family_plans, family_truths, schedule_of
from scaling_pipeline.lib.simulate.loss import _expected_loss, run_mpl

GRID = SimConfig(n_sizes=5, n_budgets=4, isoflop_flops=None, inject_faults=False)
# name -> (schedule, final LR fraction, anneal gap): "constant" has no decay and a negligible loss drop
SCHEDULES = {"constant": ("cosine", 0.999, 1e-6), "cosine": ("cosine", 0.1, 0.4), "wsd": ("wsd", 0.1, 0.4),
             "cooldown": ("constant_cooldown", 0.1, 0.4), "two_stage": ("two_stage", 0.1, 0.4)}
LOG_POINTS = (30, 60, 150, 500, 1500)
SHRINKAGES = (0.0, 1.0, 2.0, 3.0)
SEEDS = (0, 1, 2)


def true_final(config: SimConfig, n_families: int) -> dict[str, float]:
    """run_id -> noise-free loss at the run's last (planned) step, nats/token."""
    out = {}
    for fam, truth in enumerate(family_truths(n_families, config)):
        for p in family_plans(fam, truth.name, config, {}):
            lr = schedule_of(p, config).lr(p.total_steps)
            law = run_mpl(truth, p, config, lr)
            out[p.run_id] = float(_expected_loss(law, np.array([p.total_steps]), lr, config)[0])
    return out


def steps_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"run_id": metrics.run_id, "step": metrics.step,
                         "train_loss": metrics.train_loss.to_numpy(float, na_value=np.nan), "eval_loss": np.nan})


def mean_last(steps: pd.DataFrame, k: int = 5) -> pd.Series:
    return steps.sort_values("step").groupby("run_id").train_loss.apply(lambda y: y.iloc[-k:].mean())


def per_run(name: str, log_points: int) -> dict[str, tuple[float, float]]:
    schedule, final, gap = SCHEDULES[name]
    config = replace(GRID, schedules=(schedule,), final_lr_frac=final, anneal_gap=gap, log_points=log_points)
    errors: dict[str, list[float]] = {}
    truth = true_final(config, 2)
    for seed in SEEDS:
        steps = steps_frame(simulate_ladder(seed, 2, config).metrics)
        con = duckdb.connect()
        con.execute("CREATE SCHEMA clean")
        con.execute("CREATE TABLE clean.steps AS SELECT * FROM steps")
        estimates = {"mean5": mean_last(steps)}
        for c in SHRINKAGES:
            estimates[f"c={c:g}"] = final_losses(con, 5, shrinkage=c)[0].train_at_end
        con.close()
        for est, values in estimates.items():
            errors.setdefault(est, []).extend(values[r] / truth[r] - 1 for r in values.index)
    return {e: (100 * np.mean(v), 100 * np.sqrt(np.mean(np.square(v)))) for e, v in errors.items()}


def exponents(schedules: tuple[str, ...], log_points: int, seed: int, noise: float) -> dict[str, np.ndarray]:
    """(E, alpha, beta) fitted on the noise-free final losses, on the mean of the last 5 train losses, on the line
    at the last step (c = 0) and on clean.points, of a 7 x 5 ladder (1 family) whose evals are removed (train-loss
    noise ``noise``)."""
    config = replace(SimConfig(isoflop_flops=None, inject_faults=False), schedules=schedules, log_points=log_points,
                     train_noise=noise)
    ladder = simulate_ladder(seed, 1, config)
    metrics = ladder.metrics.assign(eval_loss=pd.array([None] * len(ladder.metrics), dtype="double[pyarrow]"))
    with tempfile.TemporaryDirectory() as tmp:
        write_logs("csv", Path(tmp), ladder.runs, metrics)
        con = duckdb.connect()
        ingest(Path(tmp), con)
        clean(con)
    points = con.execute("SELECT run_id, n_params, n_tokens, loss, loss_source FROM clean.points ORDER BY run_id").df()
    steps = con.execute("SELECT run_id, step, train_loss FROM clean.steps").df()
    line = final_losses(con, 5, shrinkage=0.0)[0].train_at_end
    con.close()
    assert points.loss_source.str.startswith(TRAIN_SHRUNK_LINE).all()
    truth = true_final(config, 1)
    mean5 = mean_last(steps)

    def fit(loss) -> np.ndarray:
        f = fit_chinchilla(points.n_params.to_numpy(), points.n_tokens.to_numpy(), np.asarray(loss, float))
        return np.array([f.params["E"], f.params["alpha"], f.params["beta"]])

    return {"truth": fit([truth[r] for r in points.run_id]), "mean5": fit(mean5[points.run_id]),
            "line": fit(line[points.run_id]), "shrunk": fit(points.loss)}


ESTIMATES = ("mean5", "line", "shrunk")
EXPONENT_SCHEDULES = (("wsd",), ("constant_cooldown",), ("cosine",), ("cosine", "wsd", "constant_cooldown", "two_stage"))


def main() -> None:
    print("bias / rms of (estimate / noise-free loss at the last step - 1), %; 2 families x 20 runs x 3 seeds")
    for name in SCHEDULES if "--exponents" not in sys.argv else ():
        for lp in LOG_POINTS:
            r = per_run(name, lp)
            print(f"{name:10s} {lp:5d}  " + "  ".join(f"{e} {b:+.2f}/{rms:.2f}" for e, (b, rms) in r.items()),
                  flush=True)
    print("\n(E, alpha, beta) of fit_chinchilla on a 7 x 5 ladder, evals removed, minus the fit on the noise-free final "
          "losses: noise-free train losses (the estimate's bias), then 5 seeds of 1.2% noise (mean and sd)")
    for schedules in EXPONENT_SCHEDULES:
        for lp in (60, 150):
            row = f"{'+'.join(schedules):38s} {lp:4d}"
            e = exponents(schedules, lp, 0, 0.0)
            row += "  noise-free " + "  ".join(f"{k} {_triple(e[k] - e['truth'])}" for k in ESTIMATES)
            shifts: dict[str, list[np.ndarray]] = {k: [] for k in ESTIMATES}
            for seed in range(5):
                e = exponents(schedules, lp, seed, GRID.train_noise)
                for k in shifts:
                    shifts[k].append(e[k] - e["truth"])
            row += "  noisy " + "  ".join(f"{k} {_triple(np.mean(v, axis=0))} sd {_triple(np.std(v, axis=0))}"
                                         for k, v in shifts.items())
            print(row, flush=True)


def _triple(x: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:+.3f}" for v in x) + ")"

if __name__ == "__main__":
    main()
