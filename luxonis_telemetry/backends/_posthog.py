"""PostHog delivery through the official ``posthog`` package, on a transport we control.

Each batch goes through ``posthog.request.batch_post`` (the official client's
wire format and status handling) with a ``requests`` session whose transport
(``_transport``) follows no redirect, reads answers with a size limit and
ends the whole exchange at a deadline. A batch counts as delivered only when
PostHog answered 200 with its JSON acknowledgement (``{"status": 1}``, or
``{"status": "Ok"}`` from newer capture servers): a captive portal's HTML
page, an empty body or a redirect keep the events pending.

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
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional

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
_ALIASES = (
    ("os_distro", "$os_distro"),
    ("python_version", "$python_version"),
    ("python_implementation", "$python_runtime"),
)
_OS_NAMES = {"Darwin": "Mac OS X"}  # the names the posthog client reports
_ACKS = (1, "ok")


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
    context = wire_context(record)
    is_identify = record.get("type") == "identify"
    properties: dict[str, Any] = {} if is_identify else _plain(record["properties"])
    properties.update(context)
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
    if not trust_sent_at or not _same_clock(record["timestamp"], now):
        properties["$ignore_sent_at"] = True
    event = record["event"]
    if is_identify:
        event = "$identify"
        properties.pop("$process_person_profile", None)  # it would stop the person merge
        properties["$set"] = _plain(record["properties"])
        anonymous = context.get("anon_distinct_id")
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


def _plain(properties: dict[str, Any]) -> dict[str, Any]:
    """The record's properties without PostHog's ``$`` instructions (``$set``, ``$ip``, ...)."""
    return {
        key: value
        for key, value in properties.items()
        if not (isinstance(key, str) and key.startswith("$"))
    }


def _same_clock(timestamp: str, now: Optional[float]) -> bool:
    """Whether the clock that stamped ``timestamp`` can be taken as today's uploading clock."""
    try:
        stamp = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return False
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)  # as the uploader reads it for its age
    current = time.time() if now is None else now
    return abs(current - stamp.timestamp()) <= SENT_AT_TRUST_SECONDS


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
        from ._transport import new_session

        self.config = config
        self.api_key = config.api_key
        self.host = config.endpoint or DEFAULT_ENDPOINT
        self.disable_geoip = config.disable_geoip
        self.trust_sent_at = True
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

    def send(
        self,
        records: Sequence[Record],
        *,
        historical: bool = False,
        timeout: float = MAX_REQUEST_SECONDS,
    ) -> None:
        """Deliver ``records`` as one batch, or raise :class:`DeliveryError`."""
        import requests
        from posthog.request import APIError, batch_post

        from ._transport import RedirectRefused, ResponseTooLarge

        where = mask_url(self.host)
        try:
            response = batch_post(
                self.api_key,
                host=self.host,
                gzip=True,
                timeout=max(0.1, min(timeout, MAX_REQUEST_SECONDS)),
                batch=self.messages(records),
                historical_migration=historical,
                session=self._session,
            )
        except APIError as exc:
            raise _classify(exc.status, exc.retry_after, where) from None
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
        _check_acknowledgement(response.content, where)

    def shutdown(self) -> None:
        """Close pooled connections."""
        self._session.close()


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


def _classify(status: Any, retry_after: Optional[float], where: Optional[str]) -> DeliveryError:
    code = status if isinstance(status, int) else None
    if code in (401, 403):
        return DeliveryError(
            f"{where} refused the API key ({code}): check LUXONIS_TELEMETRY_API_KEY; "
            "the events stay pending",
            kind=DeliveryError.UNAUTHORIZED,
            status=code,
        )
    message = f"{where} answered {status}"
    if code == 413:
        return DeliveryError(message, kind=DeliveryError.TOO_LARGE, status=code)
    if code in (400, 422):
        return DeliveryError(message, kind=DeliveryError.INVALID, status=code)
    return DeliveryError(
        message, kind=DeliveryError.TRANSIENT, status=code, retry_after=retry_after
    )
