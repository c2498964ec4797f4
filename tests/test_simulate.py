"""Tests of scaling_pipeline.lib.simulate: the synthetic ladder, its faults, the demo log tree."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits

from scaling_pipeline.lib.schema import METRIC_COLUMNS, RUN_COLUMNS
from scaling_pipeline.lib.simulate import (DEFAULT_TRUTHS, FAULT_ORDER, SCHEDULE_FIELDS, Ladder, SimConfig,
                                           simulate_ladder, write_demo)

SMALL = SimConfig(n_sizes=5, n_budgets=4, isoflop_flops=None, log_points=40)


@pytest.fixture(scope="module")
def ladder() -> Ladder:
    return simulate_ladder(seed=0)


def losses(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A loss column as float64 (null -> NaN; logged NaN/inf kept)."""
    return frame[column].to_numpy(dtype=float, na_value=np.nan)


def final_rows(ladder: Ladder) -> pd.DataFrame:
    """Last write of the last planned step of every scaling run (grid + IsoFLOP) + its metadata."""
    extra = ladder.faults["counts"]["extra_run_ids"]
    runs = ladder.runs[~ladder.runs["run_id"].isin(extra)]
    last = ladder.metrics.drop_duplicates(["run_id", "step"], keep="last")
    rows = last.merge(runs, on=["run_id", "family"], suffixes=("", "_peak"))
    return rows[rows["step"] == rows["total_steps"]].reset_index(drop=True)


# ------------------------------------------------------------------ design and determinism


def test_same_seed_same_frames_other_seed_other_noise(ladder):
    again = simulate_ladder(seed=0)
    pd.testing.assert_frame_equal(ladder.runs, again.runs)
    pd.testing.assert_frame_equal(ladder.metrics, again.metrics)
    assert ladder.faults == again.faults and ladder.truth == again.truth
    other = simulate_ladder(seed=1)
    pd.testing.assert_frame_equal(ladder.runs, other.runs)  # the design does not depend on the seed
    assert len(other.metrics) == len(ladder.metrics)
    assert not np.allclose(losses(ladder.metrics, "train_loss"),
                           losses(other.metrics, "train_loss"), equal_nan=True)


def test_frames_follow_the_schema_and_the_ladder_design(ladder):
    # the schema's run columns, then the schedule description (end LR etc.), which ingest keeps in `extra`
    assert list(ladder.runs.columns) == [*(n for n, _ in RUN_COLUMNS if n not in ("extra", "location")),
                                         *SCHEDULE_FIELDS]
    assert list(ladder.metrics.columns) == [n for n, _ in METRIC_COLUMNS if n != "record"]
    runs, m = ladder.runs, ladder.metrics
    assert runs["run_id"].is_unique and set(m["run_id"]) == set(runs["run_id"])
    assert set(runs["family"]) == {t.name for t in DEFAULT_TRUTHS} == set(ladder.truth)
    assert (runs["schedule"] == "cosine").all() and runs["unique_tokens"].isna().all()
    assert (runs["tokens_planned"] == runs["batch_tokens"] * runs["total_steps"]).all()
    assert len(m) < 60_000
    points = final_rows(ladder)
    for family, g in points.groupby("family"):
        assert len(g) == 40, family  # 7 sizes x 5 budgets + 5 IsoFLOP runs
        assert np.log10(g["n_params"].max() / g["n_params"].min()) >= 1.5
        tpp = g["tokens_planned"] / g["n_params"]
        assert tpp.min() < 6 and tpp.max() > 150
    per_run = m.groupby("run_id").size()
    extra = ladder.faults["counts"]["extra_run_ids"]
    assert per_run.drop(extra).between(100, 300).all()
    batch = m["run_id"].map(runs.set_index("run_id")["batch_tokens"])
    assert (m["tokens"] == m["step"] * batch).all()
    evals = m["eval_loss"].notna().groupby(m["run_id"]).sum().drop(extra)
    assert evals.between(8, 13).all()


