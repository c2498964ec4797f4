"""The planning report: ``reports/<date>/index.html`` (self-contained), its PNG figures, ``summary.json``,
and ``reports/latest`` pointing at the newest dated report (:func:`render_report`).

Every figure is embedded in ``index.html`` as a base64 data URI (the file alone can be published) and also
written beside it as ``<family-slug>_<figure>.png``. The report is built in a hidden temporary folder under
``reports_root`` and swapped in at the end (:mod:`.store`), so a failed render never leaves a half-written
report and never writes outside ``reports_root``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from .family import family_views
from .family_section import family_section
from .figcache import FigureCache, figure_call
from .figures import plot_style
from .figures_plan import frontiers_section
from .formatting import esc, plural
from .inputs import ReportInputs, normalised
from .quarantine import quarantine_section, write_quarantine_csv
from .sections import drift_section, glance_section, method_section, overview_section, reference_section
from .store import dated_folder
from .summary import Drift, build_summary, previous_summary, write_summary
from .why import convention_note, settings_note, why_section


def render_report(inputs: ReportInputs, reports_root: Path, *, date: dt.date | None = None,
                  title: str = "Scaling-law planning report", headline_compute: float | None = None,
                  settings: dict | None = None, cache: FigureCache | None = None) -> Path:
    """Write ``reports_root/<date>/index.html`` (+ figures, ``summary.json``, ``quarantine.csv``), point
    ``reports_root/latest`` at the newest dated report, and return the index path.

    ``headline_compute``: the budget (FLOPs) of the "at a glance" lines for every family; by default each
    family gets the power of ten nearest 10× its largest run. ``settings``: the run's settings
    (``Settings.flat()``), kept in summary.json; a change since the previous report is named in "what changed".
    ``cache``: reuse each figure whose inputs and the code are unchanged since the cache stored it
    (:mod:`.figcache`); by default every figure is drawn.
    """
    date = date or dt.date.today()
    reports_root = Path(reports_root)
    reports_root.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now().astimezone()
    # The previous report: this folder's own summary when the same date is rewritten (read before it is
    # replaced), else the most recent earlier dated folder with a readable summary.
    previous = previous_summary(reports_root, date)

    inp = normalised(inputs)
    fams = family_views(inp, headline_compute)
    drift = Drift.build(previous, fams) if previous else None
    cache = cache or FigureCache(None)
    with dated_folder(reports_root, date) as tmp, cache.active(around=plot_style):
        sections = [figure_call(family_section, None, f, tmp) for f in fams]  # a family's part of the page
        frontiers = frontiers_section(fams, tmp)
        summary = build_summary(fams, date, now, title)
        body = "\n".join([
            f"<h1>{esc(title)}</h1>",
            f"<p class=meta>{esc(date.isoformat())} · generated {esc(now.isoformat(timespec='seconds'))} · "
            f"{plural(len(inp.points), 'schedule-valid run')} in "
            f"{plural(inp.points.family.nunique(), 'family', 'families')} · "
            f"{plural(int((inp.exclusions.kind == 'run').sum()), 'run')} excluded · "
            f"{plural(len(inp.quarantine), 'input')} quarantined"
            "</p>",
            why_section(inp.exclusions, inp.points, inp.quarantine),
            glance_section(fams),
            convention_note(inp.points),
            drift_section(previous, drift, note=settings_note(previous, settings)),
            overview_section(fams),
            frontiers,
            *sections,
            quarantine_section(inp.quarantine),
            reference_section(),
            method_section(),
        ])
        write_summary(tmp / "summary.json", {**summary, "settings": settings})
        write_quarantine_csv(inp.quarantine, tmp)
        (tmp / "index.html").write_text(_PAGE.format(title=esc(title), body=body), encoding="utf-8")
    cache.prune()
    return reports_root / date.isoformat() / "index.html"


_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1180px; margin: 2em auto;
        padding: 0 1em; color: #222; line-height: 1.4; }}
h1 {{ margin-bottom: .2em; }} h2 {{ margin-top: 1.6em; }} h3 {{ margin: 1.2em 0 .4em; }}
table {{ border-collapse: collapse; margin: .5em 0 1.2em; font-size: 88%; }}
th, td {{ border: 1px solid #d4d4d4; padding: 3px 8px; text-align: right; vertical-align: top; }}
th.text, td.text, th:first-child, td:first-child {{ text-align: left; }} td.num {{ text-align: right; }}
th {{ background: #f3f3f3; }}
.ci {{ color: #777; font-size: 88%; white-space: nowrap; }} .bad {{ color: #b00; }}
.ci.unidentified {{ color: #b00; font-style: italic; }}
.ci.wrap {{ display: block; text-align: left; white-space: normal; overflow-wrap: anywhere; }}
td.text {{ overflow-wrap: break-word; }} figure.wide {{ max-width: 960px; }}
.meta, .note {{ color: #666; }} .note {{ font-size: 90%; }}
.warn {{ background: #fff6e0; border-left: 4px solid #e0a000; padding: .3em 1em; margin: .6em 0; }}
.verdict {{ padding: .45em 1em; margin: .6em 0; border-left: 5px solid; }}
.verdict ul {{ margin: .3em 0; }} .verdict p {{ margin: .3em 0; }}
.verdict.ok {{ background: #eef8ee; border-color: #2e8b3a; }}
.verdict.caution {{ background: #fff6e0; border-color: #e0a000; }}
.verdict.withheld, .verdict.failed, .verdict.missing {{ background: #fdecec; border-color: #c62828; }}
.verdict li.sev {{ font-weight: 600; }}
.badge {{ display: inline-block; font-size: 75%; font-weight: 700; padding: .1em .5em; border-radius: .7em;
          vertical-align: middle; white-space: nowrap; }}
.badge.ok {{ background: #dff0df; color: #1f6b29; }} .badge.caution {{ background: #ffe9b3; color: #7a5200; }}
.badge.withheld, .badge.failed, .badge.missing {{ background: #c62828; color: #fff; }}
ul.glance {{ list-style: none; padding-left: 0; font-size: 96%; }} ul.glance li {{ margin: .35em 0; padding: .3em .6em;
          background: #fafafa; border-left: 4px solid #2e8b3a; }}
ul.glance li.caution {{ border-color: #e0a000; }}
ul.glance li.withheld, ul.glance li.failed, ul.glance li.missing {{ border-color: #c62828; background: #fdf3f3; }}
.glance-obs {{ color: #333; font-size: 90%; margin-top: .15em; }} p.slices {{ font-size: 92%; }}
.glance-why {{ color: #a11; font-size: 90%; margin-top: .15em; }} li.caution .glance-why {{ color: #7a5200; }}
tr.extrap td {{ color: #999; }} tr.headline td {{ font-weight: 700; background: #f5f9ff; }}
td.big {{ background: #fff1d6; }} table.small {{ font-size: 82%; }}
.figs {{ display: grid; grid-template-columns: 1fr 1fr; gap: .8em; }} figure {{ margin: 0; }}
figure img {{ width: 100%; height: auto; }} figcaption {{ font-size: 85%; color: #555; }}
section {{ border-top: 2px solid #ddd; margin-top: 2em; }} .law {{ font-size: 110%; margin-bottom: 0; }}
details summary {{ cursor: pointer; color: #0645ad; }}
@media (max-width: 800px) {{ .figs {{ grid-template-columns: 1fr; }} }}
</style></head><body>
{body}
</body></html>
"""
