"""The shipped PostHog double: it refuses what PostHog refuses, answers as hostile
as scripted, serves connections concurrently and stops promptly whatever the
clients do. The real ``posthog`` client talks to it where it can; raw sockets
and ``http.client`` send what no well-behaved client would."""

from __future__ import annotations

import gzip
import http.client
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import uuid
import zlib
from collections.abc import Iterator
from typing import Any, Optional
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from posthog.request import APIError, batch_post

from luxonis_telemetry.testing import Action, FakePostHog, ReceivedBatch
from luxonis_telemetry.testing._fake_posthog import (
    _DECODER,
    MAX_BODY_BYTES,
    MAX_DECOMPRESSED_BYTES,
    MAX_EVENT_BYTES,
    parse_batch_request,
)
from tests.conftest import wait_until

KEY = "phc_test_key"


@pytest.fixture
def fake() -> Iterator[FakePostHog]:
    with FakePostHog() as server:
        yield server
    assert server.handler_errors == []


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


def event(**fields: Any) -> dict[str, Any]:
    record = {
        "type": "capture",
        "event": "train.start",
        "distinct_id": "install-1",
        "properties": {"epochs": 20},
        "timestamp": "2026-11-28T14:00:00.123456+00:00",
        "uuid": str(uuid.uuid4()),
    }
    record.update(fields)
    return record


def without(name: str) -> dict[str, Any]:
    record = event()
    del record[name]
    return record


def send(
    server: FakePostHog,
    session: requests.Session,
    batch: list[dict[str, Any]],
    *,
    key: str = KEY,
    gzip: bool = True,
    **extra: Any,
) -> int:
    """The status the real client saw: 200, or the APIError's status."""
    try:
        batch_post(
            key, host=server.url, gzip=gzip, batch=batch, timeout=10, session=session, **extra
        )
    except APIError as error:
        return int(error.status)
    return 200


def address(server: FakePostHog) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def post_raw(
    server: FakePostHog,
    body: bytes,
    headers: Optional[dict[str, str]] = None,
    path: str = "/batch/",
) -> tuple[int, http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection(*address(server), timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response, response.read()
    finally:
        connection.close()


def raw_body(batch: Any, key: Any = KEY, **fields: Any) -> bytes:
    return json.dumps({"api_key": key, "batch": batch, **fields}).encode()


def request_bytes(body: bytes, *, head: str = "") -> bytes:
    head = head or f"Content-Length: {len(body)}\r\n"
    return f"POST /batch/ HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body


def connect(server: FakePostHog) -> socket.socket:
    return socket.create_connection(address(server), timeout=30)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes, int]:
    """Status, headers, body of one answer, and how many reads it took."""
    data, reads = b"", 0
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data, reads = data + chunk, reads + 1
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["Content-Length"]):
        chunk = sock.recv(65536)
        assert chunk
        body, reads = body + chunk, reads + 1
    return int(lines[0].split()[1]), headers, body, reads


def read_to_end(sock: socket.socket) -> None:
    """Read until the server closes (or resets) the connection."""
    try:
        while sock.recv(1024 * 1024):
            pass
    except ConnectionResetError:
        pass


# -- accepted batches and what is recorded of them ------------------------------------------


def test_real_client_batch_is_stored_and_acknowledged(
    fake: FakePostHog, session: requests.Session
) -> None:
    batch = [event(), event(event="$identify", properties={"$set": {"plan": "pro"}})]
    response = batch_post(KEY, host=fake.url, gzip=True, batch=batch, timeout=10, session=session)
    assert response.json() == {"status": 1}
    assert fake.events == batch
    assert fake.uuid_counts() == {e["uuid"]: 1 for e in batch}
    assert fake.event_count == 2 and fake.requests == 1
    (record,) = fake.batches
    assert fake.history == [record]
    assert record.status == 200 and record.reason is None
    assert (record.api_key, record.gzip, record.historical) == (KEY, True, False)
    assert record.path == "/batch/"
    assert record.user_agent is not None and record.user_agent.startswith("posthog-python/")
    assert record.content_encoding == "gzip"
    assert record.body_size == int(record.headers["content-length"])
    assert record.sent_at is not None and record.sent_at.startswith("20")


