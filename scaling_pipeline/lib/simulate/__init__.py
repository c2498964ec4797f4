"""Synthetic training ladders with a known truth, for demos, tests and benchmarks.

Every family follows the Chinchilla law ``L(N, D) = E + A/N^alpha + B/D^beta`` (nats/token;
``N`` parameters, ``D`` training tokens). A family's ladder is a grid of model sizes x token
budgets (tokens per parameter) plus an IsoFLOP slice; every run has a learning-rate schedule
(linear warm-up, then by ``SimConfig.schedules``: cosine, WSD, constant with a cool-down or two-stage,
ending at ``final_lr_frac`` of the peak at its own last step; described in the manifest) and logs ~150
of its steps (defaults: cosine only; 7 sizes x 5 budgets + 5 IsoFLOP runs per family; 6 families:
~36k metric rows).

Loss model: each run follows a known Multi-Power Law (``lib.curves.laws.MultiPowerLaw``, Luo et al.
2025) of its per-step LR η (steps ``t``, ``S1(t) = Σ η``)::

    loss(t) = L0 + A·S1(t)^(-alpha) - B·LD(t)

with the loss-drop part (B, C, beta, gamma) shared by the family, ``alpha`` = the family's data
exponent, ``A = B_D·(peak LR / batch tokens)^beta`` (at a constant LR the loss falls like
``B_D/D^beta``) and ``L0`` set so that the loss at the planned last step is exactly ``L(N, D)``: the
final, schedule-complete loss is the truth, while mid-run losses are not scaling points (they sit
above ``L(N, t)`` because the learning rate has not annealed; ``anneal_gap`` sets the drop of a full
decay). Values above ``cap_start`` are squashed smoothly below ``log(vocab_size)`` (the loss of a
uniform guess), which only touches the first logged steps. Train losses get multiplicative
log-normal noise (``train_noise``, three times larger at the start), evaluations (every ~10 % of the
schedule and at the last step) smaller noise (``eval_noise``). Everything is deterministic given the
seed. Runs in flight (``in_flight``, off by default) stop part-way with status 'running'; one per
family can be planted off track (``off_track`` nats above its law); ``Ladder.in_flight`` records them.

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
``killed`` (family 5)    an extra run that stops at ~40 % of its schedule; status 'running' (a run
                         in flight: it gets a forecast, not a point).

Only the grid and IsoFLOP runs are scaling points; the extra runs duplicate grid points and never
give a valid final loss. ``write_demo`` writes a whole log tree (every format when ``fmt='mixed'``)
plus ``truth.json`` and ``faults.json``.
"""

from .demo import MIXED, DemoSummary, write_demo
from .design import DEFAULT_TRUTHS, FAULT_ORDER, RUN_FIELDS, SCHEDULE_FIELDS, SCHEDULES, FamilyTruth, SimConfig
from .ladder import Ladder, simulate_ladder
from .loss import lr_optimum
from .scale import SCALE_FORMATS, ScaleSummary, write_scale_logs

__all__ = ["DEFAULT_TRUTHS", "DemoSummary", "FAULT_ORDER", "FamilyTruth", "Ladder", "MIXED", "RUN_FIELDS",
           "SCALE_FORMATS", "SCHEDULE_FIELDS", "SCHEDULES", "ScaleSummary", "SimConfig", "lr_optimum", "simulate_ladder", "write_demo",
           "write_scale_logs"]
