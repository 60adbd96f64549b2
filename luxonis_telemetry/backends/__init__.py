"""Where events go: PostHog by default, or any object with the seed's methods."""

from __future__ import annotations

from ._base import Backend, BackendUnavailable, BatchBackend, DeliveryError, Record
from ._posthog import PostHogBackend
from ._registry import build_backend, register_backend
from ._simple import MemoryBackend, NoopBackend, StdoutBackend

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
