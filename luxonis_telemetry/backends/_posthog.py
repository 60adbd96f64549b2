"""PostHog delivery: the official client's batch request, built by us, on a transport we control.

The wire. Each batch is the request ``posthog.request.batch_post`` sends:
``POST {host}/batch/`` (the host as batch_post normalises it: blanks
stripped, one trailing slash removed) with the JSON body ``{"batch": [...],
"historical_migration": ..., "sent_at": ..., "api_key": ...}`` (those keys,
in that order), gzip-compressed, with posthog's ``Content-Type: application/json``,
``Content-Encoding: gzip`` and ``User-Agent: posthog-python/<version>``
headers. The posthog package stays the source of that format (its host
normalisation, path, user agent and, for a batch that needs it, its
encoder); ``tests/test_posthog_backend.py`` sends the same batch through
``batch_post`` and through us and compares the two requests.

We build the request ourselves (issue 8.7 allows a small HTTP path of ours
that sends the same wire format) because ``batch_post`` cannot be told how
to encode: its encoder copies every value of every event to replace NaN and
infinities, then gzips at level 9. Measured on a 1,000-event batch of
luxonis-ml-sized events (2 cores): its encoding costs ~14-33 us and its gzip
~6 us per event, about half of an upload's CPU; ours costs ~4 us and ~4 us.
Our records never hold NaN (capture writes it as null), so a batch is
written by the C JSON encoder, from pieces: the properties derived from an
event's context are the same for a whole batch of one process's events, so
they are encoded once per batch. A batch that holds NaN anyway (a hand-edited
spool or bundle) goes through posthog's own encoder, NaN becoming ``null``
exactly as batch_post sends it. The body is gzipped at level 6: level 9
costs about twice the CPU for 0.3% fewer bytes on our events, level 1 half
the CPU for 12% more bytes, which a far-away link pays for. Encoding and
compression run on the deliverer's worker threads (zlib releases the GIL).

The request goes through a ``requests`` session whose transport
(``_transport``) follows no redirect, reads answers with a size limit and
ends the whole exchange at a deadline. A batch counts as delivered only when
PostHog answered 200 with its JSON acknowledgement (``{"status": 1}``, or
``{"status": "Ok"}`` from newer capture servers): a captive portal's HTML
page, an empty body or a redirect keep the events pending. Other answers are
classified as batch_post's caller saw them: 401/403 a refused key, 400/422 a
refused batch, 413 too large, anything else transient, with ``Retry-After``
honoured in seconds or as an HTTP date.

The message keeps the spooled record's uuid and capture time, and carries
luxonis-ml's property keys (``$process_person_profile``, ``$session_id``,
``source_product``, ``source_component``, ``sdk_version``,
``schema_version``) next to ours, plus the keys the official client adds
(``$lib``, ``$lib_version``, ``$is_server``, ``$os``, ``$os_version``,
``$python_version``, ``$python_runtime`` when recorded), taken from the
capture-time context rather than from the uploading machine, so existing
dashboards keep working. Properties never replace context, and never set
PostHog's ``$`` keys: the sanitizer drops those at capture, and they are
dropped again here for records that did not pass through it (bundles of
other versions, hand edits).

Event time. PostHog shifts each event's ``timestamp`` by the sender's clock
skew (``timestamp - (sent_at - now)``) unless the event carries
``$ignore_sent_at: true``. That correction is right only when the clock that
stamped the event is the one that stamps ``sent_at``, as it is now. So an
event gets ``$ignore_sent_at``, and keeps the capturing machine's time as
recorded, when

* it is uploaded from a bundle (another machine's clock): the deliverer sets
  ``trust_sent_at = False`` on the backend; or
* it was captured more than :data:`SENT_AT_TRUST_SECONDS` (one hour) before
  or after the upload: the clock may have been set since (NTP, a laptop
  resumed, a container moved), so today's skew says nothing about then; or
* its timestamp cannot be read (nothing to correct reliably).

Fresh local events keep PostHog's correction: a machine whose clock is off
right now still gets its events placed at the server's time.
"""

from __future__ import annotations

import json
import time
import zlib
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Optional

from .._jsonio import dumps_compact, string
from .._text import mask_url
from .._version import __version__
from ..config import DEFAULT_ENDPOINT
from ..record import wire_context
from ._base import BackendUnavailable, DeliveryError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..config import TelemetryConfig
    from ..record import Record

