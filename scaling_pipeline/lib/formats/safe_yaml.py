"""Bounded YAML loading: every YAML file a reader opens (``runs.yaml``, W&B and TensorBoard
``config.yaml``/``hparams.yaml``, MLflow ``meta.yaml``) goes through :func:`load_yaml`.

An alias (``*a``) refers to an anchored node (``&a``) instead of copying it, so a few hundred bytes
can describe a billion nodes (the "billion laughs"), which whatever walks the data later expands:
merge keys (``<<: *a``) while the objects are built, the JSON of a run's ``extra`` after. So the
document is composed in Python from libyaml's events, counting as it goes, and refused at the first
limit crossed, before any Python object is built:

* MAX_YAML_BYTES of file (checked before parsing),
* MAX_YAML_ALIASES aliases,
* MAX_YAML_NODES nodes with every alias expanded (an alias inside its own anchored node, which makes
  the document infinite, is refused too),
* MAX_YAML_DEPTH levels of nesting.

Only the standard YAML types are built (SafeConstructor).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, Event
from yaml.resolver import Resolver

from .common import excerpt, shorten
from .text import size_text

MAX_YAML_BYTES = 16 << 20
MAX_YAML_ALIASES = 10_000
MAX_YAML_NODES = 250_000  # a manifest run is ~10-30 nodes
MAX_YAML_DEPTH = 100

try:
    from yaml.cyaml import CParser as _Parser  # libyaml's scanner and parser
except ImportError:  # PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: bytes) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class YamlLimitError(ValueError):
    """A YAML file over one of the limits of this module."""


def _where(event: Event) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}"


class _BoundedComposer(Composer):
    """PyYAML's composer, counting nodes (aliases expanded), aliases and depth as it composes."""

    def __init__(self) -> None:
        super().__init__()
        self.expanded = 0  # nodes composed so far, every alias counted as the nodes it stands for
        self.aliases = 0
        self.depth = 0
        self.sizes: dict[str, int] = {}  # anchor -> expanded nodes of its node, once composed

    def _grow(self, nodes: int, event: Event) -> None:
        self.expanded += nodes
        if self.expanded > MAX_YAML_NODES:
            raise YamlLimitError(
                f"expected YAML of at most {MAX_YAML_NODES} nodes with aliases expanded, got more by "
                f"{_where(event)} (aliases that multiply nodes, as in a 'billion laughs' file?)"
            )

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise YamlLimitError(
                    f"expected YAML with at most {MAX_YAML_ALIASES} aliases, got more by {_where(event)}"
                )
            if event.anchor in self.anchors and event.anchor not in self.sizes:
                raise YamlLimitError(
                    f"expected YAML without recursive aliases, got alias {shorten(event.anchor)} inside "
                    f"its own anchored node at {_where(event)}"
                )
            self._grow(self.sizes.get(event.anchor, 0), event)  # an undefined alias: the composer says so
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_YAML_DEPTH:
            raise YamlLimitError(f"expected YAML nested at most {MAX_YAML_DEPTH} levels deep, got more at "
                                 f"{_where(event)}")
        start = self.expanded
        self._grow(1, event)
        node = super().compose_node(parent, index)
        self.depth -= 1
        if event.anchor is not None:
            self.sizes[event.anchor] = self.expanded - start
        return node


class _Loader(_BoundedComposer, _Parser, SafeConstructor, Resolver):
    """libyaml's parser (when present), the bounded composer, PyYAML's safe constructor."""

    def __init__(self, stream: bytes) -> None:
        _Parser.__init__(self, stream)
        _BoundedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


def _message(exc: yaml.YAMLError) -> str:
    """The parser's complaint (its quotes of the input escaped and capped) and where, on one line."""
    if isinstance(exc, yaml.reader.ReaderError):  # a byte that cannot start text
        return f"character #x{exc.character:04x} at byte {exc.position}: {exc.reason}"
    if not isinstance(exc, yaml.MarkedYAMLError):
        return excerpt(" ".join(str(exc).split()))
    said = " ".join(excerpt(" ".join(str(part).split())) for part in (exc.context, exc.problem) if part)
    mark = exc.problem_mark or exc.context_mark
    return f"{said} (line {mark.line + 1}, column {mark.column + 1})" if mark else said


def load_yaml(path: Path) -> Any:
    """The one YAML document of ``path`` as Python objects (None for an empty file). ValueError,
    saying why, for a file that is not YAML or is over a limit of this module."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        data = handle.read(min(size, MAX_YAML_BYTES) + 1)  # read(n) sets n bytes aside: not the cap
    if len(data) > MAX_YAML_BYTES:
        raise YamlLimitError(f"expected a YAML file of at most {size_text(MAX_YAML_BYTES)}, got {size_text(size)}")
    loader = _Loader(data)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ValueError(f"expected YAML, got: {_message(exc)}") from exc
    finally:
        loader.dispose()
