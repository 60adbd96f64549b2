"""Diagnostics of the library itself, and the one guard of every never-raise entry point.

Telemetry must never break its host, so failures inside the library are
swallowed; they are still worth seeing, so each one is logged at DEBUG on
the ``luxonis_telemetry`` logger with its traceback, and reported to the
observers tests register (a test fails when the library swallowed an error
it did not expect). Nothing here imports ``logging`` (~5 ms, paid at every
tool start or exit): when the host never loaded it, no handler can exist
to show our messages, so there is nothing to do.
"""

from __future__ import annotations

import sys

from . import _state

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Optional

__all__ = ["LOGGER_NAME", "Guard", "debug", "debug_enabled", "internal_error"]

LOGGER_NAME = "luxonis_telemetry"


def debug(message: str, *args: object) -> None:
    """A decision worth explaining to someone who turned on debug logging."""
    logging = sys.modules.get("logging")
    if logging is None:
        return
    try:
        logging.getLogger(LOGGER_NAME).debug("luxonis-telemetry: " + message, *args)
    except Exception:  # noqa: BLE001, S110 - logging must not become the failure
        pass


def debug_enabled() -> bool:
    """Whether a `debug` message would be seen: worth computing an expensive one."""
    logging = sys.modules.get("logging")
    if logging is None:
        return False
    try:
        return bool(logging.getLogger(LOGGER_NAME).isEnabledFor(logging.DEBUG))
    except Exception:  # noqa: BLE001 - logging must not become the failure
        return False


def internal_error(where: str, exc: BaseException) -> None:
    """Log a swallowed failure with its traceback and tell the observers."""
    for observer in tuple(_state.state.error_observers):
        try:
            observer(where, exc)
        except Exception:  # noqa: BLE001, S112 - an observer must not break the guard
            continue
    logging = sys.modules.get("logging")
    if logging is None:
        return
    try:
        logging.getLogger(LOGGER_NAME).debug(
            "luxonis-telemetry: %s failed: %s: %s",
            where,
            type(exc).__name__,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
    except Exception:  # noqa: BLE001, S110 - e.g. logging half-imported by a signal handler
        pass


class Guard:
    """``with guard:`` swallows any ``Exception`` raised inside, logs it, and calls ``on_error``.

    ``KeyboardInterrupt`` and ``SystemExit`` pass through: they belong to the
    host. A guard keeps no state between uses, so one instance per entry
    point is made once and reused (cheaper than a generator-based manager
    on the capture path).
    """

    __slots__ = ("on_error", "where")

    def __init__(self, where: str, on_error: Optional[Callable[[], None]] = None) -> None:
        self.where = where
        self.on_error = on_error

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        try:
            internal_error(self.where, exc)
            if self.on_error is not None:
                self.on_error()
        except Exception:  # noqa: BLE001, S110 - the guard itself never raises
            pass
        return True
