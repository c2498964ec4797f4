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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

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

    @property
    def lines(self) -> int:
        """Physical lines (a final line without newline counts)."""
        return self.newlines + (self.size > 0 and not self.ends_with_newline)


def scan_bytes(path: Path, chunk: int = 1 << 22, digest: Any = None) -> ByteScan:
    """One pass over the bytes of ``path`` (C-speed counting, no decoding); the bytes also update
    ``digest`` (a hashlib object) when given."""
    size = newlines = 0
    nul = cr = quote = False
    last = b""
    with open(path, "rb") as handle:
        while data := handle.read(chunk):
            if digest is not None:
                digest.update(data)
            size += len(data)
            newlines += data.count(b"\n")
            nul = nul or b"\x00" in data
            cr = cr or b"\r" in data
            quote = quote or b'"' in data
            last = data[-1:]
    return ByteScan(size, newlines, last == b"\n", nul, cr, quote)
