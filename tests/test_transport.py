"""BoundedAdapter against real misbehaving servers on 127.0.0.1.

Every server here is a few lines of plain sockets so that each test can make
the server do exactly the wrong thing it is about: redirect, drip, hang,
flood, drop a kept-alive connection, proxy, or speak TLS with its own CA.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Optional, Union

import pytest
import requests
from posthog.request import APIError, batch_post

from luxonis_telemetry.backends import _transport
from luxonis_telemetry.backends._transport import (
    BoundedAdapter,
    DeadlineExceeded,
    RedirectRefused,
    ResponseTooLarge,
)
from tests.conftest import Pki, wait_until

pytestmark = pytest.mark.timeout(60)

_SESSIONS: list[requests.Session] = []


def new_session(**options: int) -> requests.Session:
    """The library's session, closed after the test (warnings are errors: no socket leaks)."""
    session = _transport.new_session(**options)
    _SESSIONS.append(session)
    return session


@pytest.fixture(autouse=True)
def close_sessions() -> Iterator[None]:
    yield
    while _SESSIONS:
        _SESSIONS.pop().close()


ACK = b'{"status": 1}'
KEY = "phc_transport_test"
MIB = 1 << 20


# ---------------------------------------------------------------- servers


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def json_body(self) -> object:
        data = self.body
        if self.headers.get("content-encoding") == "gzip":
            data = gzip.decompress(data)
        return json.loads(data)


def read_request(reader: BinaryIO) -> Optional[Request]:
    """One HTTP/1.1 request from a buffered socket reader; None at end of stream."""
    readline = reader.readline
    line = readline(65537)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        header = readline(65537)
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))
    return Request(method, target, headers, body)


def answer(sock: socket.socket, status: int = 200, body: bytes = ACK, **headers: str) -> None:
    head = [
        f"HTTP/1.1 {status} X",
        f"Content-Length: {len(body)}",
        "Content-Type: application/json",
    ]
    head += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)


Handler = Callable[[socket.socket, BinaryIO, "Server"], None]


