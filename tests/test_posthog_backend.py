"""PostHogBackend: the message PostHog receives, the request that carries it, the answer it needs.

Everything goes to a real loopback server: ``FakePostHog`` where PostHog's rules
matter, a few lines of ``http.server`` where the raw request itself is the point.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig, TelemetryDefaults, get_or_init
from luxonis_telemetry.backends import BackendUnavailable, DeliveryError, PostHogBackend
from luxonis_telemetry.backends._posthog import (
    LIB_NAME,
    NO_IP,
    SENT_AT_TRUST_SECONDS,
    to_posthog_message,
)
from luxonis_telemetry.backends._transport import BoundedAdapter
from luxonis_telemetry.context import system_context_provider
from luxonis_telemetry.record import new_record
from luxonis_telemetry.testing import Action, FakePostHog
from luxonis_telemetry.uploader import upload
from tests.conftest import spool_records

KEY = "phc_test_key_123"
CONTEXT = {
    "os": "Plan9",
    "os_version": "4",
    "python_version": "2.7.18",
    "library_name": "lib",
    "library_version": "1.2.3",
    "session_id": "5b9a3c1e-0c7d-4c55-8d8e-1d2f3a4b5c6d",
    "install_id": "0f1e2d3c-4b5a-4968-8776-655443322110",
    "ci": False,
    "source_component": "lib-cli",
}


def record(
    *,
    kind: str = "capture",
    event: str = "e",
    properties: Optional[dict[str, Any]] = None,
    context: Optional[dict[str, Any]] = None,
    age: Optional[timedelta] = None,
    distinct_id: str = "d-1",
) -> dict[str, Any]:
    made = new_record(
        kind,
        event=event,
        distinct_id=distinct_id,
        library="lib",
        properties={"n": 1} if properties is None else properties,
        context=dict(CONTEXT) if context is None else context,
    )
    if age is not None:
        made["timestamp"] = (datetime.now(timezone.utc) - age).isoformat()
    return made


_BUILT: list[PostHogBackend] = []


def backend_for(url: str, **config: Any) -> PostHogBackend:
    backend = PostHogBackend(TelemetryConfig(api_key=KEY, endpoint=url, **config))
    _BUILT.append(backend)
    return backend


@pytest.fixture(autouse=True)
def _close_backends() -> Iterator[None]:
    """Each backend's pooled connections are closed, as the uploader does after a run."""
    yield
    while _BUILT:
        _BUILT.pop().shutdown()


# ---------------------------------------------------------------- the message


def test_message_keeps_uuid_time_identity_and_capture_time_context() -> None:
    made = record()
    message = to_posthog_message(made)
    assert {k: message[k] for k in ("event", "distinct_id", "timestamp", "uuid")} == {
        k: made[k] for k in ("event", "distinct_id", "timestamp", "uuid")
    }
    props = message["properties"]
    # the capturing machine's facts, not the uploading one's
    assert (props["$os"], props["$os_version"], props["$python_version"]) == (
        "Plan9",
        "4",
        "2.7.18",
    )
    assert props["n"] == 1
    assert props["$lib"] == LIB_NAME
    assert props["$is_server"] is True
    assert props["schema_version"] == 1


def test_luxonis_ml_reserved_keys_are_derived_from_the_record() -> None:
    props = to_posthog_message(record())["properties"]
    assert props["$process_person_profile"] is False
    assert props["$session_id"] == CONTEXT["session_id"]
    assert props["source_product"] == "lib"
    assert props["source_component"] == "lib-cli"
    assert props["sdk_version"] == "1.2.3"


def test_properties_never_set_dollar_keys_nor_replace_context() -> None:
    """8.16: even a record that never met the sanitizer (a bundle, a hand edit)."""
    hostile = {
        "$set": {"email": "someone@example.com"},
        "$geoip_disable": False,
        "$ip": "203.0.113.9",
        "$process_person_profile": True,
        "$lib": "evil",
        "os": "TempleOS",
        "session_id": "forged",
        "source_product": "forged",
        "kept": "yes",
    }
    props = to_posthog_message(record(properties=hostile))["properties"]
    assert "$set" not in props
    assert props["$geoip_disable"] is True
    assert props["$ip"] == NO_IP
    assert props["$process_person_profile"] is False
    assert props["$lib"] == LIB_NAME
    assert props["os"] == "Plan9"
    assert props["session_id"] == CONTEXT["session_id"]
    assert props["source_product"] == "lib"
    assert props["kept"] == "yes"