__all__ = [
    "GZIP_LEVEL",
    "LIB_NAME",
    "NO_IP",
    "SENT_AT_TRUST_SECONDS",
    "PostHogBackend",
    "to_posthog_message",
]

LIB_NAME = "luxonis-telemetry"
NO_IP = "0.0.0.0"  # noqa: S104 - a placeholder address, nothing listens on it
MAX_REQUEST_SECONDS = 10.0
SENT_AT_TRUST_SECONDS = 3600.0
GZIP_LEVEL = 6
_ALIASES = (
    ("os_distro", "$os_distro"),
    ("python_version", "$python_version"),
    ("python_implementation", "$python_runtime"),
)
_OS_NAMES = {"Darwin": "Mac OS X"}  # the names the posthog client reports
_ACKS = (1, "ok")
_TRUST = timedelta(seconds=SENT_AT_TRUST_SECONDS)
_IGNORE_SENT_AT = ',"$ignore_sent_at":true'
_NUMBERS = (bool, int, float)  # equal across types (1 == 1.0 == True), unlike their JSON


def to_posthog_message(
    record: Record,
    *,
    disable_geoip: bool = True,
    trust_sent_at: bool = True,
    now: Optional[float] = None,
) -> dict[str, Any]:
    """The PostHog message for a spooled record: same uuid, time and capture-time context.

    ``disable_geoip`` (the default) also keeps the uploading machine's IP
    address out of the event; a library that turns GeoIP on sends it, since
    the lookup needs it.

    ``trust_sent_at=False`` (a bundle) adds ``$ignore_sent_at`` to every
    event; otherwise only events captured more than an hour from ``now``
    (seconds since the epoch; default: the current time) get it. See the
    module doc for why.
    """
    is_identify = record.get("type") == "identify"
    properties: dict[str, Any] = {} if is_identify else _plain(record["properties"])
    context_properties = _context_properties(record, disable_geoip)
    properties.update(context_properties)
    window = _clock_window(time.time() if now is None else now)
    if not trust_sent_at or not _same_clock(record["timestamp"], window):
        properties["$ignore_sent_at"] = True
    event = record["event"]
    if is_identify:
        event = "$identify"
        properties.pop("$process_person_profile", None)  # it would stop the person merge
        properties["$set"] = _plain(record["properties"])
        anonymous = record["context"].get("anon_distinct_id")
        if anonymous and anonymous != record["distinct_id"]:
            properties["$anon_distinct_id"] = anonymous
    return {
        "type": "capture",
        "event": event,
        "distinct_id": record["distinct_id"],
        "properties": properties,
        "timestamp": record["timestamp"],
        "uuid": record["uuid"],
    }


def _context_properties(record: Record, disable_geoip: bool) -> dict[str, Any]:
    """Every property the record's context and this sender give, in the order they are set.

    It depends on the context, the record's type and ``disable_geoip`` only:
    never on the record's own properties (which it overrides), nor on its time.
    """
    context = wire_context(record)
    properties = dict(context)
    for ours, theirs in _ALIASES:
        if context.get(ours) is not None:
            properties[theirs] = context[ours]
    system = context.get("os")
    if system is not None:
        properties["$os"] = _OS_NAMES.get(system, system)
        properties["$os_version"] = context.get("os_product_version") or context.get("os_version")
    properties["$lib"] = LIB_NAME
    properties["$lib_version"] = __version__
    properties["$is_server"] = True
    properties["schema_version"] = 1
    if disable_geoip:
        # PostHog fills an empty `$ip` with the uploading machine's address and
        # keeps a non-empty one as sent: a placeholder keeps the real address out.
        properties["$geoip_disable"] = True
        properties["$ip"] = NO_IP
    return properties


def _plain(properties: dict[str, Any]) -> dict[str, Any]:
    """The record's properties without PostHog's ``$`` instructions (``$set``, ``$ip``, ...)."""
    return {
        key: value
        for key, value in properties.items()
        if not (isinstance(key, str) and key.startswith("$"))
    }


def _clock_window(now: float) -> tuple[datetime, datetime]:
    """The capture times whose clock can be taken as the uploading clock at ``now``."""
    current = datetime.fromtimestamp(now, timezone.utc)
    return current - _TRUST, current + _TRUST


