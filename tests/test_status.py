"""``status``: the one truthful answer to "is telemetry on here, and what will it do?"."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig, _settings
from luxonis_telemetry._text import mask_key
from luxonis_telemetry.spool import Spool
from luxonis_telemetry.status import gather_status
from luxonis_telemetry.testing import FakePostHog
from luxonis_telemetry.uploader import open_spool, upload
from tests.conftest import KEY, cli, free_port, run_cli

TURN_OFF = "luxonis-telemetry disable"


def status_json() -> dict[str, Any]:
    result = cli("status", "--json")
    assert result.exit_code == 0, result.output
    info: dict[str, Any] = json.loads(result.stdout)
    return info


def status_text() -> str:
    result = cli("status")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return str(result.stdout)


def field(text: str, name: str) -> str:
    """The value of one ``name:`` line of the human status."""
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name!r} line in:\n{text}")


@pytest.fixture
def exit_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a person's machine: no explicit UPLOAD_ON_EXIT (conftest sets it to 0)."""
    monkeypatch.delenv("LUXONIS_TELEMETRY_UPLOAD_ON_EXIT")


def test_a_fresh_machine_creates_nothing(home: Path, exit_allowed: None) -> None:
    text = status_text()
    assert field(text, "telemetry") == "on (default)"
    assert field(text, "first-run notice").startswith("not shown yet")
    assert field(text, "pending") == "0 events, 0 bytes"
    assert TURN_OFF in field(text, "turn it off")
    info = status_json()
    assert info["decided_by"] == "default"
    assert info["upload_at_exit"] is False
    assert "no API key" in info["upload_at_exit_why_not"]
    assert info["notice_shown"] is False
    assert list(home.rglob("*")) == []


def test_status_says_whether_the_notice_was_shown(home: Path) -> None:
    assert _settings.claim_notice(str(home / ".config" / "luxonis-telemetry"))
    assert status_json()["notice_shown"] is True
    assert field(status_text(), "first-run notice") == "shown"


def _key_and_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", KEY)
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", "http://127.0.0.1:9")
    Telemetry("lib").capture("e")


def _backing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    _key_and_event(monkeypatch)
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    assert not upload(budget=5).ok


def _set(**variables: str) -> Callable[[pytest.MonkeyPatch], None]:
    def apply(monkeypatch: pytest.MonkeyPatch) -> None:
        _key_and_event(monkeypatch)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return apply


def _command(*args: str, then: dict[str, str] | None = None) -> Callable[..., None]:
    def apply(monkeypatch: pytest.MonkeyPatch) -> None:
        _key_and_event(monkeypatch)
        assert cli(*args).exit_code == 0
        for name, value in (then or {}).items():
            monkeypatch.setenv(name, value)

    return apply


def _dotenv(monkeypatch: pytest.MonkeyPatch) -> None:
    _key_and_event(monkeypatch)
    Path(".env").write_text("LUXONIS_TELEMETRY_ENABLED=0\n")


def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    Telemetry("lib").capture("e")


# (setup, mode, decided_by, upload at exit: None = yes, else a phrase of the reason)
SITUATIONS = {
    "default with a key": (_key_and_event, "on", "default", None),
    "CI": (_set(CI="true"), "on", "default", "CI detected"),
    "CI, forced": (_set(CI="true", LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="1"), "on", "default", None),
    "DO_NOT_TRACK": (_set(DO_NOT_TRACK="1"), "off", "environment", "DO_NOT_TRACK is set"),
    "ENABLED=0": (_set(LUXONIS_TELEMETRY_ENABLED="0"), "off", "environment", "telemetry is off"),
    "ENABLED=local": (
        _set(LUXONIS_TELEMETRY_ENABLED="local"),
        "local",
        "environment",
        "local mode",
    ),
    "local command": (_command("local"), "local", "settings", "local mode"),
    "disable command": (_command("disable"), "off", "settings", "luxonis-telemetry disable"),
    "enable, then DO_NOT_TRACK": (
        _command("enable", then={"DO_NOT_TRACK": "1"}),
        "off",
        "environment",
        "DO_NOT_TRACK",
    ),
    "local, then ENABLED=0": (
        _command("local", then={"LUXONIS_TELEMETRY_ENABLED": "0"}),
        "off",
        "environment",
        "telemetry is off",
    ),
    "enable, then ENABLED=local": (
        _command("enable", then={"LUXONIS_TELEMETRY_ENABLED": "local"}),
        "local",
        "environment",
        "local mode",
    ),
    "./.env": (_dotenv, "off", "dotenv", "in ./.env"),
    "no key": (_no_key, "on", "default", "no API key"),
    "UPLOAD_ON_EXIT=0": (
        _set(LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="0"),
        "on",
        "default",
        "only `luxonis-telemetry upload` sends",
    ),
    "backing off": (_backing_off, "on", "default", "backing off"),
}