def test_properties_captured_with_dollar_keys_never_reach_posthog(
    posthog_env: FakePostHog,
) -> None:
    Telemetry("lib").capture(
        "e", {"$set": {"plan": "x"}, "$geoip_disable": False, "$ip": "203.0.113.9", "ok": 1}
    )
    assert upload(budget=20).ok
    [event] = posthog_env.events
    props = event["properties"]
    assert "$set" not in props
    assert (props["$geoip_disable"], props["$ip"], props["ok"]) == (True, NO_IP, 1)


# ---------------------------------------------------------------- 8.21: whose clock


def test_fresh_local_events_keep_posthogs_clock_correction() -> None:
    assert "$ignore_sent_at" not in to_posthog_message(record())["properties"]
    near = record(age=timedelta(seconds=SENT_AT_TRUST_SECONDS - 60))
    assert "$ignore_sent_at" not in to_posthog_message(near)["properties"]


@pytest.mark.parametrize(
    "age", [timedelta(hours=1, minutes=1), timedelta(days=3), timedelta(hours=-2)]
)
def test_events_far_from_now_keep_their_recorded_time(age: timedelta) -> None:
    """Captured over an hour before (or after) the upload: today's skew says nothing about then."""
    props = to_posthog_message(record(age=age))["properties"]
    assert props["$ignore_sent_at"] is True


def test_unreadable_timestamps_are_not_corrected() -> None:
    made = record()
    made["timestamp"] = "yesterday-ish"
    assert to_posthog_message(made)["properties"]["$ignore_sent_at"] is True


def test_another_machines_clock_is_never_corrected() -> None:
    props = to_posthog_message(record(), trust_sent_at=False)["properties"]
    assert props["$ignore_sent_at"] is True


def test_upload_marks_only_old_events(posthog_env: FakePostHog, spool_path: Path) -> None:
    from luxonis_telemetry.record import encode
    from luxonis_telemetry.spool import Spool

    spool = Spool(str(spool_path))
    for name, age in (("fresh", timedelta(0)), ("old", timedelta(hours=5))):
        spool.append("lib", encode(record(event=name, age=age)))
    assert upload(budget=20).ok
    flags = {e["event"]: e["properties"].get("$ignore_sent_at") for e in posthog_env.events}
    assert flags == {"fresh": None, "old": True}


# ---------------------------------------------------------------- 8.22: identify


def test_identify_links_the_install_id(posthog_env: FakePostHog, spool_path: Path) -> None:
    telemetry = Telemetry("lib")
    telemetry.capture("before")
    telemetry.identify("user-9", {"plan": "pro", "$set_once": {"x": 1}})
    assert upload(budget=20).ok
    before, identify = sorted(posthog_env.events, key=lambda e: e["event"] != "before")
    install_id = telemetry.install_id
    assert install_id and before["distinct_id"] == install_id
    assert identify["event"] == "$identify"
    assert identify["distinct_id"] == "user-9"
    props = identify["properties"]
    assert props["$set"] == {"plan": "pro"}
    assert props["$anon_distinct_id"] == install_id
    assert "$process_person_profile" not in props
    assert before["properties"]["$process_person_profile"] is False


def test_identify_never_carries_process_person_profile_even_from_context() -> None:
    context = {**CONTEXT, "$process_person_profile": False, "anon_distinct_id": "anon-1"}
    message = to_posthog_message(
        record(kind="identify", event="$identify", properties={"a": 1}, context=context)
    )
    assert "$process_person_profile" not in message["properties"]
    assert message["properties"]["$anon_distinct_id"] == "anon-1"


# ---------------------------------------------------------------- 8.23: the address


def test_by_default_the_address_is_a_placeholder_and_geoip_is_off(
    posthog_env: FakePostHog,
) -> None:
    Telemetry("lib").capture("e")
    assert upload(budget=20).ok
    [event] = posthog_env.events
    assert event["properties"]["$ip"] == NO_IP == "0.0.0.0"  # noqa: S104 - not a bind
    assert event["properties"]["$geoip_disable"] is True


def test_a_library_that_turns_geoip_on_sends_neither(server: FakePostHog, spool_path: Path) -> None:
    config = TelemetryConfig(api_key=KEY, endpoint=server.url, disable_geoip=False)
    Telemetry("geo", config=config).capture("e")
    recorded = json.loads((spool_path / "destinations.json").read_text())
    assert recorded["libraries"]["geo"]["disable_geoip"] is False
    assert upload(budget=20).ok  # a plain upload: the choice comes from destinations.json
    [event] = server.events
    assert "$ip" not in event["properties"]
    assert "$geoip_disable" not in event["properties"]


