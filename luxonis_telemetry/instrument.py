"""CLI adapters: one ``cli_command`` event per command run of a Typer or Cyclopts app.

The event keeps luxonis-ml 0.10.2's name and flat property keys (``command``,
``success``, ``duration_ms``, one key per allowlisted argument) so dashboards
built on it keep working; ``exit_code`` is ours, and ``success`` means exit
code 0, so ``typer.Exit(0)`` and ``sys.exit(0)`` count as successes.

A wrapper observes and re-raises: a command's output, return value, exception
and exit code are what they would be without telemetry, and a failing
telemetry client is logged at debug level, never raised. ``typer`` and
``cyclopts`` are never imported here at import time: the app brings them.

Typer commands are wrapped as they are registered, so ``instrument_typer`` may
run before the commands are defined (as the seed README does) and sub-apps
added later with ``add_typer`` are covered. A command's path is worked out
when it runs, so a sub-app instrumented on its own and mounted afterwards
still reports the path the user typed. Cyclopts apps are slotted and offer
no registration hook, so ``instrument_cyclopts`` covers what is registered
when it is called.
"""

from __future__ import annotations

import functools
import time

from . import _log

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, Optional, TypeVar

    from .client import Telemetry

    F = TypeVar("F", bound="Callable[..., Any]")

__all__ = ["COMMAND_EVENT", "instrument_cyclopts", "instrument_typer", "skip_telemetry"]

COMMAND_EVENT = "cli_command"

# luxonis-ml's attribute names, so a callback marked or wrapped by either
# library is left alone by the other's adapters.
_SKIP = "_telemetry_skip"
_WRAPPED = "_telemetry_wrapped"

# Parameters that hold the framework's plumbing, never a user's argument.
_PLUMBING = frozenset({"self", "ctx", "context"})

# Where click's exceptions live: plain click, Typer's own, Typer's vendored click.
_CLICK_EXCEPTION_MODULES = frozenset(
    {"click.exceptions", "typer.exceptions", "typer._click.exceptions"}
)

_INTERRUPTED_EXIT_CODE = 130  # what a shell reports for SIGINT

# A telemetry failure while recording is logged, never raised into the command.
_GUARD = _log.Guard("cli_command")


def skip_telemetry(func: F) -> F:
    """Never record ``func``, whichever adapter meets it.

    Our own CLI marks its commands so that mounting them under an
    instrumented tool records nothing. The mark is checked again on each run,
    so it also works above ``@app.command()`` on an app instrumented first.
    """
    setattr(func, _SKIP, True)
    return func


def instrument_typer(
    app: Any,
    telemetry: Telemetry,
    *,
    allowlist: Optional[Iterable[str]] = None,
    include_system_metadata: Optional[bool] = None,
    exclude_commands: Optional[Iterable[str]] = None,
) -> None:
    """Record ``cli_command`` for every command of the Typer ``app``, nested groups too.

    ``command`` is the path typed after the program name, the registered names
    joined by spaces (``"data parse"``); ``allowlist`` names the arguments whose
    values may leave the machine (none by default); ``exclude_commands`` takes
    full paths or bare command names. An app is instrumented once: later calls,
    and apps mounted under another instrumented app, keep their first options.
    """
    _instrument_typer_app(
        app, _Recorder(telemetry, allowlist, include_system_metadata, exclude_commands)
    )


def instrument_cyclopts(
    app: Any,
    telemetry: Telemetry,
    *,
    allowlist: Optional[Iterable[str]] = None,
    include_system_metadata: Optional[bool] = None,
    exclude_commands: Optional[Iterable[str]] = None,
) -> None:
    """Record ``cli_command`` for every command of the Cyclopts ``app``, sub-apps too.

    Same event and options as ``instrument_typer``. Call it after the commands
    are registered; commands registered by import path and not loaded yet are
    not wrapped (loading them here would import every command module at
    startup). ``exit_code`` reads a return value the way Cyclopts' default
    result action does: ``False`` is 1, an int is itself.
    """
    try:
        import cyclopts
    except ImportError as error:
        raise ImportError(
            "instrument_cyclopts needs cyclopts: pip install 'luxonis-telemetry[cyclopts]'"
        ) from error
    walk = _CycloptsWalk(
        cyclopts.App, _Recorder(telemetry, allowlist, include_system_metadata, exclude_commands)
    )
    walk.app(app, "")


# -- shared -------------------------------------------------------------------


