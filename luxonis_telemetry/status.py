"""The one truthful answer to "is telemetry on here, and what will it do?".

``gather_status`` collects, without changing anything, every fact a person
needs: the mode and which switch decided it, whether anything will be
uploaded at exit and why not, what is pending, dropped and quarantined,
where each file lives, which files were refused as unsafe, and how to turn
telemetry off. ``luxonis-telemetry status`` prints it; ``--json`` gives the
same data.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime, timezone
from typing import Any, Optional

from . import _fs, _quarantine, _settings, _spool_state, _state
from ._destinations import DESTINATIONS_FILE
from ._reader import count_lines
from ._routing import Router
from ._text import mask_key, mask_url
from .config import (
    API_KEY,
    BACKEND,
    DO_NOT_TRACK,
    ENDPOINT,
    UPLOAD_ON_EXIT,
    TelemetryConfig,
    config_dir,
    decide_mode,
    ignored_settings,
    install_id_path,
    is_ci,
    parse_bool,
    read_dotenv,
    settings_path,
)

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .spool import Spool

__all__ = ["TURN_OFF", "gather_status", "unsafe_files"]

TURN_OFF = f"luxonis-telemetry disable   (or {DO_NOT_TRACK}=1 in the environment)"


def _iso(value: Optional[float]) -> Optional[str]:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return None


def gather_status(
    spool: Optional[Spool], environ: Optional[Mapping[str, str]] = None
) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (keys masked, URL credentials hidden).

    Counts that cannot be known (the spool folder is unusable: another
    user's, not a folder, unreadable) are ``None``, never a reassuring 0;
    ``problems`` says why.
    """
    env = os.environ if environ is None else environ
    decision = decide_mode("on", env, read_dotenv() if environ is None else {})
    user = TelemetryConfig.from_environ(environ=env)
    folder = config_dir(env)
    info: dict[str, Any] = {
        "mode": decision.mode,
        "enabled": decision.mode != "off",
        "reason": decision.reason,
        "decided_by": decision.source,
        "turn_off": TURN_OFF,
        "upload_at_exit": False,
        "upload_at_exit_why_not": None,
        "environment": _environment(env),
        "files": {
            "settings": settings_path(env),
            "install_id": install_id_path(None, env),
            "spool": spool.path if spool else None,
            "notice_marker": _settings.notice_path(folder) if folder else None,
        },
        "notice_shown": bool(folder and os.path.lexists(_settings.notice_path(folder))),
        "problems": [p for p in (decision.problem,) if p] + ignored_settings(env),
        "pending_events": 0,
        "pending_bytes": 0,
        "oldest_pending": None,
        "dropped": {},
        "quarantined": 0,
        "last_upload": None,
        "next_exit_retry": None,
        "rejected_key": None,
        "destinations": {},
        "max_spool_bytes": user.max_spool_bytes,
        "max_event_age_days": user.max_event_age_days,
    }
    spool_problem = spool.problem() if spool is not None else "no home directory: no spool folder"
    if spool_problem:
        info["problems"].append(spool_problem)
        for unknown in ("pending_events", "pending_bytes", "dropped", "quarantined"):
            info[unknown] = None
    state: Optional[_spool_state.SpoolState] = None
    if spool is not None and not spool_problem and spool.exists():
        state = _fill_spool(info, spool, env)
    found = unsafe_files(spool, env)
    info["problems"] += [f"{path} {why}: skipped" for path, why in sorted(found.items())]
    info["upload_at_exit"], info["upload_at_exit_why_not"] = _exit_answer(
        decision.mode, decision.reason, user, env, info["destinations"], state
    )
    return info


def _environment(env: Mapping[str, str]) -> dict[str, Optional[str]]:
    """What the environment sets for every library (it overrides what they recorded)."""
    return {
        "backend": env.get(BACKEND, "").strip() or None,
        "endpoint": mask_url(env.get(ENDPOINT, "").strip() or None),
        "api_key": mask_key(env.get(API_KEY, "").strip() or None),
    }


