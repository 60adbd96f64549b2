"""``enable``/``local``/``disable`` and ``purge``: the person's choices, and complete deletion."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig, _controls, _settings, _state
from luxonis_telemetry.testing import FakePostHog
from luxonis_telemetry.uploader import upload
from tests.conftest import capture_some, cli, console_script, run_cli, spool_records, wait_until


def files_under(*roots: Path) -> set[str]:
    """Every file (not folder) under ``roots``, relative to the root it was found in."""
    found = set()
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_dir():
                found.add(str(path.relative_to(root)))
    return found


def settings_file(home: Path) -> Path:
    return home / ".config" / "luxonis-telemetry" / "settings.json"


# -- modes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "mode"), [("enable", "on"), ("local", "local"), ("disable", "off")]
)
def test_each_choice_is_persisted_privately_and_idempotent(
    home: Path, command: str, mode: str
) -> None:
    for _ in range(2):
        result = cli(command)
        assert result.exit_code == 0, result.output
        assert str(settings_file(home)) in result.stdout
    stored = json.loads(settings_file(home).read_text())
    assert (stored["v"], stored["mode"]) == (1, mode)
    assert stat.S_IMODE(settings_file(home).stat().st_mode) == 0o600


def test_local_records_but_never_uploads(posthog_env: FakePostHog, spool_path: Path) -> None:
    assert cli("local").exit_code == 0
    telemetry = Telemetry("lib")
    assert telemetry.config.mode == "local"
    telemetry.capture("kept")
    assert [r["event"] for r in spool_records(spool_path)] == ["kept"]
    result = upload(budget=10)
    assert result.blocked and "local mode" in result.blocked
    assert posthog_env.requests == 0
    assert cli("enable").exit_code == 0
    assert upload(budget=10).sent == 1


def test_local_from_the_environment(
    posthog_env: FakePostHog, spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENABLED", "local")
    Telemetry("lib").capture("kept")
    assert len(spool_records(spool_path)) == 1
    assert upload(budget=10).blocked
    assert posthog_env.requests == 0


@pytest.mark.parametrize(
    ("stored", "variable", "value", "mode"),
    [
        ("enable", "DO_NOT_TRACK", "1", "off"),
        ("enable", "LUXONIS_TELEMETRY_ENABLED", "0", "off"),
        ("enable", "LUXONIS_TELEMETRY_ENABLED", "local", "local"),
        ("local", "LUXONIS_TELEMETRY_ENABLED", "off", "off"),
        ("disable", "LUXONIS_TELEMETRY_ENABLED", "1", "off"),  # the most private choice wins
    ],
)
def test_environment_switches_keep_winning(
    monkeypatch: pytest.MonkeyPatch,
    spool_path: Path,
    stored: str,
    variable: str,
    value: str,
    mode: str,
) -> None:
    assert cli(stored).exit_code == 0
    monkeypatch.setenv(variable, value)
    telemetry = Telemetry("lib", config=TelemetryConfig(enabled=True))
    assert telemetry.config.mode == mode
    telemetry.capture("e")
    assert len(spool_records(spool_path)) == (0 if mode == "off" else 1)
    if stored != "disable":
        note = cli(stored).stdout  # choosing again says why it does not apply here
        assert f"note: still {mode} here because" in note


def test_enable_after_disable_records_again(spool_path: Path) -> None:
    capture_some()
    assert cli("disable").exit_code == 0
    assert cli("enable").exit_code == 0
    Telemetry("x").capture("counted")
    assert [r["event"] for r in spool_records(spool_path)] == ["counted"]


# -- disable removes everything -----------------------------------------------------------


def _everything(home: Path, tmp_path: Path, server: FakePostHog) -> tuple[Path, Path]:
    """Have the library write every kind of file it keeps; returns the two custom id paths.

    Three libraries (one keeping its install id at its own path, one run with
    LUXONIS_TELEMETRY_INSTALL_ID_PATH) record twice; a bad line is quarantined
    by a first upload, and a failed second upload leaves 3 events pending,
    counters and a back-off.
    """
    library_id = tmp_path / "library-ids" / "install_id"
    env_id = tmp_path / "env-ids" / "install_id"
    env = dict(
        os.environ,
        LUXONIS_TELEMETRY_API_KEY="phc_secret_key_1",
        LUXONIS_TELEMETRY_ENDPOINT=server.url,
    )
    script = (
        "import sys\n"
        "from luxonis_telemetry import Telemetry, TelemetryConfig\n"
        "if sys.argv[1] == 'a':\n"
        f"    config = TelemetryConfig(install_id_path={str(library_id)!r})\n"
        "else:\n"
        "    config = None\n"
        "Telemetry(sys.argv[1], config=config).capture('e')\n"
    )

    def record_all() -> None:
        for library in ("a", "b", "c"):
            extra = {"LUXONIS_TELEMETRY_INSTALL_ID_PATH": str(env_id)} if library == "c" else {}
            subprocess.run(
                [sys.executable, "-c", script, library],
                env=dict(env, **extra),
                check=True,
                timeout=60,
            )

    record_all()
    spool = home / ".local" / "state" / "luxonis-telemetry" / "spool"
    with open(spool / "active.b.jsonl", "ab") as handle:
        handle.write(b"not an event: quarantined by the upload\n")
    assert upload(budget=10, environ=env).sent == 3
    record_all()
    assert not upload(
        budget=5, environ=dict(env, LUXONIS_TELEMETRY_ENDPOINT="http://127.0.0.1:9")
    ).ok
    assert _settings.claim_notice(str(home / ".config" / "luxonis-telemetry"))
    kinds = files_under(home)
    for expected in (
        "install_id",
        "destinations.json",
        "state.json",
        "quarantine.jsonl",
        "notice_shown",
    ):
        assert any(name.endswith(expected) for name in kinds), (expected, kinds)
    assert len(spool_records(spool)) == 3
    assert library_id.exists() and env_id.exists()
    return library_id, env_id


@pytest.mark.parametrize("env_id_known_from", ["environment", "destinations.json"])
def test_disable_leaves_nothing_but_the_choice(
    home: Path, tmp_path: Path, server: FakePostHog, env_id_known_from: str
) -> None:
    library_id, env_id = _everything(home, tmp_path, server)
    env = dict(os.environ)
    if env_id_known_from == "environment":
        env["LUXONIS_TELEMETRY_INSTALL_ID_PATH"] = str(env_id)
    result = run_cli("disable", env=env)
    assert result.returncode == 0, result.stderr
    assert "removed 3 pending event(s)" in result.stdout
    assert files_under(home) == {".config/luxonis-telemetry/settings.json"}
    assert files_under(library_id.parent, env_id.parent) == set()
    assert not (home / ".local" / "state" / "luxonis-telemetry").exists()
    assert json.loads(settings_file(home).read_text())["mode"] == "off"
    # nothing comes back, whatever a library asks
    Telemetry("x", config=TelemetryConfig(enabled=True, install_id_path=str(library_id))).capture(
        "ignored"
    )
    assert files_under(home) == {".config/luxonis-telemetry/settings.json"}
    assert not library_id.exists()
    assert run_cli("disable").returncode == 0  # idempotent
    assert files_under(home) == {".config/luxonis-telemetry/settings.json"}


def test_a_running_program_stops_recording_after_disable(home: Path, spool_path: Path) -> None:
    telemetry = Telemetry("long_running")
    telemetry.capture("before")  # holds its spool files open
    assert run_cli("disable").returncode == 0
    for n in range(3):
        telemetry.capture("after", {"n": n})
    assert files_under(home) == {".config/luxonis-telemetry/settings.json"}


@pytest.mark.parametrize("where", ["settings.json", "lock", "upload.lock"])
def test_disable_is_complete_despite_planted_fifos(
    home: Path, spool_path: Path, where: str
) -> None:
    capture_some()
    target = settings_file(home) if where == "settings.json" else spool_path / where
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    result = run_cli("disable")  # a FIFO opened for reading or writing would hang here
    assert result.returncode == 0, result.stderr
    assert files_under(home) == {".config/luxonis-telemetry/settings.json"}
    assert stat.S_ISREG(os.lstat(settings_file(home)).st_mode)
    assert json.loads(settings_file(home).read_text())["mode"] == "off"


def test_disable_in_this_process_stops_capture_here(home: Path) -> None:
    telemetry = Telemetry("lib")
    telemetry.capture("before")
    path, report = _controls.disable(None)
    assert path == str(settings_file(home))
    assert report.removed == 1
    assert _state.state.disabled_here
    assert not telemetry.is_enabled
    telemetry.capture("after")
    assert files_under(home) == {".config/luxonis-telemetry/settings.json"}


def test_disable_removes_only_its_own_files_and_says_what_it_left(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: a spool or install id pointed at a folder of the user's keeps their files."""
    folder = tmp_path / "work"
    folder.mkdir(mode=0o700)
    notes = folder / "notes.txt"
    notes.write_text("mine")
    not_an_id = tmp_path / "todo.txt"
    not_an_id.write_text("buy milk")
    monkeypatch.setenv("LUXONIS_TELEMETRY_SPOOL_DIR", str(folder))
    monkeypatch.setenv("LUXONIS_TELEMETRY_INSTALL_ID_PATH", str(not_an_id))
    Telemetry("lib").capture("e")
    assert not_an_id.read_text() == "buy milk"  # not an id: never overwritten either

    result = run_cli("disable")

    assert result.returncode == 0, result.stderr
    assert "removed 1 pending event(s), 0 install ids" in result.stdout
    assert result.stderr == (
        f"luxonis-telemetry: warning: left alone {folder}: it holds files that are not ours\n"
    )
    assert files_under(folder) == {"notes.txt"}
    assert notes.read_text() == "mine"
    assert not_an_id.read_text() == "buy milk"


