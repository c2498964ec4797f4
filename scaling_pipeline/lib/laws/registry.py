"""The registry of law forms: :data:`FORMS` (name -> class), filled by :func:`register`."""

from __future__ import annotations

from typing import TypeVar

from .base import Law

__all__ = ["FORMS", "get", "register"]

FORMS: dict[str, type[Law]] = {}
"""Every form by name, in registration order (the modules of this package, alphabetically)."""

L = TypeVar("L", bound=type[Law])


def register(cls: L) -> L:
    """Class decorator: add a form to :data:`FORMS` under ``cls.name``."""
    if cls.name in FORMS:
        raise ValueError(f"law form {cls.name!r} is registered twice ({FORMS[cls.name].__name__}, {cls.__name__})")
    FORMS[cls.name] = cls
    return cls


def get(name: str) -> type[Law]:
    """The form called ``name``; ``ValueError`` naming the known forms otherwise."""
    try:
        return FORMS[name]
    except KeyError:
        raise ValueError(f"form must be one of {sorted(FORMS)}, got {name!r}") from None