def test_lr_schedule_warms_up_then_decays_to_ten_percent(ladder):
    runs = ladder.runs.set_index("run_id")
    points = final_rows(ladder)
    assert np.allclose(points["lr"], 0.1 * points["lr_peak"], rtol=1e-6)
    steps = ladder.metrics.drop_duplicates(["run_id", "step"]).sort_values(["run_id", "step"])
    for run_id, g in steps[steps["run_id"].isin(points["run_id"])].groupby("run_id"):
        warmup, peak = runs.at[run_id, "warmup_steps"], runs.at[run_id, "lr"]
        assert 0 < warmup <= 0.03 * runs.at[run_id, "total_steps"]
        lr = g["lr"].to_numpy()
        assert lr.max() <= peak * (1 + 1e-9)
        after = g["step"].to_numpy() >= warmup
        assert (np.diff(lr[after]) <= 1e-12).all()  # monotone decay after warm-up


# ------------------------------------------------------------------ the loss model


def test_final_eval_loss_is_the_truth_within_noise(ladder):
    points = final_rows(ladder)
    truth = np.array([ladder.truth[f].loss(n, d) for f, n, d in
                      points[["family", "n_params", "tokens_planned"]].itertuples(index=False)])
    residual = np.log(losses(points, "eval_loss") / truth)
    assert np.abs(residual).max() < 5 * ladder.config.eval_noise
    assert np.std(residual) == pytest.approx(ladder.config.eval_noise, rel=0.25)


def test_mid_run_losses_sit_above_the_law_at_tokens_so_far(ladder):
    m = ladder.metrics.drop_duplicates(["run_id", "step"], keep="last")
    m = m[m["eval_loss"].notna()].merge(final_rows(ladder)[["run_id", "total_steps"]], on="run_id")
    m = m.assign(gap=(m["step"] / m["total_steps"] - 0.5).abs())
    mid = m.loc[m.groupby("run_id")["gap"].idxmin()]
    assert (mid["gap"] < 0.1).all()
    n_params = mid["run_id"].map(ladder.runs.set_index("run_id")["n_params"])
    law = np.array([ladder.truth[f].loss(n, t)
                    for f, n, t in zip(mid["family"], n_params, mid["tokens"])])
    above = losses(mid, "eval_loss") > law
    assert above.mean() > 0.9


# ------------------------------------------------------------------ faults in the frames


def test_faults_land_in_distinct_families_and_count_exactly(ladder):
    faults, runs, m = ladder.faults, ladder.runs, ladder.metrics
    assert len({faults[kind]["family"] for kind in FAULT_ORDER}) == 6
    counts = faults["counts"]
    assert counts["runs"] == len(runs) and counts["metric_rows"] == len(m)
    assert counts["scaling_points"] == len(final_rows(ladder)) == 240
    assert counts["duplicate_steps"] == m.duplicated(["run_id", "step"]).sum()
    assert counts["nonfinite_train_rows"] == (~np.isfinite(losses(m, "train_loss"))).sum()
    # the extra runs duplicate a grid point, so no scaling point is lost to a fault
    grid = set(final_rows(ladder)[["family", "n_params", "tokens_planned"]].itertuples(index=False))
    extras = runs[runs["run_id"].isin(counts["extra_run_ids"])]
    assert len(extras) == 4
    assert set(extras[["family", "n_params", "tokens_planned"]].itertuples(index=False)) <= grid


