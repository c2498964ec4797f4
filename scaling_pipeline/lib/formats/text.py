"""Line-exact reading of text logs (CSV, JSON lines, MLflow metric files).

DuckDB's ``read_csv``/``read_json`` cannot report the line of an accepted row (``file_row_number``
is Parquet-only in DuckDB 2.0), and reading raw lines through ``read_csv`` silently cuts lines at
NUL bytes and drops invalid UTF-8. So text files are split into lines here, streamed with a bounded
line length, and the lines are handed to DuckDB in Arrow batches for parsing and typing. That is
the exact path; the csv/jsonl fast paths let DuckDB read a whole file natively when
:func:`scan_bytes` (newline count, NUL/CR/quote bytes, final newline) says it can be exact, with
``record`` = row ordinal (+ header), validated against the newline count. Files named ``*.gz``
are gzip-compressed: they are decompressed as they are streamed, and only by the exact path.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

MAX_LINE_BYTES = 1 << 20  # longer lines (and CSV records) are rejected without being held in memory
MAX_RECORD_LINES = 100  # lines a CSV record with quoted newlines may span (bounds re-reading, see csv_records)
GZIP_SUFFIX = ".gz"


def is_gzip(path: Path) -> bool:
    """Whether ``path`` is read as gzip-compressed (by its name)."""
    return path.name.lower().endswith(GZIP_SUFFIX)


def log_stem(path: Path) -> str:
    """The file name without its format suffix and any ``.gz`` (``r1.csv.gz`` -> ``r1``)."""
    name = path.name[: -len(GZIP_SUFFIX)] if is_gzip(path) else path.name
    return Path(name).stem


def size_text(n: float) -> str:
    """``n`` bytes for messages: '812 bytes', '3.0 KiB', '200.0 MiB'."""
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"


class TextLine(NamedTuple):  # a NamedTuple: one is made per line, it must be cheap
    """One physical line; ``text`` is None when ``error`` says why it is unreadable."""

    number: int  # 1-based
    text: str | None  # decoded, without the line terminator (\n or \r\n)
    error: str | None
    terminated: bool  # False only for a final line without newline (a cut-off write?)


def _skip_rest_of_line(handle: BinaryIO) -> tuple[bool, int]:
    """Consume up to and including the next newline; (whether one was found, bytes consumed)."""
    skipped = 0
    while chunk := handle.readline(MAX_LINE_BYTES):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            return True, skipped
    return False, skipped


def _decode(body: bytes) -> tuple[str | None, str | None]:
    nul = body.find(b"\x00")
    if nul >= 0:
        return None, f"expected text, got a NUL byte at column {nul + 1}"
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return (
            None,
            f"expected UTF-8 text, got byte 0x{body[exc.start]:02x} at column {exc.start + 1}",
        )


def iter_lines(path: Path) -> Iterator[TextLine]:
    """Stream the lines of ``path`` (a UTF-8 BOM on line 1 is dropped; ``*.gz``: decompressed).
    ValueError when a gzip stream is damaged (the lines before it have been yielded)."""
    number = 0
    try:
        with gzip.open(path, "rb") if is_gzip(path) else open(path, "rb") as handle:
            while raw := handle.readline(MAX_LINE_BYTES + 1):
                number += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    terminated, rest = _skip_rest_of_line(handle)
                    length = len(raw) + rest - terminated
                    error = f"expected a line of at most {size_text(MAX_LINE_BYTES)}, got {size_text(length)}"
                    yield TextLine(number, None, error, terminated)
                    continue
                terminated = raw.endswith(b"\n")
                body = raw[:-1] if terminated else raw
                body = body[:-1] if body.endswith(b"\r") else body
                if number == 1 and body.startswith(codecs.BOM_UTF8):
                    body = body[len(codecs.BOM_UTF8) :]
                text, error = _decode(body)
                yield TextLine(number, text, error, terminated)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"line {number + 1}: expected gzip-compressed data, got: {exc}") from exc


class CsvRecord(NamedTuple):
    """One CSV record; ``fields`` is None when ``error`` says why it is unreadable, or when ``text``
    holds it (a line without quotes, left to the caller to split at commas)."""

    line: int  # first physical line of the record
    fields: list[str] | None
    error: str | None
    text: str | None = None
    terminated: bool = True  # False: its last line ends the file without a newline


class _Unreadable(Exception):
    """A line a quoted CSV record would run into cannot be read (message: why)."""


def _quoted_record(first: TextLine, more: Callable[[], TextLine | None]) -> tuple[list[str] | None, str | None,
                                                                                   list[TextLine]]:
    """The record starting at ``first`` (a line with a quote), taking more lines while a quoted field is
    open: (fields or None, the error, the lines taken)."""
    taken = [first]

    def feed() -> Iterator[str]:
        size = len(first.text or "")
        yield f"{first.text}\n"
        while (line := more()) is not None:
            taken.append(line)
            if line.text is None:
                raise _Unreadable(f"a quoted field runs into line {line.number}: {line.error}")
            size += len(line.text) + 1
            if size > MAX_LINE_BYTES or len(taken) > MAX_RECORD_LINES:
                raise _Unreadable(f"expected a record of at most {MAX_RECORD_LINES} lines and "
                                  f"{size_text(MAX_LINE_BYTES)}, got more by line {line.number} (a quoted field "
                                  "left open?)")
            yield f"{line.text}\n"

    try:
        return next(csv.reader(feed(), strict=True)), None, taken
    except csv.Error as exc:
        return None, f"expected well-formed CSV ({exc})", taken
    except _Unreadable as exc:
        return None, str(exc), taken


def csv_records(lines: Iterable[TextLine], *, width: int | None = None, split: bool = True) -> Iterator[CsvRecord]:
    """The CSV records of ``lines`` (comma-separated, '"'-quoted), skipping blank lines.

    A record is one line unless a quoted field holds a newline; then it spans lines (up to
    MAX_RECORD_LINES and MAX_LINE_BYTES). A record over several lines that is not well-formed CSV,
    or (``width`` given) has another number of fields, costs only its first line: the lines after
    it are read again as records of their own, so a stray quote does not swallow the rest of the
    file. ``split``: False leaves records of one line without quotes in ``text``."""
    source = iter(lines)
    again: deque[TextLine] = deque()  # lines taken by a broken record, read again

    def more() -> TextLine | None:
        return again.popleft() if again else next(source, None)

    while (line := more()) is not None:
        if line.text is None:
            yield CsvRecord(line.number, None, line.error or "unreadable line", None, line.terminated)
        elif not line.text.strip():
            continue
        elif '"' not in line.text:
            if split:
                yield CsvRecord(line.number, line.text.split(","), None, None, line.terminated)
            else:
                yield CsvRecord(line.number, None, None, line.text, line.terminated)
        else:
            fields, error, taken = _quoted_record(line, more)
            if fields is not None and len(taken) > 1 and width is not None and len(fields) != width:
                fields, error = None, (f"expected {width} fields as in the header, got {len(fields)} in a "
                                       f"record over lines {line.number}-{taken[-1].number}")
            if fields is None:
                again.extendleft(reversed(taken[1:]))
                yield CsvRecord(line.number, None, error, None, line.terminated)
            elif not (len(fields) == 1 and not fields[0].strip()):
                yield CsvRecord(line.number, fields, None, None, taken[-1].terminated)


def iter_csv_records(path: Path) -> Iterator[CsvRecord]:
    """The CSV records of ``path`` (see :func:`csv_records`; lines without quotes split too)."""
    return csv_records(iter_lines(path))


class ByteScan(NamedTuple):
    """Cheap facts about a text file, for deciding whether a native DuckDB read can be exact."""

    size: int
    newlines: int  # number of b"\n"
    ends_with_newline: bool
    has_nul: bool
    has_cr: bool
    has_quote: bool  # b'"'
    head: bytes | None = None  # line 1 without its newline; None if longer than a read chunk

    @property
    def lines(self) -> int:
        """Physical lines (a final line without newline counts)."""
        return self.newlines + (self.size > 0 and not self.ends_with_newline)

    def first_line(self) -> str | None:
        """Line 1 as :func:`iter_lines` gives it (UTF-8 BOM and a final CR dropped), or None when it is
        unreadable, too long or absent."""
        if self.head is None or not self.size:
            return None
        body = self.head[:-1] if self.head.endswith(b"\r") else self.head
        body = body[len(codecs.BOM_UTF8):] if body.startswith(codecs.BOM_UTF8) else body
        return _decode(body)[0] if len(body) <= MAX_LINE_BYTES else None


_BUFFERS = threading.local()  # one read buffer per thread (a fresh 4 MB bytes per read is slow)


def read_chunks(path: Path, chunk: int = 1 << 22) -> Iterator[memoryview]:
    """The bytes of ``path`` in chunks of up to ``chunk`` bytes, read into a per-thread buffer: each
    view is valid only until the next one is asked for."""
    buffer = getattr(_BUFFERS, "buffer", None)
    if buffer is None or len(buffer) < chunk:
        buffer = _BUFFERS.buffer = bytearray(chunk)
    view = memoryview(buffer)[:chunk]
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(view):
            yield view[:n]


def scan_bytes(path: Path, chunk: int = 1 << 22, digest: Any = None) -> ByteScan:
    """One pass over the bytes of ``path`` (C-speed counting, no decoding); the bytes also update
    ``digest`` (a hashlib object) when given."""
    size = newlines = 0
    nul = cr = quote = False
    last = b""
    head: bytes | None = None
    for data in read_chunks(path, chunk):
        if digest is not None:
            digest.update(data)
        block = data.obj  # the buffer: its count/find take bounds, a memoryview has neither
        n = len(data)
        if not size:  # line 1: up to the first newline, or all of a file without one
            end = block.find(b"\n", 0, n)
            head = bytes(data[:end] if end >= 0 else data)
            whole_line = end >= 0
        size += n
        if n < 1 << 16:
            newlines += block.count(b"\n", 0, n)
        else:  # numpy counts ~5x faster than bytes.count, after ~10 us set-up
            newlines += int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10))
        nul = nul or block.find(b"\x00", 0, n) >= 0
        cr = cr or block.find(b"\r", 0, n) >= 0
        quote = quote or block.find(b'"', 0, n) >= 0
        last = bytes(data[-1:])
    if head is not None and not whole_line and len(head) != size:
        head = None  # line 1 is longer than a chunk
    return ByteScan(size, newlines, last == b"\n", nul, cr, quote, head)
