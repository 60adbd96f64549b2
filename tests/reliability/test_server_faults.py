"""Server faults: what the uploader and the exit hook do, how long they take,
and that everything is delivered (or quarantined) once the server is healthy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from luxonis_telemetry import Telemetry, upload
from luxonis_telemetry._spool_state import SpoolState
from luxonis_telemetry.spool import Spool
from luxonis_telemetry.testing import Action, FakePostHog
from tests.conftest import free_port, helpers_of, run_python, spool_records, wait_until

BUDGET = 4.0
FAULTS = {
    "reset": [Action("close")],
    "500": [Action("status", 500)],
    "502": [Action("status", 502)],
    "503": [Action("status", 503)],
    "429 Retry-After": [Action("status", 429, retry_after=1)],
    "slow": [Action(delay=1.5)],
    "hang": [Action("hang")],
}


def capture(count: int) -> None:
    telemetry = Telemetry("faulty")
    for n in range(count):
        telemetry.capture("e", {"n": n})


@pytest.mark.parametrize("fault", list(FAULTS))
def test_uploader_under_fault_then_recovery(
    posthog_env: FakePostHog, spool_path: Path, fault: str
) -> None:
    capture(20)
    posthog_env.set_default(FAULTS[fault][0])
    started = time.monotonic()
    result = upload(budget=BUDGET)
    elapsed = time.monotonic() - started
    assert elapsed < BUDGET + 6, elapsed  # the budget bounds the run (+ one request timeout)
    if fault == "slow":
        assert result.ok  # slow but healthy: delivered within the budget
    else:
        assert result.pending == 20 and not result.ok
        assert result.error
    posthog_env.set_default(Action())
    assert upload(budget=30).ok
    counts = posthog_env.uuid_counts()
    assert len(counts) == 20
    assert spool_records(spool_path) == []


def test_retry_after_then_success_in_one_run(posthog_env: FakePostHog) -> None:
    capture(5)
    posthog_env.script(Action("status", 429, retry_after=1))
    started = time.monotonic()
    assert upload(budget=10).ok
    assert time.monotonic() - started >= 1.0


def test_connection_refused_then_recovery(
    posthog_env: FakePostHog, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture(10)
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    result = upload(budget=BUDGET)
    assert time.monotonic() - started < BUDGET + 2
    assert result.pending == 10
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", posthog_env.url)
    assert upload(budget=30).ok
    assert len(posthog_env.uuid_counts()) == 10


@pytest.mark.parametrize("status", [400, 413])
def test_permanent_rejection_is_quarantined(
    posthog_env: FakePostHog, spool_path: Path, status: int
) -> None:
    capture(4)
    posthog_env.set_default(Action("status", status))
    result = upload(budget=BUDGET)
    assert result.failed == 4
    assert result.pending == 0
    assert len((spool_path / "quarantine.jsonl").read_text().splitlines()) == 4
    posthog_env.set_default(Action())
    capture(3)
    assert upload(budget=30).ok
    assert posthog_env.event_count == 3


def test_413_once_splits_and_delivers_everything(posthog_env: FakePostHog) -> None:
    capture(16)
    posthog_env.script(Action("status", 413), Action("status", 413), Action("status", 413))
    assert upload(budget=30).ok
    assert len(posthog_env.uuid_counts()) == 16


def clear_backoff(state: SpoolState) -> None:
    state.backoff_failures = 0
    state.next_attempt_at = 0.0


EXIT_PROGRAM = "from luxonis_telemetry import Telemetry\nt = Telemetry('faulty')\nfor n in range(10): t.capture('e', {'n': n})\n"


@pytest.mark.parametrize("fault", ["refused", *FAULTS, "400"])
def test_exit_hook_under_fault(
    posthog_env: FakePostHog, spool_path: Path, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **os.environ,
        "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1",
        "LUXONIS_TELEMETRY_EXIT_TIMEOUT": "3",
    }
    if fault == "refused":
        env["LUXONIS_TELEMETRY_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    elif fault == "400":
        posthog_env.set_default(Action("status", 400))
    else:
        posthog_env.set_default(FAULTS[fault][0])
    started = time.monotonic()
    result = run_python(EXIT_PROGRAM, env=env)
    assert result.returncode == 0 and result.stderr == ""
    assert time.monotonic() - started < 5  # the host's exit is not held up
    assert wait_until(lambda: not helpers_of(spool_path), 30)  # the helper is gone
    posthog_env.set_default(Action())
    Spool(str(spool_path)).update_state(clear_backoff)
    final = upload(budget=30)
    assert final.ok, final.summary()
    delivered = len(posthog_env.uuid_counts())
    quarantined = Spool(str(spool_path)).read_state().quarantined
    assert delivered + quarantined == 10
    if fault != "400":
        assert delivered == 10