# ---------------------------------------------------------------- 9.8: luxonis-ml's keys


def _luxonis_ml_capture(
    url: str, distinct_id: str, properties: dict[str, Any], *, system: bool
) -> None:
    """What luxonis-ml 0.10.2's PostHogBackend does for one capture (backends/posthog.py).

    Its context is ``base_context`` (context.py), plus the system context
    provider's keys when system metadata is asked for; ``_merge_properties`` adds
    the properties and ``schema_version``; the official client adds its own keys
    (``$lib``, ``$os``, ...). luxonis-ml's ``disable_geoip`` defaults to False.
    """
    from posthog import Posthog

    context = {
        "$process_person_profile": False,
        "$session_id": "5b9a3c1e-0c7d-4c55-8d8e-1d2f3a4b5c6d",
        "source_product": "hubai_sdk",
        "source_component": "hubai-sdk",
        "sdk_version": "0.10.2",
    }
    if system:
        context.update(system_context_provider(None))
    merged = {**context, **properties, "schema_version": 1}
    client = Posthog(KEY, host=url, sync_mode=True, disable_geoip=False)
    client.capture(
        distinct_id=distinct_id,
        event="convert.start",
        properties=merged,
        timestamp=datetime.now(timezone.utc),
    )


def _ours(url: str, distinct_id: str, properties: dict[str, Any], *, system: bool) -> None:
    """The caller pattern of issue 9, with luxonis_ml.telemetry spelled luxonis_telemetry."""
    defaults = TelemetryDefaults(api_key=KEY, endpoint=url, disable_geoip=False)
    telemetry = get_or_init(
        "hubai_sdk",
        source_component="hubai-sdk",
        library_version="0.10.2",
        config=TelemetryConfig.from_environ(defaults=defaults),
        system_context_providers=[system_context_provider],
    )
    telemetry.capture(
        "convert.start", properties, include_system_metadata=system, distinct_id=distinct_id
    )
    result = upload(budget=20)
    assert result.ok, result.summary()


# Same key, deliberately different value: the SDK that sent it, and luxonis-ml's session
# (one per Telemetry instance there, one per process here).
_OWN_VALUES = {"$lib", "$lib_version", "$session_id"}