@dataclass
class Server:
    """Accepts on a fresh loopback port and runs ``handler(sock, reader, server)`` per connection."""

    handler: Handler
    tls: Optional[ssl.SSLContext] = None
    rcvbuf: Optional[int] = None
    connections: int = 0
    closed: int = 0
    requests: list[Request] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    socks: list[socket.socket] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.socket()
        if self.rcvbuf:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._spawn(self._accept_loop)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self.lock:
            self.threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.socks.append(sock)
            self._spawn(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(20)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
                with self.lock:
                    self.socks.append(sock)
            with sock.makefile("rb") as reader:
                self.handler(sock, reader, self)
        except (OSError, ValueError):
            pass
        finally:
            sock.close()
            with self.lock:
                self.closed += 1

    def next_request(self, reader: BinaryIO) -> Optional[Request]:
        request = read_request(reader)
        if request is not None:
            with self.lock:
                self.requests.append(request)
        return request

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        with self.lock:
            socks, threads = list(self.socks), list(self.threads)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(handler: Handler, **options: object) -> Server:
        server = Server(handler, **options)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def no_ambient_proxy_or_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's proxy and CA settings must not leak into these loopback tests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def answering(status: int = 200, body: bytes = ACK, **headers: str) -> Handler:
    """A handler giving every request on the connection the same answer."""

    def handler(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
        while server.next_request(reader) is not None:
            answer(sock, status, body, **headers)

    return handler


ack_all = answering()  # a PostHog-like server


def read_and_hang_up(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
    server.next_request(reader)


def echo_all(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
    while (request := server.next_request(reader)) is not None:
        answer(sock, body=json.dumps({"status": 1, "echo": request.body.decode()}).encode())


def hang(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
    server.next_request(reader)
    server.stop.wait(30)


def never_read(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
    server.stop.wait(30)


def drip(sock: socket.socket, head: bytes) -> None:
    sock.sendall(head)
    for _ in range(150):
        time.sleep(0.2)
        sock.sendall(b"a")


def stream_forever(sock: socket.socket, head: bytes, piece: bytes, limit: int = 400 * MIB) -> None:
    sock.sendall(head)
    sent = 0
    while sent < limit:
        sock.sendall(piece)
        sent += len(piece)


# ---------------------------------------------------------------- basics


def test_post_returns_a_complete_response(serve: Callable[..., Server]) -> None:
    server = serve(ack_all)
    session = new_session()

    response = session.post(server.url + "/batch/?x=1", data=b'{"a": 1}', timeout=5)

    assert response.status_code == 200
    assert response.json() == {"status": 1}
    assert response.text == ACK.decode()
    assert response.headers["content-type"] == "application/json"
    assert response.url == server.url + "/batch/?x=1"
    assert response.request.body == b'{"a": 1}'
    assert response.reason == "X"
    assert response.elapsed.total_seconds() > 0
    [request] = server.requests
    assert (request.method, request.target, request.body) == ("POST", "/batch/?x=1", b'{"a": 1}')
    assert request.headers["host"] == f"127.0.0.1:{server.port}"
    assert request.headers["accept-encoding"] == "identity"


@pytest.mark.parametrize("compress", [True, False])
def test_posthog_batch_post_uses_the_session(serve: Callable[..., Server], compress: bool) -> None:
    server = serve(ack_all)
    batch = [{"event": "e", "distinct_id": "d", "properties": {}, "uuid": "u1"}]

    response = batch_post(
        KEY,
        host=server.url,
        gzip=compress,
        timeout=5,
        batch=batch,
        historical_migration=True,
        session=new_session(),
    )

    assert response.status_code == 200
    assert response.json() == {"status": 1}
    [request] = server.requests
    assert request.target == "/batch/"
    sent = request.json_body()
    assert isinstance(sent, dict)
    assert (sent["api_key"], sent["batch"], sent["historical_migration"]) == (KEY, batch, True)


def test_posthog_sees_error_answers(serve: Callable[..., Server]) -> None:
    server = serve(answering(503, b'{"detail": "busy"}'))

    with pytest.raises(APIError) as raised:
        batch_post(KEY, host=server.url, timeout=5, batch=[], session=new_session())

    assert raised.value.status == 503
    assert "busy" in str(raised.value)


# ---------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("via_posthog", [False, True])
def test_redirects_are_refused(
    serve: Callable[..., Server], status: int, via_posthog: bool
) -> None:
    elsewhere = serve(ack_all)
    location = f"http://user:hunter2@127.0.0.1:{elsewhere.port}/batch/"

    server = serve(answering(status, b"moved", Location=location))
    session = new_session()

    def post() -> object:
        if via_posthog:
            return batch_post(
                KEY, host=server.url, gzip=True, timeout=5, batch=[{"event": "e"}], session=session
            )
        return session.post(server.url + "/batch/", data=b"secret body", timeout=5)

    with pytest.raises(RedirectRefused) as raised:
        post()

    message = str(raised.value)
    assert str(status) in message
    assert f"127.0.0.1:{elsewhere.port}/batch/" in message
    assert "hunter2" not in message
    assert elsewhere.connections == 0
    assert elsewhere.requests == []
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "location",
    [
        "//u:hunter2@h/x",
        "http:\\\\u:hunter2@h\\x",
        "http://u:hunter2@[zz]/",
        "HTTPS://u:p@hunter2@h/",
    ],
)
def test_redirect_messages_hide_credentials(serve: Callable[..., Server], location: str) -> None:
    server = serve(answering(302, b"", Location=location))

    with pytest.raises(RedirectRefused) as raised:
        new_session().post(server.url, timeout=5)

    assert "hunter2" not in str(raised.value)
    assert "***@" in str(raised.value)


def test_redirect_messages_stay_short(serve: Callable[..., Server]) -> None:
    location = "http://h/" + "x" * 20000
    server = serve(answering(308, b"", Location=location))

    with pytest.raises(RedirectRefused) as raised:
        new_session().post(server.url, timeout=5)

    assert len(str(raised.value)) < 400


def test_3xx_without_location_is_an_ordinary_answer(serve: Callable[..., Server]) -> None:
    server = serve(answering(304, b""))

    assert new_session().post(server.url, timeout=5).status_code == 304


# ---------------------------------------------------------------- deadlines


def _elapsed_raising(exc: type[BaseException], call: Callable[[], object]) -> float:
    started = time.monotonic()
    with pytest.raises(exc):
        call()
    return time.monotonic() - started


def test_dripped_headers_hit_the_deadline(serve: Callable[..., Server]) -> None:
    def drip_headers(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
        server.next_request(reader)
        drip(sock, b"HTTP/1.1 200 OK\r\nX-Drip: ")

    server = serve(drip_headers)
    session = new_session()

    elapsed = _elapsed_raising(
        DeadlineExceeded, lambda: session.post(server.url, data=b"x", timeout=1.5)
    )

    assert elapsed < 5


def test_dripped_body_hits_the_deadline(serve: Callable[..., Server]) -> None:
    def drip_body(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
        server.next_request(reader)
        drip(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")

    server = serve(drip_body)

    elapsed = _elapsed_raising(
        DeadlineExceeded,
        lambda: batch_post(KEY, host=server.url, timeout=1.5, batch=[], session=new_session()),
    )

    assert elapsed < 5


@pytest.mark.parametrize("timeout", [1.0, (0.5, 0.5)], ids=["total", "connect+read"])
def test_a_silent_server_hits_the_deadline(
    serve: Callable[..., Server],
    timeout: Union[float, tuple[Optional[float], Optional[float]], None],
) -> None:
    server = serve(hang)

    elapsed = _elapsed_raising(
        requests.Timeout, lambda: new_session().post(server.url, data=b"x", timeout=timeout)
    )

    assert 0.9 <= elapsed < 5


def test_a_stalled_tls_handshake_hits_the_deadline(serve: Callable[..., Server]) -> None:
    server = serve(never_read)
    url = f"https://127.0.0.1:{server.port}/batch/"

    elapsed = _elapsed_raising(DeadlineExceeded, lambda: new_session().post(url, timeout=1.0))

    assert 0.9 <= elapsed < 5


def test_a_server_that_stops_reading_the_body_hits_the_deadline(
    serve: Callable[..., Server],
) -> None:
    server = serve(never_read, rcvbuf=64 * 1024)
    body = bytes(16 * MIB)  # more than both kernel buffers hold

    elapsed = _elapsed_raising(
        DeadlineExceeded, lambda: new_session().post(server.url, data=body, timeout=1.0)
    )

    assert 0.9 <= elapsed < 5


# ---------------------------------------------------------------- bounded answers


def _peak_rss_mib() -> float:
    resource = pytest.importorskip("resource")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak / MIB if sys.platform == "darwin" else peak / 1024)


HUGE_ANSWERS = {
    "content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (300 * MIB),
        bytes(64 * 1024),
    ),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"10000\r\n" + bytes(0x10000) + b"\r\n",
    ),
    "until-close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", bytes(64 * 1024)),
}


@pytest.mark.parametrize("framing", sorted(HUGE_ANSWERS))
def test_huge_answers_are_refused_without_reading_them(
    serve: Callable[..., Server], framing: str
) -> None:
    head, piece = HUGE_ANSWERS[framing]

    def flood(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
        server.next_request(reader)
        stream_forever(sock, head, piece)

    server = serve(flood)
    before = _peak_rss_mib()

    with pytest.raises(ResponseTooLarge):
        batch_post(KEY, host=server.url, timeout=10, batch=[], session=new_session())

    assert _peak_rss_mib() - before < 50
    assert wait_until(lambda: server.closed == 1, 10), "the client must hang up on the flood"


def _framed(framing: str, body: bytes) -> bytes:
    if framing == "content-length":
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    if framing == "chunked":
        chunks = [body[:3], body[3:]]
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks if chunk)
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + encoded + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body


@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
def test_max_body_is_inclusive(serve: Callable[..., Server], framing: str) -> None:
    def exact(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
        request = server.next_request(reader)
        assert request is not None
        sock.sendall(_framed(framing, b"y" * int(request.body)))
        if framing == "until-close":
            sock.shutdown(socket.SHUT_WR)

    server = serve(exact)
    session = new_session(max_body=100)

    assert session.post(server.url, data=b"100", timeout=5).content == b"y" * 100
    with pytest.raises(ResponseTooLarge):
        session.post(server.url, data=b"101", timeout=5)


def test_a_chunked_answer_keeps_the_connection(serve: Callable[..., Server]) -> None:
    def chunked(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
        while server.next_request(reader) is not None:
            sock.sendall(_framed("chunked", ACK))

    server = serve(chunked)
    session = new_session()

    assert [session.post(server.url, timeout=5).json() for _ in range(2)] == [{"status": 1}] * 2
    assert server.connections == 1


def test_an_endless_header_line_is_refused(serve: Callable[..., Server]) -> None:
    def long_header(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
        server.next_request(reader)
        sock.sendall(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n")

    server = serve(long_header)

    with pytest.raises(ResponseTooLarge):
        new_session().post(server.url, timeout=5)


# ---------------------------------------------------------------- connections


@pytest.mark.parametrize("timeout", [None, (None, 5.0)], ids=["none", "read-none"])
def test_no_timeout_means_no_deadline(
    serve: Callable[..., Server],
    timeout: Union[float, tuple[Optional[float], Optional[float]], None],
) -> None:
    server = serve(ack_all)

    assert new_session().post(server.url, timeout=timeout).status_code == 200


def test_a_timeout_that_is_not_a_pair_is_refused(serve: Callable[..., Server]) -> None:
    server = serve(ack_all)

    with pytest.raises(ValueError):
        new_session().post(server.url, timeout=(1, 2, 3))  # type: ignore[arg-type]
    assert server.connections == 0


def test_streamed_request_bodies_are_refused(serve: Callable[..., Server]) -> None:
    server = serve(ack_all)

    with pytest.raises(requests.RequestException, match="bytes or str"):
        new_session().post(server.url, data=iter([b"a", b"b"]), timeout=5)
    assert server.connections == 0


def test_host_names_are_resolved(serve: Callable[..., Server]) -> None:
    server = serve(ack_all)

    response = new_session().post(f"http://localhost:{server.port}/batch/", timeout=5)

    assert response.status_code == 200
    assert server.requests[0].headers["host"] == f"localhost:{server.port}"


def test_address_literals_start_no_resolver_thread(serve: Callable[..., Server]) -> None:
    server = serve(ack_all)
    before = {thread.name for thread in threading.enumerate()}

    response = new_session().post(server.url, timeout=5)

    assert response.status_code == 200
    started = {thread.name for thread in threading.enumerate()} - before
    assert "luxonis-telemetry-resolve" not in started
    assert _transport._is_address_literal("::1")
    assert not _transport._is_address_literal("localhost")


def test_names_resolve_inline_when_no_thread_can_start(
    serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.12+ refuses new threads at interpreter exit; the upload still goes."""
    server = serve(ack_all)

    start = threading.Thread.start

    def refuse_resolvers(self: threading.Thread) -> None:
        if self.name == "luxonis-telemetry-resolve":
            raise RuntimeError("can't create new thread at interpreter shutdown")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", refuse_resolvers)
    response = new_session().post(f"http://localhost:{server.port}/batch/", timeout=5)

    assert response.status_code == 200


def test_unresolvable_names_are_connection_errors() -> None:
    with pytest.raises(requests.ConnectionError, match="cannot resolve"):
        new_session().post("http://name.invalid/batch/", timeout=5)


def test_connection_refused_is_a_connection_error() -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]

        with pytest.raises(requests.ConnectionError) as raised:
            new_session().post(f"http://127.0.0.1:{port}/batch/", timeout=5)

    assert isinstance(raised.value.__cause__, ConnectionRefusedError)


def test_keep_alive_reuses_one_connection(serve: Callable[..., Server]) -> None:
    server = serve(ack_all)
    session = new_session()

    for _ in range(2):
        assert session.post(server.url, data=b"x", timeout=5).status_code == 200

    assert server.connections == 1
    assert len(server.requests) == 2


def test_session_close_hangs_up_idle_connections(serve: Callable[..., Server]) -> None:
    server = serve(ack_all)
    session = new_session()
    session.post(server.url, timeout=5)

    session.close()

    assert wait_until(lambda: server.closed == 1, 10)


def test_a_connection_the_server_closed_while_idle_is_replaced(
    serve: Callable[..., Server],
) -> None:
    def one_per_connection(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
        server.next_request(reader)
        answer(sock)  # says nothing about closing, then closes

    server = serve(one_per_connection)
    session = new_session()
    session.post(server.url, timeout=5)
    assert wait_until(lambda: server.closed == 1, 10)

    assert session.post(server.url, timeout=5).status_code == 200
    assert server.connections == 2


def _nth_request_on_first_connection(
    misbehave: Callable[[socket.socket], None],
) -> Callable[..., None]:
    """Answers the first request; on the first connection's second request, ``misbehave``."""
    first = threading.Event()

    def handler(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
        is_first = not first.is_set()
        first.set()
        count = 0
        while server.next_request(reader) is not None:
            count += 1
            if is_first and count == 2:
                misbehave(sock)
                return
            answer(sock)

    return handler


def test_a_kept_alive_connection_dropped_before_answering_is_retried_once(
    serve: Callable[..., Server],
) -> None:
    server = serve(_nth_request_on_first_connection(lambda sock: None))
    session = new_session()
    session.post(server.url, data=b"1", timeout=5)

    assert session.post(server.url, data=b"2", timeout=5).status_code == 200
    assert server.connections == 2
    assert [r.body for r in server.requests] == [b"1", b"2", b"2"]


def test_no_retry_once_the_server_started_answering(serve: Callable[..., Server]) -> None:
    server = serve(
        _nth_request_on_first_connection(
            lambda sock: sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        )
    )
    session = new_session()
    session.post(server.url, data=b"1", timeout=5)

    with pytest.raises(requests.ConnectionError):
        session.post(server.url, data=b"2", timeout=5)
    assert server.connections == 1


def test_no_retry_on_a_fresh_connection(serve: Callable[..., Server]) -> None:
    server = serve(read_and_hang_up)

    with pytest.raises(requests.ConnectionError):
        new_session().post(server.url, data=b"1", timeout=5)
    assert server.connections == 1


def test_threads_share_the_adapter_without_crossing_answers(serve: Callable[..., Server]) -> None:
    server = serve(echo_all)
    session = new_session()
    failures: list[str] = []

    def worker(name: str) -> None:
        for n in range(25):
            body = f"{name}-{n}"
            try:
                response = session.post(server.url, data=body.encode(), timeout=10)
                if response.json() != {"status": 1, "echo": body}:
                    failures.append(f"{body}: {response.text}")
            except requests.RequestException as exc:
                failures.append(f"{body}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert failures == []
    sent = sorted(r.body.decode() for r in server.requests)
    assert sent == sorted(f"t{i}-{n}" for i in range(4) for n in range(25))
    assert server.connections <= 4


# ---------------------------------------------------------------- TLS


def test_https_with_our_ca(serve: Callable[..., Server], pki: Pki) -> None:
    server = serve(ack_all, tls=pki.server_context())
    session = new_session()
    session.verify = str(
        pki.ca
    )  # batch_post has no verify argument: it sends extra keywords as JSON

    for _ in range(2):
        response = batch_post(KEY, host=server.url, timeout=5, batch=[], session=session)
        assert response.status_code == 200
    assert server.connections == 1


def test_https_verify_true_rejects_an_unknown_ca(serve: Callable[..., Server], pki: Pki) -> None:
    server = serve(ack_all, tls=pki.server_context())
    session = new_session()
    assert session.post(server.url, timeout=5, verify=str(pki.ca)).status_code == 200

    with pytest.raises(requests.exceptions.SSLError):
        session.post(server.url, timeout=5, verify=True)  # must not reuse the verified connection
    assert server.connections == 2


@pytest.mark.parametrize("store", ["system", "certifi"])
def test_verify_true_trusts_system_and_certifi_roots(
    serve: Callable[..., Server], pki: Pki, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    certifi = pytest.importorskip("certifi")
    server = serve(ack_all, tls=pki.server_context())
    if store == "system":
        monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))  # OpenSSL's default store
    else:
        monkeypatch.setattr(certifi, "where", lambda: str(pki.ca))

    assert new_session().post(server.url, timeout=5, verify=True).status_code == 200


def test_https_verify_false_skips_verification(serve: Callable[..., Server], pki: Pki) -> None:
    server = serve(ack_all, tls=pki.server_context())

    assert new_session().post(server.url, timeout=5, verify=False).status_code == 200


def test_requests_ca_bundle_from_the_environment(
    serve: Callable[..., Server], pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(ack_all, tls=pki.server_context())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))

    assert new_session().post(server.url).status_code == 200


def test_client_certificate(serve: Callable[..., Server], pki: Pki) -> None:
    server = serve(ack_all, tls=pki.server_context(require_client_cert=True))
    session = new_session()
    cert = (str(pki.client_cert), str(pki.client_key))

    assert session.post(server.url, timeout=5, verify=str(pki.ca), cert=cert).status_code == 200
    with pytest.raises(requests.ConnectionError):
        new_session().post(server.url, timeout=5, verify=str(pki.ca))


# ---------------------------------------------------------------- proxies


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _proxy(*, refuse: bool = False) -> Handler:
    """An HTTP proxy: CONNECT tunnels, and absolute-URI requests forwarded as they are."""

    def handler(sock: socket.socket, reader: BinaryIO, server: Server) -> None:
        request = server.next_request(reader)
        if request is None:
            return
        if refuse:
            answer(sock, 407, b"", Proxy_Authenticate="Basic")
            return
        if request.method == "CONNECT":
            host, _, port = request.target.rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            origin = request.target.split("/")[2]
            host, _, port = origin.rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=10)
            forward(upstream, request)
        with upstream:
            back = threading.Thread(target=_pipe, args=(upstream, sock), daemon=True)
            back.start()
            if request.method == "CONNECT":
                _pipe(sock, upstream)
            else:
                while (request := server.next_request(reader)) is not None:
                    forward(upstream, request)
            back.join(10)

    def forward(upstream: socket.socket, request: Request) -> None:
        head = [f"{request.method} {request.target} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in request.headers.items()]
        upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + request.body)

    return handler


def test_https_goes_through_https_proxy(
    serve: Callable[..., Server], pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = serve(ack_all, tls=pki.server_context())
    proxy = serve(_proxy())
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    session = new_session()

    for _ in range(2):
        assert (
            session.post(origin.url + "/batch/", timeout=5, verify=str(pki.ca)).status_code == 200
        )

    assert proxy.connections == 1
    [tunnel] = proxy.requests
    assert (tunnel.method, tunnel.target) == ("CONNECT", f"127.0.0.1:{origin.port}")
    assert "proxy-authorization" not in tunnel.headers
    assert [r.target for r in origin.requests] == ["/batch/", "/batch/"]


def test_no_proxy_bypasses_the_proxy(
    serve: Callable[..., Server], pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = serve(ack_all, tls=pki.server_context())
    proxy = serve(_proxy())
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    assert new_session().post(origin.url, timeout=5, verify=str(pki.ca)).status_code == 200
    assert proxy.connections == 0
    assert len(origin.requests) == 1


def test_proxy_credentials_become_proxy_authorization(
    serve: Callable[..., Server], pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = serve(ack_all, tls=pki.server_context())
    proxy = serve(_proxy())
    monkeypatch.setenv("HTTPS_PROXY", f"http://us%40er:p%3Ass@127.0.0.1:{proxy.port}")

    assert new_session().post(origin.url, timeout=5, verify=str(pki.ca)).status_code == 200
    [tunnel] = proxy.requests
    assert (
        tunnel.headers["proxy-authorization"] == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    )


def test_plain_http_through_a_proxy_sends_the_absolute_uri(
    serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = serve(ack_all)
    proxy = serve(_proxy())
    monkeypatch.setenv("HTTP_PROXY", f"http://user:pw@127.0.0.1:{proxy.port}")

    response = batch_post(KEY, host=origin.url, timeout=5, batch=[], session=new_session())

    assert response.status_code == 200
    [seen] = proxy.requests
    assert (seen.method, seen.target) == ("POST", f"{origin.url}/batch/")
    assert seen.headers["proxy-authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()
    assert seen.headers["host"] == f"127.0.0.1:{origin.port}"
    assert len(origin.requests) == 1


def test_a_refusing_proxy_is_a_proxy_error(
    serve: Callable[..., Server], pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = serve(ack_all, tls=pki.server_context())
    proxy = serve(_proxy(refuse=True))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")

    with pytest.raises(requests.exceptions.ProxyError, match="407"):
        new_session().post(origin.url, timeout=5, verify=str(pki.ca))
    assert origin.connections == 0


def test_an_unreachable_proxy_is_a_proxy_error(
    serve: Callable[..., Server], pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = serve(ack_all, tls=pki.server_context())
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        monkeypatch.setenv(
            "HTTPS_PROXY", f"http://127.0.0.1:{bound_not_listening.getsockname()[1]}"
        )

        with pytest.raises(requests.exceptions.ProxyError):
            new_session().post(origin.url, timeout=5, verify=str(pki.ca))
    assert origin.connections == 0


def test_only_http_proxies_are_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")

    with pytest.raises(requests.exceptions.InvalidProxyURL):
        new_session().post("https://127.0.0.1:9/batch/", timeout=5)


def test_adapter_is_the_sessions_transport() -> None:
    session = new_session()

    assert isinstance(session.get_adapter("https://us.i.posthog.com/batch/"), BoundedAdapter)
    assert isinstance(session.get_adapter("http://127.0.0.1/"), BoundedAdapter)
    assert session.max_redirects == 0
    assert session.trust_env
