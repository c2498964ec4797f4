"""Line-exact reading of text logs (CSV, JSON lines, MLflow metric files).

DuckDB's ``read_csv``/``read_json`` cannot report the line of an accepted row (``file_row_number``
is Parquet-only in DuckDB 2.0), and reading raw lines through ``read_csv`` silently cuts lines at
NUL bytes and drops invalid UTF-8. So text files are split into lines here, streamed with a bounded
line length, and the lines are handed to DuckDB in Arrow batches for parsing and typing. That is
the exact path; the csv/jsonl fast paths let DuckDB read a whole file natively when
:func:`scan_bytes` (newline count, NUL/CR/quote bytes, final newline) says it can be exact, with
``record`` = row ordinal (+ header), validated against the newline count.
"""

from __future__ import annotations

import codecs
import csv
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

MAX_LINE_BYTES = 1 << 20  # longer lines are rejected without being held in memory


class TextLine(NamedTuple):  # a NamedTuple: one is made per line, it must be cheap
    """One physical line; ``text`` is None when ``error`` says why it is unreadable."""

    number: int  # 1-based
    text: str | None  # decoded, without the line terminator (\n or \r\n)
    error: str | None
    terminated: bool  # False only for a final line without newline (a cut-off write?)


def _skip_rest_of_line(handle: BinaryIO) -> bool:
    """Consume up to and including the next newline; True if one was found."""
    while chunk := handle.readline(MAX_LINE_BYTES):
        if chunk.endswith(b"\n"):
            return True
    return False


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
    """Stream the lines of ``path`` (a UTF-8 BOM on line 1 is dropped)."""
    with open(path, "rb") as handle:
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                terminated = _skip_rest_of_line(handle)
                yield TextLine(
                    number, None, f"expected a line of at most {MAX_LINE_BYTES} bytes", terminated
                )
                continue
            terminated = raw.endswith(b"\n")
            body = raw[:-1] if terminated else raw
            body = body[:-1] if body.endswith(b"\r") else body
            if number == 1 and body.startswith(codecs.BOM_UTF8):
                body = body[len(codecs.BOM_UTF8) :]
            text, error = _decode(body)
            yield TextLine(number, text, error, terminated)


def first_line(lines: Iterable[TextLine]) -> TextLine | None:
    """The first line that is not blank (an unreadable line counts), or None."""
    return next((line for line in lines if line.text is None or line.text.strip()), None)


def split_csv_line(text: str) -> list[str]:
    """Fields of one CSV line (comma-separated, '"'-quoted); csv.Error for broken quoting."""
    if '"' not in text:
        return text.split(",")
    return next(csv.reader([text], strict=True))


class CsvRecord(NamedTuple):
    """One CSV record; ``fields`` is None when ``error`` says why it is unreadable."""

    line: int  # first physical line of the record
    fields: list[str] | None
    error: str | None


def iter_csv_records(path: Path) -> Iterator[CsvRecord]:
    """Stream the CSV records of ``path``, skipping blank lines; quoted fields may span lines.

    Used for manifests; metric logs are parsed line by line (one logged step per line), so a
    stray quote damages only its own line."""
    bad: dict[int, str] = {}

    def feed() -> Iterator[str]:
        for line in iter_lines(path):
            if line.text is None:
                bad[line.number] = line.error or "unreadable line"
                yield "\n"
            else:
                yield line.text + "\n"

    reader = csv.reader(feed(), strict=True)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield CsvRecord(start, None, f"expected well-formed CSV ({exc})")
            start = reader.line_num + 1
            continue
        end, first = reader.line_num, start
        start = end + 1
        errors = [bad.pop(n) for n in range(first, end + 1) if n in bad]
        if errors:
            yield CsvRecord(first, None, errors[0])
        elif fields and not (len(fields) == 1 and not fields[0].strip()):
            yield CsvRecord(first, fields, None)


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
