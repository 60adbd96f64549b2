"""Backends that never touch the network."""

from __future__ import annotations

import json
import sys
import threading

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import IO, Any, Optional

    from ._base import DeliveryError
    from ._protocols import Record

__all__ = ["MemoryBackend", "NoopBackend", "StdoutBackend"]


class NoopBackend:
    """Records nothing: for code paths that want a backend but no telemetry."""

    def capture(self, event: Record) -> None:
        pass

    def identify(self, user_id: str, traits: dict[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def send(self, records: Sequence[Record], *, historical: bool = False) -> None:
        pass


class StdoutBackend:
    """Debug output: each event as one JSON line on stderr, sent nowhere.

    Named for the seed's ``stdout`` backend; it writes to stderr so that a
    host program's own standard output is never polluted.
    """

    def __init__(self, stream: Optional[IO[str]] = None) -> None:
        self._stream = stream

    def _write(self, payload: dict[str, Any]) -> None:
        stream = self._stream or sys.stderr
        stream.write("[luxonis-telemetry] " + json.dumps(payload, sort_keys=True) + "\n")

    def capture(self, event: Record) -> None:
        self._write(event)

    def identify(self, user_id: str, traits: dict[str, Any]) -> None:
        self._write({"type": "identify", "distinct_id": user_id, "properties": traits})

    def flush(self) -> None:
        stream = self._stream or sys.stderr
        stream.flush()

    def shutdown(self) -> None:
        self.flush()

    def send(self, records: Sequence[Record], *, historical: bool = False) -> None:
        for record in records:
            self._write(record)


class MemoryBackend:
    """A test double: keeps what it is given; ``fail_with`` makes sends fail."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.batches = 0
        self.fail_with: Optional[DeliveryError] = None
        self._lock = threading.Lock()

    def capture(self, event: Record) -> None:
        with self._lock:
            self.records.append(event)

    def identify(self, user_id: str, traits: dict[str, Any]) -> None:
        with self._lock:
            self.records.append({"type": "identify", "distinct_id": user_id, "properties": traits})

    def flush(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def send(self, records: Sequence[Record], *, historical: bool = False) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        with self._lock:
            self.records.extend(records)
            self.batches += 1
