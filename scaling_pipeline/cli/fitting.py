"""``fit`` (a runs CSV), ``curve-fit`` (loss curves) and ``allocate`` (compute-optimal plans)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from scaling_pipeline.lib.settings import convention_text

from .common import UserError, existing_warehouse, file_settings, open_warehouse

if TYPE_CHECKING:
    from scaling_pipeline.lib.quality import Assessment


def cmd_fit(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.fitting.common import FitError
    from scaling_pipeline.lib.fitting.csv import fit_csv

    try:
        out = fit_csv(args.csv, form=args.form, loss=args.loss, delta=args.delta, family=args.family,
                      bootstrap=args.bootstrap, seed=args.seed, joint=args.joint, free_all=args.free_all,
                      x=args.x, y=args.y, vars=args.vars, where=args.where)
    except FitError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps(out))
        return 0
    ci = out.get("ci") or {}
    print(f"form {out['form']}  ({out['n_points']} points, loss {out['loss']}, delta {out['delta']})")
    if "n_params" in (out.get("diagnostics", {}).get("source", {}).get("columns") or {}).values():
        print(convention_text(out["diagnostics"]["source"].get("param_convention")))
    for name, f in out.get("families", {}).items():
        print(f"  {name:<20} E {f['E']:.4g}  A {f['A']:.4g}  B {f['B']:.4g}  ({f['n_points']} points)")
    for name, value in out["params"].items():
        interval = f"  [{ci[name][0]:.6g}, {ci[name][1]:.6g}]" if name in ci else ""
        print(f"  {name:<8} {value:>14.6g}{interval}")
    print(f"objective {out['objective']:.10g}   fit time {out['fit_seconds'] * 1e3:.1f} ms")
    for w in out.get("diagnostics", {}).get("warnings", []):
        print(f"warning: {w}")
    source = out.get("diagnostics", {}).get("source", {})
    if source.get("ignored_columns"):
        print(f"note: ignored columns {', '.join(source['ignored_columns'])}")
    return 0



def cmd_curve_fit(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.curves.csv import curve_fit_files
    from scaling_pipeline.lib.curves.schedule import CurveError

    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    try:
        out = curve_fit_files(args.train, args.form, args.predict, args.schedules, n_boot=args.bootstrap,
                              seed=args.seed)
    except CurveError as exc:
        raise UserError(str(exc)) from None
    for note in out.pop("notes"):
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"form {out['form']}   objective {out['objective']:.6g}   fit time {out['fit_seconds']:.2f} s")
    for name, value in out["params"].items():
        interval = "  95% interval [{:.6g}, {:.6g}]".format(*out["ci"][name]) if "ci" in out else ""
        print(f"  {name:<6} {value:>12.6g}{interval}")
    for kind in ("train", "predictions"):
        for row in out[kind]:
            print(f"{kind:<11} {row['file']}: mean |L^-L|/L {row['mean_rel_err']:.3%}, max {row['max_rel_err']:.3%}")
    return 0



def cmd_allocate(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.allocate import plans_from_fit
    from scaling_pipeline.lib.quality import EXTRAPOLATION_LIMIT, beyond_limit, plan_verdict

    if args.compute is None and args.target_loss is None:
        raise UserError("give at least one --compute FLOPS or a --target-loss L")
    if args.force and args.family is None:
        raise UserError("--force applies to --family only")
    args.level = file_settings(args.settings, {"level": args.level}).fit.level
    assessment = None
    convention = None
    if args.fit is not None:
        try:
            fit = json.loads(sys.stdin.read() if str(args.fit) == "-" else args.fit.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read fit JSON {str(args.fit)!r}: {exc}") from None
        samples = None
        convention = ((fit.get("diagnostics") or {}).get("source") or {}).get("param_convention")
    else:
        fit, samples, assessment, max_flops, convention = _warehouse_fit(args.db, args.family)
        if not assessment.publishable and not args.force:
            raise UserError(f"the plan of family {args.family!r} is withheld (verdict {assessment.verdict}):\n"
                            + "".join(f"  {r.code}: {r.message}\n" for r in assessment.blocking)
                            + "(--force prints its plans anyway, each marked WITHHELD)")
    try:
        out = plans_from_fit(fit, args.compute, max_params=args.max_params, max_tokens=args.max_tokens,
                             unique_tokens=args.unique_tokens, inference_tokens=args.inference_tokens,
                             target_loss=args.target_loss, samples=samples, level=args.level)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if assessment is not None:
        out["assessment"] = {"verdict": assessment.verdict, "publishable": assessment.publishable,
                             "reasons": [r.to_dict() for r in assessment.reasons]}
        for p in out["plans"]:
            p["beyond_limit"] = p.get("compute") is not None and bool(beyond_limit(p["compute"], max_flops))
            p["verdict"] = plan_verdict(assessment.verdict, p["beyond_limit"]) if assessment.publishable else "withheld"
        if any(p["beyond_limit"] for p in out["plans"]):
            out["notes"].append(f"extrapolated: more than {EXTRAPOLATION_LIMIT:,.0f}x the family's largest run "
                                f"({max_flops:.3g} FLOPs), beyond what its runs support")
    out["param_convention"] = convention
    if args.json:
        print(json.dumps(out))
        return 0
    print(convention_text(convention))
    if assessment is not None and not assessment.publishable:
        print(f"warning: the plan of family {args.family!r} is withheld; printed because of --force:", file=sys.stderr)
        for r in assessment.blocking:
            print(f"  {r.code}: {r.message}", file=sys.stderr)
    print(f"{'kind':<11} {'compute':>9} {'N (params)':>11} {'D (tokens)':>11} {'D/N':>7} {'loss':>7}  constraint"
          "  efficiency" + ("  verdict" if assessment is not None else ""))
    for p in out["plans"]:
        mark = f"  {p['verdict'].upper() if p['verdict'] == 'withheld' else p['verdict']}" if "verdict" in p else ""
        print(f"{p['kind']:<11} {p['compute']:9.3g} {p['n_params']:11.4g} {p['n_tokens']:11.4g} "
              f"{p['tokens_per_param']:7.1f} {p['loss']:7.4f}  {p['constraint']:<10}  {p['efficiency']:10.3f}{mark}")
        for name, (lo, hi) in (p.get("ci") or {}).items():
            print(f"{'':<11} {name} {args.level:.0%} interval [{lo:.4g}, {hi:.4g}]")
    for note in out["notes"]:
        print(f"note: {note}")
    return 0



def _warehouse_fit(db: str | None, family: str) -> tuple[dict, list | None, Assessment, float, str | None]:
    """A family's fit (as `fit --json` would print it), its bootstrap laws, its quality assessment, its
    largest run (FLOPs) and its parameter convention, from the warehouse."""
    from scaling_pipeline.lib.allocate import laws_from_samples
    from scaling_pipeline.lib.quality import Assessment
    from scaling_pipeline.lib.tables import intervals
    from scaling_pipeline.lib.warehouse import family_conventions

    path = existing_warehouse(db)
    with open_warehouse(path, read_only=True) as con:
        row = con.execute("SELECT * FROM fits.chinchilla WHERE family = ?", [family]).df()
        if row.empty:
            known = [r[0] for r in con.execute("SELECT family FROM fits.chinchilla ORDER BY 1").fetchall()]
            raise UserError(f"no fit for family {family!r} in {path!r}; families: {known}")
        boot = con.execute("SELECT E, A, B, alpha, beta FROM fits.bootstrap WHERE family = ? ORDER BY sample",
                           [family]).df()
        convention = family_conventions(con, family).get(family)
    r = row.iloc[0]
    if r.status != "ok":
        raise UserError(f"the fit of family {family!r} failed: {r.error}")
    fit = {"form": "chinchilla", "loss": r.loss, "delta": r.delta, "n_points": int(r.n_points),
           "params": {k: float(r[k]) for k in ("E", "A", "B", "alpha", "beta")}, "objective": float(r.objective),
           "ci": {k: list(v) for k, v in intervals(r).items()}, "diagnostics": json.loads(r.diagnostics or "{}")}
    assessment = Assessment.from_columns(r.verdict, r.reasons, r.reason_messages)
    return (fit, (laws_from_samples(boot) if len(boot) else None), assessment, float(r.max_observed_flops),
            convention)
