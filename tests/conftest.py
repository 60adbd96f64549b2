"""Every test gets its own HOME, XDG folders, spool and environment."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from luxonis_telemetry import _state
from luxonis_telemetry.config import CI_VARIABLES
from luxonis_telemetry.testing import FakePostHog

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if (
            name.startswith("LUXONIS_TELEMETRY_")
            or name in ("CI", *CI_VARIABLES)
            or name == "DO_NOT_TRACK"
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("LUXONIS_TELEMETRY_UPLOAD_ON_EXIT", "0")
    monkeypatch.chdir(tmp_path)
    _state.reset()
    yield home
    _state.reset()


@pytest.fixture(autouse=True)
def no_swallowed_errors(request: pytest.FixtureRequest, isolated: Path) -> Iterator[None]:
    """Fail a test in which the library swallowed an internal error it did not expect.

    Mark a test ``@pytest.mark.allow_internal_errors`` when provoking one is its point.
    """
    swallowed: list[tuple[str, BaseException]] = []
    _state.state.error_observers.append(lambda where, exc: swallowed.append((where, exc)))
    yield
    if swallowed and request.node.get_closest_marker("allow_internal_errors") is None:
        where, exc = swallowed[0]
        pytest.fail(f"luxonis-telemetry swallowed an internal error in {where}: {exc!r}")


@pytest.fixture
def home(isolated: Path) -> Path:
    return isolated


@pytest.fixture
def spool_path(home: Path) -> Path:
    return home / ".local" / "state" / "luxonis-telemetry" / "spool"


@pytest.fixture
def server() -> Iterator[FakePostHog]:
    with FakePostHog() as fake:
        yield fake
    assert fake.handler_errors == [], fake.handler_errors


@pytest.fixture
def posthog_env(server: FakePostHog, monkeypatch: pytest.MonkeyPatch) -> FakePostHog:
    """Point every library at the fake server with a test key."""
    monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", "phc_test_key_123")
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", server.url)
    return server


def spool_records(spool: Path) -> list[dict[str, Any]]:
    """Every well-formed record pending in ``spool`` (any file, any order)."""
    records: list[dict[str, Any]] = []
    if not spool.exists():
        return records
    for path in sorted(spool.glob("*.jsonl")):
        if path.name == "quarantine.jsonl":
            continue
        for line in path.read_bytes().splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and value.get("v") == 1:
                records.append(value)
    return records


def run_python(
    code: str, *, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ) if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def free_port() -> int:
    """A loopback port nobody listens on (for connection-refused cases)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def helpers_of(spool: Path) -> list[int]:
    """Pids of exit helpers working on ``spool`` (their environment names it)."""
    wanted = f"LUXONIS_TELEMETRY_SPOOL_DIR={spool}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if b"luxonis_telemetry._exit" not in handle.read():
                    continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if wanted in handle.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_until(predicate: Callable[[], object], timeout: float) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
