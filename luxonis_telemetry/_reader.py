"""Reading spool files back: line by line, in constant memory, never trusting a byte.

Spool files are written by many processes, some of which died mid-line, and
may have been edited or corrupted; the reader yields every well-formed
record with the file offset just past it, and a :class:`BadLine` for
anything else, so one bad line never blocks the good ones around it.
"""

from __future__ import annotations

import os

from . import _fs
from ._jsonio import loads_line
from .record import validate

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Optional, Union

    from .record import Record

    Item = Union[Record, "BadLine"]

__all__ = ["MAX_LINE_BYTES", "BadLine", "count_lines", "decode_line", "iter_records"]

MAX_LINE_BYTES = 1024 * 1024
_READ_CHUNK = 256 * 1024


class BadLine:
    """A line that is not a well-formed event: kept (its head) for the quarantine."""

    __slots__ = ("head", "length", "reason")

    def __init__(self, reason: str, head: bytes, length: int) -> None:
        self.reason = reason
        self.head = head
        self.length = length

    def __repr__(self) -> str:
        return f"BadLine({self.reason!r}, length={self.length})"


def decode_line(line: bytes) -> Item:
    """The record in ``line``, or why it is not one."""
    try:
        value = loads_line(line)
    except (ValueError, RecursionError):
        return BadLine("not JSON", line[:512], len(line))
    record = validate(value)
    if record is None:
        return BadLine("not an event record", line[:512], len(line))
    return record


def iter_records(
    path: str, start: int = 0, *, torn_tail_is_bad: bool = True
) -> Iterator[tuple[int, Item]]:
    """Yield ``(end_offset, record or BadLine)`` for the lines of ``path`` from ``start``.

    A line longer than ``MAX_LINE_BYTES`` is skipped without being held in
    memory. A last line without newline is torn (reported as bad) when
    ``torn_tail_is_bad``, else silently left for a writer that may still be
    finishing it. A missing or unsafe file yields nothing.
    """
    try:
        fd = _fs.open_checked(path)
    except OSError:
        return
    try:
        yield from _lines(fd, start, torn_tail_is_bad)
    finally:
        os.close(fd)


def _lines(fd: int, start: int, torn_tail_is_bad: bool) -> Iterator[tuple[int, Item]]:
    os.lseek(fd, start, os.SEEK_SET)
    offset = start  # file offset of buffer[0]
    buffer = b""
    skipping = 0  # bytes of an oversized line skipped so far
    head = b""
    while chunk := os.read(fd, _READ_CHUNK):
        buffer = buffer + chunk if buffer else chunk
        cursor = 0
        while (newline := buffer.find(b"\n", cursor)) >= 0:
            line = buffer[cursor:newline]
            cursor = newline + 1
            if skipping:
                yield offset + cursor, BadLine("line too long", head, skipping + len(line))
                skipping = 0
            elif len(line) > MAX_LINE_BYTES:
                yield offset + cursor, BadLine("line too long", line[:512], len(line))
            elif line.strip():
                yield offset + cursor, decode_line(line)
        offset += cursor
        buffer = buffer[cursor:]
        if len(buffer) > MAX_LINE_BYTES or (skipping and buffer):
            if not skipping:
                head = buffer[:512]
            skipping += len(buffer)
            offset += len(buffer)
            buffer = b""
    if skipping:
        yield offset, BadLine("line too long (torn)", head, skipping)
    elif buffer.strip() and torn_tail_is_bad:
        yield offset + len(buffer), BadLine("torn line", buffer[:512], len(buffer))


def count_lines(path: str, start: int = 0, end: Optional[int] = None) -> int:
    """Newline-terminated lines of ``path`` in ``[start, end)`` (0 when missing or unsafe)."""
    try:
        fd = _fs.open_checked(path)
    except OSError:
        return 0
    count = 0
    remaining = -1 if end is None else max(0, end - start)
    try:
        os.lseek(fd, start, os.SEEK_SET)
        while remaining and (chunk := os.read(fd, _READ_CHUNK)):
            if remaining > 0:
                chunk = chunk[:remaining]
                remaining -= len(chunk)
            count += chunk.count(b"\n")
    except OSError:
        return count
    finally:
        os.close(fd)
    return count
