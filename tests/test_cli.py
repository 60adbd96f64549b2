from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from luxonis_telemetry import Telemetry, TelemetryConfig
from luxonis_telemetry.cli import app, mask, parse_since
from luxonis_telemetry.testing import FakePostHog
from tests.conftest import REPO, spool_records

runner = CliRunner()
KEY = "phc_test_key_123"


def cli(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input)


def one_error_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("luxonis-telemetry: error: ")
    return lines[0]


def capture_some() -> list[dict[str, Any]]:
    a = Telemetry("luxonis_ml")
    for n in range(3):
        a.capture("train.start", {"epochs": n})
    Telemetry("modelconverter").capture("convert", {"target": "rvc4"})
    spool = Path(os.environ["XDG_STATE_HOME"]) / "luxonis-telemetry" / "spool"
    return spool_records(spool)


@pytest.mark.parametrize(
    "command", ["", "inspect", "upload", "status", "purge", "enable", "disable", "export"]
)
def test_every_command_has_help(command: str) -> None:
    result = cli(*([command] if command else []), "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_version() -> None:
    from luxonis_telemetry import __version__

    assert cli("--version").stdout.strip() == f"luxonis-telemetry {__version__}"


def test_status_on_a_fresh_machine_creates_nothing(home: Path) -> None:
    result = cli("status")
    assert result.exit_code == 0
    assert "enabled (default)" in result.stdout
    assert "pending:          0 events" in result.stdout
    assert list(home.rglob("*")) == []


def test_status_json_reports_everything_with_the_key_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Telemetry("a", config=TelemetryConfig(api_key=KEY, endpoint="http://127.0.0.1:9")).capture("e")
    result = cli("status", "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["enabled"] is True
    assert info["pending_events"] == 1
    assert info["pending_bytes"] > 0
    assert info["oldest_pending"]
    assert info["destinations"]["a"] == {
        "backend": "posthog",
        "endpoint": "http://127.0.0.1:9",
        "api_key": mask(KEY),
    }
    assert KEY not in result.stdout
    human = cli("status")
    assert KEY not in human.stdout
    assert "phc_…23" in human.stdout


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"DO_NOT_TRACK": "1"}, "DO_NOT_TRACK is set"),
        ({"LUXONIS_TELEMETRY_ENABLED": "off"}, "LUXONIS_TELEMETRY_ENABLED='off'"),
    ],
)
def test_status_says_why_it_is_off(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], reason: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = cli("status")
    assert f"DISABLED ({reason})" in result.stdout


def test_inspect_table_and_totals() -> None:
    capture_some()
    result = cli("inspect")
    assert result.exit_code == 0
    assert "train.start" in result.stdout and "convert" in result.stdout
    assert "4 pending events" in result.stdout
    assert '"epochs"=2' in result.stdout


def test_inspect_json_prints_exactly_the_stored_records() -> None:
    stored = capture_some()
    result = cli("inspect", "--json")
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert printed == stored


def test_inspect_filters() -> None:
    capture_some()
    by_event = [
        json.loads(x) for x in cli("inspect", "--json", "--event", "convert").stdout.splitlines()
    ]
    assert [r["event"] for r in by_event] == ["convert"]
    by_library = cli("inspect", "--json", "--library", "luxonis_ml").stdout.splitlines()
    assert len(by_library) == 3
    assert len(cli("inspect", "--json", "--limit", "2").stdout.splitlines()) == 2
    assert len(cli("inspect", "--json", "--since", "1h").stdout.splitlines()) == 4
    assert cli("inspect", "--json", "--since", "2999-01-01").stdout == ""


