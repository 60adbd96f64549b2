"""The safe file primitives every file owner uses: nothing trusted by its name."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from luxonis_telemetry import _fs, _state
from luxonis_telemetry._fs import (
    APPEND_FLAGS,
    READ_FLAGS,
    UnsafeFile,
    atomic_write,
    ensure_private_folder,
    open_checked,
    open_user_file,
    problem,
    read_limited,
    read_regular,
    remove,
    temporary_name,
)
from tests.conftest import run_python

OTHER_UID = 65534


def give_away(path: Path, *, follow: bool = True) -> None:
    """Make ``path`` another user's (needs root; the test is skipped otherwise)."""
    try:
        if follow:
            os.chown(path, OTHER_UID, OTHER_UID)
        else:
            os.lchown(path, OTHER_UID, OTHER_UID)
    except PermissionError:
        pytest.skip("needs root to give a file to another user")


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder of its own (conftest puts the home folder in ``tmp_path``)."""
    path = tmp_path / "files"
    path.mkdir()
    return path


def regular(files: Path, name: str = "file", content: bytes = b"data") -> Path:
    path = files / name
    path.write_bytes(content)
    return path


def make(kind: str, files: Path) -> Path:
    """A path that is anything but a regular file of ours with one link."""
    path = files / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to(regular(files, "target"))
    elif kind == "dangling":
        path.symlink_to(files / "missing")
    elif kind == "folder":
        path.mkdir()
    elif kind == "hardlink":
        regular(files, kind)
        os.link(path, files / "second_name")
    elif kind == "other_owner":
        regular(files, kind)
        give_away(path)
    elif kind == "socket":
        import socket

        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    return path


UNSAFE = ["fifo", "symlink", "dangling", "folder", "hardlink", "other_owner", "socket"]


def in_child(code: str) -> object:
    """Run ``code`` (which prints JSON) in a child: a blocking open hangs only the child."""
    done = run_python("import json\nfrom luxonis_telemetry import _fs\n" + code, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- open_checked --------------------------------------------------------------------


def test_open_checked_opens_a_regular_file_of_ours(files: Path) -> None:
    path = regular(files)
    fd = open_checked(str(path))
    try:
        assert os.read(fd, 100) == b"data"
    finally:
        os.close(fd)


def test_open_checked_of_a_missing_file(files: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_checked(str(files / "missing"))


@pytest.mark.parametrize("kind", UNSAFE)
@pytest.mark.parametrize("flags", ["read", "append"])
def test_open_checked_refuses_without_hanging(kind: str, flags: str, files: Path) -> None:
    path = make(kind, files)
    before = path.lstat()
    verdict = in_child(
        "try:\n"
        f"    fd = _fs.open_checked({str(path)!r}, _fs.{flags.upper()}_FLAGS)\n"
        "    print(json.dumps('opened'))\n"
        "except _fs.UnsafeFile as exc:\n"
        "    print(json.dumps('refused: ' + exc.strerror))\n"
    )
    assert str(verdict).startswith("refused"), verdict
    after = path.lstat()
    assert (after.st_mode, after.st_size, after.st_mtime_ns) == (
        before.st_mode,
        before.st_size,
        before.st_mtime_ns,
    )
    assert not (files / "missing").exists()  # a dangling link is never created through


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "other_owner", "folder"])
def test_refused_files_are_noted_for_status(kind: str, files: Path) -> None:
    path = make(kind, files)
    with pytest.raises(UnsafeFile):
        open_checked(str(path))
    assert str(path) in _state.state.unsafe_files


def test_noted_files_are_bounded(files: Path) -> None:
    for number in range(300):
        link = files / f"link{number}"
        link.symlink_to(files / "nowhere")
        with pytest.raises(UnsafeFile):
            open_checked(str(link))
    assert len(_state.state.unsafe_files) == 256


def test_a_refused_file_is_an_oserror_but_no_permission_error(files: Path) -> None:
    with pytest.raises(UnsafeFile) as caught:
        open_checked(str(make("symlink", files)))
    assert isinstance(caught.value, OSError)
    assert not isinstance(caught.value, PermissionError)
    assert caught.value.filename == str(files / "symlink")


def test_links_ok_accepts_a_hard_link_and_nothing_else(files: Path) -> None:
    path = make("hardlink", files)
    fd = open_checked(str(path), links_ok=True)
    os.close(fd)
    assert read_limited(str(path), 10) is None
    assert read_limited(str(path), 10, links_ok=True) == b"data"
    with pytest.raises(UnsafeFile):
        open_checked(str(make("symlink", files)), links_ok=True)


def test_append_creates_a_private_file_under_a_permissive_umask(
    files: Path, permissive_umask: None
) -> None:
    path = files / "new.jsonl"
    fd = open_checked(str(path), APPEND_FLAGS)
    os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_read_flags_never_create(files: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_checked(str(files / "x"), READ_FLAGS)
    assert not (files / "x").exists()


# -- reading ---------------------------------------------------------------------------


def test_read_limited(files: Path) -> None:
    path = regular(files, content=b"x" * (3 << 20))
    assert read_limited(str(path), 10) == b"x" * 10
    assert read_limited(str(path), 5 << 20) == b"x" * (3 << 20)
    assert read_limited(str(files / "missing"), 10) is None
    assert read_limited(str(files / "a\0b"), 10) is None


@pytest.mark.parametrize("kind", UNSAFE)
def test_read_limited_gives_none_for_anything_unsafe(kind: str, files: Path) -> None:
    path = make(kind, files)
    assert in_child(f"print(json.dumps(_fs.read_limited({str(path)!r}, 100)))") is None


def test_read_limited_of_an_unreadable_file(files: Path) -> None:
    path = regular(files)
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("this user reads any file (root)")
    assert read_limited(str(path), 10) is None


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "other_owner"])
def test_read_regular_reads_any_regular_file(kind: str, files: Path) -> None:
    """For input that can only make telemetry more private (./.env)."""
    assert read_regular(str(make(kind, files)), 100) == b"data"


@pytest.mark.parametrize("kind", ["fifo", "folder", "dangling", "socket"])
def test_read_regular_refuses_what_is_no_file_without_hanging(kind: str, files: Path) -> None:
    path = make(kind, files)
    assert in_child(f"print(json.dumps(_fs.read_regular({str(path)!r}, 100)))") is None


def test_read_regular_is_limited(files: Path) -> None:
    assert read_regular(str(regular(files, content=b"y" * 1000)), 10) == b"y" * 10
    assert read_regular(str(files / "missing"), 10) is None


def test_open_user_file_follows_a_link_to_a_file_of_ours(files: Path) -> None:
    path = make("symlink", files)
    fd = open_user_file(str(path))
    try:
        assert os.read(fd, 10) == b"data"
    finally:
        os.close(fd)
    hard = make("hardlink", files)
    os.close(open_user_file(str(hard)))


@pytest.mark.parametrize("kind", ["fifo", "folder", "other_owner", "socket"])
def test_open_user_file_refuses_without_hanging(kind: str, files: Path) -> None:
    path = make(kind, files)
    verdict = in_child(
        "try:\n"
        f"    _fs.open_user_file({str(path)!r})\n"
        "    print(json.dumps('opened'))\n"
        "except OSError as exc:\n"
        "    print(json.dumps(type(exc).__name__))\n"
    )
    assert verdict in ("UnsafeFile", "OSError")


# -- atomic_write --------------------------------------------------------------------------


def test_atomic_write_creates_and_replaces_privately(files: Path, permissive_umask: None) -> None:
    path = files / "state.json"
    atomic_write(str(path), b"one")
    assert path.read_bytes() == b"one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    atomic_write(str(path), b"two")
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in files.iterdir()) == ["state.json"]


def test_atomic_write_durable(files: Path) -> None:
    path = files / "settings.json"
    atomic_write(str(path), b"x" * 100_000, durable=True)
    assert path.read_bytes() == b"x" * 100_000


def test_atomic_write_replaces_a_symlink_not_its_target(files: Path) -> None:
    path = make("symlink", files)
    atomic_write(str(path), b"ours")
    assert (files / "target").read_bytes() == b"data"
    assert not path.is_symlink()
    assert path.read_bytes() == b"ours"


def test_atomic_write_replaces_a_dangling_symlink_without_creating_its_target(
    files: Path,
) -> None:
    path = make("dangling", files)
    atomic_write(str(path), b"ours")
    assert not (files / "missing").exists()
    assert path.read_bytes() == b"ours"


def test_atomic_write_never_writes_into_a_hard_link(files: Path) -> None:
    path = make("hardlink", files)
    atomic_write(str(path), b"ours")
    assert (files / "second_name").read_bytes() == b"data"
    assert path.read_bytes() == b"ours"
    assert path.stat().st_nlink == 1


@pytest.mark.parametrize("kind", ["fifo", "folder", "other_owner", "socket"])
def test_atomic_write_refuses_to_replace_what_is_not_ours(kind: str, files: Path) -> None:
    path = make(kind, files)
    before = sorted(p.name for p in files.iterdir())
    mode = path.lstat().st_mode
    with pytest.raises(UnsafeFile):
        atomic_write(str(path), b"ours")
    assert path.lstat().st_mode == mode
    assert sorted(p.name for p in files.iterdir()) == before
    assert str(path) in _state.state.unsafe_files


def test_atomic_write_leaves_no_temporary_file_when_writing_fails(files: Path) -> None:
    """A real write failure (file size limit: EFBIG) after the temporary file was made."""
    path = regular(files, "state.json", b"old")
    verdict = in_child(
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))\n"
        "try:\n"
        f"    _fs.atomic_write({str(path)!r}, b'x' * 10_000)\n"
        "    print(json.dumps('written'))\n"
        "except OSError as exc:\n"
        "    print(json.dumps(exc.errno))\n"
    )
    assert verdict == errno.EFBIG
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in files.iterdir()) == ["state.json"]


def test_atomic_write_leaves_no_temporary_file_on_any_error(files: Path) -> None:
    path = files / "state.json"
    with pytest.raises(TypeError):
        atomic_write(str(path), "not bytes")  # type: ignore[arg-type]
    assert list(files.iterdir()) == []


def test_temporary_names_are_unpredictable(files: Path) -> None:
    base = str(files / "state.json")
    names = {temporary_name(base) for _ in range(1000)}
    assert len(names) == 1000
    for name in names:
        middle = name[len(base) + 1 : -len(".tmp")]
        assert name.startswith(base + ".")
        assert name.endswith(".tmp")
        assert len(middle) == 16
        int(middle, 16)


@pytest.mark.parametrize("planted", ["file", "symlink"])
def test_atomic_write_opens_its_temporary_file_exclusively(
    planted: str, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Had someone guessed the name, the write fails instead of going through their file."""
    victim = regular(files, "victim", b"precious")
    guessed = files / "guessed.tmp"
    if planted == "file":
        guessed.write_bytes(b"planted")
    else:
        guessed.symlink_to(victim)
    monkeypatch.setattr(_fs, "temporary_name", lambda path: str(guessed))
    with pytest.raises(FileExistsError):
        atomic_write(str(files / "state.json"), b"ours")
    assert victim.read_bytes() == b"precious"
    assert guessed.is_symlink() or guessed.read_bytes() == b"planted"
    assert not (files / "state.json").exists()


