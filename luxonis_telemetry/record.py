"""The spooled record: one JSON line per event, fixed at capture, read back at upload.

A record's ``uuid`` and ``timestamp`` never change after capture, through
retries, exports and uploads, so PostHog stores each event under the same
identity however often it is sent. The record keeps one name per concept
(our context keys); luxonis-ml's wire names are derived from it at upload
by :func:`wire_context`, for PostHog and for custom backends alike.
"""

from __future__ import annotations

import time

from ._ids import new_uuid4
from ._jsonio import dumps_compact, loads, string
from .context import base_context

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Optional, TypedDict

    class Record(TypedDict):
        """One spooled event (``inspect --json`` prints exactly these)."""

        v: int
        type: str  # "capture" or "identify"
        uuid: str
        timestamp: str  # ISO 8601 with offset, capture time
        event: str
        distinct_id: str
        library: str
        properties: dict[str, Any]
        context: dict[str, Any]

else:
    Record = dict  # a TypedDict for type checkers; plain dicts at run time


__all__ = [
    "MAX_RECORD_BYTES",
    "RECORD_VERSION",
    "Record",
    "encode",
    "encode_context",
    "encode_line",
    "json_string",
    "new_record",
    "now_iso",
    "validate",
    "wire_context",
]

RECORD_VERSION = 1
MAX_RECORD_BYTES = 256 * 1024
_RECORD_TYPES = frozenset({"capture", "identify"})
_KEPT_WHEN_SLIMMED = (
    "os",
    "os_version",
    "python_version",
    "library_name",
    "library_version",
    "session_id",
    "install_id",
    "ci",
    "source_component",
)


_second: tuple[int, str] = (-1, "")  # (epoch second, its "YYYY-MM-DDTHH:MM:SS")


def now_iso(ns: Optional[int] = None) -> str:
    """The current UTC time (or ``ns`` since the epoch) exactly as ``datetime.isoformat``.

    ``2026-11-28T14:00:00.123456+00:00``, and without the fraction on a whole
    second, as ``datetime`` writes it. ``time.time_ns`` and ``gmtime`` give
    that text in a third of the time ``datetime.now(utc)`` takes, and capture
    runs this for every event.
    """
    global _second  # noqa: PLW0603 - a cache of one formatted second
    if ns is None:
        ns = time.time_ns()
    seconds, rest = divmod(ns, 1_000_000_000)
    cached = _second
    if cached[0] != seconds:
        parts = time.gmtime(seconds)
        cached = _second = (
            seconds,
            f"{parts.tm_year:04d}-{parts.tm_mon:02d}-{parts.tm_mday:02d}T"
            f"{parts.tm_hour:02d}:{parts.tm_min:02d}:{parts.tm_sec:02d}",
        )
    micros = rest // 1000
    return f"{cached[1]}.{micros:06d}+00:00" if micros else f"{cached[1]}+00:00"


def new_record(
    kind: str,
    *,
    event: str,
    distinct_id: str,
    library: str,
    properties: dict[str, Any],
    context: Optional[dict[str, Any]],
) -> dict[str, Any]:
    """A record whose uuid and timestamp are fixed now and never change again.

    ``context=None`` leaves the key out: the caller splices in the context
    it encoded once for the whole process (see :func:`encode`).
    """
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "type": kind,
        "uuid": new_uuid4(),
        "timestamp": now_iso(),
        "event": event,
        "distinct_id": distinct_id,
        "library": library,
        "properties": properties,
    }
    if context is not None:
        record["context"] = context
    return record


def encode(record: Mapping[str, Any], context_json: Optional[str] = None) -> bytes:
    """One spool line; oversized properties are replaced, never the record.

    ``context_json`` is the record's context already encoded (and then the
    record holds no ``context`` key): the context is the same for every event
    of a process, so callers encode it once.
    """
    if context_json is None:
        line = dumps_compact(record)
    else:
        line = f'{dumps_compact(record)[:-1]},"context":{context_json}}}'
        if len(line) > MAX_RECORD_BYTES:
            record = {**record, "context": loads(context_json)}
    if len(line) > MAX_RECORD_BYTES:
        slim = dict(record)
        slim["properties"] = {"properties_truncated": True, "original_bytes": len(line)}
        slim["context"] = {
            key: value
            for key, value in record.get("context", {}).items()
            if key in _KEPT_WHEN_SLIMMED
        }
        line = dumps_compact(slim)
    return line.encode() + b"\n"


def encode_line(
    kind: str,
    *,
    event_json: str,
    distinct_id_json: str,
    library_json: str,
    properties: dict[str, Any],
    context_json: str,
) -> bytes:
    """A new record's spool line, built directly (the capture path; see :func:`encode`).

    The same text ``encode(new_record(...), context_json)`` gives, in half the
    time: the uuid and time need no escaping, the strings come JSON-encoded
    (callers cache them) and only the properties are encoded here. A line
    over ``MAX_RECORD_BYTES`` is slimmed as :func:`encode` does.
    """
    line = (
        f'{{"v":1,"type":"{kind}","uuid":"{new_uuid4()}","timestamp":"{now_iso()}",'
        f'"event":{event_json},"distinct_id":{distinct_id_json},"library":{library_json},'
        f'"properties":{dumps_compact(properties)},"context":{context_json}}}\n'
    )
    if len(line) <= MAX_RECORD_BYTES:
        return line.encode()
    return encode(loads(line))


def json_string(text: str) -> str:
    """``text`` as a JSON string literal (ASCII, as the record encoder writes it)."""
    return string(text)


def encode_context(context: Mapping[str, Any]) -> str:
    """The context as it is spliced into every line (see :func:`encode`)."""
    return dumps_compact(context)


def validate(value: Any) -> Optional[Record]:
    """The record when ``value`` is a well-formed v1 event, else ``None``."""
    if type(value) is not dict:
        return None
    version = value.get("v")
    if type(version) is not int or version != RECORD_VERSION:  # not True, not 1.0
        return None
    kind = value.get("type")
    if type(kind) is not str or kind not in _RECORD_TYPES:  # a list would not even hash
        return None
    for key in ("uuid", "timestamp", "event", "distinct_id", "library"):
        if type(value.get(key)) is not str:
            return None
    if type(value.get("properties")) is not dict or type(value.get("context")) is not dict:
        return None
    return value  # type: ignore[return-value]


def wire_context(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's context with luxonis-ml's keys derived from ours.

    ``$process_person_profile`` (false: anonymous, no person profile),
    ``$session_id``, ``source_product``, ``source_component`` and
    ``sdk_version`` are what luxonis-ml 0.10.2 sent; existing dashboards
    filter on them. A value a provider set under a reserved name (allowed
    with ``allow_reserved_overrides``) is kept. Without a base context
    (``include_base_context=False``) nothing is derived, as in luxonis-ml.
    """
    context = dict(record["context"])
    if "session_id" not in context or "library_name" not in context:
        return context
    derived = base_context(
        library_name=context["library_name"],
        library_version=context.get("library_version"),
        session_id=context["session_id"],
        source_component=context.get("source_component"),
    )
    if record.get("type") == "identify":
        del derived["$process_person_profile"]
    for key, value in derived.items():
        context.setdefault(key, value)
    return context
