"""``Spool``: the per-user folder of JSON-lines segments shared by every process."""

from __future__ import annotations

import gc
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

from luxonis_telemetry import _fs, _state
from luxonis_telemetry._destinations import RecordedDestination
from luxonis_telemetry._lock import LockTimeout
from luxonis_telemetry._quarantine import QUARANTINE_FILE, quarantine_limit
from luxonis_telemetry._reader import BadLine
from luxonis_telemetry.record import encode, new_record
from luxonis_telemetry.spool import Reentered, Spool, SpoolError, TurnedOff, library_key
from tests.conftest import PLANTS, finishes

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX spool semantics")


def line(n: int, library: str = "lib", pad: int = 0) -> bytes:
    properties: dict[str, object] = {"n": n}
    if pad:
        properties["pad"] = "x" * pad
    return encode(
        new_record(
            "capture",
            event=f"e{n}",
            distinct_id="d",
            library=library,
            properties=properties,
            context={},
        )
    )


def events(spool: Spool) -> list[str]:
    return [item["event"] for item in spool.iter_pending() if not isinstance(item, BadLine)]


def private_files(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


def release(process: subprocess.Popen[str]) -> None:
    process.communicate(timeout=30)


# -- layout and privacy ---------------------------------------------------------


def test_folder_and_files_are_private_even_with_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        spool = Spool(str(tmp_path / "spool"))
        spool.append("lib", line(1))
        spool.record_destination("lib", RecordedDestination(backend="posthog", api_key="k"))
        spool.quarantine([{"reason": "x"}])
        spool.seal_all()
        spool.append("lib", line(2))
        segment = spool.segments()[0]
        spool.commit(segment, 0, [(0, 1)])
    finally:
        os.umask(old)
    folder = tmp_path / "spool"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    modes = private_files(folder)
    assert {"lock", "active.lib.jsonl", "destinations.json", "state.json", QUARANTINE_FILE} <= set(
        modes
    )
    for name, mode in modes.items():
        assert mode & 0o077 == 0, name


def test_existing_loose_folder_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    Spool(str(folder)).append("lib", line(1))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_nothing_is_created_before_the_first_append(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    assert list(spool.iter_pending()) == []
    assert spool.pending_bytes() == 0
    assert spool.count_pending() == 0
    assert spool.oldest_timestamp() is None
    assert spool.purge() == 0
    assert spool.wait_for_uploads(0)
    assert not (tmp_path / "spool").exists()


def test_library_key_is_file_name_safe() -> None:
    assert library_key("luxonis_ml") == "luxonis_ml"
    weird = library_key("../../etc/passwd")
    assert "/" not in weird
    assert "." not in weird
    assert library_key("../../etc/passwd") == weird
    assert library_key("x" * 49) != library_key("x" * 50)


def test_spool_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    path.write_text("not a folder")
    with pytest.raises(SpoolError):
        Spool(str(path)).append("lib", line(1))
    assert path.read_text() == "not a folder"
    assert Spool(str(path)).problem() == f"spool path {path} is not a folder"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant another user's folder")
def test_spool_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o777)
    os.chown(folder, 12345, 12345)
    spool = Spool(str(folder))
    with pytest.raises(SpoolError):
        spool.append("lib", line(1))
    assert list(folder.iterdir()) == []
    assert "belongs to another user" in (spool.problem() or "")


# -- appending, sealing, committing -------------------------------------------------


def test_append_and_read_in_order(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    for n in range(5):
        spool.append("lib", line(n))
    assert events(spool) == [f"e{n}" for n in range(5)]
    assert spool.count_pending() == 5
    assert spool.count_pending({"other"}) == 0
    assert spool.oldest_timestamp() is not None


def test_seal_moves_active_to_segment_and_new_appends_go_to_a_fresh_file(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(1))
    spool.seal_all()
    spool.append("lib", line(2))
    [segment] = spool.segments()
    assert segment.key == "lib"
    assert [item["event"] for _b, _e, item in segment.records()] == ["e1"]  # type: ignore[index]
    assert events(spool) == ["e1", "e2"]
    assert stat.S_IMODE(os.stat(segment.path).st_mode) == 0o400


def test_another_writer_notices_the_seal(tmp_path: Path) -> None:
    writer = Spool(str(tmp_path / "spool"))
    uploader = Spool(str(tmp_path / "spool"))
    writer.append("lib", line(1))
    uploader.seal_all()
    writer.append("lib", line(2))
    segment = uploader.segments()[0]
    assert [item["event"] for _b, _e, item in segment.records()] == ["e1"]  # type: ignore[index]
    assert (tmp_path / "spool" / "active.lib.jsonl").exists()


def test_a_deleted_lock_file_is_noticed_while_the_active_file_is_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only ``lock`` removed (an age-based cleaner, an interrupted ``rm -rf``): a writer
    must not keep locking the deleted file while others lock the new one."""
    import luxonis_telemetry.spool as spool_module

    monkeypatch.setattr(spool_module, "LOCK_TIMEOUT", 0.2)
    writer = Spool(str(tmp_path / "spool"))
    writer.append("lib", line(1))  # its active file and lock are open now
    (tmp_path / "spool" / "lock").unlink()
    other = Spool(str(tmp_path / "spool"))  # another process, on the recreated lock
    with other.locked(), pytest.raises(LockTimeout):
        writer.append("lib", line(2))
    writer.append("lib", line(3))
    assert events(writer) == ["e1", "e3"]


def test_commit_records_progress_and_acknowledged_ranges(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    for n in range(5):
        spool.append("lib", line(n))
    spool.seal_all()
    segment = spool.segments()[0]
    spans = [(begin, end) for begin, end, _item in segment.records()]
    # e0 delivered, and e2 confirmed out of order (an earlier batch failed)
    spool.commit(segment, spans[0][1], [spans[2]])
    [segment] = spool.segments()
    assert [item["event"] for _b, _e, item in segment.records()] == ["e1", "e3", "e4"]  # type: ignore[index]
    assert segment.pending_bytes == sum(end - begin for begin, end in spans) - (
        spans[0][1] - spans[0][0]
    ) - (spans[2][1] - spans[2][0])
    # the rest confirmed: the segment and its position file are gone
    spool.commit(segment, spans[1][1], [spans[2], (spans[3][0], spans[4][1])])
    assert spool.segments() == []
    assert not [p for p in (tmp_path / "spool").iterdir() if p.name.startswith("seg.")]


def test_commit_of_a_purged_segment_leaves_no_file(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(1))
    spool.append("lib", line(2))
    spool.seal_all()
    segment = spool.segments()[0]
    first_end = next(iter(segment.records()))[1]
    spool.purge()
    spool.commit(segment, first_end)
    assert not [p for p in (tmp_path / "spool").iterdir() if p.name.startswith("seg.")]


def test_a_position_file_of_any_shape_is_survived(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(1))
    spool.seal_all()
    segment = spool.segments()[0]
    pos = Path(segment.path + ".pos")
    for garbage in (
        '"x"',
        "[1, 2]",
        '{"pos": "x"}',
        '{"pos": true}',
        "true",
        '{"pos": 0, "acked": [[5, 1], "x"]}',
        '{"pos": 0, "acked": {"a": 1}}',
        '{"pos": 0, "acked": "0123"}',
        '{"pos": 0, "acked": [[true, false]]}',
        "{",
    ):
        pos.write_text(garbage)
        pos.chmod(0o600)
        assert events(spool) == ["e1"], garbage


def test_torn_line_from_a_dead_writer_does_not_swallow_the_next(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(1))
    active = tmp_path / "spool" / "active.lib.jsonl"
    with open(active, "ab") as handle:
        handle.write(b'{"v":1,"type":"capt')  # a writer killed mid-line
    other = Spool(str(tmp_path / "spool"))
    other.append("lib", line(2))
    items = list(other.iter_pending())
    assert [getattr(item, "reason", None) for item in items] == [None, "not JSON", None]
    assert events(other) == ["e1", "e2"]


# -- caps -------------------------------------------------------------------------


def test_size_cap_drops_oldest_segments_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"), max_bytes=64 * 1024)
    for n in range(2000):
        spool.append("lib", line(n))
    names = events(spool)
    assert spool.pending_bytes() <= spool.max_bytes + spool.segment_bytes
    assert names[-1] == "e1999"
    dropped = spool.read_state().dropped["size_cap"]
    assert dropped + len(names) == 2000
    assert names == [f"e{n}" for n in range(dropped, 2000)]


def test_age_cap_drops_old_segments(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"), max_age_days=1)
    spool.append("lib", line(1))
    spool.seal_all()
    os.utime(spool.segments()[0].path, (1, 1))
    spool.seal_all()  # nothing left to seal; the caps are enforced all the same
    assert spool.segments() == []
    assert spool.read_state().dropped == {"age_cap": 1}


def test_quarantine_counts_against_the_cap_and_is_bounded(tmp_path: Path) -> None:
    """Issue 8.14: 6.4 MiB of quarantine with a 1 MiB cap must not happen again."""
    spool = Spool(str(tmp_path / "spool"), max_bytes=256 * 1024)
    limit = quarantine_limit(spool.max_bytes)
    for batch in range(40):
        spool.quarantine(
            [{"reason": "refused", "n": batch * 10 + i, "pad": "q" * 300} for i in range(10)]
        )
    quarantine = tmp_path / "spool" / QUARANTINE_FILE
    assert quarantine.stat().st_size <= limit
    state = spool.read_state()
    kept = len(quarantine.read_bytes().splitlines())
    assert state.quarantined == 400
    assert state.dropped["quarantine_cap"] + kept == 400
    for n in range(3000):
        spool.append("lib", line(n, pad=100))
    folder = tmp_path / "spool"
    on_disk = sum(p.stat().st_size for p in folder.glob("*.jsonl"))
    assert on_disk <= spool.max_bytes + spool.segment_bytes
    assert quarantine.stat().st_size > 0  # the cap dropped events, not the quarantine


def test_purge_removes_pending_and_quarantined_events(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    for n in range(3):
        spool.append("lib", line(n))
    spool.seal_all()
    spool.append("lib", line(4))
    spool.quarantine([{"reason": "x"}])
    assert spool.purge() == 4
    assert events(spool) == []
    assert not (tmp_path / "spool" / QUARANTINE_FILE).exists()
    spool.append("lib", line(5))
    assert events(spool) == ["e5"]


def test_housekeeping_failures_never_report_a_written_line_lost(tmp_path: Path) -> None:
    """With state.json unusable, dropping old segments cannot be persisted; appends still work."""
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    (folder / "state.json").mkdir()
    spool = Spool(str(folder), max_bytes=64 * 1024)
    for n in range(2000):
        spool.append("lib", line(n))  # raises nothing
    names = events(spool)
    assert names[-1] == "e1999"
    assert spool.unsaved_drops.by_reason["size_cap"] + len(names) == 2000


# -- the small files ----------------------------------------------------------------


def test_destinations_are_private_and_only_rewritten_on_change(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    destination = RecordedDestination(backend="posthog", api_key="k")
    spool.record_destination("lib", destination)
    path = tmp_path / "spool" / "destinations.json"
    first = path.stat().st_mtime_ns
    inode = path.stat().st_ino
    spool.record_destination("lib", RecordedDestination(backend="posthog", api_key="k"))
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == (first, inode)
    assert json.loads(path.read_text()) == {
        "v": 1,
        "libraries": {"lib": {"backend": "posthog", "api_key": "k"}},
    }
    assert spool.read_destinations() == {"lib": destination}


def test_quarantine_is_counted(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.quarantine([])
    assert not (tmp_path / "spool").exists()
    spool.quarantine([{"reason": "x"}, {"reason": "y"}])
    assert spool.read_state().quarantined == 2
    assert len((tmp_path / "spool" / QUARANTINE_FILE).read_text().splitlines()) == 2


def test_drops_counted_in_memory_are_saved(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(1))
    spool.unsaved_drops.add("lock_timeout", 3)
    spool.save_drops()
    assert spool.read_state().dropped == {"lock_timeout": 3}
    assert spool.unsaved_drops.by_reason == {}
    spool.unsaved_drops.add("reentrant")
    spool.append("lib", line(2))  # the next append saves them too
    assert spool.read_state().dropped == {"lock_timeout": 3, "reentrant": 1}


def test_a_forked_child_counts_only_its_own_drops(tmp_path: Path) -> None:
    """Review: drops the parent had counted but not saved were saved twice, once by the child."""
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(0))
    spool.unsaved_drops.add("lock_timeout", 3)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            spool.append("lib", line(1))  # the child's first use notices the fork
            spool.unsaved_drops.add("reentrant")
            spool.save_drops()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    spool.save_drops()
    assert spool.read_state().dropped == {"lock_timeout": 3, "reentrant": 1}


# -- unsafe files (issues 8.3 and 8.12) -----------------------------------------------


PRECIOUS = b'{"planted": "precious"}\n'


@pytest.fixture
def planted(tmp_path: Path) -> Callable[[str, Callable[[Path, Path], None]], tuple[Spool, Path]]:
    """A spool folder with something planted under one of its file names."""

    def plant(name: str, how: Callable[[Path, Path], None]) -> tuple[Spool, Path]:
        folder = tmp_path / "spool"
        folder.mkdir(mode=0o700, exist_ok=True)
        victim = tmp_path / "victim.jsonl"
        victim.write_bytes(PRECIOUS)
        victim.chmod(0o600)
        how(folder / name, victim)
        return Spool(str(folder)), victim

    return plant


@pytest.mark.parametrize("plant", PLANTS)
@pytest.mark.parametrize("name", ["active.lib.jsonl", "lock"])
def test_an_unsafe_file_in_the_write_path_is_refused_at_once(
    planted: Callable[[str, Callable[[Path, Path], None]], tuple[Spool, Path]],
    name: str,
    plant: Callable[[Path, Path], None],
) -> None:
    spool, victim = planted(name, plant)
    outcome = finishes(lambda: spool.append("lib", line(1)))
    assert isinstance(outcome, _fs.UnsafeFile), outcome
    assert spool.file(name) in _state.state.unsafe_files
    assert victim.read_bytes() == PRECIOUS
    assert events(spool) == []


@pytest.mark.parametrize("plant", PLANTS)
def test_an_unsafe_segment_is_never_read_sealed_or_removed(
    planted: Callable[[str, Callable[[Path, Path], None]], tuple[Spool, Path]],
    plant: Callable[[Path, Path], None],
) -> None:
    name = "seg.00000000000000000001.lib.jsonl"
    spool, victim = planted(name, plant)
    assert finishes(lambda: spool.append("lib", line(1))) is None
    spool.seal_all()
    assert [segment.name for segment in spool.segments()] != [name]
    assert name not in [segment.name for segment in spool.segments()]
    assert events(spool) == ["e1"]
    assert spool.count_pending() == 1
    assert spool.file(name) in _state.state.unsafe_files
    spool.seal_all()
    assert spool.purge() == 1
    assert os.path.lexists(spool.file(name))
    assert victim.read_bytes() == PRECIOUS


@pytest.mark.parametrize("plant", PLANTS)
@pytest.mark.parametrize("name", ["state.json", "destinations.json", QUARANTINE_FILE])
def test_unsafe_small_files_are_never_written_through(
    planted: Callable[[str, Callable[[Path, Path], None]], tuple[Spool, Path]],
    name: str,
    plant: Callable[[Path, Path], None],
) -> None:
    """Events still record; the planted file (or a link's target) never receives a byte."""
    spool, victim = planted(name, plant)
    spool.unsaved_drops.add("reentrant")  # makes the append write state.json

    def use() -> None:
        spool.append("lib", line(1))
        spool.record_destination("lib", RecordedDestination(backend="posthog", api_key="secret"))
        spool.quarantine([{"reason": "refused", "line": "secret"}])
        spool.read_state()
        spool.read_destinations()

    outcome = finishes(use)
    assert outcome is None or isinstance(outcome, _fs.UnsafeFile), outcome
    assert events(spool) == ["e1"]
    assert victim.read_bytes() == PRECIOUS
    path = Path(spool.file(name))
    if _fs.problem(str(path)) is not None:  # left alone: noted for `status`
        assert str(path) in _state.state.unsafe_files
    else:  # a link replaced as a name: our own private file now, the other name untouched
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- locks: bounded waits, re-entrance, fork ---------------------------------------------


def test_a_stuck_lock_holder_costs_one_bounded_wait(
    tmp_path: Path, hold_lock: Callable[[Path], subprocess.Popen[str]]
) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(0))
    holder = hold_lock(tmp_path / "spool" / "lock")
    assert isinstance(finishes(lambda: spool.append("lib", line(1))), LockTimeout)
    outcomes: list[type[BaseException]] = []

    def ten_more() -> None:
        for n in range(2, 12):
            try:
                spool.append("lib", line(n))
            except LockTimeout as exc:
                outcomes.append(type(exc))

    # they fail fast now: the lock is tried, not waited for (10 waits would take 20 s)
    assert finishes(ten_more, 8) is None
    assert outcomes == [LockTimeout] * 10
    release(holder)
    spool.append("lib", line(12))
    spool.append("lib", line(13))
    assert events(spool) == ["e0", "e12", "e13"]


def test_a_thread_stuck_inside_the_lock_costs_other_threads_one_bounded_wait(
    tmp_path: Path,
) -> None:
    """Review: a thread of ours hung with the lock (a stuck disk) must not cost 2 s per capture."""
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(0))
    inside = threading.Event()
    leave = threading.Event()

    def hang_inside() -> None:
        with spool.locked():
            inside.set()
            leave.wait(60)

    stuck = threading.Thread(target=hang_inside)
    stuck.start()
    try:
        assert inside.wait(30)
        assert isinstance(finishes(lambda: spool.append("lib", line(1))), LockTimeout)
        outcomes: list[object] = []

        def ten_more() -> None:
            for n in range(2, 12):
                outcomes.append(finishes(lambda n=n: spool.append("lib", line(n)), 30))

        assert finishes(ten_more, 8) is None  # ten more waits would take 20 s
        assert [type(outcome) for outcome in outcomes] == [LockTimeout] * 10
    finally:
        leave.set()
        stuck.join()
    spool.append("lib", line(12))
    assert events(spool) == ["e0", "e12"]


def test_close_never_waits_for_the_process_lock(
    tmp_path: Path, hold_lock: Callable[[Path], subprocess.Popen[str]]
) -> None:
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(0))
    hold_lock(tmp_path / "spool" / "lock")
    assert finishes(spool.close) is None  # no LockTimeout: only our own threads matter


