"""Every test gets its own HOME, XDG folders, spool and environment."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from luxonis_telemetry import Telemetry, _state
from luxonis_telemetry.cli import app
from luxonis_telemetry.config import CI_VARIABLES
from luxonis_telemetry.record import encode, new_record
from luxonis_telemetry.spool import Spool
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


def finishes(action: Callable[[], object], timeout: float = 20.0) -> object:
    """Run ``action`` in a thread; its result or exception. Fails instead of hanging the suite."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(action())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"blocked for more than {timeout} s"
    return box[0]


def race(folder: Path, call: str, processes: int = 6) -> list[str]:
    """What ``print(<call>)`` printed in each of ``processes`` interpreters let go at once.

    Each child signals it is ready, then spins until the go file appears, so
    all of them run ``call`` as close together as the machine allows.
    """
    go = folder / "go"
    code = (
        "import os, time\n"
        f"open(os.path.join({str(folder)!r}, 'ready.%d' % os.getpid()), 'w').close()\n"
        f"while not os.path.exists({str(go)!r}):\n"
        "    time.sleep(0.0005)\n"
        f"{call}\n"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(processes)
    ]
    try:
        assert wait_until(lambda: len(list(folder.glob("ready.*"))) == processes, 60)
        go.write_text("go")
        return [child.communicate(timeout=60)[0].strip() for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# Unsafe files planted where the library opens one (issues 8.3 and 8.12); ``victim``
# is what a link points at.
FOREIGN_RECORD = encode(
    new_record(
        "capture", event="planted", distinct_id="d", library="lib", properties={}, context={}
    )
)


def plant_fifo(path: Path, _victim: Path) -> None:
    os.mkfifo(path, 0o600)


def plant_symlink(path: Path, victim: Path) -> None:
    path.symlink_to(victim)


def plant_hard_link(path: Path, victim: Path) -> None:
    os.link(victim, path)


def plant_folder(path: Path, _victim: Path) -> None:
    path.mkdir()


def plant_foreign(path: Path, _victim: Path) -> None:
    """A readable, well-formed record owned by another user (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("planting another user's file needs root")
    path.write_bytes(FOREIGN_RECORD)
    path.chmod(0o666)
    os.chown(path, 12345, 12345)


PLANTS = [plant_fifo, plant_symlink, plant_hard_link, plant_folder, plant_foreign]


HOLD = (
    "import fcntl, sys\n"
    "handle = open(sys.argv[1], 'a')\n"
    "fcntl.flock(handle, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def hold_lock() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """``hold_lock(path)``: a real process holds the ``flock`` on ``path`` until released.

    Release one early with ``process.communicate()``; the rest go when the test ends.
    """
    started: list[subprocess.Popen[str]] = []

    def hold(path: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        if process.poll() is None:
            process.communicate(timeout=30)


# -- the command line, in-process, as a real process and on a terminal ----------------------

runner = CliRunner()
KEY = "phc_test_key_123"
ERROR = "luxonis-telemetry: error: "


def cli(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input)


def one_error_line(stderr: str, output: str = "") -> str:
    """The single error line a failing command printed (never a traceback)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr + output
    assert lines[0].startswith(ERROR), lines[0]
    return lines[0]


def default_spool() -> Path:
    return Path(os.environ["XDG_STATE_HOME"]) / "luxonis-telemetry" / "spool"


def capture_some() -> list[dict[str, Any]]:
    a = Telemetry("luxonis_ml")
    for n in range(3):
        a.capture("train.start", {"epochs": n})
    Telemetry("modelconverter").capture("convert", {"target": "rvc4"})
    return spool_records(default_spool())


def store(
    *,
    event: str = "stored",
    library: str = "lib",
    properties: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one record straight into the spool, as a capture would, but unsanitized.

    ``inspect`` must show whatever a spool holds (an older version, another
    library, a hand edit), not only what today's sanitizer lets through.
    """
    record = new_record(
        "capture",
        event=event,
        distinct_id="00000000-0000-4000-8000-000000000000",
        library=library,
        properties=properties or {},
        context=context if context is not None else {"os": "Linux", "python_version": "3.11.7"},
    )
    spool = Spool(str(default_spool()))
    try:
        spool.append(library, encode(record))
    finally:
        spool.close()
    return record


def console_script() -> str:
    script = Path(sys.executable).parent / "luxonis-telemetry"
    found = str(script) if script.exists() else shutil.which("luxonis-telemetry")
    assert found, "the console script is installed by `pip install -e .`"
    return found


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The console script as a real process."""
    return subprocess.run(
        [console_script(), *args],
        env=dict(os.environ) if env is None else env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


_CSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def on_terminal(
    args: list[str], *, columns: int = 100, rows: int = 40, env: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Run ``args`` with stdout and stderr on a pseudo-terminal of the given size.

    Returns the exit code and every byte the program wrote to the terminal.
    """
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    full = dict(os.environ if env is None else env, TERM="xterm-256color")
    full.pop("COLUMNS", None)
    full.pop("LINES", None)
    process = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=full)
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal closed, the program is done
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=60)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    return code, output


def visible_lines(output: bytes) -> list[str]:
    """What a person reads: styles removed, line endings normalised."""
    text = _CSI.sub(b"", output).decode("utf-8", "replace")
    return [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]


@dataclass
class Pki:
    """A test CA with a server certificate for 127.0.0.1 and a client certificate it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command line is not installed")
    folder = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=luxonis-telemetry test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for name, usage, alt in (
        ("server", "serverAuth", "IP:127.0.0.1,DNS:localhost"),
        ("client", "clientAuth", "DNS:client"),
    ):
        (folder / f"{name}.ext").write_text(
            f"subjectAltName={alt}\nbasicConstraints=critical,CA:FALSE\n"
            f"keyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"
            "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
        )
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        )  # fmt: skip
    return Pki(
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
    )
