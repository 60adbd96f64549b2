"""state.json: whatever is on disk reads as a valid state; nothing a newer copy wrote is lost."""

from __future__ import annotations

import functools
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luxonis_telemetry._spool_state import (
    FORMAT_VERSION,
    MAX_BACKOFF_AHEAD,
    STATE_FILE,
    SpoolState,
    load_state,
    update_state,
)
from luxonis_telemetry.uploader import BACKOFF_MAX
from tests.conftest import run_python


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir(mode=0o700)
    return path


def put(folder: Path, content: Any) -> Path:
    path = folder / STATE_FILE
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def on_disk(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / STATE_FILE).read_bytes())
    assert isinstance(data, dict)
    return data


def assert_fresh(state: SpoolState) -> None:
    assert state.dropped == {}
    assert state.quarantined == 0
    assert state.last_upload is None
    assert state.backoff_failures == 0
    assert state.next_attempt_at == 0.0
    assert state.bundles == {}
    assert state.auth_failure is None
    assert state.newer_format is False


def test_a_missing_file_is_a_fresh_state(folder: Path) -> None:
    assert_fresh(load_state(str(folder)))
    assert not (folder / STATE_FILE).exists()


def test_round_trip(folder: Path) -> None:
    def change(state: SpoolState) -> None:
        state.add_drops({"size_cap": 3, "age_cap": 0})
        state.add_drops({"size_cap": 2, "lock_timeout": 1})
        state.quarantined = 4
        state.last_upload = {"at": 100.5, "sent": 1, "pending": 2, "failed": 0, "error": "boom"}
        state.backoff_failures = 2
        state.next_attempt_at = 200.0
        state.set_bundle_progress("abc", 10)
        state.auth_failure = {"at": 5.0, "status": 401, "destination": None, "message": "no"}

    update_state(str(folder), change)
    state = load_state(str(folder))
    assert state.dropped == {"size_cap": 5, "lock_timeout": 1}
    assert state.quarantined == 4
    assert state.last_upload == {
        "at": 100.5,
        "sent": 1,
        "pending": 2,
        "failed": 0,
        "error": "boom",
    }
    assert (state.backoff_failures, state.next_attempt_at) == (2, 200.0)
    assert state.bundles == {"abc": (10, ())}
    assert state.bundle_progress("abc") == (10, ())
    assert state.bundle_progress("unknown") == (0, ())
    assert state.auth_failure == {"at": 5.0, "status": 401, "destination": None, "message": "no"}
    assert on_disk(folder)["v"] == FORMAT_VERSION


