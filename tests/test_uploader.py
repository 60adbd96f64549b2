from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig, upload
from luxonis_telemetry.backends import DeliveryError, MemoryBackend
from luxonis_telemetry.event import encode, new_record
from luxonis_telemetry.spool import Spool
from luxonis_telemetry.testing import Action, FakePostHog
from tests.conftest import REPO, free_port, spool_records

KEY = "phc_test_key_123"


def capture(count: int, library: str = "lib", **props: Any) -> list[str]:
    telemetry = Telemetry(library)
    for n in range(count):
        telemetry.capture("e", {"n": n, **props})
    return [r["uuid"] for r in spool_records_for(library)]


def spool_records_for(library: str) -> list[dict[str, Any]]:
    spool_dir = Path(os.environ["XDG_STATE_HOME"]) / "luxonis-telemetry" / "spool"
    return [r for r in spool_records(spool_dir) if r["library"] == library]


def test_delivers_with_original_uuid_time_and_context(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    capture(3)
    spool = Spool(str(spool_path))
    foreign = new_record(
        "capture",
        event="foreign",
        distinct_id="d",
        library="lib",
        properties={"a": 1},
        context={
            "os": "Plan9",
            "os_version": "4",
            "python_version": "2.7.18",
            "library_name": "lib",
        },
    )
    spool.append("lib", encode(foreign))
    stored = {r["uuid"]: r for r in spool_records(spool_path)}
    result = upload(budget=20)
    assert result.ok, result.summary()
    assert result.sent == 4
    received = {e["uuid"]: e for e in posthog_env.events}
    assert received.keys() == stored.keys()
    for uuid, record in stored.items():
        event = received[uuid]
        assert event["timestamp"] == record["timestamp"]
        assert event["distinct_id"] == record["distinct_id"]
        assert event["event"] == record["event"]
    plan9 = received[foreign["uuid"]]["properties"]
    assert (plan9["$os"], plan9["$os_version"], plan9["$python_version"]) == (
        "Plan9",
        "4",
        "2.7.18",
    )
    assert plan9["a"] == 1
    assert all(
        batch.gzip and batch.api_key == KEY and not batch.historical
        for batch in posthog_env.batches
    )
    assert spool_records(spool_path) == []


def test_identify_is_sent_as_identify(posthog_env: FakePostHog) -> None:
    Telemetry("lib").identify("user-9", {"plan": "pro"})
    assert upload(budget=20).ok
    [event] = posthog_env.events
    assert event["event"] == "$identify"
    assert event["distinct_id"] == "user-9"
    assert event["properties"]["$set"] == {"plan": "pro"}


def test_old_events_go_as_historical_migration(posthog_env: FakePostHog, spool_path: Path) -> None:
    old = new_record(
        "capture", event="old", distinct_id="d", library="lib", properties={}, context={}
    )
    old["timestamp"] = (datetime.now(timezone.utc) - timedelta(days=3)).isoformat()
    spool = Spool(str(spool_path))
    spool.append("lib", encode(old))
    capture(1)
    assert upload(budget=20).ok
    flags = {batch.events[0]["event"]: batch.historical for batch in posthog_env.batches}
    assert flags == {"old": True, "e": False}


def test_events_older_than_the_age_cap_are_dropped_and_counted(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    ancient = new_record(
        "capture", event="ancient", distinct_id="d", library="lib", properties={}, context={}
    )
    ancient["timestamp"] = (datetime.now(timezone.utc) - timedelta(days=400)).isoformat()
    Spool(str(spool_path)).append("lib", encode(ancient))
    capture(1)
    result = upload(budget=20)
    assert result.ok
    assert result.skipped == 1
    assert [e["event"] for e in posthog_env.events] == ["e"]
    assert Spool(str(spool_path)).read_state()["dropped"]["age_cap"] == 1


def test_each_library_goes_to_its_own_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakePostHog() as first, FakePostHog() as second:
        Telemetry("a", config=TelemetryConfig(api_key="key_a", endpoint=first.url)).capture(
            "to.first"
        )
        Telemetry("b", config=TelemetryConfig(api_key="key_b", endpoint=second.url)).capture(
            "to.second"
        )
        result = upload(budget=20)
        assert result.ok, result.summary()
        assert [e["event"] for e in first.events] == ["to.first"]
        assert [e["event"] for e in second.events] == ["to.second"]
        assert first.batches[0].api_key == "key_a"
        assert second.batches[0].api_key == "key_b"


def test_environment_overrides_recorded_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakePostHog() as recorded, FakePostHog() as company:
        Telemetry("a", config=TelemetryConfig(api_key="key_a", endpoint=recorded.url)).capture("e")
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", company.url)
        assert upload(budget=20).ok
        assert recorded.events == []
        assert len(company.events) == 1


def test_missing_key_leaves_events_pending_with_a_reason(
    server: FakePostHog, spool_path: Path
) -> None:
    Telemetry("a", config=TelemetryConfig(endpoint=server.url)).capture("e")
    result = upload(budget=10)
    assert not result.ok
    assert result.pending == 1
    assert "API key" in result.reasons["a"]
    assert server.requests == 0
    assert len(spool_records(spool_path)) == 1


def test_unknown_backend_leaves_pending_others_still_go(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    Telemetry("a", config=TelemetryConfig(backend="nowhere")).capture("stuck")
    Telemetry("b").capture("free")
    result = upload(budget=10)
    assert result.pending == 1
    assert "unknown backend 'nowhere'" in result.reasons["a"]
    assert [e["event"] for e in posthog_env.events] == ["free"]


def test_custom_backend_with_seed_methods_receives_events() -> None:
    received: list[dict[str, Any]] = []

    class SeedBackend:
        def capture(self, event: dict[str, Any]) -> None:
            received.append(event)

        def identify(self, user_id: str, traits: dict[str, Any]) -> None:
            received.append({"identify": user_id, **traits})

        def flush(self) -> None:
            pass

        def shutdown(self) -> None:
            pass

    Telemetry.register_backend("seed", lambda _cfg: SeedBackend())
    telemetry = Telemetry("a", config=TelemetryConfig(backend="seed"))
    telemetry.capture("one", {"x": 1})
    telemetry.identify("u", {"t": 2})
    assert upload(budget=10).ok
    assert received[0]["event"] == "one" and received[0]["properties"] == {"x": 1}
    assert received[1] == {"identify": "u", "t": 2}


def test_failing_custom_backend_keeps_events(spool_path: Path) -> None:
    backend = MemoryBackend()
    backend.fail_with = DeliveryError("down")
    Telemetry.register_backend("mem", lambda _cfg: backend)
    Telemetry("a", config=TelemetryConfig(backend="mem")).capture("e")
    result = upload(budget=5)
    assert result.pending == 1 and not result.ok
    backend.fail_with = None
    assert upload(budget=5).ok
    assert [r["event"] for r in backend.records] == ["e"]


def test_entry_point_backend_is_found_by_the_cli(tmp_path: Path, spool_path: Path) -> None:
    plugin = tmp_path / "plugin"
    (plugin / "my_plugin").mkdir(parents=True)
    (plugin / "my_plugin" / "__init__.py").write_text(
        "import json, os\n"
        "class FileBackend:\n"
        "    def __init__(self, config): self.path = os.environ['PLUGIN_OUT']\n"
        "    def send(self, records, *, historical=False):\n"
        "        with open(self.path, 'a') as f:\n"
        "            for r in records: f.write(json.dumps(r) + '\\n')\n"
        "    def capture(self, event): pass\n"
        "    def identify(self, user_id, traits): pass\n"
        "    def flush(self): pass\n"
        "    def shutdown(self): pass\n"
    )
    dist = plugin / "my_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[luxonis_telemetry.backends]\nfilebackend = my_plugin:FileBackend\n"
    )
    Telemetry("a", config=TelemetryConfig(backend="filebackend")).capture("via.plugin")
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, PYTHONPATH=str(plugin), PLUGIN_OUT=str(out))
    result = subprocess.run(
        [sys.executable, "-m", "luxonis_telemetry", "upload"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(out.read_text())["event"] == "via.plugin"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_keep_events_pending(
    posthog_env: FakePostHog, spool_path: Path, status: int
) -> None:
    capture(5)
    posthog_env.set_default(Action("status", status))
    result = upload(budget=5)
    assert result.pending == 5 and result.sent == 0
    assert str(status) in (result.error or "")
    posthog_env.set_default(Action())
    assert upload(budget=10).ok
    assert len(posthog_env.uuid_counts()) == 5


def test_retry_after_is_honoured_within_the_budget(posthog_env: FakePostHog) -> None:
    capture(3)
    posthog_env.script(Action("status", 429, retry_after=0.3), Action("status", 503))
    started = time.monotonic()
    result = upload(budget=20)
    assert result.ok
    assert time.monotonic() - started >= 0.3
    assert posthog_env.requests == 3


def test_permanent_rejection_is_quarantined_and_does_not_block(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    capture(3)
    posthog_env.script(Action("status", 400))
    result = upload(budget=10)
    assert result.failed == 3 and result.pending == 0
    quarantine = [json.loads(x) for x in (spool_path / "quarantine.jsonl").read_text().splitlines()]
    assert all("400" in q["reason"] for q in quarantine)
    assert KEY not in (spool_path / "quarantine.jsonl").read_text()
    capture(2, library="later")
    assert upload(budget=10).ok
    assert len(posthog_env.events) == 2


def test_too_large_batches_are_split(posthog_env: FakePostHog) -> None:
    capture(8)
    posthog_env.script(Action("status", 413), Action("status", 413))
    result = upload(budget=10)
    assert result.ok
    assert len(posthog_env.uuid_counts()) == 8
    assert max(posthog_env.uuid_counts().values()) == 1


def test_connection_refused(posthog_env: FakePostHog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    capture(2)
    result = upload(budget=5)
    assert result.pending == 2
    assert "cannot reach" in (result.error or "")


def test_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", KEY)
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", "http://no-such-host.invalid")
    capture(2)
    result = upload(budget=10)
    assert result.pending == 2 and result.sent == 0


def test_connection_closed_without_answer(posthog_env: FakePostHog) -> None:
    capture(2)
    posthog_env.set_default(Action("close"))
    result = upload(budget=5)
    assert result.pending == 2
    posthog_env.set_default(Action())
    assert upload(budget=10).ok


def test_hanging_server_is_bounded_by_the_budget(posthog_env: FakePostHog) -> None:
    capture(2)
    posthog_env.set_default(Action("hang"))
    started = time.monotonic()
    result = upload(budget=2)
    elapsed = time.monotonic() - started
    assert result.pending == 2
    assert elapsed < 8, elapsed


def test_backoff_is_recorded_after_a_network_failure(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    capture(1)
    posthog_env.set_default(Action("status", 503))
    upload(budget=3)
    first = Spool(str(spool_path)).read_state()["exit_backoff"]
    upload(budget=3)
    second = Spool(str(spool_path)).read_state()["exit_backoff"]
    assert second["failures"] == first["failures"] + 1
    assert second["next_attempt_at"] - time.time() > 60
    posthog_env.set_default(Action())
    assert upload(budget=10).ok
    assert "exit_backoff" not in Spool(str(spool_path)).read_state()


def test_a_second_uploader_waits_or_reports_busy(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    capture(3)
    lock = Spool(str(spool_path)).upload_lock()
    assert lock.acquire(0)
    try:
        result = upload(budget=5, lock_timeout=0.2)
        assert result.busy and result.pending == 3 and not result.ok
    finally:
        lock.release()
        lock.close()
    assert upload(budget=10).ok


def test_two_cli_uploads_at_once_send_each_event_once(posthog_env: FakePostHog) -> None:
    capture(3000)
    posthog_env.set_default(Action(delay=0.02))
    commands = [
        subprocess.Popen(
            [sys.executable, "-m", "luxonis_telemetry", "upload"],
            env=dict(os.environ),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for command in commands:
        command.communicate(timeout=120)
    counts = posthog_env.uuid_counts()
    assert len(counts) == 3000
    assert max(counts.values()) == 1


def _capture_loop(count: int) -> None:
    telemetry = Telemetry("busy")
    for n in range(count):
        telemetry.capture("busy.event", {"n": n, "pid": os.getpid()})


def test_captures_during_uploads_are_never_lost_or_doubled(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_capture_loop, args=(2500,)) for _ in range(4)]
    for writer in writers:
        writer.start()
    stop = threading.Event()

    def keep_uploading() -> None:
        while not stop.is_set():
            upload(budget=20)

    uploader = threading.Thread(target=keep_uploading)
    uploader.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0
    stop.set()
    uploader.join(timeout=120)
    final = upload(budget=60)
    assert final.ok, final.summary()
    counts = posthog_env.uuid_counts()
    assert len(counts) == 10_000
    assert max(counts.values()) == 1
    assert spool_records(spool_path) == []


def test_sigkilled_uploader_loses_nothing(posthog_env: FakePostHog, spool_path: Path) -> None:
    capture(2000)
    posthog_env.set_default(Action(delay=0.3))
    process = subprocess.Popen(
        [sys.executable, "-m", "luxonis_telemetry", "upload"],
        env=dict(os.environ),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while posthog_env.requests < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    posthog_env.set_default(Action())
    assert upload(budget=60).ok
    counts = posthog_env.uuid_counts()
    assert len(counts) == 2000
    duplicates = sum(c - 1 for c in counts.values())
    assert duplicates <= 500  # at most the batch in flight, same uuids


def test_no_spool_yet_is_a_clean_no_op(home: Path) -> None:
    result = upload(budget=1)
    assert result.ok and result.sent == 0
    assert not (home / ".local").exists()


def test_dry_run_sends_nothing_and_names_destinations(posthog_env: FakePostHog) -> None:
    capture(2)
    result = upload(dry_run=True)
    assert posthog_env.requests == 0
    assert result.pending == 2
    [(where, count)] = result.planned.items()
    assert posthog_env.url in where and count == 2


def test_events_over_900_kib_are_quarantined_not_sent(
    posthog_env: FakePostHog, spool_path: Path
) -> None:
    huge = new_record(
        "capture",
        event="huge",
        distinct_id="d",
        library="lib",
        properties={"blob": "x" * 950_000},
        context={},
    )
    spool = Spool(str(spool_path))
    spool.ensure_folder()
    (spool_path / "active.lib.jsonl").write_bytes(json.dumps(huge).encode() + b"\n")
    capture(2)
    result = upload(budget=20)
    assert result.ok
    assert result.failed == 1
    assert [e["event"] for e in posthog_env.events] == ["e", "e"]
    assert "over 900 KiB" in (spool_path / "quarantine.jsonl").read_text()