def _fill_spool(
    info: dict[str, Any], spool: Spool, env: Mapping[str, str]
) -> _spool_state.SpoolState:
    recorded = spool.read_destinations()
    router = Router(recorded, env)
    for library in sorted(recorded):
        destination = router(library)
        info["destinations"][library] = {
            "backend": destination.backend,
            "endpoint": mask_url(destination.endpoint),
            "api_key": mask_key(destination.api_key),
            "key_from": destination.source if destination.api_key else None,
            "install_id_path": recorded[library].install_id_path,
        }
    info["files"]["destinations"] = spool.file(DESTINATIONS_FILE)
    info["files"]["state"] = spool.file(_spool_state.STATE_FILE)
    info["files"]["quarantine"] = spool.file(_quarantine.QUARANTINE_FILE)
    info["pending_events"] = spool.count_pending()
    info["pending_bytes"] = spool.pending_bytes()
    info["oldest_pending"] = spool.oldest_timestamp()
    state = spool.read_state()
    info["dropped"] = dict(state.dropped)
    info["quarantined"] = count_lines(spool.file(_quarantine.QUARANTINE_FILE))
    if state.last_upload:
        info["last_upload"] = {**state.last_upload, "at": _iso(state.last_upload["at"])}
    if state.next_attempt_at > time.time():
        info["next_exit_retry"] = _iso(state.next_attempt_at)
    if state.auth_failure:
        info["rejected_key"] = {**state.auth_failure, "at": _iso(state.auth_failure["at"])}
    if state.newer_format:
        info["problems"].append(
            f"{spool.file(_spool_state.STATE_FILE)} was written by a newer version: "
            "no upload at exit from this version"
        )
    return state


def unsafe_files(
    spool: Optional[Spool], environ: Optional[Mapping[str, str]] = None
) -> dict[str, str]:
    """Files in our folders that are refused (not regular, not ours, hard-linked): path -> why.

    Judged from ``lstat`` alone, so a FIFO or device is never opened; files
    this process already refused are included.
    """
    env = os.environ if environ is None else environ
    folder = config_dir(env)
    found: dict[str, str] = dict(_state.state.unsafe_files)
    candidates = [install_id_path(None, env)]
    if folder is not None:
        candidates += [
            os.path.join(folder, name) for name in (_settings.SETTINGS_FILE, _settings.NOTICE_FILE)
        ]
    if spool is not None and spool.exists():
        with contextlib.suppress(OSError):
            candidates += [spool.file(name) for name in os.listdir(spool.path)]
    for path in candidates:
        if path is None:
            continue
        why = _fs.problem(path)
        if why is not None:
            found[path] = why
    return found


def _exit_answer(
    mode: str,
    reason: str,
    user: TelemetryConfig,
    env: Mapping[str, str],
    destinations: dict[str, dict[str, Any]],
    state: Optional[_spool_state.SpoolState],
) -> tuple[bool, Optional[str]]:
    """Whether a program's exit will upload, and if not, why (the first reason that applies)."""
    if mode == "off":
        return False, f"telemetry is off ({reason})"
    if mode == "local":
        return False, f"local mode: nothing is ever uploaded ({reason})"
    explicit = parse_bool(env.get(UPLOAD_ON_EXIT))
    if explicit is False or not user.upload_on_exit:
        return False, f"{UPLOAD_ON_EXIT} is off: only `luxonis-telemetry upload` sends"
    if explicit is not True and is_ci(env):
        return (
            False,
            "CI detected: events stay pending for `luxonis-telemetry upload` "
            f"(or {UPLOAD_ON_EXIT}=1)",
        )
    if state is not None and state.newer_format:
        return False, "the spool's state was written by a newer version of this library"
    if state is not None and state.next_attempt_at > time.time():
        return False, f"backing off after a failed attempt until {_iso(state.next_attempt_at)}"
    if destinations and not any(
        entry["api_key"] or entry["backend"] not in ("posthog", "stdout", "noop")
        for entry in destinations.values()
    ):
        return False, "no API key for any library (set LUXONIS_TELEMETRY_API_KEY)"
    if not destinations and not user.api_key:
        return False, "nothing recorded yet, and no API key configured"
    return True, None
