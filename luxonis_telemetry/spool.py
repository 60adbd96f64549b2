"""The per-user spool: JSON-lines segments on disk, shared by every process.

Layout of the folder (0700, files 0600)::

    lock                       append/seal/state lock (held for microseconds)
    upload.lock                held by the one uploader of this spool
    active.<lib>.jsonl         where captures of library <lib> are appended
    seg.<ns>.<lib>.jsonl       sealed segments, oldest first by name
    seg.<ns>.<lib>.jsonl.pos   bytes of that segment already delivered
    quarantine.jsonl           lines that were corrupt or permanently rejected
    state.json                 counters, last upload, exit back-off
    destinations.json          each library's backend, endpoint and key

Writers append whole lines with one ``write`` under ``lock``. The uploader
claims by renaming ``active`` files to segments under the same lock, so an
event appended meanwhile lands in a fresh file and is neither lost nor sent
twice; it then records how far each segment was confirmed, so a crash costs
at most one resend of the batch in flight. Caps drop whole sealed segments,
oldest first, and count what they drop.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import threading
import time

from ._lock import LockTimeout, ProcessLock
from .event import validate

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Callable, Optional

__all__ = [
    "DropCounter",
    "Segment",
    "Spool",
    "SpoolError",
    "count_lines",
    "iter_records",
    "library_key",
]

LOCK_TIMEOUT = 2.0
MAX_LINE_BYTES = 1024 * 1024
_READ_CHUNK = 256 * 1024
_KEEP_OPEN = os.name != "nt"  # Windows cannot rename a file others hold open
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_APPEND_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC
_SAFE_KEY = re.compile(r"[A-Za-z0-9_-]{1,48}")
_SEGMENT = re.compile(r"seg\.(\d+)\.([A-Za-z0-9_-]+)\.jsonl")
_ACTIVE = re.compile(r"active\.([A-Za-z0-9_-]+)\.jsonl")


class SpoolError(OSError):
    """The spool cannot be used here (no home, not a folder, not ours, ...)."""


def library_key(library: str) -> str:
    """A file-name-safe, stable key for a library name."""
    if _SAFE_KEY.fullmatch(library):
        return library
    import hashlib

    return "h" + hashlib.sha1(library.encode("utf-8", "replace")).hexdigest()[:16]  # noqa: S324


class BadLine:
    """A line that is not a well-formed event, kept for the quarantine."""

    __slots__ = ("head", "length", "reason")

    def __init__(self, reason: str, head: bytes, length: int) -> None:
        self.reason = reason
        self.head = head
        self.length = length

    def __repr__(self) -> str:
        return f"BadLine({self.reason!r}, length={self.length})"


def iter_records(
    path: str, start: int = 0, *, torn_tail_is_bad: bool = True
) -> Iterator[tuple[int, Any]]:
    """Yield ``(end_offset, record or BadLine)`` in constant memory.

    A line longer than ``MAX_LINE_BYTES`` is skipped without being held in
    memory. A last line without newline is torn (reported as bad) when
    ``torn_tail_is_bad``, else silently left for a writer that may still be
    finishing it.
    """
    try:
        handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return
    with handle:
        handle.seek(start)
        offset = start  # file offset of buffer[0]
        buffer = b""
        skipping = 0  # bytes of an oversized line skipped so far
        head = b""
        while chunk := handle.read(_READ_CHUNK):
            buffer = buffer + chunk if buffer else chunk
            cursor = 0
            while (newline := buffer.find(b"\n", cursor)) >= 0:
                line = buffer[cursor:newline]
                cursor = newline + 1
                if skipping:
                    yield offset + cursor, BadLine("line too long", head, skipping + len(line))
                    skipping = 0
                elif line.strip():
                    yield offset + cursor, _decode(line)
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


def _decode(line: bytes) -> Any:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return BadLine("not JSON", line[:512], len(line))
    record = validate(value)
    if record is None:
        return BadLine("not an event record", line[:512], len(line))
    return record


class Segment:
    """A sealed file of one library's events, delivered front to back."""

    __slots__ = ("key", "path", "size", "start")

    def __init__(self, path: str, key: str, size: int, start: int) -> None:
        self.path = path
        self.key = key
        self.size = size
        self.start = start

    def __repr__(self) -> str:
        return f"Segment({os.path.basename(self.path)!r}, start={self.start}, size={self.size})"

    @property
    def pending_bytes(self) -> int:
        return max(0, self.size - self.start)

    def records(self) -> Iterator[tuple[int, Any]]:
        return iter_records(self.path, self.start)


