"""The anonymous install id: created once, agreed on by racing processes, never faked."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from luxonis_telemetry import _state
from luxonis_telemetry._install_id import load_install_id, read_install_id
from luxonis_telemetry.config import install_id_path
from tests.conftest import race, run_python

OTHER_UID = 65534


@pytest.fixture
def id_path(home: Path) -> Path:
    return Path(str(install_id_path()))


def is_uuid4(text: object) -> bool:
    return isinstance(text, str) and str(uuid.UUID(text)) == text and uuid.UUID(text).version == 4


def test_created_once_and_kept(id_path: Path) -> None:
    first = load_install_id(str(id_path))
    assert is_uuid4(first)
    assert id_path.read_text() == f"{first}\n"
    assert load_install_id(str(id_path)) == first
    _state.reset()  # a new process reads the same file
    assert load_install_id(str(id_path)) == first
    assert read_install_id(str(id_path)) == first
    assert sorted(p.name for p in id_path.parent.iterdir()) == ["install_id"]


def test_created_private_under_a_permissive_umask(id_path: Path) -> None:
    old = os.umask(0)
    try:
        load_install_id(str(id_path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(id_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(id_path.parent.stat().st_mode) == 0o700


def test_a_folder_the_user_named_is_not_re_moded(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    project.chmod(0o755)
    path = project / ".install_id"
    assert is_uuid4(load_install_id(str(path)))
    assert stat.S_IMODE(project.stat().st_mode) == 0o755
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_path_no_id() -> None:
    assert load_install_id(None) is None


def test_read_never_creates(id_path: Path) -> None:
    assert read_install_id(str(id_path)) is None
    assert not id_path.exists()
    assert not id_path.parent.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("6F9619FF-8B86-4D11-B42D-00C04FC964FF\n", "6f9619ff-8b86-4d11-b42d-00c04fc964ff"),
        ("  6f9619ff-8b86-4d11-b42d-00c04fc964ff  ", "6f9619ff-8b86-4d11-b42d-00c04fc964ff"),
        ("6f9619ff8b864d11b42d00c04fc964ff", None),
        ("not an id", None),
        ("", None),
        ("6f9619ff-8b86-4d11-b42d-00c04fc964ff" + "x" * 200, None),
    ],
)
def test_reading_an_existing_file(content: str, expected: str | None, id_path: Path) -> None:
    id_path.parent.mkdir(parents=True)
    id_path.write_text(content)
    assert read_install_id(str(id_path)) == expected
    assert load_install_id(str(id_path)) == expected
    assert id_path.read_text() == content  # an unusable file is left alone


def test_a_creator_that_finishes_publishing_while_we_look_is_read(
    id_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window the six-process race hit now and then: our open sees the creator's
    second link, and by the time we look again the creator has removed it."""
    from luxonis_telemetry import _fs

    theirs = str(uuid.uuid4())
    id_path.parent.mkdir(parents=True)
    id_path.write_text(f"{theirs}\n")
    creators_temp = id_path.with_name("install_id.0123456789abcdef.tmp")
    os.link(id_path, creators_temp)
    real_open = _fs.open_checked

    def open_as_the_creator_unlinks(path: str, *args: object, **kwargs: object) -> int:
        try:
            return real_open(path, *args, **kwargs)  # type: ignore[arg-type]
        except _fs.UnsafeFile:
            creators_temp.unlink(missing_ok=True)
            raise

    monkeypatch.setattr(_fs, "open_checked", open_as_the_creator_unlinks)
    assert load_install_id(str(id_path)) == theirs
    assert id_path.read_text() == f"{theirs}\n"


def test_six_racing_processes_agree_on_one_id(id_path: Path, tmp_path: Path) -> None:
    ids = set(
        race(
            tmp_path,
            "from luxonis_telemetry._install_id import load_install_id; "
            f"print(load_install_id({str(id_path)!r}))",
        )
    )
    assert len(ids) == 1
    (only,) = ids
    assert is_uuid4(only)
    assert id_path.read_text().strip() == only
    assert sorted(p.name for p in id_path.parent.iterdir()) == ["install_id"]
    assert id_path.stat().st_nlink == 1


