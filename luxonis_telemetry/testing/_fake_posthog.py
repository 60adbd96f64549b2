"""A PostHog ``/batch/`` endpoint on loopback: as strict as PostHog, as hostile as a test needs.

Strict: a request that PostHog's capture service (``rust/capture`` in
PostHog/posthog) refuses is refused here with the same status and nothing of it
is stored, so a test that passes against the double does not lean on leniency
the real service lacks. Each rule names the PostHog source it follows.

Hostile: ``Action``s script redirects, captive portals, empty, arbitrary or
endless bodies, answers dripped one byte at a time, resets and hangs.

Far away: ``FakePostHog(delay=...)`` delays every POST without blocking the
other connections (one thread per connection, HTTP/1.1 keep-alive).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import sys
import threading
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Optional, Union

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DECOMPRESSED_BYTES",
    "MAX_EVENT_BYTES",
    "Action",
    "FakePostHog",
    "ReceivedBatch",
]

# rust/capture/src/router.rs: BATCH_BODY_SIZE, the axum DefaultBodyLimit on /batch/. It
# limits the body as sent (gzip-compressed or not); over it axum answers 413.
MAX_BODY_BYTES = 20 * 1024 * 1024
# rust/capture/src/setup.rs: event_payload_max_bytes = BATCH_BODY_SIZE * 5 in events mode;
# rust/capture/src/v0_request.rs RawRequest::from_bytes stops gunzipping past it with
# CaptureError::EventTooBig, which PostHog/posthog#31755 made a 413.
MAX_DECOMPRESSED_BYTES = 5 * MAX_BODY_BYTES
# rust/capture/src/config.rs: kafka_producer_message_max_bytes (librdkafka message.max.bytes).
# rust/capture/src/sinks/kafka.rs: a larger Kafka message is CaptureError::EventTooBig -> 413.
MAX_EVENT_BYTES = 1_000_000
# rust/capture/src/token.rs validate_token: longer project keys are refused.
_MAX_TOKEN_CHARS = 64

# The Kafka message wraps the event JSON as an escaped string next to a few short fields
# (uuid, distinct_id cut to 200 chars, ip, timestamps, token); this bounds those fields.
_ENVELOPE_OVERHEAD = 2048
# Re-serializing an event can grow it: a number such as 1e15 comes back as
# 1000000000000000.0 (x4.5) and escaping it into the Kafka message doubles quotes and
# backslashes (x2). An event shorter than this in the request cannot reach MAX_EVENT_BYTES,
# so only longer ones are re-serialized and measured.
_MEASURE_EVENTS_LONGER_THAN = (MAX_EVENT_BYTES - _ENVELOPE_OVERHEAD) // 9

_DRAIN_LIMIT = 64 * 1024 * 1024  # read and drop an oversized body up to this, then answer 413
_STOP_JOIN_SECONDS = 5.0
_POLL_SECONDS = 0.05  # how soon serve_forever notices stop()
_ZEROS = bytes(64 * 1024)
_GZIP_MAGIC = b"\x1f\x8b\x08"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_KINDS = frozenset(
    {"ok", "delay", "status", "close", "hang", "redirect", "html", "empty", "body", "huge", "drip"}
)
_CAPTIVE_PORTAL = (
    b"<!doctype html><html><head><title>Sign in to the network</title></head>"
    b'<body><form action="/login" method="post"><input name="user">'
    b"<button>Connect</button></form></body></html>"
)
_HEX = "[0-9a-fA-F]"
_HYPHENATED = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
# The forms the Rust uuid crate's Uuid::parse_str accepts: simple, hyphenated, braced, URN.
_UUID = re.compile(f"{_HEX}{{32}}|{_HYPHENATED}|\\{{{_HYPHENATED}\\}}|urn:uuid:{_HYPHENATED}")
_SPACE = re.compile(r"[ \t\n\r]*")
_COLON = re.compile(r"[ \t\n\r]*:[ \t\n\r]*")
_AFTER_VALUE = re.compile(r"[ \t\n\r]*([,\]}])[ \t\n\r]*")


@dataclass(frozen=True)
class Action:
    """How the server answers one request.

    ``kind``:

    - ``ok``: validate like PostHog, store and acknowledge (``delay`` is an alias);
    - ``status``: answer ``status`` (with ``Retry-After: retry_after`` when set),
      store nothing; ``status`` 200 behaves like ``ok``;
    - ``close``: drop the connection unanswered; ``hang``: never answer until
      the server stops;
    - ``redirect``: answer ``status`` (301/302/303/307/308; 302 when left at
      200) with ``Location: location``;
    - ``html``: 200 with a captive-portal page; ``empty``: 200 with no body;
      ``body``: 200 with ``body`` as given;
    - ``huge``: 200 announcing ``size`` bytes and streaming zeros until the
      client goes away;
    - ``drip``: like ``ok``, but the whole answer (status line, headers, body)
      is sent one byte every ``interval`` seconds.

    ``delay`` seconds pass before any of it. Only ``ok`` and ``drip`` store.
    """

    kind: str = "ok"
    status: int = 200
    retry_after: Optional[float] = None
    delay: float = 0.0
    location: Optional[str] = None
    body: bytes = b""
    size: int = 300 * 1024 * 1024
    interval: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown action kind {self.kind!r}; one of {sorted(_KINDS)}")
        if self.kind == "redirect":
            if self.status == 200:
                object.__setattr__(self, "status", 302)
            if self.status not in _REDIRECTS:
                raise ValueError(f"a redirect answers one of {sorted(_REDIRECTS)}")
            if not self.location:
                raise ValueError("a redirect needs a location")

    @property
    def stores(self) -> bool:
        """Whether the server validates, stores and acknowledges under this action."""
        return self.kind in ("ok", "delay", "drip") or (
            self.kind == "status" and self.status == 200
        )


@dataclass(frozen=True)
class ReceivedBatch:
    """One POST as it arrived and how it was answered.

    ``status`` is what the server answered (``None``: nothing), ``reason`` why
    it refused; ``events`` are filled when the batch was accepted. ``headers``
    are keyed by lower-case name; ``body_size`` is the body as sent (compressed).
    """

    api_key: Optional[str]
    gzip: bool
    historical: bool
    events: list[dict[str, Any]]
    path: str = "/batch/"
    status: Optional[int] = None
    reason: Optional[str] = None
    body_size: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    sent_at: Optional[str] = None

    @property
    def user_agent(self) -> Optional[str]:
        return self.headers.get("user-agent")

    @property
    def content_encoding(self) -> Optional[str]:
        return self.headers.get("content-encoding")


class _Refusal(Exception):
    """A request PostHog would refuse: ``status`` and the reason given to the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Gone(Exception):
    """The client went away (or the server is stopping) before it could be answered."""


