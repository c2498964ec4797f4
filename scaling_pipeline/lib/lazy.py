"""Modules imported at their first use: a heavy library that only some runs need (matplotlib when no figure is
reused from the cache) costs nothing to the processes that never touch it."""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for the module ``name``: the first attribute read runs ``setup()`` (once), imports the module and
    reads the attribute from it."""

    def __init__(self, name: str, setup: Callable[[], None] | None = None):
        super().__init__(name)
        self._setup = setup

    def __getattr__(self, attr: str) -> Any:  # only for attributes this stand-in does not have itself
        if self._setup is not None:
            setup, self._setup = self._setup, None
            setup()
        return getattr(importlib.import_module(self.__name__), attr)
