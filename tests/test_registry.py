"""Finding backends by name: registered here (class or factory), built in, or published."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig
from luxonis_telemetry.backends import (
    BackendUnavailable,
    NoopBackend,
    PostHogBackend,
    StdoutBackend,
    TelemetryBackend,
    build_backend,
    register_backend,
)
from luxonis_telemetry.backends._registry import is_registered
from luxonis_telemetry.events import TelemetryEvent
from luxonis_telemetry.uploader import upload
from tests.conftest import spool_records


def test_builtin_backends() -> None:
    assert isinstance(build_backend("STDOUT", TelemetryConfig()), StdoutBackend)
    assert isinstance(build_backend("noop", TelemetryConfig()), NoopBackend)
    backend = build_backend("PostHog", TelemetryConfig(api_key="phc_x", endpoint="http://x"))
    assert isinstance(backend, PostHogBackend)
    backend.shutdown()


def test_names_ignore_case_and_a_later_registration_wins() -> None:
    class First:
        def __init__(self, config: TelemetryConfig) -> None:
            self.config = config

    class Second(First):
        pass

    register_backend("MyBackend", First)
    assert is_registered("mybackend") and is_registered(" MYBACKEND ")
    assert type(build_backend("MYBACKEND", TelemetryConfig())) is First
    register_backend("mybackend", Second)
    assert type(build_backend("MyBackend", TelemetryConfig())) is Second


def test_factories_receive_the_config() -> None:
    seen: list[TelemetryConfig] = []

    def factory(config: TelemetryConfig) -> object:
        seen.append(config)
        return object()

    register_backend("factory", factory)
    config = TelemetryConfig(api_key="phc_k")
    build_backend("factory", config)
    assert seen == [config]


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_a_name_is_a_non_empty_string(name: Any) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        register_backend(name, NoopBackend)


def test_a_factory_must_be_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        register_backend("x", "not callable")  # type: ignore[arg-type]


def test_unknown_names_say_how_to_provide_one() -> None:
    with pytest.raises(BackendUnavailable) as raised:
        build_backend("nowhere", TelemetryConfig())
    message = str(raised.value)
    assert "unknown backend 'nowhere'" in message
    assert "register_backend" in message and "luxonis_telemetry.backends" in message


def test_a_factory_that_fails_is_unavailable_not_an_exception() -> None:
    def broken(_config: TelemetryConfig) -> Any:
        raise RuntimeError("no database")

    register_backend("broken", broken)
    with pytest.raises(BackendUnavailable, match="failed to start: RuntimeError: no database"):
        build_backend("broken", TelemetryConfig())


# ---------------------------------------------------------------- 9.6: luxonis-ml backends


class LuxonisMlStyle(TelemetryBackend):
    """Written for luxonis_ml.telemetry: subclass, implement capture, registered by class."""

    received: ClassVar[list[TelemetryEvent]] = []
    flushes: ClassVar[int] = 0

    def capture(self, event: TelemetryEvent) -> None:
        LuxonisMlStyle.received.append(event)

    def flush(self) -> None:
        LuxonisMlStyle.flushes += 1


def test_a_luxonis_ml_subclass_registered_by_class_receives_events(spool_path: Path) -> None:
    LuxonisMlStyle.received = []
    Telemetry.register_backend("LuxML", LuxonisMlStyle)
    telemetry = Telemetry("lib", config=TelemetryConfig(backend="luxml"))
    telemetry.capture("train.start", {"epochs": 3})
    telemetry.capture("train.end", {"epochs": 3})
    stored = spool_records(spool_path)
    result = upload(budget=20)
    assert result.ok and result.sent == 2, result.summary()
    got = LuxonisMlStyle.received
    assert [e.uuid for e in got] == [r["uuid"] for r in stored]
    assert [e.timestamp for e in got] == [datetime.fromisoformat(r["timestamp"]) for r in stored]
    event = got[0]
    assert (event.name, event.properties, event.schema_version) == ("train.start", {"epochs": 3}, 1)
    assert event.distinct_id == stored[0]["distinct_id"]
    assert event.context["source_product"] == "lib"
    assert event.context["$process_person_profile"] is False
    payload = event.to_payload()
    assert payload["event"] == "train.start" and payload["uuid"] == stored[0]["uuid"]
    assert LuxonisMlStyle.flushes >= 1
    assert spool_records(spool_path) == []
    assert upload(budget=5).sent == 0
    assert len(LuxonisMlStyle.received) == 2


def test_a_seed_style_backend_registered_by_lambda_receives_events_and_identify(
    spool_path: Path,
) -> None:
    received: list[Any] = []

    class MyBackend:  # the seed README's shape, no base class
        def capture(self, event: Any) -> None:
            received.append(event.to_payload())

        def identify(self, user_id: str, traits: dict[str, Any]) -> None:
            received.append({"identify": user_id, **traits})

        def flush(self) -> None:
            pass

        def shutdown(self) -> None:
            pass

    Telemetry.register_backend("my_backend", lambda cfg: MyBackend())
    telemetry = Telemetry("luxonis_ml", config=TelemetryConfig(enabled=True, backend="my_backend"))
    telemetry.capture("custom.event", {"x": 1})
    telemetry.identify("u-1", {"plan": "pro"})
    [captured, identified] = spool_records(spool_path)
    assert upload(budget=20).ok
    assert received[0]["event"] == "custom.event"
    assert received[0]["properties"] == {"x": 1}
    assert received[0]["uuid"] == captured["uuid"]
    assert received[0]["timestamp"] == datetime.fromisoformat(captured["timestamp"]).isoformat()
    assert received[1] == {"identify": "u-1", "plan": "pro"}
    assert identified["type"] == "identify"


def test_a_backend_that_raises_keeps_events_pending_until_it_works(spool_path: Path) -> None:
    state = {"fail": True, "got": []}

    class Flaky(TelemetryBackend):
        def capture(self, event: TelemetryEvent) -> None:
            if state["fail"]:
                raise ConnectionError("down")
            state["got"].append(event.uuid)  # type: ignore[attr-defined]

    Telemetry.register_backend("flaky", Flaky)
    Telemetry("lib", config=TelemetryConfig(backend="flaky")).capture("e")
    [stored] = spool_records(spool_path)
    result = upload(budget=3)
    assert result.pending == 1 and not result.ok
    assert "ConnectionError: down" in result.summary()
    state["fail"] = False
    assert upload(budget=5).ok
    assert state["got"] == [stored["uuid"]]


def test_an_unknown_backend_keeps_events_pending_with_a_reason(spool_path: Path) -> None:
    Telemetry("lib", config=TelemetryConfig(backend="nowhere")).capture("e")
    result = upload(budget=5)
    assert result.pending == 1 and result.sent == 0 and not result.ok
    assert "unknown backend 'nowhere'" in result.reasons["lib"]
    assert len(spool_records(spool_path)) == 1


# ---------------------------------------------------------------- published backends


def _plugin(folder: Path, group: str, entries: dict[str, str], code: str) -> Path:
    """A real installed distribution: a module and its .dist-info with entry points."""
    (folder / "my_plugin").mkdir(parents=True)
    (folder / "my_plugin" / "__init__.py").write_text(code)
    dist = folder / "my_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (dist / "entry_points.txt").write_text(f"[{group}]\n{lines}")
    return folder


PLUGIN = """\
import json, os
class FileBackend:
    def __init__(self, config):
        self.path = os.environ["PLUGIN_OUT"]
    def send(self, records, *, historical=False, timeout=10.0):
        with open(self.path, "a") as out:
            for record in records:
                out.write(json.dumps(record) + "\\n")
    def shutdown(self):
        pass
