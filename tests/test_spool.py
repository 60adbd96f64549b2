from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from luxonis_telemetry.event import encode, new_record
from luxonis_telemetry.spool import BadLine, Spool, iter_records, library_key


def line(n: int, library: str = "lib") -> bytes:
    return encode(
        new_record(
            "capture",
            event=f"e{n}",
            distinct_id="d",
            library=library,
            properties={"n": n},
            context={},
        )
    )


def events(spool: Spool) -> list[str]:
    return [item["event"] for _end, item in spool.iter_pending() if not isinstance(item, BadLine)]


def test_folder_and_files_are_private_even_with_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        spool = Spool(str(tmp_path / "spool"))
        spool.append("lib", line(1))
        spool.record_destination("lib", {"backend": "posthog", "api_key": "k"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    for path in (tmp_path / "spool").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_existing_loose_folder_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    Spool(str(folder)).append("lib", line(1))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_nothing_is_created_before_the_first_append(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    assert list(spool.iter_pending()) == []
    assert spool.pending_bytes() == 0
    assert not (tmp_path / "spool").exists()


def test_append_and_read_in_order(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    for n in range(5):
        spool.append("lib", line(n))
    assert events(spool) == [f"e{n}" for n in range(5)]


def test_seal_moves_active_to_segment_and_new_appends_go_to_a_fresh_file(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(1))
    spool.seal_all()
    spool.append("lib", line(2))
    segments = spool.segments()
    assert len(segments) == 1
    assert [r["event"] for _e, r in segments[0].records()] == ["e1"]
    assert events(spool) == ["e1", "e2"]


def test_another_writer_notices_the_seal(tmp_path: Path) -> None:
    writer = Spool(str(tmp_path / "spool"))
    uploader = Spool(str(tmp_path / "spool"))
    writer.append("lib", line(1))
    uploader.seal_all()
    writer.append("lib", line(2))
    segment = uploader.segments()[0]
    assert [r["event"] for _e, r in segment.records()] == ["e1"]
    assert (tmp_path / "spool" / "active.lib.jsonl").exists()


def test_commit_records_progress_and_removes_finished_segments(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    for n in range(3):
        spool.append("lib", line(n))
    spool.seal_all()
    segment = spool.segments()[0]
    ends = [end for end, _r in segment.records()]
    spool.commit(segment, ends[0])
    assert [r["event"] for _e, r in spool.segments()[0].records()] == ["e1", "e2"]
    spool.commit(spool.segments()[0], ends[-1])
    assert spool.segments() == []
    assert not any(p.name.startswith("seg.") for p in (tmp_path / "spool").iterdir())


def test_reader_skips_and_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    good = [line(n) for n in range(3)]
    path.write_bytes(
        good[0]
        + b"\x00\x00\x00\n"
        + b"\xff\xfe not utf8\n"
        + b'{"json": "but not an event"}\n'
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
        "line too long",
        "torn line",
    ]
    assert items[-1][0] == path.stat().st_size
    lenient = list(iter_records(str(path), torn_tail_is_bad=False))
    assert len(lenient) == len(items) - 1


def test_reader_offsets_resume_exactly(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"".join(line(n) for n in range(10)))
    items = list(iter_records(str(path)))
    resumed = list(iter_records(str(path), start=items[4][0]))
    assert [r["event"] for _e, r in resumed] == [f"e{n}" for n in range(5, 10)]


def test_torn_line_from_a_dead_writer_does_not_swallow_the_next(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(1))
    active = tmp_path / "spool" / "active.lib.jsonl"
    with open(active, "ab") as handle:
        handle.write(b'{"v":1,"type":"capt')  # a writer killed mid-line
    other = Spool(str(tmp_path / "spool"))
    other.append("lib", line(2))
    assert events(other) == ["e1", "e2"]


def test_size_cap_drops_oldest_segments_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"), max_bytes=64 * 1024)
    for n in range(2000):
        spool.append("lib", line(n))
    names = events(spool)
    assert spool.pending_bytes() <= spool.max_bytes + spool.segment_bytes
    assert names[-1] == "e1999"
    dropped = spool.read_state()["dropped"]["size_cap"]
    assert dropped + len(names) == 2000
    assert names == [f"e{n}" for n in range(dropped, 2000)]


def test_age_cap_drops_old_segments(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"), max_age_days=1)
    spool.append("lib", line(1))
    spool.seal_all()
    segment = spool.segments()[0]
    old = segment.path
    os.utime(old, (1, 1))
    spool.enforce_caps()
    assert spool.segments() == []
    assert spool.read_state()["dropped"] == {"age_cap": 1}


def test_purge(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    for n in range(3):
        spool.append("lib", line(n))
    spool.seal_all()
    spool.append("lib", line(4))
    assert spool.purge() == 4
    assert events(spool) == []
    spool.append("lib", line(5))
    assert events(spool) == ["e5"]


def test_destinations_are_private_and_only_rewritten_on_change(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.record_destination("lib", {"backend": "posthog", "api_key": "k"})
    path = tmp_path / "spool" / "destinations.json"
    first = path.stat().st_mtime_ns
    spool.record_destination("lib", {"backend": "posthog", "api_key": "k"})
    assert path.stat().st_mtime_ns == first
    assert json.loads(path.read_text()) == {"lib": {"backend": "posthog", "api_key": "k"}}


def test_quarantine_is_counted(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.quarantine([{"reason": "x"}, {"reason": "y"}])
    assert spool.read_state()["quarantined"] == 2
    assert len((tmp_path / "spool" / "quarantine.jsonl").read_text().splitlines()) == 2


def test_library_key_is_file_name_safe() -> None:
    assert library_key("luxonis_ml") == "luxonis_ml"
    weird = library_key("../../etc/passwd")
    assert "/" not in weird and "." not in weird
    assert library_key("../../etc/passwd") == weird


def test_symlink_in_place_of_the_active_file_is_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (folder / "active.lib.jsonl").symlink_to(victim)
    spool = Spool(str(folder))
    with pytest.raises(OSError):
        spool.append("lib", line(1))
    assert victim.read_text() == "precious\n"


def test_spool_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    path.write_text("not a folder")
    with pytest.raises(OSError):
        Spool(str(path)).append("lib", line(1))
    assert path.read_text() == "not a folder"
