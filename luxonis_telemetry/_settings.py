"""The user's own files in the config folder: ``settings.json`` and the notice marker.

``settings.json`` remembers the choice made with ``luxonis-telemetry
enable|local|disable`` as ``{"v": 1, "mode": "on" | "local" | "off"}``
(``{"enabled": bool}`` from older releases is still understood). Several
installed copies of this library may share the file, so a reader that meets
a newer format version is conservative: it honours ``off`` and ``local`` and
treats anything else as ``local`` (never upload on a setting it does not
understand). A file that exists but cannot be read safely turns telemetry
off until it is fixed: the user may have written ``off`` there.

``notice_shown`` is created (exclusively) by the one process that shows the
first-run notice, so the notice appears once per user even when several
tools start at the same moment.
"""

from __future__ import annotations

import os

from . import _fs
from ._jsonio import dumps_sorted, loads

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Optional

__all__ = [
    "FORMAT_VERSION",
    "MODES",
    "NOTICE_FILE",
    "SETTINGS_FILE",
    "StoredMode",
    "claim_notice",
    "notice_path",
    "read_mode",
    "write_mode",
]

FORMAT_VERSION = 1
MODES = ("on", "local", "off")
SETTINGS_FILE = "settings.json"
NOTICE_FILE = "notice_shown"
_MAX_BYTES = 64 * 1024


class StoredMode:
    """What ``settings.json`` says: a mode (or ``None``: no choice stored) and any problem."""

    __slots__ = ("mode", "path", "problem")

    def __init__(self, path: str, mode: Optional[str], problem: Optional[str] = None) -> None:
        self.path = path
        self.mode = mode
        self.problem = problem


def read_mode(folder: str) -> StoredMode:
    """The stored choice in ``folder``; missing file means no choice, a bad one means off."""
    path = os.path.join(folder, SETTINGS_FILE)
    try:
        fd = _fs.open_checked(path)
    except FileNotFoundError:
        return StoredMode(path, None)
    except NotADirectoryError:
        return StoredMode(path, None)
    except OSError as exc:
        return StoredMode(path, "off", f"{path} cannot be read ({exc.strerror}); telemetry is off")
    try:
        raw = os.read(fd, _MAX_BYTES)
    except OSError as exc:
        return StoredMode(path, "off", f"{path} cannot be read ({exc.strerror}); telemetry is off")
    finally:
        os.close(fd)
    try:
        data = loads(raw)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        return StoredMode(path, "off", f"{path} is not a settings file; telemetry is off")
    return StoredMode(path, *_interpret(path, data))


def _interpret(path: str, data: dict[str, object]) -> tuple[Optional[str], Optional[str]]:
    version = data.get("v", FORMAT_VERSION)
    mode = data.get("mode")
    if mode is None and "enabled" in data:  # {"enabled": bool}, from the first releases
        enabled = data["enabled"]
        if not isinstance(enabled, bool):
            return "off", f"{path} holds enabled={enabled!r}; telemetry is off"
        mode = "on" if enabled else "off"
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        if mode in ("off", "local"):
            return str(mode), None
        return "local", f"{path} has a newer format ({version!r}): recording locally only"
    if mode in MODES:
        return str(mode), None
    if mode is None:
        return None, None
    return "off", f"{path} holds an unknown mode {mode!r}; telemetry is off"


def write_mode(folder: str, mode: str, changed_at: str) -> str:
    """Store ``mode`` for this user; returns the file's path."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    _fs.ensure_private_folder(folder)
    path = os.path.join(folder, SETTINGS_FILE)
    data = {"v": FORMAT_VERSION, "mode": mode, "changed_at": changed_at}
    _fs.atomic_write(path, dumps_sorted(data).encode() + b"\n", durable=True)
    return path


def claim_notice(folder: str) -> bool:
    """True for the one caller that creates the notice marker (it shows the notice).

    False when the notice was shown before, or the marker cannot be made (no
    way to remember it: better say nothing than say it on every run).
    """
    try:
        _fs.ensure_private_folder(folder)
        fd = os.open(
            os.path.join(folder, NOTICE_FILE),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
            0o600,
        )
    except OSError:
        return False
    os.close(fd)
    return True


def notice_path(folder: str) -> str:
    """Where the marker lives (``disable`` removes it with everything else)."""
    return os.path.join(folder, NOTICE_FILE)