def _same_clock(timestamp: str, window: tuple[datetime, datetime]) -> bool:
    """Whether the clock that stamped ``timestamp`` can be taken as today's uploading clock."""
    try:
        stamp = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return False
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)  # as the uploader reads it for its age
    return window[0] <= stamp <= window[1]


def _batch_json(
    records: Sequence[Record], *, disable_geoip: bool, trust_sent_at: bool, now: float
) -> str:
    """``[message, ...]`` as JSON: the text of ``to_posthog_message`` of each record.

    The same JSON values, written from pieces: a capture's context properties
    are encoded once for the run of records that share the context (one
    process's events), its own properties once, and the rest spliced in.
    Raises ``ValueError`` for a NaN or an infinity anywhere (see the module doc),
    ``TypeError`` for a value that is not JSON (a date in a record built in memory).
    """
    window = _clock_window(now)
    encode, quote, same_clock = dumps_compact, string, _same_clock  # locals: a hot loop
    parts: list[str] = []
    context: Optional[dict[str, Any]] = None  # of the cached context properties
    numbers: list[tuple[str, type]] = []  # its numbers and their types
    keys: Any = ()
    tail = ""
    for record in records:
        if record.get("type") != "capture":
            message = to_posthog_message(
                record, disable_geoip=disable_geoip, trust_sent_at=trust_sent_at, now=now
            )
            parts.append(encode(message))
            continue
        current = record["context"]
        # Equal dicts may still differ in JSON (1 == 1.0 == True), hence the types of
        # numbers; nested values are not compared that way: such a context is not reused.
        reuse = context is not None and current == context
        if reuse:
            for key, kind in numbers:
                if type(current[key]) is not kind:
                    reuse = False
                    break
        if not reuse:
            derived = _context_properties(record, disable_geoip)
            keys = derived.keys()
            tail = encode(derived)[1:-1]
            kinds = {key: type(value) for key, value in current.items()}
            numbers = [(key, kind) for key, kind in kinds.items() if kind in _NUMBERS]
            nested = dict in kinds.values() or list in kinds.values()
            context = None if nested else current
        properties = record["properties"]
        own = encode(properties)
        if '"$' in own or not keys.isdisjoint(properties):
            own = encode(
                {key: value for key, value in _plain(properties).items() if key not in keys}
            )
        stamp = record["timestamp"]
        ignore = _IGNORE_SENT_AT if not trust_sent_at or not same_clock(stamp, window) else ""
        merged = f"{{{tail}{ignore}}}" if own == "{}" else f"{own[:-1]},{tail}{ignore}}}"
        parts.append(
            f'{{"type":"capture","event":{quote(record["event"])},'
            f'"distinct_id":{quote(record["distinct_id"])},"properties":{merged},'
            f'"timestamp":{quote(stamp)},"uuid":{quote(record["uuid"])}}}'
        )
    return f"[{','.join(parts)}]"


