"""Load: 8 processes x 16 threads capture for 30 s while uploads run every second."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from luxonis_telemetry import Telemetry, upload
from luxonis_telemetry.spool import Spool
from luxonis_telemetry.testing import Action, FakePostHog
from tests.conftest import spool_records

PROCESSES = 8
THREADS = 16
SECONDS = 30.0


def _writer(seconds: float, pause: float, result_path: str) -> None:
    telemetry = Telemetry("load")
    counts = [0] * THREADS
    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        while time.monotonic() < deadline:
            telemetry.capture("load.tick", {"thread": index, "n": counts[index]})
            counts[index] += 1
            time.sleep(pause)  # pacing, so a loopback server in this process keeps up

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open(result_path, "w") as handle:
        json.dump({"captured": sum(counts), "dropped": telemetry.dropped}, handle)


def run_writers(
    tmp_path: Path, seconds: float, pause: float
) -> list[multiprocessing.process.BaseProcess]:
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_writer, args=(seconds, pause, str(tmp_path / f"writer{i}.json")))
        for i in range(PROCESSES)
    ]
    for writer in writers:
        writer.start()
    return writers


def test_everything_captured_under_load_arrives_once(
    posthog_env: FakePostHog, spool_path: Path, tmp_path: Path
) -> None:
    writers = run_writers(tmp_path, SECONDS, 0.02)
    rounds = 0
    while any(w.is_alive() for w in writers):
        started = time.monotonic()
        upload(budget=30)
        rounds += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))  # the next upload a second later
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    final = upload(budget=120)
    assert final.ok, final.summary()
    results = [json.loads((tmp_path / f"writer{i}.json").read_text()) for i in range(PROCESSES)]
    captured = sum(r["captured"] for r in results)
    assert sum(r["dropped"] for r in results) == 0
    counts = posthog_env.uuid_counts()
    assert len(counts) == captured
    assert max(counts.values()) == 1
    assert spool_records(spool_path) == []
    assert rounds >= 10
    print(
        f"load: {captured} events from {PROCESSES}x{THREADS} threads in {SECONDS:.0f} s, {rounds} uploads"
    )


def test_size_cap_holds_under_load(
    server: FakePostHog, spool_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_MAX_SPOOL_MB", "1")
    monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", "phc_k")
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", server.url)
    server.set_default(Action("status", 503))  # nothing can leave: the spool must stay bounded
    writers = run_writers(tmp_path, 8.0, 0.001)
    spool = Spool(str(spool_path), max_bytes=1024 * 1024)
    largest = 0
    while any(w.is_alive() for w in writers):
        largest = max(largest, spool.pending_bytes())
        time.sleep(0.02)
    for writer in writers:
        writer.join(timeout=60)
    largest = max(largest, spool.pending_bytes())
    # one sealed segment of slack (cap / 16) plus the active file that fills the next
    assert largest <= spool.max_bytes + 2 * spool.segment_bytes, largest
    results = [json.loads((tmp_path / f"writer{i}.json").read_text()) for i in range(PROCESSES)]
    captured = sum(r["captured"] for r in results)
    dropped = Spool(str(spool_path)).read_state().dropped["size_cap"]
    pending = len(spool_records(spool_path))
    assert pending + dropped == captured
    print(
        f"cap: {captured} captured, {dropped} dropped by the 1 MiB cap, max spool {largest} bytes"
    )
