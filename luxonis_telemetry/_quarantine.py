"""``quarantine.jsonl``: what will never be sent, kept where a person can look at it.

Corrupt lines (only their head) and events a server permanently refused
land here instead of blocking the rest. The file counts against the spool's
size cap and is bounded on its own: when an append would take it past its
share of the cap, the older entries are dropped first (and counted).
``purge`` and ``disable`` remove it with everything else.
"""

from __future__ import annotations

import json
import os

from . import _fs
from ._reader import count_lines

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

__all__ = ["QUARANTINE_FILE", "append_entries", "iter_entries", "quarantine_limit"]

QUARANTINE_FILE = "quarantine.jsonl"
_MAX_SHOWN = 64 * 1024


def quarantine_limit(max_spool_bytes: int) -> int:
    """The quarantine's share of the spool cap: an eighth, at least 64 KiB."""
    return max(64 * 1024, max_spool_bytes // 8)


def append_entries(folder: str, entries: Sequence[dict[str, Any]], limit: int) -> int:
    """Append ``entries`` (caller holds the spool lock); returns how many old ones were dropped."""
    data = b"".join(
        json.dumps(entry, separators=(",", ":"), default=str).encode() + b"\n" for entry in entries
    )
    path = os.path.join(folder, QUARANTINE_FILE)
    dropped = 0
    try:
        size = os.lstat(path).st_size
    except FileNotFoundError:
        size = 0
    if size and size + len(data) > limit:
        dropped = count_lines(path)
        _fs.remove(path)
    if len(data) > limit:
        data = _keep_tail(data, limit)
    fd = _fs.open_checked(path, _fs.APPEND_FLAGS)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return dropped


def _keep_tail(data: bytes, limit: int) -> bytes:
    """The newest whole lines of ``data`` that fit in ``limit``."""
    cut = data.find(b"\n", len(data) - limit)
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