def test_disable_counts_the_install_ids_it_removed(home: Path, spool_path: Path) -> None:
    capture_some()
    result = run_cli("disable")
    assert "removed 4 pending event(s), 1 install id, recorded keys" in result.stdout
    assert result.stderr == ""


def test_a_spool_folder_of_another_user_is_left_alone(home: Path, spool_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a folder's owner needs root")
    capture_some()
    os.chown(spool_path, 54321, 54321)
    before = files_under(spool_path)
    result = run_cli("disable")
    assert result.returncode == 0
    assert files_under(spool_path) == before
    assert f"left alone {spool_path}: " in result.stderr


# -- purge ----------------------------------------------------------------------------------


def test_purge_removes_pending_and_quarantined_events(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    capture_some()
    with open(spool_path / "active.luxonis_ml.jsonl", "ab") as handle:
        handle.write(b"garbage\n")
    assert upload(budget=10).failed == 1  # quarantined
    assert (spool_path / "quarantine.jsonl").exists()
    capture_some()
    result = cli("purge", "--yes")
    assert result.exit_code == 0
    assert "purged 4 pending event(s)" in result.stdout
    assert spool_records(spool_path) == []
    assert not (spool_path / "quarantine.jsonl").exists()
    assert json.loads(cli("status", "--json").stdout)["quarantined"] == 0


@pytest.mark.parametrize("command", ["purge", "disable"])
def test_purge_or_disable_during_an_upload_waits_and_nothing_purged_is_sent_after(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    with FakePostHog(delay=1.0) as server:
        monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", "phc_test_key_123")
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", server.url)
        telemetry = Telemetry("bulk")
        total = 12_000  # 12 batches, 4 in flight, 1 s each
        for n in range(total):
            telemetry.capture("e", {"n": n})
        uploading = subprocess.Popen(
            [console_script(), "upload", "--timeout", "120"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_until(lambda: server.requests >= 1, 60)
            args = ["purge", "--yes"] if command == "purge" else ["disable"]
            result = run_cli(*args)
            assert result.returncode == 0, result.stderr
            assert "did not stop in time" not in result.stderr
            at_return = server.event_count
            uploading.wait(timeout=60)
            assert server.event_count == at_return
            assert at_return < total
        finally:
            if uploading.poll() is None:
                uploading.kill()
            uploading.wait(timeout=30)
        assert server.event_count == at_return
        assert spool_records(spool_path) == []
