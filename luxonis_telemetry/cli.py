"""The ``luxonis-telemetry`` command: review, deliver, export or switch off.

A thin layer over the library: every command maps to one library call.
Errors are one line on stderr (``luxonis-telemetry: error: ...``), never a
traceback. Exit codes: 0 done, 1 something left pending or failed, 2 usage.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import typer

from . import __version__
from .config import (
    TelemetryConfig,
    config_dir,
    enabled_decision,
    settings_path,
)
from .spool import BadLine, Spool
from .uploader import UploadResult, count_pending, open_spool, resolve_destinations, upload

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["app", "main"]

app = typer.Typer(
    name="luxonis-telemetry",
    help="Review, deliver, export or switch off the usage events Luxonis tools record.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"luxonis-telemetry: error: {message}", err=True)
    return typer.Exit(code)


def friendly(func: F) -> F:
    """Turn any failure into one clear line on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except CliError as exc:
            raise _fail(str(exc), exc.code) from None
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise _fail(f"{exc.strerror or exc}{where}") from None
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            raise _fail(f"unexpected {type(exc).__name__}: {exc}") from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _bundle_errors() -> Iterator[None]:
    """A bad bundle is a one-line error (``bundle`` loads only for the commands using it)."""
    from .bundle import BundleError

    try:
        yield
    except BundleError as exc:
        raise CliError(str(exc)) from None


def _spool() -> Spool:
    spool = open_spool()
    if spool is None:
        raise CliError("no spool folder: no home directory found; set LUXONIS_TELEMETRY_SPOOL_DIR")
    problem = spool.problem()
    if problem:
        raise CliError(problem)
    return spool


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, sort_keys=True, default=str))


def mask(key: Optional[str]) -> Optional[str]:
    """Enough of a key to recognise it, never enough to use it."""
    if not key:
        return None
    if len(key) <= 8:
        return "****"
    return f"{key[:4]}…{key[-2:]}"


# -- inspect --------------------------------------------------------------------


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: Optional[datetime] = None) -> datetime:
    """``2h``, ``3d``, ``45m`` ago, or an ISO date/time (UTC when naive)."""
    now = now or datetime.now(timezone.utc)
    match = _RELATIVE.fullmatch(text.strip().lower())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"--since {text!r}: use an ISO date/time (2026-11-28T14:00) or an age like 2h, 3d", 2
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _matching(
    spool: Spool, event: Optional[str], library: Optional[str], since: Optional[datetime]
) -> Iterator[dict[str, Any]]:
    for _end, item in spool.iter_pending():
        if isinstance(item, BadLine):
            continue
        if event is not None and item["event"] != event:
            continue
        if library is not None and item["library"] != library:
            continue
        if since is not None:
            try:
                stamp = datetime.fromisoformat(item["timestamp"])
            except ValueError:
                continue
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=timezone.utc)
            if stamp < since:
                continue
        yield item