@dataclass
class _Verdict:
    status: int = 200
    reason: Optional[str] = None
    data: Any = None
    events: list[dict[str, Any]] = field(default_factory=list)
    gzip: bool = False


# -- what PostHog refuses -------------------------------------------------------------


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # serde_json (rust/capture parses with it) refuses numbers out of f64 range.
        raise ValueError(f"number out of range: {text}")
    return value


def _no_constant(name: str) -> Any:
    # serde_json refuses the NaN/Infinity tokens Python's json would accept.
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _judge(
    path: str, content_encoding: str, body: bytes, api_keys: Optional[frozenset[str]]
) -> _Verdict:
    """What PostHog's capture answers to ``body`` POSTed at ``path``; never raises."""
    verdict = _Verdict()
    try:
        if not urlsplit(path).path.rstrip("/").endswith("/batch"):
            raise _Refusal(404, "not found: PostHog takes batches at /batch/")
        payload = body
        # rust/capture/src/v0_request.rs RawRequest::from_bytes: gzip when the client says so
        # (Content-Encoding gzip or gzip-js) or when the body starts with the gzip magic.
        if content_encoding.lower() in ("gzip", "gzip-js") or body.startswith(_GZIP_MAGIC):
            payload = _gunzip(body)
            verdict.gzip = True
        verdict.data, spans = _load(payload)
        verdict.events = _check_batch(verdict.data, spans, api_keys)
    except _Refusal as refusal:
        verdict.status, verdict.reason, verdict.events = refusal.status, refusal.reason, []
    return verdict


