"""Backends that never touch the network: ``stdout`` (debug output) and ``noop``.

Both act at capture time (``stdout`` prints each event, ``noop`` drops it);
neither is an upload destination, so the uploader never counts their
events as sent.
"""

from __future__ import annotations

import json
import sys

from ._base import TelemetryBackend

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import IO, Any, Optional

    from ..config import TelemetryConfig
    from ..events import TelemetryEvent

__all__ = ["NoopBackend", "StdoutBackend"]


class NoopBackend(TelemetryBackend):
    """Records nothing: for code paths that want a backend but no telemetry."""

    def __init__(self, config: Optional[TelemetryConfig] = None) -> None:
        super().__init__(config)  # type: ignore[arg-type]

    def capture(self, event: TelemetryEvent) -> None:
        return


class StdoutBackend(TelemetryBackend):
    """Debug output: each event as one JSON line on stderr, sent nowhere.

    Named for the seed's ``stdout`` backend; it writes to stderr so that a
    host program's own standard output is never polluted.
    """

    def __init__(
        self, config: Optional[TelemetryConfig] = None, *, stream: Optional[IO[str]] = None
    ) -> None:
        super().__init__(config)  # type: ignore[arg-type]
        self._stream = stream

    def _write(self, payload: Any) -> None:
        stream = self._stream or sys.stderr
        stream.write(
            "[luxonis-telemetry] " + json.dumps(payload, sort_keys=True, default=str) + "\n"
        )

    def capture(self, event: Any) -> None:
        """Print a record (debug mode, at capture) or a TelemetryEvent (at upload)."""
        to_payload = getattr(event, "to_payload", None)
        self._write(to_payload() if callable(to_payload) else event)

    def identify(self, user_id: str, traits: dict[str, Any]) -> None:
        self._write({"type": "identify", "distinct_id": user_id, "properties": traits})

    def flush(self) -> None:
        stream = self._stream or sys.stderr
        stream.flush()
