"""What identifies a source unit's content for ingest: a SHA-256 over its members' relative paths, sizes
and bytes, and the readers' version (a unit is re-read only when it changed)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from scaling_pipeline.lib.formats import READERS_VERSION, SCANNED_READERS, SourceUnit
from scaling_pipeline.lib.formats.text import ByteScan, read_chunks, scan_bytes


def relative_path(root: Path, path: Path) -> str:
    """``path`` relative to ``root``, posix ('.' for the root itself)."""
    return path.relative_to(root).as_posix()


@dataclass(frozen=True)
class Fingerprint:
    sha256: str  # over the sorted (relative path, size, bytes) of the unit's members
    size: int  # bytes
    scan: ByteScan | None  # byte facts of a one-file csv/jsonl unit (can a native read be exact?)


def fingerprint(root: Path, unit: SourceUnit) -> Fingerprint:
    """Hash the members of ``unit`` (and scan a one-file text unit's bytes in the same pass)."""
    digest, total, scan = hashlib.sha256(), 0, None
    digest.update((unit.skipped or "").encode())  # a skipped entry has no members: its reason is its content
    digest.update(f"\0readers {READERS_VERSION}\0".encode())  # rows of unchanged files change with the readers
    text = len(unit.members) == 1 and unit.reader in SCANNED_READERS
    for rel, member in sorted((relative_path(root, m), m) for m in unit.members):
        size = member.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        if text:
            scan = scan_bytes(member, digest=digest)
            total += scan.size
            continue
        for chunk in read_chunks(member):
            digest.update(chunk)
            total += len(chunk)
    return Fingerprint(digest.hexdigest(), total, scan)
