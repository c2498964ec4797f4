"""Plans from a law: :func:`allocate` (a budget), :func:`compute_for_loss`, :func:`plan_for_loss` (a target loss),
:func:`inference_plan` (Sardana et al.) and the per-budget tables (:func:`allocation_table`, :func:`law_allocation_table`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from scaling_pipeline.lib.laws import RD_STAR, RN_STAR, Chinchilla, DataConstrained

from .plan import Plan
from .solve import (_Limits, _cheapest_budget, _check_level, _check_reachable, _efficiency, _inference_solve,
                    _inference_tokens, _intervals, _limits, _loss_of, _params, _positive, _solve_budget)

DEFAULT_BUDGETS = tuple(10.0 ** k for k in range(18, 27))  # 1e18 … 1e26 FLOPs


# --------------------------------------------------------------------------------------------
# Plans


def allocate(law: Chinchilla, compute: float, *, max_params: float | None = None, max_tokens: float | None = None,
             unique_tokens: float | None = None, inference_tokens: float | None = None, rd_star: float = RD_STAR,
             rn_star: float = RN_STAR, samples: Sequence[Chinchilla] | np.ndarray | None = None,
             level: float = 0.95) -> Plan:
    """Loss-minimising ``(N, D)`` for ``compute`` FLOPs with ``C = 6·N·D`` spent exactly.

    Optional caps ``max_params`` (parameters) and ``max_tokens`` (tokens); ``unique_tokens`` switches to the
    data-constrained law (decay constants ``rd_star``, ``rn_star``) and reports ``epochs = D/U``;
    ``inference_tokens`` only adds ``2·N·T_inf`` inference FLOPs to the plan (it does not change the
    loss-optimal split of a fixed training budget). With bootstrap ``samples``, ``ci`` holds percentile
    intervals at ``level`` of each sample law's own optimum (``n_params``, ``n_tokens``, ``loss``).
    Raises ``ValueError`` for a non-positive budget or caps that cannot absorb it.
    """
    c = _positive("compute", compute, "FLOPs")
    lim = _limits(max_params, max_tokens, unique_tokens, rd_star, rn_star)
    lim.check_budget(c)
    t_inf = _inference_tokens(inference_tokens)
    _, p, n_samples, level = _sample_stack(law, samples, level)
    with np.errstate(all="ignore"):
        n, loss = _solve_budget(p, c, lim)
        d = c / (6.0 * n)
        best = p.loss_at_optimum(c)
    n0, d0, l0 = float(n[0, 0]), float(d[0, 0]), float(loss[0, 0])
    ci, used = (_intervals({"n_params": n[1:], "n_tokens": d[1:], "loss": loss[1:]}, level)
                if n_samples else (None, None))
    return Plan(compute=c, n_params=n0, n_tokens=d0, loss=l0, constraint=lim.label(n0, d0),
                efficiency=_efficiency(float(best[0, 0]), l0), kind="budget", unique_tokens=lim.unique_tokens,
                inference_tokens=t_inf, ci=ci, ci_level=level if n_samples else None, ci_samples=used)


def compute_for_loss(law: Chinchilla, target_loss: float) -> float:
    """Closed-form FLOPs at which the unconstrained optimum reaches ``target_loss`` (nats/token):
    ``C = 6·((L - E)/K)^(-(α+β)/(αβ))`` with ``K = A·G^(-α) + B·G^β``."""
    L = _positive("target_loss", target_loss, "nats/token")
    _check_reachable(law, L, _Limits())
    return float(law.compute_for_loss(L))


def plan_for_loss(law: Chinchilla, target_loss: float, *, max_params: float | None = None,
                  max_tokens: float | None = None, unique_tokens: float | None = None, rd_star: float = RD_STAR,
                  rn_star: float = RN_STAR, samples: Sequence[Chinchilla] | np.ndarray | None = None,
                  level: float = 0.95) -> Plan:
    """Cheapest budget (FLOPs) whose loss-optimal plan under the same constraints as :func:`allocate` reaches
    ``target_loss`` (nats/token), found by bisection in ``log C`` (relative precision ~1e-13).

    Raises ``ValueError`` naming ``E`` (and the best achievable loss under the constraints) when the target is
    unreachable. With ``samples``, ``ci`` holds intervals of each sample law's own cheapest plan
    (``n_params``, ``n_tokens``, ``compute``) and of the loss of *this* plan's ``(N, D)`` under each sample
    law (``loss``: will the recommended run reach the target?).
    """
    L = _positive("target_loss", target_loss, "nats/token")
    lim = _limits(max_params, max_tokens, unique_tokens, rd_star, rn_star)
    _check_reachable(law, L, lim)
    _, p, n_samples, level = _sample_stack(law, samples, level)
    with np.errstate(all="ignore"):
        C = _cheapest_budget(p, L, lim)
        n, loss = _solve_budget(p, C, lim)
        d = C / (6.0 * n)
        best = p.loss_at_optimum(C)
        c0, n0, d0, l0 = float(C[0, 0]), float(n[0, 0]), float(d[0, 0]), float(loss[0, 0])
        under_samples = _loss_of(p, n0, d0, lim)
    if not (math.isfinite(c0) and math.isfinite(l0)):
        raise ValueError(f"no finite budget reaches target loss {L:.6g} nats/token with {lim.describe()}")
    ci, used = (_intervals({"n_params": n[1:], "n_tokens": d[1:], "compute": C[1:], "loss": under_samples[1:]},
                           level) if n_samples else (None, None))
    return Plan(compute=c0, n_params=n0, n_tokens=d0, loss=l0, constraint=lim.label(n0, d0),
                efficiency=_efficiency(float(best[0, 0]), l0), kind="target_loss", unique_tokens=lim.unique_tokens,
                target_loss=L, ci=ci, ci_level=level if n_samples else None, ci_samples=used)


def inference_plan(law: Chinchilla, target_loss: float, inference_tokens: float, *,
                   max_params: float | None = None, max_tokens: float | None = None,
                   samples: Sequence[Chinchilla] | np.ndarray | None = None, level: float = 0.95) -> Plan:
    """Inference-aware plan (Sardana et al. 2024): the ``(N, D)`` reaching ``target_loss`` (nats/token) with the
    fewest total FLOPs ``6·N·D + 2·N·inference_tokens``, within optional caps.

    ``reference`` is the cheapest-training plan for the same loss and caps (the Chinchilla-optimal plan when
    uncapped), charged the same inference tokens; ``savings_flops`` = its total minus this plan's (≥ 0).
    ``efficiency`` compares with the unconstrained optimum at this plan's *training* compute. With ``samples``,
    ``ci`` has each sample law's own plan (``n_params``, ``n_tokens``, ``compute``, ``total_flops``) and this
    plan's loss under each sample law (``loss``).
    """
    L = _positive("target_loss", target_loss, "nats/token")
    t_inf = _inference_tokens(inference_tokens)
    if t_inf is None:
        raise ValueError("inference_tokens is required for an inference-aware plan")
    lim = _limits(max_params, max_tokens, None, RD_STAR, RN_STAR)
    _check_reachable(law, L, lim)
    arr, p, n_samples, level = _sample_stack(law, samples, level)
    with np.errstate(all="ignore"):
        n, d = _inference_solve(p, L, t_inf, lim)
        n_ref, d_ref = _inference_solve(Chinchilla.stack(arr[:1]), L, 0.0, lim)
        C = 6.0 * n * d
        total = C + 2.0 * n * t_inf
        n0, d0 = float(n[0, 0]), float(d[0, 0])
        c0 = 6.0 * n0 * d0
        under_samples = p.predict(n0, d0)
        best = float(p.loss_at_optimum(c0)[0, 0])
        nr, dr = float(n_ref[0, 0]), float(d_ref[0, 0])
    if not all(math.isfinite(v) and v > 0 for v in (n0, d0, nr, dr)):
        raise ValueError(f"no inference-aware plan found for target loss {L:.6g} nats/token ({lim.describe()})")
    l0, lr = float(law.predict(n0, d0)), float(law.predict(nr, dr))
    ref = Plan(compute=6.0 * nr * dr, n_params=nr, n_tokens=dr, loss=lr, constraint=lim.label(nr, dr),
               efficiency=_efficiency(float(law.loss_at_optimum(6.0 * nr * dr)), lr), kind="target_loss",
               target_loss=L, inference_tokens=t_inf)
    ci, used = (_intervals({"n_params": n[1:], "n_tokens": d[1:], "compute": C[1:], "total_flops": total[1:],
                            "loss": under_samples[1:]}, level) if n_samples else (None, None))
    return Plan(compute=c0, n_params=n0, n_tokens=d0, loss=l0, constraint=lim.label(n0, d0),
                efficiency=_efficiency(best, l0), kind="inference", target_loss=L, inference_tokens=t_inf,
                reference=ref, ci=ci, ci_level=level if n_samples else None, ci_samples=used)


def allocation_table(law: Chinchilla, budgets, *, samples: Sequence[Chinchilla] | np.ndarray | None = None,
                     level: float = 0.95, max_params: float | None = None, max_tokens: float | None = None,
                     unique_tokens: float | None = None, rd_star: float = RD_STAR,
                     rn_star: float = RN_STAR) -> pd.DataFrame:
    """One row per budget (FLOPs): N*, D*, tokens/param, predicted loss (nats/token), binding constraint and,
    given bootstrap ``samples`` of the law, percentile intervals ``*_lo``/``*_hi`` at ``level`` for N*, D* and
    the loss; then ``efficiency`` (and ``epochs`` with ``unique_tokens``)."""
    has_samples = samples is not None and len(samples) > 0
    rows = []
    for c in budgets:
        p = allocate(law, c, max_params=max_params, max_tokens=max_tokens, unique_tokens=unique_tokens,
                     rd_star=rd_star, rn_star=rn_star, samples=samples if has_samples else None, level=level)
        row: dict[str, Any] = dict(compute=p.compute, n_params=p.n_params, n_tokens=p.n_tokens,
                                   tokens_per_param=p.tokens_per_param, loss=p.loss, constraint=p.constraint)
        if has_samples and p.ci is not None:
            for name in ("n_params", "n_tokens", "loss"):
                row[f"{name}_lo"], row[f"{name}_hi"] = p.ci[name]
        row["efficiency"] = p.efficiency
        if unique_tokens is not None:
            row["epochs"] = p.epochs
        rows.append(row)
    return pd.DataFrame(rows)


def law_allocation_table(law: Chinchilla | DataConstrained, budgets, *,
                         samples: Sequence[Chinchilla] | np.ndarray | None = None, level: float = 0.95,
                         unique_tokens: float | None = None) -> pd.DataFrame:
    """:func:`allocation_table` for a law of any form with an allocation: a :class:`Chinchilla` law as it is
    (``samples``: its bootstrap laws); a :class:`DataConstrained` law through its Chinchilla part with its own
    ``R*_D``, ``R*_N`` and ``unique_tokens`` (tokens) of unique data available (no intervals: no bootstrap)."""
    if isinstance(law, DataConstrained):
        return allocation_table(law.chinchilla, budgets, unique_tokens=unique_tokens, rd_star=law.rd_star,
                                rn_star=law.rn_star)
    if isinstance(law, Chinchilla):
        return allocation_table(law, budgets, samples=samples, level=level)
    raise ValueError(f"form {getattr(law, 'name', type(law).__name__)!r} has no allocation")


def _sample_stack(law: Chinchilla, samples: Sequence[Chinchilla] | np.ndarray | None,
                  level: float) -> tuple[np.ndarray, Chinchilla, int, float]:
    """The law and its bootstrap samples as one parameter array and one stacked law (row 0 = the fit), the
    number of samples, and ``level`` checked when there are samples."""
    arr, n_samples = _params(law, samples)
    return arr, Chinchilla.stack(arr), n_samples, _check_level(level) if n_samples else level
