"""The ``luxonis-telemetry`` command: review, deliver, export or switch off.

A thin layer over the library: every command maps to a library call.
Errors are one line on stderr (``luxonis-telemetry: error: ...``), never a
traceback. Exit codes: 0 done, 1 something left pending or failed, 2 usage,
130 interrupted.
A tool can mount these commands under its own Typer CLI with
:func:`add_commands` (``mytool telemetry status``); they record nothing.
"""

from __future__ import annotations

from typing import Any

from . import _inspect, _manage, _upload
from ._app import app, error_line

__all__ = ["add_commands", "app", "main"]

_COMMANDS = (_inspect, _manage, _upload)  # importing them registered their commands


def add_commands(parent: Any, name: str = "telemetry") -> None:
    """Mount every ``luxonis-telemetry`` command under ``parent`` (a ``typer.Typer``) as ``name``.

    ``mytool telemetry status`` then works like ``luxonis-telemetry status``.
    The commands record no telemetry, even in a tool that instrumented its
    CLI, and after ``mytool telemetry disable`` nothing more is recorded by
    that process.
    """
    parent.add_typer(app, name=name, help="See, upload or turn off this tool's usage telemetry.")


def main() -> None:
    """Console-script entry: a last guard so no traceback ever reaches the user."""
    try:
        app()
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - one line, never a traceback
        if isinstance(exc, KeyboardInterrupt):
            error_line("interrupted")
            raise SystemExit(130) from None
        error_line(f"unexpected {type(exc).__name__}: {exc}")
        raise SystemExit(1) from None
