"""From spooled lines to acknowledged batches: screening, batching, bisection, acked ranges, order.

Refusals for particular events come from ``FakePostHog`` itself: where PostHog's own
rules cannot single out an event, the test extends the double's per-event check
(``_event_problem``) so that it refuses exactly the events the test names.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig
from luxonis_telemetry._pipeline import (
    BATCH_BYTES,
    BATCH_EVENTS,
    MAX_EVENT_BYTES,
    Chunk,
    Tally,
    chunk_stream,
)
from luxonis_telemetry._reader import BadLine
from luxonis_telemetry._routing import Destination
from luxonis_telemetry.record import encode, new_record
from luxonis_telemetry.spool import Spool
from luxonis_telemetry.testing import Action, FakePostHog
from luxonis_telemetry.testing import _fake_posthog as fake_module
from luxonis_telemetry.uploader import upload

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
A = Destination("posthog", "https://a.example", "k")
B = Destination("posthog", "https://b.example", "k")


def rec(
    n: int = 0, *, library: str = "a", age: timedelta = timedelta(0), **fields: Any
) -> dict[str, Any]:
    made = new_record(
        "capture", event="e", distinct_id="d", library=library, properties={"n": n}, context={}
    )
    made["timestamp"] = (NOW - age).isoformat()
    made.update(fields)
    return made


def items(*entries: Any, size: int = 100) -> list[tuple[int, int, Any]]:
    out, offset = [], 0
    for entry in entries:
        length = entry[1] if isinstance(entry, tuple) else size
        item = entry[0] if isinstance(entry, tuple) else entry
        out.append((offset, offset + length, item))
        offset += length
    return out


def chunks(entries: list[tuple[int, int, Any]], tally: Optional[Tally] = None) -> list[Chunk]:
    def route(library: str) -> Destination:
        return A if library == "a" else B

    return list(
        chunk_stream(
            entries,
            route=route,
            source="seg.test",
            tally=tally or Tally(),
            max_age=30 * DAY,
            now=NOW,
        )
    )


# ---------------------------------------------------------------- screening and batching


def test_batches_hold_at_most_batch_events() -> None:
    found = chunks(items(*[rec(n) for n in range(2 * BATCH_EVENTS + 5)]))
    assert [len(c.records) for c in found] == [BATCH_EVENTS, BATCH_EVENTS, 5]
    assert [c.begin for c in found] == [0, 100 * BATCH_EVENTS, 200 * BATCH_EVENTS]
    assert all(c.end == c.spans[-1][1] for c in found)


def test_batches_stay_under_the_byte_limit() -> None:
    size = MAX_EVENT_BYTES  # the largest event that is sent
    per_batch = BATCH_BYTES // size
    found = chunks(items(*[(rec(n), size) for n in range(2 * per_batch + 1)]))
    assert [len(c.records) for c in found] == [per_batch, per_batch, 1]


def test_a_new_destination_or_lane_starts_a_new_batch() -> None:
    entries = items(rec(1), rec(2), rec(3, library="b"), rec(4, age=3 * DAY), rec(5))
    found = chunks(entries)
    assert [[r["properties"]["n"] for r in c.records] for c in found] == [[1, 2], [3], [4], [5]]
    assert [c.destination for c in found] == [A, B, A, A]
    assert [c.historical for c in found] == [False, False, True, False]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (BadLine("not JSON", b"{oops", 5), "not JSON"),
        ((rec(), MAX_EVENT_BYTES + 1), "event over 900 KiB"),
        (rec(uuid="not-a-uuid"), "uuid is not a UUID"),
        (rec(distinct_id=" \t "), "distinct_id is empty"),
        (rec(event="  "), "event name is empty"),
    ],
)
def test_what_posthog_would_refuse_is_quarantined_before_sending(entry: Any, reason: str) -> None:
    tally = Tally()
    [chunk] = chunks(items(entry, rec(7)), tally)
    assert [r["properties"]["n"] for r in chunk.records] == [7]
    [entry_out] = chunk.quarantine
    assert entry_out["reason"] == reason
    assert entry_out["source"] == "seg.test"
    assert tally.failed == 1
    first_end = MAX_EVENT_BYTES + 1 if isinstance(entry, tuple) else 100
    assert (chunk.begin, chunk.spans) == (0, [(first_end, first_end + 100)])


def test_quarantined_records_keep_their_identity_not_their_content() -> None:
    huge = rec(1)
    huge["properties"] = {"blob": "x" * 10}
    [chunk] = chunks(items((huge, MAX_EVENT_BYTES + 1)))
    [entry] = chunk.quarantine
    assert entry["record"]["uuid"] == huge["uuid"]
    assert "properties" not in entry["record"]


def test_events_past_the_age_cap_are_skipped_and_counted() -> None:
    tally = Tally()
    [chunk] = chunks(items(rec(1, age=31 * DAY), rec(2)), tally)
    assert [r["properties"]["n"] for r in chunk.records] == [2]
    assert tally.skipped == 1
    assert chunk.begin == 0  # the skipped line leaves with the chunk after it


def test_a_source_of_only_unsendable_lines_is_one_chunk_to_commit() -> None:
    tally = Tally()
    [chunk] = chunks(items(BadLine("torn line", b"{", 1), rec(1, age=40 * DAY)), tally)
    assert chunk.records == [] and chunk.end == 200
    assert (tally.failed, tally.skipped) == (1, 1)


def _by_parsing(text: str, max_age: timedelta) -> Optional[bool]:
    """``None`` when too old, else whether historical, by parsing: what comparing text must give."""
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return False
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    if NOW - stamp > max_age:
        return None
    return NOW - stamp > timedelta(hours=48)


def _timestamps() -> list[str]:
    """Our own UTC layout around both cut-offs, and every other spelling near them."""
    texts = []
    for age in (
        timedelta(0),
        timedelta(hours=47, minutes=59, seconds=59, microseconds=999999),
        timedelta(hours=48),
        timedelta(hours=48, microseconds=1),
        timedelta(days=2, hours=1),
        timedelta(days=1, microseconds=-1),
        timedelta(days=1),
        timedelta(days=1, microseconds=1),
        timedelta(days=40),
        timedelta(days=-3),
    ):
        stamp = NOW - age
        texts += [stamp.isoformat(), stamp.replace(microsecond=0).isoformat()]
        texts += [stamp.replace(tzinfo=None).isoformat(), stamp.isoformat(sep=" ")]
        texts += [stamp.astimezone(timezone(timedelta(hours=5))).isoformat()]
        texts += [stamp.astimezone(timezone(timedelta(hours=-5))).isoformat()]
        texts += [
            stamp.isoformat(timespec="milliseconds"),
            stamp.isoformat().replace("+00:00", "Z"),
        ]
    texts += [
        "2026-13-45T99:99:99+00:00",  # our layout, not a time
        "2026-05-30T12:00:00.abcdef+00:00",
        "9999-99-99T99:99:99+00:00",
        "0001-01-01T00:00:00+00:00",
        "2026-05-30t12:00:00+00:00",
        "2026-05-30T12:00:00+00:00 ",
        "not a time",
        "",
    ]
    return texts


@pytest.mark.parametrize("max_age", [30 * DAY, DAY, timedelta(days=10**6)], ids=str)
def test_age_and_lane_by_text_comparison_match_parsing(max_age: timedelta) -> None:
    """12: comparing our own UTC timestamps as text gives what parsing each one gives."""
    texts = _timestamps()
    entries = items(*[rec(n, timestamp=text) for n, text in enumerate(texts)])
    found = list(
        chunk_stream(
            entries, route=lambda _: A, source="s", tally=Tally(), max_age=max_age, now=NOW
        )
    )
    sent = {r["properties"]["n"]: c.historical for c in found for r in c.records}
    assert {n: sent.get(n) for n in range(len(texts))} == {
        n: _by_parsing(text, max_age) for n, text in enumerate(texts)
    }


@pytest.mark.parametrize(
    "uuid",
    [
        "C4F1E648-00DE-49EA-98A8-5A290D17816B",
        "{c4f1e648-00de-49ea-98a8-5a290d17816b}",
        "urn:uuid:c4f1e648-00de-49ea-98a8-5a290d17816b",
        "c4f1e64800de49ea98a85a290d17816b",
    ],
)
def test_every_uuid_spelling_posthog_parses_is_sent(uuid: str) -> None:
    [chunk] = chunks(items(rec(1, uuid=uuid)))
    assert [r["uuid"] for r in chunk.records] == [uuid] and chunk.quarantine == []


# ---------------------------------------------------------------- against a server


@pytest.fixture
def refuse(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[dict[str, Any]], Any]], None]:
    """Make FakePostHog refuse (``_Refusal`` status) any batch holding an event ``rule`` names."""
    original = fake_module._event_problem

    def install(rule: Callable[[dict[str, Any]], Optional[int]]) -> None:
        def problem(index: int, event: dict[str, Any]) -> Any:
            status = rule(event)
            if status is not None:
                return fake_module._Refusal(status, f"event {index} refused by the test")
            return original(index, event)

        monkeypatch.setattr(fake_module, "_event_problem", problem)

    return install


def capture(count: int, library: str = "lib") -> None:
    telemetry = Telemetry(library)
    for n in range(count):
        telemetry.capture("e", {"n": n})


def plant(spool_path: Path, made: dict[str, Any]) -> None:
    spool = Spool(str(spool_path))
    spool.append(made["library"], encode(made))
    spool.close()


def quarantined(spool_path: Path) -> list[dict[str, Any]]:
    path = spool_path / "quarantine.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def pending_uuids(spool_path: Path) -> list[str]:
    return [
        item["uuid"]
        for item in Spool(str(spool_path)).iter_pending()
        if not isinstance(item, BadLine)
    ]


def test_refused_events_in_a_thousand_are_found_and_only_they_quarantined(
    posthog_env: FakePostHog, spool_path: Path, refuse: Callable[..., None]
) -> None:
    """8.20: PostHog refuses a whole request for one event; bisection finds that event.

    What PostHog's rules make obvious (a uuid it cannot parse, a blank
    distinct_id) is screened before sending; two events the server refuses
    for reasons we cannot see are found by splitting the batch.
    """
    poisoned = {100, 700}
    telemetry = Telemetry("lib")
    for n in range(997):
        telemetry.capture("e", {"n": n, "poison": n in poisoned})
    one_hyphen_short = rec(library="lib", uuid="1234567812341234-1234-123456789abc")
    plant(spool_path, one_hyphen_short)
    plant(spool_path, rec(library="lib", uuid="not-a-uuid"))
    plant(spool_path, rec(library="lib", distinct_id="   "))
    refuse(lambda event: 400 if event["properties"].get("poison") is True else None)

    result = upload(budget=60)

    assert (result.sent, result.failed) == (995, 5), result.summary()
    counts = posthog_env.uuid_counts()
    assert len(counts) == 995 and max(counts.values()) == 1
    assert not any(e["properties"].get("poison") for e in posthog_env.events)
    assert pending_uuids(spool_path) == []
    entries = quarantined(spool_path)
    refused = [e for e in entries if e["reason"].startswith("refused by posthog")]
    assert sorted(e["record"]["properties"]["n"] for e in refused) == sorted(poisoned)
    screened = sorted(e["reason"] for e in entries if e not in refused)
    assert screened == ["distinct_id is empty", "uuid is not a UUID", "uuid is not a UUID"]
    assert posthog_env.requests < 60  # a bisection, not one request per event


def test_after_a_413_nothing_acknowledged_is_sent_again(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    """8.24: the first half goes, the second half fails mid-run and alone is resent later."""
    capture(8)
    posthog_env.script(
        Action("status", 413),
        Action(),
        Action("status", 503, retry_after=0.01),
        Action("status", 503, retry_after=0.01),
        Action("status", 503, retry_after=0.01),
    )
    first = upload(budget=30)
    assert first.sent == 4 and not first.ok, first.summary()
    assert len(pending_uuids(spool_path)) == 4
    acked = json.loads(next(spool_path.glob("seg.*.pos")).read_text())
    assert acked["acked"], acked
    before = posthog_env.requests

    second = upload(budget=30)

    assert second.ok and second.sent == 4, second.summary()
    assert posthog_env.requests == before + 1
    counts = posthog_env.uuid_counts()
    assert len(counts) == 8 and max(counts.values()) == 1


def test_a_failed_batch_leaves_later_acknowledged_ones_recorded(
    posthog_env: FakePostHog, spool_path: Path, refuse: Callable[..., None]
) -> None:
    """8.24: batches acknowledged after a failed one are skipped by the next upload."""
    capture(5 * 1000)
    stuck = 1500
    refuse(lambda event: 503 if event["properties"].get("n") == stuck else None)

    first = upload(budget=60)

    assert first.sent == 4000 and not first.ok, first.summary()
    assert "503" in (first.error or "")
    position = json.loads(next(spool_path.glob("seg.*.pos")).read_text())
    assert len(position["acked"]) >= 1
    assert len(pending_uuids(spool_path)) == 1000
    monkeypatched_requests = posthog_env.requests

    refuse(lambda event: None)
    second = upload(budget=60)

    assert second.ok and second.sent == 1000, second.summary()
    assert posthog_env.requests == monkeypatched_requests + 1
    counts = posthog_env.uuid_counts()
    assert len(counts) == 5000 and max(counts.values()) == 1
    assert list(spool_path.glob("seg.*")) == []


def test_several_batches_are_in_flight_for_a_far_away_server(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12.4: latency, not one batch at a time, bounds a far-away upload."""
    with FakePostHog(delay=0.3) as far:
        monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", "phc_test_key_123")
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", far.url)
        capture(5 * 1000)
        result = upload(budget=60)
        assert result.ok and result.sent == 5000, result.summary()
        assert far.max_in_flight >= 2
        assert far.requests == 5
        counts = far.uuid_counts()
        assert len(counts) == 5000 and max(counts.values()) == 1
    assert pending_uuids(spool_path) == []