def _gzip(data: bytes) -> bytes:
    """``data`` as one gzip member, which PostHog reads under ``Content-Encoding: gzip``."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


class PostHogBackend:
    """Sends confirmed batches to a PostHog project (or a compatible server).

    Built with ``PostHogBackend(config)`` like every backend; without an API
    key it cannot be built (events then stay pending, with that reason).
    ``send`` may be called from several threads at once (batches in flight).
    """

    def __init__(self, config: TelemetryConfig) -> None:
        if not config.api_key:
            raise BackendUnavailable(
                "no PostHog API key configured (set LUXONIS_TELEMETRY_API_KEY)"
            )
        from posthog.request import EVENTS_ENDPOINT, USER_AGENT, normalize_host
        from posthog.utils import remove_trailing_slash

        from ._transport import new_session

        self.config = config
        self.api_key = config.api_key
        self.host = config.endpoint or DEFAULT_ENDPOINT
        self.url = remove_trailing_slash(normalize_host(self.host)) + EVENTS_ENDPOINT
        self.disable_geoip = config.disable_geoip
        self.trust_sent_at = True
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Content-Encoding": "gzip",
        }
        self._session = new_session()

    def __repr__(self) -> str:
        return f"PostHogBackend(host={mask_url(self.host)!r})"

    def messages(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        """Exactly what ``send`` puts in the request's ``batch``."""
        now = time.time()
        return [
            to_posthog_message(
                record,
                disable_geoip=self.disable_geoip,
                trust_sent_at=self.trust_sent_at,
                now=now,
            )
            for record in records
        ]

    def body(self, records: Sequence[Record], *, historical: bool = False) -> bytes:
        """The request's JSON body, uncompressed: what ``batch_post`` sends for ``messages``."""
        try:
            batch: Optional[str] = _batch_json(
                records,
                disable_geoip=self.disable_geoip,
                trust_sent_at=self.trust_sent_at,
                now=time.time(),
            )
        except (TypeError, ValueError):  # NaN, infinity, a date: posthog's encoder takes those
            batch = None
        sent_at = datetime.now(tz=timezone.utc).isoformat()
        if batch is None:
            from posthog.request import DatetimeSerializer

            fields = {
                "batch": self.messages(records),
                "historical_migration": historical,
                "sent_at": sent_at,
                "api_key": self.api_key,
            }
            return json.dumps(fields, cls=DatetimeSerializer).encode()
        lane = "true" if historical else "false"
        return (
            f'{{"batch":{batch},"historical_migration":{lane},'
            f'"sent_at":{string(sent_at)},"api_key":{string(self.api_key)}}}'
        ).encode()

    def send(
        self,
        records: Sequence[Record],
        *,
        historical: bool = False,
        timeout: float = MAX_REQUEST_SECONDS,
    ) -> None:
        """Deliver ``records`` as one batch, or raise :class:`DeliveryError`."""
        import requests

        from ._transport import RedirectRefused, ResponseTooLarge

        data = _gzip(self.body(records, historical=historical))
        where = mask_url(self.host)
        try:
            response = self._session.post(
                self.url,
                data=data,
                headers=self._headers,
                timeout=max(0.1, min(timeout, MAX_REQUEST_SECONDS)),
            )
        except RedirectRefused as exc:
            raise DeliveryError(
                f"{where} answered with a redirect ({exc}); redirects are not followed: "
                "set the endpoint to the address PostHog documents",
                kind=DeliveryError.TRANSIENT,
            ) from None
        except ResponseTooLarge:
            raise DeliveryError(
                f"{where} answered with an oversized body: not a PostHog acknowledgement",
                kind=DeliveryError.TRANSIENT,
            ) from None
        except requests.RequestException as exc:
            raise DeliveryError(
                f"cannot reach {where}: {type(exc).__name__}", kind=DeliveryError.TRANSIENT
            ) from None
        if response.status_code != 200:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise _classify(response.status_code, retry_after, where)
        _check_acknowledgement(response.content, where)

    def shutdown(self) -> None:
        """Close pooled connections."""
        self._session.close()


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds to wait, from ``Retry-After`` in seconds or as an HTTP date (as posthog reads it)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def _check_acknowledgement(body: bytes, where: Optional[str]) -> None:
    """A 200 is a delivery only when it carries PostHog's JSON acknowledgement."""
    try:
        answer = json.loads(body) if body else None
    except (ValueError, RecursionError):
        answer = None
    status = answer.get("status") if isinstance(answer, dict) else None
    if isinstance(status, str):
        status = status.strip().lower()
    if status in _ACKS and not isinstance(status, bool):
        return
    shown = body[:80].decode("utf-8", "replace").replace("\n", " ") if body else "an empty body"
    raise DeliveryError(
        f"{where} answered 200 without a PostHog acknowledgement ({shown!r}); "
        "a captive portal or proxy? the events stay pending",
        kind=DeliveryError.TRANSIENT,
    )


def _classify(code: int, retry_after: Optional[float], where: Optional[str]) -> DeliveryError:
    if code in (401, 403):
        return DeliveryError(
            f"{where} refused the API key ({code}): check LUXONIS_TELEMETRY_API_KEY; "
            "the events stay pending",
            kind=DeliveryError.UNAUTHORIZED,
            status=code,
        )
    message = f"{where} answered {code}"
    if code == 413:
        return DeliveryError(message, kind=DeliveryError.TOO_LARGE, status=code)
    if code in (400, 422):
        return DeliveryError(message, kind=DeliveryError.INVALID, status=code)
    return DeliveryError(
        message, kind=DeliveryError.TRANSIENT, status=code, retry_after=retry_after
    )
