"""The backend contracts, for type checkers and readers.

The uploader needs to know whether a batch was accepted before it deletes
the events from the spool. A backend that offers ``send(records,
historical=...)`` answers that directly (raise ``DeliveryError`` when it was
not); for one that only has the seed's ``capture``/``identify``/``flush``,
the batch counts as delivered when ``flush()`` returns without raising.
Backends are duck-typed: nothing has to inherit from these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Backend", "BatchBackend", "Record"]

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
        """Deliver all of ``records`` or raise ``DeliveryError``."""
