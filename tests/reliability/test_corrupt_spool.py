"""Corrupt spools: good events still upload, bad lines are quarantined and counted."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from luxonis_telemetry import upload
from luxonis_telemetry._reader import BadLine, iter_records
from luxonis_telemetry.cli import app
from luxonis_telemetry.record import encode, new_record
from luxonis_telemetry.spool import Spool
from luxonis_telemetry.testing import FakePostHog
from tests.test_redaction import values as hostile

runner = CliRunner()


def good(n: int) -> bytes:
    return encode(
        new_record(
            "capture", event="good", distinct_id="d", library="lib", properties={"n": n}, context={}
        )
    )


CORRUPTIONS = {
    "random bytes": os.urandom(4096).replace(b"\n", b"") + b"\n",
    "NUL run": b"\x00" * 10_000 + b"\n",
    "invalid UTF-8": b'{"v":1,"event":"\xff\xfe\xfd"}\n',
    "JSON, not an event": b'{"hello": "world"}\n[1, 2, 3]\n"str"\n',
    "50 MB line": b"{" + b"a" * (50 * 1024 * 1024) + b"\n",
    "empty lines": b"\n\n\n",
}


def test_every_corruption_at_once(
    posthog_env: FakePostHog, spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_MAX_SPOOL_MB", "200")  # room for the 50 MB line
    spool = Spool(str(spool_path))
    spool.append("lib", good(0))
    spool.seal_all()
    segment = Path(spool.segments()[0].path)
    with segment.open("ab") as handle:
        for n, blob in enumerate(CORRUPTIONS.values(), start=1):
            handle.write(blob)
            handle.write(good(n))
        handle.write(b'{"v":1,"type":"capture","uuid":"torn')  # torn last line
    (spool_path / "active.empty.jsonl").write_bytes(b"")  # an empty file
    expected_bad = 1 + 1 + 1 + 3 + 1 + 1  # random, NUL, utf8, 3 non-events, 50 MB, torn
    result = upload(budget=60)
    assert result.ok, result.summary()
    assert result.sent == len(CORRUPTIONS) + 1, result
    assert sorted(e["properties"]["n"] for e in posthog_env.events) == list(
        range(len(CORRUPTIONS) + 1)
    )
    assert result.failed == expected_bad
    quarantine = (spool_path / "quarantine.jsonl").read_text().splitlines()
    assert len(quarantine) == expected_bad
    assert max(len(line) for line in quarantine) < 4096  # heads only, not 50 MB
    reasons = {json.loads(line)["reason"] for line in quarantine}
    assert {"not JSON", "not an event record", "line too long", "torn line"} <= reasons
    assert Spool(str(spool_path)).read_state().quarantined == expected_bad
    shown = runner.invoke(app, ["inspect", "--quarantined"])
    assert len(shown.stdout.splitlines()) == expected_bad
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["quarantined"] == expected_bad
    assert status["pending_events"] == 0


def test_corrupt_active_file_does_not_block_capture_or_inspect(spool_path: Path) -> None:
    from luxonis_telemetry import Telemetry

    Telemetry("lib").capture("before")
    with (spool_path / "active.lib.jsonl").open("ab") as handle:
        handle.write(os.urandom(300).replace(b"\n", b""))
    from luxonis_telemetry import _state

    _state.reset()
    Telemetry("lib").capture("after")
    listed = [
        json.loads(x)["event"]
        for x in runner.invoke(app, ["inspect", "--json"]).stdout.splitlines()
    ]
    assert listed == ["before", "after"]


line_strategy = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(lambda n: ("good", n)),
    st.binary(max_size=300).map(lambda b: ("junk", b)),
    st.sampled_from([b"\x00" * 50, b"\xff\xfe", b"{}", b"null", b'{"v":1}', b"[", b"\r"]).map(
        lambda b: ("junk", b)
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(line_strategy, max_size=40), st.booleans())
def test_reader_never_raises_and_never_loses_a_good_record(
    tmp_path: Path, lines: list[Any], torn: bool
) -> None:
    path = tmp_path / "fuzz.jsonl"
    wanted = []
    data = b""
    for kind, value in lines:
        if kind == "good":
            data += good(value)
            wanted.append(value)
        else:
            data += value.replace(b"\n", b" ") + b"\n"
    if torn:
        data += b'{"v":1,"type":"cap'
    path.write_bytes(data)
    items = list(iter_records(str(path)))
    found = [
        item["properties"]["n"]
        for _end, item in items
        if not isinstance(item, BadLine) and item["event"] == "good"
    ]
    assert found == wanted
    ends = [end for end, _item in items]
    assert ends == sorted(ends)
    if items:
        assert ends[-1] <= len(data)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(hostile, min_size=1, max_size=5))
def test_hostile_property_values_always_give_readable_records(
    spool_path: Path, values: list[Any]
) -> None:
    from luxonis_telemetry import Telemetry

    telemetry = Telemetry("fuzz")
    before = sum(1 for _ in Spool(str(spool_path)).iter_pending())
    for value in values:
        telemetry.capture("fuzz", {"value": value, "nested": [value, {"password": value}]})
    items = list(Spool(str(spool_path)).iter_pending())
    assert not any(isinstance(item, BadLine) for item in items)
    assert len(items) == before + len(values)
    assert telemetry.dropped == 0
