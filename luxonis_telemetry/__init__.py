"""Offline-first usage telemetry shared by Luxonis libraries.

``Telemetry("luxonis_ml").capture("train.start", {"epochs": 20})`` appends one
JSON line to a per-user spool; ``luxonis-telemetry upload`` (or the exit
hook) delivers it later. Importing this package loads no network code.
"""

from __future__ import annotations

from ._version import __version__
from .client import Telemetry, get_telemetry, initialize_telemetry
from .config import TelemetryConfig
from .instrument import instrument_typer

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from typing import Any

    from .uploader import UploadResult, upload

__all__ = [
    "Telemetry",
    "TelemetryConfig",
    "UploadResult",
    "__version__",
    "get_telemetry",
    "initialize_telemetry",
    "instrument_typer",
    "upload",
]


def __getattr__(name: str) -> Any:
    """``upload`` and ``UploadResult`` load on first use: capturing needs neither."""
    if name in ("upload", "UploadResult"):
        from . import uploader

        return getattr(uploader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
