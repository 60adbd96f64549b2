"""PostHog delivery through the official ``posthog`` package.

The posthog client's async queue drops events silently (queue full, after its
retries, at exit, over 900 KiB), so it is not used here. Each batch goes
through ``posthog.request.batch_post``, which raises unless PostHog answered
200: only then may the uploader delete the events. ``posthog`` is imported
when a backend is built, never at package import.
"""

from __future__ import annotations

import threading

from .._version import __version__
from ._base import BackendUnavailable, DeliveryError

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Optional

    from ._protocols import Record

__all__ = ["PostHogBackend", "to_posthog_message"]

LIB_NAME = "luxonis-telemetry"
_RENAMED_CONTEXT = {
    "os": "$os",
    "os_version": "$os_version",
    "python_version": "$python_version",
}
_FLUSH_BATCH = 500
_LIB_PROPERTIES = {"$lib": LIB_NAME, "$lib_version": __version__, "$geoip_disable": True}


def to_posthog_message(record: Record) -> dict[str, Any]:
    """The PostHog message for a spooled record: same uuid, time and context.

    The spooled os/python facts are those of the capturing machine; PostHog
    receives them as they are, not the uploading machine's.
    """
    renamed = _RENAMED_CONTEXT
    properties = {renamed.get(key, key): value for key, value in record["context"].items()}
    properties.update(_LIB_PROPERTIES)
    if record.get("type") == "identify":
        properties["$set"] = record.get("properties", {})
        event = "$identify"
    else:
        properties.update(record.get("properties", {}))
        event = record["event"]
    return {
        "type": "capture",
        "event": event,
        "distinct_id": record["distinct_id"],
        "properties": properties,
        "timestamp": record["timestamp"],
        "uuid": record["uuid"],
    }


class PostHogBackend:
    """Sends confirmed batches to a PostHog project (or a compatible server)."""

    def __init__(
        self,
        api_key: Optional[str],
        host: str,
        *,
        timeout: float = 10.0,
        gzip: bool = True,
    ) -> None:
        if not api_key:
            raise BackendUnavailable(
                "no PostHog API key configured (set LUXONIS_TELEMETRY_API_KEY)"
            )
        import requests

        self.api_key = api_key
        self.host = host
        self.timeout = timeout
        self.gzip = gzip
        self._session = requests.Session()
        self._buffer: list[Record] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostHogBackend(host={self.host!r})"

    def send(self, records: Sequence[Record], *, historical: bool = False) -> None:
        import requests
        from posthog.request import APIError, batch_post

        messages = [to_posthog_message(record) for record in records]
        try:
            batch_post(
                self.api_key,
                host=self.host,
                gzip=self.gzip,
                timeout=self.timeout,
                batch=messages,
                historical_migration=historical,
                session=self._session,
            )
        except APIError as exc:
            raise _classify(exc.status, exc.retry_after) from None
        except requests.RequestException as exc:
            raise DeliveryError(
                f"cannot reach {self.host}: {type(exc).__name__}", kind="transient"
            ) from None

    def capture(self, event: Record) -> None:
        with self._lock:
            self._buffer.append(event)

    def identify(self, user_id: str, traits: dict[str, Any]) -> None:
        from ..event import new_record

        record = new_record(
            "identify",
            event="$identify",
            distinct_id=user_id,
            library="",
            properties=dict(traits),
            context={},
        )
        self.capture(record)

    def flush(self) -> None:
        with self._lock:
            pending, self._buffer = self._buffer, []
        for start in range(0, len(pending), _FLUSH_BATCH):
            self.send(pending[start : start + _FLUSH_BATCH])

    def shutdown(self) -> None:
        try:
            self.flush()
        finally:
            self._session.close()


def _classify(status: Any, retry_after: Optional[float]) -> DeliveryError:
    code = status if isinstance(status, int) else None
    message = f"PostHog answered {status}"
    if code == 413:
        return DeliveryError(message, kind="too_large", status=code)
    if code is None or code in (408, 429) or code >= 500:
        return DeliveryError(message, kind="transient", status=code, retry_after=retry_after)
    return DeliveryError(message, kind="rejected", status=code)
