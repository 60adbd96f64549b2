"""The Typer app and what every command shares: one-line errors, no telemetry of its own.

Each command is wrapped by :func:`command`: any failure becomes one line on
stderr (``luxonis-telemetry: error: ...``) and an exit code, never a
traceback; the command records nothing (it runs inside
``suppress_telemetry`` and is marked ``skip_telemetry``, so a tool that
mounts these commands and instruments its own CLI records nothing for them).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, TypeVar

import typer
from typer.core import TyperGroup

from .._text import literal
from ..instrument import skip_telemetry
from ..status import unsafe_files
from ..suppression import suppress_telemetry
from ..uploader import open_spool

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from ..spool import Spool

__all__ = [
    "PROG",
    "CliError",
    "app",
    "command",
    "error_line",
    "parse_since",
    "print_json",
    "require_spool",
    "warn_unsafe_files",
]

PROG = "luxonis-telemetry"
_MAX_WARNINGS = 5  # unsafe files named one by one; a hostile folder may hold thousands
F = TypeVar("F", bound=Callable[..., Any])


class _OneLineErrors(TyperGroup):
    """The top-level group: a usage error is one line on stderr and exit code 2.

    Click prints usage, a hint and the error over several lines; a person
    (or a script reading stderr) gets one line instead, as for every other
    error of this command. ``no_args_is_help`` still shows the help.
    """

    def main(  # type: ignore[override]
        self,
        args: Optional[Any] = None,
        prog_name: Optional[str] = None,
        complete_var: Optional[str] = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except typer.Abort:
            error_line("aborted")
            sys.exit(1)
        except Exception as exc:
            exit_code = getattr(exc, "exit_code", None)
            if not isinstance(exit_code, int) or not hasattr(exc, "format_message"):
                raise  # not a click/Typer usage problem: `main()` reports it in one line
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]
            else:
                error_line(exc.format_message() + _help_hint(exc, exit_code))
            sys.exit(exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def _help_hint(exc: Exception, exit_code: int) -> str:
    """Where to read about the command that was misused (usage errors only)."""
    if exit_code != 2:
        return ""
    context = getattr(exc, "ctx", None)
    path = getattr(context, "command_path", None) or PROG
    return f" (see {path} --help)"


app = typer.Typer(
    name=PROG,
    cls=_OneLineErrors,
    help="Review, deliver, export or switch off the usage events Luxonis tools record.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class CliError(Exception):
    """A problem to report in one line, with the exit code to leave with."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def error_line(message: str) -> None:
    """One line on stderr; whatever a file name or a server put in it is shown literally."""
    typer.echo(f"{PROG}: error: {literal(' '.join(message.split()))}", err=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    error_line(message)
    return typer.Exit(code)


def warn_unsafe_files(spool: Spool) -> None:
    """Tell the person which of our files were skipped as unsafe (one line each, on stderr)."""
    found = sorted(unsafe_files(spool).items())
    for path, why in found[:_MAX_WARNINGS]:
        typer.echo(f"{PROG}: warning: skipped {literal(path)}: {why}", err=True)
    if len(found) > _MAX_WARNINGS:
        typer.echo(
            f"{PROG}: warning: {len(found) - _MAX_WARNINGS} more unsafe files skipped "
            f"(see `{PROG} status`)",
            err=True,
        )


def command(name: Optional[str] = None) -> Callable[[F], F]:
    """Register a command that reports failures in one line and records no telemetry."""

    def register(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with suppress_telemetry():
                try:
                    return func(*args, **kwargs)
                except (typer.Exit, typer.Abort):
                    raise
                except KeyboardInterrupt:  # an interruption, as shells count it: 128 + SIGINT
                    raise fail("interrupted", 130) from None
                except CliError as exc:
                    raise fail(str(exc), exc.code) from None
                except OSError as exc:
                    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
                    raise fail(f"{exc.strerror or exc}{where}") from None
                except Exception as exc:  # noqa: BLE001 - one line, never a traceback
                    raise fail(f"unexpected {type(exc).__name__}: {exc}") from None

        app.command(name)(skip_telemetry(run))
        return func

    return register


def require_spool() -> Spool:
    """The user's spool, or a one-line reason why there is none."""
    spool = open_spool()
    if spool is None:
        raise CliError("no spool folder: no home directory found; set LUXONIS_TELEMETRY_SPOOL_DIR")
    problem = spool.problem()
    if problem:
        raise CliError(problem)
    return spool


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, sort_keys=True, default=str))


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: Optional[datetime] = None) -> datetime:
    """``2h``, ``3d``, ``45m`` ago, or an ISO date/time (UTC when naive)."""
    now = now or datetime.now(timezone.utc)
    usage = f"--since {text!r}: use an ISO date/time (2026-11-28T14:00) or an age like 2h, 3d"
    match = _RELATIVE.fullmatch(text.strip().lower())
    if match:
        try:
            return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        except (OverflowError, ValueError):
            raise CliError(
                f"--since {text.strip()[:40]!r} reaches back before the year 1; "
                "use a smaller age or a date",
                2,
            ) from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(usage, 2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def version_callback(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"luxonis-telemetry {__version__}")
        raise typer.Exit


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """Review, deliver, export or switch off the usage events Luxonis tools record."""


def terminal_width() -> Optional[int]:
    """The terminal's width when stdout is one (``None`` lets rich decide; 120 otherwise)."""
    if sys.stdout.isatty():
        try:
            return os.get_terminal_size(sys.stdout.fileno()).columns
        except OSError:
            return None
    return 120
