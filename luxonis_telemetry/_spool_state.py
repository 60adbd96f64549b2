"""``state.json`` in the spool folder: counters, the last upload, back-off, bundle progress.

Five parts of the library need these facts, so one module owns the file
and hands out a typed :class:`SpoolState`. Whatever is on disk (an older or
newer version, a hand edit, garbage) reads as a valid state: unknown or
malformed fields fall back to their defaults, and keys this version does
not know are kept when the file is rewritten, so a newer installed copy
sharing the folder loses nothing. A file of a newer format makes the exit
hook back off (it will not act on a schedule it does not understand).
Callers change the file only under the spool lock.
"""

from __future__ import annotations

import math
import os
import time

from . import _fs
from ._jsonio import dumps_compact, loads

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, Optional

__all__ = [
    "FORMAT_VERSION",
    "MAX_BACKOFF_AHEAD",
    "STATE_FILE",
    "DropCounter",
    "SpoolState",
    "load_state",
    "update_state",
]

FORMAT_VERSION = 1
STATE_FILE = "state.json"
_MAX_BYTES = 4 * 1024 * 1024
_MAX_BUNDLES = 256
MAX_BACKOFF_AHEAD = 24 * 3600.0
"""No exit back-off lasts longer (the uploader's longest is 6 h)."""
_KNOWN_KEYS = frozenset(
    {"v", "dropped", "quarantined", "last_upload", "exit_backoff", "bundles", "auth_failure"}
)


def _int(value: Any, default: int = 0) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    )


_LAST_MOMENT = 253402300799.0  # 9999-12-31T23:59:59Z, the last second datetime can show