def test_a_vanished_spool_is_created_again_while_telemetry_is_on(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    spool = Spool(str(folder))
    spool.append("lib", line(1))
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    spool.append("lib", line(2))
    assert events(spool) == ["e2"]


def test_after_disable_removed_the_spool_it_is_never_created_again(
    tmp_path: Path, home: Path
) -> None:
    folder = tmp_path / "spool"
    spool = Spool(str(folder))
    spool.append("lib", line(1))
    settings = home / ".config" / "luxonis-telemetry" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"v": 1, "mode": "off"}')
    settings.chmod(0o600)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    with pytest.raises(TurnedOff):
        spool.append("lib", line(2))
    with pytest.raises(TurnedOff):
        Spool(str(folder)).append("lib", line(3))  # a process that never wrote before
    assert not folder.exists()


def test_purge_by_another_process_is_noticed(tmp_path: Path) -> None:
    writer = Spool(str(tmp_path / "spool"))
    writer.append("lib", line(1))
    assert Spool(str(tmp_path / "spool")).purge() == 1
    writer.append("lib", line(2))  # its descriptor pointed at the removed file
    assert events(writer) == ["e2"]


def test_reentrant_append_from_a_signal_handler_is_refused_not_waited_for(
    tmp_path: Path,
) -> None:
    """Issue 8.1 at the spool: a handler running inside the locked section gets ``Reentered``."""
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(0))
    outcomes: list[object] = []

    def handler(_signum: int, _frame: object) -> None:
        try:
            spool.append("lib", line(99))
        except Reentered as exc:
            outcomes.append(exc)
        spool.close()  # skipped, not waited for
        outcomes.append("closed")

    original = spool._append_locked

    def hooked(key: str, data: bytes) -> None:
        os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs before this function returns
        original(key, data)

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        spool._append_locked = hooked  # type: ignore[method-assign]
        spool.append("lib", line(1))
    finally:
        signal.signal(signal.SIGUSR1, previous)
        del spool._append_locked
    assert [type(o) for o in outcomes] == [Reentered, str]
    spool.append("lib", line(2))
    assert events(spool) == ["e0", "e1", "e2"]


