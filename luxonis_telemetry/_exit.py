"""The exit hook: deliver what this process recorded without delaying its exit.

Network delivery happens in a detached helper process with a hard
deadline, so the host exits at once even when the endpoint refuses or
hangs, and the helper is gone within its budget plus ``HELPER_GRACE``
seconds. The helper runs the library with an isolated import path (``-I``:
no script folder, no ``PYTHON*`` variables, no user site) from a neutral
working folder, so nothing planted in the spool or the current folder is
imported.

Backends registered in-process (the seed's ``MyBackend``) exist only in this
process, and a frozen application (PyInstaller and the like) or a program
embedding Python has no Python interpreter to run a helper with
(``sys.executable`` is the application itself, which must never be
relaunched): their events are delivered here, within ``IN_PROCESS_BUDGET``
seconds, by a worker thread started when the first such event was recorded
(no thread can start during interpreter shutdown on Python 3.12). Whatever
is not delivered in time stays pending.

Nothing is sent at exit when the user opted out or chose local mode, under
CI or pytest (unless ``LUXONIS_TELEMETRY_UPLOAD_ON_EXIT`` is explicitly
truthy), in the run that showed the first-run notice, or while backing off
after a failed attempt.
"""

from __future__ import annotations

import os
import sys
import time

from . import _log, _state
from .config import (
    SPOOL_DIR,
    UPLOAD_ON_EXIT,
    decide_mode,
    exit_budget,
    parse_bool,
    read_dotenv,
    running_under_test_or_ci,
)

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Optional

    from .config import TelemetryConfig
    from .spool import Spool

__all__ = [
    "HELPER_BUDGET",
    "HELPER_GRACE",
    "IN_PROCESS_BUDGET",
    "ExitWorker",
    "exit_plan",
    "helper_budget",
    "helper_interpreter",
    "prepare_in_process_delivery",
    "run_exit_hook",
]

HELPER_BUDGET = 15.0
HELPER_GRACE = 10.0
IN_PROCESS_BUDGET = 2.0
_NETWORK_FREE = ("stdout", "noop")


def helper_budget() -> float:
    """Seconds the exit helper may spend sending (it is killed ``HELPER_GRACE`` later)."""
    return exit_budget(HELPER_BUDGET)


def helper_interpreter() -> Optional[str]:
    """The Python interpreter to run the exit helper with, or ``None`` when there is none.

    A frozen application (``sys.frozen``: PyInstaller, cx_Freeze, py2exe...)
    or an embedding program (uWSGI, a plug-in host) has its own binary as
    ``sys.executable``; started with ``-I -c``, it would relaunch itself. Only
    a binary named like a Python interpreter, by its absolute path, is used.
    """
    if getattr(sys, "frozen", False):
        return None
    executable = sys.executable
    if not executable or not os.path.isabs(executable):
        return None  # a relative one would be looked up in the host's working folder
    name = os.path.basename(executable).lower().removesuffix(".exe")
    if not name.startswith(("python", "pypy")):
        return None
    return executable


def _in_process(config: TelemetryConfig) -> bool:
    """Whether this library's events must be delivered by this very process."""
    from .backends import is_registered

    if is_registered(config.effective_backend):
        return True
    return _needs_network(config) and helper_interpreter() is None


def _needs_network(config: TelemetryConfig) -> bool:
    backend = config.effective_backend
    if backend == "posthog":
        return bool(config.api_key)
    return backend not in _NETWORK_FREE


class ExitWorker:
    """A daemon thread started before exit, so exit-time delivery needs no new thread.

    It waits until the exit hook hands it the work, runs it, and reports
    back; the hook waits at most the budget. A thread that belongs to a
    parent process (after ``fork``) is not used.
    """

    def __init__(self) -> None:
        import threading  # only a process that needs in-process delivery pays for it

        self._pid = os.getpid()
        self._work: Optional[Callable[[], None]] = None
        self._go = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._wait, name="luxonis-telemetry-exit", daemon=True
        )
        self._thread.start()

    def usable(self) -> bool:
        return self._pid == os.getpid() and self._thread.is_alive()

    def _wait(self) -> None:
        self._go.wait()
        try:
            if self._work is not None:
                self._work()
        except Exception as exc:  # noqa: BLE001 - a user's backend must not break the exit
            _log.internal_error("exit delivery", exc)
        finally:
            self._done.set()

    def run(self, work: Callable[[], None], timeout: float) -> bool:
        """Run ``work`` on the worker; True when it finished within ``timeout``."""
        self._work = work
        self._go.set()
        return self._done.wait(timeout)


