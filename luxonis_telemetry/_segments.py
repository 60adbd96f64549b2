"""The files of a spool folder, by name: active files, sealed segments, their positions.

``active.<key>.jsonl`` receives a library's captures, ``seg.<ns>.<key>.jsonl``
is a sealed segment delivered front to back, and ``<segment>.pos`` records how
far it was delivered (the first undelivered byte, and byte ranges a server
acknowledged after it). Names are parsed without regular expressions (``re``
costs ~3 ms to import, on every tool's start-up), and every file is checked
to be a regular file of this user before it is read.
"""

from __future__ import annotations

import os
import time

from . import _fs
from ._jsonio import dumps_compact, loads
from ._reader import count_lines, iter_records

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Optional

    from ._reader import Item

__all__ = [
    "POSITION_VERSION",
    "Segment",
    "active_key",
    "covers",
    "file_mtime",
    "file_size",
    "is_key",
    "library_key",
    "read_position",
    "refused",
    "segment_key",
    "write_position",
]

POSITION_VERSION = 1
_KEY_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def library_key(library: str) -> str:
    """A file-name-safe, stable key for a library name."""
    if is_key(library):
        return library
    import hashlib

    return "h" + hashlib.sha1(library.encode("utf-8", "replace")).hexdigest()[:16]  # noqa: S324


def is_key(name: str) -> bool:
    """A library name usable as is in file names: 1-48 of ``[A-Za-z0-9_-]``."""
    return 0 < len(name) <= 48 and _KEY_CHARACTERS.issuperset(name)


def active_key(name: str) -> Optional[str]:
    """The library key of an ``active.<key>.jsonl`` file name, else ``None``."""
    if name.startswith("active.") and name.endswith(".jsonl"):
        key = name[7:-6]
        return key if is_key(key) else None
    return None


def segment_key(name: str) -> Optional[str]:
    """The library key of a ``seg.<digits>.<key>.jsonl`` file name, else ``None``."""
    if not (name.startswith("seg.") and name.endswith(".jsonl")):
        return None
    number, dot, key = name[4:-6].partition(".")
    if not (dot and number.isdigit() and number.isascii() and is_key(key)):
        return None
    return key


class Segment:
    """A sealed file of one library's events, delivered front to back.

    ``start`` is the first byte not yet confirmed; ``acked`` are byte ranges
    after it that a server already accepted (batches confirmed out of order
    when an earlier one failed), skipped so they are not sent again.
    """

    __slots__ = ("acked", "key", "path", "size", "start")

    def __init__(
        self, path: str, key: str, size: int, start: int, acked: Sequence[tuple[int, int]] = ()
    ) -> None:
        self.path = path
        self.key = key
        self.size = size
        self.start = start
        self.acked = tuple(acked)

    def __repr__(self) -> str:
        return f"Segment({os.path.basename(self.path)!r}, start={self.start}, size={self.size})"

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def pending_bytes(self) -> int:
        return max(0, self.size - self.start - sum(end - begin for begin, end in self.acked))

    def pending_lines(self) -> int:
        """Lines still to deliver: after ``start``, outside the acknowledged ranges."""
        acked = sum(count_lines(self.path, begin, end) for begin, end in self.acked)
        return max(0, count_lines(self.path, self.start) - acked)

    def records(self) -> Iterator[tuple[int, int, Item]]:
        """``(begin, end, record or BadLine)`` of every line still to deliver."""
        begin = self.start
        acked = self.acked
        for end, item in iter_records(self.path, self.start):
            if not acked or not any(low <= begin and end <= high for low, high in acked):
                yield begin, end, item
            begin = end

    def exists(self) -> bool:
        """False once the segment was purged or fully delivered by someone else."""
        return os.path.lexists(self.path)


def covers(offset: int, ranges: Sequence[tuple[int, int]], size: int) -> bool:
    """Whether ``[offset, size)`` is entirely inside the sorted acknowledged ``ranges``."""
    position = offset
    for begin, end in sorted(ranges):
        if begin > position:
            return False
        position = max(position, end)
    return position >= size


def read_position(path: str) -> tuple[int, list[tuple[int, int]]]:
    """A ``.pos`` file: the first undelivered byte, and ranges acknowledged after it."""
    raw = _fs.read_limited(path, 64 * 1024)
    if not raw:
        return 0, []
    try:
        data = loads(raw)
    except (ValueError, RecursionError):
        return 0, []
    if type(data) is int:  # the first release's form
        return max(0, data), []
    if type(data) is not dict or type(data.get("pos")) is not int:
        return 0, []
    if data.get("v", POSITION_VERSION) != POSITION_VERSION:
        return 0, []  # a newer format: resend from the start rather than skip what we misread
    acked = data.get("acked")
    ranges = []
    for pair in acked[:10_000] if type(acked) is list else ():
        if (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in pair)
            and 0 <= pair[0] < pair[1]
        ):
            ranges.append((pair[0], pair[1]))
    return max(0, data["pos"]), ranges


def refused(path: str) -> bool:
    """Whether ``path`` is not a regular file of ours with one link (noted for ``status``)."""
    if _fs.problem(path) is None:
        return False
    try:  # opening without blocking proves it and notes it in the unsafe files
        os.close(_fs.open_checked(path))
    except OSError:
        return True
    return False


def file_size(path: str) -> int:
    try:
        return os.stat(path, follow_symlinks=False).st_size
    except OSError:
        return 0


def file_mtime(path: str) -> float:
    try:
        return os.stat(path, follow_symlinks=False).st_mtime
    except OSError:
        return time.time()


def write_position(segment: Segment, offset: int, acked: Sequence[tuple[int, int]]) -> bool:
    """Record that ``segment`` was delivered before ``offset`` and inside ``acked``.

    Returns True when that covers the whole segment: it was removed (with its
    position file) instead.
    """
    ranges = [(begin, end) for begin, end in acked if end > offset]
    if offset >= segment.size or (ranges and covers(offset, ranges, segment.size)):
        _fs.remove(segment.path)
        _fs.remove(segment.path + ".pos")
        return True
    data: dict[str, object] = {"v": POSITION_VERSION, "pos": offset}
    if ranges:
        data["acked"] = ranges
    _fs.atomic_write(segment.path + ".pos", dumps_compact(data).encode())
    return False