def test_resumed_run_logs_the_replayed_steps_twice(ladder):
    fault = ladder.faults["resumed"]
    g = ladder.metrics[ladder.metrics["run_id"] == fault["run_id"]]
    dup = g[g.duplicated("step", keep=False)]
    assert fault["duplicate_steps"] == g["step"].duplicated().sum() == len(dup) // 2 > 0
    assert ladder.metrics.duplicated(["run_id", "step"]).sum() == fault["duplicate_steps"]
    assert dup["step"].min() > fault["checkpoint_step"]
    assert dup["step"].max() == fault["killed_at_step"]
    assert 0.45 < fault["checkpoint_step"] / fault["total_steps"] < 0.5
    assert 0.55 < fault["killed_at_step"] / fault["total_steps"] <= 0.6
    first, second = (dup.drop_duplicates("step", keep=keep).set_index("step")
                     for keep in ("first", "last"))
    assert (second["wall_time"] > first["wall_time"].max()).all()
    changed = losses(second, "train_loss") != losses(first, "train_loss")
    assert changed.tolist() == [True] + [False] * (len(changed) - 1)
    assert g["step"].max() == fault["total_steps"]


def test_diverged_runs_spike_then_log_nan_and_inf(ladder):
    runs = ladder.runs.set_index("run_id")
    for kind, status in (("diverged", "diverged"), ("diverged_silent", "completed")):
        fault = ladder.faults[kind]
        g = ladder.metrics[ladder.metrics["run_id"] == fault["run_id"]]
        train, step = losses(g, "train_loss"), g["step"].to_numpy()
        assert runs.at[fault["run_id"], "status"] == status
        assert np.isfinite(train[step < fault["first_nonfinite_step"]]).all()
        bad = train[step >= fault["first_nonfinite_step"]]
        assert len(bad) == fault["nonfinite_rows"] and not np.isfinite(bad).any()
        assert np.isnan(bad).any() and np.isinf(bad).any()
        spike = train[(step >= fault["divergence_step"]) & (step < fault["first_nonfinite_step"])]
        before = train[step < fault["divergence_step"]][-1]
        assert spike.max() > 3 * before
        evaluated = g["eval_loss"].notna().to_numpy()  # Arrow: null = not evaluated, NaN = logged
        late = step >= fault["first_nonfinite_step"]
        assert np.isnan(losses(g, "eval_loss")[late & evaluated]).all()
    stopped, silent = ladder.faults["diverged"], ladder.faults["diverged_silent"]
    assert stopped["last_step"] < stopped["total_steps"]
    assert silent["last_step"] == silent["total_steps"]


def test_killed_run_stops_at_forty_percent(ladder):
    fault = ladder.faults["killed"]
    g = ladder.metrics[ladder.metrics["run_id"] == fault["run_id"]]
    assert g["step"].max() == fault["last_step"] < fault["total_steps"]
    assert 0.35 < fault["last_step"] / fault["total_steps"] <= 0.4
    assert ladder.runs.set_index("run_id").at[fault["run_id"], "status"] == "running"


def test_file_fault_targets_are_planned_on_valid_rows(ladder):
    bad, cut = ladder.faults["bad_row"], ladder.faults["truncated"]
    g = ladder.metrics[ladder.metrics["run_id"] == bad["run_id"]].set_index("step")
    assert bad["run_id"] not in ladder.faults["counts"]["extra_run_ids"]  # a grid run
    assert pd.isna(g.at[bad["step"], "eval_loss"]) and bad["step"] < bad["total_steps"]
    assert cut["run_id"] in ladder.faults["counts"]["extra_run_ids"]
    assert 0.5 < cut["cut_step"] / cut["total_steps"] <= 0.6


# ------------------------------------------------------------------ known-truth recovery