def _gunzip(body: bytes) -> bytes:
    # rust/capture/src/v0_request.rs RawRequest::from_bytes: invalid gzip is a 400
    # (RequestDecodingError); output past the limit is EventTooBig (413).
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        payload = inflater.decompress(body, MAX_DECOMPRESSED_BYTES + 1)
    except zlib.error as exc:
        raise _Refusal(400, f"invalid gzip data: {exc}") from None
    if len(payload) > MAX_DECOMPRESSED_BYTES:
        raise _Refusal(413, f"the batch exceeds {MAX_DECOMPRESSED_BYTES} bytes once unzipped")
    if not inflater.eof:
        raise _Refusal(400, "invalid gzip data: truncated")
    return payload


def _load(payload: bytes) -> tuple[Any, list[int]]:
    # rust/capture/src/v0_request.rs RawRequest::from_bytes: the body must be UTF-8 JSON
    # (RequestDecodingError / RequestParsingError, both 400).
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refusal(400, "the body is not UTF-8") from None
    try:
        return parse_batch_request(text)
    except (ValueError, RecursionError) as exc:
        raise _Refusal(400, f"invalid JSON: {str(exc)[:200]}") from None


def _check_batch(
    data: Any, spans: list[int], api_keys: Optional[frozenset[str]]
) -> list[dict[str, Any]]:
    """The events of an acceptable batch, or the refusal PostHog would give.

    PostHog's order is kept: the body is deserialized (400) before the batch is
    checked for events (400) and its key verified (401), before each event is
    processed (400) and produced to Kafka (413).
    """
    # rust/capture/src/v0_request.rs BatchedRequest {token (alias api_key), batch,
    # historical_migration: Option<bool>, sent_at: Option<String>}. This double takes the
    # /batch/ form only; PostHog also reads a bare array or a single event there.
    if not isinstance(data, dict):
        raise _Refusal(400, "the body must be a JSON object holding a batch")
    batch = data.get("batch")
    if not isinstance(batch, list):
        raise _Refusal(400, "batch must be a list of events")
    if "api_key" in data and "token" in data:
        raise _Refusal(400, "duplicate field: api_key and token")
    token = data.get("api_key", data.get("token"))
    if token is None:
        # Without a string token the body parses only as an /engage payload, which
        # RawRequest::events refuses on /batch/ (RequestHydrationError, 400).
        raise _Refusal(400, "the batch has no api_key")
    if not isinstance(token, str):
        raise _Refusal(400, "api_key must be a string")
    if not isinstance(data.get("historical_migration", False), (bool, type(None))):
        raise _Refusal(400, "historical_migration must be a boolean")
    if not isinstance(data.get("sent_at", ""), (str, type(None))):
        raise _Refusal(400, "sent_at must be a string")
    first_problem: Optional[_Refusal] = None
    for index, event in enumerate(batch):
        _check_event_shape(index, event)
        if first_problem is None:
            first_problem = _event_problem(index, event)
    # rust/capture/src/v0_request.rs RawRequest::events: CaptureError::EmptyBatch (400).
    if not batch:
        raise _Refusal(400, "request holds no event")
    _check_token(token, api_keys)
    if first_problem is not None:
        raise first_problem
    _check_sizes(batch, spans, token)
    return batch


