"""Offline-first usage telemetry shared by Luxonis libraries.

``Telemetry("luxonis_ml").capture("train.start", {"epochs": 20})`` appends one
JSON line to a per-user spool; ``luxonis-telemetry upload`` (or the exit
hook) delivers it later. Every public name of luxonis-ml 0.10.2's
``luxonis_ml.telemetry`` is here with the same meaning. Importing this
package loads no network code; names that need more load on first use.
"""

from __future__ import annotations

from ._errors import TelemetryError
from ._version import __version__
from .client import Telemetry
from .config import TelemetryConfig, TelemetryDefaults
from .context import (
    RESERVED_METADATA_KEYS,
    host_context,
    host_context_provider,
    is_ci,
    is_luxonis_cloud,
    normalized_processor,
    system_context,
    system_context_provider,
)
from .redaction import sanitize_properties
from .singleton import get_or_init, get_telemetry, initialize_telemetry, shutdown_on_exit
from .suppression import is_suppressed, suppress_telemetry

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any

    from .backends import (
        DeliveryError,
        NoopBackend,
        PostHogBackend,
        StdoutBackend,
        TelemetryBackend,
        register_backend,
    )
    from .events import TelemetryEvent
    from .instrument import instrument_cyclopts, instrument_typer, skip_telemetry
    from .uploader import UploadResult, upload

__all__ = [
    "RESERVED_METADATA_KEYS",
    "DeliveryError",
    "NoopBackend",
    "PostHogBackend",
    "StdoutBackend",
    "Telemetry",
    "TelemetryBackend",
    "TelemetryConfig",
    "TelemetryDefaults",
    "TelemetryError",
    "TelemetryEvent",
    "UploadResult",
    "__version__",
    "get_or_init",
    "get_telemetry",
    "host_context",
    "host_context_provider",
    "initialize_telemetry",
    "instrument_cyclopts",
    "instrument_typer",
    "is_ci",
    "is_luxonis_cloud",
    "is_suppressed",
    "normalized_processor",
    "register_backend",
    "sanitize_properties",
    "shutdown_on_exit",
    "skip_telemetry",
    "suppress_telemetry",
    "system_context",
    "system_context_provider",
    "upload",
]

_LAZY = {
    "DeliveryError": ".backends",
    "NoopBackend": ".backends",
    "PostHogBackend": ".backends",
    "StdoutBackend": ".backends",
    "TelemetryBackend": ".backends",
    "register_backend": ".backends",
    "TelemetryEvent": ".events",
    "instrument_cyclopts": ".instrument",
    "instrument_typer": ".instrument",
    "skip_telemetry": ".instrument",
    "UploadResult": ".uploader",
    "upload": ".uploader",
}


def __getattr__(name: str) -> Any:
    """Names whose modules capturing does not need load on first use."""
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # ``__import__`` rather than ``importlib``: importing that costs every start ~0.3 ms
    return getattr(__import__(home[1:], globals(), None, [name], 1), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