def huber_fit(N: np.ndarray, D: np.ndarray, L: np.ndarray, delta: float = 1e-3) -> dict[str, float]:
    """Chinchilla fit minimising sum Huber(log L̂ - log L) with
    log L̂ = LSE(a - α·x_N, b - β·x_D, e), x = centred logs; multi-start L-BFGS-B."""
    lN, lD, lL = np.log(N), np.log(D), np.log(L)
    xN, xD = lN - lN.mean(), lD - lD.mean()

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        a, b, e, alpha, beta = p
        terms = np.stack([a - alpha * xN, b - beta * xD, np.full_like(xN, e)])
        pred = logsumexp(terms, axis=0)
        w = np.exp(terms - pred)
        r = pred - lL
        value = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta)).sum()
        g = np.clip(r, -delta, delta)
        grad = np.array([g @ w[0], g @ w[1], g @ w[2], -(g * w[0]) @ xN, -(g * w[1]) @ xD])
        return value / delta, grad / delta

    bounds = [(-10, 10), (-10, 10), (-3, 3), (0.0, 2.0), (0.0, 2.0)]
    with threadpool_limits(1):  # L-BFGS-B's tiny BLAS calls stall when threads compete for cores
        best = min((minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds)
                    for start in itertools.product((-1.0, 0.5), (-1.0, 0.5), (0.0, 1.0),
                                                   (0.2, 0.6), (0.2, 0.6))),
                   key=lambda res: res.fun)
    a, b, e, alpha, beta = best.x
    return {"E": np.exp(e), "A": np.exp(a + alpha * lN.mean()), "B": np.exp(b + beta * lD.mean()),
            "alpha": alpha, "beta": beta}


def test_huber_fit_of_final_eval_losses_recovers_the_exponents(ladder):
    points = final_rows(ladder)
    for family, g in points.groupby("family"):
        fit = huber_fit(g["n_params"].to_numpy(), g["tokens_planned"].to_numpy(),
                        losses(g, "eval_loss"))
        truth = ladder.truth[family]
        assert fit["alpha"] == pytest.approx(truth.alpha, abs=0.03), family
        assert fit["beta"] == pytest.approx(truth.beta, abs=0.03), family


# ------------------------------------------------------------------ knobs and errors


def test_scale_knobs_and_fault_placement_for_other_family_counts():
    one = simulate_ladder(seed=3, n_families=1, config=SMALL)
    assert one.runs["run_id"].is_unique and set(one.runs["family"]) == {"atlas"}
    assert {one.faults[kind]["family"] for kind in FAULT_ORDER} == {"atlas"}
    assert len(one.runs) == 5 * 4 + 4
    many = simulate_ladder(seed=3, n_families=8, config=replace(SMALL, inject_faults=False))
    assert many.faults == {} and len(many.truth) == 8
    for name in ("fam006", "fam007"):
        t = many.truth[name]
        assert 0.25 <= t.alpha <= 0.45 and 0.25 <= t.beta <= 0.45 and 1.6 <= t.E <= 2.2
    assert (many.runs.groupby("family").size() == 20).all()
    with pytest.raises(ValueError, match="n_families"):
        simulate_ladder(n_families=0)
    with pytest.raises(ValueError, match="5 sizes and 4 budgets"):
        simulate_ladder(config=SimConfig(n_sizes=3))


# ------------------------------------------------------------------ the demo log tree


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    pytest.importorskip("scaling_pipeline.lib.formats")
    out = tmp_path_factory.mktemp("sim") / "logs"
    return out, write_demo(out, seed=0)


def test_write_demo_mixed_writes_every_format_truth_and_faults(demo):
    out, summary = demo
    from scaling_pipeline.lib.formats import FORMATS

    assert set(summary.formats.values()) == set(FORMATS)
    # 40 scaling runs per family; jsonl, tensorboard, wandb families also hold an extra faulty run
    expected = {"csv": 40 + 1, "jsonl": 41, "parquet": 40}  # csv: runs.csv matches *.csv too
    for fmt, n_files in expected.items():
        assert (out / fmt / "runs.csv").is_file()
        assert len(list((out / fmt).glob(f"*.{fmt}"))) == n_files
    assert len(list((out / "tensorboard").glob("*/events.out.tfevents.*"))) == 41
    assert len(list((out / "wandb").glob("*/wandb-history.jsonl"))) == 41
    assert len(list((out / "wandb").glob("*/config.yaml"))) == 41
    assert (out / "mlflow" / "mlruns").is_dir()
    assert all(p.is_file() and out in p.parents for p in summary.files)
    truth = json.loads((out / "truth.json").read_text())
    assert truth["seed"] == 0 and set(truth["families"]) == set(summary.formats)
    assert truth["families"]["atlas"]["alpha"] == DEFAULT_TRUTHS[0].alpha
    faults = json.loads((out / "faults.json").read_text())
    assert faults == summary.faults and faults["counts"]["metric_rows"] == summary.n_metric_rows


