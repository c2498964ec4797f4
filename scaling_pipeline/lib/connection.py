"""Opening the warehouse: DuckDB allows one writer process per file, so a lock held by another process
is waited for, then reported naming the file and the process holding it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import duckdb

LOCK_WAIT_SECONDS = 5.0  # how long a locked warehouse is waited for before failing


class WarehouseLocked(Exception):
    """The warehouse file is locked by another process."""


def _holder(exc: Exception) -> str:
    """'process 123 (`command line`)' from DuckDB's lock error, or a generic phrase."""
    match = re.search(r"\(PID (\d+)\)", str(exc))
    if not match:
        return "another process"
    pid = int(match.group(1))
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cmd = " ".join(a.decode(errors="replace") for a in argv if a)
    except OSError:
        cmd = ""
    cmd = cmd if len(cmd) <= 160 else cmd[:157] + "..."
    return f"process {pid} (`{cmd}`)" if cmd else f"process {pid}"


def locked_message(db: str, exc: Exception, waited: float) -> str:
    return (f"the warehouse {db!r} is locked by {_holder(exc)} (waited {waited:.0f} s); wait for it to finish "
            f"or use another --db. DuckDB said: {exc}")


def connect_waiting(db: str, config: dict | None = None, *, read_only: bool = False,
                    wait_seconds: float = LOCK_WAIT_SECONDS) -> duckdb.DuckDBPyConnection:
    """Open ``db``; a lock held by another process is waited for up to ``wait_seconds``, then raised as
    :class:`WarehouseLocked` naming the file and the holding process."""
    t0 = time.monotonic()
    while True:
        try:
            return duckdb.connect(db, read_only=read_only, config=dict(config or {}))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() - t0 > wait_seconds:
                raise WarehouseLocked(locked_message(db, exc, time.monotonic() - t0)) from None
            time.sleep(0.25)
