"""Quarantined inputs: on the page a capped, escaped table (and, when it is cut, a summary of every row by
the way it failed); the full list in ``quarantine.csv`` beside ``index.html``."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .formatting import esc, plural
from .inputs import COLUMNS

QUARANTINE_ROWS = 200  # rows (and summary lines) of raw.quarantine on the page; all of them are in the CSV
EXCERPT_CHARS = 200  # characters of a path, field or reason from the data shown on the page
CSV_NAME = "quarantine.csv"


def write_quarantine_csv(q: pd.DataFrame, folder: Path) -> Path:
    """Every quarantined row or file, unabridged, as ``folder/quarantine.csv`` (a header only when none)."""
    path = folder / CSV_NAME
    q[COLUMNS["quarantine"]].to_csv(path, index=False)
    return path


def quarantine_section(q: pd.DataFrame) -> str:
    """The section: counts, a link to the CSV and the first ``QUARANTINE_ROWS`` rows, each cell an excerpt."""
    head = "<h2>Quarantined inputs</h2>"
    if q.empty:
        return head + "<p>None: every file was read.</p>"
    shown = q.head(QUARANTINE_ROWS)
    intro = (f"<p>{plural(len(q), 'input')} from {plural(q.source_path.nunique(), 'file')} "
             f"(<a href='{CSV_NAME}'>{CSV_NAME}</a>: the full list, unabridged).</p>")
    rows = "".join("<tr>" + "".join(f"<td class=text>{_cell(v)}</td>" for v in
                                    (r.source_path, r.scope, r.location, r.field, r.reason)) + "</tr>"
                   for r in shown.itertuples(index=False))
    table = ("<table><tr><th>source</th><th class=text>scope</th><th class=text>where</th><th class=text>field</th>"
             "<th class=text>reason</th></tr>" + rows + "</table>")
    if len(q) == len(shown):
        return head + intro + table
    return (head + intro + _by_kind(q)
            + f"<p>The first {len(shown):,} of {len(q):,} ({CSV_NAME} has them all):</p>" + table)


def _cell(x) -> str:
    return esc(x, EXCERPT_CHARS)


def _by_kind(q: pd.DataFrame) -> str:
    """One line per way of failing (scope, field and the reason without its location and quoted values)."""
    kinds = q.assign(kind=[_kind(r, loc) for r, loc in zip(q.reason, q.location)], field=q.field.fillna(""))
    groups = (kinds.groupby(["scope", "field", "kind"], dropna=False, sort=False)
              .agg(n=("kind", "size"), files=("source_path", "nunique"), path=("source_path", "first"),
                   location=("location", "first"))
              .reset_index().sort_values("n", ascending=False, kind="stable"))
    rows = "".join(f"<tr><td>{g.n:,}</td><td>{g.files:,}</td><td class=text>{_cell(g.scope)}</td>"
                   f"<td class=text>{_cell(g.field)}</td><td class=text>{_cell(g.kind)}</td>"
                   f"<td class=text>{_cell(g.path)} {_cell(g.location)}</td></tr>"
                   for g in groups.head(QUARANTINE_ROWS).itertuples(index=False))
    more = (f"<p class=note>{len(groups) - QUARANTINE_ROWS:,} rarer kinds not shown.</p>"
            if len(groups) > QUARANTINE_ROWS else "")
    return ("<h3>By kind</h3><table><tr><th>rows</th><th>files</th><th class=text>scope</th><th class=text>field</th>"
            "<th class=text>reason (quoted values as '…')</th><th class=text>first at</th></tr>" + rows + "</table>"
            + more)


def _kind(reason, location) -> str:
    """``reason`` without its leading location and with quoted values and numbers blanked."""
    text, where = str(reason), f"{location}: "
    text = text[len(where):] if text.startswith(where) else text
    return re.sub(r"\d+", "N", re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text))
