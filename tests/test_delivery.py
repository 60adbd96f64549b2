"""Deliverer: one backend per destination, retries inside the run's deadline, never stuck."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Optional

import pytest

from luxonis_telemetry import TelemetryConfig
from luxonis_telemetry._delivery import MAX_ATTEMPTS, MAX_IN_FLIGHT, Deliverer
from luxonis_telemetry._routing import Destination
from luxonis_telemetry.backends import DeliveryError, TelemetryBackend, register_backend
from luxonis_telemetry.events import TelemetryEvent
from luxonis_telemetry.record import new_record
from luxonis_telemetry.testing import Action, FakePostHog

KEY = "phc_test_key_123"


def records(count: int = 2) -> list[dict[str, Any]]:
    return [
        new_record(
            "capture", event="e", distinct_id="d", library="lib", properties={"n": n}, context={}
        )
        for n in range(count)
    ]


class Scripted:
    """A batch backend: fails with the scripted errors, then accepts."""

    def __init__(self, config: TelemetryConfig) -> None:
        self.config = config
        self.errors: list[DeliveryError] = []
        self.calls: list[tuple[int, bool, float]] = []
        self.accepted: list[str] = []
        self.shut = False

    def send(self, batch: Sequence[Any], *, historical: bool, timeout: float) -> None:
        self.calls.append((len(batch), historical, timeout))
        if self.errors:
            raise self.errors.pop(0)
        self.accepted.extend(r["uuid"] for r in batch)

    def shutdown(self) -> None:
        self.shut = True


@pytest.fixture
def scripted() -> Scripted:
    backend = Scripted(TelemetryConfig())
    register_backend("scripted", lambda _config: backend)
    return backend


@pytest.fixture
def deliverer() -> Iterator[Deliverer]:
    made = Deliverer(time.monotonic() + 20)
    yield made
    made.close()


SCRIPTED = Destination("scripted", None)


def test_a_backend_is_built_once_per_destination(scripted: Scripted, deliverer: Deliverer) -> None:
    assert deliverer.backend(SCRIPTED) is scripted
    assert deliverer.backend(Destination("SCRIPTED", None)) is scripted


@pytest.mark.parametrize(
    ("destination", "reason"),
    [
        (Destination("posthog", "http://127.0.0.1:9"), "no PostHog API key"),
        (Destination("nowhere", None), "unknown backend 'nowhere'"),
        (Destination("noop", None), "the noop backend delivers nothing"),
        (Destination("stdout", None), "the stdout backend delivers nothing"),
    ],
)
def test_destinations_that_cannot_deliver_say_why(
    deliverer: Deliverer, destination: Destination, reason: str
) -> None:
    """8.19: debug and noop backends are never upload destinations (never counted as sent)."""
    assert deliverer.backend(destination) is None
    assert reason in deliverer.unavailable[destination]


def test_transient_failures_are_retried_within_the_deadline(
    scripted: Scripted, deliverer: Deliverer
) -> None:
    deliverer.backend(SCRIPTED)
    scripted.errors = [DeliveryError("busy", retry_after=0.05)] * (MAX_ATTEMPTS - 1)
    deliverer.send(SCRIPTED, records(), historical=True)
    assert len(scripted.calls) == MAX_ATTEMPTS
    assert all(historical for _n, historical, _t in scripted.calls)
    assert all(0 < timeout <= 10 for _n, _h, timeout in scripted.calls)
    assert len(scripted.accepted) == 2


def test_retries_stop_after_the_last_attempt(scripted: Scripted, deliverer: Deliverer) -> None:
    deliverer.backend(SCRIPTED)
    scripted.errors = [DeliveryError("busy", retry_after=0.01)] * (MAX_ATTEMPTS + 1)
    with pytest.raises(DeliveryError, match="busy"):
        deliverer.send(SCRIPTED, records(), historical=False)
    assert len(scripted.calls) == MAX_ATTEMPTS


@pytest.mark.parametrize(
    "kind",
    [
        DeliveryError.UNAUTHORIZED,
        DeliveryError.INVALID,
        DeliveryError.TOO_LARGE,
        DeliveryError.REJECTED,
    ],
)
def test_only_transient_failures_are_retried(
    scripted: Scripted, deliverer: Deliverer, kind: str
) -> None:
    deliverer.backend(SCRIPTED)
    scripted.errors = [DeliveryError("no", kind=kind)]
    with pytest.raises(DeliveryError) as raised:
        deliverer.send(SCRIPTED, records(), historical=False)
    assert raised.value.kind == kind
    assert len(scripted.calls) == 1


def test_a_retry_that_would_outlast_the_deadline_is_not_made(scripted: Scripted) -> None:
    deliverer = Deliverer(time.monotonic() + 2)
    try:
        deliverer.backend(SCRIPTED)
        scripted.errors = [DeliveryError("busy", retry_after=30)]
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="busy"):
            deliverer.send(SCRIPTED, records(), historical=False)
        assert time.monotonic() - started < 2
        assert len(scripted.calls) == 1
    finally:
        deliverer.close()


def test_nothing_is_sent_after_the_deadline(scripted: Scripted) -> None:
    deliverer = Deliverer(time.monotonic() - 1)
    try:
        deliverer.backend(SCRIPTED)
        with pytest.raises(DeliveryError, match="time budget exhausted"):
            deliverer.send(SCRIPTED, records(), historical=False)
        assert scripted.calls == []
    finally:
        deliverer.close()


def test_jobs_run_on_daemon_workers_and_report_errors(
    scripted: Scripted, deliverer: Deliverer
) -> None:
    deliverer.backend(SCRIPTED)
    scripted.errors = [DeliveryError("refused", kind=DeliveryError.INVALID)]
    first = deliverer.submit(SCRIPTED, records(), historical=False)
    second = deliverer.submit(SCRIPTED, records(), historical=False)
    assert first.wait(10) and second.wait(10)
    errors = [job.error for job in (first, second)]
    assert sum(isinstance(e, DeliveryError) for e in errors) == 1
    workers = [t for t in threading.enumerate() if t.name == "luxonis-telemetry-send"]
    assert workers and all(t.daemon for t in workers)


def test_without_threads_a_job_runs_inline(scripted: Scripted) -> None:
    deliverer = Deliverer(time.monotonic() + 10, threads=False)
    try:
        deliverer.backend(SCRIPTED)
        before = threading.active_count()
        job = deliverer.submit(SCRIPTED, records(), historical=False)
        assert job.done() and job.error is None
        assert threading.active_count() == before
        assert deliverer.depth(SCRIPTED) == 1
    finally:
        deliverer.close()


def test_a_backend_stuck_forever_never_holds_the_caller(deliverer: Deliverer) -> None:
    release = threading.Event()

    class Stuck:
        def send(self, batch: Sequence[Any], *, historical: bool, timeout: float) -> None:
            release.wait()

    register_backend("stuck", lambda _config: Stuck())
    destination = Destination("stuck", None)
    deliverer.backend(destination)
    job = deliverer.submit(destination, records(), historical=False)
    assert not job.wait(0.2)
    deliverer.close()  # returns although a worker is stuck inside the backend
    release.set()
    assert job.wait(10)


def test_posthog_gets_several_batches_in_flight_custom_backends_one(
    scripted: Scripted, deliverer: Deliverer, server: FakePostHog
) -> None:
    posthog = Destination("posthog", server.url, KEY)
    assert deliverer.backend(posthog) is not None
    assert deliverer.depth(posthog) == MAX_IN_FLIGHT > 1
    deliverer.backend(SCRIPTED)
    assert deliverer.depth(SCRIPTED) == 1


def test_posthog_failures_are_retried_against_a_real_server(
    deliverer: Deliverer, server: FakePostHog
) -> None:
    server.script(Action("status", 503, retry_after=0.05), Action("close"))
    posthog = Destination("posthog", server.url, KEY)
    deliverer.backend(posthog)
    batch = records(3)
    deliverer.send(posthog, batch, historical=False)
    assert server.requests == 3
    assert sorted(server.uuid_counts()) == sorted(r["uuid"] for r in batch)


# ---------------------------------------------------------------- luxonis-ml style


class MlBackend(TelemetryBackend):
    seen: ClassVar[list[Any]] = []
    fail: ClassVar[Optional[BaseException]] = None

    def capture(self, event: TelemetryEvent) -> None:
        if MlBackend.fail is not None:
            raise MlBackend.fail
        MlBackend.seen.append(("capture", event))

    def identify(self, user_id: str, traits: dict[str, Any]) -> None:
        MlBackend.seen.append(("identify", user_id, traits))

    def flush(self) -> None:
        MlBackend.seen.append(("flush",))


def test_luxonis_ml_backends_get_events_then_flush(deliverer: Deliverer) -> None:
    MlBackend.seen, MlBackend.fail = [], None
    register_backend("ml", MlBackend)
    destination = Destination("ml", None)
    assert deliverer.backend(destination) is not None
    assert deliverer.depth(destination) == 1
    batch = records(2)
    batch.append(
        new_record(
            "identify", event="$identify", distinct_id="u", library="lib", properties={"t": 1},
            context={},
        )
    )  # fmt: skip
    deliverer.send(destination, batch, historical=False)
    kinds = [entry[0] for entry in MlBackend.seen]
    assert kinds == ["capture", "capture", "identify", "flush"]
    assert [entry[1].uuid for entry in MlBackend.seen[:2]] == [r["uuid"] for r in batch[:2]]
    assert MlBackend.seen[2][1:] == ("u", {"t": 1})


def test_a_luxonis_ml_backend_exception_is_a_transient_failure(deliverer: Deliverer) -> None:
    MlBackend.seen, MlBackend.fail = [], ValueError("disk full")
    register_backend("ml", MlBackend)
    destination = Destination("ml", None)
    deliverer.backend(destination)
    try:
        with pytest.raises(DeliveryError) as raised:
            deliverer.send(destination, records(1), historical=False)
    finally:
        MlBackend.fail = None
    assert raised.value.kind == DeliveryError.TRANSIENT
    assert "ValueError: disk full" in str(raised.value)


def test_close_shuts_backends_down(scripted: Scripted) -> None:
    deliverer = Deliverer(time.monotonic() + 5)
    deliverer.backend(SCRIPTED)
    deliverer.close()
    assert scripted.shut


@pytest.mark.allow_internal_errors
def test_a_failing_shutdown_is_contained() -> None:
    class BadShutdown:
        def send(self, batch: Sequence[Any], *, historical: bool, timeout: float) -> None:
            pass

        def shutdown(self) -> None:
            raise RuntimeError("nope")

    register_backend("bad", lambda _config: BadShutdown())
    deliverer = Deliverer(time.monotonic() + 5)
    deliverer.backend(Destination("bad", None))
    deliverer.close()


def test_failing_destinations_are_remembered_once(deliverer: Deliverer) -> None:
    destination = Destination("scripted", None)
    deliverer.mark_failing(destination, DeliveryError("first"))
    deliverer.mark_failing(destination, DeliveryError("second"))
    assert str(deliverer.failing[destination]) == "first"
