"""The per-user spool: JSON-lines segments on disk, shared by every process.

Layout of the folder (0700, files 0600)::

    lock                       append/seal/state lock (held for microseconds)
    upload.lock                held by the one uploader of this spool
    active.<lib>.jsonl         where captures of library <lib> are appended
    seg.<ns>.<lib>.jsonl       sealed segments, oldest first by name
    seg.<ns>.<lib>.jsonl.pos   how much of that segment was delivered
    quarantine.jsonl           lines that were corrupt or permanently refused
    state.json                 counters, last upload, exit back-off
    destinations.json          each library's backend, endpoint and key

Writers append whole lines with one ``write`` under ``lock``. The uploader
claims by renaming ``active`` files to segments under the same lock, so an
event appended meanwhile lands in a fresh file and is neither lost nor sent
twice; it records how far each segment was confirmed, so a crash costs at
most one resend of what was in flight. Caps drop whole sealed segments,
oldest first, and count what they drop.

The lock never makes the host wait long: a capture that cannot get it
within ``LOCK_TIMEOUT`` drops its event (counted), and later captures of
the same process drop at once until the lock is seen free again, so a
stuck holder costs each process one bounded wait. A capture re-entered on
the same thread (a signal handler, a finalizer run by the garbage
collector) drops its event instead of waiting for itself.
"""

from __future__ import annotations

import _thread
import errno
import os
import stat
import time

from . import _destinations, _fs, _log, _quarantine, _spool_state, _state
from ._lock import LockTimeout, ProcessLock
from ._reader import BadLine, count_lines, iter_records
from ._segments import (
    Segment,
    active_key,
    file_mtime,
    file_size,
    library_key,
    read_position,
    refused,
    segment_key,
    write_position,
)
from ._spool_state import DropCounter
from .config import APP_NAME

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any, Optional

    from ._reader import Item

__all__ = [
    "LOCK_TIMEOUT",
    "Reentered",
    "Segment",
    "Spool",
    "SpoolError",
    "TurnedOff",
    "library_key",
]

LOCK_TIMEOUT = 2.0
# A thread of ours inside the lock longer than this is stuck (a hung disk), not
# slow: it waits at most LOCK_TIMEOUT for the process lock, then leaves.
_STUCK_AFTER = LOCK_TIMEOUT + 1.0
_KEEP_OPEN = os.name != "nt"  # Windows cannot rename a file others hold open


class SpoolError(OSError):
    """The spool cannot be used here (not a folder, not ours, ...)."""


class Reentered(OSError):
    """A capture re-entered on a thread that is already writing to this spool."""


class TurnedOff(OSError):
    """The user turned telemetry off while this process ran (the spool was removed)."""


