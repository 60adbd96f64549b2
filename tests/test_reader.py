"""``_reader``: spool files read back line by line, never trusting a byte."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from luxonis_telemetry import _state
from luxonis_telemetry._reader import (
    MAX_LINE_BYTES,
    BadLine,
    count_lines,
    decode_line,
    iter_records,
)
from luxonis_telemetry.record import encode, new_record
from tests.conftest import PLANTS


def line(n: int) -> bytes:
    return encode(
        new_record(
            "capture",
            event=f"e{n}",
            distinct_id="d",
            library="lib",
            properties={"n": n},
            context={},
        )
    )


def test_bad_lines_are_reported_and_never_hide_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    good = [line(n) for n in range(3)]
    path.write_bytes(
        good[0]
        + b"\x00\x00\x00\n"
        + b"\xff\xfe not utf8\n"
        + b'{"json": "but not an event"}\n'
        + b"[" * 100_000
        + b"\n"
        + b"\n"
        + good[1]
        + b"x" * (3 * 1024 * 1024)
        + b"\n"
        + good[2]
        + b'{"v":1,"torn'
    )
    items = list(iter_records(str(path)))
    records = [i for _e, i in items if not isinstance(i, BadLine)]
    bad = [i for _e, i in items if isinstance(i, BadLine)]
    assert [r["event"] for r in records] == ["e0", "e1", "e2"]
    assert [b.reason for b in bad] == [
        "not JSON",
        "not JSON",
        "not an event record",
        "not JSON",  # nested too deep
        "line too long",
        "torn line",
    ]
    assert all(len(b.head) <= 512 for b in bad)
    assert bad[4].length == 3 * 1024 * 1024
    assert items[-1][0] == path.stat().st_size
    lenient = list(iter_records(str(path), torn_tail_is_bad=False))
    assert len(lenient) == len(items) - 1


def test_offsets_resume_exactly(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    lines = [line(n) for n in range(10)]
    path.write_bytes(b"".join(lines))
    items = list(iter_records(str(path)))
    assert [end for end, _r in items] == [sum(len(x) for x in lines[: n + 1]) for n in range(10)]
    resumed = list(iter_records(str(path), start=items[4][0]))
    assert [r["event"] for _e, r in resumed] == [f"e{n}" for n in range(5, 10)]  # type: ignore[index]


def test_a_line_just_over_the_limit_is_refused_even_when_read_whole(tmp_path: Path) -> None:
    """A line arriving in one read is still held to ``MAX_LINE_BYTES``."""
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"y" * (MAX_LINE_BYTES - 10) + b"z" * 20 + b"\n" + line(1))
    items = [item for _e, item in iter_records(str(path))]
    assert isinstance(items[0], BadLine)
    assert items[0].reason == "line too long"
    assert not isinstance(items[1], BadLine)
    assert items[1]["event"] == "e1"


def test_an_overlong_torn_tail_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(line(0) + b"q" * (2 * MAX_LINE_BYTES))
    items = [item for _e, item in iter_records(str(path))]
    assert [getattr(i, "reason", None) for i in items] == [None, "line too long (torn)"]


def test_count_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(line(0) + line(1) + b"torn")
    assert count_lines(str(path)) == 2
    assert count_lines(str(path), len(line(0))) == 1
    assert count_lines(str(tmp_path / "missing")) == 0


def test_decode_line() -> None:
    record = decode_line(line(7).rstrip(b"\n"))
    assert not isinstance(record, BadLine)
    assert record["properties"] == {"n": 7}
    assert isinstance(decode_line(b"1" * 5000), BadLine)  # int too long to convert
    assert isinstance(decode_line(b'{"v": 2}'), BadLine)
    assert repr(decode_line(b"nope")) == "BadLine('not JSON', length=4)"


@pytest.mark.parametrize("plant", PLANTS)
def test_unsafe_files_are_never_read(tmp_path: Path, plant: Callable[[Path, Path], None]) -> None:
    """Issue 8.3/8.12: a FIFO would hang; a link or another user's file is not ours to read."""
    path = tmp_path / "seg.jsonl"
    victim = tmp_path / "victim.jsonl"
    victim.write_bytes(line(99))
    plant(path, victim)
    assert list(iter_records(str(path))) == []
    assert count_lines(str(path)) == 0
    assert str(path) in _state.state.unsafe_files