def _check_event_shape(index: int, event: Any) -> None:
    """The types serde demands of rust/common types RawEvent; any mismatch fails the body."""
    if not isinstance(event, dict):
        raise _Refusal(400, f"event {index} is not an object")
    if not isinstance(event.get("event"), str):
        raise _Refusal(400, f"event {index} has no event name")
    uuid = event.get("uuid")
    # RawEvent.uuid (deserialize_with empty_string_uuid_is_none): null and "" mean absent,
    # any other value must parse as a uuid.
    if uuid is not None and uuid != "" and not (isinstance(uuid, str) and _UUID.fullmatch(uuid)):
        raise _Refusal(400, f"event {index} has an invalid uuid: {uuid!r}")
    if not isinstance(event.get("properties", {}), dict):
        raise _Refusal(400, f"event {index}: properties must be an object")
    if not isinstance(event.get("timestamp"), (str, type(None))):
        raise _Refusal(400, f"event {index}: timestamp must be a string")
    offset = event.get("offset")
    if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)):
        raise _Refusal(400, f"event {index}: offset must be an integer")
    for name in ("$set", "$set_once"):
        if not isinstance(event.get(name), (dict, type(None))):
            raise _Refusal(400, f"event {index}: {name} must be an object")


def _event_problem(index: int, event: dict[str, Any]) -> Optional[_Refusal]:
    """What rust/capture/src/events/analytics.rs process_single_event refuses (400)."""
    if not event["event"]:
        return _Refusal(400, f"event {index} has an empty event name")
    distinct_id = _distinct_id(event)
    if distinct_id is None or not distinct_id:
        return _Refusal(400, f"event {index} has no distinct_id")
    if not distinct_id.strip():
        # Stricter than PostHog, which stores a whitespace-only distinct_id as a person
        # id: every such event would be merged into one person.
        return _Refusal(400, f"event {index} has a blank distinct_id")
    return None


def _distinct_id(event: dict[str, Any]) -> Optional[str]:
    """rust/common types RawEvent::extract_distinct_id: the root field (alias
    ``$distinct_id``) else ``properties.distinct_id``; null means absent and any
    other JSON value is used as its JSON text."""
    value = event.get("distinct_id")
    if value is None:
        value = event.get("$distinct_id")
    if value is None:
        value = event.get("properties", {}).get("distinct_id")
    if value is None:
        return None
    return value if isinstance(value, str) else _COMPACT.encode(value)


def _check_token(token: str, api_keys: Optional[frozenset[str]]) -> None:
    # rust/capture/src/token.rs validate_token (TokenValidationError, 401): trimmed, it must
    # be non-empty, at most 64 ASCII characters, without NUL, not a personal key (phx_).
    key = token.strip()
    if not key:
        raise _Refusal(401, "empty api_key")
    if len(key) > _MAX_TOKEN_CHARS or not key.isascii() or "\0" in key or key.startswith("phx_"):
        raise _Refusal(401, "api_key is not a project API key")
    # rust/capture/src/known_tokens.rs enforce_known_token: an unknown key is a 401.
    if api_keys is not None and key not in api_keys:
        raise _Refusal(401, "api_key does not belong to a project")


def _check_sizes(batch: list[dict[str, Any]], spans: list[int], token: str) -> None:
    # rust/capture/src/sinks/kafka.rs: each event goes to Kafka as one message; a message
    # over MAX_EVENT_BYTES fails the request with EventTooBig (413).
    for index, (event, span) in enumerate(zip(batch, spans, strict=True)):
        if span > _MEASURE_EVENTS_LONGER_THAN and _message_size(event, token) > MAX_EVENT_BYTES:
            raise _Refusal(413, f"event {index} exceeds {MAX_EVENT_BYTES} bytes")


def _message_size(event: dict[str, Any], token: str) -> int:
    """Bytes of the Kafka message capture builds for ``event`` (CapturedEvent in
    rust/common types): the event JSON as an escaped string plus short fields."""
    message = {
        "uuid": event.get("uuid") or "00000000-0000-0000-0000-000000000000",
        "distinct_id": (_distinct_id(event) or "")[:200],
        "ip": "255.255.255.255",
        "data": _COMPACT.encode(event),
        "now": "2000-01-01T00:00:00.000000Z",
        "sent_at": "2000-01-01T00:00:00.000000Z",
        "token": token,
    }
    return len(_COMPACT.encode(message).encode("utf-8", "surrogatepass"))


