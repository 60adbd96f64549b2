"""The backend contract, in one place: what a backend gets, what it may raise, how long it has.

Two shapes of backend are served:

* a **batch backend** offers ``send(records, *, historical, timeout)``: it
  delivers a whole batch of spooled :data:`~luxonis_telemetry.record.Record`
  dicts or raises :class:`DeliveryError`, and the uploader deletes the
  events only when it returned. ``timeout`` is the number of seconds this
  call may take (the rest of the run's budget, at most 10 s); ``historical``
  is true for events older than 48 hours (PostHog's historical lane).
* a **luxonis-ml style backend** (subclass :class:`TelemetryBackend`, or any
  object with the seed's ``capture``/``identify``/``flush``/``shutdown``)
  receives one :class:`~luxonis_telemetry.events.TelemetryEvent` per event
  via ``capture`` (an ``identify`` record goes to ``identify(user_id,
  traits)`` when the backend has it), then ``flush()``; the batch counts as
  delivered when ``flush`` returns. Such a backend cannot be interrupted, so
  the uploader gives it the same time budget but can only wait.

Backends are built with ``factory(config)`` where ``factory`` is a class or
any callable, registered in-process (``Telemetry.register_backend``) or
published under the ``luxonis_telemetry.backends`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Optional, Protocol, runtime_checkable

from .._errors import TelemetryError

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..config import TelemetryConfig
    from ..events import TelemetryEvent
    from ..record import Record

__all__ = ["BackendUnavailable", "BatchBackend", "DeliveryError", "TelemetryBackend"]


class BackendUnavailable(TelemetryError):
    """The backend cannot be built here (no key, unknown name, failed to start)."""


class DeliveryError(TelemetryError):
    """A batch was not accepted; ``kind`` tells the uploader what to do with it.

    ``transient``: keep the events, retry later (network, timeout, 408, 429,
    5xx, a redirect, an answer that is not an acknowledgement).
    ``unauthorized``: the key was refused (401/403): keep the events, stop
    sending to this destination, tell the person.
    ``invalid``: the server refused something in the batch (400): split it to
    find the events it refuses; those alone are quarantined.
    ``too_large``: split the batch; a single event still too large is quarantined.
    ``rejected``: the server will never take these events: quarantine the batch.
    """

    TRANSIENT = "transient"
    UNAUTHORIZED = "unauthorized"
    INVALID = "invalid"
    TOO_LARGE = "too_large"
    REJECTED = "rejected"
    KINDS = frozenset({TRANSIENT, UNAUTHORIZED, INVALID, TOO_LARGE, REJECTED})

    def __init__(
        self,
        message: str,
        *,
        kind: str = TRANSIENT,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"DeliveryError kind must be one of {sorted(self.KINDS)}")
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


@runtime_checkable
class BatchBackend(Protocol):
    """Delivers whole batches and says whether each was accepted (see the module doc)."""

    def send(self, records: Sequence[Record], *, historical: bool, timeout: float) -> None:
        """Deliver all of ``records`` within ``timeout`` seconds, or raise DeliveryError."""

    def shutdown(self) -> None:
        """Release connections; called once at the end of an upload."""


class TelemetryBackend(ABC):
    """Base class for luxonis-ml style backends: implement ``capture``.

    ``flush`` does nothing and ``shutdown`` calls ``flush``, as in
    luxonis-ml; ``identify`` does nothing unless overridden.
    """

    def __init__(self, config: TelemetryConfig) -> None:
        self.config = config

    @abstractmethod
    def capture(self, event: TelemetryEvent) -> None:
        """Deliver (or buffer) one event."""

    def identify(self, user_id: str, traits: dict[str, Any]) -> None:
        """Attach ``traits`` to ``user_id``; ignored unless overridden."""
        return

    def flush(self) -> None:
        """Deliver what was buffered; returning means delivered."""
        return

    def shutdown(self) -> None:
        """Release resources, delivering what is buffered first."""
        self.flush()
