"""Finding a backend by name: registered in-process, built in, or published by a package.

Names ignore case, as in luxonis-ml. Other packages publish backends under
the entry-point group ``luxonis_telemetry.backends`` (``name =
"pkg.module:factory"``), so the CLI can deliver their events too. Entry
points are looked up only for a name that is neither registered nor built
in, because scanning them is slow (~35 ms).
"""

from __future__ import annotations

from .. import _state

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Optional

    from ..config import TelemetryConfig

__all__ = [
    "BUILTIN_BACKENDS",
    "ENTRY_POINT_GROUP",
    "TELEMETRY_BACKENDS",
    "BackendRegistry",
    "build_backend",
    "is_registered",
    "register_backend",
]

ENTRY_POINT_GROUP = "luxonis_telemetry.backends"
BUILTIN_BACKENDS = ("posthog", "stdout", "noop")


def register_backend(name: str, factory: Callable[[TelemetryConfig], Any]) -> None:
    """Make ``factory(config) -> backend`` (a class or any callable) available as ``name``.

    A later registration under the same name (any case) replaces the earlier one.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a backend name must be a non-empty string")
    if not callable(factory):
        raise TypeError("a backend factory must be callable: factory(config) -> backend")
    with _state.state.lock:
        _state.state.backend_factories[name.strip().lower()] = factory


def is_registered(name: str) -> bool:
    """Whether ``name`` was registered in this process (its events are served in-process)."""
    return name.strip().lower() in _state.state.backend_factories


def build_backend(name: str, config: TelemetryConfig) -> Any:
    """The backend called ``name``; raises :class:`BackendUnavailable` if none can be built."""
    from ._base import BackendUnavailable

    key = name.strip().lower()
    factory = _state.state.backend_factories.get(key) or _builtin_factory(key)
    if factory is None:
        factory = _entry_point_factory(key)
    try:
        return factory(config)
    except BackendUnavailable:
        raise
    except Exception as exc:
        raise BackendUnavailable(
            f"backend {name!r} failed to start: {type(exc).__name__}: {exc}"
        ) from exc


def _builtin_factory(key: str) -> Any:
    if key == "posthog":
        from ._posthog import PostHogBackend

        return PostHogBackend
    if key in ("stdout", "noop"):
        from ._simple import NoopBackend, StdoutBackend

        return StdoutBackend if key == "stdout" else NoopBackend
    return None


def _entry_point_factory(key: str) -> Callable[[TelemetryConfig], Any]:
    from importlib.metadata import entry_points

    from ._base import BackendUnavailable

    try:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name.lower() == key]
    except Exception as exc:
        raise BackendUnavailable(
            f"backend {key!r} cannot be looked up: installed package metadata is broken ({exc})"
        ) from exc
    if not found:
        raise BackendUnavailable(
            f"unknown backend {key!r}: register it with Telemetry.register_backend() "
            f"or publish it under the {ENTRY_POINT_GROUP!r} entry-point group"
        )
    try:
        factory = found[0].load()
    except Exception as exc:
        raise BackendUnavailable(f"backend {key!r} failed to load: {exc}") from exc
    if not callable(factory):
        raise BackendUnavailable(f"backend {key!r} entry point is not callable")
    return factory  # type: ignore[no-any-return]


class BackendRegistry:
    """luxonis-ml's ``TELEMETRY_BACKENDS`` registry object, over this module's registry.

    Code written for ``luxonis_ml.telemetry`` may register with
    ``TELEMETRY_BACKENDS.register(name=..., module=...)`` (or as a decorator)
    and look backends up with ``get``/``in``; both see the same backends as
    ``Telemetry.register_backend``. Names ignore case; the built-in backends
    are known by name.
    """

    name = "telemetry_backends"

    def register(
        self,
        name: Optional[str] = None,
        module: Optional[Callable[[TelemetryConfig], Any]] = None,
        force: bool = False,
    ) -> Any:
        """Register ``module`` as ``name`` (its class name if ``None``); a decorator without it.

        An existing name is replaced only with ``force``, as in luxonis-ml.
        """

        def add(factory: Callable[[TelemetryConfig], Any]) -> Callable[[TelemetryConfig], Any]:
            key = name if name is not None else getattr(factory, "__name__", "")
            if not force and key.strip().lower() in self:
                raise KeyError(f"'{key}' is already registered in the '{self.name}' registry.")
            register_backend(key, factory)
            return factory

        return add if module is None else add(module)

    def get(self, key: str) -> Callable[[TelemetryConfig], Any]:
        """The factory registered as ``key``; ``KeyError`` when there is none."""
        lowered = key.strip().lower()
        factory = _state.state.backend_factories.get(lowered) or _builtin_factory(lowered)
        if factory is None:
            raise KeyError(f"'{key}' not in the '{self.name}' registry.")
        return factory

    def __getitem__(self, key: str) -> Callable[[TelemetryConfig], Any]:
        return self.get(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        lowered = key.strip().lower()
        return lowered in _state.state.backend_factories or lowered in BUILTIN_BACKENDS

    def __len__(self) -> int:
        return len(set(_state.state.backend_factories) | set(BUILTIN_BACKENDS))

    def __repr__(self) -> str:
        return f"Registry('{self.name}')"


TELEMETRY_BACKENDS = BackendRegistry()