def test_damaged_files_are_damaged_at_the_recorded_line(demo, ladder):
    out, summary = demo
    bad, cut = summary.faults["bad_row"], summary.faults["truncated"]
    assert bad["applied"] and cut["applied"]
    lines = (out / bad["file"]).read_text().splitlines()
    header = lines[0].split(",")
    damaged = lines[bad["line"] - 1].split(",")
    assert damaged[header.index("train_loss")] == "abc"
    assert int(damaged[header.index("step")]) == bad["step"]
    assert sum("abc" in line for line in lines) == 1
    data = (out / cut["file"]).read_bytes()
    assert not data.endswith(b"\n") and len(data) == cut["bytes_kept"]
    text = data.decode().split("\n")
    assert len(text) == cut["line"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(text[-1])
    assert json.loads(text[-2])["step"] == cut["last_complete_step"]
    n_rows = (ladder.metrics["run_id"] == cut["run_id"]).sum()  # the demo is this ladder (seed 0)
    assert cut["complete_rows"] == cut["line"] - 1
    assert cut["complete_rows"] + cut["rows_lost"] == n_rows


def tree(root: Path) -> list[Path]:
    """Files under ``root``, relative, sorted."""
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_write_demo_is_byte_identical_per_seed_and_refuses_a_used_folder(tmp_path):
    pytest.importorskip("scaling_pipeline.lib.formats")
    a, b, c = (tmp_path / name for name in "abc")
    summary = write_demo(a, seed=5, n_families=2, config=SMALL)  # families in csv and jsonl
    write_demo(b, seed=5, n_families=2, config=SMALL)
    write_demo(c, seed=6, n_families=2, config=SMALL)
    assert set(summary.formats.values()) == {"csv", "jsonl"}
    assert summary.faults["truncated"]["applied"] and summary.faults["bad_row"]["applied"]
    names = tree(a)
    assert names == tree(b) == tree(c)
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    assert any((a / n).read_bytes() != (c / n).read_bytes()
               for n in names if n.suffix == ".csv" and n.name != "runs.csv")
    with pytest.raises(ValueError, match="not empty"):
        write_demo(a, seed=5, n_families=2, config=SMALL)
    with pytest.raises(ValueError, match="unknown format"):
        write_demo(tmp_path / "d", fmt="xml")
    assert not (tmp_path / "d").exists()


def test_write_demo_single_binary_format_skips_file_faults(tmp_path):
    pytest.importorskip("scaling_pipeline.lib.formats")
    summary = write_demo(tmp_path / "logs", fmt="parquet", config=SMALL)
    assert set(summary.formats.values()) == {"parquet"}
    assert not summary.faults["bad_row"]["applied"] and not summary.faults["truncated"]["applied"]
    assert "parquet" in summary.faults["bad_row"]["reason"]
    top = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert top == ["faults.json", "parquet", "truth.json"]


# ------------------------------------------------------------------ the simulator at benchmark scale


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_scale_logs_ingest_cleanly_and_fit_to_the_truth(tmp_path: Path, fmt: str) -> None:
    """write_scale_logs (benchmarks) gives logs the pipeline reads without a rejection, natively, one
    schedule-complete point per run, and fits recovering each family's exponents."""
    import duckdb

    from scaling_pipeline.lib.cleaning import CleanConfig, clean
    from scaling_pipeline.lib.ingest import ingest
    from scaling_pipeline.lib.simulate import write_scale_logs
    from scaling_pipeline.lib.warehouse import FitSettings, fit_families

    wrote = write_scale_logs(tmp_path / "logs", fmt, n_families=3, runs_per_family=36, rows=3 * 36 * 40)
    assert (wrote.n_files, wrote.n_rows, wrote.rows_per_run) == (108, 4320, 40)
    again = write_scale_logs(tmp_path / "again", fmt, n_families=3, runs_per_family=36, rows=3 * 36 * 40)
    first = sorted((tmp_path / "logs" / "metrics").rglob(f"*.{fmt}"))
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in sorted(
        (tmp_path / "again" / "metrics").rglob(f"*.{fmt}"))] and again.n_files == 108  # deterministic
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        summary = ingest(tmp_path / "logs", con)
        assert (summary.metric_rows, summary.rejections) == (4320, 0)
        assert summary.read_methods == {f"{fmt}/fast": 108}
        clean(con, CleanConfig())
        assert con.execute("SELECT count(*) FROM clean.points").fetchone()[0] == 108
        fit_families(con, FitSettings(bootstrap=0))
        fits = con.execute("SELECT family, alpha, beta FROM fits.chinchilla ORDER BY family").fetchall()
    truth = {t.name: t for t in DEFAULT_TRUTHS}
    assert [f for f, *_ in fits] == ["atlas", "boreal", "cirrus"]
    for family, alpha, beta in fits:
        assert abs(alpha - truth[family].alpha) < 0.03 and abs(beta - truth[family].beta) < 0.03, (family, alpha, beta)


