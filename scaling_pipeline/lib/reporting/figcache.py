"""Figures are not redrawn when nothing they show has changed.

A figure function ``draw(subject, out, *args)`` (``subject``: a report view such as a family, or a list of them)
declares the attributes of its subject it reads with :func:`cached_figure` (it draws into ``out`` and returns text,
e.g. the PNG's base64 and a caption). Inside :meth:`FigureCache.active`, a call is keyed by a SHA-256 over the
function's name, those attributes' values and ``args`` (:func:`fingerprint`: DataFrames, arrays, dataclasses,
dicts ... by content) and the code version (:func:`code_version`: every source file of ``scaling_pipeline.lib`` and
the plotting libraries' versions); what it returned and the files it wrote are stored under
``root/.figure-cache/<key>/``. A later call with the same key copies the stored files into its folder and returns
the stored value without drawing: the output is byte-identical to a fresh draw. So a family whose fit changed
redraws its fit figures but not, e.g., its learning-rate figures. ``draw`` must depend only on its arguments and
the code (not on the clock or on files it reads); it sees its subject through a view that records reads of
undeclared attributes: such a call is drawn correctly but not stored (and warns), so a missing declaration never
gives a stale figure. Without an active cache every call draws. :meth:`FigureCache.prune` drops the entries the
last render did not use, so the cache holds one report's worth.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import enum
import functools
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling_pipeline.lib import digest

CACHE_DIR = ".figure-cache"
_STALE_PARTIAL_SECONDS = 3600.0
_ACTIVE: contextvars.ContextVar[FigureCache | None] = contextvars.ContextVar("figure_cache", default=None)


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
        return
    values = a.ravel().tolist()
    if all(type(v) is str for v in values):  # strings (names, run ids): their lengths, then their bytes
        data = [v.encode("utf-8", "surrogatepass") for v in values]
        put(b"A", np.array([len(d) for d in data], np.int64).tobytes() + b"".join(data))
        return
    for v in values:  # other objects: element by element
        _feed(h, v)


def code_version() -> str:
    """The library's code and the plotting libraries' versions (:func:`scaling_pipeline.lib.digest.code_version`)."""
    return digest.code_version("matplotlib")


class FigureCache:
    """Stored results of figure calls under ``root/.figure-cache`` (``root`` None: every call draws, nothing is
    stored); ``drawn`` / ``reused`` count the figure calls."""

    def __init__(self, root: Path | None):
        self.dir = Path(root) / CACHE_DIR if root is not None else None
        self.drawn = 0
        self.reused = 0
        self._used: set[str] = set()
        self._around: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        self._within: list[set[str]] = []  # the keys used inside each call being drawn, innermost last

    @contextlib.contextmanager
    def active(self, around: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        """Figure calls inside the block go through this cache; each draw runs inside ``around()`` (e.g. the plot
        style, entered only when something is drawn)."""
        self._around = around
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)
            self._around = contextlib.nullcontext

    def figure(self, draw: Callable[..., Any], reads: tuple[str, ...] | None, subject: Any, out: Path,
               *args: Any) -> Any:
        """``draw(view of subject, out, *args)``, or what an earlier call with equal ``reads`` attributes of
        ``subject`` (``reads`` None: a part of the page keyed on the whole subject, whose figure calls are counted,
        not the part), equal ``args`` and the same code returned and wrote."""
        out = Path(out)
        key = None
        if self.dir is not None:
            with contextlib.suppress(TypeError):  # a value it cannot read: drawn, not stored
                key = fingerprint(f"{draw.__module__}.{draw.__qualname__}", _declared(subject, reads), args,
                                  code_version())
        if key is not None:
            for within in self._within:
                within.add(key)
            self._used.add(key)
            found = self._restore(self.dir / key, out)
            if found is not None:
                value, uses = found
                self._used.update(uses)  # the figures of a reused part stay in the cache
                for within in self._within:
                    within.update(uses)
                self.reused += len(uses) if reads is None else 1
                return value
        before = _files(out) if key is not None else {}
        stray: set[str] = set()
        uses: set[str] = set()
        self._within.append(uses)
        try:
            with self._around() if reads is not None else contextlib.nullcontext():
                value = draw(_view(subject, reads, stray), out, *args)
        finally:
            self._within.pop()
        self.drawn += reads is not None
        if stray:
            warnings.warn(f"{draw.__qualname__} read {sorted(stray)}, not among its declared inputs {list(reads)}: "
                          "drawn, not cached", RuntimeWarning, stacklevel=3)
        elif key is not None:
            after = _files(out)
            self._store(key, value, out, [rel for rel, stat in after.items() if before.get(rel) != stat], uses)
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

    def _restore(self, entry: Path, out: Path) -> tuple[Any, list[str]] | None:
        """Copy the entry's files into ``out`` and return (its value, the keys of the figure calls inside it), or
        None when absent or unreadable."""
        try:
            stored = json.loads((entry / "value.json").read_text(encoding="utf-8"))
            files = entry / "files"
            for rel in stored["files"]:
                dest = out / rel
                if not dest.resolve().is_relative_to(out.resolve()):
                    return None
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(files / rel, dest)
            return (tuple(stored["value"]) if stored["tuple"] else stored["value"]), list(stored["uses"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, key: str, value: Any, out: Path, written: list[str], uses: set[str]) -> None:
        """Write the entry in a hidden folder and rename it into place (a reader never sees half of one).
        A value that is not JSON (str, numbers, lists/tuples of them) is not stored."""
        try:
            text = json.dumps({"value": value, "tuple": isinstance(value, tuple), "files": sorted(written),
                               "uses": sorted(uses)})
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


def figure_inputs(*reads: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function of a subject as reading only the attributes ``reads`` of it (``fn.reads``; see
    :func:`figure_call`)."""
    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.reads = reads
        return fn
    return mark


