"""What ``enable``, ``local``, ``disable`` and ``purge`` do, as library calls the CLI maps onto.

``disable`` removes everything the library wrote for this user (pending and
quarantined events, counters, recorded destinations and keys, every install
id it knows of, the notice marker, the empty folders) except the setting
that remembers ``off``; other processes of the user that are still running
notice the spool is gone and stop recording instead of recreating it. A
purge waits for a running upload to stop before it returns, so nothing
purged is sent afterwards.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Optional

from . import _fs, _settings, _state
from .config import APP_NAME, config_dir, install_id_path

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .spool import Spool

__all__ = ["PurgeReport", "disable", "purge", "set_mode"]

UPLOAD_STOP_TIMEOUT = 15.0  # a batch on the wire takes at most 10 s


class PurgeReport:
    """How many pending events went, and whether a running upload stopped in time."""

    __slots__ = ("removed", "upload_still_running")

    def __init__(self, removed: int, upload_still_running: bool) -> None:
        self.removed = removed
        self.upload_still_running = upload_still_running


def set_mode(mode: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """Store ``on``, ``local`` or ``off`` for this user; returns the settings file."""
    folder = config_dir(environ)
    if folder is None:
        raise OSError(
            "no per-user config folder (no home directory); set LUXONIS_TELEMETRY_CONFIG_DIR"
        )
    path = _settings.write_mode(folder, mode, datetime.now(timezone.utc).isoformat())
    if mode == "off":
        _state.state.disabled_here = True
    return path


def purge(spool: Spool, *, wait: float = UPLOAD_STOP_TIMEOUT) -> PurgeReport:
    """Delete pending and quarantined events; wait for a running upload to stop."""
    removed = spool.purge()
    stopped = spool.wait_for_uploads(wait)
    return PurgeReport(removed, not stopped)


def disable(
    spool: Optional[Spool], environ: Optional[Mapping[str, str]] = None
) -> tuple[str, PurgeReport]:
    """Turn telemetry off for this user and remove everything but that choice."""
    env = os.environ if environ is None else environ
    path = set_mode("off", env)
    report = PurgeReport(0, False)
    known_ids: set[str] = set()
    if spool is not None and spool.exists():
        known_ids = {
            entry.install_id_path
            for entry in spool.read_destinations().values()
            if entry.install_id_path
        }
        report = purge(spool)
        _remove_folder(spool.path)
    default_id = install_id_path(None, env)
    for candidate in {default_id, *known_ids}:
        if candidate:
            _fs.remove(candidate)
    folder = config_dir(env)
    if folder is not None:
        _fs.remove(_settings.notice_path(folder))
    _state.state.install_ids.clear()
    return path, report


def _remove_folder(path: str) -> None:
    """Remove the spool folder's files (ours only: regular files and leftovers) and the folder."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        _fs.remove(os.path.join(path, name))
    try:
        os.rmdir(path)
        parent = os.path.dirname(path)
        if os.path.basename(parent) == APP_NAME:  # our per-app state folder, now empty
            os.rmdir(parent)
    except OSError:
        pass
