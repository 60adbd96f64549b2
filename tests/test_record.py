"""The spooled record: fixed at capture, one valid JSON line, luxonis-ml's keys derived at upload."""

from __future__ import annotations

import enum
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from luxonis_telemetry._ids import is_uuid, new_uuid4
from luxonis_telemetry.record import (
    MAX_RECORD_BYTES,
    RECORD_VERSION,
    encode,
    encode_context,
    new_record,
    now_iso,
    validate,
    wire_context,
)
from luxonis_telemetry.redaction import REDACTED, Sanitizer

BASE = {
    "os": "Linux",
    "os_version": "6.1",
    "python_version": "3.11.7",
    "library_name": "luxonis_ml",
    "library_version": "0.10.2",
    "session_id": "11111111-1111-4111-8111-111111111111",
    "install_id": "22222222-2222-4222-8222-222222222222",
    "ci": False,
    "source_component": "data",
}


def record(**changes: Any) -> dict[str, Any]:
    made = new_record(
        "capture",
        event="train.start",
        distinct_id="d",
        library="luxonis_ml",
        properties={"epochs": 20},
        context=dict(BASE),
    )
    made.update(changes)
    return made


# -- new_record ------------------------------------------------------------------------


def test_record_shape() -> None:
    made = record()
    assert list(made) == [
        "v",
        "type",
        "uuid",
        "timestamp",
        "event",
        "distinct_id",
        "library",
        "properties",
        "context",
    ]
    assert made["v"] == RECORD_VERSION
    assert made["type"] == "capture"
    assert uuid.UUID(made["uuid"]).version == 4
    moment = datetime.fromisoformat(made["timestamp"])
    assert moment.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - moment) < timedelta(minutes=5)
    assert validate(made) is made


def test_every_record_has_its_own_uuid() -> None:
    assert len({record()["uuid"] for _ in range(1000)}) == 1000


def test_a_record_without_context_leaves_the_key_out() -> None:
    made = new_record(
        "identify", event="$identify", distinct_id="u", library="l", properties={}, context=None
    )
    assert "context" not in made
    assert made["type"] == "identify"


# -- now_iso --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1970, 1, 1, tzinfo=timezone.utc),
        datetime(2026, 11, 28, 14, 0, 0, 123456, tzinfo=timezone.utc),
        datetime(2026, 11, 28, 14, 0, 0, tzinfo=timezone.utc),  # a whole second
        datetime(2026, 11, 28, 14, 0, 0, 1, tzinfo=timezone.utc),
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone.utc),
        datetime(2099, 12, 31, 0, 0, 0, 500000, tzinfo=timezone.utc),
    ],
)
def test_now_iso_is_what_datetime_isoformat_gives(moment: datetime) -> None:
    ns = (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1) * 1000
    assert now_iso(ns) == moment.isoformat()
    assert now_iso(ns + 999) == moment.isoformat()  # nanoseconds are dropped, as datetime does


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9))
def test_now_iso_matches_datetime_for_any_instant(ns: int) -> None:
    seconds, rest = divmod(ns, 10**9)
    expected = datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=rest // 1000)
    assert now_iso(ns) == expected.isoformat()


def test_now_iso_is_now() -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    text = now_iso()
    after = datetime.now(timezone.utc)
    assert before <= datetime.fromisoformat(text) <= after
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00", text)


# -- encode --------------------------------------------------------------------------------


def test_encode_gives_one_compact_line() -> None:
    made = record(properties={"text": "line\nbreak", "ünï": "cödé"})
    line = encode(made)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b": " not in line
    assert line.isascii()
    assert json.loads(line) == made


def test_an_encoded_context_is_spliced_in() -> None:
    made = record()
    context = made.pop("context")
    line = encode(made, encode_context(context))
    assert json.loads(line) == {**made, "context": context}
    assert line == encode({**made, "context": context})


def test_nan_never_reaches_a_line() -> None:
    with pytest.raises(ValueError):
        encode(record(properties={"x": float("nan")}))


