"""An inter-process exclusive lock on a file, with a bounded wait.

On POSIX a raw ``flock`` on a kept-open descriptor costs ~2 us, while
``filelock.FileLock`` costs 30-90 us per acquire and imports asyncio; both use
the same ``flock`` underneath, so they interoperate. Elsewhere ``filelock`` is
the portable lock. A lock we cannot take in time is reported, never waited on
forever: telemetry must not hang its host.
"""

from __future__ import annotations

import errno
import os
import time

from . import _fs

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = ["LockTimeout", "ProcessLock"]

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT
_EXCLUSIVE_NOW = fcntl.LOCK_EX | fcntl.LOCK_NB if fcntl is not None else 0


class LockTimeout(OSError):
    """The lock is held by someone else for longer than we may wait."""


class ProcessLock:
    """Exclusive across processes; callers serialise their own threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: Optional[int] = None
        self._portable: Any = None

    def acquire(self, timeout: float) -> bool:
        """Take the lock within ``timeout`` seconds (0: only if free now).

        Every wait is bounded: telemetry never blocks its host indefinitely.
        Returns False on timeout; raises ``OSError`` when the lock file itself
        is unusable (:class:`~luxonis_telemetry._fs.UnsafeFile` for a FIFO,
        symlink, another user's file...), so a broken lock is never mistaken
        for contention, and ``FileNotFoundError`` when the file was deleted
        while we waited (a lock on a deleted file excludes nobody).
        """
        if fcntl is None:  # pragma: no cover - Windows
            return self._acquire_portable(timeout)
        fd = self._fd
        if fd is None:
            fd = self._fd = _fs.open_checked(self.path, _OPEN_FLAGS)
        try:  # the usual case, without a call: the lock is free
            fcntl.flock(fd, _EXCLUSIVE_NOW)
        except BlockingIOError:
            if not self._wait(fd, timeout):
                return False
        if os.fstat(fd).st_nlink == 0:
            # The file was deleted (the whole spool removed?): a lock on it
            # excludes nobody. The caller recreates the folder and retries.
            fcntl.flock(fd, fcntl.LOCK_UN)
            self.close()
            raise FileNotFoundError(errno.ENOENT, "lock file vanished", self.path)
        return True

    @staticmethod
    def _wait(fd: int, timeout: float) -> bool:
        """Poll with growing pauses: a blocking ``flock`` could not be given a deadline.

        Called once the lock was found held.
        """
        deadline = time.monotonic() + timeout
        pause = 0.0005
        while True:
            try:
                fcntl.flock(fd, _EXCLUSIVE_NOW)
                return True
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, 0.05)

    def release(self) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            if self._portable is not None:
                self._portable.release()
            return
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Drop the descriptor; after ``fork`` the child must not share it."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _acquire_portable(self, timeout: float) -> bool:  # pragma: no cover
        import filelock

        if self._portable is None:
            self._portable = filelock.FileLock(self.path, mode=0o600)
        try:
            self._portable.acquire(timeout=timeout)
        except filelock.Timeout:
            return False
        return True
