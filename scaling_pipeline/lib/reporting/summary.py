"""``summary.json`` (what the next report compares against), reading the previous report's, and the drift
between the two: parameter and plan changes, and how the previous law predicted the runs added since."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling_pipeline.lib.jsonutil import jsonable
from scaling_pipeline.lib.quality import beyond_limit

from .family import Family, interval, predict
from .formatting import nearly_equal, num
from .inputs import PARAMS
from .store import dated_folders

SUMMARY_SCHEMA = 2  # 2: per family "reasons" (code, severity, message) and "publishable"; plans carry "beyond_limit"
STANDARD_BUDGETS = tuple(10.0 ** k for k in range(18, 27))  # 1e18 … 1e26 FLOPs, always in summary.json
DRIFT_BIG = 0.05  # relative changes above this are highlighted


def build_summary(fams: list[Family], date: dt.date, now: dt.datetime, title: str) -> dict:
    """The content of ``summary.json``: per family its status, verdict, publishable, reasons (code, severity,
    message), runs, parameters, plans (each with ``beyond_limit``) and bootstrap."""
    out: dict[str, Any] = {"schema": SUMMARY_SCHEMA, "generated_at": now.isoformat(timespec="seconds"),
                           "report_date": date.isoformat(), "title": title, "families": {}}
    for f in fams:
        fit = f.fit or {}
        fam: dict[str, Any] = {
            "status": "missing" if f.fit is None else str(fit.get("status")),
            "error": fit.get("error") if f.fit is not None and not f.ok else None,
            "verdict": f.verdict, "publishable": f.publishable, "reasons": [r.to_dict() for r in f.reasons],
            "n_points": int(num(fit.get("n_points"), len(f.pts))) if f.fit else len(f.pts),
            "run_ids": sorted(str(r) for r in f.pts.run_id),
            "losses": {str(r.run_id): float(r.loss) for r in f.pts.itertuples(index=False)},
            "sizes": {str(r.run_id): [float(r.n_params), float(r.n_tokens), float(r.flops)]
                      for r in f.pts.itertuples(index=False)},
            "max_observed_flops": f.max_flops,
            "fitted_at": str(fit.get("fitted_at")) if fit.get("fitted_at") is not None else None,
            "input_hash": fit.get("input_hash"),
        }
        if f.ok:
            fam.update(
                params={p: float(f.P[0, i]) for i, p in enumerate(PARAMS)},
                a=float(num(fit.get("a_exponent"))), G=float(num(fit.get("G"))),
                ci={k: [num(v[0]), num(v[1])] for k, v in f.ci.items() if isinstance(v, list | tuple) and len(v) == 2},
                level=f.level, objective=num(fit.get("objective")),
                rmse_log_residual=num(f.diagnostics.get("rmse_log_residual")),
                backtest_mean_abs_rel_error=num(f.backtest.get("mean_abs_rel_error")),
                headline=f.headline, isoflop_slices=f.slices,
                plans=[{**f.plan_at(c), "beyond_limit": bool(beyond_limit(c, f.max_flops))}
                       for c in _summary_budgets(f)] if f.publishable else [],
                bootstrap=f.boot.tolist(),
            )
        out["families"][f.name] = fam
    return out


def write_summary(path: Path, summary: dict) -> None:
    """``summary.json``: strict JSON (NaN becomes null), one key a line."""
    path.write_text(json.dumps(jsonable(summary), indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _summary_budgets(f: Family) -> list[float]:
    """Standard budgets (1e18…1e26 FLOPs), every budget of the stored plan table, and the headline budget."""
    cs = set(STANDARD_BUDGETS) | {float(c) for c in f.plans.compute if np.isfinite(num(c)) and num(c) > 0}
    if f.headline:
        cs.add(f.headline["compute"])
    return sorted(cs)


def previous_summary(root: Path, date: dt.date) -> dict | None:
    """The most recent earlier report's summary (this date's own folder first), or None."""
    same = root / date.isoformat() / "summary.json"
    candidates = [same] if same.is_file() else []
    candidates += [p / "summary.json" for d, p in reversed(dated_folders(root)) if d < date]
    for path in candidates:
        s = _read_summary(path)
        if s is not None:
            s["_folder"] = path.parent.name
            s["_same_folder"] = path == same
            return s
    return None


def _read_summary(path: Path) -> dict | None:
    try:
        s = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(s, dict) or not isinstance(s.get("families"), dict):
        return None
    return s


@dataclass
class Drift:
    params: list[dict]  # per family: status change, run changes, parameter old/new
    plans: list[dict]  # per family and budget: N*, D*, loss old/new
    scored: pd.DataFrame  # runs new since the previous fit, scored against the previous law
    unchanged: bool

    @classmethod
    def build(cls, prev: dict, fams: list[Family]) -> Drift:
        pf = prev["families"]
        cur = {f.name: f for f in fams}
        params, plans, scored = [], [], []
        for name in sorted(set(pf) | set(cur)):
            old, new = pf.get(name), cur.get(name)
            row: dict[str, Any] = {"family": name, "new": new, "old": old}
            if old is None or new is None:
                params.append(row)
                continue
            old_ids = {str(r) for r in old.get("run_ids") or []}
            new_losses = dict(zip(new.pts.run_id.astype(str), new.pts.loss.astype(float)))
            old_losses = old.get("losses") if isinstance(old.get("losses"), dict) else {}
            row.update(added=sorted(set(new_losses) - old_ids), removed=sorted(old_ids - set(new_losses)),
                       changed=sorted(r for r in set(new_losses) & set(old_losses)
                                      if not nearly_equal(old_losses[r], new_losses[r])),
                       n_old=old.get("n_points"), n_new=int(num((new.fit or {}).get("n_points"), len(new.pts))))
            op = old.get("params") if old.get("status") == "ok" else None
            if op and new.ok:
                row["values"] = {p: (num(op.get(p)), float(new.P[0, i])) for i, p in enumerate(PARAMS)}
                row["values"]["a"] = (num(old.get("a")), num(new.fit.get("a_exponent")))
            row["same"] = (not (row["added"] or row["removed"] or row["changed"])
                           and old.get("status") == (new.fit or {}).get("status", "missing")
                           and all(nearly_equal(o, n) for o, n in row.get("values", {}).values()))
            if "values" in row and not row["same"]:
                plans += cls._plan_rows(name, old, new)
            params.append(row)
            P_old = np.array([[num(op.get(p)) for p in PARAMS]]) if op else None
            if P_old is not None and np.isfinite(P_old).all() and row["added"]:
                pts = new.pts[new.pts.run_id.astype(str).isin(row["added"])]
                pred = predict(P_old, pts.n_params.to_numpy(float), pts.n_tokens.to_numpy(float))[0]
                try:
                    boot = np.array([[num(v) for v in r] for r in old.get("bootstrap") or []], float).reshape(-1, 5)
                    boot = boot[np.isfinite(boot).all(axis=1)]
                except (TypeError, ValueError):
                    boot = np.empty((0, 5))
                if len(boot):
                    lo, hi = interval(predict(boot, pts.n_params.to_numpy(float), pts.n_tokens.to_numpy(float)),
                                      num(old.get("level"), 0.95))
                else:
                    lo = hi = np.full(len(pts), np.nan)
                scored.append(pd.DataFrame({
                    "family": name, "run_id": pts.run_id.astype(str).to_numpy(), "n_params": pts.n_params.to_numpy(),
                    "n_tokens": pts.n_tokens.to_numpy(), "flops": pts.flops.to_numpy(), "loss": pts.loss.to_numpy(),
                    "predicted": pred, "lo": lo, "hi": hi,
                    "extrapolation": pts.flops.to_numpy() / num(old.get("max_observed_flops"))}))
        scored_df = (pd.concat(scored, ignore_index=True) if scored else pd.DataFrame(
            columns=["family", "run_id", "n_params", "n_tokens", "flops", "loss", "predicted", "lo", "hi",
                     "extrapolation"]))
        scored_df["rel_error"] = scored_df.predicted.astype(float) / scored_df.loss.astype(float) - 1.0
        unchanged = all(r.get("same", False) for r in params)
        return cls(params=params, plans=plans, scored=scored_df, unchanged=unchanged)

    @staticmethod
    def _plan_rows(name: str, old: dict, new: Family) -> list[dict]:
        old_plans = {float(p["compute"]): p for p in old.get("plans") or [] if p.get("compute")}
        near = [c for c in old_plans if 0.1 <= c / new.max_flops <= 1000]  # what the team may train next
        if not near:
            near = [c for c in STANDARD_BUDGETS if c in old_plans][:3]
        rows = []
        for c in sorted(near):
            now = new.plan_at(c)
            o = old_plans[c]
            rows.append({"family": name, "compute": c, "extrapolation": c / new.max_flops,
                         **{k: (num(o.get(k)), num(now.get(k))) for k in ("n_params", "n_tokens", "loss")}})
        return rows
