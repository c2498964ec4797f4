"""Synthetic training ladders with a known truth, for demos, tests and benchmarks.

Every family follows the Chinchilla law ``L(N, D) = E + A/N^alpha + B/D^beta`` (nats/token;
``N`` parameters, ``D`` training tokens). A family's ladder is a grid of model sizes x token
budgets (tokens per parameter) plus an IsoFLOP slice; every run has a cosine schedule (linear
warm-up, decay to ``final_lr_frac`` of the peak at its own last step) and logs ~150 of its
steps (defaults: 7 sizes x 5 budgets + 5 IsoFLOP runs per family; 6 families: ~36k metric rows).

Loss model of a run planned for ``D`` tokens, at a step that has seen ``t`` tokens::

    loss(t) = L(N, t) + anneal_gap * (L(N, t) - E) * a(t)

where ``a`` is the part of the cosine decay still ahead (1 during warm-up and at the peak, 0 at
the last step): the final, schedule-complete loss is exactly ``L(N, D)``, while mid-run losses sit
above ``L(N, t)`` because the learning rate has not annealed (they are not scaling points). Values
above ``cap_start`` are squashed smoothly below ``log(vocab_size)`` (the loss of a uniform guess),
which only touches the first logged steps. Train losses get multiplicative log-normal noise
(``train_noise``, three times larger at the start), evaluations (every ~10 % of the schedule and at
the last step) smaller noise (``eval_noise``). Everything is deterministic given the seed.

Learning-rate sweeps (``lr_sweep``, off by default): every grid point is trained at several peak
learning rates, and a run at peak LR ``lr`` loses ``lr_penalty * ln(lr / LR*(N))**2`` nats over its
whole curve, where ``LR*(N) = c * N**-gamma`` (``lr_law``) is the known optimal learning rate: its
final loss is ``L(N, D)`` plus that penalty.

Deliberate faults (:func:`simulate_ladder` records them in ``Ladder.faults``; fault ``j`` lands in
family ``j % n_families``, so in distinct families when there are at least 6):

``bad_row`` (family 0)   a grid run; :func:`write_demo` replaces one row's train loss with ``abc``.
``truncated`` (family 1) an extra run (duplicate of a grid point); :func:`write_demo` cuts its
                         metrics file in the middle of a line, so on disk it stops at ~60 %.
``resumed`` (family 2)   a grid run killed at ~60 % and resumed from its ~50 % checkpoint: the steps
                         in between are logged twice, the second copy later in wall time (the
                         first line after the resume has a slightly higher train loss).
``diverged`` (family 3)  an extra run at 4x the learning rate: loss spikes, then NaN/inf; the
                         trainer stops a few logged steps later; status 'diverged'.
``diverged_silent`` (4)  the same at 6x, but it logs NaN/inf up to its last step; status
                         'completed' (the status alone does not flag it).
``killed`` (family 5)    an extra run that stops at ~40 % of its schedule; status 'running'.

Only the grid and IsoFLOP runs are scaling points; the extra runs duplicate grid points and never
give a valid final loss. ``write_demo`` writes a whole log tree (every format when ``fmt='mixed'``)
plus ``truth.json`` and ``faults.json``.
"""

from .demo import MIXED, DemoSummary, write_demo
from .design import DEFAULT_TRUTHS, FAULT_ORDER, RUN_FIELDS, FamilyTruth, SimConfig
from .ladder import Ladder, simulate_ladder
from .loss import lr_optimum
from .scale import SCALE_FORMATS, ScaleSummary, write_scale_logs

__all__ = ["DEFAULT_TRUTHS", "DemoSummary", "FAULT_ORDER", "FamilyTruth", "Ladder", "MIXED", "RUN_FIELDS",
           "SCALE_FORMATS", "ScaleSummary", "SimConfig", "lr_optimum", "simulate_ladder", "write_demo",
           "write_scale_logs"]
