"""``status``, ``enable``, ``local``, ``disable`` and ``purge``: see and decide what happens."""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

import typer

from .. import _controls
from .._text import literal
from ..config import decide_mode, read_dotenv
from ..status import gather_status
from ..uploader import open_spool
from ._app import PROG, CliError, command, print_json, require_spool, warn_unsafe_files

__all__ = ["disable", "enable", "local", "purge", "status"]

_MODE_WORDS = {"on": "on", "local": "LOCAL (recorded, never uploaded)", "off": "OFF"}


@command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Whether telemetry is on and why, what happens at exit, what is pending, where files live."""
    info = gather_status(open_spool())
    if as_json:
        print_json(info)
        return
    # Library names, endpoints and file names come from files others may have written.
    typer.echo("\n".join(literal(line) for line in _lines(info)))


_UNKNOWN = "unknown (see problems)"
_NOTICE = {
    True: "shown",
    False: "not shown yet (the first run on a terminal shows it and uploads nothing)",
}
_SOURCES = {
    "environment": "the environment",
    "dotenv": "./.env",
    "settings": "the choice stored by enable/local/disable",
    "library": "the library's configuration",
    "default": "the built-in default",
}


def _lines(info: dict[str, Any]) -> list[str]:
    exit_line = "yes" if info["upload_at_exit"] else f"no: {info['upload_at_exit_why_not']}"
    pending = (
        _UNKNOWN
        if info["pending_events"] is None
        else f"{info['pending_events']} events, {info['pending_bytes']} bytes"
    )
    lines = [
        f"telemetry:        {_MODE_WORDS[info['mode']]} ({info['reason']})",
        f"decided by:       {_SOURCES.get(info['decided_by'], info['decided_by'])}",
        f"upload at exit:   {exit_line}",
        f"turn it off:      {info['turn_off']}",
        f"first-run notice: {_NOTICE[info['notice_shown']]}",
        f"spool:            {info['files']['spool'] or '(none: no home directory)'}",
        f"pending:          {pending}",
        f"oldest pending:   {info['oldest_pending'] or '-'}",
        f"caps:             {info['max_spool_bytes'] // (1024 * 1024)} MiB, "
        f"{info['max_event_age_days']:g} days",
        f"dropped:          {_counts(info['dropped'])}",
        f"quarantined:      {_UNKNOWN if info['quarantined'] is None else info['quarantined']}",
    ]
    last = info["last_upload"]
    if last:
        outcome = f"sent {last.get('sent', 0)}, pending {last.get('pending', 0)}"
        if last.get("error"):
            outcome += f", error: {last['error']}"
        lines.append(f"last upload:      {last.get('at')} ({outcome})")
    else:
        lines.append("last upload:      never")
    if info["rejected_key"]:
        rejected = info["rejected_key"]
        lines.append(f"rejected key:     {rejected['at']}: {rejected['message']}")
    if info["next_exit_retry"]:
        lines.append(f"next exit retry:  {info['next_exit_retry']}")
    environment = {k: v for k, v in info["environment"].items() if v}
    if environment:
        shown = ", ".join(f"{name} {value}" for name, value in environment.items())
        lines.append(f"environment:      {shown} (overrides what libraries recorded)")
    if info["destinations"]:
        lines.append("destinations:")
        for library, where in info["destinations"].items():
            target = " ".join(part for part in (where["backend"], where["endpoint"]) if part)
            if where["api_key"]:
                target += f" key {where['api_key']} ({where['key_from']})"
            elif where["backend"] == "posthog":
                target += " (no API key: events stay pending)"
            lines.append(f"  {library}: {target}")
    lines.append("files:")
    lines += [f"  {name + ':':<16}{path}" for name, path in info["files"].items() if path]
    lines += [
        f"  {'install id:':<16}{where['install_id_path']} ({library})"
        for library, where in info["destinations"].items()
        if where["install_id_path"] and where["install_id_path"] != info["files"]["install_id"]
    ]
    if info["problems"]:
        lines.append("problems:")
        lines += [f"  - {problem}" for problem in info["problems"]]
    return lines


def _counts(counts: Optional[dict[str, int]]) -> str:
    if counts is None:
        return _UNKNOWN
    if not counts:
        return "0"
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return f"{sum(counts.values())} ({detail})"


_UPLOAD_STILL_RUNNING = (
    "luxonis-telemetry: warning: an upload of this spool did not stop in time; "
    "it sends nothing more once its current batch ends"
)


@command("purge")
def purge(yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")) -> None:
    """Delete every pending and quarantined event without sending it."""
    spool = require_spool()
    if not yes:
        if not sys.stdin.isatty():
            raise CliError("refusing to purge without a terminal to ask on; pass --yes", 2)
        typer.confirm(f"Delete all pending events in {spool.path}?", abort=True)
    report = _controls.purge(spool)
    warn_unsafe_files(spool)
    typer.echo(f"purged {report.removed} pending event(s) from {spool.path}")
    if report.upload_still_running:
        typer.echo(_UPLOAD_STILL_RUNNING, err=True)


def _still(mode: str) -> None:
    """Say so when a stronger switch keeps telemetry from the mode just chosen."""
    decision = decide_mode("on", os.environ, read_dotenv())
    if decision.mode != mode:
        typer.echo(f"note: still {decision.mode} here because {decision.reason}")


@command("enable")
def enable() -> None:
    """Allow recording and uploading again (remembered for this user)."""
    path = _controls.set_mode("on")
    typer.echo(f"telemetry enabled; choice stored in {path}")
    _still("on")


@command("local")
def local() -> None:
    """Record events for `inspect`/`export`, never upload them (remembered for this user)."""
    path = _controls.set_mode("local")
    typer.echo(
        f"telemetry set to local: events are recorded, never uploaded; choice stored in {path}"
    )
    _still("local")


@command("disable")
def disable() -> None:
    """Turn telemetry off for this user and delete everything it wrote (but that choice)."""
    path, report = _controls.disable(open_spool())
    ids = (
        "1 install id"
        if report.install_ids_removed == 1
        else (f"{report.install_ids_removed} install ids")
    )
    typer.echo(
        f"telemetry disabled; removed {report.removed} pending event(s), {ids}, "
        f"recorded keys and counters; the choice is kept in {path}"
    )
    for kept in report.kept:
        typer.echo(f"{PROG}: warning: left alone {literal(kept)}", err=True)
    if report.upload_still_running:
        typer.echo(_UPLOAD_STILL_RUNNING, err=True)
