"""The simulator at benchmark scale: many families, rows computed by DuckDB and streamed to files."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scaling_pipeline.lib.laws import Chinchilla

from .design import RUN_FIELDS, SimConfig, family_plans, family_truths
from .ladder import run_record

SCALE_FORMATS = ("csv", "jsonl", "parquet")
_SCALE_COLUMNS = ["run_id", "family", "step", "tokens", "train_loss", "eval_loss", "lr", "wall_time"]


@dataclass(frozen=True)
class ScaleSummary:
    """What :func:`write_scale_logs` wrote."""

    out_dir: Path
    fmt: str
    n_families: int
    n_runs: int
    rows_per_run: int
    n_rows: int  # metric rows (logged steps) in all files
    n_files: int  # metric files (one per run)


def write_scale_logs(out_dir: Path, fmt: str, *, n_families: int = 1000, runs_per_family: int = 100,
                     rows: int = 1_000_000, seed: int = 0) -> ScaleSummary:
    """The simulator at benchmark scale: ``n_families`` ladders (the default truths, then drawn ones)
    of ``runs_per_family`` runs (sizes x budgets grid, no faults), ``rows`` logged steps in all,
    spread evenly over the runs: one metric file per run, ``out_dir/metrics/<family>/<run>.<fmt>``,
    plus ``out_dir/runs.csv``. Rows are computed by DuckDB and streamed a few runs at a time (too
    many rows for pandas; ~1M rows in memory at a time).

    A closed-form stand-in for :func:`simulate_ladder`'s curve law (the Multi-Power Law's sums are
    not SQL): ``L(N, t) + anneal_gap·(L(N, t) - E)·(cosine decay still ahead)``, cosine LR, warm-up,
    squash near log(vocab); the final loss is ``L(N, D)`` as there. Deterministic noise hashed from
    (seed, run, step) instead of numpy draws."""
    import duckdb  # noqa: PLC0415 - lazy: only benchmarks write at scale
    import pyarrow.parquet as pq  # noqa: PLC0415

    from scaling_pipeline.lib.formats.writing import safe_name  # noqa: PLC0415

    if fmt not in SCALE_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(SCALE_FORMATS)}")
    n_sizes = max(1, math.isqrt(runs_per_family))
    n_budgets = runs_per_family // n_sizes
    extra = runs_per_family - n_sizes * n_budgets
    cfg = SimConfig(n_sizes=n_sizes, n_budgets=n_budgets, isoflop_points=extra,
                    isoflop_flops=1e19 if extra else None, inject_faults=False)
    n_runs = n_families * runs_per_family
    per_run = max(1, rows // n_runs)
    runs = []
    for fam, truth in enumerate(family_truths(n_families, cfg)):
        for p in family_plans(fam, truth.name, cfg, {}):
            runs.append({**run_record(p, truth.name, cfg), "E": truth.E, "A": truth.A, "B": truth.B,
                         "alpha": truth.alpha, "beta": truth.beta})
    plans = pd.DataFrame(runs).sort_values("run_id", ignore_index=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plans[RUN_FIELDS].to_csv(out_dir / "runs.csv", index=False)
    n_files = len(plans)
    width = math.log(cfg.vocab_size) - cfg.cap_start
    every = max(1, -(-per_run // cfg.eval_points))
    law = Chinchilla.sql_expression({"N": "n_params", "D": "step * batch_tokens"})  # truths: columns E, A, …
    z = ("sqrt(-2 * ln((hash(?, run_id, step, {k}) % 4294967296 + 0.5) / 4294967296)) "
         "* cos(2 * pi() * (hash(?, run_id, step, {k2}) % 4294967296 + 0.5) / 4294967296)")
    query = f"""
        WITH logged AS (
            SELECT p.*, k, greatest(1, CAST(ceil(k * total_steps / ?) AS BIGINT)) AS step
            FROM plans p, range(1, ? + 1) t(k)),
        curve AS (
            SELECT *, 0.5 * (1 + cos(pi() * least(greatest((step - warmup_steps)
                      / greatest(total_steps - warmup_steps, 1), 0), 1))) AS ahead,
                   {law} AS law
            FROM logged),
        capped AS (
            SELECT *, CASE WHEN raw > ? THEN ? + ? * tanh((raw - ?) / ?) ELSE raw END AS clean
            FROM (SELECT *, law + ? * (law - E) * ahead AS raw FROM curve))
        SELECT run_id, family, step, step * batch_tokens AS tokens,
               round(clean * exp(? * {z.format(k=1, k2=2)}), 6) AS train_loss,
               CASE WHEN k % ? = 0 OR k = ? THEN round(clean * exp(? * {z.format(k=3, k2=4)}), 6) END
                   AS eval_loss,
               round(CASE WHEN step < warmup_steps THEN lr * step / warmup_steps
                          ELSE ? * lr + (1 - ?) * lr * ahead END, 10) AS lr,
               round(6 * n_params * step * batch_tokens / ?, 3) AS wall_time
        FROM capped ORDER BY run_id, k"""
    params = [per_run, per_run, cfg.cap_start, cfg.cap_start, width, cfg.cap_start, width, cfg.anneal_gap,
              cfg.train_noise, seed, seed, every, per_run, cfg.eval_noise, seed, seed,
              cfg.final_lr_frac, cfg.final_lr_frac, cfg.throughput]
    text = {"csv": "concat_ws(',', run_id, family, step, tokens, train_loss, "
                   "coalesce(CAST(eval_loss AS VARCHAR), ''), lr, wall_time)",
            "jsonl": f"CAST(to_json(struct_pack({', '.join(_SCALE_COLUMNS)})) AS VARCHAR)"}.get(fmt)
    con = duckdb.connect(config={"temp_directory": tempfile.gettempdir(), "memory_limit": "1GB"})
    chunk = max(1, 1_000_000 // per_run)  # runs per query: ~1M rows, sorted in memory
    try:
        con.execute("SET enable_progress_bar = false")
        for start in range(0, len(plans), chunk):
            part_plans = plans.iloc[start:start + chunk]
            con.register("plans", part_plans)
            sql = f"SELECT {text} AS line FROM ({query})" if text else query
            rows = con.sql(sql, params=params).to_arrow_table()  # in run_id, step order
            for i, (family, run_id) in enumerate(zip(part_plans.family, part_plans.run_id, strict=True)):
                folder = out_dir / "metrics" / safe_name(family)
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{safe_name(run_id)}.{fmt}"
                part = rows.slice(i * per_run, per_run)
                if fmt == "parquet":
                    pq.write_table(part, path)
                else:
                    header = ",".join(_SCALE_COLUMNS) + "\n" if fmt == "csv" else ""
                    path.write_text(header + "\n".join(part.column(0).to_pylist()) + "\n", encoding="utf-8")
            con.unregister("plans")
    finally:
        con.close()
    return ScaleSummary(out_dir, fmt, n_families, n_runs, per_run, per_run * n_runs, n_files)

