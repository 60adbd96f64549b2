"""``quarantine.jsonl``: bounded, oldest dropped first and counted, never through a link."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from luxonis_telemetry import _fs, _state
from luxonis_telemetry._quarantine import (
    QUARANTINE_FILE,
    append_entries,
    iter_entries,
    quarantine_limit,
)
from tests.conftest import PLANTS


def entry(n: int, pad: int = 0) -> dict[str, object]:
    return {"reason": "refused", "n": n, "pad": "x" * pad}


def numbers(folder: Path) -> list[int]:
    return [json.loads(text)["n"] for text in iter_entries(str(folder))]


def test_limit_is_an_eighth_of_the_spool_cap_at_least_64_kib() -> None:
    assert quarantine_limit(1024) == 64 * 1024
    assert quarantine_limit(50 * 1024 * 1024) == 50 * 1024 * 1024 // 8


def test_entries_are_appended_privately(tmp_path: Path) -> None:
    assert append_entries(str(tmp_path), [entry(0), entry(1)], 64 * 1024) == 0
    assert append_entries(str(tmp_path), [entry(2)], 64 * 1024) == 0
    assert numbers(tmp_path) == [0, 1, 2]
    assert (tmp_path / QUARANTINE_FILE).stat().st_mode & 0o777 == 0o600


def test_over_the_limit_the_oldest_go_first_and_are_counted(tmp_path: Path) -> None:
    limit = 4096
    dropped = 0
    for n in range(200):
        dropped += append_entries(str(tmp_path), [entry(n, pad=50)], limit)
        assert (tmp_path / QUARANTINE_FILE).stat().st_size <= limit
    kept = numbers(tmp_path)
    assert kept == list(range(200 - len(kept), 200))  # the newest, in order
    assert len(kept) > 20  # a trim keeps most of what fits, not just the newest entry
    assert dropped + len(kept) == 200


def test_a_batch_larger_than_the_limit_keeps_its_newest_entries(tmp_path: Path) -> None:
    append_entries(str(tmp_path), [entry(0)], 1024)
    dropped = append_entries(str(tmp_path), [entry(n, pad=100) for n in range(1, 40)], 1024)
    kept = numbers(tmp_path)
    assert kept == list(range(40 - len(kept), 40))
    assert dropped + len(kept) == 40
    assert (tmp_path / QUARANTINE_FILE).stat().st_size <= 1024


@pytest.mark.parametrize("limit", [64 * 1024, 330])
def test_a_torn_last_line_does_not_merge_with_the_next(tmp_path: Path, limit: int) -> None:
    """A writer killed mid-line leaves a torn tail; the next entry still gets a line of its own."""
    path = tmp_path / QUARANTINE_FILE
    path.write_bytes(b'{"n": 0}\n{"n": 1, "tor')
    path.chmod(0o600)
    append_entries(str(tmp_path), [entry(2, pad=250)], limit)  # 330: over the limit, trimmed
    lines = list(iter_entries(str(tmp_path)))
    assert json.loads(lines[-1])["n"] == 2
    assert path.stat().st_size <= limit


def test_overlong_lines_are_shown_cut(tmp_path: Path) -> None:
    path = tmp_path / QUARANTINE_FILE
    path.write_bytes(b"a" * 200_000 + b"\n" + b'{"n": 1}\n')
    path.chmod(0o600)
    shown = list(iter_entries(str(tmp_path)))
    assert len(shown) == 2
    assert len(shown[0]) == 64 * 1024
    assert json.loads(shown[1]) == {"n": 1}


@pytest.mark.parametrize("plant", PLANTS)
def test_an_unsafe_quarantine_file_is_neither_written_nor_read(
    tmp_path: Path, plant: Callable[[Path, Path], None]
) -> None:
    """Issue 8.12: a hard-linked quarantine.jsonl would leak refused records to its other name."""
    folder = tmp_path / "spool"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    plant(folder / QUARANTINE_FILE, victim)
    with pytest.raises(_fs.UnsafeFile):
        append_entries(str(folder), [entry(1)], 64 * 1024)
    assert list(iter_entries(str(folder))) == []
    assert str(folder / QUARANTINE_FILE) in _state.state.unsafe_files
    planted = tmp_path / "victim.txt"
    if planted.exists():
        assert planted.read_text() == "precious\n"


def test_every_entry_carries_its_format_version(tmp_path: Path) -> None:
    from luxonis_telemetry._quarantine import ENTRY_VERSION, append_entries, iter_entries

    append_entries(str(tmp_path), [{"reason": "r", "record": {"a": 1}}], 1 << 20)
    [line] = list(iter_entries(str(tmp_path)))
    assert json.loads(line) == {"v": ENTRY_VERSION, "reason": "r", "record": {"a": 1}}