def _number(value: Any) -> Optional[float]:
    """A time in seconds since the epoch, within what ``datetime`` can show; else ``None``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            return None
        return number if math.isfinite(number) and 0 <= number <= _LAST_MOMENT else None
    return None


def _newer(version: Any) -> bool:
    """Whether ``v`` names a later format; anything but a number is a hand edit, not a version."""
    return type(version) is int and version > FORMAT_VERSION


def _next_attempt(value: Any) -> float:
    """When exit uploads may resume; a time beyond any back-off from now is ignored.

    A clock that was set years ahead when an upload failed (or a hand edit)
    would otherwise stop exit uploads until that date.
    """
    number = _number(value)
    if number is None or number <= 0 or number > time.time() + MAX_BACKOFF_AHEAD:
        return 0.0
    return number


def _text(value: Any) -> Optional[str]:
    return value[:2000] if isinstance(value, str) else None


def _ranges(value: Any) -> tuple[tuple[int, int], ...]:
    """Acknowledged byte ranges: pairs of non-negative ints, begin < end; anything else dropped."""
    if not isinstance(value, list):
        return ()
    found = []
    for pair in value[:10_000]:
        if isinstance(pair, list) and len(pair) == 2:
            begin, end = _int(pair[0], -1), _int(pair[1], -1)
            if 0 <= begin < end:
                found.append((begin, end))
    return tuple(found)


class SpoolState:
    """The typed content of ``state.json``; mutate it inside :func:`update_state`."""

    __slots__ = (
        "auth_failure",
        "backoff_failures",
        "bundles",
        "dropped",
        "last_upload",
        "newer_format",
        "next_attempt_at",
        "quarantined",
        "unknown",
    )

    def __init__(self, data: Optional[dict[str, Any]] = None) -> None:
        data = data or {}
        self.newer_format = _newer(data.get("v"))
        dropped = data.get("dropped")
        self.dropped: dict[str, int] = {
            str(reason): _int(count)
            for reason, count in (dropped.items() if isinstance(dropped, dict) else ())
            if _int(count)
        }
        self.quarantined = _int(data.get("quarantined"))
        last = data.get("last_upload")
        self.last_upload: Optional[dict[str, Any]] = None
        if isinstance(last, dict) and _number(last.get("at")) is not None:
            self.last_upload = {
                "at": _number(last.get("at")),
                "sent": _int(last.get("sent")),
                "pending": _int(last.get("pending")),
                "failed": _int(last.get("failed")),
                "error": _text(last.get("error")),
            }
        backoff = data.get("exit_backoff")
        backoff = backoff if isinstance(backoff, dict) else {}
        self.backoff_failures = _int(backoff.get("failures"))
        self.next_attempt_at = _next_attempt(backoff.get("next_attempt_at"))
        bundles = data.get("bundles")
        self.bundles: dict[str, tuple[int, tuple[tuple[int, int], ...]]] = {
            str(sha): (entry["delivered"], _ranges(entry.get("acked")))
            for sha, entry in (bundles.items() if isinstance(bundles, dict) else ())
            if isinstance(entry, dict) and _int(entry.get("delivered"), -1) >= 0
        }
        auth = data.get("auth_failure")
        self.auth_failure: Optional[dict[str, Any]] = None
        if isinstance(auth, dict) and _number(auth.get("at")) is not None:
            self.auth_failure = {
                "at": _number(auth.get("at")),
                "status": _int(auth.get("status")),
                "destination": _text(auth.get("destination")),
                "message": _text(auth.get("message")),
            }
        self.unknown = {key: value for key, value in data.items() if key not in _KNOWN_KEYS}

    def add_drops(self, drops: dict[str, int]) -> None:
        """Count events that were dropped, by reason."""
        for reason, count in drops.items():
            if count > 0:
                self.dropped[reason] = self.dropped.get(reason, 0) + count

    def set_bundle_progress(
        self, sha256: str, delivered: int, acked: Sequence[tuple[int, int]] = ()
    ) -> None:
        """Remember how far a bundle was delivered, and ranges acknowledged beyond that.

        The most recent bundles are kept.
        """
        self.bundles.pop(sha256, None)
        self.bundles[sha256] = (delivered, tuple((a, b) for a, b in acked if b > delivered))

    def bundle_progress(self, sha256: str) -> tuple[int, tuple[tuple[int, int], ...]]:
        """``(delivered prefix, acknowledged ranges)`` of a bundle (``(0, ())`` if unknown)."""
        return self.bundles.get(sha256, (0, ()))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.unknown)
        data["v"] = FORMAT_VERSION
        data["dropped"] = self.dropped
        data["quarantined"] = self.quarantined
        if self.last_upload is not None:
            data["last_upload"] = self.last_upload
        if self.backoff_failures or self.next_attempt_at:
            data["exit_backoff"] = {
                "failures": self.backoff_failures,
                "next_attempt_at": self.next_attempt_at,
            }
        if self.bundles:
            newest = list(self.bundles.items())[-_MAX_BUNDLES:]
            data["bundles"] = {
                sha: {"delivered": done, **({"acked": [list(r) for r in acked]} if acked else {})}
                for sha, (done, acked) in newest
            }
        if self.auth_failure is not None:
            data["auth_failure"] = self.auth_failure
        return data


def load_state(folder: str) -> SpoolState:
    """The state in ``folder``; anything unreadable reads as a fresh state."""
    raw = _fs.read_limited(os.path.join(folder, STATE_FILE), _MAX_BYTES)
    if not raw:
        return SpoolState()
    try:
        data = loads(raw)
    except (ValueError, RecursionError):
        return SpoolState()
    return SpoolState(data if isinstance(data, dict) else None)


def update_state(folder: str, change: Callable[[SpoolState], None]) -> SpoolState:
    """Read, apply ``change`` and write back atomically (the caller holds the spool lock).

    A file of a newer format keeps its version number: we rewrite only what
    we understand and keep the rest.
    """
    path = os.path.join(folder, STATE_FILE)
    raw = _fs.read_limited(path, _MAX_BYTES)
    data: Any = None
    if raw:
        try:
            data = loads(raw)
        except (ValueError, RecursionError):
            data = None
    state = SpoolState(data if isinstance(data, dict) else None)
    change(state)
    out = state.to_json()
    if state.newer_format and isinstance(data, dict):
        out["v"] = data.get("v")
    # not sorted: the order of `bundles` is their recency
    _fs.atomic_write(path, dumps_compact(out).encode())
    return state


class DropCounter:
    """Drops not yet persisted; kept in memory while the disk refuses them.

    Counted exactly even when a signal handler or a finalizer counts a drop
    in the middle of another count on the same thread: ``add`` is one
    ``list.append`` (no read-modify-write a handler could interleave with)
    and ``take`` swaps the containers without a call in between, where
    CPython could run a handler or switch threads. Long lists are folded
    into per-reason totals, so memory stays bounded while drops pile up.
    """

    __slots__ = ("_folded", "_pending")

    _FOLD_AT = 1024

    def __init__(self) -> None:
        self._pending: list[tuple[str, int]] = []
        self._folded: dict[str, int] = {}

    def add(self, reason: str, count: int = 1) -> None:
        self._pending.append((reason, count))
        if len(self._pending) > self._FOLD_AT:
            pending = self._pending
            self._pending = []
            _fold(self._folded, pending)

    def __bool__(self) -> bool:
        return bool(self._pending or self._folded)

    @property
    def by_reason(self) -> dict[str, int]:
        """A snapshot of the counts, by reason."""
        return _fold(dict(self._folded), list(self._pending))

    def take(self) -> dict[str, int]:
        """The counts, removed from this counter."""
        pending = self._pending
        self._pending = []
        folded = self._folded
        self._folded = {}
        return _fold(folded, pending)


def _fold(totals: dict[str, int], pending: list[tuple[str, int]]) -> dict[str, int]:
    for reason, count in pending:
        totals[reason] = totals.get(reason, 0) + count
    return totals
