"""The anonymous install id: a random UUID kept in one small private file.

Racing processes must agree on one id, so a new id is written to a private
temporary file and hard-linked into place; ``link`` fails for every process
but the winner, which then all read. A file that exists but cannot be used
(not a regular file of this user, unreadable, not a UUID) is left alone and
there is no install id: events then carry ``install_id: null`` and the
process's session id as distinct id (luxonis-ml's own default), rather than a
new random "install" id in every process.
"""

from __future__ import annotations

import os
import stat
import time

from . import _fs, _log, _state
from ._ids import is_uuid, new_uuid4

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Optional

__all__ = ["load_install_id", "read_install_id"]


def load_install_id(path: Optional[str]) -> Optional[str]:
    """The id stored at ``path``, created on first use; cached per process."""
    if path is None:
        return None
    if _state.state.sink is not None:  # capture_events(): write nothing, not even the id
        return read_install_id(path)
    cache = _state.state.install_ids
    if path not in cache:
        cache[path] = _read_or_create(path)
    return cache[path]


def read_install_id(path: str) -> Optional[str]:
    """The id at ``path`` if it is a usable install-id file; never creates one."""
    return _parse(_fs.read_limited(path, 100))


def _parse(data: Optional[bytes]) -> Optional[str]:
    if data is None:
        return None
    text = data.decode("ascii", "replace").strip()
    return text.lower() if is_uuid(text) and len(text) == 36 else None


def _read_or_create(path: str) -> Optional[str]:
    for _attempt in range(50):
        try:
            fd = _fs.open_checked(path)
        except FileNotFoundError:
            created = _create(path)
            if created is _LOST_RACE:
                continue  # another process published its id first: read that one
            return created
        except OSError as exc:
            # Another process is between link and unlink, or was when we
            # opened and has since removed its temporary name: look again.
            if _being_published(path) or (
                isinstance(exc, _fs.UnsafeFile) and _fs.problem(path) is None
            ):
                time.sleep(0.001)
                continue
            _log.debug("install id %s unusable: %s", path, exc)
            return None
        os.close(fd)
        return read_install_id(path)
    # A creator died between link and unlink: the id is whole (it was written
    # before the link), and a second link is harmless for a file we only read.
    return _parse(_fs.read_limited(path, 100, links_ok=True))


def _being_published(path: str) -> bool:
    """A regular file of ours with exactly two links: a creator's temp name is still there."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    owner_ok = not hasattr(os, "geteuid") or info.st_uid == os.geteuid()
    return stat.S_ISREG(info.st_mode) and owner_ok and info.st_nlink == 2


_LOST_RACE = "lost"


def _create(path: str) -> Optional[str]:
    """The new id, ``None`` when none can be kept, or ``_LOST_RACE``."""
    candidate = new_uuid4()
    tmp = _fs.temporary_name(path)
    folder = os.path.dirname(path)
    try:
        # The default folder is ours to create private; a folder the user
        # named with LUXONIS_TELEMETRY_INSTALL_ID_PATH is theirs: never re-moded.
        if not os.path.isdir(folder):
            _fs.ensure_private_folder(folder)
        _fs.atomic_write(tmp, candidate.encode() + b"\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _LOST_RACE
        return candidate
    except OSError as exc:
        _log.debug("cannot create the install id %s: %s", path, exc)
        return None
    finally:
        _fs.remove(tmp)
