"""Capturing what a block of code records, for a library author's tests.

Like structlog's ``capture_logs``: inside ``with capture_events() as events``
every ``capture``/``identify`` of any ``Telemetry`` in the process appends
its record (the dict ``luxonis-telemetry inspect --json`` would print) to
``events``; nothing is written to disk and nothing is sent, whatever the
environment says (opt-outs included). ``suppress_telemetry`` still applies.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .. import _state

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["capture_events", "reset"]


@contextlib.contextmanager
def capture_events() -> Iterator[list[dict[str, Any]]]:
    """Collect the records of every capture in the block instead of spooling them."""
    current = _state.state
    previous = current.sink
    events: list[dict[str, Any]] = []
    current.sink = events
    try:
        yield events
    finally:
        current.sink = previous


def reset() -> None:
    """Forget all process-wide state (instances, registered backends, caches).

    For test fixtures: each test then starts as a fresh process would.
    """
    _state.reset()