def test_oversized_properties_are_slimmed_never_the_record() -> None:
    made = record(properties={"blob": "x" * (MAX_RECORD_BYTES + 10)})
    made["context"]["provider_extra"] = "y" * 1000
    line = encode(made)
    assert len(line) <= MAX_RECORD_BYTES
    kept = json.loads(line)
    assert validate(kept) is not None
    for key in ("uuid", "timestamp", "event", "distinct_id", "library", "type", "v"):
        assert kept[key] == made[key]
    assert kept["properties"]["properties_truncated"] is True
    assert kept["properties"]["original_bytes"] > MAX_RECORD_BYTES
    assert kept["context"] == BASE  # the base context survives, extras go


def test_an_oversized_spliced_context_is_slimmed_too() -> None:
    made = record()
    context = {**made.pop("context"), "huge": "z" * (MAX_RECORD_BYTES + 1)}
    line = encode(made, encode_context(context))
    assert len(line) <= MAX_RECORD_BYTES
    kept = json.loads(line)
    assert kept["context"] == BASE
    assert kept["uuid"] == made["uuid"]


def test_a_record_at_the_limit_is_kept_whole() -> None:
    made = record(properties={"blob": ""})
    room = MAX_RECORD_BYTES - len(encode(made)) + 1  # the newline is not counted
    made["properties"]["blob"] = "b" * room
    assert json.loads(encode(made))["properties"]["blob"] == "b" * room
    made["properties"]["blob"] += "b"
    assert json.loads(encode(made))["properties"].get("properties_truncated") is True


# -- validate --------------------------------------------------------------------------------


def test_validate_accepts_identify_too() -> None:
    made = record(type="identify", event="$identify")
    assert validate(made) is made


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("v", 2),
        ("v", "1"),
        ("v", True),
        ("v", 1.0),
        ("type", "alias"),
        ("type", None),
        ("type", ["capture"]),
        ("type", {"capture": 1}),
        ("uuid", 5),
        ("timestamp", None),
        ("event", ["e"]),
        ("distinct_id", 1),
        ("library", None),
        ("properties", []),
        ("properties", None),
        ("context", None),
        ("context", "ctx"),
    ],
)
def test_validate_rejects_near_misses(key: str, bad: Any) -> None:
    assert validate({**record(), key: bad}) is None


@pytest.mark.parametrize(
    "key",
    ["v", "type", "uuid", "timestamp", "event", "distinct_id", "library", "properties", "context"],
)
def test_validate_rejects_a_missing_field(key: str) -> None:
    made = record()
    del made[key]
    assert validate(made) is None


@pytest.mark.parametrize("value", [None, [], "record", 1, [record()]])
def test_validate_rejects_what_is_no_record(value: Any) -> None:
    assert validate(value) is None


def test_validate_rejects_dict_subclasses() -> None:
    class Sneaky(dict):  # type: ignore[type-arg]
        pass

    assert validate(Sneaky(record())) is None


# -- wire_context -------------------------------------------------------------------------------


def test_wire_context_derives_luxonis_mls_keys() -> None:
    made = record()
    wire = wire_context(made)
    assert wire["$process_person_profile"] is False
    assert wire["$session_id"] == BASE["session_id"]
    assert wire["source_product"] == "luxonis_ml"
    assert wire["source_component"] == "data"
    assert wire["sdk_version"] == "0.10.2"
    for key, value in BASE.items():
        assert wire[key] == value
    assert made["context"] == BASE  # the record is not changed


def test_identify_never_claims_no_person_profile() -> None:
    wire = wire_context(record(type="identify", event="$identify"))
    assert "$process_person_profile" not in wire
    assert wire["$session_id"] == BASE["session_id"]


def test_values_a_provider_set_under_reserved_names_are_kept() -> None:
    context = {
        **BASE,
        "$session_id": "provider-session",
        "source_product": "hubai",
        "sdk_version": "9.9",
        "$process_person_profile": True,
    }
    wire = wire_context(record(context=context))
    assert wire["$session_id"] == "provider-session"
    assert wire["source_product"] == "hubai"
    assert wire["sdk_version"] == "9.9"
    assert wire["$process_person_profile"] is True


