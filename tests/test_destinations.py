"""destinations.json: where each library sends, the one place a key is kept (0600)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from luxonis_telemetry import Telemetry
from luxonis_telemetry._destinations import (
    DESTINATIONS_FILE,
    FORMAT_VERSION,
    RecordedDestination,
    load_destinations,
    record,
)
from tests.conftest import run_python

KEY = "phc_destinations_secret_key"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir(mode=0o700)
    return path


def put(folder: Path, content: Any) -> Path:
    path = folder / DESTINATIONS_FILE
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def posthog(key: str = KEY, endpoint: str = "https://eu.i.posthog.com") -> RecordedDestination:
    return RecordedDestination(
        backend="posthog",
        endpoint=endpoint,
        api_key=key,
        install_id_path="/home/u/.config/luxonis-telemetry/install_id",
        disable_geoip=False,
    )


def test_record_and_load(folder: Path) -> None:
    assert record(str(folder), "lib_a", posthog()) is True
    assert record(str(folder), "lib_b", RecordedDestination(backend="stdout")) is True
    found = load_destinations(str(folder))
    assert found == {"lib_a": posthog(), "lib_b": RecordedDestination(backend="stdout")}
    assert found["lib_a"].api_key == KEY
    assert found["lib_a"].disable_geoip is False
    assert found["lib_b"].disable_geoip is None
    data = json.loads((folder / DESTINATIONS_FILE).read_text())
    assert data["v"] == FORMAT_VERSION
    assert data["libraries"]["lib_b"] == {"backend": "stdout"}


def test_the_key_lives_only_in_a_private_file(folder: Path) -> None:
    old = os.umask(0)
    try:
        record(str(folder), "lib", posthog())
    finally:
        os.umask(old)
    path = folder / DESTINATIONS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KEY in path.read_text()
    assert sorted(p.name for p in folder.iterdir()) == [DESTINATIONS_FILE]
    assert KEY not in repr(load_destinations(str(folder)))
    assert KEY not in repr(posthog())
    assert KEY not in str(posthog())


def test_a_capture_keeps_the_key_out_of_every_event(
    monkeypatch: pytest.MonkeyPatch, spool_path: Path
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", KEY)
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", "https://telemetry.example.com")
    telemetry = Telemetry("lib")
    telemetry.capture("e", {"note": f"my key is {KEY}"})
    telemetry.identify("user", {"token": KEY})
    holding_key = sorted(p.name for p in spool_path.iterdir() if KEY.encode() in p.read_bytes())
    assert holding_key == [DESTINATIONS_FILE]
    assert stat.S_IMODE((spool_path / DESTINATIONS_FILE).stat().st_mode) == 0o600
    found = load_destinations(str(spool_path))
    assert found["lib"].api_key == KEY
    assert found["lib"].endpoint == "https://telemetry.example.com"


def test_an_unchanged_destination_is_not_rewritten(folder: Path) -> None:
    record(str(folder), "lib", posthog())
    before = (folder / DESTINATIONS_FILE).stat()
    assert record(str(folder), "lib", posthog()) is True
    after = (folder / DESTINATIONS_FILE).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_changed_destination_replaces_the_old_one(folder: Path) -> None:
    record(str(folder), "lib", posthog())
    record(str(folder), "lib", posthog(key="phc_new_key_123456"))
    assert load_destinations(str(folder))["lib"].api_key == "phc_new_key_123456"
    assert KEY not in (folder / DESTINATIONS_FILE).read_text()


def test_the_first_releases_top_level_format_is_read_and_upgraded(folder: Path) -> None:
    put(folder, {"old_lib": {"backend": "posthog", "endpoint": "https://e", "api_key": "k"}})
    assert load_destinations(str(folder)) == {
        "old_lib": RecordedDestination(backend="posthog", endpoint="https://e", api_key="k")
    }
    assert record(str(folder), "new_lib", RecordedDestination(backend="stdout")) is True
    data = json.loads((folder / DESTINATIONS_FILE).read_text())
    assert data == {
        "v": FORMAT_VERSION,
        "libraries": {
            "old_lib": {"backend": "posthog", "endpoint": "https://e", "api_key": "k"},
            "new_lib": {"backend": "stdout"},
        },
    }


def test_a_newer_format_is_neither_used_nor_overwritten(folder: Path) -> None:
    content = {"v": 2, "libraries": {"lib": {"backend": "posthog", "api_key": "k"}}, "x": 1}
    path = put(folder, content)
    assert load_destinations(str(folder)) == {}
    assert record(str(folder), "lib", posthog()) is False
    assert json.loads(path.read_text()) == content


@pytest.mark.parametrize(
    "content",
    [b"", b"{oops", b"\xff", b"[1]", b"null", b"[" * 100_000, {"v": "1", "libraries": 5}],
)
def test_a_malformed_file_reads_empty_and_is_rewritten(content: Any, folder: Path) -> None:
    put(folder, content)
    assert load_destinations(str(folder)) == {}
    assert record(str(folder), "lib", posthog()) is True
    assert load_destinations(str(folder)) == {"lib": posthog()}


def test_malformed_entries_are_skipped_and_dropped_on_rewrite(folder: Path) -> None:
    put(
        folder,
        {
            "v": 1,
            "libraries": {
                "good": {"backend": "posthog", "api_key": "k", "disable_geoip": "yes"},
                "bad_type": {"backend": 5},
                "not_a_dict": "posthog",
                "listed": [1],
            },
        },
    )
    assert load_destinations(str(folder)) == {
        "good": RecordedDestination(backend="posthog", api_key="k")
    }
    record(str(folder), "lib", RecordedDestination(backend="stdout"))
    libraries = json.loads((folder / DESTINATIONS_FILE).read_text())["libraries"]
    assert sorted(libraries) == ["good", "lib"]


@pytest.mark.parametrize("kind", ["fifo", "symlink", "folder", "unreadable"])
def test_a_file_that_cannot_be_read_is_never_overwritten_and_never_hangs(
    kind: str, folder: Path, tmp_path: Path
) -> None:
    """Rewriting what cannot be read would lose the other libraries' destinations."""
    path = folder / DESTINATIONS_FILE
    victim = tmp_path / "victim.json"
    victim.write_text(json.dumps({"v": 1, "libraries": {"other": {"backend": "posthog"}}}))
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to(victim)
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_text(victim.read_text())
        path.chmod(0)
        if os.access(path, os.R_OK):
            pytest.skip("this user reads any file (root)")
    before = path.lstat()
    done = run_python(
        "import json\n"
        "from luxonis_telemetry._destinations import RecordedDestination, load_destinations, record\n"
        f"found = load_destinations({str(folder)!r})\n"
        f"stored = record({str(folder)!r}, 'lib', RecordedDestination(backend='stdout'))\n"
        "print(json.dumps([len(found), stored]))\n",
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [0, False]
    after = path.lstat()
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert "other" in victim.read_text()


def test_equality_and_no_hash() -> None:
    assert posthog() == posthog()
    assert posthog() != posthog(key="other_key_1234567")
    assert posthog() != "posthog"
    with pytest.raises(TypeError):
        hash(posthog())
    assert RecordedDestination().to_json() == {}