def test_written_privately_and_atomically(folder: Path) -> None:
    old = os.umask(0)
    try:
        for count in range(1, 6):
            update_state(str(folder), functools.partial(SpoolState.add_drops, drops={"x": count}))
    finally:
        os.umask(old)
    assert stat.S_IMODE((folder / STATE_FILE).stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == [STATE_FILE]
    assert load_state(str(folder)).dropped == {"x": 15}


MALFORMED: list[Any] = [
    b"",
    b"{not json",
    b"\xff\xfe",
    b"[" * 100_000,
    b"1" * 5000,  # an integer beyond Python's digit limit
    [1, 2],
    "state",
    None,
    {"exit_backoff": [1, 2]},
    {"exit_backoff": "soon"},
    {"exit_backoff": {"failures": "3", "next_attempt_at": "tomorrow"}},
    {"exit_backoff": {"failures": -3, "next_attempt_at": -1}},
    {"exit_backoff": {"failures": True, "next_attempt_at": None}},
    {"dropped": [1, 2]},
    {"dropped": {"size_cap": "5", "age_cap": -2, "x": 1.5, "y": None, "z": True}},
    {"quarantined": "many"},
    {"quarantined": -1},
    {"quarantined": 2.5},
    {"last_upload": "yesterday"},
    {"last_upload": {"at": "noon"}},
    {"last_upload": {"sent": 5}},
    {"bundles": [1]},
    {"bundles": {"sha": "done", "other": [1]}},
    {"auth_failure": 401},
    {"auth_failure": {"status": 401}},
    {"v": "1"},
    {"v": None},
    {"v": [2]},
    {"v": 1.0},
    {"v": True},
    {"v": -7},
    {"dropped": {"a": {"b": {"c": [[[[]]]]}}}, "bundles": {"x": {"delivered": {"y": 1}}}},
]


@pytest.mark.parametrize("content", MALFORMED)
def test_malformed_content_reads_as_a_fresh_state_and_is_rewritten(
    content: Any, folder: Path
) -> None:
    put(folder, content)
    assert_fresh(load_state(str(folder)))
    update_state(str(folder), lambda state: state.add_drops({"size_cap": 1}))
    data = on_disk(folder)
    assert data["v"] == FORMAT_VERSION
    assert data["dropped"] == {"size_cap": 1}
    assert_fresh_except_drops = load_state(str(folder))
    assert assert_fresh_except_drops.dropped == {"size_cap": 1}
    assert assert_fresh_except_drops.newer_format is False


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e308, 10**30])
def test_odd_numbers_never_break_a_state(bad: float, folder: Path) -> None:
    put(
        folder,
        json.dumps(
            {
                "v": 1,
                "quarantined": bad,
                "dropped": {"x": bad},
                "exit_backoff": {"failures": bad, "next_attempt_at": bad},
                "last_upload": {"at": bad, "sent": bad},
            }
        ).encode(),
    )
    state = load_state(str(folder))
    finite = isinstance(bad, int) or abs(bad) < float("inf")
    if not finite:
        assert state.next_attempt_at == 0.0
        assert state.last_upload is None
    update_state(str(folder), lambda state: state.add_drops({"x": 1}))
    text = (folder / STATE_FILE).read_text()
    assert "NaN" not in text
    assert "Infinity" not in text


def test_unknown_keys_survive_a_rewrite(folder: Path) -> None:
    put(folder, {"v": 1, "future_counter": 7, "notes": {"deep": [1, {"x": None}]}})
    update_state(str(folder), lambda state: state.add_drops({"size_cap": 2}))
    data = on_disk(folder)
    assert data["future_counter"] == 7
    assert data["notes"] == {"deep": [1, {"x": None}]}
    assert data["dropped"] == {"size_cap": 2}


def test_a_newer_version_keeps_its_version_and_says_so(folder: Path) -> None:
    put(folder, {"v": 2, "dropped": {"size_cap": 4}, "schedule": {"every": "hour"}})
    state = load_state(str(folder))
    assert state.newer_format is True
    assert state.dropped == {"size_cap": 4}
    update_state(str(folder), lambda state: state.add_drops({"size_cap": 1}))
    data = on_disk(folder)
    assert data["v"] == 2
    assert data["schedule"] == {"every": "hour"}
    assert data["dropped"] == {"size_cap": 5}
    assert load_state(str(folder)).newer_format is True


def test_a_version_that_is_no_number_is_a_hand_edit_not_a_newer_format(folder: Path) -> None:
    """Else a typo would stop exit uploads for good: the version is kept only if it is newer."""
    put(folder, {"v": "2"})
    assert load_state(str(folder)).newer_format is False
    update_state(str(folder), lambda state: None)
    assert on_disk(folder)["v"] == FORMAT_VERSION


def test_bundle_acknowledged_ranges_round_trip(folder: Path) -> None:
    update_state(str(folder), lambda state: state.set_bundle_progress("s", 10, [(5, 8), (20, 30)]))
    assert load_state(str(folder)).bundle_progress("s") == (10, ((20, 30),))
    put(folder, {"bundles": {"s": {"delivered": 1, "acked": [[3, 2], ["a", 9], [4, 6], 7]}}})
    assert load_state(str(folder)).bundle_progress("s") == (1, ((4, 6),))


def test_bundles_keep_the_most_recent_progress(folder: Path) -> None:
    def many(state: SpoolState) -> None:
        for number in range(300):
            state.set_bundle_progress(f"sha{number}", number)
        state.set_bundle_progress("sha0", 1000)  # touched again: now the most recent

    update_state(str(folder), many)
    bundles = load_state(str(folder)).bundles
    assert len(bundles) == 256
    assert bundles["sha0"] == (1000, ())
    assert "sha1" not in bundles
    assert bundles["sha299"] == (299, ())
    assert list(bundles)[-1] == "sha0"


