"""``instrument_typer``: one event per command run of a Typer app.

Commands are wrapped where they are registered, including those registered
after this call (the seed instruments the app before defining commands) and
those of sub-apps added with ``add_typer``. The wrapper observes and re-raises:
it never changes a command's output, behaviour or exit code. ``typer`` is
never imported here; the app brings it.
"""

from __future__ import annotations

import functools
import sys
import time

from . import _state

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Callable, Optional

    from .client import Telemetry

__all__ = ["COMMAND_EVENT", "instrument_typer"]

COMMAND_EVENT = "cli.command"
_MARK = "__luxonis_telemetry_wrapped__"


def instrument_typer(
    app: Any,
    telemetry: Telemetry,
    *,
    allowlist: Optional[Iterable[str]] = None,
    exclude_commands: Optional[Iterable[str]] = None,
) -> None:
    """Record ``cli.command`` for every command of ``app`` (nested groups too).

    Properties: ``command`` (the path as typed), ``success``, ``duration_ms``,
    ``exit_code``, ``exception_type`` when one escaped, ``interrupted`` on
    Ctrl-C, and ``args`` holding only the parameters named in ``allowlist``.
    ``exclude_commands`` are command names (or paths) never recorded.
    """
    if getattr(app, "__luxonis_telemetry_instrumented__", False):
        return
    options = _Options(telemetry, frozenset(allowlist or ()), frozenset(exclude_commands or ()))
    for info in getattr(app, "registered_commands", []):
        info.callback = options.wrap(info.callback)
    for group in getattr(app, "registered_groups", []):
        instance = getattr(group, "typer_instance", None)
        if instance is not None:
            instrument_typer(
                instance,
                telemetry,
                allowlist=options.allowlist,
                exclude_commands=options.excluded,
            )
    original_command = app.command
    original_add_typer = app.add_typer

    @functools.wraps(original_command)
    def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        register = original_command(*args, **kwargs)

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            register(options.wrap(func))
            return func

        return decorator

    @functools.wraps(original_add_typer)
    def add_typer(typer_instance: Any, *args: Any, **kwargs: Any) -> Any:
        instrument_typer(
            typer_instance,
            telemetry,
            allowlist=options.allowlist,
            exclude_commands=options.excluded,
        )
        return original_add_typer(typer_instance, *args, **kwargs)

    app.command = command
    app.add_typer = add_typer
    app.__luxonis_telemetry_instrumented__ = True


class _Options:
    def __init__(
        self, telemetry: Telemetry, allowlist: frozenset[str], excluded: frozenset[str]
    ) -> None:
        self.telemetry = telemetry
        self.allowlist = allowlist
        self.excluded = excluded

    def wrap(self, func: Optional[Callable[..., Any]]) -> Any:
        if func is None or getattr(func, _MARK, False):
            return func

        @functools.wraps(func)
        def run_command(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                self.record(started, exc)
                raise
            self.record(started, None)
            return result

        setattr(run_command, _MARK, True)
        return run_command

    def record(self, started: float, exc: Optional[BaseException]) -> None:
        try:
            properties = self._properties(started, exc)
            if properties is not None:
                self.telemetry.capture(COMMAND_EVENT, properties)
        except Exception as error:  # noqa: BLE001 - observing must never break the CLI
            _state.log_internal_error("instrument_typer", error)

    def _properties(self, started: float, exc: Optional[BaseException]) -> Optional[dict[str, Any]]:
        context = _current_context()
        path = context.command_path if context is not None else ""
        name = context.info_name if context is not None else ""
        if name in self.excluded or path in self.excluded:
            return None
        exit_code, interrupted = _outcome(exc)
        properties: dict[str, Any] = {
            "command": path,
            "success": exit_code == 0,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "exit_code": exit_code,
        }
        if exc is not None and exit_code != 0:
            properties["exception_type"] = type(exc).__name__
        if interrupted:
            properties["interrupted"] = True
        if self.allowlist and context is not None:
            properties["args"] = {
                key: value for key, value in context.params.items() if key in self.allowlist
            }
        return properties


def _current_context() -> Any:
    """The running command's click context, from whichever click the app uses.

    Typer >= 0.20 vendors click as ``typer._click``; older ones use ``click``.
    Only modules the app already loaded are consulted.
    """
    for name in ("typer._click.globals", "click.globals"):
        module = sys.modules.get(name)
        getter = getattr(module, "get_current_context", None)
        if getter is not None:
            context = getter(silent=True)
            if context is not None:
                return context
    return None


def _outcome(exc: Optional[BaseException]) -> tuple[int, bool]:
    """``(exit code, interrupted)`` as the shell will see it.

    Typer's and click's ``Exit``, ``Abort`` and usage errors are recognised by
    shape (``exit_code``, the class name), so both click flavours work.
    """
    if exc is None:
        return 0, False
    if isinstance(exc, KeyboardInterrupt):
        return 130, True
    if type(exc).__name__ == "Abort":
        return 1, True
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0, False
        return (code, False) if isinstance(code, int) else (1, False)
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code, False
    return 1, False
