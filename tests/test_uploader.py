"""upload(): the spool replayed to real loopback servers, delivered once, deleted only when stored.

Servers are ``FakePostHog`` (as strict as PostHog, as hostile as scripted), small
proxies and a TLS front written here; uploaders run in this process, in threads,
or as real ``luxonis-telemetry upload`` processes that get killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig
from luxonis_telemetry._controls import disable, purge, set_mode
from luxonis_telemetry._reader import BadLine
from luxonis_telemetry.record import encode, new_record
from luxonis_telemetry.spool import Spool
from luxonis_telemetry.testing import Action, FakePostHog
from luxonis_telemetry.uploader import UploadResult, open_spool, upload
from tests.conftest import Pki, free_port, spool_records, wait_until

KEY = "phc_test_key_123"


def capture(count: int, library: str = "lib", **props: Any) -> None:
    telemetry = Telemetry(library)
    for n in range(count):
        telemetry.capture("e", {"n": n, **props})


def pending(spool_path: Path) -> list[dict[str, Any]]:
    """Records still to deliver, honouring what each segment's position says went."""
    return [item for item in Spool(str(spool_path)).iter_pending() if not isinstance(item, BadLine)]


def plant(spool_path: Path, library: str = "lib", **fields: Any) -> dict[str, Any]:
    made = new_record(
        "capture",
        event="planted",
        distinct_id="d",
        library=library,
        properties={},
        context={"library_name": library},
    )
    made.update(fields)
    spool = Spool(str(spool_path))
    spool.append(library, encode(made))
    spool.close()
    return made


def cli_upload(*args: str, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "luxonis_telemetry", "upload", *args],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


# ---------------------------------------------------------------- delivery


