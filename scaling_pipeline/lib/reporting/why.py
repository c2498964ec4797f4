"""Why nothing (or a family) was fitted, and whether the settings changed since the last report: the notes
at the top of the report, and the same facts for the ``run`` terminal summary (:func:`no_point_reasons`)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from scaling_pipeline.lib.settings import convention_text, describe_changes

from .formatting import esc, plural

TOP_REASONS = 3  # exclusion reasons shown per family that gave no point


@dataclass(frozen=True)
class Reason:
    """One exclusion reason of runs that gave no point: how many runs, and one of them as an example."""

    reason: str
    runs: int
    example_run: str
    example_detail: str


def no_point_reasons(exclusions: pd.DataFrame, points: pd.DataFrame, top: int = TOP_REASONS) -> dict[str, list[Reason]]:
    """family -> its most frequent run exclusion reasons (count, an example run), for every family with
    excluded runs and no point (``clean.exclusions`` and ``clean.points`` as DataFrames). Key ``""``: runs
    without a family."""
    runs = exclusions[exclusions.kind == "run"].copy()
    runs["family"] = runs.family.fillna("").astype(str)
    fitted = set(points.family.dropna().astype(str))
    out: dict[str, list[Reason]] = {}
    for family, g in runs.groupby("family", sort=True):
        if family in fitted:
            continue
        counts = g.reason.value_counts()
        out[family] = [Reason(str(reason), int(n), str(first.run_id), str(first.detail))
                       for reason, n in counts.head(top).items()
                       for first in [g[g.reason == reason].sort_values("run_id").iloc[0]]]
    return out


def no_runs_message(n_quarantined: int) -> str:
    """The warning when the log root gave no run at all."""
    return ("the log root gave no runs: no log file was found" if not n_quarantined
            else f"the log root gave no runs: every input was quarantined ({plural(n_quarantined, 'input')}; see "
                 "raw.quarantine)")


def why_section(exclusions: pd.DataFrame, points: pd.DataFrame, quarantine: pd.DataFrame) -> str:
    """The report's note at the top: no runs at all (a warning), or per family without a point its top
    exclusion reasons with counts and an example run; empty when every family has points."""
    if points.empty and exclusions[exclusions.kind == "run"].empty:
        return f"<div class=warn><h2>No runs</h2><p><b>Warning</b>: {esc(no_runs_message(len(quarantine)))}.</p></div>"
    reasons = no_point_reasons(exclusions, points)
    if not reasons:
        return ""
    items = []
    for family, top in reasons.items():
        lines = "".join(f"<li><code>{esc(r.reason)}</code>: {plural(r.runs, 'run')}, e.g. <code>{esc(r.example_run)}"
                        f"</code>: {esc(r.example_detail)}</li>" for r in top)
        items.append(f"<li><b>{esc(family or '(no family)')}</b><ul>{lines}</ul></li>")
    title = "Nothing fitted" if points.empty else "Families with no point"
    return (f"<div class=warn><h2>{title}: why</h2><p>Every run of these families was excluded; the most frequent "
            f"reasons (all of them in the exclusions below and in clean.exclusions):</p><ul>{''.join(items)}</ul></div>")


def convention_note(points: pd.DataFrame) -> str:
    """Which parameter count N is, per family (``clean.points.param_convention``): the families grouped by
    convention, stated once near the top of the report."""
    if points.empty or "param_convention" not in points:
        return ""
    by_family = points.groupby("family").param_convention.agg(lambda s: ",".join(sorted(set(s.dropna().astype(str)))))
    parts = [f"{esc(convention_text(conv or None))}: {esc(', '.join(fams.index))}"
             for conv, fams in by_family.groupby(by_family, sort=True)]
    return f"<p class=note id=param-convention><b>Parameter counts.</b> {'; '.join(parts)}.</p>"


def settings_used(settings: dict, fits: pd.DataFrame) -> dict:
    """``settings`` (``Settings.flat()``) with the fit settings recorded with the fits (a run's config may have
    set them for the fit step alone): what summary.json keeps."""
    recorded = next((json.loads(v) for v in fits.get("settings", []) if isinstance(v, str) and v), {})
    return {**settings, **{k: v for k, v in recorded.items() if k in settings}}


def settings_note(previous: dict | None, settings: dict | None) -> str:
    """A line naming the settings that changed since the previous report (the cause of a refit), or ''."""
    old = (previous or {}).get("settings")
    if not isinstance(old, dict) or settings is None:
        return ""
    changes = describe_changes(old, settings)
    if not changes:
        return ""
    return (f"<p class=cause><b>Settings changed</b> since the previous report (a cause of refits and of changed "
            f"points): {esc('; '.join(changes))}.</p>")
