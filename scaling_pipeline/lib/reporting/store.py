"""Where reports live: ``reports_root/<date>/`` folders, built in a hidden temporary folder and swapped in
whole, and ``reports_root/latest`` pointing at the newest dated folder."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def dated_folder(root: Path, date: dt.date) -> Iterator[Path]:
    """Yield an empty hidden folder to write the report of ``date`` into; on success it replaces
    ``root/<date>`` and ``root/latest`` is pointed at the newest dated folder. On failure nothing changes."""
    out = root / date.isoformat()
    tmp = root / f".{date.isoformat()}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if out.exists() or out.is_symlink():
            old = root / f".{date.isoformat()}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            if old is not None:
                old.rename(out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    point_latest(root)


def dated_folders(root: Path) -> list[tuple[dt.date, Path]]:
    found = []
    for child in root.iterdir() if root.is_dir() else []:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", child.name) or child.is_symlink() or not child.is_dir():
            continue
        try:
            found.append((dt.date.fromisoformat(child.name), child))
        except ValueError:
            continue
    return sorted(found)


def point_latest(root: Path) -> None:
    dated = dated_folders(root)
    if not dated:
        return
    target = dated[-1][1]
    latest = root / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.is_dir():
        shutil.rmtree(latest)
    try:
        os.symlink(target.name, latest, target_is_directory=True)
    except OSError:  # filesystems without symlinks: a copy
        shutil.copytree(target, latest)
