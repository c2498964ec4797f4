"""The planning report: ``reports/<date>/index.html`` (self-contained), its PNG figures, ``summary.json``,
and ``reports/latest`` pointing at the newest dated report::

    index = render_report(load_inputs(con), Path("reports"))   # -> reports/<today>/index.html

Layout of the page, in the order a researcher reads it:

* **At a glance**: per family one line: at a headline budget (the decade nearest 10× the family's largest run,
  or ``headline_compute``, never beyond the extrapolation limit), N*, D* and the expected loss with 95% bootstrap
  intervals, and the fit's verdict with its reasons (:mod:`scaling_pipeline.lib.quality`, stored by the fit
  stage); a withheld family gets its reasons instead of a plan.
* **What changed since the last refit**: parameter drift, plan drift at standard budgets, and how the previous
  report's law predicted the runs that were added since (read from the previous report's ``summary.json``).
* **Overview** table of the fitted laws, then one section per family: verdict, law with intervals, diagnostics,
  backtest, four figures (loss vs D per N, loss vs C with the compute-optimal frontier, residuals, IsoFLOP
  curves), the allocation table and the exclusions; then the quarantined inputs and the method.

Modules: :mod:`.inputs` (the warehouse tables), :mod:`.family` (one family's view, law evaluation, its stored verdict),
:mod:`.summary` (summary.json, the previous one, drift), :mod:`.figures` (matplotlib), :mod:`.family_section`,
:mod:`.sections` and :mod:`.quarantine` (the HTML; the quarantine also as CSV), :mod:`.formatting` (numbers
and escaped text), :mod:`.store` (dated folders and ``latest``), :mod:`.render` (the entry point, the page).
"""

from .inputs import ReportInputs, load_inputs
from .render import render_report
from .summary import STANDARD_BUDGETS

__all__ = ["STANDARD_BUDGETS", "ReportInputs", "load_inputs", "render_report"]