def _both(system: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    properties = {"model": "yolo", "epochs": 3}
    with FakePostHog() as theirs, FakePostHog() as ours:
        _luxonis_ml_capture(theirs.url, "run-42", properties, system=system)
        _ours(ours.url, "run-42", properties, system=system)
        [reference] = theirs.events
        [event] = ours.events
    assert event["distinct_id"] == reference["distinct_id"] == "run-42"
    assert event["event"] == reference["event"]
    return reference["properties"], event["properties"]


@pytest.mark.parametrize("system", [True, False], ids=["system-metadata", "base-only"])
def test_every_key_luxonis_ml_sends_reaches_posthog_with_its_meaning(system: bool) -> None:
    theirs, ours = _both(system)
    missing = set(theirs) - set(ours)
    assert not missing, f"keys luxonis-ml sends that we do not: {sorted(missing)}"
    differing = {
        key: (theirs[key], ours[key])
        for key in set(theirs) & set(ours)
        if key not in _OWN_VALUES and theirs[key] != ours[key]
    }
    assert not differing, differing


# ---------------------------------------------------------------- the wire


class _Recorder(ThreadingHTTPServer):
    """Keeps each request's path, headers and raw body; answers ``answer`` (PostHog's ack)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.paths: list[str] = []
        self.answer: tuple[int, dict[str, str], bytes] = (200, {}, b'{"status": 1}')
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.server.paths.append(self.path)
        status, headers, answer = self.server.answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    yield server
    server.close()


def _decoded(seen: tuple[dict[str, str], bytes]) -> dict[str, Any]:
    headers, body = seen
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    data = json.loads(body)
    assert isinstance(data, dict)
    return data


def _wire_cases() -> dict[str, list[dict[str, Any]]]:
    """Batches whose messages take every path of our encoder."""
    hostile = record(properties={"$set": {"a": 1}, "os": "forged", "kept": "yes"})
    nan = record(properties={"loss": float("nan"), "best": float("inf"), "ok": 1.5})
    return {
        "plain": [record(), record(event="other", age=timedelta(days=3))],
        "mixed": [hostile, record(kind="identify", event="$identify"), record(properties={})],
        "nan": [record(), nan],
    }


@pytest.mark.parametrize("case", ["plain", "mixed", "nan"])
@pytest.mark.parametrize("slash", ["", "/"], ids=["host", "host-slash"])
def test_the_request_is_posthogs_batch_post(recorder: _Recorder, case: str, slash: str) -> None:
    """8.7/12: our own request is the one posthog's batch_post sends, byte for byte decoded.

    Same URL, headers and JSON body (``sent_at`` aside); a batch holding NaN
    (a hand-edited spool) is written by posthog's own encoder, NaN as null.
    """
    from posthog.request import batch_post
    from posthog.version import VERSION

    records = _wire_cases()[case]
    backend = backend_for(recorder.url + slash)
    backend.send(records, historical=True, timeout=5)
    batch_post(
        KEY,
        host=recorder.url + slash,
        gzip=True,
        timeout=5,
        batch=backend.messages(records),
        historical_migration=True,
    )
    ours, official = recorder.seen
    assert recorder.paths == ["/batch/", "/batch/"]
    assert ours[0]["user-agent"] == official[0]["user-agent"] == f"posthog-python/{VERSION}"
    for header in ("content-type", "content-encoding"):
        assert ours[0][header] == official[0][header]
    mine, theirs = _decoded(ours), _decoded(official)
    assert list(mine) == list(theirs) == ["batch", "historical_migration", "sent_at", "api_key"]
    mine.pop("sent_at"), theirs.pop("sent_at")
    assert json.dumps(mine, sort_keys=True) == json.dumps(theirs, sort_keys=True)  # types too
    if case == "nan":
        assert mine["batch"][1]["properties"]["loss"] is None


def _exact(value: Any) -> str:
    """JSON that tells 1, 1.0 and True apart (``==`` does not)."""
    return json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("geoip", [True, False], ids=["geoip-off", "geoip-on"])
@pytest.mark.parametrize("trust", [True, False], ids=["local", "bundle"])
def test_the_batch_is_exactly_the_messages(geoip: bool, trust: bool) -> None:
    """12: the batch written from pieces equals ``to_posthog_message`` of every record.

    Contexts that are equal as dicts but not as JSON (``1 == 1.0 == True``),
    nested ones, properties that collide with context keys or carry ``$``
    keys, identify records and timestamps of every kind are mixed in one batch.
    """
    from luxonis_telemetry.backends._posthog import _batch_json

    flag_int = {**CONTEXT, "ci": 0}
    flag_float = {**CONTEXT, "ci": 0.0, "cpus": 8}
    nested = {**CONTEXT, "gpu": {"count": 1, "ok": True}}
    nested_bool = {**CONTEXT, "gpu": {"count": True, "ok": True}}
    records = [
        record(),
        record(context=flag_int),
        record(context=flag_float),
        record(context={**flag_float, "cpus": 8.0}),
        record(context=nested),
        record(context=nested_bool),
        record(context={}),
        record(properties={}),
        record(properties={"os": "forged", "$lib": "evil", "$set": {"x": 1}, "kept": [1, None]}),
        record(properties={"text": 'caf\u00e9 \u2603 "quoted" \\ \n\u0000', "n": -0.5e-300}),
        record(kind="identify", event="$identify", properties={"plan": "pro", "$set_once": 1}),
        record(context={**CONTEXT, "anon_distinct_id": "anon-1"}, kind="identify"),
        record(age=timedelta(hours=2)),
        record(age=timedelta(hours=-2)),
        record(age=timedelta(days=3)),
        record(),
    ]
    for text in ("yesterday-ish", "2026-11-29T09:41:99+00:00", "2026-06-01T12:00:00"):
        odd = record()
        odd["timestamp"] = text
        records.append(odd)
    now = time.time()
    options = {"disable_geoip": geoip, "trust_sent_at": trust, "now": now}
    expected = [to_posthog_message(made, **options) for made in records]  # type: ignore[arg-type]
    written = json.loads(_batch_json(records, **options))  # type: ignore[arg-type]
    assert [_exact(message) for message in written] == [_exact(message) for message in expected]


def test_the_session_is_our_bounded_transport() -> None:
    backend = backend_for("https://example.invalid")
    for url in ("http://x/batch/", "https://x/batch/"):
        assert isinstance(backend._session.get_adapter(url), BoundedAdapter)


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize("ack", [1, "Ok", "ok"])
def test_both_acknowledgements_are_accepted(ack: object) -> None:
    with FakePostHog(ack=ack) as server:  # type: ignore[arg-type]
        backend_for(server.url).send([record()], historical=False, timeout=5)
        assert server.event_count == 1


@pytest.mark.parametrize(
    "action",
    [
        Action("html"),
        Action("empty"),
        Action("body", body=b'{"status": 0}'),
        Action("body", body=b'{"status": true}'),
        Action("body", body=b"[1]"),
        Action("body", body=b"OK"),
    ],
    ids=["html", "empty", "status-0", "status-true", "list", "plain-ok"],
)
def test_a_200_without_acknowledgement_is_not_a_delivery(
    server: FakePostHog, action: Action
) -> None:
    server.set_default(action)
    with pytest.raises(DeliveryError) as raised:
        backend_for(server.url).send([record()], historical=False, timeout=5)
    assert raised.value.kind == DeliveryError.TRANSIENT
    assert "without a PostHog acknowledgement" in str(raised.value)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, DeliveryError.INVALID),
        (401, DeliveryError.UNAUTHORIZED),
        (403, DeliveryError.UNAUTHORIZED),
        (413, DeliveryError.TOO_LARGE),
        (422, DeliveryError.INVALID),
        (429, DeliveryError.TRANSIENT),
        (503, DeliveryError.TRANSIENT),
    ],
)
def test_statuses_are_classified(server: FakePostHog, status: int, kind: str) -> None:
    server.set_default(Action("status", status, retry_after=7))
    with pytest.raises(DeliveryError) as raised:
        backend_for(server.url).send([record()], historical=False, timeout=5)
    assert (raised.value.kind, raised.value.status) == (kind, status)
    if status in (429, 503):
        assert raised.value.retry_after == 7


@pytest.mark.parametrize("form", ["seconds", "http-date", "garbage"])
def test_retry_after_is_read_in_seconds_or_as_an_http_date(recorder: _Recorder, form: str) -> None:
    from email.utils import format_datetime

    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    value = {"seconds": "30", "http-date": format_datetime(later, usegmt=True), "garbage": "soon"}
    recorder.answer = (503, {"Retry-After": value[form]}, b'{"detail": "busy"}')
    with pytest.raises(DeliveryError) as raised:
        backend_for(recorder.url).send([record()], historical=False, timeout=5)
    assert (raised.value.kind, raised.value.status) == (DeliveryError.TRANSIENT, 503)
    if form == "garbage":
        assert raised.value.retry_after is None
    else:
        assert raised.value.retry_after is not None
        assert 20 < raised.value.retry_after <= 30


def test_an_unknown_key_is_unauthorized() -> None:
    with FakePostHog(api_keys=["phc_other"]) as server, pytest.raises(DeliveryError) as raised:
        backend_for(server.url).send([record()], historical=False, timeout=5)
    assert raised.value.kind == DeliveryError.UNAUTHORIZED
    assert "LUXONIS_TELEMETRY_API_KEY" in str(raised.value)


def test_no_key_means_no_backend() -> None:
    with pytest.raises(BackendUnavailable, match="API key"):
        PostHogBackend(TelemetryConfig(endpoint="http://127.0.0.1:9"))


def test_credentials_in_the_endpoint_are_never_shown() -> None:
    """8.18: repr and every error name the host without its userinfo."""
    from tests.conftest import free_port

    url = f"http://user:hunter2@127.0.0.1:{free_port()}"
    backend = backend_for(url)
    assert "hunter2" not in repr(backend)
    with pytest.raises(DeliveryError) as raised:
        backend.send([record()], historical=False, timeout=2)
    assert "hunter2" not in str(raised.value)
    assert "***@127.0.0.1" in str(raised.value)


def test_messages_are_what_send_puts_on_the_wire(server: FakePostHog) -> None:
    records = [record(), record(event="x")]
    backend = backend_for(server.url)
    expected = backend.messages(records)
    backend.send(records, historical=False, timeout=5)
    assert server.events == expected


def test_send_gives_up_at_its_timeout(server: FakePostHog) -> None:
    server.set_default(Action("hang"))
    started = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        backend_for(server.url).send([record()], historical=False, timeout=1)
    assert raised.value.kind == DeliveryError.TRANSIENT
    assert time.monotonic() - started < 6


def test_spooled_records_round_trip(posthog_env: FakePostHog, spool_path: Path) -> None:
    Telemetry("lib").capture("e", {"k": "v"})
    [stored] = spool_records(spool_path)
    assert upload(budget=20).ok
    [event] = posthog_env.events
    assert event == to_posthog_message(stored, now=time.time())  # type: ignore[arg-type]