def _still_on() -> bool:
    """Whether the user's choice still allows recording (read when the spool vanished)."""
    from .config import decide_mode, read_dotenv

    return decide_mode("on", os.environ, read_dotenv()).mode != "off"


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
        self._thread_lock = _thread.allocate_lock()
        # threads inside (or entering) the locked section; a thread found here
        # again is re-entering from a signal handler or a finalizer
        self._busy: set[int] = set()
        self._stuck = False  # the process lock timed out; fail fast until seen free
        self._entered_at = 0.0  # when the thread now holding the thread lock took it
        self._lock: Optional[ProcessLock] = None
        self._files: dict[str, int] = {}
        self._ends: dict[str, int] = {}
        self._keys: dict[str, str] = {}
        self._paths: dict[str, str] = {}
        self._forks = _state.forks
        self._ready = False

    # -- files and folder -------------------------------------------------

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def exists(self) -> bool:
        return os.path.isdir(self.path) and not os.path.islink(self.path)

    def problem(self) -> Optional[str]:
        """Why this spool cannot be used, in one line; ``None`` when it can."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"cannot examine the spool folder {self.path}: {exc.strerror}"
        if not stat.S_ISDIR(info.st_mode):
            return f"spool path {self.path} is not a folder"
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            return f"the spool folder {self.path} belongs to another user (uid {info.st_uid})"
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
            _fs.ensure_private_folder(self.path)
        except (NotADirectoryError, FileExistsError) as exc:
            raise SpoolError(errno.ENOTDIR, "spool path is not a folder", self.path) from exc
        except _fs.UnsafeFile as exc:
            raise SpoolError(
                errno.EPERM, "spool folder belongs to another user", self.path
            ) from exc
        self._ready = True

    def locked(self) -> _Locked:
        """Hold the append lock: appends, seals, caps and state changes happen under it."""
        return _Locked(self)

    def _enter(self, recording: bool = False) -> ProcessLock:
        """Take the thread lock, then the process lock; never wait for ourselves.

        The thread is marked busy *before* it takes the thread lock and
        unmarked after releasing it, so a capture re-entered at any instant
        in between (a signal handler, a ``__del__`` run by the garbage
        collector) sees the mark and gives up at once.
        """
        if self._forks != _state.forks:
            self.after_fork()
        me = _thread.get_ident()
        busy = self._busy
        if me in busy:
            raise Reentered(errno.EDEADLK, "capture re-entered while writing", self.path)
        busy.add(me)
        try:
            thread_lock = self._thread_lock
            if not thread_lock.acquire(False) and not thread_lock.acquire(
                timeout=self._thread_wait()
            ):
                raise LockTimeout(errno.EAGAIN, "spool busy in this process", self.path)
            self._entered_at = time.monotonic()
            try:
                return self._take_lock(recording)
            except BaseException:
                self._entered_at = 0.0
                thread_lock.release()
                raise
        except BaseException:
            busy.discard(me)
            raise

    def _thread_wait(self) -> float:
        """How long to wait for another thread of ours: not at all once it is stuck.

        Threads queueing behind busy writers wait up to ``LOCK_TIMEOUT``; a
        holder inside for longer than ``_STUCK_AFTER`` costs the others no
        wait, so a hung write costs this process one bounded wait.
        """
        entered_at = self._entered_at
        if not entered_at:
            return LOCK_TIMEOUT
        return max(0.0, min(LOCK_TIMEOUT, entered_at + _STUCK_AFTER - time.monotonic()))

    def _exit(self, lock: ProcessLock) -> None:
        try:
            lock.release()
        finally:
            self._entered_at = 0.0
            self._thread_lock.release()
            self._busy.discard(_thread.get_ident())

    def _take_lock(self, recording: bool) -> ProcessLock:
        """The held process lock (caller holds the thread lock).

        If the folder vanished under us (deleted by hand while we run), it is
        created again once, with a fresh lock file, rather than locking a
        deleted file that excludes nobody; but never when the user turned
        telemetry off meanwhile (``disable`` removes the folder): then
        :class:`TurnedOff`. A capture (``recording``) does not create a
        missing folder after an opt-out either.
        """
        for attempt in (1, 2):
            if not self._ready:
                if recording and not os.path.lexists(self.path) and not _still_on():
                    raise TurnedOff(errno.EPERM, "telemetry was turned off", self.path)
                self.ensure_folder()
            if self._lock is None:
                self._lock = ProcessLock(self.file("lock"))
            lock = self._lock
            try:
                taken = lock.acquire(0 if self._stuck else LOCK_TIMEOUT)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                self.forget_descriptors()
                if not _still_on():  # `disable` removed the spool: never recreate it
                    raise TurnedOff(errno.EPERM, "telemetry was turned off", self.path) from None
                continue
            if not taken:
                self._stuck = True
                raise LockTimeout(errno.EAGAIN, "spool lock held by another process", lock.path)
            self._stuck = False
            return lock
        raise AssertionError("unreachable")

    def after_fork(self) -> None:
        """A forked child must not share descriptors, a lock another thread held, or drops.

        The parent saves the drops it counted; the child counts only its own.
        """
        self.forget_descriptors()
        self.unsaved_drops = DropCounter()
        self._thread_lock = _thread.allocate_lock()
        self._busy = set()
        self._stuck = False
        self._entered_at = 0.0
        self._forks = _state.forks

    def forget_descriptors(self) -> None:
        """Close our descriptors; used at shutdown and in a forked child."""
        for fd in self._files.values():
            _close_quietly(fd)
        self._files.clear()
        self._ends.clear()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self._ready = False

    def close(self) -> None:
        """Close our files (a later append opens them again).

        Needs only this process's thread lock, so a stuck holder of the
        spool lock cannot make a shutdown wait; skipped when re-entered on a
        thread that is writing, or when another thread keeps writing.
        """
        me = _thread.get_ident()
        if me in self._busy:
            return
        self._busy.add(me)
        try:
            if self._thread_lock.acquire(timeout=self._thread_wait()):
                try:
                    self.forget_descriptors()
                finally:
                    self._thread_lock.release()
        finally:
            self._busy.discard(me)

    # -- appending ----------------------------------------------------------

    def append(self, library: str, line: bytes) -> None:
        """Append one encoded line for ``library``; raises ``OSError`` on failure."""
        key = self._keys.get(library) or self._key_for(library)
        lock = self._enter(recording=True)
        try:
            self._append_locked(key, line)
        finally:
            self._exit(lock)

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
        # The line is on disk: housekeeping that fails now must not report it lost.
        try:
            if self.unsaved_drops:
                self._save_drops_locked()
            if end >= self.segment_bytes:
                self._seal_locked(key)
                self._enforce_caps_locked()
        except OSError as exc:
            _log.debug("spool housekeeping failed after an append: %s", exc)
        except Exception as exc:  # noqa: BLE001 - the event is stored: never count it lost
            _log.internal_error("spool housekeeping after an append", exc)

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
            if not info.st_nlink and not _still_on():  # purged by `disable`
                raise TurnedOff(errno.EPERM, "telemetry was turned off", self.path)
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = self.file(f"active.{key}.jsonl")
        fd = _fs.open_checked(path, _fs.APPEND_FLAGS)
        info = os.fstat(fd)
        if not info.st_mode & stat.S_IWUSR:
            os.fchmod(fd, 0o600)
        self._files[key] = fd
        return fd, info.st_size

    def _close_active(self, key: str) -> None:
        fd = self._files.pop(key, None)
        self._ends.pop(key, None)
        if fd is not None:
            _close_quietly(fd)

    # -- sealing and caps ---------------------------------------------------

    def _seal_locked(self, key: str) -> None:
        source = self.file(f"active.{key}.jsonl")
        if _fs.problem(source) is not None or file_size(source) == 0:
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
                key = active_key(name)
                if key is not None:
                    self._seal_locked(key)
            self._enforce_caps_locked()

    def _enforce_caps_locked(self) -> None:
        now = time.time()
        self._remove_leftovers_locked(now)
        cutoff = now - self.max_age_seconds
        kept: list[Segment] = []
        for segment in self.segments():
            if file_mtime(segment.path) < cutoff:
                self._drop_segment_locked(segment, "age_cap")
            else:
                kept.append(segment)
        total = sum(s.size for s in kept) + file_size(self.file(_quarantine.QUARANTINE_FILE))
        total += sum(file_size(path) for path in self.active_files())
        while kept and total > self.max_bytes:
            oldest = kept.pop(0)
            self._drop_segment_locked(oldest, "size_cap")
            total -= oldest.size

    def _remove_leftovers_locked(self, now: float) -> None:
        """Temp files of crashed writers and positions of vanished segments."""
        names = set(self._names())
        for name in names:
            stale_tmp = name.endswith(".tmp") and file_mtime(self.file(name)) < now - 60
            orphan_pos = name.endswith(".jsonl.pos") and name[: -len(".pos")] not in names
            if stale_tmp or orphan_pos:
                _fs.remove(self.file(name))

    def _drop_segment_locked(self, segment: Segment, reason: str) -> None:
        lines = count_lines(segment.path, segment.start)
        _fs.remove(segment.path)
        _fs.remove(segment.path + ".pos")
        if lines:
            self._count_drops_locked({reason: lines})

    def save_drops(self) -> None:
        """Persist the drops counted in memory (at shutdown); quietly keeps them if it cannot."""
        if not self.unsaved_drops or not self.exists():
            return
        try:
            with self.locked():
                self._save_drops_locked()
        except OSError as exc:
            _log.debug("saving the drop counts failed: %s", exc)

    def _save_drops_locked(self) -> None:
        self._count_drops_locked(self.unsaved_drops.take())

    def _count_drops_locked(self, drops: dict[str, int]) -> None:
        """Persist dropped counts; kept in memory while ``state.json`` cannot be written."""
        try:
            self._update_state_locked(lambda state: state.add_drops(drops))
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
        """Sealed segments (regular files of ours), oldest first, from the first byte to send."""
        found = []
        for name in self._names():
            key = segment_key(name)
            if key is None:
                continue
            path = self.file(name)
            if refused(path):
                continue
            size = file_size(path)
            start, acked = read_position(path + ".pos")
            found.append(Segment(path, key, size, min(size, start), acked))
        return found

    def active_files(self) -> list[str]:
        """Active files that are regular files of ours (others are never read)."""
        return [
            self.file(name)
            for name in self._names()
            if active_key(name) is not None and not refused(self.file(name))
        ]

    def iter_pending(self) -> Iterator[Item]:
        """Every pending record (or bad line), sealed first, then the active ones."""
        for segment in self.segments():
            for _begin, _end, item in segment.records():
                yield item
        for path in self.active_files():
            for _end, item in iter_records(path, torn_tail_is_bad=False):
                yield item

    def pending_bytes(self) -> int:
        return sum(s.pending_bytes for s in self.segments()) + sum(
            file_size(p) for p in self.active_files()
        )

    def count_pending(self, keys: Optional[set[str]] = None) -> int:
        """Pending lines (events, or bad lines not yet quarantined), of ``keys`` only if given."""
        total = 0
        for segment in self.segments():
            if keys is None or segment.key in keys:
                total += segment.pending_lines()
        for path in self.active_files():
            key = os.path.basename(path)[len("active.") : -len(".jsonl")]
            if keys is None or key in keys:
                total += count_lines(path, 0)
        return total

    def oldest_timestamp(self) -> Optional[str]:
        """Capture time of the oldest pending event (first segment, then each active file)."""
        oldest: Optional[str] = None
        sources: list[Iterator[Any]] = [
            (item for _b, _e, item in segment.records()) for segment in self.segments()[:1]
        ]
        sources += [
            (item for _e, item in iter_records(path, torn_tail_is_bad=False))
            for path in self.active_files()
        ]
        for items in sources:
            for item in items:
                if not isinstance(item, BadLine):
                    if oldest is None or item["timestamp"] < oldest:
                        oldest = item["timestamp"]
                    break
        return oldest

    # -- delivery bookkeeping (the uploader holds upload.lock) ---------------

    def upload_lock(self) -> ProcessLock:
        self.ensure_folder()
        return ProcessLock(self.file("upload.lock"))

    def commit(self, segment: Segment, offset: int, acked: Sequence[tuple[int, int]] = ()) -> None:
        """Everything before ``offset`` (and the ``acked`` ranges) left the spool; durably.

        Nothing is written for a segment that is gone (purged meanwhile):
        a purge must leave no file behind.
        """
        with self.locked():
            if segment.exists():
                write_position(segment, offset, acked)

    def quarantine(self, entries: Sequence[dict[str, Any]]) -> None:
        """Keep lines we will not send where a person can look at them."""
        if not entries:
            return
        with self.locked():
            try:
                dropped = _quarantine.append_entries(
                    self.path, entries, _quarantine.quarantine_limit(self.max_bytes)
                )
            except _fs.UnsafeFile:
                # Someone else's file (or a link) at that name: never written to.
                self._count_drops_locked({"unsafe_file": len(entries)})
                return

            def change(state: _spool_state.SpoolState) -> None:
                state.quarantined += len(entries)
                if dropped:
                    state.add_drops({"quarantine_cap": dropped})

            self._update_state_locked(change)

    def purge(self) -> int:
        """Delete every pending and quarantined event; returns how many were pending.

        Runs under the append lock; a running uploader notices that its
        segment is gone before sending its next batch (see ``wait_for_uploads``).
        """
        if not self.exists():
            return 0
        removed = 0
        with self.locked():
            for segment in self.segments():
                removed += count_lines(segment.path, segment.start)
                _fs.remove(segment.path)
                _fs.remove(segment.path + ".pos")
            for path in self.active_files():
                removed += count_lines(path, 0)
                _fs.remove(path)
            _fs.remove(self.file(_quarantine.QUARANTINE_FILE))
            for key in list(self._files):
                self._close_active(key)
        return removed

    def wait_for_uploads(self, timeout: float) -> bool:
        """Wait until no upload of this spool is running (True), at most ``timeout`` seconds."""
        if not self.exists():
            return True
        lock = ProcessLock(self.file("upload.lock"))
        try:
            if not lock.acquire(timeout):
                return False
            lock.release()
            return True
        finally:
            lock.close()

    def remove_folder(self) -> bool:
        """Remove this spool's own files (never anything else there), then the folder if empty.

        Used by ``disable``: a folder the user pointed the spool at may hold
        files of theirs, which stay (and then so does the folder: False).
        """
        self.forget_descriptors()
        for name in self._names():
            if _is_ours(name):
                _fs.remove(self.file(name))
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        parent = os.path.dirname(self.path)
        if os.path.basename(parent) == APP_NAME:  # our per-app state folder, if now empty
            try:
                os.rmdir(parent)
            except OSError:
                pass
        return True

    # -- the small files this spool owns ---------------------------------------

    def read_state(self) -> _spool_state.SpoolState:
        return _spool_state.load_state(self.path)

    def update_state(self, change: Callable[[_spool_state.SpoolState], None]) -> None:
        with self.locked():
            self._update_state_locked(change)

    def _update_state_locked(self, change: Callable[[_spool_state.SpoolState], None]) -> None:
        _spool_state.update_state(self.path, change)

    def read_destinations(self) -> dict[str, _destinations.RecordedDestination]:
        return _destinations.load_destinations(self.path)

    def record_destination(
        self, library: str, destination: _destinations.RecordedDestination
    ) -> None:
        """Remember where ``library`` sends, privately (0600), if it changed."""
        with self.locked():
            _destinations.record(self.path, library, destination)


def _last_byte(fd: int, end: int) -> bytes:
    """The byte before ``end``; appends go to the end whatever the file offset is."""
    if hasattr(os, "pread"):
        return os.pread(fd, 1, end - 1)
    os.lseek(fd, end - 1, os.SEEK_SET)  # pragma: no cover - Windows has no pread
    return os.read(fd, 1)  # pragma: no cover


def _truncate_quietly(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class _Locked:
    """``with spool.locked():`` (a class, not a generator: no ``contextlib`` to import)."""

    __slots__ = ("_lock", "_spool")

    def __init__(self, spool: Spool) -> None:
        self._spool = spool

    def __enter__(self) -> None:
        self._lock = self._spool._enter()

    def __exit__(self, *_exc: object) -> None:
        self._spool._exit(self._lock)


_OWN_NAMES = frozenset(
    {
        "lock",
        "upload.lock",
        _quarantine.QUARANTINE_FILE,
        _spool_state.STATE_FILE,
        _destinations.DESTINATIONS_FILE,
    }
)


def _is_ours(name: str) -> bool:
    """Whether a name in the spool folder is one this library writes."""
    if name in _OWN_NAMES or active_key(name) is not None:
        return True
    if name.endswith(".tmp"):  # ``<our file>.<16 hex digits>.tmp`` (see _fs.temporary_name)
        stem, _dot, token = name[: -len(".tmp")].rpartition(".")
        return len(token) == 16 and _is_ours(stem)
    if name.endswith(".pos"):
        name = name[: -len(".pos")]
    return segment_key(name) is not None
