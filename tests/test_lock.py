"""``_lock``: an exclusive lock across processes whose every wait is bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import filelock
import pytest

from luxonis_telemetry import _fs, _state
from luxonis_telemetry._lock import LockTimeout, ProcessLock
from tests.conftest import finishes

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX flock")


def test_exclusive_between_descriptors_and_reusable(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    first, second = ProcessLock(path), ProcessLock(path)
    assert first.acquire(0)
    assert not second.acquire(0)
    assert not second.acquire(0.05)
    first.release()
    assert second.acquire(0)
    second.release()
    assert first.acquire(1)
    first.release()
    first.close()
    first.close()  # idempotent
    second.close()
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_real_holder_in_another_process_makes_us_wait_only_as_long_as_asked(
    tmp_path: Path, hold_lock: Callable[[Path], subprocess.Popen[str]]
) -> None:
    path = tmp_path / "lock"
    path.touch(mode=0o600)
    hold_lock(path)
    lock = ProcessLock(str(path))
    assert finishes(lambda: lock.acquire(0)) is False
    started = time.monotonic()
    assert finishes(lambda: lock.acquire(0.3)) is False
    assert time.monotonic() - started < 10  # bounded, never a blocking flock
    lock.close()


def test_a_holder_that_finishes_lets_us_in(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    code = (
        "import fcntl, sys, time\n"
        "handle = open(sys.argv[1], 'a')\n"
        "fcntl.flock(handle, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(0.3)\n"  # a short critical section, then exit (releases)
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    lock = ProcessLock(str(path))
    assert lock.acquire(30)
    lock.release()
    lock.close()
    process.communicate(timeout=30)


def test_interoperates_with_filelock(tmp_path: Path) -> None:
    """Windows uses ``filelock``; both are ``flock`` here, so mixed copies still exclude."""
    path = str(tmp_path / "lock")
    portable = filelock.FileLock(path)
    with portable:
        lock = ProcessLock(path)
        assert not lock.acquire(0)
    assert lock.acquire(0)
    lock.release()
    lock.close()


def test_a_vanished_lock_file_is_detected(tmp_path: Path) -> None:
    """A lock on a deleted file excludes nobody: the caller must learn it and start afresh."""
    path = tmp_path / "lock"
    lock = ProcessLock(str(path))
    assert lock.acquire(0)
    lock.release()
    path.unlink()
    with pytest.raises(FileNotFoundError):
        lock.acquire(0)
    # the stale descriptor was dropped; the next acquire makes a fresh file
    assert lock.acquire(0)
    assert path.exists()
    other = ProcessLock(str(path))
    assert not other.acquire(0)
    lock.release()
    lock.close()
    other.close()


def test_missing_folder_is_reported_not_created(tmp_path: Path) -> None:
    lock = ProcessLock(str(tmp_path / "gone" / "lock"))
    with pytest.raises(FileNotFoundError):
        lock.acquire(0)
    assert not (tmp_path / "gone").exists()


def make_fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def make_folder(path: Path) -> None:
    path.mkdir()


def make_symlink(path: Path) -> None:
    target = path.parent / "victim"
    target.write_text("precious\n")
    path.symlink_to(target)


def make_hard_link(path: Path) -> None:
    target = path.parent / "victim"
    target.write_text("precious\n")
    os.link(target, path)


@pytest.mark.parametrize("plant", [make_fifo, make_folder, make_symlink, make_hard_link])
def test_an_unsafe_file_at_the_lock_path_is_refused_at_once(
    tmp_path: Path, plant: Callable[[Path], None]
) -> None:
    path = tmp_path / "lock"
    plant(path)
    lock = ProcessLock(str(path))
    outcome = finishes(lambda: lock.acquire(2))
    assert isinstance(outcome, _fs.UnsafeFile), outcome
    assert str(path) in _state.state.unsafe_files
    victim = tmp_path / "victim"
    if victim.exists():
        assert victim.read_text() == "precious\n"


def test_lock_timeout_is_an_oserror() -> None:
    """Callers that handle ``OSError`` (every capture does) handle a timeout too."""
    assert issubclass(LockTimeout, OSError)