# -- folders -----------------------------------------------------------------------------


def test_ensure_private_folder_creates_every_level_private(
    files: Path, permissive_umask: None
) -> None:
    path = files / "a" / "b" / "c"
    ensure_private_folder(str(path))
    for level in (files / "a", files / "a" / "b", path):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700, level
    ensure_private_folder(str(path))  # again: nothing to do


def test_ensure_private_folder_tightens_an_open_folder_of_ours(files: Path) -> None:
    path = files / "spool"
    path.mkdir()
    path.chmod(0o777)
    ensure_private_folder(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_ensure_private_folder_refuses_a_file(files: Path) -> None:
    path = regular(files)
    with pytest.raises(NotADirectoryError):
        ensure_private_folder(str(path))
    with pytest.raises(OSError):
        ensure_private_folder(str(path / "below"))


def test_ensure_private_folder_refuses_another_users_folder(files: Path) -> None:
    path = files / "theirs"
    path.mkdir()
    path.chmod(0o777)
    give_away(path)
    with pytest.raises(UnsafeFile):
        ensure_private_folder(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o777  # not ours to change


def test_ensure_private_folder_accepts_the_users_own_link_to_a_folder_of_theirs(
    files: Path,
) -> None:
    """Dotfile managers symlink ~/.config/<app>; that must keep working."""
    real = files / "dotfiles" / "luxonis-telemetry"
    real.mkdir(parents=True)
    link = files / "config"
    link.symlink_to(real)
    ensure_private_folder(str(link))
    assert link.is_symlink()


def test_ensure_private_folder_refuses_a_link_made_by_someone_else(files: Path) -> None:
    real = files / "real"
    real.mkdir()
    link = files / "spool"
    link.symlink_to(real)
    give_away(link, follow=False)
    with pytest.raises(NotADirectoryError):
        ensure_private_folder(str(link))


def test_ensure_private_folder_refuses_a_link_to_someone_elses_folder(files: Path) -> None:
    real = files / "real"
    real.mkdir()
    give_away(real)
    link = files / "spool"
    link.symlink_to(real)
    with pytest.raises(UnsafeFile):
        ensure_private_folder(str(link))


def test_ensure_private_folder_refuses_a_dangling_link(files: Path) -> None:
    link = files / "spool"
    link.symlink_to(files / "missing")
    with pytest.raises(FileNotFoundError):
        ensure_private_folder(str(link))
    assert not (files / "missing").exists()


# -- remove and problem --------------------------------------------------------------------


def test_remove_unlinks_a_link_never_its_target(files: Path) -> None:
    path = make("symlink", files)
    assert remove(str(path)) is True
    assert (files / "target").read_bytes() == b"data"
    assert remove(str(path)) is False
    assert remove(str(make("folder", files))) is False


@pytest.mark.parametrize(
    ("kind", "verdict"),
    [
        ("fifo", "not a regular file"),
        ("folder", "not a regular file"),
        ("socket", "not a regular file"),
        ("symlink", "is a symbolic link"),
        ("dangling", "is a symbolic link"),
        ("hardlink", "has 2 hard links"),
        ("other_owner", f"owned by another user (uid {OTHER_UID})"),
    ],
)
def test_problem_names_what_is_wrong(kind: str, verdict: str, files: Path) -> None:
    assert problem(str(make(kind, files))) == verdict


def test_problem_of_fine_and_missing_files(files: Path) -> None:
    assert problem(str(regular(files))) is None
    assert problem(str(files / "missing")) is None


def test_problem_of_a_path_that_cannot_be_examined(files: Path) -> None:
    verdict = problem(str(files / ("x" * 5000)))
    assert verdict is not None
    assert verdict.startswith("cannot be examined")