def _short(properties: dict[str, Any], width: int = 60) -> str:
    text = json.dumps(properties, separators=(",", "="), sort_keys=True)[1:-1]
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command()
@friendly
def inspect(
    as_json: bool = typer.Option(False, "--json", help="Print the stored records, one per line."),
    limit: Optional[int] = typer.Option(
        None, "--limit", min=0, help="Show at most N events (table default 50; 0: all)."
    ),
    event: Optional[str] = typer.Option(None, "--event", help="Only events with this name."),
    library: Optional[str] = typer.Option(None, "--library", help="Only this library's events."),
    since: Optional[str] = typer.Option(
        None, "--since", help="Only events after WHEN (2h, 3d, ISO time)."
    ),
    quarantined: bool = typer.Option(
        False, "--quarantined", help="Show the lines set aside as corrupt or rejected instead."
    ),
) -> None:
    """List the events waiting to leave this machine (nothing is sent)."""
    spool = _spool()
    after = parse_since(since) if since else None
    if quarantined:
        _inspect_quarantine(spool, limit)
        return
    records = _matching(spool, event, library, after)
    if as_json:
        write = sys.stdout.write
        for shown, record in enumerate(records):
            if limit and shown >= limit:
                break
            write(json.dumps(record, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        return
    _inspect_table(records, 50 if limit is None else limit)


def _inspect_table(records: Iterator[dict[str, Any]], limit: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 120)
    totals: dict[tuple[str, str], int] = {}
    rows: list[tuple[str, str, str, str]] = []
    shown = total = 0
    header = True

    def print_rows() -> None:
        nonlocal header, rows
        if not rows:
            return
        table = Table(box=None, show_header=header, pad_edge=False)
        table.add_column("time (UTC)", min_width=19, no_wrap=True)
        table.add_column("library", min_width=10, max_width=16, no_wrap=True, overflow="ellipsis")
        table.add_column("event", min_width=12, max_width=28, no_wrap=True, overflow="ellipsis")
        table.add_column("properties", min_width=20, no_wrap=True, overflow="ellipsis")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        header, rows = False, []

    for record in records:
        total += 1
        key = (record["library"], record["event"])
        totals[key] = totals.get(key, 0) + 1
        if limit == 0 or shown < limit:
            shown += 1
            rows.append(
                (
                    record["timestamp"][:19].replace("T", " "),
                    record["library"],
                    record["event"],
                    _short(record["properties"]),
                )
            )
            if len(rows) >= 200:
                print_rows()
    print_rows()
    if total == 0:
        console.print("No pending events.")
        return
    if shown < total:
        console.print(f"… {total - shown} more not shown (--limit 0 shows all)")
    summary = Table(title=f"{total} pending events", box=None, pad_edge=False)
    summary.add_column("library")
    summary.add_column("event")
    summary.add_column("count", justify="right")
    for (lib, name), count in sorted(totals.items()):
        summary.add_row(lib, name, str(count))
    console.print(summary)


def _inspect_quarantine(spool: Spool, limit: Optional[int]) -> None:
    path = spool.file("quarantine.jsonl")
    if not os.path.exists(path):
        typer.echo("Nothing quarantined.")
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        for shown, line in enumerate(handle):
            if limit and shown >= limit:
                break
            sys.stdout.write(line)


# -- upload ---------------------------------------------------------------------


@app.command("upload")
@friendly
def upload_command(
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would be sent, and where; send nothing."
    ),
    bundle: Optional[str] = typer.Option(
        None, "--from", metavar="BUNDLE", help="Upload a bundle made by `export`."
    ),
    timeout: float = typer.Option(60.0, "--timeout", min=1.0, help="Time budget in seconds."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Send to this host instead."),
    backend: Optional[str] = typer.Option(
        None, "--backend", help="Send through this backend instead."
    ),
) -> None:
    """Send pending events; exit 0 when all were sent, 1 when some are left."""
    spool = _spool()
    if dry_run:
        if bundle:
            raise CliError(
                "--dry-run and --from cannot be combined; use `inspect` on this machine", 2
            )
        result = upload(dry_run=True, spool=spool, endpoint=endpoint, backend=backend)
        _report_plan(result, as_json)
        return
    with _progress(spool, bundle, quiet=as_json) as tick:
        if bundle:
            from .bundle import upload_bundle

            with _bundle_errors():
                result = upload_bundle(
                    bundle, spool, budget=timeout, endpoint=endpoint, backend=backend, progress=tick
                )
        else:
            result = upload(
                budget=timeout, spool=spool, endpoint=endpoint, backend=backend, progress=tick
            )
    if as_json:
        _print_json(
            {
                "sent": result.sent,
                "pending": result.pending,
                "failed": result.failed,
                "skipped": result.skipped,
                "error": result.error,
                "reasons": result.reasons,
                "busy": result.busy,
            }
        )
    else:
        typer.echo(result.summary())
    if not result.ok:
        raise typer.Exit(1)


def _report_plan(result: UploadResult, as_json: bool) -> None:
    if as_json:
        _print_json(
            {"would_send": result.planned, "pending": result.pending, "corrupt": result.failed}
        )
        return
    if not result.planned:
        typer.echo("Nothing pending.")
        return
    for where, count in sorted(result.planned.items()):
        typer.echo(f"would send {count} event(s): {where}")
    typer.echo(f"dry run: nothing sent ({result.pending} pending)")


class _Progress:
    def __init__(self, bar: Any, task: Any) -> None:
        self.bar = bar
        self.task = task

    def __call__(self, count: int) -> None:
        self.bar.advance(self.task, count)


class _progress:
    """A progress bar on a terminal for large spools; nothing when piped."""

    THRESHOLD = 2000

    def __init__(self, spool: Spool, bundle: Optional[str], *, quiet: bool) -> None:
        self.spool = spool
        self.enabled = not quiet and not bundle and sys.stdout.isatty()
        self.bar: Any = None

    def __enter__(self) -> Optional[Callable[[int], None]]:
        if not self.enabled or not self.spool.exists():
            return None
        total = count_pending(self.spool)
        if total < self.THRESHOLD:
            return None
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.bar.start()
        return _Progress(self.bar, self.bar.add_task("uploading", total=total))

    def __exit__(self, *_exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


# -- status ---------------------------------------------------------------------


def gather_status(spool: Optional[Spool]) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (keys masked)."""
    env = os.environ
    enabled, reason = enabled_decision(True, env)
    user = TelemetryConfig.from_env(TelemetryConfig(), env)
    info: dict[str, Any] = {
        "enabled": enabled,
        "reason": reason,
        "settings_file": settings_path(),
        "upload_on_exit": user.upload_on_exit,
        "spool": spool.path if spool else None,
        "pending_events": 0,
        "pending_bytes": 0,
        "oldest_pending": None,
        "dropped": {},
        "quarantined": 0,
        "last_upload": None,
        "next_exit_retry": None,
        "destinations": {},
        "problem": None,
        "max_spool_bytes": user.max_spool_bytes,
        "max_event_age_days": user.max_event_age_days,
    }
    info["problem"] = spool.problem() if spool is not None else None
    if spool is None or info["problem"] or not spool.exists():
        return info
    recorded = spool.read_destinations()
    lookup = resolve_destinations(recorded, env)
    for library in sorted(recorded):
        destination = lookup(library)
        info["destinations"][library] = {
            "backend": destination.backend,
            "endpoint": destination.endpoint,
            "api_key": mask(destination.api_key),
        }
    info["pending_events"] = count_pending(spool)
    info["pending_bytes"] = spool.pending_bytes()
    info["oldest_pending"] = _oldest(spool)
    state = spool.read_state()
    info["dropped"] = state.get("dropped", {})
    info["quarantined"] = state.get("quarantined", 0)
    last = state.get("last_upload")
    if isinstance(last, dict):
        info["last_upload"] = {**last, "at": _iso(last.get("at"))}
    backoff = state.get("exit_backoff")
    next_at = backoff.get("next_attempt_at") if isinstance(backoff, dict) else None
    if isinstance(next_at, (int, float)) and next_at > time.time():
        info["next_exit_retry"] = _iso(next_at)
    return info


def _oldest(spool: Spool) -> Optional[str]:
    oldest: Optional[str] = None
    for segment in spool.segments()[:1]:
        for _end, item in segment.records():
            if not isinstance(item, BadLine):
                oldest = item["timestamp"]
                break
    for path in spool.active_files():
        from .spool import iter_records

        for _end, item in iter_records(path, torn_tail_is_bad=False):
            if not isinstance(item, BadLine):
                if oldest is None or item["timestamp"] < oldest:
                    oldest = item["timestamp"]
                break
    return oldest


def _iso(value: Any) -> Optional[str]:
    if not isinstance(value, (int, float)):
        return None
    return datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds")


@app.command()
@friendly
def status(as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Whether telemetry is on and why, where events go, and what is pending."""
    info = gather_status(open_spool())
    if as_json:
        _print_json(info)
        return
    lines = [
        f"telemetry:        {'enabled' if info['enabled'] else 'DISABLED'} ({info['reason']})",
        f"upload on exit:   {'yes' if info['upload_on_exit'] else 'no'}",
        f"spool:            {info['spool'] or '(none: no home directory)'}",
        *([f"problem:          {info['problem']}"] if info.get("problem") else []),
        f"pending:          {info['pending_events']} events, {info['pending_bytes']} bytes",
        f"caps:             {info['max_spool_bytes'] // (1024 * 1024)} MiB, "
        f"{info['max_event_age_days']:g} days",
        f"oldest pending:   {info['oldest_pending'] or '-'}",
        f"dropped:          {_counts(info['dropped'])}",
        f"quarantined:      {info['quarantined']}",
    ]
    last = info["last_upload"]
    if last:
        outcome = f"sent {last.get('sent', 0)}, pending {last.get('pending', 0)}"
        if last.get("error"):
            outcome += f", error: {last['error']}"
        lines.append(f"last upload:      {last.get('at')} ({outcome})")
    else:
        lines.append("last upload:      never")
    lines.append(f"next exit retry:  {info['next_exit_retry'] or 'at the next exit'}")
    if info["destinations"]:
        lines.append("destinations:")
        for library, where in info["destinations"].items():
            target = " ".join(part for part in (where["backend"], where["endpoint"]) if part)
            if where["api_key"]:
                target += f" key {where['api_key']}"
            elif where["backend"] == "posthog":
                target += " (no API key: events stay pending)"
            lines.append(f"  {library}: {target}")
    typer.echo("\n".join(lines))


def _counts(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return "0"
    total = sum(v for v in counts.values() if isinstance(v, int))
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return f"{total} ({detail})"


# -- purge, enable, disable, export -------------------------------------------


@app.command()
@friendly
def purge(yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")) -> None:
    """Delete every pending event without sending it."""
    spool = _spool()
    if not yes:
        if not sys.stdin.isatty():
            raise CliError("refusing to purge without a terminal to ask on; pass --yes", 2)
        typer.confirm(f"Delete all pending events in {spool.path}?", abort=True)
    removed = spool.purge()
    typer.echo(f"purged {removed} pending event(s) from {spool.path}")


def _save_choice(enabled: bool) -> str:
    folder = config_dir()
    path = settings_path()
    if folder is None or path is None:
        raise CliError(
            "no per-user config folder (no home directory); set LUXONIS_TELEMETRY_CONFIG_DIR"
        )
    os.makedirs(folder, mode=0o700, exist_ok=True)
    data = json.dumps({"enabled": enabled, "changed_at": datetime.now(timezone.utc).isoformat()})
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data)
    os.replace(tmp, path)
    return path


@app.command()
@friendly
def enable() -> None:
    """Allow telemetry again (remembered for this user)."""
    path = _save_choice(True)
    enabled, reason = enabled_decision(True, os.environ)
    typer.echo(f"telemetry enabled; choice stored in {path}")
    if not enabled:
        typer.echo(f"note: still off here because {reason}")


@app.command()
@friendly
def disable() -> None:
    """Turn telemetry off for this user, delete pending events and the install id."""
    path = _save_choice(False)
    spool = open_spool()
    removed = spool.purge() if spool is not None else 0
    folder = config_dir()
    if folder:
        install_id = os.path.join(folder, "install_id")
        if os.path.exists(install_id):
            os.unlink(install_id)
    typer.echo(f"telemetry disabled; choice stored in {path}; purged {removed} pending event(s)")


@app.command()
@friendly
def export(
    path: str = typer.Argument(..., help="Bundle file to write (gzip JSON lines)."),
    move: bool = typer.Option(
        False, "--move", help="Remove the events once the bundle is written and verified."
    ),
) -> None:
    """Write pending events to a portable bundle, for an air-gapped machine."""
    spool = _spool()
    if not spool.exists():
        raise CliError("nothing to export: no events were ever recorded here")
    if os.path.isdir(path):
        raise CliError(f"{path} is a folder; give a file name such as events.ltb.gz", 2)
    from .bundle import export_bundle

    with _bundle_errors():
        info = export_bundle(spool, path, move=move)
    verb = "moved" if move else "copied"
    typer.echo(f"{verb} {info.count} event(s) to {path} (sha256 {info.sha256[:16]}…)")


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"luxonis-telemetry {__version__}")
        raise typer.Exit


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """Review, deliver, export or switch off the usage events Luxonis tools record."""


def main() -> None:
    """Console-script entry: a last guard so no traceback ever reaches the user."""
    try:
        app()
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - one line, never a traceback
        if isinstance(exc, KeyboardInterrupt):
            raise SystemExit(130) from None
        typer.echo(f"luxonis-telemetry: error: {type(exc).__name__}: {exc}", err=True)
        raise SystemExit(1) from None