def test_an_empty_backoff_is_not_written(folder: Path) -> None:
    update_state(str(folder), lambda state: state.add_drops({"x": 1}))
    assert "exit_backoff" not in on_disk(folder)


def test_long_texts_are_cut(folder: Path) -> None:
    put(folder, {"last_upload": {"at": 1.0, "error": "e" * 10_000}})
    last = load_state(str(folder)).last_upload
    assert last is not None
    assert len(last["error"]) == 2000


@pytest.mark.parametrize("kind", ["fifo", "symlink", "folder"])
def test_an_unsafe_state_file_reads_fresh_never_hangs_and_is_never_written(
    kind: str, folder: Path, tmp_path: Path
) -> None:
    path = folder / STATE_FILE
    victim = tmp_path / "victim.json"
    victim.write_text(json.dumps({"v": 1, "quarantined": 9}))
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to(victim)
    else:
        path.mkdir()
    done = run_python(
        "import json\n"
        "from luxonis_telemetry._spool_state import load_state, update_state\n"
        f"state = load_state({str(folder)!r})\n"
        "try:\n"
        f"    update_state({str(folder)!r}, lambda s: s.add_drops({{'x': 1}}))\n"
        "    outcome = 'written'\n"
        "except OSError as exc:\n"
        "    outcome = type(exc).__name__\n"
        "print(json.dumps([state.quarantined, outcome]))\n",
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    quarantined, outcome = json.loads(done.stdout)
    assert quarantined == 0
    assert json.loads(victim.read_text()) == {"v": 1, "quarantined": 9}
    if kind == "symlink":  # the name is replaced, the target never written
        assert outcome == "written"
        assert not path.is_symlink()
    else:
        assert outcome == "UnsafeFile"
        assert stat.S_ISFIFO(path.lstat().st_mode) if kind == "fifo" else path.is_dir()


def test_upload_never_raises_for_a_hand_edited_state(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8.6: ``{"exit_backoff": [1, 2]}`` once made ``upload()`` raise AttributeError."""
    from luxonis_telemetry import upload

    monkeypatch.setenv("LUXONIS_TELEMETRY_SPOOL_DIR", str(folder))
    put(folder, {"exit_backoff": [1, 2], "dropped": "x", "bundles": 3})
    result = upload()
    assert result.pending == 0
    assert on_disk(folder)["v"] == FORMAT_VERSION


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
state_like = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        ("v", "dropped", "quarantined", "last_upload", "exit_backoff", "bundles", "auth_failure"),
        json_values,
    ),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(state_like)
def test_any_json_reads_as_a_valid_state(data: dict[str, Any]) -> None:
    state = SpoolState(data)
    assert all(isinstance(k, str) and type(v) is int and v > 0 for k, v in state.dropped.items())
    assert type(state.quarantined) is int
    assert state.quarantined >= 0
    assert type(state.backoff_failures) is int
    assert isinstance(state.next_attempt_at, float)
    assert all(type(done) is int for done, _acked in state.bundles.values())
    out = state.to_json()
    json.dumps(out, allow_nan=True)
    again = SpoolState(json.loads(json.dumps(out)))
    assert again.dropped == state.dropped
    assert again.quarantined == state.quarantined


def test_a_back_off_beyond_any_real_one_is_ignored(folder: Path) -> None:
    """A clock set years ahead when an upload failed must not stop exit uploads until then."""
    soon = time.time() + 3600
    put(folder, {"exit_backoff": {"failures": 3, "next_attempt_at": soon}})
    assert load_state(str(folder)).next_attempt_at == soon
    put(folder, {"exit_backoff": {"failures": 3, "next_attempt_at": time.time() + 400 * 86400}})
    state = load_state(str(folder))
    assert state.next_attempt_at == 0.0
    assert state.backoff_failures == 3
    assert MAX_BACKOFF_AHEAD >= BACKOFF_MAX