@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_status_is_truthful_in_every_mode(
    situation: str, monkeypatch: pytest.MonkeyPatch, exit_allowed: None
) -> None:
    setup, mode, decided_by, why_not = SITUATIONS[situation]
    setup(monkeypatch)
    info = status_json()
    text = status_text()
    assert info["mode"] == mode
    assert info["decided_by"] == decided_by
    assert info["turn_off"].startswith(TURN_OFF)
    assert TURN_OFF in field(text, "turn it off")
    assert info["reason"] in field(text, "telemetry")
    assert field(text, "telemetry").lower().startswith(mode)
    if why_not is None:
        assert info["upload_at_exit"] is True, info["upload_at_exit_why_not"]
        assert field(text, "upload at exit") == "yes"
    else:
        assert info["upload_at_exit"] is False
        assert why_not in info["upload_at_exit_why_not"]
        assert field(text, "upload at exit") == f"no: {info['upload_at_exit_why_not']}"


def test_pending_dropped_and_quarantined_are_counted(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    telemetry = Telemetry("lib")
    for n in range(3):
        telemetry.capture("e", {"n": n})
    with open(spool_path / "active.lib.jsonl", "ab") as handle:
        handle.write(b"this line is not an event\n")
    assert upload(budget=10).ok
    telemetry.capture("after", {"n": 4})
    Spool(str(spool_path)).update_state(lambda state: state.add_drops({"size_cap": 7}))
    info = status_json()
    assert info["pending_events"] == 1
    assert info["pending_bytes"] > 0
    assert info["oldest_pending"]
    assert info["quarantined"] == 1
    assert info["dropped"] == {"size_cap": 7}
    assert info["last_upload"]["sent"] == 3
    text = status_text()
    assert field(text, "pending") == f"1 events, {info['pending_bytes']} bytes"
    assert field(text, "quarantined") == "1"
    assert field(text, "dropped") == "7 (size_cap 7)"
    assert field(text, "last upload").endswith("(sent 3, pending 0)")


def test_status_says_where_each_file_lives(home: Path, spool_path: Path, tmp_path: Path) -> None:
    own_id = tmp_path / "ids" / "lib-install-id"
    Telemetry("lib", config=TelemetryConfig(install_id_path=str(own_id))).capture("e")
    Telemetry("other").capture("e")
    config = home / ".config" / "luxonis-telemetry"
    info = status_json()
    assert info["files"] == {
        "settings": str(config / "settings.json"),
        "install_id": str(config / "install_id"),
        "spool": str(spool_path),
        "notice_marker": str(config / "notice_shown"),
        "destinations": str(spool_path / "destinations.json"),
        "state": str(spool_path / "state.json"),
        "quarantine": str(spool_path / "quarantine.jsonl"),
    }
    assert info["destinations"]["lib"]["install_id_path"] == str(own_id)
    text = status_text()
    for path in info["files"].values():
        assert path in text
    assert f"{own_id} (lib)" in text


def test_the_install_id_path_from_the_environment_is_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_INSTALL_ID_PATH", str(tmp_path / "env-id"))
    assert status_json()["files"]["install_id"] == str(tmp_path / "env-id")


def test_a_rejected_key_is_shown_until_a_key_works(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakePostHog(api_keys={"phc_good"}) as server:
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", server.url)
        monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", "phc_wrong_key")
        Telemetry("lib").capture("e")
        result = upload(budget=10)
        assert result.unauthorized and result.pending == 1
        info = status_json()
        assert info["rejected_key"]["status"] == 401
        assert info["pending_events"] == 1
        assert "401" in field(status_text(), "rejected key")
        monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", "phc_good")
        assert upload(budget=10).ok
        assert status_json()["rejected_key"] is None
        assert "rejected key:" not in status_text()


@pytest.mark.parametrize("name", ["state.json", "destinations.json", "active.lib.jsonl", "lock"])
def test_unsafe_files_are_reported_not_opened(spool_path: Path, name: str) -> None:
    Telemetry("lib").capture("e")
    target = spool_path / name
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    info = status_json()  # a FIFO opened for reading would block here
    assert f"{target} not a regular file: skipped" in info["problems"]
    text = status_text()
    assert f"- {target} not a regular file: skipped" in text


def test_a_hard_linked_file_is_reported(spool_path: Path, tmp_path: Path) -> None:
    Telemetry("lib").capture("e")
    os.link(spool_path / "destinations.json", tmp_path / "someone-elses-view")
    problems = status_json()["problems"]
    assert f"{spool_path / 'destinations.json'} has 2 hard links: skipped" in problems


def test_relative_folder_settings_are_refused_and_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spool_path: Path
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_SPOOL_DIR", "rel/spool")
    monkeypatch.setenv("LUXONIS_TELEMETRY_CONFIG_DIR", "rel/config")
    monkeypatch.setenv("LUXONIS_TELEMETRY_INSTALL_ID_PATH", "rel/id")
    Telemetry("lib").capture("e")
    assert not (tmp_path / "rel").exists()  # nothing where the program happened to start
    info = status_json()
    for name, value in (
        ("SPOOL_DIR", "rel/spool"),
        ("CONFIG_DIR", "rel/config"),
        ("INSTALL_ID_PATH", "rel/id"),
    ):
        problem = f"LUXONIS_TELEMETRY_{name}={value!r} is not an absolute path: ignored"
        assert problem in info["problems"]
        assert problem in status_text()
    assert info["files"]["spool"] == str(spool_path)
    assert not (tmp_path / "rel").exists()


def test_a_spool_of_another_user_is_a_problem_not_zero(spool_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a folder's owner needs root")
    Telemetry("lib").capture("e")
    Spool(str(spool_path)).update_state(lambda state: state.add_drops({"size_cap": 2}))
    os.chown(spool_path, 54321, 54321)
    info = status_json()
    assert any("belongs to another user" in problem for problem in info["problems"])
    for unknown in ("pending_events", "pending_bytes", "dropped", "quarantined"):
        assert info[unknown] is None, unknown
    text = status_text()
    assert field(text, "dropped") == "unknown (see problems)"
    assert field(text, "pending") == "unknown (see problems)"
    assert "belongs to another user" in text


def test_credentials_in_endpoints_and_keys_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    Telemetry(
        "lib",
        config=TelemetryConfig(api_key=KEY, endpoint="https://rec-user:recorded-pw@ph.example"),
    ).capture("e")
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", "https://env-user:env-pw@ph.example:8443/x")
    info = status_json()
    text = status_text()
    for shown in (json.dumps(info), text, run_cli("status").stdout):
        for secret in (KEY, "recorded-pw", "env-pw", "rec-user", "env-user"):
            assert secret not in shown
    assert info["environment"]["endpoint"] == "https://***@ph.example:8443/x"
    assert info["destinations"]["lib"]["endpoint"] == "https://***@ph.example:8443/x"
    assert info["destinations"]["lib"]["api_key"] == mask_key(KEY)
    assert f"key {mask_key(KEY)}" in text
    monkeypatch.delenv("LUXONIS_TELEMETRY_ENDPOINT")
    assert status_json()["destinations"]["lib"]["endpoint"] == "https://***@ph.example"


def test_hostile_names_in_our_files_reach_the_terminal_literally(spool_path: Path) -> None:
    Telemetry("lib\x1b[31m[/]", config=TelemetryConfig(endpoint="http://h\x1b]0;x\x07")).capture(
        "e"
    )
    os.mkfifo(spool_path / "active.\x1b[2J.jsonl")
    text = status_text()
    for raw in ("\x1b[31m", "\x1b]0;", "\x07", "\x1b[2J"):
        assert raw not in text
    assert "lib\\x1b[31m[/]" in text


def test_status_of_a_custom_backend_names_no_posthog_endpoint() -> None:
    class Mine:
        def __init__(self, config: TelemetryConfig) -> None:
            pass

        def capture(self, event: Any) -> None:
            pass

    Telemetry.register_backend("mine", Mine)
    Telemetry("a", config=TelemetryConfig(backend="mine")).capture("e")
    entry = status_json()["destinations"]["a"]
    assert (entry["backend"], entry["endpoint"], entry["api_key"]) == ("mine", None, None)
    assert "  a: mine\n" in status_text()


def test_status_changes_nothing_on_disk(posthog_env: FakePostHog, home: Path) -> None:
    Telemetry("lib").capture("e")

    def snapshot() -> dict[str, tuple[int, int]]:
        return {
            str(path): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in home.rglob("*")
            if path.is_file()
        }

    before = snapshot()
    status_json()
    status_text()
    gather_status(open_spool())
    assert snapshot() == before


def test_huge_numbers_in_settings_give_a_sane_status(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAX_SPOOL_MB", "MAX_AGE_DAYS", "EXIT_TIMEOUT"):
        monkeypatch.setenv(f"LUXONIS_TELEMETRY_{name}", "1e400")
    Telemetry("lib").capture("e")
    monkeypatch.setenv("LUXONIS_TELEMETRY_MAX_AGE_DAYS", "9" * 5000)
    info = status_json()
    assert info["max_spool_bytes"] == 50 * 1024 * 1024  # ignored: the default applies
    assert info["max_event_age_days"] == 30.0
    assert field(status_text(), "caps") == "50 MiB, 30 days"
    assert run_cli("status").returncode == 0


@pytest.mark.parametrize("moment", ["1e300", "-1e300", "9" * 400, "253402300800"])
def test_times_beyond_any_calendar_in_state_json_give_a_sane_status(
    spool_path: Path, moment: str
) -> None:
    """Review: a hand-edited ``state.json`` made ``status`` raise OverflowError."""
    Telemetry("lib").capture("e")
    (spool_path / "state.json").write_text(
        f'{{"v": 1, "last_upload": {{"at": {moment}, "sent": 1}},'
        f' "exit_backoff": {{"failures": 1, "next_attempt_at": {moment}}}}}'
    )
    (spool_path / "state.json").chmod(0o600)
    result = run_cli("status")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert status_json()["pending_events"] == 1
