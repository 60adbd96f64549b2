"""All process-wide state of luxonis-telemetry, in one place.

Nothing here does work at import. Tests call :func:`reset` to start from a
clean state; :func:`register_process_hooks` registers the exit and fork
hooks once per process, whatever the number of resets, and the hooks read
the current state when they run.
"""

from __future__ import annotations

import _thread
import os

from ._ids import new_uuid4

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Optional

    from .client import Telemetry
    from .config import TelemetryConfig
    from .spool import Spool

    BackendFactory = Callable[[TelemetryConfig], Any]
    ErrorObserver = Callable[[str, BaseException], None]

__all__ = ["State", "after_fork_in_child", "register_process_hooks", "reset", "state"]


class State:
    """One process's registries, caches and decisions; replaced wholesale by :func:`reset`."""

    def __init__(self) -> None:
        self.lock = _thread.RLock()
        # registered backend factories by lower-case name
        self.backend_factories: dict[str, BackendFactory] = {}
        # get_or_init/initialize_telemetry instances by (library, source component)
        self.singletons: dict[tuple[str, str], Telemetry] = {}
        self.spools: dict[str, Spool] = {}
        # spool path -> {library name: the config it records with}
        self.recorded: dict[str, dict[str, TelemetryConfig]] = {}
        self.install_ids: dict[str, Optional[str]] = {}
        self.session: Optional[str] = None
        self.session_pid = 0
        # observers of swallowed internal errors (the test suite fails on unexpected ones)
        self.error_observers: list[ErrorObserver] = []
        # files refused because they were not regular files of this user: path -> why
        self.unsafe_files: dict[str, str] = {}
        # the first-run notice was considered (and maybe shown) in this process
        self.notice_checked = False
        self.notice_shown = False
        # `luxonis-telemetry disable` ran in this process: record nothing more
        self.disabled_here = False
        # shutdown_on_exit() was asked for: the exit hook shuts the singletons down first
        self.shutdown_singletons = False
        # the worker thread that delivers in-process at exit (started before exit)
        self.exit_worker: Any = None
        # testing.capture_events(): records go to this list, nothing is written or sent
        self.sink: Optional[list[dict[str, Any]]] = None

    def session_id(self) -> str:
        """One random id per process (a forked child gets its own)."""
        pid = os.getpid()
        if self.session is None or self.session_pid != pid:
            self.session = new_uuid4()
            self.session_pid = pid
        return self.session


state = State()
_hooks_registered = False
forks = 0
"""How many times this process was forked into (0 in the original process).

Caches that belong to one process (the encoded context, open descriptors)
compare it to the value they were made with: an attribute read, where
``os.getpid()`` is a system call on every capture.
"""


def reset() -> None:
    """Forget everything (tests); open spool descriptors are closed."""
    global state  # noqa: PLW0603 - the one module that owns global state
    for spool in state.spools.values():
        spool.forget_descriptors()
    state = State()


def register_process_hooks(exit_hook: Callable[[], None]) -> None:
    """Register the exit hook, once per process (the fork hook is registered at import)."""
    global _hooks_registered  # noqa: PLW0603 - a fact about the process, not the state
    if _hooks_registered:
        return
    import atexit

    atexit.register(exit_hook)
    _hooks_registered = True


def after_fork_in_child() -> None:
    """A forked child gets its own session, descriptors and locks, and records afresh."""
    global forks  # noqa: PLW0603 - a fact about the process, not the state
    forks += 1
    current = state
    current.lock = _thread.RLock()
    current.session = None
    for spool in current.spools.values():
        spool.after_fork()
    current.recorded.clear()
    current.exit_worker = None


if hasattr(os, "register_at_fork"):  # a cheap registration; it runs only in a forked child
    os.register_at_fork(after_in_child=after_fork_in_child)