def test_delivers_with_original_uuid_time_and_capture_context(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    capture(3)
    foreign = plant(
        spool_path,
        context={
            "os": "Plan9",
            "os_version": "4",
            "python_version": "2.7.18",
            "library_name": "lib",
        },
    )
    stored = {r["uuid"]: r for r in pending(spool_path)}
    result = upload(budget=20)
    assert result.ok and result.sent == 4, result.summary()
    received = {e["uuid"]: e for e in posthog_env.events}
    assert received.keys() == stored.keys()
    for uuid, record in stored.items():
        for key in ("timestamp", "distinct_id", "event"):
            assert received[uuid][key] == record[key]
    plan9 = received[foreign["uuid"]]["properties"]
    assert (plan9["$os"], plan9["$os_version"], plan9["$python_version"]) == (
        "Plan9",
        "4",
        "2.7.18",
    )
    assert all(b.gzip and b.api_key == KEY and not b.historical for b in posthog_env.batches)
    assert pending(spool_path) == [] and spool_records(spool_path) == []


def test_nothing_is_sent_twice(posthog_env: FakePostHog) -> None:
    capture(5)
    assert upload(budget=20).sent == 5
    again = upload(budget=20)
    assert again.ok and again.sent == 0
    assert posthog_env.requests == 1


def test_old_events_go_as_historical_migration(posthog_env: FakePostHog, spool_path: Path) -> None:
    plant(
        spool_path,
        event="old",
        timestamp=(datetime.now(timezone.utc) - timedelta(days=3)).isoformat(),
    )
    capture(1)
    assert upload(budget=20).ok
    flags = {batch.events[0]["event"]: batch.historical for batch in posthog_env.batches}
    assert flags == {"old": True, "e": False}


def test_events_older_than_the_age_cap_are_dropped_and_counted(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    plant(
        spool_path,
        event="ancient",
        timestamp=(datetime.now(timezone.utc) - timedelta(days=400)).isoformat(),
    )
    capture(1)
    result = upload(budget=20)
    assert result.ok and result.skipped == 1
    assert [e["event"] for e in posthog_env.events] == ["e"]
    assert Spool(str(spool_path)).read_state().dropped["age_cap"] == 1


def test_each_library_goes_to_its_own_destination() -> None:
    with FakePostHog() as first, FakePostHog() as second:
        Telemetry("a", config=TelemetryConfig(api_key="key_a", endpoint=first.url)).capture("1")
        Telemetry("b", config=TelemetryConfig(api_key="key_b", endpoint=second.url)).capture("2")
        result = upload(budget=20)
        assert result.ok, result.summary()
        assert [(e["event"], b.api_key) for b in first.batches for e in b.events] == [
            ("1", "key_a")
        ]
        assert [(e["event"], b.api_key) for b in second.batches for e in b.events] == [
            ("2", "key_b")
        ]


def test_environment_overrides_the_recorded_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakePostHog() as recorded, FakePostHog() as company:
        Telemetry("a", config=TelemetryConfig(api_key="key_a", endpoint=recorded.url)).capture("e")
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", company.url)
        assert upload(budget=20).ok
        assert recorded.requests == 0 and len(company.events) == 1


def test_flags_override_everything(posthog_env: FakePostHog) -> None:
    capture(2)
    with FakePostHog() as chosen:
        assert upload(budget=20, endpoint=chosen.url, api_key="phc_flag").ok
        assert posthog_env.requests == 0
        assert [b.api_key for b in chosen.batches] == ["phc_flag"]


def test_only_the_libraries_asked_for(posthog_env: FakePostHog, spool_path: Path) -> None:
    capture(2, library="a")
    capture(3, library="b")
    result = upload(budget=20, libraries=["b"])
    assert result.ok and result.sent == 3, result.summary()
    assert {r["library"] for r in pending(spool_path)} == {"a"}


def test_a_missing_key_leaves_events_pending_with_a_reason(
    server: FakePostHog, spool_path: Path
) -> None:
    Telemetry("a", config=TelemetryConfig(endpoint=server.url)).capture("e")
    result = upload(budget=10)
    assert not result.ok and result.pending == 1
    assert "API key" in result.reasons["a"]
    assert server.requests == 0
    assert len(pending(spool_path)) == 1


def test_an_unknown_backend_stays_pending_while_others_go(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    Telemetry("a", config=TelemetryConfig(backend="nowhere")).capture("stuck")
    Telemetry("b").capture("free")
    result = upload(budget=10)
    assert result.pending == 1 and not result.ok
    assert "unknown backend 'nowhere'" in result.reasons["a"]
    assert [e["event"] for e in posthog_env.events] == ["free"]


@pytest.mark.parametrize("backend", ["noop", "stdout"])
def test_debug_backends_never_count_as_sent(
    posthog_env: FakePostHog, spool_path: Path, backend: str
) -> None:
    """8.19: a run that names noop/stdout as the destination sends and deletes nothing."""
    capture(2)
    result = upload(budget=10, backend=backend)
    assert result.sent == 0 and result.pending == 2 and not result.ok
    assert f"the {backend} backend delivers nothing" in result.reasons["lib"]
    assert posthog_env.requests == 0 and len(pending(spool_path)) == 2


def test_plan_shows_the_batches_and_changes_nothing(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    from luxonis_telemetry.uploader import plan

    capture(3)
    Telemetry("other", config=TelemetryConfig(backend="nowhere")).capture("stuck")
    before = sorted(p.name for p in spool_path.iterdir())
    planned = list(plan(spool=Spool(str(spool_path))))
    by_library = {chunk.records[0]["library"]: (chunk, backend) for chunk, backend in planned}
    chunk, backend = by_library["lib"]
    assert len(chunk.records) == 3 and chunk.destination is not None
    assert posthog_env.url in chunk.destination.describe()
    assert [m["uuid"] for m in backend.messages(chunk.records)] == [
        r["uuid"] for r in chunk.records
    ]
    assert by_library["other"][1] is None
    assert posthog_env.requests == 0
    assert sorted(p.name for p in spool_path.iterdir()) == before


def test_no_spool_yet_is_a_clean_no_op(home: Path) -> None:
    result = upload(budget=1)
    assert result.ok and result.sent == 0
    assert not (home / ".local").exists()


def test_events_over_900_kib_are_quarantined_not_sent(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    capture(1)
    huge = new_record(
        "capture",
        event="huge",
        distinct_id="d",
        library="lib",
        properties={"blob": "x" * 950_000},
        context={},
    )
    with open(spool_path / "active.lib.jsonl", "ab") as active:  # bigger than capture allows
        active.write(json.dumps(huge).encode() + b"\n")
    capture(1)
    result = upload(budget=20)
    assert result.ok and result.failed == 1, result.summary()
    assert [e["event"] for e in posthog_env.events] == ["e", "e"]
    assert "over 900 KiB" in (spool_path / "quarantine.jsonl").read_text()


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_keep_events_pending(
    posthog_env: FakePostHog, spool_path: Path, status: int
) -> None:
    capture(5)
    posthog_env.set_default(Action("status", status, retry_after=0.01))
    result = upload(budget=5)
    assert result.pending == 5 and result.sent == 0
    assert str(status) in (result.error or "")
    posthog_env.set_default(Action())
    assert upload(budget=10).ok
    assert len(posthog_env.uuid_counts()) == 5


def test_retry_after_is_honoured_within_the_budget(posthog_env: FakePostHog) -> None:
    capture(3)
    posthog_env.script(Action("status", 429, retry_after=0.3), Action("status", 503))
    started = time.monotonic()
    assert upload(budget=20).ok
    assert time.monotonic() - started >= 0.3
    assert posthog_env.requests == 3


def test_too_large_batches_are_split_and_each_event_sent_once(posthog_env: FakePostHog) -> None:
    capture(8)
    posthog_env.script(Action("status", 413), Action("status", 413))
    assert upload(budget=10).ok
    counts = posthog_env.uuid_counts()
    assert len(counts) == 8 and max(counts.values()) == 1


def test_connection_refused(posthog_env: FakePostHog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    capture(2)
    result = upload(budget=5)
    assert result.pending == 2 and "cannot reach" in (result.error or "")


def test_a_connection_closed_without_answer(posthog_env: FakePostHog) -> None:
    capture(2)
    posthog_env.set_default(Action("close"))
    assert upload(budget=5).pending == 2
    posthog_env.set_default(Action())
    assert upload(budget=10).ok


def test_a_hanging_server_is_bounded_by_the_budget(posthog_env: FakePostHog) -> None:
    capture(2)
    posthog_env.set_default(Action("hang"))
    started = time.monotonic()
    result = upload(budget=2)
    assert result.pending == 2
    assert time.monotonic() - started < 8


def test_backoff_is_recorded_after_a_network_failure_and_cleared_by_success(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    capture(1)
    posthog_env.set_default(Action("status", 503, retry_after=0.01))
    upload(budget=3)
    first = Spool(str(spool_path)).read_state()
    upload(budget=3)
    second = Spool(str(spool_path)).read_state()
    assert second.backoff_failures == first.backoff_failures + 1 >= 2
    assert second.next_attempt_at - time.time() > 60
    assert second.last_upload is not None and "503" in (second.last_upload["error"] or "")
    posthog_env.set_default(Action())
    assert upload(budget=10).ok
    cleared = Spool(str(spool_path)).read_state()
    assert (cleared.backoff_failures, cleared.next_attempt_at) == (0, 0.0)


def test_a_second_uploader_waits_or_reports_busy(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    capture(3)
    lock = Spool(str(spool_path)).upload_lock()
    assert lock.acquire(0)
    try:
        result = upload(budget=5, lock_timeout=0.2)
        assert result.busy and result.pending == 3 and not result.ok
    finally:
        lock.release()
        lock.close()
    assert upload(budget=10).ok


# ---------------------------------------------------------------- 8.7: only real acknowledgements


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed_and_the_key_goes_nowhere_else(
    posthog_env: FakePostHog, spool_path: Path, status: int
) -> None:
    capture(3)
    with FakePostHog() as elsewhere:
        posthog_env.set_default(Action("redirect", status, location=elsewhere.url + "/batch/"))
        result = upload(budget=5)
        assert elsewhere.requests == 0
    assert result.pending == 3 and result.sent == 0
    assert "redirect" in (result.error or "")
    assert len(pending(spool_path)) == 3


@pytest.mark.parametrize(
    "action",
    [Action("html"), Action("empty"), Action("body", body=b'{"ok": true}')],
    ids=["captive-portal", "empty", "other-json"],
)
def test_a_200_that_is_not_an_acknowledgement_keeps_events(
    posthog_env: FakePostHog, spool_path: Path, action: Action
) -> None:
    capture(2)
    posthog_env.set_default(action)
    result = upload(budget=5)
    assert result.pending == 2 and result.sent == 0
    assert "without a PostHog acknowledgement" in (result.error or "")
    assert len(pending(spool_path)) == 2


@pytest.mark.parametrize("ack", [1, "Ok"])
def test_both_acknowledgement_forms_deliver(
    ack: Any, monkeypatch: pytest.MonkeyPatch, spool_path: Path
) -> None:
    with FakePostHog(ack=ack) as server:
        monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", KEY)
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", server.url)
        capture(2)
        assert upload(budget=10).ok
        assert server.event_count == 2
    assert pending(spool_path) == []


# ---------------------------------------------------------------- 8.7: proxies


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class Relay:
    """Accepts on loopback and hands each connection to ``handle`` on its own thread."""

    def __init__(self, handle: Callable[[socket.socket, Relay], None]) -> None:
        self.handle = handle
        self.heads: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.socks: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            self.socks.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), sock:
            self.handle(sock, self)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _read_head(sock: socket.socket) -> tuple[str, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def forwarding_proxy(origin_port: Optional[int] = None) -> Callable[[socket.socket, Relay], None]:
    """CONNECT tunnels (to ``origin_port`` when given), absolute-URI requests relayed as bytes."""

    def handle(sock: socket.socket, relay: Relay) -> None:
        head, rest = _read_head(sock)
        relay.heads.append(head.split("\r\n", 1)[0])
        method, target, _ = head.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, origin_port or int(port)), timeout=10)
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            host, _, port = target.split("/")[2].rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=10)
            upstream.sendall(head.encode("latin-1") + b"\r\n\r\n" + rest)
        with upstream:
            back = threading.Thread(target=_pipe, args=(upstream, sock), daemon=True)
            back.start()
            _pipe(sock, upstream)
            back.join(10)

    return handle


def tls_front(context: ssl.SSLContext, origin: int) -> Callable[[socket.socket, Relay], None]:
    """Terminates TLS and relays the plain bytes to a FakePostHog on ``origin``."""

    def handle(sock: socket.socket, relay: Relay) -> None:
        with context.wrap_socket(sock, server_side=True) as tls:
            upstream = socket.create_connection(("127.0.0.1", origin), timeout=10)
            with upstream:
                back = threading.Thread(target=_pipe, args=(upstream, tls), daemon=True)
                back.start()
                _pipe(tls, upstream)
                back.join(10)

    return handle


@pytest.fixture
def relays() -> Iterator[Callable[[Callable[[socket.socket, Relay], None]], Relay]]:
    made: list[Relay] = []

    def start(handle: Callable[[socket.socket, Relay], None]) -> Relay:
        made.append(Relay(handle))
        return made[-1]

    yield start
    for relay in made:
        relay.close()


@pytest.fixture
def no_ambient_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.usefixtures("no_ambient_proxy")
def test_http_proxy_carries_the_upload(
    posthog_env: FakePostHog, relays: Callable[..., Relay], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = relays(forwarding_proxy())
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    capture(3)
    assert upload(budget=20).ok
    assert proxy.heads == [f"POST {posthog_env.url}/batch/ HTTP/1.1"]
    assert posthog_env.event_count == 3


@pytest.mark.usefixtures("no_ambient_proxy")
@pytest.mark.parametrize("bypass", [False, True], ids=["HTTPS_PROXY", "NO_PROXY"])
def test_https_proxy_tunnels_the_upload_and_no_proxy_bypasses_it(
    server: FakePostHog,
    relays: Callable[..., Relay],
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    bypass: bool,
) -> None:
    front = relays(tls_front(pki.server_context(), int(server.url.rsplit(":", 1)[1])))
    proxy = relays(forwarding_proxy())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    if bypass:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", KEY)
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", f"https://127.0.0.1:{front.port}")
    capture(3)
    result = upload(budget=20)
    assert result.ok, result.summary()
    assert server.event_count == 3
    expected = [] if bypass else [f"CONNECT 127.0.0.1:{front.port} HTTP/1.1"]
    assert proxy.heads == expected


# ---------------------------------------------------------------- 8.8: a deadline, bounded reads


def test_a_dripping_server_cannot_hold_the_upload_past_its_budget(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    capture(3)
    posthog_env.set_default(Action("drip", interval=0.2))  # the answer would take ~25 s
    started = time.monotonic()
    result = upload(budget=3)
    elapsed = time.monotonic() - started
    assert elapsed < 6, elapsed
    assert result.sent == 0 and len(pending(spool_path)) == 3


MEMORY_PROBE = """
import json, resource
import posthog.request, requests
from luxonis_telemetry.backends import _posthog, _transport
from luxonis_telemetry.uploader import upload
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = upload(budget=20)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before": before, "after": after, "pending": result.pending,
                  "error": result.error}))
"""


def test_a_300_mib_answer_does_not_grow_the_uploader(posthog_env: FakePostHog) -> None:
    capture(5)
    posthog_env.set_default(Action("huge", size=300 * 1024 * 1024))
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["pending"] == 5
    assert "oversized" in report["error"]
    grown_mib = (report["after"] - report["before"]) / 1024  # ru_maxrss is in KiB on Linux
    assert grown_mib < 32, report


# ---------------------------------------------------------------- 8.11: purge and disable stop it


@pytest.mark.parametrize("how", ["purge", "disable"])
def test_after_purge_or_disable_returns_no_purged_event_is_sent(
    posthog_env: FakePostHog, spool_path: Path, how: str
) -> None:
    total = 30 * 1000
    capture(total)
    posthog_env.set_default(Action(delay=0.4))
    uploader = cli_upload("--timeout", "120")
    try:
        assert posthog_env.wait_for(1000, timeout=60)
        spool = open_spool()
        assert spool is not None
        if how == "purge":
            report = purge(spool)
        else:
            _path, report = disable(spool)
        assert not report.upload_still_running
        delivered = posthog_env.uuid_counts()
        uploader.communicate(timeout=60)
    finally:
        if uploader.poll() is None:
            uploader.kill()
            uploader.communicate()
    assert posthog_env.uuid_counts() == delivered
    assert sum(delivered.values()) < total
    assert pending(spool_path) == []


# ---------------------------------------------------------------- 8.15: opt-outs send nothing


def opt_out_by(how: str, monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Each way a person says "do not send": environment, stored choice, ./.env."""
    if how == "DO_NOT_TRACK":
        monkeypatch.setenv("DO_NOT_TRACK", "1")
    elif how.startswith("ENABLED="):
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENABLED", how.partition("=")[2])
    elif how.startswith("settings "):
        set_mode(how.partition(" ")[2])
    else:
        (folder / ".env").write_text("DO_NOT_TRACK=1\n")


OPT_OUTS = [
    "DO_NOT_TRACK",
    "ENABLED=0",
    "ENABLED=local",
    "settings off",
    "settings local",
    "dotenv",
]


@pytest.mark.parametrize("opt_out", OPT_OUTS)
def test_any_opt_out_or_local_mode_sends_nothing(
    posthog_env: FakePostHog,
    spool_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    opt_out: str,
) -> None:
    capture(4)
    opt_out_by(opt_out, monkeypatch, tmp_path)
    result = upload(budget=10)
    assert posthog_env.requests == 0
    assert result.blocked is not None and result.ok
    expected = "local mode" if "local" in opt_out else "telemetry is off"
    assert result.blocked.startswith(expected), result.blocked
    assert result.pending == 4 and len(pending(spool_path)) == 4
    assert "nothing sent" in result.summary()


def test_after_disable_upload_says_why(posthog_env: FakePostHog, spool_path: Path) -> None:
    capture(2)
    disable(open_spool())
    result = upload(budget=10)
    assert posthog_env.requests == 0
    assert result.blocked is not None and "luxonis-telemetry disable" in result.blocked
    assert not spool_path.exists()


def test_an_opt_out_during_an_upload_stops_it(posthog_env: FakePostHog, spool_path: Path) -> None:
    capture(12 * 1000)
    posthog_env.set_default(Action(delay=0.3))
    done: list[UploadResult] = []
    runner = threading.Thread(target=lambda: done.append(upload(budget=60)))
    runner.start()
    assert posthog_env.wait_for(1000, timeout=60)
    set_mode("off")
    runner.join(60)
    [result] = done
    assert "telemetry is off" in (result.error or "")
    assert posthog_env.event_count < 12 * 1000
    assert len(pending(spool_path)) + posthog_env.event_count == 12 * 1000


# ---------------------------------------------------------------- 8.18 and 10.4: the key


def test_credentials_in_the_endpoint_never_show(
    monkeypatch: pytest.MonkeyPatch, spool_path: Path
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", KEY)
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", f"http://user:hunter2@127.0.0.1:{free_port()}")
    capture(1)
    result = upload(budget=3)
    assert result.pending == 1
    shown = json.dumps(result.to_json()) + result.summary()
    assert "hunter2" not in shown and "***@127.0.0.1" in shown
    assert "hunter2" not in (spool_path / "state.json").read_text()


def test_a_refused_key_keeps_events_until_it_is_fixed(
    monkeypatch: pytest.MonkeyPatch, spool_path: Path
) -> None:
    """10.4: 401 keeps everything pending, says so, is recorded; the fixed key sends it."""
    with FakePostHog(api_keys=["phc_right"]) as server:
        url = server.url.replace("http://", "http://user:hunter2@")
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", url)
        monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", "phc_wrong")
        capture(3 * 1000)
        result = upload(budget=20)
        assert result.unauthorized and not result.ok and result.sent == 0
        assert server.event_count == 0
        assert "refused the API key (401)" in (result.error or "")
        assert len(pending(spool_path)) == 3000
        assert list(spool_path.glob("quarantine.jsonl")) == []
        failure = Spool(str(spool_path)).read_state().auth_failure
        assert failure is not None and failure["status"] == 401
        assert failure["destination"] == f"posthog {url.replace('user:hunter2', '***')}"
        assert "hunter2" not in (spool_path / "state.json").read_text()

        monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", "phc_right")
        fixed = upload(budget=20)
        assert fixed.ok and fixed.sent == 3000 and not fixed.unauthorized, fixed.summary()
        assert Spool(str(spool_path)).read_state().auth_failure is None
        counts = server.uuid_counts()
        assert len(counts) == 3000 and max(counts.values()) == 1


def test_a_403_is_a_refused_key_too(posthog_env: FakePostHog, spool_path: Path) -> None:
    capture(2)
    posthog_env.set_default(Action("status", 403))
    result = upload(budget=10)
    assert result.unauthorized and len(pending(spool_path)) == 2
    assert posthog_env.requests == 1  # not retried: the key will not get better by waiting


# ---------------------------------------------------------------- many processes


CAPTURE_LOOP = """
import os, sys
from luxonis_telemetry import Telemetry
telemetry = Telemetry("busy")
for n in range(int(sys.argv[1])):
    telemetry.capture("busy.event", {"n": n, "pid": os.getpid()})
"""


def test_captures_during_repeated_uploads_arrive_exactly_once(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    """4 processes x 2,500 captures while uploads run again and again."""
    writers = [
        subprocess.Popen([sys.executable, "-c", CAPTURE_LOOP, "2500"], env=dict(os.environ))
        for _ in range(4)
    ]
    stop = threading.Event()
    results: list[UploadResult] = []

    def keep_uploading() -> None:
        while not stop.is_set():
            results.append(upload(budget=20))

    runner = threading.Thread(target=keep_uploading)
    runner.start()
    try:
        for writer in writers:
            assert writer.wait(timeout=300) == 0
    finally:
        stop.set()
        runner.join(120)
    final = upload(budget=60)
    assert final.ok, final.summary()
    counts = posthog_env.uuid_counts()
    assert len(counts) == 10_000 and max(counts.values()) == 1
    assert len(results) >= 2
    assert pending(spool_path) == []


def test_two_uploads_at_once_send_nothing_twice(posthog_env: FakePostHog) -> None:
    capture(3000)
    posthog_env.set_default(Action(delay=0.02))
    uploads = [cli_upload() for _ in range(2)]
    for each in uploads:
        each.communicate(timeout=120)
    counts = posthog_env.uuid_counts()
    assert len(counts) == 3000 and max(counts.values()) == 1


def test_an_uploader_killed_mid_run_loses_nothing(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    """12.4: several batches in flight, commits in order: SIGKILL loses nothing.

    After the kill, every event the spool no longer holds is on the server;
    the next upload resends at most what was in flight, under the same uuids.
    """
    total = 12 * 1000
    capture(total)
    every = {r["uuid"] for r in pending(spool_path)}
    posthog_env.set_default(Action(delay=0.3))
    process = cli_upload("--timeout", "120")
    try:
        assert posthog_env.wait_for(2000, timeout=60)
        assert wait_until(lambda: posthog_env.in_flight >= 2, 30)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
    received = set(posthog_env.uuid_counts())
    left = {r["uuid"] for r in pending(spool_path)}
    assert every - left <= received, "an event left the spool that the server never stored"
    assert posthog_env.max_in_flight >= 2

    posthog_env.set_default(Action())
    assert upload(budget=60).ok
    counts = posthog_env.uuid_counts()
    assert set(counts) == every
    duplicates = sum(c - 1 for c in counts.values())
    assert duplicates <= 4 * 1000  # at most the batches that were in flight