def test_an_id_left_with_a_second_link_by_a_crashed_creator_is_still_read(id_path: Path) -> None:
    """A creator killed between ``link`` and ``unlink`` leaves a whole id with two names."""
    id_path.parent.mkdir(parents=True)
    known = str(uuid.uuid4())
    id_path.write_text(known + "\n")
    os.link(id_path, f"{id_path}.0123456789abcdef.tmp")
    assert load_install_id(str(id_path)) == known


def make_unusable(kind: str, path: Path, tmp_path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        target = tmp_path / "elsewhere"
        target.write_text(str(uuid.uuid4()) + "\n")
        path.symlink_to(target)
    elif kind == "garbage":
        path.write_bytes(b"\x00\xffnot an id\n")
    elif kind == "folder":
        path.mkdir()
    elif kind == "other_owner":
        path.write_text(str(uuid.uuid4()) + "\n")
        try:
            os.chown(path, OTHER_UID, OTHER_UID)
        except PermissionError:
            pytest.skip("needs root to give a file to another user")
    elif kind == "unreadable":
        path.write_text(str(uuid.uuid4()) + "\n")
        path.chmod(0)
        if os.access(path, os.R_OK):
            pytest.skip("this user reads any file (root); see the privilege-dropping test")


UNUSABLE = ["fifo", "symlink", "garbage", "folder", "other_owner", "unreadable"]


@pytest.mark.parametrize("kind", UNUSABLE)
def test_an_unusable_file_gives_no_id_and_stays(kind: str, id_path: Path, tmp_path: Path) -> None:
    make_unusable(kind, id_path, tmp_path)
    before = id_path.lstat()
    done = run_python(
        "from luxonis_telemetry._install_id import load_install_id\n"
        f"print(load_install_id({str(id_path)!r}))\n",
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    after = id_path.lstat()
    assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (
        before.st_ino,
        before.st_mode,
        before.st_mtime_ns,
    )


@pytest.mark.parametrize("kind", UNUSABLE)
def test_two_processes_both_record_a_null_install_id(
    kind: str, id_path: Path, tmp_path: Path, spool_path: Path
) -> None:
    """No new random "install" id per process: install_id null, the session id as distinct id."""
    make_unusable(kind, id_path, tmp_path)
    code = (
        "from luxonis_telemetry import Telemetry, _state\n"
        "t = Telemetry('lib')\n"
        "t.capture('e')\n"
        "print(_state.state.session_id())\n"
    )
    sessions = []
    for _ in range(2):
        done = run_python(code, timeout=60)
        assert done.returncode == 0, done.stderr
        sessions.append(done.stdout.strip())
    lines = [
        json.loads(line)
        for segment in sorted(spool_path.glob("*.jsonl"))
        for line in segment.read_bytes().splitlines()
    ]
    assert len(lines) == 2
    assert [record["context"]["install_id"] for record in lines] == [None, None]
    assert sorted(record["distinct_id"] for record in lines) == sorted(sessions)
    assert sorted(record["context"]["session_id"] for record in lines) == sorted(sessions)
    assert sessions[0] != sessions[1]


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder outside root's private tmp, owned by an ordinary user when we are root."""
    path = Path(tempfile.mkdtemp(prefix="luxonis-telemetry-test-"))
    try:
        path.chmod(0o755)
        if os.geteuid() == 0:
            os.chown(path, OTHER_UID, OTHER_UID)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_an_unreadable_file_gives_no_id_even_for_root_tests(shared_folder: Path) -> None:
    """As root nothing is unreadable, so the child drops to an ordinary user after its imports."""
    path = shared_folder / "install_id"
    path.write_text(str(uuid.uuid4()) + "\n")
    if os.geteuid() == 0:
        os.chown(path, OTHER_UID, OTHER_UID)
    path.chmod(0)
    code = (
        "import logging, os\n"
        "from luxonis_telemetry._install_id import load_install_id\n"
        "from luxonis_telemetry import _state\n"
        "if os.geteuid() == 0:\n"
        f"    os.setgid({OTHER_UID})\n"
        f"    os.setuid({OTHER_UID})\n"
        "assert not os.access(" + repr(str(path)) + ", os.R_OK)\n"
        f"first = load_install_id({str(path)!r})\n"
        "_state.reset()\n"
        f"second = load_install_id({str(path)!r})\n"
        "print(first, second)\n"
    )
    done = run_python(code, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None"]
    assert stat.S_IMODE(path.stat().st_mode) == 0
