"""``scaling-pipeline``: run the asset graph, fit a CSV of runs, plan a budget, fit families on separate workers
(per-family Parquet), make demo logs.

Modules: :mod:`.parser` (every subcommand's options), :mod:`.run` (``run``), :mod:`.fitting` (``fit``,
``curve-fit``, ``allocate``), :mod:`.families` (``export-points``, ``fit-family``, ``import-fits``),
:mod:`.tools` (``ui``, ``demo-data``), :mod:`.common` (shared helpers).
"""

from __future__ import annotations

import sys

from .common import UserError
from .parser import build_parser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
