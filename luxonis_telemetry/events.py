"""``TelemetryEvent``: what a custom backend receives, with luxonis-ml's fields.

A backend written for ``luxonis_ml.telemetry`` reads ``event.name``,
``event.properties``, ``event.context``, ``event.distinct_id``,
``event.timestamp`` and ``event.to_payload()``; ours receives the same,
built at upload from the spooled record (same uuid and capture time), with
luxonis-ml's context keys derived (see ``record.wire_context``). This module
is loaded only when such a backend is served, so ``dataclasses`` is fine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from ._ids import new_uuid4
from .record import wire_context

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["TelemetryEvent"]


@dataclass(frozen=True)
class TelemetryEvent:
    """One event as luxonis-ml modelled it, plus the ``uuid`` PostHog de-duplicates by."""

    name: str
    timestamp: datetime
    properties: dict[str, Any]
    context: dict[str, Any]
    distinct_id: Optional[str] = None
    schema_version: int = 1
    uuid: str = field(default_factory=new_uuid4)
    type: str = "capture"

    @classmethod
    def create(
        cls,
        *,
        name: str,
        properties: dict[str, Any],
        context: dict[str, Any],
        distinct_id: Optional[str] = None,
        schema_version: int = 1,
    ) -> TelemetryEvent:
        """An event stamped now (UTC), as luxonis-ml's ``TelemetryEvent.create``."""
        return cls(
            name=name,
            timestamp=datetime.now(timezone.utc),
            properties=properties,
            context=context,
            distinct_id=distinct_id,
            schema_version=schema_version,
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TelemetryEvent:
        """The event a backend receives for a spooled record (same uuid and time)."""
        try:
            stamp = datetime.fromisoformat(record["timestamp"])
        except ValueError:
            stamp = datetime.now(timezone.utc)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return cls(
            name=record["event"],
            timestamp=stamp,
            properties=dict(record["properties"]),
            context=wire_context(record),
            distinct_id=record["distinct_id"],
            uuid=record["uuid"],
            type=record.get("type", "capture"),
        )

    def to_payload(self) -> dict[str, Any]:
        """A JSON-friendly dict: luxonis-ml's keys, plus ``uuid``."""
        return {
            "event": self.name,
            "timestamp": self.timestamp.isoformat(),
            "distinct_id": self.distinct_id,
            "properties": self.properties,
            "context": self.context,
            "schema_version": self.schema_version,
            "uuid": self.uuid,
        }
