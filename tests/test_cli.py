"""The ``luxonis-telemetry`` command as people run it: in-process, as a real process, on a terminal."""

from __future__ import annotations

import gzip
import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig
from luxonis_telemetry import cli as cli_package
from luxonis_telemetry._text import mask_key
from luxonis_telemetry.bundle import read_bundle
from luxonis_telemetry.cli._app import CliError, parse_since
from luxonis_telemetry.spool import Spool
from luxonis_telemetry.testing import Action, FakePostHog
from tests.conftest import (
    KEY,
    REPO,
    capture_some,
    cli,
    console_script,
    default_spool,
    on_terminal,
    one_error_line,
    run_cli,
    spool_records,
    store,
    visible_lines,
    wait_until,
)

# -- help, version, usage errors --------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    ["", "inspect", "upload", "status", "purge", "enable", "local", "disable", "export"],
)
def test_every_command_has_help(command: str) -> None:
    result = cli(*([command] if command else []), "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_version() -> None:
    from luxonis_telemetry import __version__

    assert cli("--version").stdout.strip() == f"luxonis-telemetry {__version__}"


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["status", "--foo"],
        ["inspect", "--limit", "abc"],
        ["inspect", "--limit", "-3"],
        ["inspect", "--since", "last tuesday"],
        ["inspect", "--since", "1e308d"],
        ["inspect", "--since", "2026-99-01"],
        ["inspect", "--since", "99999-01-01"],
        ["upload", "--timeout", "1e400"],
        ["upload", "--timeout", "nan"],
        ["upload", "--timeout", "0"],
        ["upload", "--dry-run", "--from", "bundle.gz"],
        ["export"],
        ["purge"],  # no terminal to ask on, and no --yes
    ],
)
def test_every_bad_input_is_one_line_and_exit_code_2(args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    one_error_line(result.stderr, result.stdout)


def test_usage_errors_of_a_real_process_are_one_line(tmp_path: Path) -> None:
    for args in (["bogus"], ["inspect", "--limit", "-3"], ["upload", "--timeout", "nan"]):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        line = one_error_line(result.stderr, result.stdout)
        assert "--help" in line  # says where to read more
    missing = run_cli("upload", "--from", str(tmp_path / "nope.gz"))
    assert missing.returncode == 1
    assert "no such bundle" in one_error_line(missing.stderr, missing.stdout)


@pytest.mark.parametrize(
    "since", ["99999999999d", "99999999999999999999999999999999999999w", "1" * 5000 + "s"]
)
def test_huge_since_is_one_clear_error(since: str) -> None:
    capture_some()
    result = cli("inspect", "--json", "--since", since)
    assert result.exit_code == 2, result.output
    assert "reaches back before the year 1" in one_error_line(result.stderr, result.stdout)


def test_huge_limit_is_fine() -> None:
    stored = capture_some()
    result = cli("inspect", "--json", "--limit", str(10**40))
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == len(stored)


def test_parse_since() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("3d", now) == now - timedelta(days=3)
    assert parse_since("1.5w", now) == now - timedelta(weeks=1.5)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    with pytest.raises(CliError):
        parse_since("99999999999d", now)


# -- inspect --------------------------------------------------------------------------------


def test_inspect_table_and_totals() -> None:
    capture_some()
    result = cli("inspect")
    assert result.exit_code == 0
    assert "train.start" in result.stdout and "convert" in result.stdout
    assert "4 pending events" in result.stdout
    assert '"epochs"=2' in result.stdout


def test_inspect_with_nothing_recorded_creates_nothing(home: Path) -> None:
    result = cli("inspect")
    assert result.exit_code == 0
    assert "No pending events." in result.stdout
    assert [p for p in home.rglob("*") if p.is_file()] == []


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


def test_full_and_json_views_never_cut_and_show_the_context() -> None:
    long_value = "".join(chr(ord("a") + n % 26) for n in range(4000))
    record = store(
        properties={"long": long_value, "nested": {"k": [1, 2, 3]}},
        context={"os": "Linux", "session_id": "s-1", "custom_context_key": "ctx-value"},
    )
    full = cli("inspect", "--full")
    assert full.exit_code == 0
    assert f"long: {long_value}\n" in full.stdout
    assert "custom_context_key: ctx-value" in full.stdout
    assert "session_id: s-1" in full.stdout
    assert f"uuid {record['uuid']}" in full.stdout
    as_json = cli("inspect", "--json")
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == [record]
    table = cli("inspect")  # the table cuts, and says how to see everything
    assert long_value not in table.stdout
    assert "inspect --full" in table.stdout


HOSTILE = {
    "markup_close": "[/]",
    "markup_bold": "[bold]x[/bold]",
    "ansi": "\x1b[31mred\x1b[0m",
    "title": "\x1b]0;pwned\x07",
    "controls": "nul\x00 c1\x9b bidi\u202e end",
    "key\x1b[2J": "a key with an escape",
}
RAW = ["\x1b[31m", "\x1b]0;", "\x1b[2J", "\x00", "\x9b", "\u202e", "\x07"]


def test_inspect_shows_recorded_text_literally() -> None:
    store(event="[red]evt[/red]\x1b[5m", library="lib[/]", properties=HOSTILE)
    for view in ([], ["--full"], ["--json"], ["--limit", "0"]):
        result = cli("inspect", *view)
        assert result.exit_code == 0, (view, result.output)
        for raw in RAW:
            assert raw not in result.output, (view, raw)
    full = cli("inspect", "--full").stdout
    assert "markup_close: [/]" in full
    assert "markup_bold: [bold]x[/bold]" in full
    assert "ansi: \\x1b[31mred\\x1b[0m" in full
    assert "controls: nul\\x00 c1\\x9b bidi\\u202e end" in full
    assert "key\\x1b[2J: a key with an escape" in full
    assert "[red]evt[/red]\\x1b[5m" in full
    table = cli("inspect").stdout
    assert "[red]evt[/red]" in table and "lib[/]" in table


def test_escapes_never_reach_a_real_terminal() -> None:
    store(event="[red]evt[/red]\x1b[5m", library="lib[/]", properties=HOSTILE)
    for view in ([], ["--full"], ["--json"]):
        code, output = on_terminal([console_script(), "inspect", *view], columns=400)
        assert code == 0, output
        for raw in RAW:
            assert raw.encode() not in output, (view, raw)
        assert b"[/]" in output


def test_the_table_uses_the_terminal_width() -> None:
    store(properties={"long": "x" * 1000})
    widths = {}
    for columns in (60, 100, 200):
        code, output = on_terminal([console_script(), "inspect"], columns=columns)
        assert code == 0
        lines = visible_lines(output)
        assert max(len(line) for line in lines) <= columns, lines
        row = next(line for line in lines if "stored" in line and "x" in line)
        widths[columns] = row.count("x")
    assert widths[60] < widths[100] < widths[200]


def test_inspect_quarantined_is_literal(spool_path: Path) -> None:
    store()
    spool = Spool(str(spool_path))
    spool.quarantine([{"reason": "refused \x1b[31m[/]", "line": "bad\x00line"}])
    result = cli("inspect", "--quarantined")
    assert result.exit_code == 0
    for raw in ("\x1b[31m", "\x00"):
        assert raw not in result.stdout
    assert "[/]" in result.stdout


# -- upload ---------------------------------------------------------------------------------


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


def test_dry_run_json_is_exactly_what_the_server_then_receives(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    capture_some()
    Telemetry("modelconverter").identify("user-42", {"plan": "pro"})
    before = spool_records(spool_path)
    dry = run_cli("upload", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert KEY not in dry.stdout + dry.stderr
    requests = [json.loads(line) for line in dry.stdout.splitlines()]
    assert posthog_env.requests == 0
    assert spool_records(spool_path) == before  # a dry run changes nothing
    planned: dict[str, tuple[bool, dict[str, Any]]] = {}
    for request in requests:
        assert request["url"] == f"{posthog_env.url}/batch/"
        assert request["body"]["api_key"] == mask_key(KEY)
        for message in request["body"]["batch"]:
            planned[message["uuid"]] = (request["body"]["historical_migration"], message)
    assert len(planned) == 5
    sent = run_cli("upload")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    received: dict[str, tuple[bool, dict[str, Any]]] = {}
    for batch in posthog_env.batches:
        assert batch.api_key == KEY
        for message in batch.events:
            received[message["uuid"]] = (batch.historical, message)
    assert received == planned


def test_a_refused_key_keeps_events_pending_until_it_is_fixed(spool_path: Path) -> None:
    with FakePostHog(api_keys={"phc_good"}) as server:
        env = dict(
            os.environ,
            LUXONIS_TELEMETRY_ENDPOINT=server.url,
            LUXONIS_TELEMETRY_API_KEY="phc_wrong_key",
        )
        capture_some()
        refused = run_cli("upload", env=env)
        assert refused.returncode == 1
        said = [
            line
            for line in (refused.stdout + refused.stderr).splitlines()
            if "refused" in line and "key" in line
        ]
        assert len(said) == 1, refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr
        assert "phc_wrong_key" not in refused.stdout + refused.stderr
        assert len(spool_records(spool_path)) == 4
        assert server.events == []
        status = json.loads(run_cli("status", "--json", env=env).stdout)
        assert status["rejected_key"] is not None
        assert status["pending_events"] == 4
        assert "rejected key:" in run_cli("status", env=env).stdout
        env["LUXONIS_TELEMETRY_API_KEY"] = "phc_good"
        fixed = run_cli("upload", env=env)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert len(server.events) == 4
        assert spool_records(spool_path) == []
        assert json.loads(run_cli("status", "--json", env=env).stdout)["rejected_key"] is None


@pytest.mark.parametrize(
    "switch",
    [
        {"DO_NOT_TRACK": "1"},
        {"LUXONIS_TELEMETRY_ENABLED": "0"},
        {"LUXONIS_TELEMETRY_ENABLED": "local"},
        "local command",
        "dotenv",
    ],
)
def test_upload_under_an_opt_out_or_local_mode_sends_nothing(
    posthog_env: FakePostHog,
    spool_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    switch: Any,
) -> None:
    capture_some()
    bundle = tmp_path / "week.ltb.gz"
    assert cli("export", str(bundle)).exit_code == 0
    if switch == "local command":
        assert cli("local").exit_code == 0
    elif switch == "dotenv":
        (tmp_path / ".env").write_text("DO_NOT_TRACK=1\n")
    else:
        for name, value in switch.items():
            monkeypatch.setenv(name, value)
    for args in (["upload"], ["upload", "--from", str(bundle)]):
        result = run_cli(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nothing sent: "), result.stdout
        assert result.stderr == ""
    as_json = json.loads(run_cli("upload", "--json").stdout)
    assert as_json["blocked"] and as_json["sent"] == 0
    dry = run_cli("upload", "--dry-run")
    assert "nothing would be sent" in dry.stdout
    assert posthog_env.requests == 0
    assert len(spool_records(spool_path)) == 4  # pending until purged
    assert run_cli("purge", "--yes").returncode == 0
    assert spool_records(spool_path) == []


def test_progress_bar_on_a_terminal_only(posthog_env: FakePostHog) -> None:
    telemetry = Telemetry("bulk")
    for n in range(2500):
        telemetry.capture("e", {"n": n})
    code, output = on_terminal([console_script(), "upload"])
    assert code == 0
    text = output.decode(errors="replace")
    assert "uploading" in text  # rich drew its bar on the terminal
    assert "sent 2500, pending 0" in text
    piped = cli("upload")  # not a terminal: summary only
    assert "uploading" not in piped.stdout


# -- purge ----------------------------------------------------------------------------------


def test_purge(spool_path: Path) -> None:
    capture_some()
    refused = cli("purge")
    assert refused.exit_code == 2
    assert "--yes" in one_error_line(refused.stderr)
    assert len(spool_records(spool_path)) == 4
    result = cli("purge", "--yes")
    assert result.exit_code == 0
    assert "purged 4" in result.stdout
    assert spool_records(spool_path) == []


def test_purge_asks_on_a_terminal(spool_path: Path) -> None:
    capture_some()
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [console_script(), "purge"], stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    output = b""
    while b"[y/N]" not in output:
        ready, _, _ = select.select([leader], [], [], 30)
        assert ready, output
        output += os.read(leader, 4096)
    os.write(leader, b"n\n")
    assert process.wait(timeout=60) == 1
    os.close(leader)
    assert len(spool_records(spool_path)) == 4


# -- export ---------------------------------------------------------------------------------


def test_export_then_upload_twice_sends_each_event_once(
    posthog_env: FakePostHog, tmp_path: Path
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


def test_export_refuses_an_existing_file_unless_forced(tmp_path: Path) -> None:
    capture_some()
    target = tmp_path / "keep.txt"
    target.write_text("precious")
    refused = cli("export", str(target))
    assert refused.exit_code in (1, 2)
    assert "--force" in one_error_line(refused.stderr)
    assert target.read_text() == "precious"
    forced = cli("export", str(target), "--force")
    assert forced.exit_code == 0, forced.output
    assert read_bundle(str(target)).count == 4


def _device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null


@pytest.mark.parametrize("kind", ["fifo", "symlink", "device"])
def test_export_never_replaces_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    capture_some()
    target = tmp_path / "out.ltb.gz"
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("untouched")
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        target.symlink_to(elsewhere)
    else:
        _device(target)
    before = os.lstat(target)
    for extra in ([], ["--force"]):
        result = run_cli("export", str(target), *extra)
        assert result.returncode in (1, 2), result.stdout
        one_error_line(result.stderr, result.stdout)
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (
        before.st_mode,
        before.st_ino,
        before.st_rdev,
    )
    assert elsewhere.read_text() == "untouched"
    assert len(spool_records(default_spool())) == 4


def test_export_move_twice_to_one_name_never_destroys_the_first_bundle(tmp_path: Path) -> None:
    first = capture_some()
    bundle = tmp_path / "week.ltb.gz"
    assert cli("export", str(bundle), "--move").exit_code == 0
    Telemetry("luxonis_ml").capture("later")
    later = spool_records(default_spool())
    again = cli("export", str(bundle), "--move")
    assert again.exit_code in (1, 2)
    one_error_line(again.stderr)
    with gzip.open(bundle, "rt") as handle:
        kept = [json.loads(line) for line in handle.read().splitlines()[1:]]
    assert [r["uuid"] for r in kept] == [r["uuid"] for r in first]
    assert spool_records(default_spool()) == later  # the second move removed nothing


def test_export_into_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    capture_some()
    result = cli("export", str(tmp_path / "no" / "such" / "folder" / "b.gz"))
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "does not exist" in line and ".tmp" not in line


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
    one_error_line(result.stderr)
    assert posthog_env.requests == 0


# -- files that are not what they should be (8.3) -------------------------------------------


SPOOL_FILES = [
    "state.json",
    "destinations.json",
    "quarantine.jsonl",
    "active.lib.jsonl",
    "seg.00000000000000000001.lib.jsonl",
    "seg.00000000000000000001.lib.jsonl.pos",
    "lock",
    "upload.lock",
]
CONFIG_FILES = ["settings.json", "install_id", "notice_shown"]


@pytest.mark.parametrize("name", SPOOL_FILES + CONFIG_FILES)
def test_a_fifo_never_hangs_a_command_and_is_reported(
    posthog_env: FakePostHog, home: Path, spool_path: Path, tmp_path: Path, name: str
) -> None:
    Telemetry("lib").capture("e")
    folder = spool_path if name in SPOOL_FILES else home / ".config" / "luxonis-telemetry"
    fifo = folder / name
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    for args in (
        ["status"],
        ["status", "--json"],
        ["inspect"],
        ["inspect", "--json"],
        ["upload", "--dry-run", "--json"],
        ["upload", "--timeout", "5"],
        ["export", str(tmp_path / "out.gz")],
        ["purge", "--yes"],
    ):
        result = run_cli(*args)  # bounded by run_cli's timeout: a hang fails the test
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert result.returncode in (0, 1), (args, result.stderr)
        said = result.stdout + result.stderr
        if args[0] in ("status", "inspect") or result.returncode:
            assert str(fifo) in said and "regular file" in said, (args, said)


# -- the console script and `python -m` ---------------------------------------------------


def test_console_script_and_module_as_real_processes(posthog_env: FakePostHog) -> None:
    stored = capture_some()
    inspected = run_cli("inspect", "--json")
    assert inspected.returncode == 0
    assert [json.loads(x) for x in inspected.stdout.splitlines()] == stored
    uploaded = run_cli("upload")
    assert uploaded.returncode == 0, uploaded.stderr
    assert len(posthog_env.events) == 4
    module = subprocess.run(
        [sys.executable, "-m", "luxonis_telemetry", "status", "--json"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert module.returncode == 0, module.stderr
    assert json.loads(module.stdout)["pending_events"] == 0
    usage = subprocess.run(
        [sys.executable, "-m", "luxonis_telemetry", "bogus"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 2
    one_error_line(usage.stderr, usage.stdout)


def test_commands_record_nothing_themselves(posthog_env: FakePostHog, spool_path: Path) -> None:
    for args in (["status"], ["inspect"], ["upload", "--dry-run"], ["upload"]):
        assert cli(*args).exit_code == 0
    assert not spool_path.exists()
    Telemetry("lib", config=TelemetryConfig(api_key=KEY)).capture("mine")
    for args in (["status"], ["inspect"], ["upload"]):
        cli(*args)
    assert posthog_env.event_count == 1


def test_credentials_in_the_endpoint_never_reach_the_output(
    server: FakePostHog, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = server.url.replace("http://", "http://someone:hunter2@")
    monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", KEY)
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", host)
    capture_some()
    for args in (["upload", "--dry-run"], ["upload", "--dry-run", "--json"], ["status"]):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert "hunter2" not in result.output and "someone" not in result.output
        assert KEY not in result.output
    dry = [json.loads(line) for line in cli("upload", "--dry-run", "--json").stdout.splitlines()]
    assert dry[0]["url"] == server.url.replace("http://", "http://***@") + "/batch/"


def test_ctrl_c_during_an_upload_is_one_line_and_exit_code_130(posthog_env: FakePostHog) -> None:
    """Review: Ctrl-C is an interruption (130, as shells expect), not a failure (1)."""
    capture_some()
    posthog_env.set_default(Action("hang"))
    with subprocess.Popen(
        [console_script(), "upload", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert wait_until(lambda: posthog_env.in_flight > 0, timeout=30)
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
    assert process.returncode == 130
    assert one_error_line(stderr, stdout) == "luxonis-telemetry: error: interrupted"
    assert len(spool_records(default_spool())) == 4  # nothing acknowledged: all still pending


def test_an_unexpected_failure_in_main_is_one_escaped_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def explode() -> None:
        raise MemoryError("line one\nline two \x1b[31m")

    monkeypatch.setattr(cli_package, "app", explode)
    with pytest.raises(SystemExit) as exited:
        cli_package.main()
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "luxonis-telemetry: error: unexpected MemoryError: line one line two \\x1b[31m\n"
    )
