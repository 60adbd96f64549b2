"""settings.json (the person's enable/local/disable choice) and the first-run notice marker."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from luxonis_telemetry._settings import (
    FORMAT_VERSION,
    NOTICE_FILE,
    SETTINGS_FILE,
    claim_notice,
    notice_path,
    read_mode,
    write_mode,
)
from luxonis_telemetry.config import TelemetryConfig, decide_mode
from tests.conftest import race, run_python, wait_until


@pytest.fixture
def folder(home: Path) -> Path:
    return home / ".config" / "luxonis-telemetry"


def put(folder: Path, content: bytes | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SETTINGS_FILE
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# -- writing --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["on", "local", "off"])
def test_write_then_read(mode: str, folder: Path) -> None:
    path = write_mode(str(folder), mode, "2026-01-01T00:00:00+00:00")
    assert path == str(folder / SETTINGS_FILE)
    data = json.loads(Path(path).read_text())
    assert data == {"v": FORMAT_VERSION, "mode": mode, "changed_at": "2026-01-01T00:00:00+00:00"}
    got = read_mode(str(folder))
    assert (got.mode, got.problem, got.path) == (mode, None, path)


def test_written_private_even_under_a_permissive_umask(
    folder: Path, permissive_umask: None, home: Path
) -> None:
    write_mode(str(folder), "off", "t")
    assert stat.S_IMODE((folder / SETTINGS_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700  # ~/.config, created by us


def test_an_open_folder_is_tightened(folder: Path) -> None:
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    write_mode(str(folder), "local", "t")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_rewriting_is_atomic_and_leaves_no_temporary_file(folder: Path) -> None:
    for mode in ("on", "off", "local", "off"):
        write_mode(str(folder), mode, "t")
    assert sorted(p.name for p in folder.iterdir()) == [SETTINGS_FILE]
    assert read_mode(str(folder)).mode == "off"


def test_writing_replaces_a_link_instead_of_writing_through_it(
    folder: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    folder.mkdir(parents=True)
    (folder / SETTINGS_FILE).symlink_to(victim)
    write_mode(str(folder), "off", "t")
    assert victim.read_text() == "precious"
    assert not (folder / SETTINGS_FILE).is_symlink()
    assert read_mode(str(folder)).mode == "off"


def test_an_unknown_mode_is_refused(folder: Path) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        write_mode(str(folder), "sometimes", "t")
    assert not folder.exists()


# -- reading -----------------------------------------------------------------------------


def test_no_file_means_no_choice(folder: Path) -> None:
    got = read_mode(str(folder))
    assert (got.mode, got.problem) == (None, None)
    assert not folder.exists()


def test_a_config_folder_that_is_a_file_means_no_choice(folder: Path) -> None:
    folder.parent.mkdir(parents=True)
    folder.write_text("not a folder")
    assert read_mode(str(folder)).mode is None


@pytest.mark.parametrize(
    ("content", "mode"),
    [
        ({"enabled": False}, "off"),
        ({"enabled": True}, "on"),
        ({"v": 1, "mode": "local"}, "local"),
        ({"mode": "off"}, "off"),  # no version: ours
        ({"v": 1}, None),
        ({}, None),
        ({"v": 1, "mode": "on", "later_key": [1, 2]}, "on"),
    ],
)
def test_current_and_legacy_formats(content: dict[str, object], mode: str, folder: Path) -> None:
    put(folder, json.dumps(content))
    got = read_mode(str(folder))
    assert (got.mode, got.problem) == (mode, None)


@pytest.mark.parametrize(
    ("content", "mode", "has_problem"),
    [
        ({"v": 2, "mode": "off"}, "off", False),
        ({"v": 2, "mode": "local"}, "local", False),
        ({"v": 2, "mode": "on"}, "local", True),
        ({"v": 2, "mode": "upload_hourly"}, "local", True),
        ({"v": 2}, "local", True),
        ({"v": 2, "enabled": True}, "local", True),
        ({"v": 2, "enabled": False}, "off", False),
        ({"v": "2", "mode": "on"}, "local", True),
        ({"v": 1.5, "mode": "on"}, "local", True),
        ({"v": True, "mode": "on"}, "local", True),
    ],
)
def test_a_newer_format_is_read_conservatively(
    content: dict[str, object], mode: str, has_problem: bool, folder: Path
) -> None:
    """Never upload on a setting this version does not understand: off/local kept, else local."""
    put(folder, json.dumps(content))
    got = read_mode(str(folder))
    assert got.mode == mode
    assert (got.problem is not None) is has_problem
    if has_problem:
        assert "newer format" in str(got.problem)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"\xff\xfe\x00",
        b"[1, 2]",
        b'"off"',
        b"null",
        b"1e400",
        b"[" * 100_000,
        json.dumps({"v": 1, "mode": "sometimes"}).encode(),
        json.dumps({"v": 1, "mode": 1}).encode(),
        json.dumps({"v": 1, "mode": None, "enabled": "no"}).encode(),
        json.dumps({"enabled": "yes"}).encode(),
        json.dumps({"enabled": 0}).encode(),
        b'{"v": 1, "mode": "on"' + b" " * (128 * 1024) + b"}",  # beyond the read limit
    ],
)
def test_a_malformed_file_means_off_with_a_problem(content: bytes, folder: Path) -> None:
    """The person may have meant ``off``: telemetry stays off until the file is fixed."""
    path = put(folder, content)
    got = read_mode(str(folder))
    assert got.mode == "off"
    assert got.problem is not None
    assert str(path) in got.problem
    assert "telemetry is off" in got.problem
    decision = decide_mode("on", {"LUXONIS_TELEMETRY_ENABLED": "1"})
    assert (decision.mode, decision.source, decision.problem) == ("off", "settings", got.problem)


def make_unsafe(kind: str, folder: Path, tmp_path: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SETTINGS_FILE
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        target = tmp_path / "elsewhere.json"
        target.write_text(json.dumps({"v": 1, "mode": "on"}))
        path.symlink_to(target)
    elif kind == "dangling":
        path.symlink_to(tmp_path / "missing.json")
    elif kind == "hardlink":
        path.write_text(json.dumps({"v": 1, "mode": "on"}))
        os.link(path, tmp_path / "other_name.json")
    elif kind == "folder":
        path.mkdir()
    elif kind == "other_owner":
        path.write_text(json.dumps({"v": 1, "mode": "on"}))
        try:
            os.chown(path, 65534, 65534)
        except PermissionError:
            pytest.skip("needs root to give a file to another user")
    return path


UNSAFE_KINDS = ["fifo", "symlink", "dangling", "hardlink", "folder", "other_owner"]


@pytest.mark.parametrize("kind", UNSAFE_KINDS)
def test_an_unsafe_file_means_off_with_a_problem_and_never_hangs(
    kind: str, folder: Path, tmp_path: Path
) -> None:
    path = make_unsafe(kind, folder, tmp_path)
    # in a child process: were the FIFO opened blocking, only the child would hang
    done = run_python(
        "import json, sys\n"
        "from luxonis_telemetry._settings import read_mode\n"
        "from luxonis_telemetry.config import TelemetryConfig\n"
        "got = read_mode(sys.argv[1])\n"
        "print(json.dumps([got.mode, got.problem, TelemetryConfig.from_environ().mode]))\n".replace(
            "sys.argv[1]", repr(str(folder))
        ),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    mode, problem, config_mode = json.loads(done.stdout)
    assert mode == "off"
    assert config_mode == "off"
    assert str(path) in problem
    assert "telemetry is off" in problem


def test_an_unreadable_file_means_off_with_a_problem(folder: Path) -> None:
    path = put(folder, json.dumps({"v": 1, "mode": "on"}))
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("this user reads any file (root)")
    got = read_mode(str(folder))
    assert got.mode == "off"
    assert "cannot be read" in str(got.problem)


def test_an_unsafe_settings_file_is_never_replaced_by_reading(folder: Path, tmp_path: Path) -> None:
    path = make_unsafe("fifo", folder, tmp_path)
    TelemetryConfig.from_environ()
    assert stat.S_ISFIFO(path.lstat().st_mode)


# -- the first-run notice marker -----------------------------------------------------------


def test_claim_notice_is_true_once(folder: Path) -> None:
    assert claim_notice(str(folder)) is True
    assert claim_notice(str(folder)) is False
    assert claim_notice(str(folder)) is False
    marker = Path(notice_path(str(folder)))
    assert marker == folder / NOTICE_FILE
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.parametrize("kind", ["fifo", "symlink", "folder"])
def test_anything_at_the_markers_name_means_already_shown(kind: str, folder: Path) -> None:
    folder.mkdir(parents=True)
    marker = folder / NOTICE_FILE
    if kind == "fifo":
        os.mkfifo(marker)
    elif kind == "symlink":
        marker.symlink_to(folder / "missing")
    else:
        marker.mkdir()
    assert claim_notice(str(folder)) is False
    assert not (folder / "missing").exists()


def test_no_way_to_remember_means_no_notice(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert claim_notice(str(blocker / "config")) is False


def test_claim_notice_is_true_for_exactly_one_of_six_racing_processes(
    folder: Path, tmp_path: Path
) -> None:
    outputs = race(
        tmp_path,
        "from luxonis_telemetry._settings import claim_notice; "
        f"print(claim_notice({str(folder)!r}))",
    )
    assert sorted(outputs) == ["False"] * 5 + ["True"]
    assert claim_notice(str(folder)) is False


def test_write_mode_survives_a_reader_polling(folder: Path) -> None:
    """A reader never sees a half-written file while the choice changes."""
    write_mode(str(folder), "on", "t")
    code = (
        "import sys\n"
        "from luxonis_telemetry._settings import read_mode\n"
        f"folder = {str(folder)!r}\n"
        "seen = set()\n"
        "for _ in range(3000):\n"
        "    got = read_mode(folder)\n"
        "    seen.add((got.mode, got.problem))\n"
        "print(sorted(seen, key=str))\n"
    )
    reader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        modes = ["on", "local", "off"]
        count = 0
        while reader.poll() is None:
            write_mode(str(folder), modes[count % 3], "t")
            count += 1
        output = reader.communicate(timeout=60)[0]
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert "None)" in output
    assert "telemetry is off" not in output
    assert wait_until(lambda: sorted(p.name for p in folder.iterdir()) == [SETTINGS_FILE], 10)
