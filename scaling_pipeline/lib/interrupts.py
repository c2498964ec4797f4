"""A signal (Ctrl-C, SIGTERM) that arrives while DuckDB runs a query surfaces as a DuckDB error
("Query interrupted"). Code that turns errors into quarantine reasons or fallbacks must let it through:
an interrupted read is never evidence against the file."""

from __future__ import annotations

import duckdb


def is_interrupt(exc: BaseException) -> bool:
    return isinstance(exc, (KeyboardInterrupt, duckdb.InterruptException)) or "Query interrupted" in str(exc)


def reraise_interrupt(exc: BaseException) -> None:
    """Raise KeyboardInterrupt (from ``exc``) if ``exc`` is an interrupt, else return."""
    if is_interrupt(exc):
        raise KeyboardInterrupt(str(exc)) from exc