def test_inspect_bad_since_is_a_usage_error() -> None:
    result = cli("inspect", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "--since" in one_error_line(result)


def test_parse_since() -> None:
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("3d", now) == now - timedelta(days=3)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_upload_success_and_summary(posthog_env: FakePostHog) -> None:
    capture_some()
    result = cli("upload")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("sent 4, pending 0")
    assert len(posthog_env.events) == 4


def test_upload_json(posthog_env: FakePostHog) -> None:
    capture_some()
    result = cli("upload", "--json")
    assert json.loads(result.stdout)["sent"] == 4


def test_upload_without_key_exits_1_with_the_reason(server: FakePostHog) -> None:
    capture_some()
    result = cli("upload", "--endpoint", server.url)
    assert result.exit_code == 1
    assert "no PostHog API key" in result.stdout
    assert server.requests == 0


def test_upload_dry_run_sends_nothing(posthog_env: FakePostHog) -> None:
    capture_some()
    result = cli("upload", "--dry-run")
    assert result.exit_code == 0
    assert f"would send 3 event(s): luxonis_ml -> posthog {posthog_env.url}" in result.stdout
    assert posthog_env.requests == 0
    assert KEY not in result.output


def test_purge(spool_path: Path) -> None:
    capture_some()
    refused = cli("purge")
    assert refused.exit_code == 2
    assert "--yes" in one_error_line(refused)
    assert len(spool_records(spool_path)) == 4
    result = cli("purge", "--yes")
    assert result.exit_code == 0
    assert "purged 4" in result.stdout
    assert spool_records(spool_path) == []


def test_disable_and_enable_are_persisted_and_idempotent(home: Path, spool_path: Path) -> None:
    capture_some()
    install_id = home / ".config" / "luxonis-telemetry" / "install_id"
    assert install_id.exists()
    for _ in range(2):
        result = cli("disable")
        assert result.exit_code == 0
        assert "settings.json" in result.stdout
    assert spool_records(spool_path) == []
    assert not install_id.exists()
    settings = home / ".config" / "luxonis-telemetry" / "settings.json"
    assert json.loads(settings.read_text())["enabled"] is False
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    before = sorted(p for p in home.rglob("*"))
    Telemetry("x", config=TelemetryConfig(enabled=True)).capture("ignored")
    assert sorted(p for p in home.rglob("*")) == before
    assert "DISABLED" in cli("status").stdout
    for _ in range(2):
        assert cli("enable").exit_code == 0
    Telemetry("x").capture("counted")
    assert [r["event"] for r in spool_records(spool_path)] == ["counted"]


def test_export_then_upload_twice_sends_each_event_once(
    posthog_env: FakePostHog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = capture_some()
    bundle = tmp_path / "events.ltb.gz"
    result = cli("export", str(bundle), "--move")
    assert result.exit_code == 0, result.output
    assert "moved 4 event(s)" in result.stdout
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    assert cli("inspect", "--json").stdout == ""
    with gzip.open(bundle, "rt") as handle:
        header = json.loads(handle.readline())
    assert header["count"] == 4
    assert header["libraries"] == {"luxonis_ml": 3, "modelconverter": 1}
    assert KEY not in bundle.read_bytes().decode("latin-1")
    assert KEY not in gzip.decompress(bundle.read_bytes()).decode()
    first = cli("upload", "--from", str(bundle))
    assert first.exit_code == 0, first.output
    second = cli("upload", "--from", str(bundle))
    assert second.exit_code == 0
    assert "already uploaded" in second.stdout
    counts = posthog_env.uuid_counts()
    assert set(counts) == {r["uuid"] for r in stored}
    assert max(counts.values()) == 1


def test_export_keeps_events_without_move(tmp_path: Path) -> None:
    capture_some()
    assert cli("export", str(tmp_path / "b.gz")).exit_code == 0
    assert len(cli("inspect", "--json").stdout.splitlines()) == 4


@pytest.mark.parametrize("damage", ["truncate", "tamper", "garbage", "missing"])
def test_damaged_bundles_are_refused_and_nothing_is_sent(
    posthog_env: FakePostHog, tmp_path: Path, damage: str
) -> None:
    capture_some()
    bundle = tmp_path / "events.ltb.gz"
    assert cli("export", str(bundle)).exit_code == 0
    data = bundle.read_bytes()
    if damage == "truncate":
        bundle.write_bytes(data[: len(data) // 2])
    elif damage == "tamper":
        lines = gzip.decompress(data).splitlines(keepends=True)
        lines[2] = lines[2].replace(b"train.start", b"train.stolen")
        bundle.write_bytes(gzip.compress(b"".join(lines)))
    elif damage == "garbage":
        bundle.write_bytes(b"\x00not a bundle at all")
    else:
        bundle.unlink()
    result = cli("upload", "--from", str(bundle))
    assert result.exit_code == 1
    one_error_line(result)
    assert posthog_env.requests == 0


def console_script() -> str:
    script = Path(sys.executable).parent / "luxonis-telemetry"
    found = str(script) if script.exists() else shutil.which("luxonis-telemetry")
    assert found, "the console script is installed by `pip install -e .`"
    return found


def test_console_script_as_a_real_process(posthog_env: FakePostHog) -> None:
    stored = capture_some()
    env = dict(os.environ)
    inspected = subprocess.run(
        [console_script(), "inspect", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert inspected.returncode == 0
    assert [json.loads(x) for x in inspected.stdout.splitlines()] == stored
    uploaded = subprocess.run(
        [console_script(), "upload"], env=env, capture_output=True, text=True, timeout=60
    )
    assert uploaded.returncode == 0, uploaded.stderr
    assert len(posthog_env.events) == 4
    module = subprocess.run(
        [sys.executable, "-m", "luxonis_telemetry", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert json.loads(module.stdout)["pending_events"] == 0


def test_errors_in_a_real_process_are_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [console_script(), "upload", "--from", str(tmp_path / "nope.gz")],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "no such bundle" in result.stderr
    usage = subprocess.run(
        [console_script(), "inspect", "--limit", "-3"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr


def test_progress_bar_on_a_terminal_only(posthog_env: FakePostHog) -> None:
    import pty

    telemetry = Telemetry("bulk")
    for n in range(2500):
        telemetry.capture("e", {"n": n})
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    process = subprocess.Popen(
        [console_script(), "upload"], stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=60) == 0
    os.close(leader)
    text = output.decode(errors="replace")
    assert "uploading" in text  # rich drew its bar on the terminal
    assert "sent 2500, pending 0" in text
    piped = cli("upload")  # not a terminal: summary only
    assert "uploading" not in piped.stdout


def test_status_of_a_custom_backend_names_no_posthog_endpoint() -> None:
    from luxonis_telemetry.backends import MemoryBackend

    Telemetry.register_backend("mine", lambda _cfg: MemoryBackend())
    Telemetry("a", config=TelemetryConfig(backend="mine")).capture("e")
    info = json.loads(cli("status", "--json").stdout)
    assert info["destinations"]["a"] == {"backend": "mine", "endpoint": None, "api_key": None}
    assert "  a: mine\n" in cli("status").stdout
