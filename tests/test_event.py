from __future__ import annotations

import enum
import json
import os
import uuid
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from luxonis_telemetry.event import (
    MAX_RECORD_BYTES,
    MAX_STRING_CHARS,
    REDACTED,
    Sanitizer,
    encode,
    new_record,
    validate,
)


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class FakeNumpyScalar:
    dtype = "float32"

    def item(self) -> float:
        return 1.5


class FakeNumpyArray:
    dtype = "int64"
    size = 3

    def item(self) -> int:
        raise ValueError("can only convert an array of size 1")

    def tolist(self) -> list[int]:
        return [1, 2, 3]


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class BadMapping(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("hostile")


def roundtrip(value: Any, **kwargs: Any) -> Any:
    cleaned = Sanitizer(**kwargs).properties(value)
    line = encode(
        new_record(
            "capture", event="e", distinct_id="d", library="l", properties=cleaned, context={}
        )
    )
    record = json.loads(line)
    assert validate(record) is not None
    return record["properties"]


def test_common_non_json_types() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    ident = uuid.uuid4()
    props = roundtrip(
        {
            "dt": moment,
            "d": date(2026, 1, 2),
            "t": time(1, 2),
            "id": ident,
            "path": PurePosixPath("/opt/data"),
            "bytes": b"\x00\xff",
            "set": {3, 1, 2},
            "tuple": (1, "a"),
            "enum": Color.RED,
            "intenum": Level.HIGH,
            "np": FakeNumpyScalar(),
            "arr": FakeNumpyArray(),
            "decimal": Decimal("1.5"),
            "nan": float("nan"),
            "inf": float("-inf"),
            "bad": BadRepr(),
            1: "int key",
            None: "none key",
            (1, 2): "tuple key",
        }
    )
    assert props["dt"] == moment.isoformat()
    assert props["d"] == "2026-01-02"
    assert props["t"] == "01:02:00"
    assert props["id"] == str(ident)
    assert props["path"] == "/opt/data"
    assert props["bytes"] == "<2 bytes>"
    assert props["set"] == [1, 2, 3]
    assert props["tuple"] == [1, "a"]
    assert props["enum"] == "red"
    assert props["intenum"] == 3
    assert props["np"] == 1.5
    assert props["arr"] == [1, 2, 3]
    assert props["decimal"] == "Decimal('1.5')"
    assert props["nan"] is None
    assert props["inf"] is None
    assert props["bad"] == "<unrepresentable BadRepr>"
    assert props["1"] == "int key"
    assert props["None"] == "none key"
    assert props["(1, 2)"] == "tuple key"


def test_cycles_and_depth_are_bounded() -> None:
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["self"] = cyclic
    looped: list[Any] = [1]
    looped.append(looped)
    deep: Any = "bottom"
    for _ in range(5000):
        deep = [deep]
    props = roundtrip({"cyclic": cyclic, "looped": looped, "deep": deep})
    assert props["cyclic"]["self"] == "[cycle]"
    assert props["looped"][1] == "[cycle]"
    assert "[too deep]" in json.dumps(props["deep"])


def test_shared_references_are_not_cycles() -> None:
    shared = {"x": 1}
    props = roundtrip({"a": shared, "b": shared})
    assert props == {"a": {"x": 1}, "b": {"x": 1}}


def test_huge_strings_and_containers_are_truncated() -> None:
    props = roundtrip({"s": "x" * (MAX_STRING_CHARS * 10), "l": list(range(100_000))})
    assert len(props["s"]) < MAX_STRING_CHARS + 100
    assert props["s"].endswith("chars truncated]")
    assert len(props["l"]) == 1001


def test_wide_nesting_stays_bounded() -> None:
    wide = [[["y" * 4000] * 1000] * 1000]
    line = encode(
        new_record(
            "capture",
            event="e",
            distinct_id="d",
            library="l",
            properties=Sanitizer().properties({"w": wide}),
            context={},
        )
    )
    assert len(line) <= MAX_RECORD_BYTES + 1
    assert json.loads(line)["properties"]["$properties_truncated"] is True


def test_hostile_mapping_does_not_raise() -> None:
    assert Sanitizer().properties(BadMapping(a=1)) == {"$properties_error": "RuntimeError"}


def test_non_mapping_properties_are_wrapped() -> None:
    assert Sanitizer().properties([1, 2]) == {"value": [1, 2]}
    assert Sanitizer().properties(None) == {}


def test_secret_keys_are_redacted_at_any_depth() -> None:
    props = roundtrip(
        {
            "password": "hunter2",
            "API_KEY": "k",
            "nested": {"auth_token": "t", "list": [{"client_secret": "s", "ok": 1}]},
            "author": "kept",
        }
    )
    text = json.dumps(props)
    for secret in ("hunter2", '"k"', '"t"', '"s"'):
        assert secret not in text
    assert props["password"] == REDACTED
    assert props["nested"]["auth_token"] == REDACTED
    assert props["nested"]["list"][0] == {"client_secret": REDACTED, "ok": 1}
    assert props["author"] == "kept"


def test_home_and_api_key_are_scrubbed_from_values() -> None:
    home = "/home/alice"
    props = roundtrip(
        {
            "path": f"{home}/data/train.csv",
            "home": home,
            "msg": "key phc_SECRET used",
            "deep": [{"p": f"{home}/x"}],
        },
        home=home,
        secrets=("phc_SECRET",),
    )
    assert props["path"] == "~/data/train.csv"
    assert props["home"] == "~"
    assert props["msg"] == f"key {REDACTED} used"
    assert props["deep"][0]["p"] == "~/x"
    assert "alice" not in json.dumps(props)


def test_real_home_is_used_by_default(home: Path) -> None:
    props = Sanitizer().properties({"p": str(home / "x")})
    assert props["p"] == os.path.join("~", "x")


def test_record_shape() -> None:
    record = new_record(
        "capture", event="e", distinct_id="d", library="l", properties={}, context={"os": "x"}
    )
    assert set(record) == {
        "v",
        "type",
        "uuid",
        "timestamp",
        "event",
        "distinct_id",
        "library",
        "properties",
        "context",
    }
    assert uuid.UUID(record["uuid"]).version == 4
    assert datetime.fromisoformat(record["timestamp"]).tzinfo is not None


def test_validate_rejects_near_misses() -> None:
    good = new_record("capture", event="e", distinct_id="d", library="l", properties={}, context={})
    assert validate(good) is good
    for key, bad in [
        ("v", 2),
        ("type", "alias"),
        ("uuid", 5),
        ("properties", []),
        ("context", None),
    ]:
        assert validate({**good, key: bad}) is None
    assert validate([good]) is None


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
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = validate(json.loads(line, parse_constant=_reject_constant))
    assert record is not None
    assert record["properties"]["password"] == REDACTED


def _reject_constant(name: str) -> float:
    raise AssertionError(f"non-standard JSON constant {name} in a spool line")
