"""suppress_telemetry(): one block of code in one thread or asyncio task, nothing more."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from luxonis_telemetry import Telemetry, is_suppressed, suppress_telemetry
from luxonis_telemetry import suppression as suppression_module
from tests.conftest import spool_records


def test_suppressed_inside_the_block_only() -> None:
    assert is_suppressed() is False
    with suppress_telemetry():
        assert is_suppressed() is True
    assert is_suppressed() is False


def test_nesting() -> None:
    with suppress_telemetry():
        with suppress_telemetry():
            assert is_suppressed() is True
        assert is_suppressed() is True  # leaving the inner block keeps the outer one
    assert is_suppressed() is False


def test_an_exception_ends_the_suppression() -> None:
    with pytest.raises(RuntimeError), suppress_telemetry():
        raise RuntimeError("boom")
    assert is_suppressed() is False


def test_a_thread_started_inside_the_block_is_not_suppressed() -> None:
    seen: list[bool] = []
    with suppress_telemetry():
        worker = threading.Thread(target=lambda: seen.append(is_suppressed()))
        worker.start()
        worker.join(timeout=30)
    assert seen == [False]


def test_a_block_in_another_thread_does_not_suppress_this_one() -> None:
    inside = threading.Event()
    release = threading.Event()
    seen_there: list[bool] = []

    def other() -> None:
        with suppress_telemetry():
            seen_there.append(is_suppressed())
            inside.set()
            release.wait(timeout=30)

    worker = threading.Thread(target=other)
    worker.start()
    try:
        assert inside.wait(timeout=30)
        assert is_suppressed() is False
    finally:
        release.set()
        worker.join(timeout=30)
    assert seen_there == [True]


def test_asyncio_tasks() -> None:
    """A task created inside inherits; one created outside does not; no leak between tasks."""

    async def report() -> bool:
        await asyncio.sleep(0)
        return is_suppressed()

    async def suppressing(entered: asyncio.Event, leave: asyncio.Event) -> bool:
        with suppress_telemetry():
            entered.set()
            await leave.wait()
            return is_suppressed()

    async def main() -> dict[str, bool]:
        created_outside = asyncio.ensure_future(report())
        with suppress_telemetry():
            created_inside = asyncio.ensure_future(report())
            awaited_inside = await report()
        entered, leave = asyncio.Event(), asyncio.Event()
        holder = asyncio.ensure_future(suppressing(entered, leave))
        await entered.wait()
        during_other = await asyncio.ensure_future(report())
        here_during_other = is_suppressed()
        leave.set()
        return {
            "created_outside": await created_outside,
            "created_inside": await created_inside,
            "awaited_inside": awaited_inside,
            "during_other": during_other,
            "here_during_other": here_during_other,
            "holder": await holder,
            "after": is_suppressed(),
        }

    assert asyncio.run(main()) == {
        "created_outside": False,
        "created_inside": True,
        "awaited_inside": True,
        "during_other": False,
        "here_during_other": False,
        "holder": True,
        "after": False,
    }


def test_nothing_is_recorded_while_suppressed(spool_path: Path) -> None:
    telemetry = Telemetry("lib")
    with suppress_telemetry():
        telemetry.capture("hidden")
        telemetry.identify("user")
    assert spool_records(spool_path) == []
    assert not spool_path.exists()  # not even the folder
    telemetry.capture("shown")
    assert [r["event"] for r in spool_records(spool_path)] == ["shown"]


def test_a_thread_started_inside_the_block_still_records(spool_path: Path) -> None:
    telemetry = Telemetry("lib")
    with suppress_telemetry():
        worker = threading.Thread(target=telemetry.capture, args=("from_thread",))
        worker.start()
        worker.join(timeout=30)
        telemetry.capture("hidden")
    assert [r["event"] for r in spool_records(spool_path)] == ["from_thread"]


def test_luxonis_mls_import_paths() -> None:
    assert suppression_module.suppress_telemetry is suppress_telemetry
    assert suppression_module.is_suppressed is is_suppressed
    assert set(suppression_module.__all__) == {"is_suppressed", "suppress_telemetry"}
