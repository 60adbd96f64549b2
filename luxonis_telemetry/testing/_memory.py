"""``MemoryBackend``: a batch backend that keeps what the uploader hands it."""

from __future__ import annotations

import threading
from typing import Any, Optional

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..backends import DeliveryError
    from ..config import TelemetryConfig
    from ..record import Record

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Keeps delivered records in ``records``; set ``fail_with`` to make sends fail.

    Register one instance under a name to see exactly what an upload delivers::

        backend = MemoryBackend()
        Telemetry.register_backend("memory", lambda config: backend)
    """

    def __init__(self, config: Optional[TelemetryConfig] = None) -> None:
        self.config = config
        self.records: list[Record] = []
        self.batches = 0
        self.fail_with: Optional[DeliveryError] = None
        self._lock = threading.Lock()

    def send(self, records: Sequence[Record], *, historical: bool, timeout: float) -> None:
        """Keep ``records``, or raise ``fail_with``."""
        if self.fail_with is not None:
            raise self.fail_with
        with self._lock:
            self.records.extend(records)
            self.batches += 1

    def shutdown(self) -> None:
        """Nothing to release."""

    def events(self) -> list[dict[str, Any]]:
        """The delivered records' ``event`` and ``properties`` (the common assertion)."""
        with self._lock:
            return [{"event": r["event"], "properties": r["properties"]} for r in self.records]
