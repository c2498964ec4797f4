"""Learning-rate sweeps among the candidate points: the optimum per (N, D) and LR*(N) per family.

Tables (rebuilt with the rest of ``clean``):

``clean.lr_sweeps``   every candidate run with a known peak LR at a (family, N, D) logged at two or
                      more learning rates: its LR and final loss (nats/token); ``best`` marks the
                      lowest loss of its (N, D).
``clean.lr_optima``   per swept (family, N, D): the optimal LR (:func:`~scaling_pipeline.lib.hparams.lr_optimum`).
``clean.lr_scaling``  per family with swept sizes: LR* = c·N^-gamma (·D^-delta) fitted to the optima
                      whose status is ok (:func:`~scaling_pipeline.lib.hparams.lr_scaling`).
"""

from __future__ import annotations

from dataclasses import asdict

import duckdb
import pandas as pd

from scaling_pipeline.lib.hparams import OK, lr_optimum, lr_scaling
from scaling_pipeline.lib.tables import (CLEAN_LR_OPTIMA, CLEAN_LR_SCALING, CLEAN_LR_SWEEPS, Table, insert_frame,
                                         replace)


def _replace_table(con: duckdb.DuckDBPyConnection, table: Table, rows: list[dict]) -> None:
    replace(con, table)
    if rows:
        insert_frame(con, table, pd.DataFrame(rows, columns=table.names))


def write_lr_tables(con: duckdb.DuckDBPyConnection, candidates: pd.DataFrame) -> None:
    """Write the three tables from ``candidates`` (run_id, family, n_params, n_tokens, loss, lr, sweep:
    one id per family and (N, D))."""
    swept = candidates[candidates.lr.notna()]
    swept = swept[swept.groupby("sweep").run_id.transform("size") >= 2]
    sweep_rows, optima_rows, optima = [], [], []
    for _, g in swept.sort_values(["family", "n_params", "n_tokens", "lr", "run_id"]).groupby("sweep", sort=False):
        size = dict(family=g.family.iloc[0], n_params=float(g.n_params.median()), n_tokens=float(g.n_tokens.median()))
        best = g.loss.idxmin()
        sweep_rows += [dict(family=r.family, n_params=r.n_params, n_tokens=r.n_tokens, run_id=r.run_id, lr=r.lr,
                            loss=r.loss, best=r.Index == best) for r in g.itertuples()]
        opt = lr_optimum(g.lr.to_numpy(), g.loss.to_numpy())
        optima_rows.append({**size, **asdict(opt)})
        optima.append((size, opt))
    scaling = {}
    for family in sorted({size["family"] for size, _ in optima}):
        ok = [(size, opt) for size, opt in optima if size["family"] == family and opt.status == OK]
        scaling[family] = lr_scaling([s["n_params"] for s, _ in ok], [o.lr_opt for _, o in ok],
                                     [s["n_tokens"] for s, _ in ok])
    _replace_table(con, CLEAN_LR_SWEEPS, sweep_rows)
    _replace_table(con, CLEAN_LR_OPTIMA, optima_rows)
    _replace_table(con, CLEAN_LR_SCALING, [{"family": family, **asdict(fit)} for family, fit in scaling.items()])