"""


def test_a_published_backend_is_found_by_the_cli(tmp_path: Path, spool_path: Path) -> None:
    plugin = _plugin(
        tmp_path / "plugin",
        "luxonis_telemetry.backends",
        {"FileBackend": "my_plugin:FileBackend"},
        PLUGIN,
    )
    Telemetry("lib", config=TelemetryConfig(backend="filebackend")).capture("via.plugin")
    [stored] = spool_records(spool_path)
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, PYTHONPATH=str(plugin), PLUGIN_OUT=str(out))
    done = subprocess.run(
        [sys.executable, "-m", "luxonis_telemetry", "upload"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [delivered] = [json.loads(line) for line in out.read_text().splitlines()]
    assert delivered["uuid"] == stored["uuid"]
    assert spool_records(spool_path) == []


def test_a_broken_published_backend_is_unavailable(tmp_path: Path) -> None:
    plugin = _plugin(
        tmp_path / "plugin",
        "luxonis_telemetry.backends",
        {"broken": "my_plugin:missing_name"},
        "",
    )
    code = (
        "from luxonis_telemetry.backends import build_backend, BackendUnavailable\n"
        "from luxonis_telemetry import TelemetryConfig\n"
        "try:\n"
        "    build_backend('Broken', TelemetryConfig())\n"
        "except BackendUnavailable as exc:\n"
        "    print('unavailable:', exc)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(plugin))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "unavailable: backend 'broken' failed to load" in done.stdout


def test_luxonis_mls_registry_object_registers_and_finds_backends() -> None:
    """``TELEMETRY_BACKENDS`` (luxonis-ml's registry) and ``register_backend`` are one registry."""
    from luxonis_telemetry.backends import TELEMETRY_BACKENDS, TelemetryBackend

    @TELEMETRY_BACKENDS.register(name="Decorated")
    class Decorated(TelemetryBackend):
        def capture(self, event: object) -> None:
            return

    assert "decorated" in TELEMETRY_BACKENDS
    assert TELEMETRY_BACKENDS.get("DECORATED") is Decorated
    assert TELEMETRY_BACKENDS["decorated"] is Decorated
    assert is_registered("decorated")
    with pytest.raises(KeyError):
        TELEMETRY_BACKENDS.register(name="decorated", module=Decorated)
    TELEMETRY_BACKENDS.register(name="decorated", module=Decorated, force=True)
    assert "posthog" in TELEMETRY_BACKENDS
    with pytest.raises(KeyError):
        TELEMETRY_BACKENDS.get("missing")
