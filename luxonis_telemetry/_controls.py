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
from typing import Optional

from . import _fs, _settings, _state
from .config import APP_NAME, config_dir, install_id_path

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
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
    """Store ``on``, ``local`` or ``off`` for this user; returns the settings file.

    The choice also applies to this process at once (a tool that mounted
    our commands records nothing after ``disable``). Something that is not
    our file at the settings name (a FIFO, a device, another user's file)
    is unlinked, never opened, and replaced: the person asked for this
    choice, and an unreadable settings file already meant off.
    """
    folder = config_dir(environ)
    if folder is None:
        raise OSError(
            "no per-user config folder (no home directory); set LUXONIS_TELEMETRY_CONFIG_DIR"
        )
    changed_at = datetime.now(timezone.utc).isoformat()
    try:
        path = _settings.write_mode(folder, mode, changed_at)
    except _fs.UnsafeFile as exc:
        target = os.path.join(folder, _settings.SETTINGS_FILE)
        if exc.filename != target or not _fs.remove(target):
            raise
        path = _settings.write_mode(folder, mode, changed_at)
    _state.state.disabled_here = mode == "off"
    return path


def purge(spool: Spool, *, wait: float = UPLOAD_STOP_TIMEOUT) -> PurgeReport:
    """Delete pending and quarantined events; wait for a running upload to stop."""
    removed = spool.purge()
    stopped = spool.wait_for_uploads(wait)
    return PurgeReport(removed, not stopped)


def disable(
    spool: Optional[Spool], environ: Optional[Mapping[str, str]] = None
) -> tuple[str, PurgeReport]:
    """Turn telemetry off for this user and remove everything but that choice.

    Covers ``spool`` and every spool this process recorded into, each
    install id they recorded (a library may keep it at its own path), the
    default one, and the notice marker. A spool folder that is not ours is
    left alone (``status`` reports it).
    """
    env = os.environ if environ is None else environ
    path = set_mode("off", env)
    spools = {known.path: known for known in _state.state.spools.values()}
    if spool is not None:
        spools[spool.path] = spool
    report = PurgeReport(0, False)
    install_ids = set(_state.state.install_ids)
    for each in spools.values():
        if not each.exists() or each.problem() is not None:
            continue
        install_ids.update(
            entry.install_id_path
            for entry in each.read_destinations().values()
            if entry.install_id_path
        )
        _purge_all(each, report)
        _remove_folder(each.path)
    install_ids.add(install_id_path(None, env) or "")
    for candidate in install_ids:
        if candidate:
            _fs.remove(candidate)
    folder = config_dir(env)
    if folder is not None:
        _fs.remove(_settings.notice_path(folder))
    _state.state.install_ids.clear()
    return path, report


def _purge_all(spool: Spool, report: PurgeReport) -> None:
    """Purge through the spool's locks; if they are unusable, the files go all the same."""
    try:
        done = purge(spool)
    except OSError:  # e.g. a FIFO planted at the lock's name: removed with the folder
        report.removed += spool.count_pending()
        return
    report.removed += done.removed
    report.upload_still_running = report.upload_still_running or done.upload_still_running


def _remove_folder(path: str) -> None:
    """Remove every name in the spool folder (unlinked, never opened), then the empty folder."""
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
