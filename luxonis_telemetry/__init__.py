"""Offline-first usage telemetry shared by Luxonis libraries.

``Telemetry("luxonis_ml").capture("train.start", {"epochs": 20})`` appends one
JSON line to a per-user spool; ``luxonis-telemetry upload`` (or the exit
hook) delivers it later. Importing this package loads no network code.
"""

from __future__ import annotations

from .client import Telemetry, get_telemetry, initialize_telemetry
from .config import TelemetryConfig
from .instrument import instrument_typer
from .uploader import UploadResult, upload

__version__ = "0.1.0"

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
