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
from ._install_id import read_install_id
from .config import config_dir, install_id_path

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .spool import Spool

__all__ = ["DisableReport", "PurgeReport", "disable", "purge", "set_mode"]

UPLOAD_STOP_TIMEOUT = 15.0  # a batch on the wire takes at most 10 s


class PurgeReport:
    """How many pending events went, and whether a running upload stopped in time."""

    __slots__ = ("removed", "upload_still_running")

    def __init__(self, removed: int, upload_still_running: bool) -> None:
        self.removed = removed
        self.upload_still_running = upload_still_running


class DisableReport(PurgeReport):
    """A purge's report, plus what else went and what was deliberately left alone.

    ``kept`` names each folder or file that stayed, with why: a spool folder
    that is not this user's, one holding files of theirs, so that ``disable``
    never claims more than it did.
    """

    __slots__ = ("install_ids_removed", "kept")

    def __init__(self) -> None:
        super().__init__(0, False)
        self.install_ids_removed = 0
        self.kept: list[str] = []


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
) -> tuple[str, DisableReport]:
    """Turn telemetry off for this user and remove everything but that choice.

    Covers ``spool`` and every spool this process recorded into, each
    install id they recorded (a library may keep it at its own path), the
    default one, and the notice marker. A spool folder that is not ours is
    left alone (``status`` reports it), and so are files of the user's own
    in a folder they pointed the spool at; the report says which.
    """
    env = os.environ if environ is None else environ
    path = set_mode("off", env)
    spools = {known.path: known for known in _state.state.spools.values()}
    if spool is not None:
        spools[spool.path] = spool
    report = DisableReport()
    install_ids = set(_state.state.install_ids)
    for each in spools.values():
        if not each.exists():
            continue
        problem = each.problem()
        if problem is not None:
            report.kept.append(f"{each.path}: {problem}")
            continue
        install_ids.update(
            entry.install_id_path
            for entry in each.read_destinations().values()
            if entry.install_id_path
        )
        _purge_all(each, report)
        if not each.remove_folder():
            report.kept.append(f"{each.path}: it holds files that are not ours")
    install_ids.add(install_id_path(None, env) or "")
    for candidate in install_ids:
        # only a file that is an install id: a path set by mistake to someone's notes stays
        if candidate and read_install_id(candidate) is not None and _fs.remove(candidate):
            report.install_ids_removed += 1
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
