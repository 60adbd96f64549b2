"""``quarantine.jsonl``: what will never be sent, kept where a person can look at it.

Corrupt lines (only their head) and events a server permanently refused
land here instead of blocking the rest. The file counts against the spool's
size cap and is bounded on its own: when an append would take it past its
share of the cap, the older entries are dropped first (and counted).
``purge`` and ``disable`` remove it with everything else.
"""

from __future__ import annotations

import os

from . import _fs
from ._jsonio import dumps_compact

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

__all__ = ["ENTRY_VERSION", "QUARANTINE_FILE", "append_entries", "iter_entries", "quarantine_limit"]

QUARANTINE_FILE = "quarantine.jsonl"
ENTRY_VERSION = 1
_MAX_SHOWN = 64 * 1024


def quarantine_limit(max_spool_bytes: int) -> int:
    """The quarantine's share of the spool cap: an eighth, at least 64 KiB."""
    return max(64 * 1024, max_spool_bytes // 8)


def _entry_line(entry: dict[str, Any]) -> bytes:
    """One quarantine line (with its format version); a value JSON cannot hold is its ``str``."""
    entry = {"v": ENTRY_VERSION, **entry}
    try:
        return dumps_compact(entry).encode() + b"\n"
    except (TypeError, ValueError):
        import json

        return json.dumps(entry, separators=(",", ":"), default=str).encode() + b"\n"


def append_entries(folder: str, entries: Sequence[dict[str, Any]], limit: int) -> int:
    """Append ``entries`` (caller holds the spool lock); returns how many entries were dropped.

    Over ``limit``, the oldest entries go first: the newest whole lines are
    kept, in a quarter less than the limit so the next appends do not have
    to trim again. Raises :class:`~luxonis_telemetry._fs.UnsafeFile` when the
    name holds anything but a regular file of ours with one link (it is
    neither written nor read).
    """
    data = b"".join(_entry_line(entry) for entry in entries)
    path = os.path.join(folder, QUARANTINE_FILE)
    fd = _fs.open_checked(path, _fs.APPEND_FLAGS)
    try:
        size = os.fstat(fd).st_size
        if size and _tail(fd, size, 1, whole_lines=False) != b"\n":  # a writer died mid-line
            data = b"\n" + data
        if size + len(data) <= limit:
            _write_all(fd, data)
            return 0
        room = max(0, limit * 3 // 4 - len(data))
        kept_old = _tail(fd, size, room)
        old_lines = _count_newlines(fd, size)
    finally:
        os.close(fd)
    kept = _keep_tail(kept_old + data, limit)
    _fs.atomic_write(path, kept)
    return max(0, old_lines + len(entries) - kept.count(b"\n"))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _tail(fd: int, size: int, room: int, *, whole_lines: bool = True) -> bytes:
    """The last ``room`` bytes of the open file (only its whole lines, by default)."""
    if room <= 0 or size <= 0:
        return b""
    start = max(0, size - room)
    os.lseek(fd, start, os.SEEK_SET)
    chunk = os.read(fd, size - start)
    if start == 0 or not whole_lines:
        return chunk
    cut = chunk.find(b"\n")
    return chunk[cut + 1 :] if cut >= 0 else b""


def _count_newlines(fd: int, size: int) -> int:
    os.lseek(fd, 0, os.SEEK_SET)
    count = 0
    remaining = size
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break
        count += chunk.count(b"\n")
        remaining -= len(chunk)
    return count


def _keep_tail(data: bytes, limit: int) -> bytes:
    """The newest whole lines of ``data`` that fit in ``limit``."""
    if len(data) <= limit:
        return data
    cut = data.find(b"\n", len(data) - limit - 1)
    return data[cut + 1 :] if cut >= 0 else b""


def iter_entries(folder: str) -> Iterator[str]:
    """The quarantined lines as text (for ``inspect --quarantined``), never trusted."""
    path = os.path.join(folder, QUARANTINE_FILE)
    try:
        fd = _fs.open_checked(path)
    except OSError:
        return
    with os.fdopen(fd, "rb") as handle:
        while line := handle.readline(_MAX_SHOWN):
            tail = line
            while tail and not tail.endswith(b"\n"):  # an overlong line: skip the rest
                tail = handle.readline(_MAX_SHOWN)
            yield line.rstrip(b"\n").decode("utf-8", "replace")