class DropCounter:
    """Drops not yet persisted; kept in memory when the disk refuses them."""

    def __init__(self) -> None:
        self.by_reason: dict[str, int] = {}
        self.total = 0

    def add(self, reason: str, count: int = 1) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + count
        self.total += count

    def take(self) -> dict[str, int]:
        taken, self.by_reason, self.total = self.by_reason, {}, 0
        return taken


class Spool:
    """A spool folder; one instance per process and path does the appending."""

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = 50 * 1024 * 1024,
        max_age_days: float = 30.0,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_days * 86400.0
        self.segment_bytes = min(4 * 1024 * 1024, max(16 * 1024, max_bytes // 16))
        self.unsaved_drops = DropCounter()
        self._thread_lock = threading.Lock()
        self._lock: Optional[ProcessLock] = None
        self._files: dict[str, int] = {}
        self._ends: dict[str, int] = {}
        self._keys: dict[str, str] = {}
        self._paths: dict[str, str] = {}
        self._pid = os.getpid()
        self._ready = False

    # -- files and folder -------------------------------------------------

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def problem(self) -> Optional[str]:
        """Why this spool cannot be used, in one line; ``None`` when it can."""
        if not os.path.lexists(self.path):
            return None
        if os.path.islink(self.path) or not os.path.isdir(self.path):
            return f"spool path {self.path} is not a folder"
        try:
            os.listdir(self.path)
        except OSError as exc:
            return f"cannot read the spool folder {self.path}: {exc.strerror}"
        if not os.access(self.path, os.W_OK):
            return f"the spool folder {self.path} is read-only"
        return None

    def ensure_folder(self) -> None:
        """Create the folder 0700, or refuse one that is unsafe to write into."""
        if self._ready:
            return
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
        except FileExistsError as exc:
            raise SpoolError(errno.ENOTDIR, "spool path is not a folder", self.path) from exc
        info = os.lstat(self.path)
        if not stat.S_ISDIR(info.st_mode):
            raise SpoolError(errno.ENOTDIR, "spool path is not a folder", self.path)
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise SpoolError(errno.EPERM, "spool folder belongs to another user", self.path)
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.path, 0o700)
        self._ready = True

    def _process_lock(self) -> ProcessLock:
        if self._lock is None:
            self._lock = ProcessLock(self.file("lock"))
        return self._lock

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the append lock: appends, seals, caps and state change under it."""
        with self._thread_lock:
            lock = self._take_lock()
            try:
                yield
            finally:
                lock.release()

    def _take_lock(self) -> ProcessLock:
        """The held process lock (caller holds the thread lock).

        If the folder vanished under us (deleted by hand while we run), it is
        created again once, with a fresh lock file, rather than locking a
        deleted file that excludes nobody.
        """
        if self._pid != os.getpid():
            self._after_fork_check()
        for attempt in (1, 2):
            if not self._ready:
                self.ensure_folder()
            lock = self._lock or self._process_lock()
            try:
                if not lock.acquire(LOCK_TIMEOUT):
                    raise LockTimeout(errno.EAGAIN, "spool lock busy", lock.path)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                self.forget_descriptors()
                continue
            return lock
        raise AssertionError("unreachable")

    def _after_fork_check(self) -> None:
        if self._pid != os.getpid():
            self.forget_descriptors()
            self._pid = os.getpid()

    def forget_descriptors(self) -> None:
        """Close our descriptors; used at shutdown and in a forked child."""
        for fd in self._files.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._files.clear()
        self._ends.clear()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self._ready = False

    def reset_thread_lock(self) -> None:
        """A forked child may inherit the lock mid-use by a thread that is gone."""
        self._thread_lock = threading.Lock()

    # -- appending ----------------------------------------------------------

    def append(self, library: str, line: bytes) -> None:
        """Append one encoded line for ``library``; raises ``OSError`` on failure."""
        key = self._keys.get(library) or self._key_for(library)
        with self._thread_lock:
            lock = self._take_lock()
            try:
                self._append_locked(key, line)
            finally:
                lock.release()

    def _append_locked(self, key: str, line: bytes) -> None:
        fd, end = self._active_descriptor(key)
        try:
            if end and self._ends.get(key) != end and _last_byte(fd, end) != b"\n":
                # Someone died mid-line: isolate the torn bytes so ours stay whole.
                os.write(fd, b"\n")
                end += 1
            try:
                written = os.write(fd, line)
            except OSError:
                _truncate_quietly(fd, end)
                raise
            if written != len(line):
                _truncate_quietly(fd, end)
                raise OSError(errno.ENOSPC, "short write to spool")
            end += written
            self._ends[key] = end
        finally:
            if not _KEEP_OPEN:  # pragma: no cover - Windows
                self._close_active(key)
        if self.unsaved_drops.total:
            self._save_drops_locked()
        if end >= self.segment_bytes:
            self._seal_locked(key)
            self._enforce_caps_locked()

    def _key_for(self, library: str) -> str:
        key = library_key(library)
        if len(self._keys) < 1024:
            self._keys[library] = key
        return key

    def _active_descriptor(self, key: str) -> tuple[int, int]:
        """Our descriptor of the active file and its size.

        Sealing makes a file read-only before renaming it and purging unlinks
        it, so one ``fstat`` tells whether the descriptor still is the active
        file (cheaper than a ``stat`` of the path).
        """
        fd = self._files.get(key)
        if fd is not None:
            info = os.fstat(fd)
            if info.st_nlink and info.st_mode & stat.S_IWUSR:
                return fd, info.st_size
            self._close_active(key)
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = self.file(f"active.{key}.jsonl")
        fd = os.open(path, _APPEND_FLAGS, 0o600)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise SpoolError(errno.EPERM, "refusing a spool file that is not ours", path)
        if not info.st_mode & stat.S_IWUSR:
            os.fchmod(fd, 0o600)
        self._files[key] = fd
        return fd, info.st_size

    def _close_active(self, key: str) -> None:
        fd = self._files.pop(key, None)
        self._ends.pop(key, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- sealing and caps ---------------------------------------------------

    def _seal_locked(self, key: str) -> None:
        source = self.file(f"active.{key}.jsonl")
        try:
            if os.path.getsize(source) == 0:
                return
        except OSError:
            return
        target = self.file(f"seg.{time.time_ns():020d}.{key}.jsonl")
        if _KEEP_OPEN:
            os.chmod(source, 0o400)  # tells writers holding it open: sealed
        os.replace(source, target)
        self._close_active(key)

    def seal_all(self) -> None:
        """Turn every non-empty active file into a segment (the uploader's claim)."""
        with self.locked():
            for name in self._names():
                match = _ACTIVE.fullmatch(name)
                if match:
                    self._seal_locked(match.group(1))
            self._enforce_caps_locked()

    def enforce_caps(self) -> None:
        with self.locked():
            self._enforce_caps_locked()

    def _enforce_caps_locked(self) -> None:
        now = time.time()
        self._remove_leftovers_locked(now)
        cutoff = now - self.max_age_seconds
        segments = self.segments()
        kept: list[Segment] = []
        for segment in segments:
            if _mtime(segment.path) < cutoff:
                self._drop_segment_locked(segment, "age_cap")
            else:
                kept.append(segment)
        total = sum(s.size for s in kept) + sum(
            _size(self.file(name)) for name in self._names() if _ACTIVE.fullmatch(name)
        )
        while kept and total > self.max_bytes:
            oldest = kept.pop(0)
            self._drop_segment_locked(oldest, "size_cap")
            total -= oldest.size

    def _remove_leftovers_locked(self, now: float) -> None:
        """Temp files of crashed writers and positions of vanished segments."""
        names = set(self._names())
        for name in names:
            stale_tmp = name.endswith(".tmp") and _mtime(self.file(name)) < now - 60
            orphan_pos = name.endswith(".jsonl.pos") and name[: -len(".pos")] not in names
            if stale_tmp or orphan_pos:
                _unlink_quietly(self.file(name))

    def _drop_segment_locked(self, segment: Segment, reason: str) -> None:
        lines = count_lines(segment.path, segment.start)
        _unlink_quietly(segment.path)
        _unlink_quietly(segment.path + ".pos")
        if lines:
            self._update_state_locked(lambda state: _add_drops(state, {reason: lines}))

    def _save_drops_locked(self) -> None:
        drops = self.unsaved_drops.take()
        try:
            self._update_state_locked(lambda state: _add_drops(state, drops))
        except OSError:
            for reason, count in drops.items():
                self.unsaved_drops.add(reason, count)

    # -- reading ------------------------------------------------------------

    def _names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.path))
        except OSError:
            return []

    def segments(self) -> list[Segment]:
        """Sealed segments, oldest first, each from its first undelivered byte."""
        found = []
        for name in self._names():
            match = _SEGMENT.fullmatch(name)
            if not match:
                continue
            path = self.file(name)
            size = _size(path)
            found.append(Segment(path, match.group(2), size, min(size, _read_pos(path))))
        return found

    def active_files(self) -> list[str]:
        return [self.file(n) for n in self._names() if _ACTIVE.fullmatch(n)]

    def iter_pending(self) -> Iterator[tuple[int, Any]]:
        """Every pending record (or bad line), sealed first, then the active ones."""
        for segment in self.segments():
            yield from segment.records()
        for path in self.active_files():
            yield from iter_records(path, torn_tail_is_bad=False)

    def pending_bytes(self) -> int:
        return sum(s.pending_bytes for s in self.segments()) + sum(
            _size(p) for p in self.active_files()
        )

    # -- delivery bookkeeping (the uploader holds upload.lock) ---------------

    def upload_lock(self) -> ProcessLock:
        self.ensure_folder()
        return ProcessLock(self.file("upload.lock"))

    def commit(self, segment: Segment, offset: int) -> None:
        """Everything before ``offset`` left the spool; forget it durably."""
        if offset >= segment.size:
            _unlink_quietly(segment.path)
            _unlink_quietly(segment.path + ".pos")
            return
        _write_private(segment.path + ".pos", str(offset).encode())

    def quarantine(self, entries: list[dict[str, Any]]) -> None:
        """Keep lines we will not send where a person can look at them."""
        if not entries:
            return
        data = b"".join(
            json.dumps(entry, separators=(",", ":")).encode() + b"\n" for entry in entries
        )
        with self.locked():
            fd = os.open(self.file("quarantine.jsonl"), _APPEND_FLAGS, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            self._update_state_locked(
                lambda state: state.__setitem__(
                    "quarantined", int(state.get("quarantined", 0)) + len(entries)
                )
            )

    def purge(self) -> int:
        """Delete every pending event; returns how many there were."""
        if not self.exists():
            return 0
        removed = 0
        with self.locked():
            for segment in self.segments():
                removed += count_lines(segment.path, segment.start)
                _unlink_quietly(segment.path)
                _unlink_quietly(segment.path + ".pos")
            for path in self.active_files():
                removed += count_lines(path, 0)
                _unlink_quietly(path)
            for key in list(self._files):
                self._close_active(key)
        return removed

    # -- small private JSON files ---------------------------------------------

    def read_state(self) -> dict[str, Any]:
        return _read_json(self.file("state.json"))

    def update_state(self, change: Callable[[dict[str, Any]], None]) -> None:
        with self.locked():
            self._update_state_locked(change)

    def _update_state_locked(self, change: Callable[[dict[str, Any]], None]) -> None:
        path = self.file("state.json")
        state = _read_json(path)
        change(state)
        _write_private(path, json.dumps(state, sort_keys=True).encode())

    def read_destinations(self) -> dict[str, dict[str, Any]]:
        data = _read_json(self.file("destinations.json"))
        return {k: v for k, v in data.items() if isinstance(v, dict)}

    def record_destination(self, library: str, destination: dict[str, Any]) -> None:
        """Remember where ``library`` sends, privately (0600), if it changed."""
        with self.locked():
            path = self.file("destinations.json")
            data = _read_json(path)
            if data.get(library) == destination:
                return
            data[library] = destination
            _write_private(path, json.dumps(data, sort_keys=True).encode())


def _add_drops(state: dict[str, Any], drops: dict[str, int]) -> None:
    dropped = state.get("dropped")
    if not isinstance(dropped, dict):
        dropped = {}
    for reason, count in drops.items():
        dropped[reason] = int(dropped.get(reason, 0)) + count
    state["dropped"] = dropped


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read(4 * 1024 * 1024))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_private(path: str, data: bytes) -> None:
    """Replace ``path`` atomically with a 0600 file (never through a symlink)."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | _CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        _unlink_quietly(tmp)
        raise


def _read_pos(segment_path: str) -> int:
    try:
        with open(segment_path + ".pos", "rb") as handle:
            return max(0, int(handle.read(32)))
    except (OSError, ValueError):
        return 0


def _last_byte(fd: int, end: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, 1, end - 1)
    return b"\n"  # pragma: no cover - no pread: the reader copes with a torn line


def _truncate_quietly(fd: int, size: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _size(path: str) -> int:
    try:
        return os.stat(path, follow_symlinks=False).st_size
    except OSError:
        return 0


def _mtime(path: str) -> float:
    try:
        return os.stat(path, follow_symlinks=False).st_mtime
    except OSError:
        return time.time()


def count_lines(path: str, start: int) -> int:
    count = 0
    try:
        with open(path, "rb", buffering=0) as handle:
            handle.seek(start)
            while chunk := handle.read(_READ_CHUNK):
                count += chunk.count(b"\n")
    except OSError:
        return 0
    return count
