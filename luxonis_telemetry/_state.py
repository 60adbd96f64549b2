"""All process-wide state of luxonis-telemetry, in one place.

Nothing here does work at import: the exit hook and the fork hook are
registered by the first ``Telemetry`` that records something. Tests call
:func:`reset` to start from a clean process state.
"""

from __future__ import annotations

import os
import threading
import uuid

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from .client import Telemetry
    from .config import TelemetryConfig
    from .spool import Spool

    BackendFactory = Callable[[TelemetryConfig], Any]

__all__ = ["State", "log_debug", "log_internal_error", "reset", "state"]


class State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.backend_factories: dict[str, BackendFactory] = {}
        self.singletons: dict[str, Telemetry] = {}
        self.spools: dict[str, Spool] = {}
        # spool path -> {library name: the config it records with}
        self.recorded: dict[str, dict[str, TelemetryConfig]] = {}
        self.install_ids: dict[str, str] = {}
        self.session: Optional[str] = None
        self.session_pid = 0
        self.exit_hook_registered = False
        self.fork_hook_registered = False

    def session_id(self) -> str:
        pid = os.getpid()
        if self.session is None or self.session_pid != pid:
            self.session = str(uuid.uuid4())
            self.session_pid = pid
        return self.session


state = State()


def reset() -> None:
    """Forget everything (tests); open spool descriptors are closed."""
    global state  # noqa: PLW0603 - the one module that owns global state
    for spool in state.spools.values():
        spool.forget_descriptors()
    state = State()


def after_fork_in_child() -> None:
    """A forked child gets its own session and its own descriptors and locks."""
    current = state
    current.lock = threading.RLock()
    current.session = None
    for spool in current.spools.values():
        spool.reset_thread_lock()
        spool.forget_descriptors()
    current.recorded.clear()


def log_debug(message: str, *args: object) -> None:
    """Decisions worth explaining when someone turns on debug logging."""
    import logging

    logging.getLogger("luxonis_telemetry").debug("luxonis-telemetry: " + message, *args)


def log_internal_error(where: str, exc: BaseException) -> None:
    """Telemetry failures are logged at debug level and otherwise swallowed."""
    import logging

    logging.getLogger("luxonis_telemetry").debug(
        "luxonis-telemetry: %s failed: %s: %s", where, type(exc).__name__, exc
    )
