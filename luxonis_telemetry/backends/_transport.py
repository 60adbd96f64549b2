"""A requests transport that cannot be redirected, stalled or flooded by the server.

requests (through urllib3) follows redirects, so a 307/308 would re-send the
body, API key included, to whatever host the answer names. Its timeouts apply
to each socket operation, so a server that drips one byte per interval holds
an upload forever. It also reads whatever body the server sends. The uploader
must not depend on the goodwill of the endpoint (or of anything in between),
so this adapter speaks HTTP/1.1 itself with ``http.client`` over sockets that
give every blocking call only the time left before one deadline, reads at
most ``max_body`` bytes of any answer, and refuses every redirect.

Imported lazily by the PostHog backend only (requests is heavy).
"""

from __future__ import annotations

import base64
import datetime
import http.client
import math
import os
import re
import select
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

import requests
import requests.adapters
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    get_auth_from_url,
    get_encoding_from_headers,
    prepend_scheme_if_needed,
    select_proxy,
    urldefragauth,
)

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Optional, Union

    from _typeshed import ReadableBuffer, WriteableBuffer
    from requests import PreparedRequest

    _Timeout = Union[float, tuple[Optional[float], Optional[float]], None]
    _Verify = Union[bool, str]
    _Cert = Union[str, tuple[str, str], None]
    _AddrInfo = Sequence[tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]]
    _PoolKey = tuple[str, str, int, Optional[str], _Verify, _Cert]

