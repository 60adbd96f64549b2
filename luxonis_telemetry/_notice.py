"""The one-time notice: a person is told, once, that telemetry exists and how to turn it off.

It is printed to a terminal only (or to a Jupyter/IPython kernel's output,
where stderr is no terminal), never to a pipe, never under CI, never when
telemetry is off, and once per user for every library: the process that
creates the marker file shows it. The run that shows it uploads nothing at
exit, so the person can opt out before anything leaves the machine.
"""

from __future__ import annotations

import sys

from . import _settings, _state
from .config import config_dir, is_ci

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from .config import TelemetryConfig

__all__ = ["maybe_show_notice", "notice_text"]


def notice_text(config: TelemetryConfig) -> str:
    """What the person reads (a library may name its product and link its privacy page)."""
    product = config.product_name or "This Luxonis tool"
    if config.local:
        what = f"{product} records anonymous usage events on this machine only (local mode):"
    else:
        what = f"{product} records anonymous usage events and uploads them later:"
    lines = [
        what,
        "command names, durations, versions, OS and Python version, an anonymous install id;",
        "never your files, paths or data.",
        "  See exactly what is recorded:   luxonis-telemetry inspect",
        "  Turn it off:                     luxonis-telemetry disable   (or DO_NOT_TRACK=1)",
    ]
    if config.privacy_url:
        lines.append(f"  More: {config.privacy_url}")
    lines.append("This notice is shown once; nothing is uploaded during this run.")
    return "\n".join(lines)


def _interactive() -> bool:
    """A person reads stderr: a terminal, or a Jupyter/IPython kernel's output cell."""
    try:
        stream = sys.stderr
        if stream is not None and stream.isatty():
            return True
    except (AttributeError, ValueError, OSError):  # closed or replaced by an odd object
        pass
    return "ipykernel" in sys.modules


def maybe_show_notice(config: TelemetryConfig) -> None:
    """Show the notice if this is the first time for this user (called once per process)."""
    current = _state.state
    if current.notice_checked:
        return
    current.notice_checked = True
    if not config.enabled or config.effective_backend in ("stdout", "noop") or is_ci():
        return
    if not _interactive():
        return
    folder = config_dir()
    if folder is None or not _settings.claim_notice(folder):
        return
    current.notice_shown = True
    try:
        sys.stderr.write(notice_text(config) + "\n")
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass
