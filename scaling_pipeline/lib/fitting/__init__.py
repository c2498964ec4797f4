"""Fitting scaling laws to training runs (pure numpy/scipy).

Units: ``N`` parameters, ``D`` training tokens, ``U`` unique tokens, ``C`` FLOPs (``C = 6·N·D``),
``L`` final loss in nats/token. Bad input raises :class:`~.common.FitError` (a ``ValueError``)
with a message meant for people.

Modules (import from them directly; each law class of :mod:`scaling_pipeline.lib.laws` reaches its fitter):

* :mod:`.common`: :class:`FitResult`, :class:`FitError`, input checks shared by the fitters;
* :mod:`.chinchilla`: :func:`fit_chinchilla` (the Epoch AI protocol) and :func:`chinchilla_objective`,
  built on :mod:`.objective` (objective, gradient and Hessian in centred log coordinates) and
  :mod:`.search` (the global search: variable-projection profile over the exponents, then polish);
* :mod:`.joint`: :func:`fit_chinchilla_joint`, several families with shared exponents;
* :mod:`.resample`: :func:`bootstrap_chinchilla`, :func:`backtest` (any form) and :func:`backtest_chinchilla`;
* :mod:`.compare`: :func:`compare_forms`, every registered form fitted to a family and scored alike;
* :mod:`.data_constrained`: :func:`fit_data_constrained` (Muennighoff et al. 2023);
* :mod:`.one_variable`: :func:`fit_power_law`, :func:`fit_saturating`, :func:`fit_kaplan`;
* :mod:`.log_linear`: :func:`fit_log_linear`, least squares of ``log y`` on several ``log x`` (multiplicative
  power laws), refusing inputs that are power-law functions of each other;
* :mod:`.isoflop`: :func:`isoflop_approach2` (Hoffmann et al. Approach 2) and its per-budget :func:`parabola_vertex`;
* :mod:`.csv`: :func:`fit_csv`, the front end of ``scaling-pipeline fit``.
"""
