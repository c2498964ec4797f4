"""What the forecast of each family reads, hashed per family (``forecasts.inputs``): a family whose hash is as
stored keeps its rows of the forecasts tables; only the others are refitted (:mod:`scaling_pipeline.lib.forecast`).

A family's hash covers, per input, the row count and the order-independent sum of the hashes of the columns the
forecast reads, each computed by one DuckDB aggregate grouped by family (``clean.steps`` is the large one: a scan
of five columns, no rows leave DuckDB; cost in benchmarks/README.md, "Forecasts for runs in flight"); plus the
forecast's settings and the source of the forecast code (a change refits every family).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb

from scaling_pipeline.lib import tables as T
from scaling_pipeline.lib.cleaning import INCOMPLETE

__all__ = ["family_keys", "stored_keys"]

_LIB = Path(__file__).parent
_CODE = (_LIB / "forecast.py", Path(__file__), *sorted((_LIB / "curves").glob("*.py")))

# per input: SQL giving (family, rows, sum of row hashes) of what the forecast reads of it
_AGGREGATES = {
    "runs": """SELECT r.family, count(*), sum(hash(r, x.extra)::HUGEINT) FROM clean.runs r
               LEFT JOIN (SELECT run_id, min(extra) AS extra FROM raw.runs GROUP BY run_id) x USING (run_id)
               GROUP BY r.family""",
    "points": "SELECT family, count(*), sum(hash(run_id, n_params, n_tokens, loss)::HUGEINT) FROM clean.points "
              "GROUP BY family",
    "in_flight": "SELECT family, count(*), sum(hash(run_id)::HUGEINT) FROM clean.exclusions "
                 "WHERE kind = 'run' AND reason = ? GROUP BY family",
    "steps": "SELECT family, count(*), sum(hash(run_id, step, train_loss, eval_loss, lr)::HUGEINT) FROM clean.steps "
             "GROUP BY family",
    "law": "SELECT family, count(*), sum(hash(E, A, B, alpha, beta)::HUGEINT) FROM fits.chinchilla "
           "WHERE status = 'ok' GROUP BY family",
}


def family_keys(con: duckdb.DuckDBPyConnection, **settings: Any) -> dict[str, str]:
    """family -> SHA-256 of what its forecast depends on (module docstring), for every family of clean.runs."""
    base = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in _CODE:
        base.update(path.read_bytes())
    parts: dict[str, list[str]] = defaultdict(list)
    for name, sql in _AGGREGATES.items():
        for family, n, total in con.execute(sql, [INCOMPLETE] if "?" in sql else []).fetchall():
            parts[family].append(f"{name}:{n}:{total}")
    keys = {}
    for (family,) in con.execute("SELECT DISTINCT family FROM clean.runs WHERE family IS NOT NULL").fetchall():
        h = base.copy()
        h.update(json.dumps([family, sorted(parts[family])]).encode())
        keys[family] = h.hexdigest()
    return keys


def stored_keys(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """family -> the hash its stored forecasts were made from (``forecasts.inputs``)."""
    return dict(con.execute(f"SELECT family, input_hash FROM {T.FORECASTS_INPUTS.name}").fetchall())