def test_uncompressed_historical_batch(fake: FakePostHog, session: requests.Session) -> None:
    assert send(fake, session, [event()], gzip=False, historical_migration=True) == 200
    (record,) = fake.batches
    assert (record.gzip, record.historical, record.content_encoding) == (False, True, None)


def test_gzip_body_without_the_header_is_recognised(fake: FakePostHog) -> None:
    status, _, _ = post_raw(fake, gzip.compress(raw_body([event()])))
    assert status == 200
    assert fake.batches[0].gzip and fake.event_count == 1


@pytest.mark.parametrize(("ack", "expected"), [(1, {"status": 1}), ("Ok", {"status": "Ok"})])
def test_acknowledgement(ack: Any, expected: dict[str, Any]) -> None:
    with FakePostHog(ack=ack) as server:
        status, response, body = post_raw(server, raw_body([event()]))
    assert status == 200 and json.loads(body) == expected
    assert response.getheader("Content-Type") == "application/json"


def test_received_batch_keeps_its_positional_fields() -> None:
    record = ReceivedBatch("key", True, False, [{"event": "e"}])
    assert (record.api_key, record.gzip, record.historical, record.events) == (
        "key",
        True,
        False,
        [{"event": "e"}],
    )
    assert record.headers == {} and record.user_agent is None


# -- events PostHog refuses ---------------------------------------------------------------

GOOD = "b4860884-849a-4914-addc-ed6c8104ed89"  # fixed: xdist workers must collect the same ids


@pytest.mark.parametrize(
    "bad_uuid",
    [
        "not-a-uuid",
        "1234",
        42,
        [],
        GOOD + "0",
        GOOD[:-1],
        "g" * 32,
        " " + GOOD,
        "urn:uuid:" + "0" * 32,
    ],
)
def test_an_invalid_uuid_refuses_the_whole_request(
    fake: FakePostHog, session: requests.Session, bad_uuid: Any
) -> None:
    assert send(fake, session, [event(), event(uuid=bad_uuid)]) == 400
    assert fake.event_count == 0 and fake.batches == []
    (record,) = fake.history
    assert record.status == 400 and record.reason and "uuid" in record.reason


@pytest.mark.parametrize(
    "good_uuid",
    [GOOD.upper(), uuid.UUID(GOOD).hex, "{" + GOOD + "}", "urn:uuid:" + GOOD, "", None],
)
def test_uuid_forms_posthog_accepts(
    fake: FakePostHog, session: requests.Session, good_uuid: Optional[str]
) -> None:
    assert send(fake, session, [event(uuid=good_uuid), without("uuid")]) == 200
    assert fake.event_count == 2


@pytest.mark.parametrize(
    "bad",
    [
        without("distinct_id"),
        event(distinct_id=None),
        event(distinct_id=""),
        event(distinct_id="   "),
        event(distinct_id="\t\n"),
        event(distinct_id=None, properties={"distinct_id": ""}),
    ],
    ids=["missing", "null", "empty", "spaces", "whitespace", "empty-in-properties"],
)
def test_a_missing_or_blank_distinct_id_refuses_the_request(
    fake: FakePostHog, session: requests.Session, bad: dict[str, Any]
) -> None:
    assert send(fake, session, [event(), bad]) == 400
    assert fake.event_count == 0
    assert "distinct_id" in str(fake.history[0].reason)