__all__ = [
    "BoundedAdapter",
    "DeadlineExceeded",
    "RedirectRefused",
    "ResponseTooLarge",
    "new_session",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_IDLE_PER_ROUTE = 10
_MAX_SHOWN_LOCATION = 200
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?[/\\]{2})[^/\\?#]*@")


class RedirectRefused(requests.RequestException):
    """The server answered 3xx; following it could hand the request to another host."""


class ResponseTooLarge(requests.RequestException):
    """The answer (a header line or the body) is larger than an acknowledgement can be."""


class DeadlineExceeded(requests.Timeout):
    """The whole exchange did not finish within the timeout given to the request."""


class _Budget:
    """What the current exchange on one connection may still spend, and whether it was answered.

    Shared by a connection and its sockets, so the plain socket, the TLS socket
    wrapped around it and the connection's retry decision all see one deadline
    and one count of received bytes.
    """

    __slots__ = ("deadline", "received")

    def __init__(self) -> None:
        self.deadline = math.inf
        self.received = 0

    def start(self, deadline: float) -> None:
        self.deadline = deadline
        self.received = 0

    def left(self) -> Optional[float]:
        """Seconds left (None: no deadline); raises socket.timeout once there are none."""
        if self.deadline == math.inf:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline exceeded")
        return left

    def arm(self, sock: socket.socket) -> None:
        sock.settimeout(self.left())


class _TimedSocket(socket.socket):
    """TCP socket whose blocking calls each get only the budget's time left.

    ``sendall`` and ``connect`` are single calls in C whose timeout bounds the
    whole call; ``recv_into`` is what ``http.client``'s buffered reader uses.
    """

    budget: _Budget

    def connect(self, address: Union[tuple[Any, ...], str, ReadableBuffer]) -> None:
        self.budget.arm(self)
        super().connect(address)

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        self.budget.arm(self)
        super().sendall(data, flags)

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        self.budget.arm(self)
        count = super().recv_into(buffer, nbytes, flags)
        self.budget.received += count
        return count


class _TimedSSLSocket(ssl.SSLSocket):
    """TLS socket with the same rule; ``SSLSocket.sendall`` loops over ``send``."""

    budget: _Budget

    def do_handshake(self, block: bool = False) -> None:
        self.budget.arm(self)
        super().do_handshake(block)

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        self.budget.arm(self)
        return super().send(data, flags)

    def recv_into(
        self, buffer: WriteableBuffer, nbytes: Optional[int] = None, flags: int = 0
    ) -> int:
        self.budget.arm(self)
        count = super().recv_into(buffer, nbytes, flags)
        self.budget.received += count
        return count


def _resolve(host: str, port: int, budget: _Budget) -> _AddrInfo:
    """getaddrinfo, bounded: the resolver's own retries can outlast any upload timeout.

    A lookup that overruns is abandoned to its daemon thread. Address literals
    need no resolver, and where no thread can start (Python 3.12+ at
    interpreter exit) the lookup runs inline: unbounded, but better than none.
    """
    if _is_address_literal(host):
        return _getaddrinfo(host, port)
    box: list[Union[_AddrInfo, OSError]] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            box.append(_getaddrinfo(host, port))
        except OSError as exc:
            box.append(exc)
        finally:
            done.set()

    try:
        threading.Thread(target=lookup, name="luxonis-telemetry-resolve", daemon=True).start()
    except RuntimeError:
        return _getaddrinfo(host, port)
    if not done.wait(budget.left()):
        raise TimeoutError(f"resolving {host!r} took too long")
    result = box[0]
    if isinstance(result, OSError):
        raise result
    return result


def _getaddrinfo(host: str, port: int) -> _AddrInfo:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise OSError(f"cannot resolve {host!r}: {exc}") from None


def _is_address_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except (OSError, ValueError):
        return False
    return True


def _open_tcp(host: str, port: int, budget: _Budget) -> _TimedSocket:
    last_error: Optional[OSError] = None
    for family, kind, proto, _, address in _resolve(host, port, budget):
        sock = _TimedSocket(family, kind, proto)
        sock.budget = budget
        try:
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        return sock
    raise last_error or OSError(f"no address for {host!r}")


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _open_tunnel(sock: _TimedSocket, host: str, port: int, proxy_auth: Optional[str]) -> None:
    """CONNECT through an HTTP proxy; the proxy's answer is parsed with http.client's limits."""
    authority = _authority(host, port)
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy_auth:
        lines.append(f"Proxy-Authorization: {proxy_auth}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
    answer = http.client.HTTPResponse(sock, method="CONNECT")
    try:
        answer.begin()
    finally:
        answer.close()
    if answer.status != 200:
        raise requests.exceptions.ProxyError(
            f"the proxy refused a tunnel to {authority}: {answer.status} {answer.reason}"
        )


class _Connection(http.client.HTTPConnection):
    """One keep-alive HTTP/1.1 connection, direct, through a proxy, or tunnelled; TLS or not.

    ``connect`` is replaced so that name resolution, TCP, the CONNECT
    exchange and the TLS handshake all spend the same budget.
    """

    def __init__(
        self,
        dial_host: str,
        dial_port: int,
        *,
        tunnel_to: Optional[tuple[str, int]],
        proxy_auth: Optional[str],
        tls: Optional[ssl.SSLContext],
        server_hostname: str,
    ) -> None:
        super().__init__(dial_host, dial_port)
        self.budget = _Budget()
        self._tunnel_to = tunnel_to
        self._proxy_auth = proxy_auth
        self._tls = tls
        self._server_hostname = server_hostname

    def connect(self) -> None:
        sock = _open_tcp(self.host, self.port, self.budget)
        try:
            if self._tunnel_to is not None:
                _open_tunnel(sock, *self._tunnel_to, self._proxy_auth)
            if self._tls is None:
                self.sock = sock
                return
            # Every context from _build_tls_context makes _TimedSSLSocket sockets.
            tls: _TimedSSLSocket = self._tls.wrap_socket(  # type: ignore[assignment]
                sock, server_hostname=self._server_hostname, do_handshake_on_connect=False
            )
        except BaseException:
            sock.close()
            raise
        tls.budget = self.budget
        self.sock = tls
        tls.do_handshake()

    def idle_and_open(self) -> bool:
        """False when the server closed (or wrote on) the connection while it sat in the pool."""
        sock = self.sock
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        readable, _, _ = select.select([sock], [], [], 0)
        return not readable


class _Route:
    """Where one request goes: the pool key and how to open a connection for it."""

    __slots__ = ("cert", "host", "key", "port", "proxy", "proxy_auth", "scheme", "target", "verify")

    def __init__(
        self,
        request: PreparedRequest,
        proxies: Optional[dict[str, str]],
        verify: _Verify,
        cert: _Cert,
    ) -> None:
        url = request.url or ""
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        if self.scheme not in _DEFAULT_PORTS:
            raise requests.exceptions.InvalidSchema(f"no connection adapter for {url!r}")
        if not parts.hostname:
            raise requests.exceptions.InvalidURL(f"no host in {url!r}")
        self.host = parts.hostname
        try:
            self.port = parts.port or _DEFAULT_PORTS[self.scheme]
        except ValueError as exc:
            raise requests.exceptions.InvalidURL(f"bad port in {url!r}") from exc
        self.verify = verify
        self.cert = cert
        proxy = select_proxy(url, proxies)
        self.proxy: Optional[tuple[str, int]] = None
        self.proxy_auth: Optional[str] = None
        if proxy:
            self.proxy, self.proxy_auth = _parse_proxy(proxy)
        # Plain http through a proxy names the whole URL; everything else the path.
        proxied_http = self.proxy is not None and self.scheme == "http"
        self.target = urldefragauth(url) if proxied_http else request.path_url
        self.key: _PoolKey = (self.scheme, self.host, self.port, proxy, verify, cert)


def _parse_proxy(proxy: str) -> tuple[tuple[str, int], Optional[str]]:
    proxy = prepend_scheme_if_needed(proxy, "http")
    parts = urlsplit(proxy)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise requests.exceptions.InvalidProxyURL(
            f"only http:// proxies are supported, not {_mask_userinfo(proxy)!r}"
        )
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise requests.exceptions.InvalidProxyURL(f"bad port in {_mask_userinfo(proxy)!r}") from exc
    user, password = get_auth_from_url(proxy)
    auth = None
    if user or password:
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return (parts.hostname, port), auth


def _mask_userinfo(url: str) -> str:
    """The URL with any user:password hidden, shortened for an error message.

    A pattern rather than urlsplit: it must also mask what urlsplit rejects
    (a bad IPv6 literal) or reads as a path (backslashes, which browsers and
    some clients treat as slashes).
    """
    url = _USERINFO.sub(r"\1***@", url)
    if len(url) > _MAX_SHOWN_LOCATION:
        url = url[:_MAX_SHOWN_LOCATION] + "..."
    return url


def _deadline(timeout: _Timeout) -> float:
    """The monotonic time by which the exchange must be over; a (connect, read) pair is summed."""
    if timeout is None:
        return math.inf
    if isinstance(timeout, tuple):
        try:
            connect, read = timeout
        except ValueError:
            raise ValueError(
                f"timeout must be a number or a (connect, read) pair, not {timeout!r}"
            ) from None
        if connect is None or read is None:
            return math.inf
        return time.monotonic() + connect + read
    return time.monotonic() + float(timeout)


class _Outgoing:
    """The request as it goes on the wire, prepared once for a possible second attempt."""

    __slots__ = ("body", "headers", "method", "request")

    def __init__(self, request: PreparedRequest, route: _Route) -> None:
        self.request = request
        self.method = request.method or "GET"
        self.body = _request_body(request)
        headers: CaseInsensitiveDict[Union[str, bytes]] = CaseInsensitiveDict(request.headers)
        headers["Accept-Encoding"] = "identity"  # an encoded body would escape the size bound
        headers.setdefault("Host", _authority_of(request.url or ""))
        if route.proxy_auth and route.scheme == "http":
            headers["Proxy-Authorization"] = route.proxy_auth
        self.headers = headers


def _request_body(request: PreparedRequest) -> Optional[bytes]:
    body = request.body
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    raise requests.RequestException(
        f"BoundedAdapter sends bytes or str bodies, not {type(body).__name__}", request=request
    )


def _read_body(raw: http.client.HTTPResponse, max_body: int) -> bytes:
    """The whole body if it fits in max_body bytes; never reads more than max_body + 1."""
    if raw.length is not None:  # Content-Length (http.client sets None when chunked)
        if raw.length > max_body:
            raise ResponseTooLarge(
                f"the answer announces {raw.length} bytes; at most {max_body} are read"
            )
        return raw.read()  # raises IncompleteRead when the server sends less
    body = raw.read(max_body + 1)  # chunked (ends at the last chunk) or until the server closes
    if len(body) > max_body:
        raise ResponseTooLarge(f"the answer is longer than {max_body} bytes")
    return body


class _StaleConnection(Exception):
    """A kept-alive connection failed before the server answered a single byte."""


class BoundedAdapter(requests.adapters.BaseAdapter):
    """requests transport: no redirects, one deadline per request, bounded answers.

    ``stream`` is ignored (the bounded body is always read) and the response
    has no ``raw``, so requests extracts no cookies from it: an ingestion
    endpoint sets none worth keeping. ``Accept-Encoding: identity`` is sent, so
    the body is not decoded; a server that compresses anyway is passed through.
    """

    def __init__(self, *, max_body: int = 64 * 1024) -> None:
        super().__init__()
        self.max_body = max_body
        self._lock = threading.Lock()
        self._idle: dict[_PoolKey, list[_Connection]] = {}
        self._contexts: dict[tuple[_Verify, _Cert], ssl.SSLContext] = {}

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: _Timeout = None,
        verify: _Verify = True,
        cert: _Cert = None,
        proxies: Optional[dict[str, str]] = None,
    ) -> requests.Response:
        started = time.monotonic()
        deadline = _deadline(timeout)
        route = _Route(request, proxies, verify, cert)
        outgoing = _Outgoing(request, route)
        conn = self._checkout(route.key)
        if conn is not None:
            try:
                raw, body = self._exchange(conn, route, outgoing, deadline, reused=True)
            except _StaleConnection:
                conn = None  # the server dropped the kept-alive connection: once more, on a new one
        if conn is None:
            conn = self._new_connection(route)
            raw, body = self._exchange(conn, route, outgoing, deadline, reused=False)
        return _build_response(request, raw, body, started)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn in connections:
                conn.close()

    def _checkout(self, key: _PoolKey) -> Optional[_Connection]:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                conn = idle.pop()
            if conn.idle_and_open():
                return conn
            conn.close()

    def _checkin(self, key: _PoolKey, conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < _MAX_IDLE_PER_ROUTE:
                idle.append(conn)
                return
        conn.close()

    def _new_connection(self, route: _Route) -> _Connection:
        tls = self._tls_context(route.verify, route.cert) if route.scheme == "https" else None
        if route.proxy is None:
            dial_host, dial_port = route.host, route.port
        else:
            dial_host, dial_port = route.proxy
        tunnel = route.proxy is not None and tls is not None
        return _Connection(
            dial_host,
            dial_port,
            tunnel_to=(route.host, route.port) if tunnel else None,
            proxy_auth=route.proxy_auth,
            tls=tls,
            server_hostname=route.host,
        )

    def _tls_context(self, verify: _Verify, cert: _Cert) -> ssl.SSLContext:
        with self._lock:
            context = self._contexts.get((verify, cert))
        if context is None:
            context = _build_tls_context(verify, cert)
            with self._lock:
                context = self._contexts.setdefault((verify, cert), context)
        return context

    def _exchange(
        self,
        conn: _Connection,
        route: _Route,
        outgoing: _Outgoing,
        deadline: float,
        *,
        reused: bool,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        conn.budget.start(deadline)
        raw: Optional[http.client.HTTPResponse] = None
        connecting = conn.sock is None
        try:
            if connecting:
                conn.connect()
                connecting = False
            conn.request(outgoing.method, route.target, outgoing.body, outgoing.headers)
            raw = conn.getresponse()
            _refuse_redirect(raw, outgoing.request)
            body = _read_body(raw, self.max_body)
        except requests.RequestException:  # ours (an OSError too, so caught first)
            _discard(conn, raw)
            raise
        except (OSError, http.client.HTTPException) as exc:
            _discard(conn, raw)
            if reused and conn.budget.received == 0 and not isinstance(exc, socket.timeout):
                raise _StaleConnection from exc
            raise _translate(exc, outgoing.request, route, connecting=connecting) from exc
        except BaseException:
            _discard(conn, raw)
            raise
        if raw.isclosed() and conn.sock is not None:
            self._checkin(route.key, conn)
        else:
            _discard(conn, raw)
        return raw, body


def _authority_of(url: str) -> str:
    """Host header: the URL's host[:port] as written (requests already IDNA-encoded it)."""
    return urlsplit(url).netloc.rpartition("@")[2]


def _discard(conn: _Connection, raw: Optional[http.client.HTTPResponse]) -> None:
    # A response that owns the socket (Connection: close) keeps the descriptor
    # open until it is closed too.
    if raw is not None:
        raw.close()
    conn.close()


def _refuse_redirect(raw: http.client.HTTPResponse, request: PreparedRequest) -> None:
    location = raw.getheader("Location")
    if 300 <= raw.status < 400 and location is not None:
        raise RedirectRefused(
            f"refused to follow HTTP {raw.status} redirect to {_mask_userinfo(location)!r}",
            request=request,
        )


def _translate(
    exc: Union[OSError, http.client.HTTPException],
    request: PreparedRequest,
    route: _Route,
    *,
    connecting: bool,
) -> requests.RequestException:
    where = _authority(route.host, route.port)
    if isinstance(exc, socket.timeout):
        return DeadlineExceeded(f"no complete answer from {where} in time ({exc})", request=request)
    if isinstance(exc, ssl.SSLError):
        return requests.exceptions.SSLError(f"TLS with {where} failed: {exc}", request=request)
    if isinstance(exc, http.client.LineTooLong):
        return ResponseTooLarge(f"{where} sent a {exc}", request=request)
    if route.proxy is not None and connecting:
        proxy = _authority(*route.proxy)
        return requests.exceptions.ProxyError(f"cannot use proxy {proxy}: {exc!r}", request=request)
    return requests.ConnectionError(f"exchange with {where} failed: {exc!r}", request=request)


def _build_response(
    request: PreparedRequest, raw: http.client.HTTPResponse, body: bytes, started: float
) -> requests.Response:
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for name, value in raw.getheaders():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    response = requests.Response()
    response.status_code = raw.status
    response.reason = raw.reason
    response.headers = headers
    response.url = request.url or ""
    response.request = request
    response.encoding = get_encoding_from_headers(headers)
    response._content = body
    response._content_consumed = True
    response.elapsed = datetime.timedelta(seconds=time.monotonic() - started)
    return response


def _build_tls_context(verify: _Verify, cert: _Cert) -> ssl.SSLContext:
    """requests' meaning of verify: True (system store and certifi), a CA file or folder, False."""
    try:
        if verify is True:
            context = ssl.create_default_context()
            _add_certifi(context)
        elif verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif os.path.isdir(verify):
            context = ssl.create_default_context(capath=verify)
        else:
            context = ssl.create_default_context(cafile=verify)
        if isinstance(cert, tuple):
            context.load_cert_chain(*cert)
        elif cert:
            context.load_cert_chain(cert)
    except OSError as exc:  # ssl.SSLError included
        raise requests.exceptions.SSLError(
            f"cannot set up TLS (verify={verify!r}, cert={cert!r}): {exc}"
        ) from exc
    context.sslsocket_class = _TimedSSLSocket
    return context


def _add_certifi(context: ssl.SSLContext) -> None:
    """Roots some systems lack (old distributions, bare containers) but requests users expect."""
    try:
        import certifi
    except ImportError:
        return
    context.load_verify_locations(cafile=certifi.where())


def new_session(*, max_body: int = 64 * 1024) -> requests.Session:
    """A Session with BoundedAdapter mounted for http:// and https://.

    max_redirects=0 is a second guard (the adapter never returns a 3xx with a
    Location); trust_env stays on so HTTPS_PROXY, NO_PROXY and
    REQUESTS_CA_BUNDLE keep working as users of requests expect.
    """
    session = requests.Session()
    adapter = BoundedAdapter(max_body=max_body)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.max_redirects = 0
    session.trust_env = True
    return session
