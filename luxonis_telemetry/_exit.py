"""The exit hook: deliver what this process captured without delaying its exit.

Network delivery happens in a detached helper process with a hard deadline,
so the host exits at once even when the endpoint refuses or hangs, and the
helper is gone within its budget plus ``HELPER_GRACE`` seconds (25 s by
default) whatever the network does.
Backends registered in-process (the seed's ``MyBackend``) exist only in this
process, so their events are handed over here, within a short budget.

No helper is started when ``CI`` is set or under pytest, unless
``LUXONIS_TELEMETRY_UPLOAD_ON_EXIT`` is explicitly truthy: test runs and CI
jobs leave their events pending instead of spawning processes. In-process
backends still get their events (no process, no network of ours).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from . import _state
from .backends._registry import BUILTIN_BACKENDS
from .config import UPLOAD_ON_EXIT, parse_bool, running_under_test_or_ci

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from typing import Any

    from .config import TelemetryConfig
    from .spool import Spool

__all__ = ["HELPER_BUDGET", "HELPER_GRACE", "helper_budget", "helper_main", "run_exit_hook"]

HELPER_BUDGET = 15.0
HELPER_GRACE = 10.0
IN_PROCESS_BUDGET = 2.0
EXIT_TIMEOUT = "LUXONIS_TELEMETRY_EXIT_TIMEOUT"


def helper_budget() -> float:
    """Seconds the exit helper may spend sending (it is killed ``HELPER_GRACE`` later)."""
    raw = os.environ.get(EXIT_TIMEOUT, "")
    try:
        value = float(raw)
    except ValueError:
        return HELPER_BUDGET
    return value if 0 < value <= 300 else HELPER_BUDGET


def run_exit_hook() -> None:
    """The one ``atexit`` hook; never raises, never prints."""
    try:
        _run()
    except Exception as exc:  # noqa: BLE001 - never break the host's exit
        _state.log_internal_error("exit hook", exc)


def _run() -> None:
    explicit = parse_bool(os.environ.get(UPLOAD_ON_EXIT))
    if explicit is False:
        return
    may_spawn = explicit is True or not running_under_test_or_ci()
    if not may_spawn:
        _state.log_debug(
            "exit upload: no helper under CI or pytest (set %s=1 to force)", UPLOAD_ON_EXIT
        )
    current = _state.state
    for path, libraries in list(current.recorded.items()):
        spool = current.spools.get(path)
        if spool is None or not libraries:
            continue
        wanted = {name: cfg for name, cfg in libraries.items() if cfg.upload_on_exit}
        in_process = [
            name
            for name, cfg in wanted.items()
            if cfg.effective_backend in current.backend_factories
        ]
        if in_process:
            _upload_in_process(spool, in_process)
        if may_spawn and any(_needs_helper(cfg) for cfg in wanted.values()):
            _spawn_helper(spool)


def _needs_helper(config: TelemetryConfig) -> bool:
    backend = config.effective_backend
    if backend in _state.state.backend_factories:
        return False
    if backend == "posthog":
        return bool(config.api_key)
    return backend not in BUILTIN_BACKENDS


def _upload_in_process(spool: Spool, libraries: list[str]) -> None:
    """Hand events to in-process backends; a backend that blocks cannot hold the exit.

    The upload runs in a daemon thread that is waited for at most
    ``IN_PROCESS_BUDGET`` (+1 s); events it did not confirm stay pending.
    """
    import threading

    from .uploader import upload

    def run() -> None:
        try:
            upload(budget=IN_PROCESS_BUDGET, lock_timeout=0.5, libraries=libraries, spool=spool)
        except Exception as exc:  # noqa: BLE001 - a user's backend must not break the exit
            _state.log_internal_error("exit upload", exc)

    worker = threading.Thread(target=run, name="luxonis-telemetry-exit", daemon=True)
    worker.start()
    worker.join(IN_PROCESS_BUDGET + 1.0)


def _backing_off(spool: Spool) -> bool:
    backoff = spool.read_state().get("exit_backoff")
    if not isinstance(backoff, dict):
        return False
    next_at = backoff.get("next_attempt_at")
    return isinstance(next_at, (int, float)) and time.time() < next_at


def _spawn_helper(spool: Spool) -> None:
    if _backing_off(spool):
        _state.log_debug("exit upload: backing off after a failed attempt")
        return
    lock = spool.upload_lock()
    try:
        if not lock.acquire(0):
            _state.log_debug("exit upload: another uploader is running")
            return  # it, or the next exit, sends ours
        lock.release()
    finally:
        lock.close()
    import subprocess

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from luxonis_telemetry._exit import helper_main; helper_main()"
    )
    env = dict(os.environ)
    env["LUXONIS_TELEMETRY_SPOOL_DIR"] = spool.path
    options: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "close_fds": True,
        "env": env,
        "cwd": spool.path,
    }
    if os.name == "nt":  # pragma: no cover - Windows
        options["creationflags"] = 0x00000008 | 0x00000200  # DETACHED | NEW_GROUP
    else:
        options["start_new_session"] = True
    helper = subprocess.Popen([sys.executable, "-c", code, package_parent], **options)
    _state.log_debug("exit upload: helper %d started", helper.pid)


def helper_main() -> None:
    """Entry of the detached helper: upload within budget, then vanish."""
    import threading

    budget = helper_budget()
    timer = threading.Timer(budget + HELPER_GRACE, os._exit, (0,))
    timer.daemon = True
    timer.start()
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(5)
    try:
        from .uploader import upload

        deadline = time.monotonic() + budget
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 1:
                break
            result = upload(budget=remaining, lock_timeout=0)
            if result.busy or result.error or result.reasons or not result.sent:
                break
            if not result.pending:
                break
    except Exception as exc:  # noqa: BLE001 - the helper dies quietly
        _state.log_internal_error("exit helper", exc)
    os._exit(0)
