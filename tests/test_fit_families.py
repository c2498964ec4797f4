"""The fit stage across families: the process pool gives exactly the in-process results, the number of
processes is not part of the input hash, and an interrupted stage keeps the families it finished."""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from scaling_pipeline.lib.simulate import DEFAULT_TRUTHS
from scaling_pipeline.lib.warehouse import FitSettings, family_workers, fit_families
from tests.conftest import fits_snapshot

SETTINGS = FitSettings(bootstrap=20)
HOSTILE = "../../evil 'q\" ü/x"


def _points() -> pd.DataFrame:
    """Known-truth ladders (6 sizes × 5 budgets, 0.3% noise) for the six demo truths, one of them under a
    hostile name, plus a family with too few runs to fit."""
    rng = np.random.default_rng(0)
    rows = []
    for truth in DEFAULT_TRUTHS:
        name = HOSTILE if truth.name == "fjord" else truth.name
        for n in np.geomspace(1e7, 2e9, 6):
            for tpp in np.geomspace(5, 160, 5):
                d = n * tpp
                rows.append(dict(run_id=f"{name}-{n:.3g}-{tpp:.3g}", family=name, n_params=n, n_tokens=d,
                                 loss=truth.loss(n, d) * math.exp(rng.normal(0, 0.003))))
    rows += [dict(run_id=f"tiny-{i}", family="tiny", n_params=1e8 * (i + 1), n_tokens=2e9, loss=3.0 - 0.1 * i)
             for i in range(3)]
    return pd.DataFrame(rows)


def points_db(path: Path) -> Path:
    """A warehouse holding only ``clean.points`` (the fit stage's input)."""
    pts = _points()  # noqa: F841 (used by SQL)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA clean")
        con.execute("""CREATE TABLE clean.points AS SELECT run_id, family, n_params, n_tokens, 6 * n_params * n_tokens
                       AS flops, loss, 'final_eval' AS loss_source, 1000::BIGINT AS final_step,
                       NULL::DOUBLE AS unique_tokens FROM pts""")
    return path


def test_pool_gives_exactly_the_in_process_fits(tmp_path):
    families = sorted(_points().family.unique())
    serial_log, pool_log = [], []
    with duckdb.connect(str(points_db(tmp_path / "serial.duckdb"))) as con:
        serial = fit_families(con, SETTINGS, n_jobs=1, progress=serial_log.append)
        expected = fits_snapshot(con)
    with duckdb.connect(str(points_db(tmp_path / "pool.duckdb"))) as con:
        pool = fit_families(con, SETTINGS, n_jobs=2, progress=pool_log.append)
        got = fits_snapshot(con)
        assert (serial.workers, pool.workers) == (1, 2)
        assert pool.fitted == serial.fitted == [f for f in families if f != "tiny"]
        assert pool.failed == serial.failed and list(pool.failed) == ["tiny"]
        assert got == expected
        assert len(got[0]) == len(families) and len(got[1]) == 20 * (len(families) - 1)
        # the number of processes is not an input: another n_jobs refits nothing
        again = fit_families(con, SETTINGS, n_jobs=1)
        assert again.unchanged == families and not again.fitted and not again.failed
    n = len(families)
    assert serial_log[0] == f"fitting {n} of {n} families (0 unchanged) in this process"
    assert pool_log[0] == f"fitting {n} of {n} families (0 unchanged) across 2 worker processes"
    for log in (serial_log, pool_log):
        assert [m.split()[0] for m in log[1:]] == [f"[{i}/{n}]" for i in range(1, n + 1)]
        assert log[1] == f"[1/{n}] fitting {HOSTILE} (30 points, 20 bootstrap resamples)"


class _Stop(Exception):
    pass


def test_interrupted_pool_keeps_finished_families(tmp_path):
    n = len(_points().family.unique())

    def progress(message: str) -> None:
        if message.startswith(f"[{n - 1}/{n}]"):
            raise _Stop

    with duckdb.connect(str(points_db(tmp_path / "w.duckdb"))) as con:
        with pytest.raises(_Stop):
            fit_families(con, SETTINGS, n_jobs=2, progress=progress)
        written = con.execute("SELECT count(*) FROM fits.chinchilla").fetchone()[0]
        assert 2 <= written <= n - 2  # at most 2 per worker queued: some finished, the last two never started
        resumed = fit_families(con, SETTINGS, n_jobs=2)
    assert len(resumed.unchanged) == written and len(resumed.fitted) + len(resumed.failed) == n - written


