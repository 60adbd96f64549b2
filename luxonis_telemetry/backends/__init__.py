"""Where events go: PostHog by default, or any object with the seed's methods."""

from __future__ import annotations

from ._base import BackendUnavailable, DeliveryError
from ._posthog import PostHogBackend
from ._registry import build_backend, register_backend
from ._simple import MemoryBackend, NoopBackend, StdoutBackend

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from typing import Any

    from ._protocols import Backend, BatchBackend, Record

__all__ = [
    "Backend",
    "BackendUnavailable",
    "BatchBackend",
    "DeliveryError",
    "MemoryBackend",
    "NoopBackend",
    "PostHogBackend",
    "Record",
    "StdoutBackend",
    "build_backend",
    "register_backend",
]


def __getattr__(name: str) -> Any:
    """The typing-only contracts load on first use."""
    if name in ("Backend", "BatchBackend", "Record"):
        from . import _protocols

        return getattr(_protocols, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
