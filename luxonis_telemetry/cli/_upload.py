"""``upload`` and ``export``: send pending events, or carry them off an air-gapped machine.

``upload --dry-run`` sends nothing and changes nothing; with ``--json`` it
prints exactly the PostHog requests an upload would make now (one per
line, the key masked), so a person can see the wire before anything leaves.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from typing import Any, Optional

import typer

from .._text import literal, mask_key, mask_url
from ..uploader import plan, sending_blocked, upload
from ._app import CliError, command, print_json, require_spool, warn_unsafe_files

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..spool import Spool

__all__ = ["export", "upload_command"]


@contextlib.contextmanager
def _bundle_errors() -> Iterator[None]:
    """A bad bundle is a one-line error (``bundle`` loads only for the commands using it)."""
    from ..bundle import BundleError

    try:
        yield
    except BundleError as exc:
        raise CliError(str(exc)) from None


@command("upload")
def upload_command(
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Show what would be sent, and where; send nothing. With --json: the exact requests.",
    ),
    bundle: Optional[str] = typer.Option(
        None, "--from", metavar="BUNDLE", help="Upload a bundle made by `export`."
    ),
    timeout: float = typer.Option(
        60.0, "--timeout", min=1.0, max=86400.0, help="Time budget of the whole run, in seconds."
    ),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Send to this host instead."),
    api_key: Optional[str] = typer.Option(
        None,
        "--api-key",
        help="Use this API key (default: LUXONIS_TELEMETRY_API_KEY, or recorded).",
    ),
    backend: Optional[str] = typer.Option(
        None, "--backend", help="Send through this backend instead."
    ),
) -> None:
    """Send pending events; exit 0 when all were sent (or sending is off), 1 when some are left."""
    if not math.isfinite(timeout):  # older Typer releases let nan through the range check
        raise CliError(f"--timeout {timeout}: give a number of seconds", 2)
    spool = require_spool()
    if dry_run:
        if bundle:
            raise CliError(
                "--dry-run and --from cannot be combined; use `inspect` on this machine", 2
            )
        _dry_run(spool, as_json, backend=backend, endpoint=endpoint, api_key=api_key)
        return
    with _progress(spool, bundle, quiet=as_json) as tick:
        if bundle:
            from ..bundle import upload_bundle

            with _bundle_errors():
                result = upload_bundle(
                    bundle,
                    spool,
                    budget=timeout,
                    endpoint=endpoint,
                    api_key=api_key,
                    backend=backend,
                    progress=tick,
                )
        else:
            result = upload(
                budget=timeout,
                spool=spool,
                endpoint=endpoint,
                api_key=api_key,
                backend=backend,
                progress=tick,
            )
    if as_json:
        print_json(result.to_json())
    else:
        # One line; a refused key is named in it (the events stay pending).
        typer.echo(literal(" ".join(result.summary().split())))
    warn_unsafe_files(spool)
    if not result.ok:
        raise typer.Exit(1)


def _dry_run(
    spool: Spool,
    as_json: bool,
    *,
    backend: Optional[str],
    endpoint: Optional[str],
    api_key: Optional[str],
) -> None:
    blocked = sending_blocked(os.environ)
    counts: dict[str, int] = {}
    pending = 0
    for chunk, target in plan(spool=spool, backend=backend, endpoint=endpoint, api_key=api_key):
        if not chunk.records or chunk.destination is None:
            continue
        library = chunk.records[0]["library"]
        pending += len(chunk.records)
        if as_json:
            print_json(_request(chunk, target, blocked))
            continue
        where = f"{library} -> {chunk.destination.describe()}"
        if target is None:
            where += " (would stay pending: backend unavailable)"
        counts[where] = counts.get(where, 0) + len(chunk.records)
    warn_unsafe_files(spool)
    if as_json:
        return
    if blocked is not None:
        typer.echo(literal(f"dry run: nothing would be sent: {blocked} ({pending} pending)"))
        return
    if not counts:
        typer.echo("Nothing pending.")
        return
    for where, count in sorted(counts.items()):
        typer.echo(literal(f"would send {count} event(s): {where}"))
    typer.echo(f"dry run: nothing sent ({pending} pending)")


def _request(chunk: Any, backend: Any, blocked: Optional[str]) -> dict[str, Any]:
    """One request an upload would make now, as JSON (the key masked)."""
    destination = chunk.destination
    line: dict[str, Any] = {
        "library": chunk.records[0]["library"],
        "destination": destination.describe(),
        "events": len(chunk.records),
    }
    if blocked is not None:
        line["would_stay_pending"] = blocked
    messages = getattr(backend, "messages", None)
    if backend is None:
        line["would_stay_pending"] = "the destination's backend is unavailable (see status)"
    elif callable(messages):
        line["url"] = mask_url(backend.url)
        line["body"] = {
            "api_key": mask_key(backend.api_key),
            "historical_migration": chunk.historical,
            "batch": messages(chunk.records),
        }
        return line
    line["records"] = chunk.records
    return line


class _Tick:
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
        total = self.spool.count_pending()
        if total < self.THRESHOLD:
            return None
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.bar.start()
        return _Tick(self.bar, self.bar.add_task("uploading", total=total))

    def __exit__(self, *_exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


@command("export")
def export(
    path: str = typer.Argument(..., help="Bundle file to write (gzip JSON lines)."),
    move: bool = typer.Option(
        False, "--move", help="Remove the events once the bundle is written and verified."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace PATH if it is an existing regular file."
    ),
) -> None:
    """Write pending events to a portable bundle, for an air-gapped machine."""
    spool = require_spool()
    if not spool.exists():
        raise CliError("nothing to export: no events were ever recorded here")
    if os.path.isdir(path):
        raise CliError(f"{path} is a folder; give a file name such as events.ltb.gz", 2)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CliError(f"the folder {folder} does not exist", 2)
    from ..bundle import export_bundle

    with _bundle_errors():
        info = export_bundle(spool, path, move=move, force=force)
    warn_unsafe_files(spool)
    verb = "moved" if move else "copied"
    typer.echo(f"{verb} {info.count} event(s) to {path} (sha256 {info.sha256[:16]}…)")
