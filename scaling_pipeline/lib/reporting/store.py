"""Where reports live: ``reports_root/<date>/`` folders, built in a hidden temporary folder and swapped in
whole, and ``reports_root/latest`` pointing at the newest dated folder.

Every change a reader can see is one rename: the finished folder is exchanged with the previous one of its
date (``renameat2(RENAME_EXCHANGE)`` on Linux) and ``latest`` is a new symlink renamed over the old one, so a
render killed at any point leaves every dated folder and ``latest`` whole. A killed render's hidden folders
(``.<name>.partial-<host>-<pid>``) are removed by the next render on the same host once that process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from scaling_pipeline.lib.process import pid_exists

_HOST = re.sub(r"[^A-Za-z0-9_.-]+", "_", socket.gethostname()) or "host"
# A hidden work folder: what it stands for, then whose it is (host optional: older renders wrote only the pid).
_WORK = re.compile(r"\.(?P<name>.+)\.(?:partial|old)-(?:(?P<host>.+)-)?(?P<pid>\d+)")


@contextlib.contextmanager
def dated_folder(root: Path, date: dt.date) -> Iterator[Path]:
    """Yield an empty hidden folder to write the report of ``date`` into; on success it replaces
    ``root/<date>`` and ``root/latest`` is pointed at the newest dated folder. On failure nothing changes."""
    remove_stale(root)
    tmp = _work_path(root, date.isoformat())
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        _put(tmp, root / date.isoformat())
    finally:
        _remove(tmp)
    point_latest(root)


def point_latest(root: Path) -> None:
    """Point ``root/latest`` at the newest dated folder, in one rename (a copy where symlinks fail)."""
    dated = dated_folders(root)
    if not dated:
        return
    target = dated[-1][1]
    latest = root / "latest"
    if latest.is_symlink() and os.readlink(latest) == target.name:
        return
    tmp = _work_path(root, "latest")
    _remove(tmp)
    try:
        os.symlink(target.name, tmp, target_is_directory=True)
    except OSError:  # filesystems without symlinks: a copy
        shutil.copytree(target, tmp)
    try:
        _put(tmp, latest)
    finally:
        _remove(tmp)


def dated_folders(root: Path) -> list[tuple[dt.date, Path]]:
    """The ``YYYY-MM-DD`` folders under ``root``, oldest first."""
    found = []
    for child in root.iterdir() if root.is_dir() else []:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", child.name) or child.is_symlink() or not child.is_dir():
            continue
        try:
            found.append((dt.date.fromisoformat(child.name), child))
        except ValueError:
            continue
    return sorted(found)


def remove_stale(root: Path) -> list[Path]:
    """Remove the hidden work folders of renders on this host whose process is gone; return them.
    A folder of a live process (a concurrent render) or of another host is left alone."""
    removed = []
    for child in root.iterdir() if root.is_dir() else []:
        m = _WORK.fullmatch(child.name)
        if m and m["host"] in (None, _HOST) and not pid_exists(int(m["pid"])):
            _remove(child)
            removed.append(child)
    return removed


def _work_path(root: Path, name: str) -> Path:
    return root / f".{name}.partial-{_HOST}-{os.getpid()}"


def _remove(path: Path) -> None:
    """Remove a file, symlink (not what it points at) or folder tree; nothing if absent."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _put(new: Path, dest: Path) -> None:
    """Move ``new`` to ``dest`` in one rename, replacing (and removing) what was there."""
    folders = (new.is_dir() and not new.is_symlink(), dest.is_dir() and not dest.is_symlink())
    if not os.path.lexists(dest) or not any(folders):  # rename(2) replaces a file or symlink atomically
        os.replace(new, dest)
        return
    if not _exchange(new, dest):  # no atomic exchange here: two renames, ``dest`` briefly absent
        old = dest.with_name(f".{dest.name}.old-{_HOST}-{os.getpid()}")
        _remove(old)
        os.rename(dest, old)
        try:
            os.rename(new, dest)
        except BaseException:
            os.rename(old, dest)
            raise
        new = old
    _remove(new)  # what ``dest`` held before


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # not glibc / not Linux
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))
