from __future__ import annotations

import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig, get_telemetry, initialize_telemetry
from luxonis_telemetry.backends import MemoryBackend
from luxonis_telemetry.spool import BadLine, Spool
from tests.conftest import REPO, run_python, spool_records


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_capture_writes_one_complete_record(spool_path: Path) -> None:
    telemetry = Telemetry("luxonis_ml", library_version="0.10.2")
    telemetry.capture("train.start", {"epochs": 20})
    [record] = spool_records(spool_path)
    assert record["event"] == "train.start"
    assert record["type"] == "capture"
    assert record["library"] == "luxonis_ml"
    assert record["properties"] == {"epochs": 20}
    context = record["context"]
    assert set(context) == {
        "os",
        "os_version",
        "python_version",
        "library_name",
        "library_version",
        "session_id",
        "install_id",
        "ci",
    }
    assert context["library_version"] == "0.10.2"
    assert context["ci"] is False
    assert record["distinct_id"] == context["install_id"] == telemetry.install_id
    assert uuid.UUID(context["session_id"])


def test_install_id_is_private_and_stable(home: Path) -> None:
    first = Telemetry("a").install_id
    path = home / ".config" / "luxonis-telemetry" / "install_id"
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    from luxonis_telemetry import _state

    _state.reset()
    assert Telemetry("b").install_id == first


def test_distinct_id_overrides(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_ID", "ci-runner-7")
    monkeypatch.setenv("LUXONIS_TELEMETRY_INSTALL_ID_PATH", str(tmp_path / "custom" / "id"))
    telemetry = Telemetry("a")
    telemetry.capture("one")
    telemetry.capture("two", distinct_id="someone")
    records = spool_records(spool_path)
    assert [r["distinct_id"] for r in records] == ["ci-runner-7", "someone"]
    assert (tmp_path / "custom" / "id").read_text().strip() == records[0]["context"]["install_id"]


def test_identify_record(spool_path: Path) -> None:
    Telemetry("a").identify("user-1", {"plan": "pro", "password": "x"})
    [record] = spool_records(spool_path)
    assert record["type"] == "identify"
    assert record["distinct_id"] == "user-1"
    assert record["properties"] == {"plan": "pro", "password": "[redacted]"}


def test_api_key_never_reaches_the_spool(spool_path: Path) -> None:
    config = TelemetryConfig(api_key="phc_top_secret_key")
    telemetry = Telemetry(
        "a", config=config, context_providers=[lambda _t: {"k": "phc_top_secret_key"}]
    )
    telemetry.capture(
        "e", {"note": "my key is phc_top_secret_key", "nested": [{"x": "phc_top_secret_key"}]}
    )
    lines = b"".join(p.read_bytes() for p in spool_path.glob("active.*"))
    assert b"phc_top_secret_key" not in lines
    destinations = json.loads((spool_path / "destinations.json").read_text())
    assert destinations["a"]["api_key"] == "phc_top_secret_key"


@pytest.mark.parametrize(
    ("env", "config"),
    [
        ({"LUXONIS_TELEMETRY_ENABLED": "0"}, TelemetryConfig(enabled=True)),
        ({"DO_NOT_TRACK": "1"}, TelemetryConfig(enabled=True)),
        ({"LUXONIS_TELEMETRY_ENABLED": "nonsense"}, None),
        ({}, TelemetryConfig(enabled=False)),
        ({"LUXONIS_TELEMETRY_BACKEND": "noop"}, None),
    ],
)
def test_opt_out_creates_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], config: TelemetryConfig | None
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    telemetry = Telemetry("a", config=config)
    telemetry.capture("e", {"x": 1})
    telemetry.identify("u")
    telemetry.flush()
    telemetry.shutdown()
    assert files_under(home) == []
    assert not telemetry.enabled


def test_persisted_disable_creates_nothing_more(home: Path) -> None:
    settings = home / ".config" / "luxonis-telemetry" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"enabled": false}')
    Telemetry("a", config=TelemetryConfig(enabled=True)).capture("e")
    assert files_under(home) == [settings]


def test_stdout_backend_prints_to_stderr_and_spools_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_DEBUG", "1")
    telemetry = Telemetry("a")
    telemetry.capture("debug.event", {"x": 1})
    out, err = capsys.readouterr()
    assert out == ""
    assert '"event": "debug.event"' in err
    assert not (home / ".local" / "state").exists()