def test_family_workers():
    assert family_workers(None, 2) == 1 and family_workers(8, 2) == 1  # start-up costs more than it saves
    assert family_workers(1, 100) == 1 and family_workers(3, 100) == 3 and family_workers(8, 5) == 5
    assert 1 <= family_workers(None, 100) <= 100
    with pytest.raises(ValueError, match="n_jobs must be >= 1"):
        family_workers(0, 100)


def test_every_fit_is_judged_and_kept_fits_are_judged_again(tmp_path):
    """The fit stage stores each family's assessment; a run that refits nothing still re-judges the kept
    fits (the quality rules may have changed since) without refitting them."""
    with duckdb.connect(str(points_db(tmp_path / "w.duckdb"))) as con:
        fit_families(con, SETTINGS, n_jobs=1)
        stored = {r[0]: r[1:] for r in con.execute("SELECT family, verdict, publishable, reasons, reason_messages "
                                                   "FROM fits.chinchilla").fetchall()}
        assert stored.pop("tiny")[:3] == ("failed", False, ["fit_failed"])
        assert [v[:3] for v in stored.values()] == [("ok", True, [])] * 6
        # as if written under other rules: the next run restores the current judgement, refitting nothing
        con.execute("UPDATE fits.chinchilla SET verdict = 'withheld', publishable = false, reasons = ['poor_fit'], "
                    "reason_messages = ['old rule'] WHERE family = 'atlas'")
        again = fit_families(con, SETTINGS, n_jobs=1)
        assert not again.fitted and "atlas" in again.unchanged
        assert con.execute("SELECT verdict, publishable, reasons FROM fits.chinchilla WHERE family = 'atlas'"
                           ).fetchone() == ("ok", True, [])


def test_fits_of_an_older_table_layout_are_refit(tmp_path):
    """A warehouse written before the assessment columns existed: its fits table is rebuilt, every family refit."""
    with duckdb.connect(str(points_db(tmp_path / "w.duckdb"))) as con:
        con.execute("CREATE SCHEMA fits")
        con.execute("""CREATE TABLE fits.chinchilla (family VARCHAR PRIMARY KEY, status VARCHAR, error VARCHAR,
                           publishable BOOLEAN, withheld_reason VARCHAR, input_hash VARCHAR)""")
        con.execute("INSERT INTO fits.chinchilla VALUES ('atlas', 'ok', NULL, true, NULL, 'x')")
        summary = fit_families(con, SETTINGS, n_jobs=1)
        assert "atlas" in summary.fitted and not summary.unchanged
        cols = [r[0] for r in con.execute("DESCRIBE fits.chinchilla").fetchall()]
        assert {"verdict", "reasons", "reason_messages"} <= set(cols) and "withheld_reason" not in cols


def test_fits_and_pool_workers_hold_every_blas_to_one_thread():
    """numpy and scipy each bring an OpenBLAS; scipy loads its own at the first fit (lazy import). The fits'
    one-thread limit and the pool workers' limit must cover it too: with two threaded BLAS per worker, the
    pool's workers oversubscribe the cores and the tiny L-BFGS-B steps get many times slower."""
    import os
    import subprocess
    import sys

    code = """
import json
from threadpoolctl import threadpool_info
from scaling_pipeline.lib.fitting.common import _one_blas_thread
from scaling_pipeline.lib import warehouse
def threads():
    import scipy.optimize, scipy.linalg  # what a fit loads
    return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas")
with _one_blas_thread():
    inside = threads()
outside = threads()
import os
warehouse._init_worker(os.getppid())  # the test process: alive
print(json.dumps([inside, outside, threads()]))
"""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    inside, outside, worker = json.loads(out.stdout.splitlines()[-1])
    assert len(inside) >= 2  # numpy's and scipy's libraries
    assert {n for _, n in inside} == {1} and {n for _, n in worker} == {1}
    assert {n for _, n in outside} == {2}  # restored after the fit
