"""Compare any two reports (``scaling-pipeline compare REPORT_A REPORT_B``): the drift tables of the page's
"what changed" section (:class:`.summary.Drift`), built from the two reports' ``summary.json`` as text.

REPORT_B plays the part of the current report: its families are rebuilt from its summary.json (parameters,
bootstrap samples, plans, and each run's N, D, C and loss), then compared with REPORT_A exactly as a new render
compares with the previous one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .family import Family
from .formatting import fmt_flops, fmt_human, fmt_times, num
from .inputs import PARAMS
from .summary import Drift


class ReportNotFound(ValueError):
    """The path is neither a report folder with a readable summary.json nor such a file."""


def read_report(path: Path) -> dict:
    """The summary.json of the report folder (or file) ``path``, with ``_folder`` set as a previous one has."""
    path = Path(path)
    file = path / "summary.json" if path.is_dir() else path
    try:
        s = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportNotFound(f"{file}: not a readable summary.json ({exc})") from None
    if not isinstance(s, dict) or not isinstance(s.get("families"), dict):
        raise ReportNotFound(f"{file}: no 'families' object: not a report's summary.json")
    s["_folder"], s["_same_folder"] = file.resolve().parent.name, False
    return s


def family_from_summary(name: str, s: dict) -> Family:
    """A :class:`Family` with what a summary.json records: runs (N, D, C and loss where the summary has
    ``sizes``), fit status and parameters, bootstrap samples and plans."""
    sizes = s.get("sizes") if isinstance(s.get("sizes"), dict) else {}
    losses = s.get("losses") if isinstance(s.get("losses"), dict) else {}
    ids = [str(r) for r in s.get("run_ids") or []]
    pts = pd.DataFrame({"run_id": ids, "loss": [num(losses.get(r)) for r in ids],
                        **{k: [num((sizes.get(r) or [np.nan] * 3)[i]) for r in ids]
                           for i, k in enumerate(("n_params", "n_tokens", "flops"))}})
    ok = s.get("status") == "ok" and isinstance(s.get("params"), dict)
    P = np.array([[num(s["params"].get(p)) for p in PARAMS]]) if ok else None
    boot = np.array([[num(v) for v in r] for r in s.get("bootstrap") or []], float).reshape(-1, 5)
    fit = {"status": s.get("status"), "n_points": s.get("n_points"), "a_exponent": s.get("a")}
    return Family(name=name, slug=name, pts=pts, fit=None if s.get("status") == "missing" else fit,
                  P=P if P is not None and np.isfinite(P).all() else None, boot=boot[np.isfinite(boot).all(axis=1)],
                  plans=pd.DataFrame(s.get("plans") or None, columns=None if s.get("plans") else ["compute"]),
                  excl=pd.DataFrame(), level=num(s.get("level"), 0.95),
                  max_flops=num(s.get("max_observed_flops")))


def drift_tables(drift: Drift) -> dict[str, pd.DataFrame]:
    """The three tables of "what changed" as DataFrames of display strings: fitted parameters, plans, runs
    added since scored against the old law."""
    params = []
    for r in drift.params:
        if r.get("same"):
            continue
        row = {"family": r["family"]}
        if r["old"] is None or r["new"] is None:
            row["runs fitted"] = "new family" if r["old"] is None else "no longer present"
        else:
            notes = [f"+{len(r['added'])} new"] * bool(r["added"]) + [f"−{len(r['removed'])} dropped"] * bool(
                r["removed"]) + [f"{len(r['changed'])} with a changed loss"] * bool(r["changed"])
            row["runs fitted"] = f"{r['n_old']} → {r['n_new']}" + (f" ({'; '.join(notes)})" if notes else "")
            for p, (o, n) in r.get("values", {}).items():
                row[p] = f"{fmt_human(o, 4)} → {fmt_human(n, 4)} ({_change(o, n)})"
        params.append(row)
    plans = [{"family": p["family"], "compute (FLOPs)": fmt_flops(p["compute"]),
              "× largest run": fmt_times(p["extrapolation"]),
              **{k: f"{fmt_human(p[c][0])} → {fmt_human(p[c][1])} ({_change(*p[c])})"
                 for k, c in (("N* (params)", "n_params"), ("D* (tokens)", "n_tokens"))},
              "loss (nats/token)": f"{p['loss'][0]:.4f} → {p['loss'][1]:.4f} ({p['loss'][1] - p['loss'][0]:+.4f})"}
             for p in drift.plans]
    sc = drift.scored[np.isfinite(drift.scored.predicted.astype(float))]
    scored = [{"family": r.family, "run": r.run_id, "N": fmt_human(r.n_params), "D": fmt_human(r.n_tokens),
               "C (FLOPs)": fmt_flops(r.flops, 2), "observed loss": f"{r.loss:.4f}",
               "previous prediction": f"{r.predicted:.4f}", "error L̂/L − 1": f"{r.rel_error:+.2%}"}
              for r in sc.sort_values(["family", "flops"]).itertuples(index=False)]
    return {"Fitted parameters (old → new)": pd.DataFrame(params),
            "Compute-optimal plans (old → new)": pd.DataFrame(plans),
            "How the previous fit predicted the runs added since": pd.DataFrame(scored)}


def _change(old: float, new: float) -> str:
    o, n = num(old), num(new)
    if not (np.isfinite(o) and np.isfinite(n)) or o == 0:
        return "–"
    rel = n / o - 1
    return f"{rel:+.1%}" if abs(rel) < 10 else f"×{n / o:.3g}"


def compare_reports(a: Path, b: Path) -> str:
    """The drift from report ``a`` to report ``b`` as text (the tables of the "what changed" section)."""
    old, new = read_report(a), read_report(b)
    fams = [family_from_summary(name, s) for name, s in sorted(new["families"].items())]
    drift = Drift.build(old, fams)
    head = (f"Report A: {a} (generated {old.get('generated_at', '?')})\n"
            f"Report B: {b} (generated {new.get('generated_at', '?')})\n")
    if drift.unchanged:
        return head + "\nNothing changed: same runs, same losses, same fitted parameters in every family.\n"
    out = [head]
    for title, table in drift_tables(drift).items():
        out.append(f"\n{title}\n" + ("(none)" if table.empty else table.to_string(index=False)) + "\n")
    unscored = int((~np.isfinite(drift.scored.predicted.astype(float))).sum())
    if unscored:  # report B predates the run sizes in summary.json
        out.append(f"\n{unscored} added run(s) not scored: report B's summary.json has no 'sizes' (N, D) for them.\n")
    same = [r["family"] for r in drift.params if r.get("same")]
    if same:
        out.append(f"\nUnchanged (same runs and fit): {', '.join(same)}.\n")
    return "".join(out)
