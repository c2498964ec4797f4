"""Scaling-law forms: one class per form, all in the registry :data:`FORMS`.

Units everywhere: ``N`` = parameters, ``D`` = training tokens, ``U`` = unique tokens, ``C`` = training
compute in FLOPs (``C = 6·N·D``), losses in nats/token. :mod:`.base` defines what a form is
(:class:`Law`); each other module of this package holds one form or a small group and registers it with
:func:`register`. Every module here is imported below, so a new form is one new module: its class appears
in :data:`FORMS`, in ``scaling-pipeline fit --form`` and wherever forms are listed.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Law
from .registry import FORMS, get, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from .chinchilla import Chinchilla  # noqa: E402
from .data_constrained import MUENNIGHOFF, RD_STAR, RN_STAR, DataConstrained  # noqa: E402
from .kaplan import Kaplan  # noqa: E402
from .one_variable import PowerLaw, Saturating  # noqa: E402

__all__ = ["FORMS", "Law", "get", "register", "Chinchilla", "DataConstrained", "MUENNIGHOFF", "RD_STAR", "RN_STAR",
           "Kaplan", "PowerLaw", "Saturating"]