@pytest.mark.parametrize(
    "good",
    [
        event(distinct_id=42),
        event(distinct_id=0),
        event(distinct_id=False),
        event(distinct_id=["a"]),
        event(distinct_id={"a": 1}),
        {**without("distinct_id"), "$distinct_id": "alias"},
        event(distinct_id=None, properties={"distinct_id": "from-properties"}),
    ],
    ids=["int", "zero", "false", "list", "object", "alias", "properties"],
)
def test_distinct_ids_posthog_stringifies_or_finds_elsewhere(
    fake: FakePostHog, session: requests.Session, good: dict[str, Any]
) -> None:
    assert send(fake, session, [good]) == 200


@pytest.mark.parametrize(
    "bad",
    [
        without("event"),
        event(event=None),
        event(event=42),
        event(event=""),
        event(properties=None),
        event(properties=[]),
        event(timestamp=5),
        event(offset="1"),
        event(offset=True),
        event(offset=1.5),
        event(**{"$set": []}),
        event(**{"$set_once": "x"}),
        "not an event",
        [event()],
    ],
)
def test_events_of_the_wrong_shape_refuse_the_request(
    fake: FakePostHog, session: requests.Session, bad: Any
) -> None:
    assert send(fake, session, [event(), bad]) == 400
    assert fake.event_count == 0


def test_optional_event_fields_of_the_right_shape(
    fake: FakePostHog, session: requests.Session
) -> None:
    batch = [
        event(offset=5, timestamp=None, **{"$set": {"a": 1}, "$set_once": None}),
        without("properties"),
    ]
    assert send(fake, session, batch) == 200


# -- requests PostHog refuses -----------------------------------------------------------------