# ------------------------------------------------------------------ schedules under a known curve law

MIXED_SCHEDULES = replace(SMALL, inject_faults=False, schedules=("cosine", "wsd", "constant_cooldown", "two_stage"),
                          in_flight=(0.3, 0.6), off_track=0.2, eval_noise=0.0, train_noise=0.0)


def test_every_schedule_is_described_in_the_manifest_and_ends_at_the_truth():
    from scaling_pipeline.lib.curves.schedule import Schedule

    ladder = simulate_ladder(seed=1, n_families=2, config=MIXED_SCHEDULES)
    runs = ladder.runs.set_index("run_id")
    assert set(runs["schedule"]) == {"cosine", "wsd_linear_decay", "wsd_exponential_decay", "two_stage"}
    m = ladder.metrics
    for run_id, g in m.groupby("run_id"):
        r = runs.loc[run_id]
        spec = {k: r[k] for k in ("warmup_steps", "total_steps", *SCHEDULE_FIELDS) if not pd.isna(r[k])}
        lr = Schedule.from_mapping({**spec, "kind": r["schedule"], "peak_lr": r["lr"]}, run_id).lr(int(r["total_steps"]))
        assert np.allclose(g["lr"], lr[g["step"]], rtol=0, atol=1e-10), run_id  # the manifest rebuilds the log
        assert lr[-1] == pytest.approx(0.1 * r["lr"])
        final = losses(g, "eval_loss")[-1]
        law = ladder.truth[r["family"]].loss(r["n_params"], r["tokens_planned"])
        if run_id in ladder.in_flight:  # stopped part-way; the manifest keeps the planned end
            live = ladder.in_flight[run_id]
            assert r["status"] == "running" and g["step"].max() == live["last_step"] < r["total_steps"]
            assert live["law"] == pytest.approx(law)
        else:  # noise-free: the end of every schedule is exactly L(N, D)
            assert final == pytest.approx(law, abs=1e-4), run_id
    assert len(ladder.in_flight) == 4
    assert sorted(v["offset"] for v in ladder.in_flight.values()) == [0.0, 0.0, 0.2, 0.2]
    fractions = sorted(v["last_step"] / v["total_steps"] for v in ladder.in_flight.values())
    assert 0.25 < fractions[0] <= 0.3 and 0.55 < fractions[-1] <= 0.6
