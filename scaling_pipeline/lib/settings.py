"""Defaults shared by the command line, the Dagster run config and the library, each defined once here.
(Light to import: the CLI reads them to build its help.)"""

from __future__ import annotations

N_BOOT = 200  # bootstrap resamples per family in the pipeline (fit asset, fit-family, run --bootstrap)
MAX_BOOTSTRAP = 10_000  # more resamples do not make a 95% interval meaningfully better, only slower
