"""The learning-rate figures from the clean.lr_* tables written by the cleaning stage: loss against LR per
size with each sweep's optimum, and LR* against N with the fitted power law and its band."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from scaling_pipeline.lib.cleaning.sweeps import write_lr_tables
from scaling_pipeline.lib.reporting.family import Family
from scaling_pipeline.lib.reporting.figures_plan import lr_scaling_figure, lr_sweeps_figure

GAMMA, C0 = 0.35, 0.8  # the truth: LR*(N) = C0 * N^-GAMMA


def test_lr_figures_show_the_sweeps_the_optima_and_the_fitted_law():
    rows = []
    for n in (1e7, 4e7, 1.6e8, 6.4e8):
        opt = C0 * n ** -GAMMA
        for k, m in enumerate((0.25, 0.5, 1.0, 2.0, 4.0)):
            rows.append(dict(run_id=f"r{n:.0e}-{k}", family="f", n_params=n, n_tokens=20 * n, lr=opt * m,
                             loss=3.0 + 0.05 * np.log(m) ** 2, sweep=f"f/{n:.0e}"))
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA clean")
        write_lr_tables(con, pd.DataFrame(rows))
        lr = {k: con.execute(f"SELECT * FROM clean.lr_{k}").df() for k in ("sweeps", "optima", "scaling")}
    f = Family(name="f", slug="f", pts=pd.DataFrame(), fit=None, P=None, boot=np.empty((0, 5)),
               plans=pd.DataFrame(), excl=pd.DataFrame(), lr=lr)
    sweeps = lr_sweeps_figure(f).axes[0]
    assert len(sweeps.lines) == 4  # one curve per swept size
    stars = sweeps.collections[0].get_offsets()
    assert np.allclose(stars[:, 0], lr["optima"].lr_opt) and np.allclose(stars[:, 0], C0 * lr["optima"].n_params
                                                                          ** -GAMMA, rtol=1e-6)
    ax = lr_scaling_figure(f).axes[0]
    line = ax.lines[0]
    fit = lr["scaling"].iloc[0]
    assert abs(fit.gamma - GAMMA) < 1e-6 and fit.status == "ok"
    assert np.allclose(line.get_ydata(), fit.c * line.get_xdata() ** -fit.gamma, rtol=1e-9)
    assert "LR* = 0.8·N^−0.350" in line.get_label()
    band = ax.collections[-1].get_paths()[0].vertices  # the band contains the line
    assert band[:, 1].min() <= line.get_ydata().min() * 1.0001 and band[:, 1].max() >= line.get_ydata().max() * 0.9999
