"""What the forecast of each family reads, hashed per family (``forecasts.inputs``): a family whose hash is as
stored keeps its rows of the forecasts tables; only the others are refitted (:mod:`scaling_pipeline.lib.forecast`).

A family's hash covers, per input, the row count and the order-independent sum of the hashes of the columns the
forecast reads, by one DuckDB aggregate grouped by family over the small tables (``clean.runs`` with the runs'
``extra`` metadata, ``clean.points``, ``clean.exclusions``, ``fits.chinchilla``). ``clean.steps`` (the large one)
is not scanned: a run's steps follow from its ``clean.runs`` row and the raw rows of the source units that log it,
so the hash takes the fingerprints (sha256, ingest time) of those units from ``raw.files``. Which runs a unit
logs is kept in ``forecasts.sources`` and looked up in ``raw.metrics`` only for new or re-ingested units. Plus
the forecast's settings and the library's code version (:func:`~scaling_pipeline.lib.digest.code_version`, as the
clean stage uses: a change refits every family). Cost at 10-100M steps: benchmarks/README.md, "Forecasts for runs in flight".
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

import duckdb

from scaling_pipeline.lib import tables as T
from scaling_pipeline.lib.digest import code_version

__all__ = ["family_keys", "stored_keys", "update_sources"]

_FINGERPRINTS = "SELECT source_path, coalesce(sha256, '-') || '@' || ingested_at::VARCHAR AS fingerprint FROM raw.files"

# per input: SQL giving (family, rows, sum of row hashes) of what the forecast reads of it
_AGGREGATES = {
    "runs": """SELECT r.family, count(*), sum(hash(r, x.extra)::HUGEINT) FROM clean.runs r
               LEFT JOIN (SELECT run_id, min(extra) AS extra FROM raw.runs GROUP BY run_id) x USING (run_id)
               GROUP BY r.family""",
    "points": "SELECT family, count(*), sum(hash(run_id, n_params, n_tokens, loss)::HUGEINT) FROM clean.points "
              "GROUP BY family",
    "exclusions": "SELECT family, count(*), sum(hash(e)::HUGEINT) FROM clean.exclusions e GROUP BY family",
    "steps": """SELECT r.family, count(*), sum(hash(s.source_path, s.fingerprint)::HUGEINT)
                FROM forecasts.sources s JOIN clean.runs r USING (run_id) GROUP BY r.family""",
    "law": "SELECT family, count(*), sum(hash(E, A, B, alpha, beta)::HUGEINT) FROM fits.chinchilla "
           "WHERE status = 'ok' GROUP BY family",
}


def update_sources(con: duckdb.DuckDBPyConnection) -> None:
    """Bring ``forecasts.sources`` in line with ``raw.files``: units gone or re-ingested lose their rows, new and
    re-ingested ones are looked up in ``raw.metrics`` (one transaction; no write when nothing changed)."""
    stale = [p for (p,) in con.execute(f"""SELECT DISTINCT source_path FROM forecasts.sources
                                           ANTI JOIN ({_FINGERPRINTS}) USING (source_path, fingerprint)""").fetchall()]
    new = con.execute(f"""SELECT source_path, fingerprint FROM ({_FINGERPRINTS})
                          ANTI JOIN (SELECT DISTINCT source_path, fingerprint FROM forecasts.sources)
                          USING (source_path, fingerprint) ORDER BY source_path""").fetchall()
    if not stale and not new:
        return
    with T.transaction(con):
        con.execute("DELETE FROM forecasts.sources WHERE list_contains(?, source_path)", [stale])
        con.execute("""INSERT INTO forecasts.sources
                       WITH n AS (SELECT unnest(?) AS source_path, unnest(?) AS fingerprint)
                       SELECT n.source_path, n.fingerprint, m.run_id FROM n LEFT JOIN (
                           SELECT DISTINCT source_path, run_id FROM raw.metrics SEMI JOIN n USING (source_path)
                       ) m USING (source_path)""", [[p for p, _ in new], [f for _, f in new]])


def family_keys(con: duckdb.DuckDBPyConnection, **settings: Any) -> dict[str, str]:
    """family -> SHA-256 of what its forecast depends on (module docstring), for every family of clean.runs;
    ``forecasts.sources`` must be up to date (:func:`update_sources`)."""
    base = hashlib.sha256(json.dumps(settings, sort_keys=True).encode() + b"\0" + code_version().encode())
    parts: dict[str, list[str]] = defaultdict(list)
    for name, sql in _AGGREGATES.items():
        for family, n, total in con.execute(sql).fetchall():
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
