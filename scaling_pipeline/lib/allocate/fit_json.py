"""Plans for a ``scaling-pipeline fit --json`` dict (the CLI contract): :func:`law_from_fit`, :func:`plans_from_fit`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scaling_pipeline.lib.jsonutil import jsonable
from scaling_pipeline.lib.laws import RD_STAR, RN_STAR, Chinchilla

from .plan import Plan
from .plans import allocate, inference_plan, plan_for_loss


# --------------------------------------------------------------------------------------------
# Fit JSON -> plans (the CLI contract)


def law_from_fit(fit: Mapping[str, Any]) -> Chinchilla:
    """The :class:`Chinchilla` law of a ``scaling-pipeline fit --json`` dict (form must be ``chinchilla``)."""
    if not isinstance(fit, Mapping):
        raise ValueError("fit must be the JSON object printed by 'scaling-pipeline fit --json', "
                         f"got {type(fit).__name__}")
    form = fit.get("form")
    if form != "chinchilla":
        raise ValueError(f"allocation needs a 'chinchilla' fit (L = E + A/N^alpha + B/D^beta), got form {form!r}; "
                         "refit with --form chinchilla (for repeated data, plan with unique_tokens instead)")
    params = fit.get("params")
    if not isinstance(params, Mapping):
        raise ValueError("fit JSON has no 'params' object")
    missing = [k for k in Chinchilla.params if k not in params]
    if missing:
        raise ValueError(f"fit JSON params lack {missing} (has {sorted(params)})")
    vals = {}
    for k in Chinchilla.params:
        v = params[k]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (k == "E" and v < 0) or (k != "E" and v <= 0):
            raise ValueError(f"fit parameter {k} = {v!r} is not usable for planning "
                             f"({'finite and >= 0' if k == 'E' else 'finite and > 0'} required)")
        vals[k] = float(v)
    return Chinchilla(**vals)


def plans_from_fit(fit: Mapping[str, Any], compute: Sequence[float] | None, *, max_params: float | None = None,
                   max_tokens: float | None = None, unique_tokens: float | None = None,
                   inference_tokens: float | None = None, target_loss: float | None = None,
                   samples: Sequence[Chinchilla] | np.ndarray | None = None, level: float = 0.95,
                   rd_star: float | None = None, rn_star: float | None = None) -> dict[str, Any]:
    """Plans for a ``scaling-pipeline fit --json`` dict (what ``scaling-pipeline allocate --json`` prints).

    One ``'budget'`` plan per ``compute`` budget (FLOPs), then, with ``target_loss`` (nats/token), the cheapest
    plan reaching it (``'inference'``-aware when ``inference_tokens`` is given). Returns
    ``{"plans": [Plan.to_dict(), ...], "law": {...}, "notes": [...]}`` (JSON-ready: non-finite -> None).
    ``rd_star``/``rn_star`` default to the fit's own (``params``) when present, else Muennighoff et al.'s.
    Raises ``ValueError`` for a non-chinchilla fit and impossible requests.
    """
    law = law_from_fit(fit)
    budgets = [] if compute is None else [compute] if isinstance(compute, (int, float)) else list(compute)
    if not budgets and target_loss is None:
        raise ValueError("nothing to plan: give at least one compute budget (FLOPs) or a target loss (nats/token)")
    if target_loss is not None and inference_tokens is not None and unique_tokens is not None:
        raise ValueError("inference-aware plans with limited unique data are not supported: drop unique_tokens or "
                         "inference_tokens")
    params = fit.get("params") or {}
    notes: list[str] = []
    rd_src = rn_src = "Muennighoff et al. 2023"
    if rd_star is None:
        rd_star, rd_src = (params["rd_star"], "fit") if params.get("rd_star") is not None else (RD_STAR, rd_src)
    if rn_star is None:
        rn_star, rn_src = (params["rn_star"], "fit") if params.get("rn_star") is not None else (RN_STAR, rn_src)
    n_samples = 0 if samples is None else len(samples)
    plans: list[Plan] = []
    for c in budgets:
        plans.append(allocate(law, c, max_params=max_params, max_tokens=max_tokens, unique_tokens=unique_tokens,
                              inference_tokens=inference_tokens, rd_star=rd_star, rn_star=rn_star,
                              samples=samples if n_samples else None, level=level))
    if target_loss is not None:
        if inference_tokens is not None:
            plans.append(inference_plan(law, target_loss, inference_tokens, max_params=max_params,
                                        max_tokens=max_tokens, samples=samples if n_samples else None, level=level))
        else:
            plans.append(plan_for_loss(law, target_loss, max_params=max_params, max_tokens=max_tokens,
                                       unique_tokens=unique_tokens, rd_star=rd_star, rn_star=rn_star,
                                       samples=samples if n_samples else None, level=level))
    law_dict: dict[str, Any] = {"form": "chinchilla", "E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha,
                                "beta": law.beta, "a": law.a, "b": law.b, "G": law.G}
    if unique_tokens is not None:
        law_dict.update(rd_star=float(rd_star), rn_star=float(rn_star))
        notes.append(f"unique-data plans use the data-constrained law (Muennighoff et al. 2023, Eq. 5) with this "
                     f"fit's E, A, B, alpha, beta and R*_D = {float(rd_star):g} ({rd_src}), "
                     f"R*_N = {float(rn_star):g} ({rn_src}); epochs = n_tokens/unique_tokens")
    if inference_tokens is not None and budgets:
        notes.append("budget plans only add 2·N·inference_tokens inference FLOPs (a fixed training budget's "
                     "loss-optimal split does not depend on inference); the inference-aware optimisation needs "
                     "target_loss")
    if any(p.kind == "inference" for p in plans):
        notes.append("inference-aware plan (Sardana et al. 2024): minimises 6·N·D + 2·N·inference_tokens at the "
                     "target loss; 'chinchilla_optimal' is the cheapest-training plan for the same loss and caps")
    notes.append("efficiency = loss of the unconstrained optimum at the same training compute / plan loss (<= 1)")
    if n_samples:
        notes.append(f"ci: {level:.0%} percentile intervals over {n_samples} bootstrap laws, degenerate ones "
                     "ignored (ci_samples = usable); budget plans: each law's own optimum; target-loss plans: each "
                     "law's own cheapest plan, and 'loss' = the recommended (N, D) evaluated under each law")
        for p in plans:
            if p.ci_samples is not None and p.ci_samples < n_samples:
                notes.append(f"{p.kind} plan at {p.compute:.4g} FLOPs: {n_samples - p.ci_samples} of {n_samples} "
                             "bootstrap laws gave no usable plan (ignored)")
    elif fit.get("ci"):
        notes.append("the fit JSON has marginal parameter intervals ('ci') but no bootstrap samples were given: "
                     "plan intervals need the joint samples (marginal intervals cannot be combined), so none are "
                     "reported")
    for w in (fit.get("diagnostics") or {}).get("warnings") or []:
        notes.append(f"fit warning: {w}")
    return jsonable({"plans": [p.to_dict() for p in plans], "law": law_dict, "notes": notes})
