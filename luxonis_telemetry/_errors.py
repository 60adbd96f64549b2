"""The root of every exception the public API may raise.

Capturing never raises; these come from explicit operations (``upload``,
bundles, the CLI) and from backends telling the uploader what happened, so
a caller can catch ``TelemetryError`` once.
"""

from __future__ import annotations

__all__ = ["TelemetryError"]


class TelemetryError(Exception):
    """Base class of luxonis-telemetry's own exceptions."""
