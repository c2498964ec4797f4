"""Small hand-made ladders as real files (csv/jsonl metric logs, runs.csv manifests), for the cleaning tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import numpy as np

from scaling_pipeline.lib.cleaning import CleanConfig, clean
from scaling_pipeline.lib.cleaning.steps import EVIDENCE_SPAN, SHRINKAGE, TREND_WINDOW
from scaling_pipeline.lib.ingest import ingest


def curve(run_id: str, final: float, *, steps: int = 200, every: int = 20, batch: float | None = 1000.0,
          last: int | None = None, scale: float = 1.0) -> list[dict]:
    """Logged rows of a run whose loss falls to ``final`` (nats/token) at step ``steps``, logged every
    ``every`` steps up to ``last`` (default ``steps``) and at ``last``; an eval at every logged step.
    ``batch``: tokens per step for the tokens column (None: no tokens column); ``scale`` multiplies
    the losses (e.g. summed over a batch)."""
    end = last or steps
    logged = sorted({*range(every, end + 1, every), end})
    rows = []
    for s in logged:
        loss = (final + 2.0 * (1 - s / steps) ** 2) * scale
        row = {"run_id": run_id, "step": s, "train_loss": round(loss + 0.01 * scale, 9),
               "eval_loss": round(loss, 9)}
        if batch is not None:
            row["tokens"] = s * batch
        rows.append(row)
    return rows


def shrunk_line_at_end(rows: list[tuple[float, float]], min_points: int = 5) -> tuple[float, str]:
    """(loss, loss_source) cleaning gives a run without a final eval from its (step, train loss) ``rows`` (later
    rows win a step), by numpy: over the losses of the last TREND_WINDOW of its steps (at least the last
    ``min_points``), their mean plus w times their least-squares line's rise from their mean step to the last step,
    w = max(0, 1 - SHRINKAGE var(b) / b^2) of the line through EVIDENCE_SPAN times as many steps and points."""
    last = dict(rows)
    steps = np.array(sorted(last), dtype=float)

    def line(window: float, at_least: int) -> tuple[np.ndarray, np.ndarray, float, float]:
        x = steps[-max(at_least, int(np.sum(steps >= (1 - window) * steps[-1]))):]
        y = np.array([last[s] for s in x])
        slope, intercept = np.polyfit(x, y, 1)
        return x, y, slope, np.sum((y - intercept - slope * x) ** 2) / (len(x) - 2) / np.sum((x - x.mean()) ** 2)

    x, y, slope, _ = line(TREND_WINDOW, min_points)
    _, _, b, var_b = line(EVIDENCE_SPAN * TREND_WINDOW, EVIDENCE_SPAN * min_points)
    w = max(0.0, 1 - SHRINKAGE * var_b / b**2)
    return float(y.mean() + w * slope * (x[-1] - x.mean())), f"train_shrunk_line_last_{len(x)}"


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def ingest_and_clean(root: Path, config: CleanConfig = CleanConfig()) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory warehouse with ``root`` ingested and cleaned."""
    con = duckdb.connect()
    ingest(root, con)
    clean(con, config)
    return con


def run_exclusions(con: duckdb.DuckDBPyConnection, kind: str = "run") -> dict[str, tuple[str, str]]:
    """run_id -> (reason, detail) of the exclusions of ``kind``."""
    return {r[0]: (r[1], r[2]) for r in con.execute(
        "SELECT run_id, reason, detail FROM clean.exclusions WHERE kind = ?", [kind]).fetchall()}