def test_custom_backend_events_are_spooled_with_their_destination(spool_path: Path) -> None:
    Telemetry.register_backend("mine", lambda _cfg: MemoryBackend())
    Telemetry("a", config=TelemetryConfig(backend="mine")).capture("e")
    assert len(spool_records(spool_path)) == 1
    destinations = json.loads((spool_path / "destinations.json").read_text())
    assert destinations["a"]["backend"] == "mine"


def test_register_backend_validates() -> None:
    with pytest.raises(ValueError):
        Telemetry.register_backend("", lambda _c: None)
    with pytest.raises(TypeError):
        Telemetry.register_backend("x", "not callable")  # type: ignore[arg-type]


def test_context_providers_and_system_metadata(spool_path: Path) -> None:
    def team(_t: Telemetry) -> dict[str, Any]:
        return {"team": "vision", "session_id": "cannot override"}

    def broken(_t: Telemetry) -> dict[str, Any]:
        raise RuntimeError("provider bug")

    telemetry = Telemetry("a", context_providers=[team, broken])
    telemetry.add_context_provider(lambda _t: {"extra": 1})
    telemetry.capture("plain")
    telemetry.capture("rich", include_system_metadata=True)
    plain, rich = spool_records(spool_path)
    assert plain["context"]["team"] == "vision"
    assert plain["context"]["extra"] == 1
    assert plain["context"]["session_id"] != "cannot override"
    assert "architecture" not in plain["context"]
    for key in ("architecture", "cpu_count", "container", "python_implementation"):
        assert key in rich["context"]


def test_library_version_is_detected() -> None:
    import typer

    assert Telemetry("typer")._base_context()["library_version"] == typer.__version__
    from importlib.metadata import version

    assert Telemetry("platformdirs")._base_context()["library_version"] == version("platformdirs")
    assert Telemetry("not-installed-anywhere")._base_context()["library_version"] is None


def test_singletons_are_one_per_name_across_threads() -> None:
    seen: list[Telemetry] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        seen.append(initialize_telemetry(library_name="shared"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(t) for t in seen}) == 1
    assert get_telemetry("shared") is seen[0]
    assert get_telemetry("other") is None
    assert initialize_telemetry(library_name="other") is not seen[0]


def test_spool_path_is_a_file(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    monkeypatch.setenv("LUXONIS_TELEMETRY_SPOOL_DIR", str(blocker))
    telemetry = Telemetry("a")
    telemetry.capture("e")
    assert telemetry.dropped == 1
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_spool_folder(spool_path: Path) -> None:
    spool_path.mkdir(parents=True, mode=0o500)
    telemetry = Telemetry("a")
    telemetry.capture("e")
    assert telemetry.dropped == 1


def test_missing_home_drops_and_counts() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME")
    }
    code = (
        "import os, pwd\n"
        "pwd.getpwuid = lambda uid: (_ for _ in ()).throw(KeyError(uid))\n"
        "from luxonis_telemetry import Telemetry\n"
        "t = Telemetry('a'); t.capture('e'); print(t.dropped)\n"
    )
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("0", "1")
    assert result.stderr == ""


def test_file_size_limit_is_survived(spool_path: Path) -> None:
    code = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))\n"
        "from luxonis_telemetry import Telemetry\n"
        "t = Telemetry('a')\n"
        "for i in range(50): t.capture('e', {'i': i})\n"
        "print(t.dropped)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    dropped = int(result.stdout)
    assert dropped > 0
    records = spool_records(spool_path)
    assert len(records) + dropped == 50
    assert [r["properties"]["i"] for r in records] == list(range(len(records)))


def _capture_many(count: int) -> None:
    telemetry = Telemetry("load")
    for n in range(count):
        telemetry.capture("load.event", {"n": n, "pid": os.getpid()})


