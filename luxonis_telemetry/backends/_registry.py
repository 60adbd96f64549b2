"""Finding a backend by name: registered in-process, built in, or published.

Other packages publish backends under the entry-point group
``luxonis_telemetry.backends`` (``name = "pkg.module:factory"``), so the CLI
can deliver their events too. Entry points are only looked up for a name that
is neither registered nor built in, because scanning them is slow.
"""

from __future__ import annotations

import sys

from .. import _state
from ._base import BackendUnavailable
from ._posthog import PostHogBackend
from ._simple import NoopBackend, StdoutBackend

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from typing import Any, Callable

    from ..config import TelemetryConfig

__all__ = ["BUILTIN_BACKENDS", "build_backend", "register_backend"]

ENTRY_POINT_GROUP = "luxonis_telemetry.backends"

BUILTIN_BACKENDS: dict[str, Callable[[TelemetryConfig], Any]] = {
    "posthog": lambda config: PostHogBackend(config.api_key, config.effective_endpoint),
    "stdout": lambda _config: StdoutBackend(),
    "noop": lambda _config: NoopBackend(),
}


def register_backend(name: str, factory: Callable[[TelemetryConfig], Any]) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError("a backend name must be a non-empty string")
    if not callable(factory):
        raise TypeError("a backend factory must be callable: factory(config) -> backend")
    with _state.state.lock:
        _state.state.backend_factories[name] = factory


def is_known_locally(name: str) -> bool:
    return name in _state.state.backend_factories or name in BUILTIN_BACKENDS


def build_backend(name: str, config: TelemetryConfig) -> Any:
    """The backend called ``name``; raises :class:`BackendUnavailable` if none."""
    factory = _state.state.backend_factories.get(name) or BUILTIN_BACKENDS.get(name)
    if factory is None:
        factory = _entry_point_factory(name)
    try:
        return factory(config)
    except BackendUnavailable:
        raise
    except Exception as exc:
        raise BackendUnavailable(
            f"backend {name!r} failed to start: {type(exc).__name__}: {exc}"
        ) from exc


def _entry_point_factory(name: str) -> Callable[[TelemetryConfig], Any]:
    from importlib.metadata import entry_points

    if sys.version_info >= (3, 10):
        found = list(entry_points(group=ENTRY_POINT_GROUP, name=name))
    else:  # pragma: no cover - Python 3.9
        found = [ep for ep in entry_points().get(ENTRY_POINT_GROUP, []) if ep.name == name]
    if not found:
        raise BackendUnavailable(
            f"unknown backend {name!r}: register it with Telemetry.register_backend() "
            f"or publish it under the {ENTRY_POINT_GROUP!r} entry-point group"
        )
    try:
        factory = found[0].load()
    except Exception as exc:
        raise BackendUnavailable(f"backend {name!r} failed to load: {exc}") from exc
    if not callable(factory):
        raise BackendUnavailable(f"backend {name!r} entry point is not callable")
    return factory  # type: ignore[no-any-return]
