"""The exit hook, exercised by real programs that capture and exit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from luxonis_telemetry.spool import Spool
from luxonis_telemetry.testing import Action, FakePostHog
from tests.conftest import free_port, helpers_of, run_python, spool_records, wait_until

PROGRAM = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
from luxonis_telemetry import Telemetry
t = Telemetry("exiting")
for n in range(10):
    t.capture("work", {"n": n})
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def run_program(**env: str) -> tuple[float, str, int]:
    full = {**os.environ, "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1", **env}
    started = time.monotonic()
    result = run_python(PROGRAM, env=full)
    return time.monotonic() - started, result.stderr, result.returncode


@pytest.fixture
def exit_env(posthog_env: FakePostHog, monkeypatch: pytest.MonkeyPatch) -> FakePostHog:
    monkeypatch.setenv("LUXONIS_TELEMETRY_EXIT_TIMEOUT", "3")
    return posthog_env


def test_healthy_endpoint_gets_the_events_soon_after_exit(
    exit_env: FakePostHog, spool_path: Path
) -> None:
    _elapsed, stderr, code = run_program()
    assert code == 0
    assert "helper" in stderr and "started" in stderr
    assert exit_env.wait_for(10, timeout=10)
    assert wait_until(lambda: not helpers_of(spool_path), 30)
    assert len(exit_env.uuid_counts()) == 10
    assert spool_records(spool_path) == []


def test_exit_code_is_untouched(exit_env: FakePostHog) -> None:
    _elapsed, _stderr, code = run_program()
    assert code == 0
    result = run_python(
        PROGRAM.replace("sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)", "sys.exit(3)"),
        env=dict(os.environ, LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="1"),
    )
    assert result.returncode == 3


@pytest.mark.parametrize("fault", ["refused", "hang"])
def test_unreachable_endpoint_neither_delays_exit_nor_leaves_processes(
    exit_env: FakePostHog, spool_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    if fault == "refused":
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    else:
        exit_env.set_default(Action("hang"))
    elapsed, stderr, code = run_program()
    assert code == 0
    assert elapsed < 5, elapsed  # generous: the benchmark measures the real cost
    assert "started" in stderr
    # the helper gives up within its budget (3 s here) plus the grace period
    assert wait_until(lambda: not helpers_of(spool_path), 30)
    assert len(spool_records(spool_path)) == 10
    assert wait_until(lambda: "exit_backoff" in Spool(str(spool_path)).read_state(), 10)
    # the next exit backs off: no helper, no network
    _elapsed, stderr, _code = run_program()
    assert "backing off" in stderr
    assert "started" not in stderr


def test_no_helper_under_ci_unless_forced(exit_env: FakePostHog, spool_path: Path) -> None:
    result = run_python(
        PROGRAM, env=dict(os.environ, CI="true", LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="")
    )
    assert result.returncode == 0
    assert "no helper under CI" in result.stderr
    assert len(spool_records(spool_path)) == 10


def test_no_helper_without_a_key(
    server: FakePostHog, spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", server.url)
    _elapsed, stderr, _code = run_program()
    assert "helper" not in stderr
    assert server.requests == 0
    assert len(spool_records(spool_path)) == 10


def test_opted_out_by_upload_on_exit(exit_env: FakePostHog, spool_path: Path) -> None:
    _elapsed, stderr, _code = run_program(LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="0")
    assert "helper" not in stderr
    assert len(spool_records(spool_path)) == 10


def test_programs_exiting_together_send_each_event_once(
    exit_env: FakePostHog, spool_path: Path
) -> None:
    import subprocess
    import sys

    env = dict(os.environ, LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="1")
    programs = [
        subprocess.Popen([sys.executable, "-c", PROGRAM], env=env, stderr=subprocess.DEVNULL)
        for _ in range(4)
    ]
    for program in programs:
        assert program.wait(timeout=60) == 0
    assert wait_until(lambda: not helpers_of(spool_path), 30)
    # whatever a busy helper could not take is sent by the next upload
    from luxonis_telemetry import upload

    assert upload(budget=30).ok
    counts = exit_env.uuid_counts()
    assert len(counts) == 40
    assert max(counts.values()) == 1


def test_a_hanging_in_process_backend_cannot_hold_the_exit(spool_path: Path) -> None:
    code = (
        "import threading\n"
        "from luxonis_telemetry import Telemetry, TelemetryConfig\n"
        "class Stuck:\n"
        "    def capture(self, event): threading.Event().wait()\n"
        "    def identify(self, user_id, traits): pass\n"
        "    def flush(self): pass\n"
        "    def shutdown(self): pass\n"
        "Telemetry.register_backend('stuck', lambda cfg: Stuck())\n"
        "Telemetry('lib', config=TelemetryConfig(backend='stuck')).capture('e')\n"
    )
    started = time.monotonic()
    result = run_python(code, env={**os.environ, "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1"})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10  # 2 s budget + 1 s grace, generously bounded
    assert len(spool_records(spool_path)) == 1  # not confirmed, so still pending