def test_eight_processes_append_at_once(spool_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_capture_many, args=(2000,)) for _ in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
        assert process.exitcode == 0
    records = spool_records(spool_path)
    assert len(records) == 16_000
    assert len({r["uuid"] for r in records}) == 16_000
    lines = b"".join(p.read_bytes() for p in spool_path.glob("*.jsonl"))
    assert lines.count(b"\n") == 16_000
    per_pid: dict[int, list[int]] = {}
    for record in records:
        per_pid.setdefault(record["properties"]["pid"], []).append(record["properties"]["n"])
    assert all(sorted(ns) == list(range(2000)) for ns in per_pid.values())


def test_threads_append_at_once(spool_path: Path) -> None:
    telemetry = Telemetry("threads")

    def worker(index: int) -> None:
        for n in range(500):
            telemetry.capture("t", {"thread": index, "n": n})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r["uuid"] for r in spool_records(spool_path)}) == 4000


def test_sigkill_in_a_capture_loop_loses_at_most_the_line_being_written(spool_path: Path) -> None:
    code = (
        "import sys\n"
        "from luxonis_telemetry import Telemetry\n"
        "t = Telemetry('killed')\n"
        "n = 0\n"
        "while True:\n"
        "    t.capture('loop', {'n': n, 'pad': 'x' * (n % 700)})\n"
        "    n += 1\n"
        "    if n == 200: print('ready', flush=True)\n"
    )
    for attempt in range(3):
        process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, env=dict(os.environ), cwd=REPO
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"ready"
        time.sleep(0.05 * (attempt + 1))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    records = []
    bad = 0
    for _end, item in Spool(str(spool_path)).iter_pending():
        if isinstance(item, BadLine):
            bad += 1
        else:
            records.append(item)
    assert bad <= 3
    numbers = [r["properties"]["n"] for r in records]
    runs = [i for i, n in enumerate(numbers) if n == 0]
    assert len(runs) == 3
    for start, stop in zip(runs, [*runs[1:], len(numbers)]):
        run = numbers[start:stop]
        assert run == list(range(len(run)))
    Telemetry("killed").capture("after.kill")
    last = [item for _end, item in Spool(str(spool_path)).iter_pending()][-1]
    assert last["event"] == "after.kill"


def test_install_id_race_on_a_fresh_machine(home: Path) -> None:
    code = (
        "import sys, time\n"
        "start = float(sys.argv[1])\n"
        "while time.time() < start: pass\n"
        "from luxonis_telemetry import Telemetry\n"
        "print(Telemetry('a').install_id)\n"
    )
    start = time.time() + 1.5
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(start)],
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for _ in range(6)
    ]
    ids = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert len(ids) == 1
    assert (home / ".config" / "luxonis-telemetry" / "install_id").read_text().strip() in ids


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_gets_its_own_session_and_writes_safely(spool_path: Path) -> None:
    telemetry = Telemetry("forky")
    telemetry.capture("parent.before")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            for _ in range(100):
                telemetry.capture("child")
        finally:
            os._exit(0)
    for _ in range(100):
        telemetry.capture("parent")
    os.waitpid(pid, 0)
    records = spool_records(spool_path)
    assert len(records) == 201
    sessions = {r["event"]: r["context"]["session_id"] for r in records}
    assert sessions["child"] != sessions["parent"]
    assert sessions["parent"] == sessions["parent.before"]


def test_no_exception_escapes_even_on_internal_bugs(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry = Telemetry("a")

    def explode(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr("luxonis_telemetry.client.new_record", explode)
    telemetry.capture("e")
    telemetry.identify("u")
    telemetry.flush()
    telemetry.shutdown()
    assert telemetry.dropped == 2


def test_shutdown_then_capture_again(spool_path: Path) -> None:
    telemetry = Telemetry("a")
    telemetry.capture("one")
    telemetry.shutdown()
    telemetry.capture("two")
    assert [r["event"] for r in spool_records(spool_path)] == ["one", "two"]


def test_import_is_light() -> None:
    result = run_python(
        "import sys, luxonis_telemetry\n"
        "heavy = [m for m in ('posthog', 'typer', 'rich', 'requests', 'asyncio', 'click', 'filelock') if m in sys.modules]\n"
        "t = luxonis_telemetry.Telemetry('x'); t.capture('e')\n"
        "heavy += [m for m in ('posthog', 'typer', 'rich', 'requests', 'asyncio', 'click') if m in sys.modules]\n"
        "print(heavy)"
    )
    assert result.stdout.strip() == "[]", result.stderr