def prepare_in_process_delivery(config: TelemetryConfig) -> None:
    """Start the exit worker if this library's events will be delivered in-process at exit."""
    if not config.upload_on_exit or config.local or not _in_process(config):
        return
    current = _state.state
    worker = current.exit_worker
    if worker is None or not worker.usable():
        current.exit_worker = ExitWorker()


class ExitPlan:
    """What the exit hook will do, and why not when it will not.

    ``why_not`` stops everything; ``held_back`` stops only what would reach
    a network endpoint of ours (the helper, and in-process delivery where no
    helper can run), so backends a library registered in this process still
    get their events under CI and test runners, as the seed README shows.
    """

    __slots__ = ("held_back", "helper", "in_process", "why_not")

    def __init__(self) -> None:
        self.in_process: dict[str, list[str]] = {}
        self.helper: list[str] = []
        self.why_not: Optional[str] = None
        self.held_back: Optional[str] = None


def exit_plan(environ: Optional[dict[str, str]] = None, *, dotenv: bool = True) -> ExitPlan:
    """Decide, from the environment and this process's records, what to deliver at exit."""
    from .backends import is_registered

    env = os.environ if environ is None else environ
    plan = ExitPlan()
    explicit = parse_bool(env.get(UPLOAD_ON_EXIT))
    decision = decide_mode("on", env, read_dotenv() if dotenv else {})
    if decision.mode != "on":
        plan.why_not = f"telemetry is {decision.mode} ({decision.reason})"
    elif explicit is False:
        plan.why_not = f"{UPLOAD_ON_EXIT} is off"
    elif _state.state.notice_shown:
        plan.why_not = "the first-run notice was shown in this run"
    elif explicit is not True and running_under_test_or_ci(env):
        plan.held_back = f"running under CI or a test runner (set {UPLOAD_ON_EXIT}=1 to force)"
    current = _state.state
    for path, libraries in current.recorded.items():
        for name, config in libraries.items():
            if not config.upload_on_exit or config.local or not config.enabled:
                continue
            if is_registered(config.effective_backend):
                plan.in_process.setdefault(path, []).append(name)
            elif not _needs_network(config) or plan.held_back is not None:
                continue
            elif _in_process(config):
                plan.in_process.setdefault(path, []).append(name)
            elif path not in plan.helper:
                plan.helper.append(path)
    return plan


def run_exit_hook() -> None:
    """The one ``atexit`` hook; never raises, never prints."""
    with _log.Guard("exit hook"):
        _run()


def _run() -> None:
    current = _state.state
    if current.shutdown_singletons:
        for telemetry in list(current.singletons.values()):
            telemetry.shutdown()
    for recorder in list(current.spools.values()):
        recorder.save_drops()  # drops counted in memory (lock timeouts, re-entrant captures)
    plan = exit_plan()
    if plan.why_not is not None:
        _log.debug("exit upload: nothing sent (%s)", plan.why_not)
        return
    if plan.held_back is not None:
        _log.debug("exit upload: nothing sent over the network (%s)", plan.held_back)
    in_process = [
        (current.spools[path], libraries)
        for path, libraries in plan.in_process.items()
        if path in current.spools
    ]
    if in_process:
        _deliver_in_process(in_process)
    interpreter = helper_interpreter()
    for path in plan.helper:
        spool = current.spools.get(path)
        if spool is not None and interpreter is not None:
            _spawn_helper(spool, interpreter)


def _deliver_in_process(work: list[tuple[Spool, list[str]]]) -> None:
    """Hand events to in-process backends within one budget; a blocking one cannot hold the exit.

    The exit worker runs once, so every spool's share goes in the same run.
    """
    from .uploader import upload

    worker = _state.state.exit_worker
    if worker is None or not worker.usable():
        _log.debug("exit upload: no exit worker; events stay pending")
        return
    budget = min(IN_PROCESS_BUDGET, helper_budget())
    deadline = time.monotonic() + budget

    def deliver() -> None:
        for spool, libraries in work:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            upload(
                budget=remaining,
                lock_timeout=min(0.5, remaining),
                libraries=libraries,
                spool=spool,
                threads=False,
            )

    if not worker.run(deliver, budget + 1.0):
        _log.debug("exit upload: in-process backend still busy after %.1f s; abandoned", budget)


