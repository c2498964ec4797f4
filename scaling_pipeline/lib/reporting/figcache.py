"""Figures are not redrawn when nothing they show has changed.

``FigureCache(root).call(draw, *args, out=folder)`` runs ``draw(*args, folder)`` (a function that draws figures
into ``folder`` and returns text, e.g. a family's section of the page) and stores what it returned and the files it
wrote under ``root/.figure-cache/<key>/``. The key is a SHA-256 over the function's name, the content of its
arguments (:func:`fingerprint`: DataFrames, arrays, dataclasses, dicts ... by value) and the code version
(:func:`code_version`: every source file of ``scaling_pipeline.lib`` and the plotting libraries' versions). A later
call with the same key copies the stored files into the new folder and returns the stored value without drawing:
the output is byte-identical to a fresh draw. ``draw`` must depend only on its arguments and the code (not on the
clock or on files it reads); an argument that cannot be fingerprinted (e.g. a connection) means no caching.
:meth:`FigureCache.prune` drops the entries the last render did not use, so the cache holds one report's worth.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import functools
import hashlib
import importlib.metadata
import json
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CACHE_DIR = ".figure-cache"
_LIB = Path(__file__).resolve().parents[1]  # scaling_pipeline/lib: the code every figure depends on
_LIBRARIES = ("matplotlib", "numpy", "pandas")
_STALE_PARTIAL_SECONDS = 3600.0


def fingerprint(*objs: Any) -> str:
    """SHA-256 (hex) of the content of ``objs``; equal content gives the same value in any process.
    Raises TypeError for an object it cannot read (neither a known type nor picklable)."""
    h = hashlib.sha256()
    for obj in objs:
        _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj: Any) -> None:
    """Type tag, then the value; lengths before variable parts, so no two values give the same byte stream."""
    def put(tag: bytes, data: bytes = b"") -> None:
        h.update(tag + len(data).to_bytes(8, "little") + data)

    if obj is None:
        put(b"N")
    elif isinstance(obj, (bool, np.bool_)):
        put(b"b", b"1" if obj else b"0")
    elif isinstance(obj, (int, np.integer)):
        put(b"i", str(int(obj)).encode())
    elif isinstance(obj, (float, np.floating)):
        put(b"f", float(obj).hex().encode())
    elif isinstance(obj, str):
        put(b"s", obj.encode("utf-8", "surrogatepass"))
    elif isinstance(obj, bytes):
        put(b"y", obj)
    elif isinstance(obj, enum.Enum):
        put(b"e", f"{type(obj).__qualname__}.{obj.name}".encode())
    elif obj is pd.NaT:
        put(b"T")
    elif isinstance(obj, (dt.date, dt.time, pd.Timestamp)):
        put(b"t", obj.isoformat().encode())
    elif isinstance(obj, Path):
        put(b"p", str(obj).encode("utf-8", "surrogatepass"))
    elif isinstance(obj, np.ndarray):
        _feed_array(h, put, obj)
    elif isinstance(obj, pd.DataFrame):
        put(b"D", str(obj.shape).encode())
        _feed(h, obj.index)
        for i, name in enumerate(obj.columns):
            _feed(h, name)
            _feed(h, obj.iloc[:, i].array)
    elif isinstance(obj, (pd.Series, pd.Index)):
        put(b"S" if isinstance(obj, pd.Series) else b"I")
        _feed(h, obj.name)
        if isinstance(obj, pd.Series):
            _feed(h, obj.index)
        _feed(h, obj.array)
    elif isinstance(obj, pd.api.extensions.ExtensionArray):
        put(b"x", str(obj.dtype).encode())
        _feed_array(h, put, obj.to_numpy())
    elif isinstance(obj, Mapping):
        put(b"d", str(len(obj)).encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        put(b"l" if isinstance(obj, list) else b"u", str(len(obj)).encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, (set, frozenset)):
        put(b"z", "".join(sorted(fingerprint(v) for v in obj)).encode())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        put(b"c", f"{type(obj).__module__}.{type(obj).__qualname__}".encode())
        for f in dataclasses.fields(obj):
            _feed(h, f.name)
            _feed(h, getattr(obj, f.name))
    else:  # anything else by its pickle: equal bytes mean equal values (unequal bytes at worst redraw)
        try:
            put(b"P", f"{type(obj).__module__}.{type(obj).__qualname__}".encode()
                + pickle.dumps(obj, protocol=4))
        except Exception as exc:
            raise TypeError(f"cannot fingerprint a {type(obj).__qualname__}: {exc}") from exc


def _feed_array(h, put: Callable[..., None], a: np.ndarray) -> None:
    put(b"a", f"{a.dtype.str}{a.shape}".encode())
    if a.dtype.kind in "biufcmM":
        h.update(np.ascontiguousarray(a).tobytes())
    else:  # objects, strings: element by element
        for v in a.ravel().tolist():
            _feed(h, v)


@functools.cache
def code_version() -> str:
    """SHA-256 over every ``*.py`` of ``scaling_pipeline.lib`` and the versions of the plotting libraries."""
    h = hashlib.sha256()
    for path in sorted(_LIB.rglob("*.py")):
        h.update(path.relative_to(_LIB).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in _LIBRARIES:
        h.update(f"{dist}=={importlib.metadata.version(dist)}\0".encode())
    return h.hexdigest()


class FigureCache:
    """Stored results of drawing calls under ``root/.figure-cache`` (``root`` None: every call draws, nothing is
    stored); ``drawn`` / ``reused`` count the calls."""

    def __init__(self, root: Path | None):
        self.dir = Path(root) / CACHE_DIR if root is not None else None
        self.drawn = 0
        self.reused = 0
        self._used: set[str] = set()

    def call(self, draw: Callable[..., Any], *args: Any, out: Path,
             around: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> Any:
        """``draw(*args, out)`` inside ``around()`` (e.g. the plot style), or what an earlier call with equal
        arguments returned and wrote."""
        out = Path(out)
        key = None
        if self.dir is not None:
            with contextlib.suppress(TypeError):  # an argument it cannot read: drawn, not stored
                key = fingerprint(f"{draw.__module__}.{draw.__qualname__}", args, code_version())
        if key is not None:
            self._used.add(key)
            found = self._restore(self.dir / key, out)
            if found is not None:
                self.reused += 1
                return found[0]
        before = _files(out) if key is not None else {}
        with around():
            value = draw(*args, out)
        self.drawn += 1
        if key is not None:
            after = _files(out)
            self._store(key, value, out, [rel for rel, stat in after.items() if before.get(rel) != stat])
        return value

    def prune(self) -> None:
        """Remove the entries no call of this cache used, and work folders of stores that died long ago."""
        if self.dir is None or not self.dir.is_dir():
            return
        for child in self.dir.iterdir():
            if child.name.startswith("."):  # another store's work folder: only when long abandoned
                with contextlib.suppress(OSError):
                    if time.time() - child.stat().st_mtime > _STALE_PARTIAL_SECONDS:
                        shutil.rmtree(child, ignore_errors=True)
            elif child.name not in self._used:
                shutil.rmtree(child, ignore_errors=True)

    def _restore(self, entry: Path, out: Path) -> tuple[Any] | None:
        """Copy the entry's files into ``out`` and return (its value,), or None when absent or unreadable."""
        try:
            stored = json.loads((entry / "value.json").read_text(encoding="utf-8"))
            files = entry / "files"
            for rel in stored["files"]:
                dest = out / rel
                if not dest.resolve().is_relative_to(out.resolve()):
                    return None
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(files / rel, dest)
            return (tuple(stored["value"]) if stored["tuple"] else stored["value"],)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, key: str, value: Any, out: Path, written: list[str]) -> None:
        """Write the entry in a hidden folder and rename it into place (a reader never sees half of one).
        A value that is not JSON (str, numbers, lists/tuples of them) is not stored."""
        try:
            text = json.dumps({"value": value, "tuple": isinstance(value, tuple), "files": sorted(written)})
        except (TypeError, ValueError):
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=self.dir))
        except OSError:
            return
        try:
            for rel in written:
                (tmp / "files" / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out / rel, tmp / "files" / rel)
            (tmp / "value.json").write_text(text, encoding="utf-8")
            os.rename(tmp, self.dir / key)
        except OSError:  # e.g. a concurrent render stored the same key first: keep theirs
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every file under ``folder``, by path relative to it."""
    out = {}
    for path in folder.rglob("*"):
        if path.is_file():
            st = path.stat()
            out[path.relative_to(folder).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out
