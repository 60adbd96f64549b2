"""One ``Telemetry`` per (library, source component), shared by every part of a process.

Several integration points of one tool (its CLI, its Python API, a plugin)
ask for the same instance; the first call creates it, later calls reuse it
and add their context providers to it. A later call with a different
``config`` or ``library_version`` cannot change the instance: that is
logged at debug level and ignored, as in luxonis-ml.
"""

from __future__ import annotations

from . import _log, _state
from .client import Telemetry

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Optional

    from .client import ContextProvider, SystemContextProvider
    from .config import TelemetryConfig

__all__ = ["get_or_init", "get_telemetry", "initialize_telemetry", "shutdown_on_exit"]


def get_telemetry(
    library_name: Optional[str] = None, *, source_component: Optional[str] = None
) -> Optional[Telemetry]:
    """The registered instance matching the arguments, or ``None`` (none, or ambiguous).

    With both names this is an exact lookup; with one (or none), the single
    instance matching it, if exactly one does.
    """
    current = _state.state
    with current.lock:
        if library_name is not None and source_component is not None:
            return current.singletons.get((library_name, source_component))
        matches = [
            telemetry
            for (library, component), telemetry in current.singletons.items()
            if (library_name is None or library == library_name)
            and (source_component is None or component == source_component)
        ]
    return matches[0] if len(matches) == 1 else None


def initialize_telemetry(
    library_name: str,
    *,
    source_component: Optional[str] = None,
    library_version: Optional[str] = None,
    config: Optional[TelemetryConfig] = None,
    context_providers: Optional[Iterable[ContextProvider]] = None,
    system_context_providers: Optional[Iterable[SystemContextProvider]] = None,
    register_exit_handler: bool = True,
) -> Telemetry:
    """The instance for exactly (``library_name``, ``source_component``), created if missing.

    ``source_component`` defaults to the library name.
    """
    key = (library_name, source_component or library_name)
    current = _state.state
    with current.lock:
        existing = current.singletons.get(key)
        if existing is None:
            existing = Telemetry(
                library_name,
                source_component=key[1],
                library_version=library_version,
                config=config,
                context_providers=context_providers,
                system_context_providers=system_context_providers,
            )
            current.singletons[key] = existing
        else:
            _reconcile(
                existing, library_version, config, context_providers, system_context_providers
            )
    if register_exit_handler:
        shutdown_on_exit()
    return existing


def get_or_init(
    library_name: str,
    *,
    source_component: Optional[str] = None,
    library_version: Optional[str] = None,
    config: Optional[TelemetryConfig] = None,
    context_providers: Optional[Iterable[ContextProvider]] = None,
    system_context_providers: Optional[Iterable[SystemContextProvider]] = None,
    register_exit_handler: bool = True,
) -> Telemetry:
    """The existing instance for the library (and component, if given), else a new one.

    Without ``source_component`` an instance already registered for the
    library is returned whatever its component; a new one uses the library
    name as its component. Providers passed here are added to a reused
    instance.
    """
    current = _state.state
    with current.lock:
        existing = get_telemetry(library_name, source_component=source_component)
        if existing is not None:
            _reconcile(
                existing, library_version, config, context_providers, system_context_providers
            )
            if register_exit_handler:
                shutdown_on_exit()
            return existing
        return initialize_telemetry(
            library_name,
            source_component=source_component,
            library_version=library_version,
            config=config,
            context_providers=context_providers,
            system_context_providers=system_context_providers,
            register_exit_handler=register_exit_handler,
        )


def shutdown_on_exit() -> None:
    """At exit, shut every registered instance down (flush, close files) before delivery.

    Delivery itself needs nothing from the caller: the exit hook sends
    whatever this process recorded.
    """
    from ._exit import run_exit_hook

    _state.state.shutdown_singletons = True
    _state.register_process_hooks(run_exit_hook)


def _reconcile(
    existing: Telemetry,
    library_version: Optional[str],
    config: Optional[TelemetryConfig],
    context_providers: Optional[Iterable[ContextProvider]],
    system_context_providers: Optional[Iterable[SystemContextProvider]],
) -> None:
    """Merge additive arguments into a reused instance; note the ignored ones.

    Never raises: odd arguments (a config of another type, a hostile
    provider list) leave the instance as it was.
    """
    name = f"{existing.library_name}:{existing.source_component}"
    with _log.Guard("get_or_init"):
        if (
            config is not None
            and _log.debug_enabled()  # resolving a config reads files: only when it is seen
            and existing.config != type(existing.config).from_environ(config)
        ):
            _log.debug("telemetry for %s already exists; the new config was ignored", name)
        if library_version is not None and library_version != existing.library_version:
            _log.debug("telemetry for %s already exists; the new library version was ignored", name)
        existing.extend_context_providers(context_providers)
        existing.extend_system_context_providers(system_context_providers)