def test_batches_of_several_segments_are_in_flight_at_once(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12.4: the window of batches in flight does not drain at the end of each segment.

    Five libraries make five segments of one small batch each: sent one
    segment at a time, a single POST would ever be on the wire.
    """
    with FakePostHog(delay=0.3) as far:
        monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", "phc_test_key_123")
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", far.url)
        for library in "abcde":
            capture(200, library=f"lib-{library}")
        result = upload(budget=60)
        assert result.ok and result.sent == 1000, result.summary()
        assert far.requests == 5
        assert far.max_in_flight >= 2
        counts = far.uuid_counts()
        assert len(counts) == 1000 and max(counts.values()) == 1
    assert pending_uuids(spool_path) == []
    assert list(spool_path.glob("seg.*")) == []


def test_a_failing_destination_leaves_the_other_segments_delivered(spool_path: Path) -> None:
    """Segments in flight together still commit each its own batches, in order.

    One library's destination refuses everything while two others, sent to a
    slow healthy one, have batches on the wire at the same time.
    """
    with FakePostHog(delay=0.2) as up, FakePostHog() as down:
        down.set_default(Action("status", 503, retry_after=0.01))
        for library, server in (("lib-a", up), ("lib-down", down), ("lib-b", up)):
            config = TelemetryConfig(api_key="phc_test_key_123", endpoint=server.url)
            telemetry = Telemetry(library, config=config)
            for n in range(1500):
                telemetry.capture("e", {"n": n})
        first = upload(budget=60)
        assert (first.sent, first.pending) == (3000, 1500), first.summary()
        assert set(first.reasons) == {"lib-down"}
        assert up.max_in_flight >= 2
        left = [r for r in Spool(str(spool_path)).iter_pending() if not isinstance(r, BadLine)]
        assert {r["library"] for r in left} == {"lib-down"}
        assert sorted(r["properties"]["n"] for r in left) == list(range(1500))
        down.set_default(Action())
        second = upload(budget=60)
        assert second.ok and second.sent == 1500, second.summary()
        counts = up.uuid_counts() + down.uuid_counts()
        assert len(counts) == 4500 and max(counts.values()) == 1
    assert list(spool_path.glob("seg.*")) == []


def test_a_purge_between_batches_stops_the_pipeline(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8.11 (in process): the segment vanishing stops the run before its next batch."""
    with FakePostHog(delay=0.2) as slow:
        monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", "phc_test_key_123")
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", slow.url)
        capture(12 * 1000)
        spool = Spool(str(spool_path))
        seen: list[int] = []

        def progress(count: int) -> None:
            seen.append(count)
            if len(seen) == 1:
                spool.purge()

        result = upload(budget=60, progress=progress)
        assert result.error == "the events were purged"
        assert slow.event_count < 12 * 1000
        assert list(spool_path.glob("seg.*")) == []
        assert list(spool_path.glob("*.pos")) == []


def test_pending_counts_leave_out_acknowledged_ranges(
    posthog_env: FakePostHog, spool_path: Path, refuse: Callable[..., None]
) -> None:
    capture(3 * 1000)
    refuse(lambda event: 503 if event["properties"].get("n") == 0 else None)
    result = upload(budget=60)
    assert len(pending_uuids(spool_path)) == 1000
    assert result.pending == 1000, result.summary()