def _backing_off(spool: Spool) -> bool:
    state = spool.read_state()
    return state.newer_format or time.time() < state.next_attempt_at


def _spawn_helper(spool: Spool, interpreter: str) -> None:
    if _backing_off(spool):
        _log.debug("exit upload: backing off after a failed attempt")
        return
    lock = spool.upload_lock()
    try:
        if not lock.acquire(0):
            _log.debug("exit upload: another uploader is running")
            return  # it, or the next exit, sends ours
        lock.release()
    finally:
        lock.close()
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # -I: no script folder or cwd on sys.path, no PYTHON* variables, no user site.
    # Our package's folder and the host's own absolute paths go after the
    # standard library, so nothing can shadow it.
    code = (
        "import os, sys; os.chdir(os.sep); sys.path.extend(sys.argv[1:]); "
        "from luxonis_telemetry._exit import helper_main; helper_main()"
    )
    paths = [package_parent] + [
        entry for entry in sys.path if entry and os.path.isabs(entry) and entry != spool.path
    ]
    env = dict(os.environ)
    env[SPOOL_DIR] = spool.path
    pid = _start_detached([interpreter, "-I", "-c", code, *paths], env)
    _log.debug("exit upload: helper %d started", pid)


def _start_detached(argv: list[str], env: dict[str, str]) -> int:
    """Start ``argv`` in a session of its own, on /dev/null, from the root folder.

    ``os.posix_spawn`` where it can start a session: importing ``subprocess``
    (and ``locale``, ``re``, ``threading``... with it) would cost every tool
    about 10 ms at exit. Descriptors the host made inheritable are closed in
    the helper, as ``subprocess``'s ``close_fds`` does, so it holds no pipe a
    parent of the host waits on.
    """
    closing = _closing_actions() if os.name != "nt" and hasattr(os, "posix_spawn") else None
    if closing is not None:
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, fd, os.devnull, flags, 0)
            for fd, flags in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY))
        ]
        try:
            return os.posix_spawn(argv[0], argv, env, file_actions=actions + closing, setsid=True)
        # No setsid or closefrom here, a descriptor raced, or an environment
        # entry posix_spawn refuses (an empty name, which subprocess passes on).
        except (NotImplementedError, OSError, ValueError) as exc:
            _log.debug("exit upload: posix_spawn failed (%s); using subprocess", exc)
    import subprocess
    import warnings

    options: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "close_fds": True,
        "env": env,
        "cwd": os.path.abspath(os.sep),
    }
    if os.name == "nt":  # pragma: no cover - Windows
        options["creationflags"] = 0x00000008 | 0x00000200  # DETACHED | NEW_GROUP
    else:
        options["start_new_session"] = True
    helper = subprocess.Popen(argv, **options)
    with warnings.catch_warnings():  # it is meant to outlive us: no "still running" warning
        warnings.simplefilter("ignore", ResourceWarning)
        pid = helper.pid
        del helper
    return pid


def _closing_actions() -> Optional[list[tuple[Any, ...]]]:
    """``posix_spawn`` actions closing every descriptor above stderr in the helper.

    ``None`` when they cannot be known (no ``closefrom``, no descriptor
    listing: a sandbox without ``/proc``): then ``subprocess`` starts it.
    """
    if hasattr(os, "POSIX_SPAWN_CLOSEFROM"):  # Python 3.13+ on glibc 2.34+
        return [(os.POSIX_SPAWN_CLOSEFROM, 3)]
    found = _inheritable_descriptors()
    return None if found is None else [(os.POSIX_SPAWN_CLOSE, fd) for fd in found]


def _inheritable_descriptors() -> Optional[list[int]]:
    """The host's descriptors above stderr that a new process would inherit, if listable."""
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(listing)
        except OSError:
            continue
        found = []
        for name in names:
            fd = int(name) if name.isdigit() else -1
            if fd > 2:
                try:
                    if os.get_inheritable(fd):
                        found.append(fd)
                except OSError:  # the listing's own descriptor, closed by now
                    pass
        return found
    return None


def helper_main() -> None:
    """Entry of the detached helper: upload within budget, then vanish."""
    import threading

    budget = helper_budget()
    timer = threading.Timer(budget + HELPER_GRACE, os._exit, (0,))
    timer.daemon = True
    timer.start()
    if hasattr(os, "nice"):
        try:
            os.nice(5)
        except OSError:
            pass
    with _log.Guard("exit helper"):
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
    os._exit(0)