def _truncated_gzip() -> bytes:
    data = gzip.compress(raw_body([event()]))
    return data[: len(data) // 2]


MALFORMED = {
    "not JSON": (b"{", {}),
    "not UTF-8": (b'{"api_key": "k", "batch": ["\xff"]}', {}),
    "UTF-8 BOM": (b"\xef\xbb\xbf" + raw_body([event()]), {}),
    "trailing data": (raw_body([event()]) + b" x", {}),
    "trailing comma": (b'{"api_key": "k", "batch": [],}', {}),
    "empty body": (b"", {}),
    "array": (json.dumps([event()]).encode(), {}),
    "string": (b'"batch"', {}),
    "batch missing": (json.dumps({"api_key": KEY}).encode(), {}),
    "batch not a list": (raw_body({"0": event()}), {}),
    "empty batch": (raw_body([]), {}),
    "api_key missing": (json.dumps({"batch": [event()]}).encode(), {}),
    "api_key null": (raw_body([event()], key=None), {}),
    "api_key a number": (raw_body([event()], key=123), {}),
    "api_key and token": (raw_body([event()], token=KEY), {}),
    "historical_migration not bool": (raw_body([event()], historical_migration="yes"), {}),
    "sent_at not a string": (raw_body([event()], sent_at=5), {}),
    "NaN": (raw_body([event(properties={"x": float("nan")})]), {}),
    "number out of range": (raw_body([event()]).replace(b'"epochs": 20', b'"epochs": 1e400'), {}),
    "gzip header, plain body": (raw_body([event()]), {"Content-Encoding": "gzip"}),
    "gzip magic, garbage": (b"\x1f\x8b\x08" + b"garbage" * 10, {}),
    "truncated gzip": (_truncated_gzip(), {}),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_are_400(fake: FakePostHog, case: str) -> None:
    body, headers = MALFORMED[case]
    status, _, answer = post_raw(fake, body, headers)
    assert status == 400, answer
    assert json.loads(answer)["detail"]
    assert fake.event_count == 0 and fake.batches == []
    assert post_raw(fake, raw_body([event()]))[0] == 200  # and it still works


def test_a_path_other_than_batch_is_404(fake: FakePostHog) -> None:
    assert post_raw(fake, raw_body([event()]), path="/e/")[0] == 404
    assert post_raw(fake, raw_body([event()]), path="/batch?ver=1")[0] == 200


@pytest.mark.parametrize("key", ["", "   ", "phx_personal_key", "k" * 65, "clé", "a\0b"])
def test_keys_posthog_refuses_are_401(
    fake: FakePostHog, session: requests.Session, key: str
) -> None:
    assert send(fake, session, [event()], key=key) == 401
    assert fake.event_count == 0


def test_only_known_keys_when_told_which(session: requests.Session) -> None:
    with FakePostHog(api_keys={"phc_good"}) as server:
        assert send(server, session, [event()], key="phc_bad") == 401
        assert send(server, session, [event()], key="phc_good") == 200
        assert send(server, session, [event()], key=" phc_good\n") == 200  # PostHog trims
        assert server.event_count == 2
        assert server.history[0].reason == "api_key does not belong to a project"


def test_refusals_come_in_posthogs_order(session: requests.Session) -> None:
    with FakePostHog(api_keys={"phc_good"}) as server:
        # the body is deserialized before the key is checked ...
        assert send(server, session, [event(uuid="bad")], key="phc_bad") == 400
        assert send(server, session, [], key="phc_bad") == 400
        # ... and the key is checked before each event is processed
        assert send(server, session, [event(event="")], key="phc_bad") == 401
        assert send(server, session, [event(event="")], key="phc_good") == 400


# -- sizes --------------------------------------------------------------------------------


def test_body_limit_is_20_mib_as_sent(fake: FakePostHog) -> None:
    document = raw_body([event()])
    at_limit = document + b" " * (MAX_BODY_BYTES - len(document))
    assert post_raw(fake, at_limit)[0] == 200
    status, response, _ = post_raw(fake, at_limit + b" ")
    assert status == 413
    assert response.getheader("Connection") == "close"
    assert fake.event_count == 1


def test_the_real_client_sees_413_for_a_batch_over_20_mib(
    fake: FakePostHog, session: requests.Session
) -> None:
    blob = "x" * 900_000  # each event is fine, together they are too much
    batch = [event(properties={"blob": blob}) for _ in range(24)]
    assert send(fake, session, batch, gzip=False) == 413
    assert fake.event_count == 0


def test_gzip_that_unpacks_past_100_mib_is_413(fake: FakePostHog) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    document = raw_body([event()])
    parts = [packer.compress(document)]
    spaces = b" " * (1024 * 1024)
    for _ in range(MAX_DECOMPRESSED_BYTES // len(spaces) - 1):
        parts.append(packer.compress(spaces))
    parts.append(packer.compress(b" " * (len(spaces) - len(document) + 1)))
    parts.append(packer.flush())
    bomb = b"".join(parts)
    assert len(bomb) < MAX_BODY_BYTES
    status, _, answer = post_raw(fake, bomb, {"Content-Encoding": "gzip"})
    assert status == 413, answer
    assert fake.event_count == 0


@pytest.mark.parametrize(
    ("properties", "status"),
    [
        ({"blob": "x" * MAX_EVENT_BYTES}, 413),
        ({"blob": '"' * 600_000}, 413),  # escaped twice on its way into Kafka
        ({"blob": "x" * (MAX_EVENT_BYTES - 5_000)}, 200),
        ({"blob": "é" * 300_000}, 200),
    ],
    ids=["over", "quotes", "just-under", "non-ascii"],
)
def test_event_size_limit(
    fake: FakePostHog, session: requests.Session, properties: dict[str, str], status: int
) -> None:
    assert send(fake, session, [event(), event(properties=properties)]) == status
    assert fake.event_count == (2 if status == 200 else 0)


def test_an_announced_body_beyond_reason_is_413_without_reading_it(fake: FakePostHog) -> None:
    with connect(fake) as sock:
        sock.sendall(request_bytes(b"", head=f"Content-Length: {2**40}\r\n"))
        status, headers, _, _ = read_answer(sock)
        assert (status, headers["Connection"]) == (413, "close")
        read_to_end(sock)


# -- framing a server cannot use -------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "status"),
    [
        ("", 411),
        ("Transfer-Encoding: chunked\r\n", 411),
        ("Content-Length: abc\r\n", 400),
        ("Content-Length: -1\r\n", 400),
        ("Content-Length: 5\r\nContent-Length: 6\r\n", 400),
    ],
    ids=["no-length", "chunked", "not-a-number", "negative", "two-lengths"],
)
def test_unusable_framing_is_refused_and_the_connection_closed(
    fake: FakePostHog, head: str, status: int
) -> None:
    with connect(fake) as sock:
        sock.sendall(
            f"POST /batch/ HTTP/1.1\r\nHost: x\r\n{head or 'X-No: length'}\r\n\r\n".encode()
        )
        answered, headers, body, _ = read_answer(sock)
        assert answered == status and json.loads(body)["detail"]
        assert headers["Connection"] == "close"
        read_to_end(sock)
    assert fake.history[0].status == status
    assert post_raw(fake, raw_body([event()]))[0] == 200


def test_a_client_that_leaves_mid_body(fake: FakePostHog) -> None:
    with connect(fake) as sock:
        sock.sendall(request_bytes(b"0123456789", head="Content-Length: 100\r\n"))
    assert wait_until(lambda: fake.requests == 1 and fake.in_flight == 0, 10)
    assert fake.history == [] and fake.event_count == 0
    assert post_raw(fake, raw_body([event()]))[0] == 200


def test_a_client_that_stalls_mid_body_gets_408() -> None:
    with FakePostHog(body_timeout=0.3) as server, connect(server) as sock:
        sock.sendall(request_bytes(b"0123456789", head="Content-Length: 100\r\n"))
        status, headers, _, _ = read_answer(sock)
        assert (status, headers["Connection"]) == (408, "close")
        assert server.handler_errors == []


# -- scripted answers ------------------------------------------------------------------------


def test_status_with_retry_after(fake: FakePostHog, session: requests.Session) -> None:
    fake.script(Action("status", 429, retry_after=2.5))
    with pytest.raises(APIError) as refused:
        batch_post(KEY, host=fake.url, gzip=True, batch=[event()], timeout=10, session=session)
    assert (refused.value.status, refused.value.retry_after) == (429, 2.5)
    assert fake.event_count == 0 and fake.history[0].status == 429
    assert fake.history[0].api_key == KEY  # recorded though not stored
    assert send(fake, session, [event()]) == 200  # the script is used up


def test_close_drops_the_connection_unanswered(
    fake: FakePostHog, session: requests.Session
) -> None:
    fake.script(Action("close"))
    with pytest.raises(requests.ConnectionError):
        send(fake, session, [event()])
    assert fake.event_count == 0 and fake.history[0].status is None


def test_hang_never_answers(fake: FakePostHog, session: requests.Session) -> None:
    fake.set_default(Action("hang"))
    with pytest.raises(requests.Timeout):
        batch_post(KEY, host=fake.url, gzip=True, batch=[event()], timeout=0.3, session=session)
    assert fake.event_count == 0 and fake.in_flight == 1


@pytest.mark.parametrize("action", [Action(delay=0.1), Action("delay", delay=0.1)])
def test_delay_then_store(fake: FakePostHog, session: requests.Session, action: Action) -> None:
    fake.script(action)
    assert send(fake, session, [event()]) == 200
    assert fake.event_count == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects(fake: FakePostHog, status: int) -> None:
    fake.script(Action("redirect", status, location="http://198.51.100.7/batch/"))
    answered, response, body = post_raw(fake, raw_body([event()]))
    assert (answered, response.getheader("Location"), body) == (
        status,
        "http://198.51.100.7/batch/",
        b"",
    )
    assert fake.event_count == 0 and fake.history[0].status == status


def test_a_307_takes_the_real_client_and_its_key_elsewhere(session: requests.Session) -> None:
    """Why an uploader must not follow redirects: the body, key included, goes along."""
    with FakePostHog() as first, FakePostHog() as elsewhere:
        first.script(Action("redirect", 307, location=elsewhere.url + "/batch/"))
        assert send(first, session, [event()]) == 200
        assert first.event_count == 0
        assert elsewhere.batches[0].api_key == KEY


def test_action_validation() -> None:
    assert Action("redirect", location="/x").status == 302
    with pytest.raises(ValueError, match="redirect answers"):
        Action("redirect", 404, location="/x")
    with pytest.raises(ValueError, match="location"):
        Action("redirect", 307)
    with pytest.raises(ValueError, match="unknown action"):
        Action("explode")


@pytest.mark.parametrize(
    ("action", "content_type", "body"),
    [
        (Action("html"), "text/html; charset=utf-8", None),
        (Action("empty"), "application/json", b""),
        (Action("body", body=b'{"status": 0}'), "application/json", b'{"status": 0}'),
        (Action("body", body=b"\x00garbage"), "application/json", b"\x00garbage"),
    ],
    ids=["html", "empty", "status-0", "garbage"],
)
def test_200_answers_that_are_no_acknowledgement_store_nothing(
    fake: FakePostHog, action: Action, content_type: str, body: Optional[bytes]
) -> None:
    fake.script(action)
    status, response, answer = post_raw(fake, raw_body([event()]))
    assert (status, response.getheader("Content-Type")) == (200, content_type)
    if body is None:
        assert answer.startswith(b"<!doctype html>")
    else:
        assert answer == body
    assert fake.event_count == 0 and fake.batches == []
    assert fake.history[0].status == 200 and fake.history[0].events == []


def test_huge_streams_zeros_until_the_client_leaves(fake: FakePostHog) -> None:
    fake.script(Action("huge"), Action("huge", size=1000))
    connection = http.client.HTTPConnection(*address(fake), timeout=30)
    connection.request("POST", "/batch/", body=raw_body([event()]))
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Length") == str(300 * 1024 * 1024)
    assert response.read(1024 * 1024) == bytes(1024 * 1024)
    response.close()  # the answer said Connection: close, so the socket is the response's
    connection.close()
    assert wait_until(lambda: fake.in_flight == 0, 30)
    status, response, answer = post_raw(fake, raw_body([event()]))
    assert (status, answer) == (200, bytes(1000))
    assert fake.event_count == 0


def test_drip_sends_the_answer_a_byte_at_a_time_and_stores(fake: FakePostHog) -> None:
    fake.script(Action("drip", interval=0.02))
    batch = [event()]
    with connect(fake) as sock:
        sock.sendall(request_bytes(raw_body(batch)))
        status, _, body, reads = read_answer(sock)
    assert (status, json.loads(body)) == (200, {"status": 1})
    assert reads > 10  # it came in many small pieces
    assert fake.events == batch


# -- a far-away server, memory, keep-alive -------------------------------------------------------


def test_delay_serves_connections_concurrently() -> None:
    with FakePostHog(delay=2.0) as server:
        start = threading.Barrier(4)
        statuses: queue.Queue[int] = queue.Queue()

        def client() -> None:
            start.wait(timeout=30)
            statuses.put(post_raw(server, raw_body([event()]))[0])

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert [statuses.get_nowait() for _ in range(4)] == [200] * 4
        assert server.max_in_flight == 4
        assert server.event_count == 4


def test_keep_alive_serves_several_requests_on_one_connection(fake: FakePostHog) -> None:
    connection = http.client.HTTPConnection(*address(fake), timeout=30)
    try:
        statuses = []
        sockets = []
        for _ in range(3):
            connection.request("POST", "/batch/", body=raw_body([event()]))
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            sockets.append(connection.sock)
    finally:
        connection.close()
    assert statuses == [200] * 3
    assert sockets[0] is sockets[1] is sockets[2]


def test_keep_events_false_keeps_only_the_counts(session: requests.Session) -> None:
    with FakePostHog(keep_events=False) as server:
        for _ in range(3):
            assert send(server, session, [event() for _ in range(100)]) == 200
        assert server.event_count == 300 and len(server.uuid_counts()) == 300
        assert server.batches == [] and server.history == [] and server.events == []


# -- stopping -----------------------------------------------------------------------------------


def test_stop_returns_promptly_whatever_the_clients_do() -> None:
    server = FakePostHog().start()
    server.script(Action("hang"), Action("drip", interval=1.0), Action("huge"))
    clients = []
    for busy in (1, 2, 3):  # one at a time, so each gets its scripted action
        sock = connect(server)
        sock.sendall(request_bytes(raw_body([event()])))
        clients.append(sock)
        assert wait_until(lambda busy=busy: server.in_flight == busy, 10)
    idle = http.client.HTTPConnection(*address(server), timeout=30)
    idle.request("POST", "/batch/", body=raw_body([event()]))
    assert idle.getresponse().read() == b'{"status": 1}'  # kept alive, now idle
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(timeout=15)
    assert not stopper.is_alive()
    for sock in clients:
        with sock:
            read_to_end(sock)  # each is closed, none hangs
    idle.close()
    assert server.in_flight == 0 and server.handler_errors == []


def test_stop_without_start() -> None:
    stopper = threading.Thread(target=FakePostHog().stop)
    stopper.start()
    stopper.join(timeout=15)
    assert not stopper.is_alive()


# -- python -m luxonis_telemetry.testing ------------------------------------------------------


def test_module_prints_what_it_receives(session: requests.Session) -> None:
    lines: queue.Queue[str] = queue.Queue()

    def pump(stream: Any) -> None:
        for line in stream:
            lines.put(line)

    with subprocess.Popen(
        [sys.executable, "-m", "luxonis_telemetry.testing"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        pumps = [
            threading.Thread(target=pump, args=(stream,), daemon=True)
            for stream in (process.stdout, process.stderr)
        ]
        for thread in pumps:
            thread.start()
        try:
            first = lines.get(timeout=30)
            assert first.startswith("PostHog-compatible receiver on http://127.0.0.1:")
            url = first.split(" on ")[1].strip()
            sent = event()
            batch_post(KEY, host=url, gzip=True, batch=[sent], timeout=10, session=session)
            assert json.loads(lines.get(timeout=30)) == sent
            with pytest.raises(APIError):
                batch_post(KEY, host=url, batch=[event(uuid="bad")], timeout=10, session=session)
            assert "-> 400: event 0 has an invalid uuid" in lines.get(timeout=30)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
        finally:
            process.kill()
            for thread in pumps:
                thread.join(timeout=30)


def test_module_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "luxonis_telemetry.testing", "eighty"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "usage:" in result.stderr


# -- the parser that sizes events without serializing them again ------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(JSON_VALUES, max_size=5),
    rest=st.dictionaries(st.text(), JSON_VALUES, max_size=3),
    layout=st.sampled_from(
        [{}, {"separators": (",", ":")}, {"indent": 2}, {"ensure_ascii": False}]
    ),
)
def test_parser_reads_what_json_reads(
    items: list[Any], rest: dict[str, Any], layout: dict[str, Any]
) -> None:
    for document in ({**rest, "batch": items}, items, rest):
        text = json.dumps(document, **layout)
        assert parse_batch_request(text)[0] == json.loads(text)
    compact = json.dumps({**rest, "batch": items}, separators=(",", ":"))
    assert parse_batch_request(compact)[1] == [
        len(json.dumps(item, separators=(",", ":"))) for item in items
    ]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='{}[]":, \n\t0123456789.eE+-truefalsnbch\\u', max_size=40))
def test_parser_refuses_what_json_refuses(text: str) -> None:
    try:
        expected = _DECODER.decode(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse_batch_request(text)
    else:
        assert parse_batch_request(text)[0] == expected