def test_an_older_record_without_a_source_component_gets_the_library() -> None:
    context = {key: value for key, value in BASE.items() if key != "source_component"}
    assert wire_context(record(context=context))["source_component"] == "luxonis_ml"


def test_without_a_base_context_nothing_is_derived() -> None:
    """``include_base_context=False``: the library builds its own, as in luxonis-ml."""
    assert wire_context(record(context={})) == {}
    assert wire_context(record(context={"custom": 1})) == {"custom": 1}


# -- identifiers ------------------------------------------------------------------------------------


def test_new_uuid4_is_a_version_4_uuid() -> None:
    for _ in range(200):
        text = new_uuid4()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


SAMPLE = "6f9619ff-8b86-4d11-b42d-00c04fc964ff"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SAMPLE, True),
        (SAMPLE.upper(), True),
        (SAMPLE.replace("-", ""), True),
        ("{" + SAMPLE + "}", True),
        ("urn:uuid:" + SAMPLE, True),
        # what PostHog's parser (the Rust uuid crate) refuses, failing the whole batch
        (SAMPLE.replace("-", "", 1), False),
        ("{" + SAMPLE.replace("-", "") + "}", False),
        ("{{" + SAMPLE + "}}", False),
        ("{" + SAMPLE, False),
        (" " + SAMPLE, False),
        (SAMPLE + "\n", False),
        ("URN:UUID:" + SAMPLE, False),
        (SAMPLE[:-1] + "g", False),
        (SAMPLE[:-1], False),
        ("", False),
        (None, False),
        (uuid.UUID(SAMPLE), False),
    ],
)
def test_is_uuid_accepts_exactly_what_posthog_parses(text: Any, expected: bool) -> None:
    assert is_uuid(text) is expected


_HEX = "[0-9a-fA-F]"
_HYPHENATED = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
POSTHOG_UUID = re.compile(
    f"{_HEX}{{32}}|{_HYPHENATED}|\\{{{_HYPHENATED}\\}}|urn:uuid:{_HYPHENATED}"
)
uuid_like = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEFg-{}:nru \n\u0660\uff10", max_size=46),
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: u.urn),
    st.builds(
        lambda u, at, ch: str(u)[:at] + ch + str(u)[at + 1 :],
        st.uuids(),
        st.integers(0, 35),
        st.sampled_from("-g{}: \u0660\uff10\u00e9_+"),
    ),
)


@given(uuid_like)
def test_is_uuid_agrees_with_the_grammar_written_as_a_regular_expression(text: str) -> None:
    assert is_uuid(text) is (POSTHOG_UUID.fullmatch(text) is not None)


# -- any value a caller passes gives a valid line -------------------------------------------------


class Color(enum.Enum):
    RED = "red"


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
)
hostile = st.recursive(
    st.one_of(
        json_leaf,
        st.datetimes(),
        st.uuids(),
        st.dates(),
        st.builds(Color, st.just("red")),
        st.builds(BadRepr),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.text(), st.integers(), st.none()), children, max_size=5),
        st.frozensets(st.one_of(st.integers(), st.text()), max_size=5),
        st.tuples(children, children),
    ),
    max_leaves=40,
)
"""Odd property values (also used by tests/reliability)."""


def _reject_constant(name: str) -> float:
    raise AssertionError(f"non-standard JSON constant {name} in a spool line")


@settings(max_examples=300, deadline=None)
@given(hostile)
def test_any_value_gives_a_valid_line(value: Any) -> None:
    cleaned = Sanitizer(home="/home/bob", secrets=("phc_zz",)).properties(
        {"v": value, "password": value}
    )
    line = encode(
        new_record(
            "capture", event="e", distinct_id="d", library="l", properties=cleaned, context={}
        )
    )
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert len(line) <= MAX_RECORD_BYTES
    parsed = validate(json.loads(line, parse_constant=_reject_constant))
    assert parsed is not None
    assert parsed["properties"]["password"] == REDACTED
