"""Finding source units (files and run directories) under a root, at any depth.

Rules, checked per directory top-down (hidden files and directories, '.'-prefixed, are skipped):

1. A directory holding ``events.out.tfevents.*`` files is a tensorboard run (with the event files
   of its sub-directories and its ``config.yaml``/``hparams.yaml``).
2. A directory with ``meta.yaml`` and a ``metrics/`` directory is an MLflow run (members: meta.yaml
   and the files under metrics/, params/, tags/; artifacts are not read).
3. A directory with ``wandb-history.jsonl``, or ``history.csv`` next to ``config.yaml``, is a W&B
   run.
4. Otherwise each file is a unit: ``runs.csv``/``runs.yaml``/``runs.yml`` -> manifest;
   ``*.csv`` -> wandb_export when its header is a W&B chart export's (``Step``, then
   ``<run> - <metric>`` columns), csv when it has a step column or a tokens and a loss column,
   else manifest when it has run-id and n_params columns, else csv; ``*.jsonl`` -> jsonl; ``*.parquet`` -> parquet (``*.csv.gz``/``*.jsonl.gz``: the same,
   gzip-compressed); anything else is ignored.

A run directory is claimed whole: nothing below it is discovered again.

Symbolic links never lead outside the log root: each link is resolved (its target is not opened)
and, when it cannot be followed, listed as a unit of reader 'skipped' without members (ingest
quarantines it with the reason), the reason one of SKIP_REASONS: it leads outside the root, loops,
leads nowhere, or to something that is neither a regular file nor a directory (such entries named
like logs are listed too: a FIFO named ``x.csv`` would block a reader). A link that stays inside
the root is read as what it points to, each file and directory once: directory links are walked
after the tree reached without links, each only if its target has not been walked already; a file
link only if its target is not read otherwise. A link that is not followed for that reason (e.g.
W&B's ``latest-run``) is not listed: its data is read under its target's path.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import duckdb

from scaling_pipeline.lib.schema import METRIC_ALIASES, RUN_ALIASES

from .common import ReadReport, SourceUnit, file_rejection, resolve_aliases
from .tensorboard_log import CONFIG_NAMES, EVENTS_PREFIX
from .text import GZIP_SUFFIX, csv_records, iter_lines
from .wandb_export import is_export
from .wandb_log import CONFIG_NAME, HISTORY_NAMES

MANIFEST_NAMES = ("runs.csv", "runs.yaml", "runs.yml")
TABLE_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}  # csv: or manifest
GZIP_READERS = ("csv", "jsonl")  # read from *.gz too
SKIPPED = "skipped"  # the reader of entries listed but not read
SKIP_REASONS = {
    "link_outside_log_root": "a symbolic link to a path outside the log root (links are followed only "
                             "inside it)",
    "symlink_loop": "a symbolic link that loops (to itself, or to a directory that contains it)",
    "dangling_link": "a symbolic link to nothing (its target does not exist)",
    "unresolvable_link": "a symbolic link that cannot be resolved",
    "not_a_regular_file": "neither a regular file nor a directory (a FIFO, socket or device)",
    "unreadable_directory": "a directory that cannot be listed",
}


def read_skipped(unit: SourceUnit, con: duckdb.DuckDBPyConnection) -> ReadReport:
    """The report of a skipped entry: a file rejection saying why (nothing is opened)."""
    return file_rejection(SKIPPED, unit.skipped or "skipped")


def _inside(path: str, top: str) -> bool:
    """Whether real path ``path`` is ``top`` or below it."""
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def _by_name(name: str) -> str | None:
    """The reader a file goes to by its name ('csv': csv or manifest, see :func:`_csv_reader`)."""
    lower = name.lower()
    if lower in MANIFEST_NAMES:
        return "manifest"
    compressed = lower.endswith(GZIP_SUFFIX)
    reader = TABLE_SUFFIXES.get(os.path.splitext(lower[: -len(GZIP_SUFFIX)] if compressed else lower)[1])
    return reader if reader and (not compressed or reader in GZIP_READERS) else None


class _Walker:
    """Walks the tree under a root without leaving it (see the module doc); ``skipped`` collects the
    entries that are listed but not read."""

    def __init__(self, root: Path) -> None:
        self.root, self.real_root = root, os.path.realpath(root)
        self.seen: set[str] = set()  # real paths of the directories walked
        self.dirs: dict[Path, str] = {}  # directory walked -> its real path
        self.links: list[tuple[Path, str]] = []  # directory links inside the root, walked after
        self.file_links: dict[Path, str] = {}  # file link -> real path of its target
        self.skipped: list[SourceUnit] = []

    def skip(self, path: Path, code: str, detail: str = "") -> None:
        reason = f"skipped ({code}): {SKIP_REASONS[code]}{detail}; not read"
        self.skipped.append(SourceUnit(path, SKIPPED, (), reason, self.root))

    def walk(self) -> Iterator[tuple[Path, str, list[str], list[str]]]:
        """(directory, its real path, sub-directories, files), sorted, top-down: the tree reached
        without links, then each directory link's. Clearing a yielded dirs list prunes the walk."""
        yield from self.tree(self.root, self.real_root)
        while self.links:
            links, self.links = sorted(self.links), []
            for path, real in links:
                yield from self.tree(path, real)

    def tree(self, top: Path, real: str) -> Iterator[tuple[Path, str, list[str], list[str]]]:
        """:meth:`walk` below one directory, leaving out directories walked already."""
        stack = [(top, real)]
        while stack:
            here, real = stack.pop()
            if real in self.seen:
                continue
            self.seen.add(real)
            self.dirs[here] = real
            dirs, files = self.entries(here, real)
            yield here, real, dirs, files
            stack += [(here / d, os.path.join(real, d)) for d in reversed(dirs)]

    def files_under(self, here: Path, real: str, dirs: list[str], files: list[str]) -> list[Path]:
        """The files of a yielded directory and of the directories below it."""
        below = [(d, os.path.join(real, d)) for d in dirs]
        return [here / f for f in files] + [
            d / f for name, sub in below for d, _, _, fs in self.tree(here / name, sub) for f in fs
        ]

    def entries(self, here: Path, real: str) -> tuple[list[str], list[str]]:
        """Sub-directories and files of ``here`` (real path ``real``), sorted, hidden ones left out;
        links resolved: followed as files, deferred to :meth:`walk` as directories, or skipped."""
        dirs, files = [], []
        try:
            with os.scandir(here) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            self.skip(here, "unreadable_directory", f": {exc.strerror}")
            return [], []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = here / entry.name
            if entry.is_symlink():
                if self.link(path, real):
                    files.append(entry.name)
            elif entry.is_dir(follow_symlinks=False):
                dirs.append(entry.name)
            elif entry.is_file(follow_symlinks=False):
                files.append(entry.name)
            elif _by_name(entry.name):
                self.skip(path, "not_a_regular_file")
        return dirs, files

    def link(self, path: Path, parent: str) -> bool:
        """Classify the link ``path`` in the directory of real path ``parent``; True for a link to a
        regular file inside the root (to be read as a file)."""
        if not _inside(os.path.realpath(path), self.real_root):  # decided before touching the target
            self.skip(path, "link_outside_log_root")
            return False
        try:
            target = os.path.realpath(path, strict=True)
            mode = os.stat(target).st_mode
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.skip(path, "symlink_loop")
            elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
                self.skip(path, "dangling_link")
            else:
                self.skip(path, "unresolvable_link", f": {exc.strerror}")
            return False
        if stat.S_ISDIR(mode):
            if _inside(parent, target):
                self.skip(path, "symlink_loop")
            else:
                self.links.append((path, target))
            return False
        if stat.S_ISREG(mode):
            self.file_links[path] = target
            return True
        self.skip(path, "not_a_regular_file")
        return False

    def once(self, units: list[SourceUnit]) -> list[SourceUnit]:
        """``units`` without the file-link units whose target another unit reads (or an earlier one)."""
        if not self.file_links:
            return units

        def real(member: Path) -> str:
            return self.file_links.get(member) or os.path.join(self.dirs[member.parent], member.name)

        read = {real(m) for u in units if u.path not in self.file_links for m in u.members}
        kept = []
        for unit in sorted(units, key=lambda u: u.path):
            if unit.path in self.file_links:
                if self.file_links[unit.path] in read:
                    continue
                read.add(self.file_links[unit.path])
            kept.append(unit)
        return kept


