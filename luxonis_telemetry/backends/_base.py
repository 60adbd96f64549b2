"""What a backend is: the seed's four methods, plus an optional batch send.

The uploader needs to know whether a batch was accepted before it deletes the
events from the spool. A backend that offers ``send(records, historical=...)``
answers that directly (raise :class:`DeliveryError` when it was not); for one
that only has the seed's ``capture``/``identify``/``flush``, the batch counts
as delivered when ``flush()`` returns without raising.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Backend", "BackendUnavailable", "BatchBackend", "DeliveryError", "Record"]

Record = dict[str, Any]


@runtime_checkable
class Backend(Protocol):
    def capture(self, event: Record) -> None: ...

    def identify(self, user_id: str, traits: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...

    def shutdown(self) -> None: ...


@runtime_checkable
class BatchBackend(Protocol):
    def send(self, records: Sequence[Record], *, historical: bool = False) -> None:
        """Deliver all of ``records`` or raise :class:`DeliveryError`."""


class BackendUnavailable(Exception):
    """The backend cannot be built here (no key, unknown name, ...)."""


class DeliveryError(Exception):
    """A batch was not accepted.

    ``kind`` is ``"transient"`` (retry later: network, timeout, 408/429/5xx),
    ``"rejected"`` (the server will never take it: other 4xx) or
    ``"too_large"`` (split it and try again).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "transient",
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