class _Recorder:
    """The choices of one instrumentation call, shared by every command it wraps."""

    def __init__(
        self,
        telemetry: Telemetry,
        allowlist: Optional[Iterable[str]],
        include_system_metadata: Optional[bool],
        exclude_commands: Optional[Iterable[str]],
    ) -> None:
        self.telemetry = telemetry
        self.allowlist = _names(allowlist)
        self.include_system_metadata = include_system_metadata
        self.excluded = _names(exclude_commands)

    def excludes(self, command: str) -> bool:
        """Full paths as luxonis-ml takes them; bare names as our earlier releases did."""
        return command in self.excluded or command.rpartition(" ")[2] in self.excluded

    def arguments(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The allowlisted arguments of one call, by parameter name."""
        if not self.allowlist:
            return {}
        import inspect

        try:
            bound = inspect.signature(func).bind_partial(*args, **kwargs)
        except (TypeError, ValueError):
            return {}
        return {
            name: value
            for name, value in bound.arguments.items()
            if name in self.allowlist and name not in _PLUMBING and not _is_click_context(value)
        }

    def wrap(
        self,
        func: Callable[..., Any],
        name: Callable[[], str],
        result_exit_code: Callable[[Any], int],
    ) -> Callable[..., Any]:
        """``func`` wrapped to record each run; marked callbacks come back unchanged."""
        if getattr(func, _SKIP, False) or getattr(func, _WRAPPED, False):
            return func
        return _wrap(_Command(self, func, name, result_exit_code))


class _Command:
    """One wrapped callback: how it is named and how its return value maps to an exit code."""

    def __init__(
        self,
        recorder: _Recorder,
        func: Callable[..., Any],
        name: Callable[[], str],
        result_exit_code: Callable[[Any], int],
    ) -> None:
        self.recorder = recorder
        self.func = func
        self.name = name
        self.result_exit_code = result_exit_code

    def record(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        started: float,
        result: Any,
        error: Optional[BaseException],
    ) -> None:
        """Capture the finished run; nothing here may reach the command's caller."""
        duration_ms = int((time.perf_counter() - started) * 1000)
        with _GUARD:
            if getattr(self.func, _SKIP, False):
                return
            command = self.name()
            if self.recorder.excludes(command):
                return
            exit_code = (
                self.result_exit_code(result) if error is None else _exception_exit_code(error)
            )
            properties = self.recorder.arguments(self.func, args, kwargs)
            properties.update(
                command=command,
                success=exit_code == 0,
                duration_ms=duration_ms,
                exit_code=exit_code,
            )
            self.recorder.telemetry.capture(
                COMMAND_EVENT,
                properties,
                include_system_metadata=self.recorder.include_system_metadata,
            )


def _wrap(command: _Command) -> Callable[..., Any]:
    """A wrapper of the callback's kind: frameworks await coroutine functions only."""
    import inspect

    func = command.func
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async_command(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = await func(*args, **kwargs)
            except BaseException as error:
                command.record(args, kwargs, started, None, error)
                raise
            command.record(args, kwargs, started, result, None)
            return result

        wrapper: Callable[..., Any] = run_async_command
    else:

        @functools.wraps(func)
        def run_command(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = func(*args, **kwargs)
            except BaseException as error:
                command.record(args, kwargs, started, None, error)
                raise
            command.record(args, kwargs, started, result, None)
            return result

        wrapper = run_command
    setattr(wrapper, _WRAPPED, True)
    return wrapper


def _exception_exit_code(error: BaseException) -> int:
    """The exit code the framework turns ``error`` into.

    Click's, Typer's and vendored click's ``Exit`` and ``ClickException``
    carry their code; ``Abort`` and anything else unexpected exit 1.
    """
    if isinstance(error, KeyboardInterrupt):
        return _INTERRUPTED_EXIT_CODE
    if isinstance(error, SystemExit):
        return _system_exit_code(error.code)
    if any(klass.__module__ in _CLICK_EXCEPTION_MODULES for klass in type(error).__mro__):
        code = getattr(error, "exit_code", 1)
        return code if isinstance(code, int) else 1
    return 1


def _system_exit_code(code: object) -> int:
    """As the interpreter exits: ``None`` is 0, an int itself, anything else 1."""
    if code is None:
        return 0
    return int(code) if isinstance(code, int) else 1


def _is_click_context(value: object) -> bool:
    """A click or Typer context, under whatever parameter name the callback gave it."""
    return hasattr(value, "info_name") and hasattr(value, "command")


def _names(values: Optional[Iterable[str]]) -> frozenset[str]:
    """A lone string is one name, not a set of characters."""
    if values is None:
        return frozenset()
    if isinstance(values, str):
        return frozenset((values,))
    return frozenset(values)


def _join(prefix: str, name: str) -> str:
    return f"{prefix} {name}" if prefix and name else prefix or name


# -- Typer --------------------------------------------------------------------


class _TyperScope:
    """Where one Typer app is mounted, so its commands can name their path."""

    def __init__(self, recorder: _Recorder) -> None:
        self.recorder = recorder
        self.parent: Optional[_TyperScope] = None
        self.mount: Any = None  # the TyperInfo that add_typer recorded in the parent

    def path(self) -> str:
        """The group names above this app, resolved by Typer's own rules.

        Resolved per run: a sub-app may be mounted, or take its name from a
        callback registered later, after its commands were wrapped. A group
        without a name merges its commands into the parent, as Typer does.
        """
        if self.parent is None:
            return ""
        from typer.main import solve_typer_info_defaults

        return _join(self.parent.path(), solve_typer_info_defaults(self.mount).name or "")


class _Registering(list["Any"]):
    """A Typer registry (``registered_commands``, ``registered_groups``) that hands each
    entry to ``on_register`` as it is added.

    ``Typer.command`` and ``add_typer`` append here, so commands and sub-apps
    defined after ``instrument_typer`` are covered whichever way they are
    registered.
    """

    def __init__(
        self,
        scope: _TyperScope,
        entries: Iterable[Any],
        on_register: Callable[[_TyperScope, Any], None],
    ) -> None:
        super().__init__()
        self.scope = scope
        self.on_register = on_register
        self.extend(entries)

    def append(self, info: Any) -> None:
        self.on_register(self.scope, info)
        super().append(info)

    def extend(self, infos: Iterable[Any]) -> None:
        for info in infos:
            self.append(info)

    def insert(self, index: Any, info: Any) -> None:
        self.on_register(self.scope, info)
        super().insert(index, info)


def _instrument_typer_app(app: Any, recorder: _Recorder) -> _TyperScope:
    commands = app.registered_commands
    if isinstance(commands, _Registering):
        return commands.scope
    scope = _TyperScope(recorder)
    app.registered_commands = _Registering(scope, commands, _wrap_typer_command)
    app.registered_groups = _Registering(scope, app.registered_groups, _mount_typer_group)
    return scope


def _mount_typer_group(parent: _TyperScope, info: Any) -> None:
    sub_app = info.typer_instance
    if sub_app is None:
        return
    scope = _instrument_typer_app(sub_app, parent.recorder)
    scope.parent = parent
    scope.mount = info


def _wrap_typer_command(scope: _TyperScope, info: Any) -> None:
    func = info.callback
    if func is None:
        return

    def name() -> str:
        from typer.main import get_command_name

        return _join(scope.path(), info.name or get_command_name(func.__name__))

    info.callback = scope.recorder.wrap(func, name, _typer_result_exit_code)


def _typer_result_exit_code(result: object) -> int:
    """Typer and click exit 0 whatever a callback returns."""
    return 0


# -- Cyclopts -----------------------------------------------------------------


class _CycloptsWalk:
    """One pass over a Cyclopts command tree; each App is visited once.

    Aliases register one App under several names: the first name registered
    is the one reported.
    """

    def __init__(self, app_type: type[Any], recorder: _Recorder) -> None:
        self.app_type = app_type
        self.recorder = recorder
        self.seen: set[int] = set()

    def app(self, app: Any, path: str) -> None:
        if id(app) in self.seen:
            return
        self.seen.add(id(app))
        func = app.default_command
        if func is not None:
            name = path or _primary_name(app.name)
            app.default_command = self.recorder.wrap(func, lambda: name, _cyclopts_result_exit_code)
        self.commands(app, path)

    def commands(self, app: Any, path: str) -> None:
        """Named sub-apps, and the commands of sub-apps flattened into ``app``.

        The help and version flags are commands too; they are skipped, as
        Cyclopts itself leaves them out of its ``_registered_commands``.
        """
        generated = {*app.help_flags, *app.version_flags}
        for key, entry in list(app._commands.items()):
            sub_app = self._loaded(entry, app)
            if key not in generated and sub_app is not None:
                self.app(sub_app, _join(path, key))
        for flattened in getattr(app, "_flattened_subapps", ()):
            self.commands(flattened, path)

    def _loaded(self, entry: Any, parent: Any) -> Any:
        """The App behind ``entry``; ``None`` for an import-path command not loaded yet."""
        if isinstance(entry, self.app_type):
            return entry
        if getattr(entry, "is_resolved", False):
            return entry.resolve(parent)
        return None


def _primary_name(name: object) -> str:
    if isinstance(name, tuple):
        return str(name[0]) if name else ""
    return name if isinstance(name, str) else ""


def _cyclopts_result_exit_code(result: object) -> int:
    """The exit code Cyclopts' default result action derives from a return value."""
    if isinstance(result, bool):
        return 0 if result else 1
    if isinstance(result, int):
        return result
    returncode = getattr(result, "__cyclopts_returncode__", None)
    if callable(returncode):
        code = returncode()
        return code if isinstance(code, int) else 0
    return 0