def _run_directory(walker: _Walker, here: Path, real: str, dirs: list[str], files: list[str]) -> SourceUnit | None:
    if any(f.startswith(EVENTS_PREFIX) for f in files):
        members = [p for p in walker.files_under(here, real, dirs, files) if p.name.startswith(EVENTS_PREFIX)]
        members += [here / f for f in files if f in CONFIG_NAMES]
        return SourceUnit(here, "tensorboard", tuple(sorted(members)), root=walker.root)
    if "meta.yaml" in files and "metrics" in dirs:
        parts = [d for d in ("metrics", "params", "tags") if d in dirs]
        members = [here / "meta.yaml", *walker.files_under(here, real, parts, [])]
        return SourceUnit(here, "mlflow", tuple(sorted(members)), root=walker.root)
    if HISTORY_NAMES[0] in files or (HISTORY_NAMES[1] in files and CONFIG_NAME in files):
        history = HISTORY_NAMES[0] if HISTORY_NAMES[0] in files else HISTORY_NAMES[1]
        members = [here / history] + ([here / CONFIG_NAME] if CONFIG_NAME in files else [])
        return SourceUnit(here, "wandb", tuple(sorted(members)), root=walker.root)
    return None


def _csv_reader(path: Path) -> str:
    """'wandb_export' for a W&B chart export's header; 'csv' for a metric table's (a step column, or
    a tokens and a loss column); 'manifest' for one with run-id and n_params columns; else 'csv'."""
    lines = iter_lines(path)
    try:
        header = next(csv_records(lines), None)
        names = (header.fields or []) if header else []
    except (ValueError, OSError):  # unreadable: the csv reader will report it
        names = []
    finally:
        lines.close()
    if is_export(names):
        return "wandb_export"
    metrics = resolve_aliases(names, METRIC_ALIASES)
    if "step" in metrics or ("tokens" in metrics and ("train_loss" in metrics or "eval_loss" in metrics)):
        return "csv"
    run_columns = resolve_aliases(names, RUN_ALIASES)
    return "manifest" if "run_id" in run_columns and "n_params" in run_columns else "csv"


def _file_unit(path: Path, root: Path) -> SourceUnit | None:
    reader = _by_name(path.name)
    if reader is None:
        return None
    return SourceUnit(path, _csv_reader(path) if reader == "csv" else reader, (path,), root=root)


def discover(root: Path) -> list[SourceUnit]:
    """All source units under ``root``, and the entries skipped (reader SKIPPED), sorted by path."""
    walker = _Walker(Path(root))
    units: list[SourceUnit] = []
    for here, real, dirs, files in walker.walk():
        if unit := _run_directory(walker, here, real, dirs, files):
            units.append(unit)
            dirs[:] = []
            continue
        units += [unit for f in files if (unit := _file_unit(here / f, walker.root))]
    return sorted(walker.once(units) + walker.skipped, key=lambda unit: unit.path)
