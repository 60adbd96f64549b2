"""TelemetryEvent: what a backend written for luxonis-ml receives, built from the spooled record."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from luxonis_telemetry import Telemetry
from luxonis_telemetry.events import TelemetryEvent
from luxonis_telemetry.record import new_record
from tests.conftest import spool_records

# luxonis-ml 0.10.2, telemetry/events.py: the dataclass a backend's capture() receives.
LUXONIS_ML_FIELDS = ("name", "timestamp", "properties", "context", "distinct_id", "schema_version")
LUXONIS_ML_PAYLOAD = {
    "event",
    "timestamp",
    "distinct_id",
    "properties",
    "context",
    "schema_version",
}


def test_fields_are_luxonis_mls_in_the_same_order() -> None:
    names = tuple(f.name for f in dataclasses.fields(TelemetryEvent))
    assert names[: len(LUXONIS_ML_FIELDS)] == LUXONIS_ML_FIELDS
    defaults = {f.name: f.default for f in dataclasses.fields(TelemetryEvent)}
    assert defaults["distinct_id"] is None
    assert defaults["schema_version"] == 1


def test_positional_construction_as_luxonis_ml_wrote_it() -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    event = TelemetryEvent("e", stamp, {"a": 1}, {"b": 2}, "d", 1)
    assert (event.name, event.timestamp, event.distinct_id) == ("e", stamp, "d")
    assert len(event.uuid) == 36


def test_events_are_frozen() -> None:
    event = TelemetryEvent.create(name="e", properties={}, context={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "other"  # type: ignore[misc]


def test_create_stamps_utc_now() -> None:
    before = datetime.now(timezone.utc)
    event = TelemetryEvent.create(name="e", properties={"p": 1}, context={}, distinct_id="x")
    assert event.timestamp.tzinfo is not None
    assert before <= event.timestamp <= datetime.now(timezone.utc)
    assert event.distinct_id == "x"


def test_payload_has_luxonis_mls_keys_plus_uuid_and_is_json() -> None:
    event = TelemetryEvent.create(name="e", properties={"p": 1}, context={"c": 2})
    payload = event.to_payload()
    assert set(payload) == LUXONIS_ML_PAYLOAD | {"uuid"}
    assert payload["event"] == "e"
    assert payload["timestamp"] == event.timestamp.isoformat()
    assert json.loads(json.dumps(payload)) == payload


def test_from_a_spooled_record_keeps_uuid_time_and_derives_luxonis_ml_context(
    spool_path: Path,
) -> None:
    Telemetry("lib", source_component="lib-cli", library_version="2.0").capture("e", {"p": 1})
    [stored] = spool_records(spool_path)
    event = TelemetryEvent.from_record(stored)
    assert event.uuid == stored["uuid"]
    assert event.timestamp == datetime.fromisoformat(stored["timestamp"])
    assert (event.name, event.distinct_id, event.properties) == (
        "e",
        stored["distinct_id"],
        {"p": 1},
    )
    assert event.type == "capture"
    context = event.context
    assert context["$process_person_profile"] is False
    assert context["$session_id"] == stored["context"]["session_id"]
    assert (context["source_product"], context["source_component"]) == ("lib", "lib-cli")
    assert context["sdk_version"] == "2.0"
    for key, value in stored["context"].items():
        assert context[key] == value
    assert event.to_payload()["uuid"] == stored["uuid"]


def test_a_record_without_offset_is_read_as_utc() -> None:
    record = new_record(
        "capture", event="e", distinct_id="d", library="l", properties={}, context={}
    )
    record["timestamp"] = "2026-01-02T03:04:05.000006"
    event = TelemetryEvent.from_record(record)
    assert event.timestamp == datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)


def test_identify_records_keep_their_type() -> None:
    record = new_record(
        "identify", event="$identify", distinct_id="u", library="l", properties={"t": 1}, context={}
    )
    event = TelemetryEvent.from_record(record)
    assert (event.type, event.name, event.properties) == ("identify", "$identify", {"t": 1})


def test_the_record_is_not_shared_with_the_backend() -> None:
    record = new_record(
        "capture", event="e", distinct_id="d", library="l", properties={"p": 1}, context={"c": 1}
    )
    event = TelemetryEvent.from_record(record)
    event.properties["p"] = 2
    event.context["c"] = 2
    assert record["properties"] == {"p": 1}
    assert record["context"] == {"c": 1}