# -- parsing with event spans -----------------------------------------------------------


def parse_batch_request(text: str) -> tuple[Any, list[int]]:
    """``json.loads(text)``, plus how many characters each element of a top-level
    ``batch`` list takes in ``text``, so that events are sized without being
    serialized again. Each value is decoded by the C decoder."""
    start = _skip_space(text, 0)
    if not text.startswith("{", start):
        return _DECODER.decode(text), []
    data: dict[str, Any] = {}
    spans: list[int] = []
    pos = _skip_space(text, start + 1)
    if text.startswith("}", pos):
        pos += 1
    else:
        while True:
            if not text.startswith('"', pos):
                raise json.JSONDecodeError(
                    "Expecting property name enclosed in double quotes", text, pos
                )
            key, pos = _DECODER.raw_decode(text, pos)
            colon = _COLON.match(text, pos)
            if colon is None:
                raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
            pos = colon.end()
            if key == "batch" and text.startswith("[", pos):
                data[key], spans, pos = _list_with_spans(text, pos)
            else:
                data[key], pos = _DECODER.raw_decode(text, pos)
            after = _AFTER_VALUE.match(text, pos)
            if after is None or after.group(1) == "]":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
            pos = after.end()
            if after.group(1) == "}":
                break
    pos = _skip_space(text, pos)
    if pos != len(text):
        raise json.JSONDecodeError("Extra data", text, pos)
    return data, spans


def _list_with_spans(text: str, pos: int) -> tuple[list[Any], list[int], int]:
    items: list[Any] = []
    spans: list[int] = []
    pos = _skip_space(text, pos + 1)
    if text.startswith("]", pos):
        return items, spans, pos + 1
    while True:
        item, end = _DECODER.raw_decode(text, pos)
        items.append(item)
        spans.append(end - pos)
        after = _AFTER_VALUE.match(text, end)
        if after is None or after.group(1) == "}":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, end)
        if after.group(1) == "]":
            return items, spans, after.start(1) + 1
        pos = after.end()


def _skip_space(text: str, pos: int) -> int:
    space = _SPACE.match(text, pos)
    return space.end() if space else pos


# -- the server -------------------------------------------------------------------------


