"""JSON for the capture path without importing the ``json`` package.

``import json`` pulls in ``re``, ``enum``, ``functools`` and ``collections``:
about 5 ms that every Luxonis tool would pay at start-up to record one event.
Encoding needs only the C accelerator ``_json`` that ``json`` itself uses, so
encoding goes straight to it; decoding, needed only when a file of ours
already exists or an upload runs, imports ``json`` on first use. Where the
accelerator is missing (PyPy), everything falls back to ``json``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["dumps_compact", "dumps_sorted", "loads", "loads_line", "string"]

try:
    import _json as _accelerator
except ImportError:  # pragma: no cover - interpreters without the C accelerator
    _accelerator = None  # type: ignore[assignment]


def _refuse(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder(sort_keys: bool) -> Callable[[Any], str]:
    """Compact, ASCII, NaN refused: the text ``json.dumps(..., separators=(",", ":"))`` gives.

    No cycle check: what we encode was made JSON-safe (or parsed from JSON).
    """
    make = getattr(_accelerator, "make_encoder", None)
    if make is None:  # pragma: no cover - interpreters without the C accelerator
        import json

        return json.JSONEncoder(separators=(",", ":"), allow_nan=False, sort_keys=sort_keys).encode
    encode = make(
        None, _refuse, _accelerator.encode_basestring_ascii, None, ":", ",", sort_keys, False, False
    )

    def compact(value: Any) -> str:
        return "".join(encode(value, 0))

    return compact


dumps_compact = _encoder(sort_keys=False)
dumps_sorted = _encoder(sort_keys=True)


def _string_encoder() -> Callable[[str], str]:
    encode = getattr(_accelerator, "encode_basestring_ascii", None)
    if encode is None:  # pragma: no cover - interpreters without the C accelerator
        import json

        return json.encoder.encode_basestring_ascii
    return encode  # type: ignore[no-any-return]


string = _string_encoder()
"""``text`` as a JSON string literal, ASCII-only (control characters escaped)."""


_decode: Callable[[bytes | str], Any] | None = None
_scan: Callable[[str, int], tuple[Any, int]] | None = None


def loads(data: bytes | str) -> Any:
    """``json.loads``, importing ``json`` on first use (nothing on the capture path decodes)."""
    global _decode  # noqa: PLW0603 - json.loads, bound once it was needed
    if _decode is None:
        import json

        _decode = json.loads
    return _decode(data)


def loads_line(line: bytes) -> Any:
    """One JSON document per spool line, decoded as ``json.loads`` would, a third faster.

    ``json.loads`` of bytes sniffs the encoding and matches whitespace with
    a regular expression on every call; a spool line is UTF-8 (or not a
    record at all), so it is decoded and handed straight to the C scanner.
    Raises ``ValueError`` (or ``RecursionError``) for anything that is not
    exactly one JSON document, as ``json.loads`` does.
    """
    global _scan  # noqa: PLW0603 - the scanner, built once it was needed
    if _scan is None:
        import json

        _scan = json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]
    text = line.decode("utf-8").strip(" \t\r\n")
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("not a JSON document") from None
    if end != len(text):
        raise ValueError("extra data after the JSON document")
    return value
