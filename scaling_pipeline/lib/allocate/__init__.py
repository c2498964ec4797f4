"""Compute-optimal allocation of a FLOP budget between parameters and tokens (pure numpy).

Units everywhere: ``C`` training compute in FLOPs (``C = 6·N·D``), ``N`` parameters, ``D`` training
tokens, ``U`` unique tokens, ``T_inf`` inference tokens (``2·N`` FLOPs each), losses in nats/token.

* **Unconstrained** (Hoffmann et al. 2022): ``L(N, D) = E + A/N^α + B/D^β`` along ``C = 6·N·D`` has
  the closed-form optimum ``N* = G·(C/6)^a``, ``D* = (C/6)/N*`` with ``a = β/(α+β)`` and
  ``G = (αA/(βB))^(1/(α+β))``; the loss there is ``E + K·(C/6)^(-αβ/(α+β))``,
  ``K = A·G^(-α) + B·G^β``.
* **Caps** on parameters / tokens: the loss is convex in ``log N`` along the iso-FLOP line, so the
  optimum is ``N*`` clipped into the feasible interval; the budget is still spent exactly.
* **Limited unique data** ``U``: the data-constrained law of Muennighoff et al. (2023, Eq. 5) with the
  fit's ``E, A, B, α, β`` and the published decay constants ``R*_D``, ``R*_N``, minimised over
  ``log N`` numerically (dense grid + golden section). The unique tokens actually seen are
  ``U_D = min(U, D)`` (paper's definition), so with ``U ≥ D*`` the plan is the unconstrained one.
* **Target loss**: the cheapest budget whose (constrained) optimum reaches it (bisection in ``log C``;
  the optimal loss is non-increasing in ``C``).
* **Inference-aware** (Sardana et al. 2024): minimise ``6·N·D + 2·N·T_inf`` subject to
  ``L(N, D) = L_target``. The loss budget ``L - E`` is split as ``A/N^α = φ·(L - E)``,
  ``B/D^β = (1 - φ)·(L - E)``; the search runs over ``logit φ``, which stays well conditioned both
  near the Chinchilla split ``φ = β/(α+β)`` and for tiny models trained on huge data.

Every plan reports an **efficiency** = loss of the unconstrained optimum for the same training compute /
loss of the plan (≤ 1; 1 when nothing binds). Every plan function accepts bootstrap ``samples``
(a list of :class:`Chinchilla` or an ``(S, 5)`` array of ``E, A, B, alpha, beta``) and returns percentile
intervals at ``level``; all laws are solved together, vectorised, and degenerate samples (NaN/inf
results) are ignored.

Modules: :mod:`.plan` (:class:`Plan`), :mod:`.solve` (the stacked numerics), :mod:`.plans` (plans from a law),
:mod:`.fit_json` (plans from a fit JSON), :mod:`.reference` (Hoffmann et al.'s law and reference table).
"""

from __future__ import annotations

from .fit_json import law_from_fit, plans_from_fit
from .plan import Plan
from .plans import (DEFAULT_BUDGETS, allocate, allocation_table, compute_for_loss, inference_plan, law_allocation_table,
                    plan_for_loss)
from .reference import BESIROGLU, HOFFMANN, chinchilla_reference
from .solve import laws_from_samples

__all__ = [
    "DEFAULT_BUDGETS",
    "BESIROGLU",
    "HOFFMANN",
    "Plan",
    "allocate",
    "compute_for_loss",
    "plan_for_loss",
    "inference_plan",
    "allocation_table",
    "law_allocation_table",
    "law_from_fit",
    "laws_from_samples",
    "plans_from_fit",
    "chinchilla_reference",
]