class FakePostHog:
    """A PostHog ``/batch/`` endpoint on loopback; a context manager.

    ``api_keys``: the project keys it knows (others get 401); any well-formed
    key when ``None``. ``ack``: the ``status`` of the JSON acknowledgement (1 as
    PostHog's Django capture answered, ``"Ok"`` as its Rust capture does).
    ``delay``: seconds added before answering every POST, as a far-away server
    would. ``keep_events=False`` keeps only uuid counts (for million-event runs):
    no ``batches``, no ``history``. ``body_timeout``: how long a client may
    stall while sending a body before it gets a 408.

    What arrived: ``batches`` (stored, acknowledged), ``history`` (every POST
    read in full, however it was answered), ``requests`` (every POST, counted
    as it starts), ``max_in_flight`` (most POSTs handled at once) and
    ``handler_errors`` (exceptions in handler threads; a test wants none).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        keep_events: bool = True,
        delay: float = 0.0,
        api_keys: Optional[Iterable[str]] = None,
        ack: Union[int, str] = 1,
        body_timeout: float = 10.0,
    ) -> None:
        self.keep_events = keep_events
        self.delay = delay
        self.api_keys = None if api_keys is None else frozenset(key.strip() for key in api_keys)
        self.ack = ack
        self.body_timeout = body_timeout
        self.default = Action()
        self.batches: list[ReceivedBatch] = []
        self.history: list[ReceivedBatch] = []
        self.received: Counter[str] = Counter()
        self.requests = 0
        self.max_in_flight = 0
        self.handler_errors: list[BaseException] = []
        self._in_flight = 0
        self._event_total = 0
        self._script: deque[Action] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._server = _Server(("127.0.0.1", port), self)
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakePostHog:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(_POLL_SECONDS,),
            name="fake-posthog",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, hanging or dripping ones too.

        Returns within a few seconds whatever the clients do.
        """
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(_STOP_JOIN_SECONDS)
        self._server.server_close()
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            _cut(connection)
        deadline = time.monotonic() + _STOP_JOIN_SECONDS
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FakePostHog:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- scripting --------------------------------------------------------------------

    def script(self, *actions: Action) -> None:
        """Answer the next requests with ``actions``, then with ``default``."""
        with self._lock:
            self._script.extend(actions)

    def set_default(self, action: Action) -> None:
        with self._lock:
            self.default = action

    def _next_action(self) -> Action:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    # -- what arrived -------------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every stored event, in arrival order."""
        with self._lock:
            return [event for batch in self.batches for event in batch.events]

    def uuid_counts(self) -> Counter[str]:
        """How often each uuid was stored."""
        with self._lock:
            return Counter(self.received)

    @property
    def event_count(self) -> int:
        with self._lock:
            return self._event_total

    @property
    def in_flight(self) -> int:
        """POSTs being handled right now (waiting, hanging, streaming included)."""
        with self._lock:
            return self._in_flight

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Poll until ``count`` events arrived (True) or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.event_count >= count:
                return True
            time.sleep(0.02)
        return self.event_count >= count

    # -- bookkeeping for the handler threads ---------------------------------------------------

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections[connection] = threading.current_thread()
            stopping = self._stopping.is_set()
        if stopping:  # accepted while stop() ran: it may have missed this one
            _cut(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.pop(connection, None)

    def _enter(self) -> None:
        with self._lock:
            self.requests += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _record(self, record: ReceivedBatch, stored: list[dict[str, Any]]) -> None:
        with self._lock:
            if stored:
                self.received.update(str(event.get("uuid")) for event in stored)
                self._event_total += len(stored)
            if self.keep_events:
                self.history.append(record)
                if stored:
                    self.batches.append(record)

    def _note_error(self, error: BaseException) -> None:
        with self._lock:
            self.handler_errors.append(error)


def _cut(connection: socket.socket) -> None:
    """Wake whatever thread reads or writes ``connection``: its calls fail at once."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], fake: FakePostHog) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # a client that reset or vanished: not our fault
            return
        if error is not None:
            self.fake._note_error(error)
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        fake = self.server.fake
        fake._enter()
        try:
            self._post(fake)
        except (_Gone, OSError):
            self.close_connection = True
        finally:
            fake._leave()

    def _post(self, fake: FakePostHog) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._pause(fake.delay)
        try:
            body = self._read_body(fake.body_timeout)
        except _Refusal as refusal:  # unreadable framing: answered before any script
            self.close_connection = True
            record = self._received(headers, 0, _Verdict(), refusal.status, refusal.reason, [])
            fake._record(record, [])
            self._answer(refusal.status, _json({"detail": refusal.reason}))
            return
        action = fake._next_action()
        self._pause(action.delay)
        verdict = _judge(self.path, headers.get("content-encoding", ""), body, fake.api_keys)
        if action.stores:
            stored = verdict.events if verdict.status == 200 else []
            if verdict.status == 200:
                reply = _json({"status": fake.ack})
            else:
                reply = _json({"detail": verdict.reason})
            record = self._received(
                headers, len(body), verdict, verdict.status, verdict.reason, stored
            )
            fake._record(record, stored)
            self._answer(
                verdict.status, reply, drip=action.interval if action.kind == "drip" else 0
            )
            return
        status = None if action.kind in ("close", "hang") else action.status
        fake._record(self._received(headers, len(body), verdict, status, None, []), [])
        self._hostile(action, fake)

    def _pause(self, seconds: float) -> None:
        if seconds > 0 and self.server.fake._stopping.wait(seconds):
            raise _Gone

    def _read_body(self, timeout: float) -> bytes:
        """The request body, or a refusal when its framing is unusable."""
        if self.headers.get("Transfer-Encoding"):
            raise _Refusal(411, "send the body with a Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise _Refusal(411, "Content-Length required")
        value = lengths[0].strip()
        if len(set(lengths)) > 1 or not (value.isascii() and value.isdigit()):
            raise _Refusal(400, "invalid Content-Length")
        length = int(value)
        self.connection.settimeout(timeout)
        try:
            if length > MAX_BODY_BYTES:
                self._drain(length)
                raise _Refusal(413, f"the body exceeds {MAX_BODY_BYTES} bytes")
            body = self.rfile.read(length)
        except TimeoutError:
            raise _Refusal(408, "the client stopped sending the body") from None
        finally:
            self.connection.settimeout(None)
        if len(body) < length:
            raise _Gone
        return body

    def _drain(self, length: int) -> None:
        """Read an oversized body so that the client is able to read the 413."""
        if length > _DRAIN_LIMIT:
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1024 * 1024))
            if not chunk:
                raise _Gone
            length -= len(chunk)

    def _received(
        self,
        headers: dict[str, str],
        body_size: int,
        verdict: _Verdict,
        status: Optional[int],
        reason: Optional[str],
        stored: list[dict[str, Any]],
    ) -> ReceivedBatch:
        data = verdict.data if isinstance(verdict.data, dict) else {}
        api_key, sent_at = data.get("api_key", data.get("token")), data.get("sent_at")
        return ReceivedBatch(
            api_key=api_key if isinstance(api_key, str) else None,
            gzip=verdict.gzip,
            historical=data.get("historical_migration") is True,
            events=stored if self.server.fake.keep_events else [],
            path=self.path,
            status=status,
            reason=reason,
            body_size=body_size,
            headers=headers,
            sent_at=sent_at if isinstance(sent_at, str) else None,
        )

    def _hostile(self, action: Action, fake: FakePostHog) -> None:
        kind = action.kind
        if kind == "hang":
            fake._stopping.wait()
            raise _Gone
        if kind == "close":
            raise _Gone
        if kind == "redirect":
            self._answer(action.status, b"", {"Location": str(action.location)}, content_type=None)
        elif kind == "html":
            self._answer(200, _CAPTIVE_PORTAL, content_type="text/html; charset=utf-8")
        elif kind == "empty":
            self._answer(200, b"")
        elif kind == "body":
            self._answer(200, action.body)
        elif kind == "huge":
            self._stream_zeros(action.size, fake)
        else:
            extra = {} if action.retry_after is None else {"Retry-After": f"{action.retry_after:g}"}
            self._answer(action.status, _json({"detail": f"scripted {action.status}"}), extra)

    def _answer(
        self,
        status: int,
        body: bytes,
        extra: Optional[dict[str, str]] = None,
        *,
        content_type: Optional[str] = "application/json",
        drip: float = 0.0,
    ) -> None:
        head = self._head(status, len(body), extra, content_type)
        if not drip:
            self.wfile.write(head + body)
            return
        answer = head + body
        for index in range(len(answer)):
            if index:
                self._pause(drip)
            self.wfile.write(answer[index : index + 1])

    def _stream_zeros(self, size: int, fake: FakePostHog) -> None:
        self.close_connection = True
        self.wfile.write(self._head(200, size, None, "application/json"))
        left = size
        while left > 0 and not fake._stopping.is_set():
            chunk = _ZEROS if left >= len(_ZEROS) else _ZEROS[:left]
            self.wfile.write(chunk)
            left -= len(chunk)

    def _head(
        self, status: int, length: int, extra: Optional[dict[str, str]], content_type: Optional[str]
    ) -> bytes:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Scripted"
        lines = [f"HTTP/1.1 {status} {phrase}", f"Content-Length: {length}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.extend(f"{name}: {value}" for name, value in (extra or {}).items())
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()