def cached_figure(*reads: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a figure function ``draw(subject, out, *args)`` that reads only the attributes ``reads`` of its
    subject (a view, or a list of views): its calls go through :func:`figure_call`."""
    def decorate(draw: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(draw)
        def call(subject: Any, out: Path, *args: Any) -> Any:
            return figure_call(draw, reads, subject, out, *args)

        call.reads = reads
        return call
    return decorate


def figure_call(draw: Callable[..., Any], reads: tuple[str, ...] | None, subject: Any, out: Path, *args: Any) -> Any:
    """``draw(subject, out, *args)`` through the active cache (:meth:`FigureCache.active`), else drawn."""
    cache = _ACTIVE.get()
    return draw(subject, out, *args) if cache is None else cache.figure(draw, reads, subject, out, *args)


def _declared(subject: Any, reads: tuple[str, ...] | None) -> Any:
    """The values of the attributes ``reads`` of ``subject`` (of each, for a list), by name; None: the subject."""
    if reads is None:
        return subject
    if isinstance(subject, list):
        return [_declared(s, reads) for s in subject]
    return {name: getattr(subject, name) for name in reads}


def _view(subject: Any, reads: tuple[str, ...] | None, stray: set[str]) -> Any:
    if reads is None:
        return subject
    if isinstance(subject, list):
        return [_View(s, reads, stray) for s in subject]
    return _View(subject, reads, stray)


class _View:
    """Reads of ``obj``'s attributes, each outside ``reads`` noted in ``stray`` (the value is still given)."""

    __slots__ = ("_obj", "_reads", "_stray")

    def __init__(self, obj: Any, reads: tuple[str, ...], stray: set[str]):
        self._obj, self._reads, self._stray = obj, reads, stray

    def __getattr__(self, name: str) -> Any:
        if name not in self._reads:
            self._stray.add(name)
        return getattr(self._obj, name)
