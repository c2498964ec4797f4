"""The settings file ``scaling-pipeline.toml``: where it is found and how it is read.

Search order (the first that exists is read, no merging): the path given explicitly (CLI ``--settings``,
the resource's ``settings_file``), else ``$SCALING_SETTINGS``, else ``scaling-pipeline.toml`` in the log
root, else in the working directory (the project root). Precedence of a setting: a CLI flag (or the
resource / run config field) > the file > the default (:mod:`scaling_pipeline.lib.settings`).

Layout (every key optional; names as in :mod:`scaling_pipeline.lib.settings`)::

    [clean]                      # min_tokens, min_steps, divergence_nats, dominated_tolerance, smooth_points,
    min_tokens = 1e9             # and the per-family options' defaults:
    hparam_selection = "envelope"  # hparam_selection, param_convention, completion_tolerance
    [fit]                        # loss, delta, bootstrap, seed, level, curve_law_points
    bootstrap = 200
    [report]                     # headline_compute (FLOPs)
    headline_compute = 1e23
    [families.atlas]             # one family's own options
    param_convention = "total"
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from scaling_pipeline.lib.settings import FAMILY_KEYS, SECTIONS, SettingsError, build_settings

SETTINGS_FILE = "scaling-pipeline.toml"


def find_settings_file(explicit: str | os.PathLike | None, logs_dir: str | os.PathLike | None) -> Path | None:
    """The settings file to read (see the module doc for the order), or None. An explicit path or
    ``$SCALING_SETTINGS`` that does not exist is an error (SettingsError naming it)."""
    given = explicit or os.environ.get("SCALING_SETTINGS")
    if given:
        path = Path(given)
        if not path.is_file():
            raise SettingsError(f"settings file {str(path)!r} not found")
        return path
    for folder in ([Path(logs_dir)] if logs_dir else []) + [Path.cwd()]:
        if (folder / SETTINGS_FILE).is_file():
            return folder / SETTINGS_FILE
    return None


def _line_of(text: str, table: str, key: str | None) -> int | None:
    """The line (1-based) of ``key`` in ``[table]`` (or of the table header when ``key`` is None)."""
    current = ""
    for i, line in enumerate(text.splitlines(), 1):
        if m := re.match(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$", line):
            current = ".".join(p.strip().strip('"\'') for p in m.group(1).split("."))
            if key is None and current == table:
                return i
        elif key is not None and current == table and re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return i
    return None


def read_settings_file(path: str | os.PathLike) -> dict[str, Any]:
    """The settings of the file at ``path`` as a layer for :func:`build_settings` (flat names, ``families``).
    A syntax error, an unknown section or key, or a bad value raises SettingsError naming the file, the line
    and key, and what is allowed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {str(path)!r}: {exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None

    def where(table: str, key: str | None = None) -> str:
        line = _line_of(text, table, key)
        return f"{path}" + (f", line {line}" if line else "") + f": [{table}]" + (f" {key}" if key else "")

    layer: dict[str, Any] = {"families": {}}
    for section, body in data.items():
        if section == "families":
            if not isinstance(body, dict) or not all(isinstance(v, dict) for v in body.values()):
                raise SettingsError(f"{where('families')}: expected tables [families.NAME]")
            for name, opts in body.items():
                for key in opts:
                    if key not in FAMILY_KEYS:
                        raise SettingsError(f"{where(f'families.{name}', key)}: unknown key; allowed: "
                                            f"{', '.join(FAMILY_KEYS)}")
                layer["families"][name] = opts
            continue
        if section not in SECTIONS or not isinstance(body, dict):
            raise SettingsError(f"{path}: unknown {'section' if isinstance(body, dict) else 'key'} {section!r}; "
                                f"allowed sections: {', '.join([*SECTIONS, 'families.NAME'])}")
        allowed = [f.name for cls in SECTIONS[section] for f in fields(cls) if "kind" in f.metadata]
        for key, value in body.items():
            if key not in allowed:
                raise SettingsError(f"{where(section, key)}: unknown key; allowed: {', '.join(allowed)}")
            layer[key] = value
    try:
        build_settings(layer)
    except SettingsError as exc:  # "[families['x']: ]key: expected ..., got ..." -> name its line
        m = re.match(r"(?:families\['(.+?)'\]: )?(\w+): (.*)", str(exc), re.S)
        if not m:
            raise SettingsError(f"{path}: {exc}") from None
        family, key, problem = m.groups()
        table = f"families.{family}" if family else next(
            (s for s, classes in SECTIONS.items() for cls in classes for f in fields(cls) if f.name == key), "")
        raise SettingsError(f"{where(table, key)}: {problem}") from None
    return layer
