"""The result of every allocation: :class:`Plan` (units: FLOPs, parameters, tokens, nats/token)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Plan"]


@dataclass(frozen=True)
class Plan:
    """One allocation: ``compute`` training FLOPs split into ``n_params`` parameters × ``n_tokens`` tokens.

    ``loss`` is the predicted loss (nats/token); ``constraint`` names what binds (``'none'``,
    ``'max_params'``, ``'max_tokens'``, ``'unique_tokens'``, joined by ``+``); ``efficiency`` is the
    loss of the unconstrained optimum at the same ``compute`` divided by ``loss`` (≤ 1). ``kind`` is
    ``'budget'`` (given compute), ``'target_loss'`` (cheapest compute reaching ``target_loss``) or
    ``'inference'`` (cheapest training + inference FLOPs, with ``reference`` = the cheapest-training plan
    for the same loss). ``ci`` maps a quantity to a bootstrap percentile interval at ``ci_level`` from
    ``ci_samples`` usable samples.
    """

    compute: float
    n_params: float
    n_tokens: float
    loss: float
    constraint: str
    efficiency: float = 1.0
    kind: str = "budget"
    unique_tokens: float | None = None
    target_loss: float | None = None
    inference_tokens: float | None = None
    reference: Plan | None = None
    ci: Mapping[str, tuple[float, float]] | None = None
    ci_level: float | None = None
    ci_samples: int | None = None

    @property
    def tokens_per_param(self) -> float:
        return self.n_tokens / self.n_params

    @property
    def epochs(self) -> float | None:
        """Passes over the unique data, ``D/U`` (only with ``unique_tokens``; < 1: not all of it is used)."""
        return None if self.unique_tokens is None else self.n_tokens / self.unique_tokens

    @property
    def inference_flops(self) -> float | None:
        """``2·N·T_inf`` FLOPs (only with ``inference_tokens``)."""
        return None if self.inference_tokens is None else 2.0 * self.n_params * self.inference_tokens

    @property
    def total_flops(self) -> float | None:
        """Training + inference FLOPs (only with ``inference_tokens``)."""
        inf = self.inference_flops
        return None if inf is None else self.compute + inf

    @property
    def savings_flops(self) -> float | None:
        """Total FLOPs saved against ``reference`` (inference-aware plans)."""
        if self.reference is None or self.total_flops is None or self.reference.total_flops is None:
            return None
        return self.reference.total_flops - self.total_flops

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the always-present keys, then the ones that apply to this kind of plan."""
        out: dict[str, Any] = {
            "kind": self.kind, "compute": self.compute, "n_params": self.n_params, "n_tokens": self.n_tokens,
            "tokens_per_param": self.tokens_per_param, "loss": self.loss, "constraint": self.constraint,
            "efficiency": self.efficiency,
        }
        if self.unique_tokens is not None:
            out.update(unique_tokens=self.unique_tokens, epochs=self.epochs)
        if self.target_loss is not None:
            out["target_loss"] = self.target_loss
        if self.inference_tokens is not None:
            out.update(inference_tokens=self.inference_tokens, inference_flops=self.inference_flops,
                       total_flops=self.total_flops)
        if self.reference is not None:
            ref = self.reference
            out["chinchilla_optimal"] = {
                "compute": ref.compute, "n_params": ref.n_params, "n_tokens": ref.n_tokens,
                "tokens_per_param": ref.tokens_per_param, "loss": ref.loss, "constraint": ref.constraint,
                "inference_flops": ref.inference_flops, "total_flops": ref.total_flops,
            }
            out["savings_flops"] = self.savings_flops
            out["savings_fraction"] = self.savings_flops / ref.total_flops if ref.total_flops else None
        if self.ci is not None:
            out["ci"] = {k: [lo, hi] for k, (lo, hi) in self.ci.items()}
            out["ci_level"] = self.ci_level
            out["ci_samples"] = self.ci_samples
        return out

