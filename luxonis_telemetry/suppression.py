"""Turn telemetry off for one block of code, in one thread or asyncio task.

A library's own housekeeping (our CLI mounted under a tool, a test helper,
an internal retry loop) should not record events, without switching
telemetry off for the rest of the program. A ``ContextVar`` gives exactly
that scope: a new thread starts unsuppressed, an asyncio task inherits the
state of the code that created it, and neither leaks into the other.
"""

from __future__ import annotations

from contextvars import ContextVar

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from contextvars import Token
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["is_suppressed", "suppress_telemetry"]

_suppressed: ContextVar[bool] = ContextVar("luxonis_telemetry_suppressed", default=False)


def is_suppressed() -> bool:
    """True inside ``suppress_telemetry()`` in this thread or task."""
    return _suppressed.get()


class suppress_telemetry:
    """Record nothing inside the block (this thread or task only); nests freely.

    ``with suppress_telemetry():``, or ``@suppress_telemetry()`` on a function,
    as with luxonis-ml's ``contextlib`` version. A class rather than a
    generator: importing ``contextlib`` costs every tool ~0.5 ms at start-up.
    """

    __slots__ = ("_tokens",)

    def __init__(self) -> None:
        self._tokens: list[Token[bool]] = []

    def __enter__(self) -> None:
        self._tokens.append(_suppressed.set(True))

    def __exit__(self, *_exc: object) -> None:
        _suppressed.reset(self._tokens.pop())

    def __call__(self, func: F) -> F:
        """Suppress telemetry during every call of ``func``."""

        def suppressed(*args: Any, **kwargs: Any) -> Any:
            with suppress_telemetry():
                return func(*args, **kwargs)

        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            if hasattr(func, name):
                setattr(suppressed, name, getattr(func, name))
        suppressed.__dict__.update(getattr(func, "__dict__", {}))
        suppressed.__wrapped__ = func  # type: ignore[attr-defined]
        return suppressed  # type: ignore[return-value]