def test_reentrant_append_from_a_finalizer_is_refused_not_waited_for(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    outcomes: list[str] = []

    def append_from_finalizer(label: str) -> None:
        try:
            spool.append("lib", line(50))
            outcomes.append(f"{label}: recorded")
        except Reentered:
            outcomes.append(f"{label}: reentered")

    class Cyclic:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            append_from_finalizer("__del__")

    class Plain:
        pass

    original = spool._append_locked

    def hooked(key: str, data: bytes) -> None:
        Cyclic()
        gc.collect()  # the garbage collector runs __del__ right here, inside the lock
        victim = Plain()
        weakref.finalize(victim, append_from_finalizer, "finalize")
        del victim
        original(key, data)

    spool._append_locked = hooked  # type: ignore[method-assign]
    try:
        assert finishes(lambda: spool.append("lib", line(1))) is None
    finally:
        del spool._append_locked
    assert outcomes == ["__del__: reentered", "finalize: reentered"]
    assert events(spool) == ["e1"]


def test_threads_never_see_each_other_as_reentrant(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        for n in range(300):
            try:
                spool.append("lib", line(index * 1000 + n))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(events(spool)) == 2400


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_another_thread_writes_gets_its_own_locks(tmp_path: Path) -> None:
    """The child must not inherit a thread lock held by a thread that does not exist there."""
    spool = Spool(str(tmp_path / "spool"))
    spool.append("lib", line(0))
    inside = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with spool.locked():
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            spool.append("lib", line(1))
            code = 0
        finally:
            os._exit(code)
    leave.set()
    thread.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert events(spool) == ["e0", "e1"]


# -- many processes ----------------------------------------------------------------------

WRITER = """
import sys
from luxonis_telemetry.spool import Spool
from luxonis_telemetry.record import encode, new_record
spool = Spool(sys.argv[1])
for n in range(int(sys.argv[2])):
    record = new_record("capture", event="w", distinct_id="d", library="lib",
                        properties={"n": n, "w": sys.argv[3]}, context={})
    spool.append("lib", encode(record))
"""


def test_sealing_and_committing_while_others_append_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "spool"
    uploader = Spool(str(folder))
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(folder), "1500", str(w)])
        for w in range(4)
    ]
    delivered: list[tuple[str, int]] = []

    def deliver() -> None:
        uploader.seal_all()
        for segment in uploader.segments():
            confirmed = segment.start
            for _begin, end, item in segment.records():
                assert not isinstance(item, BadLine)
                delivered.append((item["properties"]["w"], item["properties"]["n"]))
                confirmed = end
            uploader.commit(segment, confirmed)

    while any(writer.poll() is None for writer in writers):
        if folder.exists():
            deliver()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0, 0]
    deliver()
    assert len(delivered) == 6000
    assert sorted(delivered) == sorted((str(w), n) for w in range(4) for n in range(1500))
    assert events(uploader) == []


def test_position_files_carry_their_format_version(tmp_path: Path) -> None:
    """Issue 11.1: a ``.pos`` of a newer format is not trusted: the segment is resent whole."""
    from luxonis_telemetry._segments import POSITION_VERSION, read_position

    path = tmp_path / "seg.pos"
    path.write_text(json.dumps({"v": POSITION_VERSION, "pos": 7, "acked": [[10, 20]]}))
    assert read_position(str(path)) == (7, [(10, 20)])
    path.write_text("12")  # the first release wrote a bare number
    assert read_position(str(path)) == (12, [])
    path.write_text(json.dumps({"v": POSITION_VERSION + 1, "pos": 7}))
    assert read_position(str(path)) == (0, [])
