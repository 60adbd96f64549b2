"""What a backend can get wrong: not being available, or not accepting a batch.

The contracts themselves (the seed's four methods, plus an optional batch
``send``) are ``Backend`` and ``BatchBackend`` in ``_protocols``; they are
typing-only, so this module stays free of ``typing`` at import.
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from typing import Any, Optional

    Record = dict[str, Any]

__all__ = ["BackendUnavailable", "DeliveryError"]


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
