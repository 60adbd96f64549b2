"""Where events go: PostHog by default, or any backend a library registers or publishes.

The contract every backend meets is documented in one place,
``luxonis_telemetry.backends._base``. Names load on first use, so importing
this package costs nothing on the capture path.
"""

from __future__ import annotations

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any

    from ._base import BackendUnavailable, BatchBackend, DeliveryError, TelemetryBackend
    from ._posthog import PostHogBackend, to_posthog_message
    from ._registry import TELEMETRY_BACKENDS, build_backend, is_registered, register_backend
    from ._simple import NoopBackend, StdoutBackend

__all__ = [
    "TELEMETRY_BACKENDS",
    "BackendUnavailable",
    "BatchBackend",
    "DeliveryError",
    "NoopBackend",
    "PostHogBackend",
    "StdoutBackend",
    "TelemetryBackend",
    "build_backend",
    "is_registered",
    "register_backend",
    "to_posthog_message",
]

_HOMES = {
    "BackendUnavailable": "._base",
    "BatchBackend": "._base",
    "DeliveryError": "._base",
    "TelemetryBackend": "._base",
    "PostHogBackend": "._posthog",
    "to_posthog_message": "._posthog",
    "TELEMETRY_BACKENDS": "._registry",
    "build_backend": "._registry",
    "is_registered": "._registry",
    "register_backend": "._registry",
    "NoopBackend": "._simple",
    "StdoutBackend": "._simple",
}


def __getattr__(name: str) -> Any:
    """Load a name's module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # ``__import__`` rather than ``importlib``: importing that costs every start ~0.3 ms
    return getattr(__import__(home[1:], globals(), None, [name], 1), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
