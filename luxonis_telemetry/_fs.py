"""Opening, reading and replacing the library's own files, safely.

Every file the library keeps lives in a folder that someone else may have
touched (a spool folder that was once world-writable, a shared home, a
restored backup), so nothing is trusted by its name: files are opened
without following symlinks and without blocking (a FIFO would hang the
host), then checked to be a regular file of this user with a single link
(a hard link would leak what we write into a file someone else reads).
Replacing a file goes through an unpredictable, exclusive temporary file and
a rename, so a crash never leaves half a file and nobody can pre-create the
temporary name.
"""

from __future__ import annotations

import errno
import os
import stat

from . import _state

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Optional

__all__ = [
    "APPEND_FLAGS",
    "READ_FLAGS",
    "UnsafeFile",
    "atomic_write",
    "check_descriptor",
    "ensure_private_folder",
    "open_checked",
    "open_user_file",
    "problem",
    "read_limited",
    "read_regular",
    "remove",
    "temporary_name",
]

_SAFE = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
READ_FLAGS = os.O_RDONLY | _SAFE | getattr(os, "O_BINARY", 0)
APPEND_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | _SAFE | getattr(os, "O_BINARY", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _SAFE | getattr(os, "O_BINARY", 0)
_HAS_UID = hasattr(os, "geteuid")


class UnsafeFile(OSError):
    """A path that is not a regular file of this user with one link; it is left alone."""


def _own(info: os.stat_result) -> bool:
    return not _HAS_UID or info.st_uid == os.geteuid()


def _why_unsafe(info: os.stat_result, links_ok: bool = False) -> Optional[str]:
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if not _own(info):
        return f"owned by another user (uid {info.st_uid})"
    if info.st_nlink > 1 and not links_ok:
        return f"has {info.st_nlink} hard links"
    return None


def check_descriptor(fd: int, path: str, *, links_ok: bool = False) -> os.stat_result:
    """``fstat`` of an open file, raising :class:`UnsafeFile` (and noting it) if it is not ours.

    ``links_ok`` accepts a file with several hard links: harmless for a file
    that is only read (a link leaks what we *write* to whoever reads the
    other name).
    """
    info = os.fstat(fd)
    why = _why_unsafe(info, links_ok)
    if why is not None:
        _note_unsafe(path, why)
        raise UnsafeFile(errno.EPERM, f"refusing a file that is {why}", path)
    return info


def open_checked(
    path: str, flags: int = READ_FLAGS, mode: int = 0o600, *, links_ok: bool = False
) -> int:
    """A descriptor of ``path`` opened with ``flags``, once it proved to be ours.

    Raises ``FileNotFoundError`` when it is missing, :class:`UnsafeFile` when
    it is a symlink, FIFO, device, folder, another user's file or (unless
    ``links_ok``) a hard link.
    """
    try:
        fd = os.open(path, flags | _SAFE, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EMLINK):
            _note_unsafe(path, "not a regular file")
            raise UnsafeFile(
                exc.errno, "refusing a file that is not a regular file", path
            ) from None
        raise
    try:
        check_descriptor(fd, path, links_ok=links_ok)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_user_file(path: str) -> int:
    """A descriptor for reading a file the user named (a bundle): followed if a link.

    Opened without blocking (a FIFO would hang) and checked to be a regular
    file of this user; hard links are fine for a file we only read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(errno.EPERM, "not a regular file", path)
        if _HAS_UID and info.st_uid != os.geteuid():
            raise UnsafeFile(errno.EPERM, f"owned by another user (uid {info.st_uid})", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_limited(path: str, limit: int, *, links_ok: bool = False) -> Optional[bytes]:
    """At most ``limit`` bytes of ``path``; ``None`` when missing, unsafe or unreadable."""
    try:
        fd = open_checked(path, links_ok=links_ok)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    return _read_and_close(fd, limit)


def read_regular(path: str, limit: int) -> Optional[bytes]:
    """At most ``limit`` bytes of a regular file, whoever owns it and wherever a link points.

    Only for input that can merely make telemetry more private (``./.env``
    may switch it off: a project folder mounted into a container belongs to
    another uid, and ``.env`` is often a symlink, yet the person's opt-out
    written there must count) and for system facts owned by root
    (``/etc/os-release``). Still opened without blocking and refused
    unless a regular file, so a FIFO or a device never hangs the host.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        return None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    if not regular:
        os.close(fd)
        return None
    return _read_and_close(fd, limit)


def _read_and_close(fd: int, limit: int) -> Optional[bytes]:
    try:
        chunks = []
        remaining = limit
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def temporary_name(path: str) -> str:
    """A name next to ``path`` that nobody can predict (16 random hex digits)."""
    return f"{path}.{os.urandom(8).hex()}.tmp"


def atomic_write(path: str, data: bytes, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` (0600) all at once; never through a symlink.

    The target must be missing or a regular file of ours: a FIFO, device or
    someone else's file at that name is refused, not replaced. ``durable``
    flushes the data to disk before the rename, for a file whose loss after
    a power cut would matter (the person's ``off`` choice); the others are
    rewritten often and can be rebuilt.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        # A symlink or a hard link is replaced as a name: its target keeps
        # the old content and never sees ours.
        if not (stat.S_ISLNK(info.st_mode) or stat.S_ISREG(info.st_mode)):
            _note_unsafe(path, "not a regular file")
            raise UnsafeFile(errno.EPERM, "refusing to replace a non-regular file", path)
        if _HAS_UID and stat.S_ISREG(info.st_mode) and info.st_uid != os.geteuid():
            _note_unsafe(path, f"owned by another user (uid {info.st_uid})")
            raise UnsafeFile(errno.EPERM, "refusing to replace another user's file", path)
    tmp = temporary_name(path)
    fd = os.open(tmp, _CREATE_FLAGS, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def remove(path: str) -> bool:
    """Unlink ``path`` if it exists (a symlink itself, never its target); True if removed."""
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def ensure_private_folder(path: str) -> None:
    """Create ``path`` (0700) or accept it only when it is a folder of this user.

    Missing parents are created 0700 too (as the XDG rules ask for
    ``~/.config`` and ``~/.local/state``): under a permissive umask a
    world-writable parent would let anyone swap our folder. A symlink the
    user made to a folder of theirs (dotfile managers do that) is accepted;
    one made by someone else is not. A folder that is ours but open to
    others is tightened to 0700. Raises ``NotADirectoryError`` or
    :class:`UnsafeFile` otherwise.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        _make_folders(path)
        info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) and _own(info):
        info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", path)
    if not _own(info):
        raise UnsafeFile(errno.EPERM, f"folder owned by another user (uid {info.st_uid})", path)
    if _HAS_UID and stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)


def _make_folders(path: str) -> None:
    """``os.makedirs(path)`` with every created folder 0700, not only the last one."""
    parent = os.path.dirname(path)
    if parent and parent != path and not os.path.isdir(parent):
        _make_folders(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass


def problem(path: str) -> Optional[str]:
    """Why ``path`` would be refused, from ``lstat`` alone (for ``status``); ``None`` if fine."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be examined: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    return _why_unsafe(info)


def _note_unsafe(path: str, why: str) -> None:
    """Remember refused files for ``status`` (bounded: a hostile folder may hold many)."""
    seen = _state.state.unsafe_files
    if path in seen or len(seen) < 256:
        seen[path] = why
