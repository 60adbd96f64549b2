"""Test doubles shipped with the library: a PostHog-compatible receiver.

``FakePostHog`` listens on 127.0.0.1, accepts ``POST /batch/`` (gzip or
not) like PostHog does, and can be scripted to fail, throttle, reset the
connection or hang, so delivery can be tested with the real ``posthog``
client without any event leaving the machine. ``MemoryBackend`` (in
``luxonis_telemetry.backends``) is the in-process double.

Run ``python -m luxonis_telemetry.testing`` to keep one in the foreground.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

__all__ = ["Action", "FakePostHog", "ReceivedBatch"]


@dataclass(frozen=True)
class Action:
    """How the server answers one request.

    ``kind``: ``ok``, ``status`` (answer ``status``, with ``retry_after``),
    ``close`` (drop the connection unanswered), ``hang`` (never answer until
    the server stops). ``delay`` seconds pass before the answer.
    """

    kind: str = "ok"
    status: int = 200
    retry_after: Optional[float] = None
    delay: float = 0.0


@dataclass(frozen=True)
class ReceivedBatch:
    api_key: Optional[str]
    gzip: bool
    historical: bool
    events: list[dict[str, Any]]


class FakePostHog:
    """A PostHog ``/batch/`` endpoint on loopback; a context manager."""

    def __init__(self, port: int = 0, *, keep_events: bool = True) -> None:
        """``keep_events=False`` keeps only uuid counts (for million-event runs)."""
        self._script: deque[Action] = deque()
        self.default = Action()
        self.batches: list[ReceivedBatch] = []
        self.keep_events = keep_events
        self.received: Counter[str] = Counter()
        self.requests = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakePostHog:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-posthog", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakePostHog:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- scripting --------------------------------------------------------------

    def script(self, *actions: Action) -> None:
        """Answer the next requests with ``actions``, then with ``default``."""
        with self._lock:
            self._script.extend(actions)

    def set_default(self, action: Action) -> None:
        with self._lock:
            self.default = action

    def _next_action(self) -> Action:
        with self._lock:
            self.requests += 1
            return self._script.popleft() if self._script else self.default

    # -- what arrived -------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [event for batch in self.batches for event in batch.events]

    def uuid_counts(self) -> Counter[str]:
        """How often each uuid arrived."""
        with self._lock:
            return Counter(self.received)

    @property
    def event_count(self) -> int:
        with self._lock:
            return sum(self.received.values())

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Poll until ``count`` events arrived (True) or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.event_count >= count:
                return True
            time.sleep(0.02)
        return self.event_count >= count

    def _receive(self, body: bytes, gzipped: bool) -> None:
        data = json.loads(gzip.decompress(body) if gzipped else body)
        events = list(data.get("batch", []))
        batch = ReceivedBatch(
            api_key=data.get("api_key"),
            gzip=gzipped,
            historical=bool(data.get("historical_migration")),
            events=events if self.keep_events else [],
        )
        with self._lock:
            self.batches.append(batch)
            self.received.update(str(event.get("uuid")) for event in events)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                action = server._next_action()
                if action.delay:
                    server._stopping.wait(action.delay)
                if action.kind == "hang":
                    server._stopping.wait()
                    self.close_connection = True
                    return
                if action.kind == "close":
                    self.close_connection = True
                    return
                if not self.path.rstrip("/").endswith("/batch"):
                    self._answer(404, {"detail": "not found"})
                    return
                if action.kind == "status" and action.status != 200:
                    headers = {}
                    if action.retry_after is not None:
                        headers["Retry-After"] = str(action.retry_after)
                    self._answer(action.status, {"detail": f"scripted {action.status}"}, headers)
                    return
                gzipped = self.headers.get("Content-Encoding", "") == "gzip"
                try:
                    server._receive(body, gzipped)
                except ValueError:
                    self._answer(400, {"detail": "bad body"})
                    return
                self._answer(200, {"status": 1})

            def _answer(
                self, status: int, payload: dict[str, Any], headers: Optional[dict[str, str]] = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


def main() -> None:
    """Serve until interrupted, printing each batch: handy for a manual look."""
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    with FakePostHog(port) as server:
        print(f"PostHog-compatible receiver on {server.url}", flush=True)
        seen = 0
        try:
            while True:
                time.sleep(0.5)
                events = server.events
                for event in events[seen:]:
                    print(json.dumps(event), flush=True)
                seen = len(events)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
