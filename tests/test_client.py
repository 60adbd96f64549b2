"""``Telemetry``: luxonis-ml's client, recording into the spool, never breaking its host."""

from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import types
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from luxonis_telemetry import (
    RESERVED_METADATA_KEYS,
    Telemetry,
    TelemetryConfig,
    TelemetryDefaults,
    _state,
    suppress_telemetry,
    system_context_provider,
)
from luxonis_telemetry.backends import TelemetryBackend, build_backend
from luxonis_telemetry.context import BASE_CONTEXT_KEYS
from luxonis_telemetry.spool import Spool
from tests.conftest import REPO, run_python, spool_records


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if not p.is_dir())


def events(spool_path: Path) -> list[str]:
    return [record["event"] for record in spool_records(spool_path)]


def saved_drops(spool_path: Path) -> dict[str, int]:
    path = spool_path / "state.json"
    return json.loads(path.read_text())["dropped"] if path.exists() else {}


def the_spool(spool_path: Path) -> Spool:
    return _state.state.spools[str(spool_path)]


# -- the record --------------------------------------------------------------------


def test_capture_writes_one_complete_record(spool_path: Path) -> None:
    telemetry = Telemetry("luxonis_ml", library_version="0.10.2")
    telemetry.capture("train.start", {"epochs": 20})
    [record] = spool_records(spool_path)
    assert record["v"] == 1
    assert record["type"] == "capture"
    assert record["event"] == "train.start"
    assert record["library"] == "luxonis_ml"
    assert record["properties"] == {"epochs": 20}
    assert uuid.UUID(record["uuid"]).version == 4
    context = record["context"]
    assert set(context) == set(BASE_CONTEXT_KEYS)
    assert context["library_name"] == "luxonis_ml"
    assert context["library_version"] == "0.10.2"
    assert context["source_component"] == "luxonis_ml"
    assert context["ci"] is False
    assert record["distinct_id"] == context["install_id"] == telemetry.install_id
    assert uuid.UUID(context["session_id"])


def test_install_id_is_private_and_stable(home: Path) -> None:
    first = Telemetry("a").install_id
    path = home / ".config" / "luxonis-telemetry" / "install_id"
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
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


def test_blank_distinct_ids_are_replaced_by_the_default(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8.20: PostHog refuses a whole batch for one blank distinct_id."""
    monkeypatch.setenv("LUXONIS_TELEMETRY_ID", "   ")
    telemetry = Telemetry("a")
    telemetry.capture("blank", distinct_id=" \t\n")
    telemetry.capture("empty", distinct_id="")
    telemetry.identify("   ", {"plan": "pro"})
    records = spool_records(spool_path)
    assert [r["event"] for r in records] == ["blank", "empty"]
    assert {r["distinct_id"] for r in records} == {telemetry.install_id}
    assert telemetry.dropped == 1
    assert the_spool(spool_path).unsaved_drops.by_reason == {"invalid_distinct_id": 1}


@pytest.mark.parametrize("off", [{"LUXONIS_TELEMETRY_ENABLED": "0"}, {"DO_NOT_TRACK": "1"}])
def test_asking_for_the_install_id_while_off_creates_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch, off: dict[str, str]
) -> None:
    """Review: reading ``.install_id`` after an opt-out must not write a file (privacy)."""
    for name, value in off.items():
        monkeypatch.setenv(name, value)
    assert Telemetry("a").install_id is None
    assert [p for p in home.rglob("*") if not p.is_dir()] == []
    monkeypatch.delenv(next(iter(off)))
    kept = Telemetry("b").install_id  # on again: created
    for name, value in off.items():
        monkeypatch.setenv(name, value)
    assert Telemetry("c").install_id == kept  # off: an existing one is only read


def test_identify_links_the_anonymous_install_id(spool_path: Path) -> None:
    """Issue 8.22: PostHog merges the install's earlier events through $anon_distinct_id."""
    telemetry = Telemetry("a")
    telemetry.capture("before")
    telemetry.identify("user-1", {"plan": "pro", "password": "hunter2"})
    before, record = spool_records(spool_path)
    assert record["type"] == "identify"
    assert record["event"] == "$identify"
    assert record["distinct_id"] == "user-1"
    assert record["properties"]["plan"] == "pro"
    assert record["properties"]["password"] != "hunter2"  # noqa: S105
    assert record["context"]["anon_distinct_id"] == before["distinct_id"] == telemetry.install_id


def test_the_api_key_never_reaches_the_spool(spool_path: Path) -> None:
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
    assert destinations["libraries"]["a"]["api_key"] == "phc_top_secret_key"
    assert stat.S_IMODE((spool_path / "destinations.json").stat().st_mode) == 0o600


def test_properties_can_never_set_posthogs_dollar_keys(spool_path: Path) -> None:
    """Issue 8.16: ``$set``, ``$geoip_disable``, ``$ip``... are instructions to PostHog."""
    Telemetry("a").capture(
        "e",
        {
            "$set": {"email": "x@example.com"},
            "$geoip_disable": False,
            "$ip": "203.0.113.9",
            "$process_person_profile": True,
            "$session_id": "forged",
            "ok": 1,
        },
    )
    [record] = spool_records(spool_path)
    assert record["properties"] == {"ok": 1}


# -- who records and who does not -------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "config"),
    [
        ({"LUXONIS_TELEMETRY_ENABLED": "0"}, TelemetryConfig(enabled=True)),
        ({"DO_NOT_TRACK": "1"}, TelemetryConfig(enabled=True)),
        ({"LUXONIS_TELEMETRY_ENABLED": "nonsense"}, None),
        ({}, TelemetryConfig(enabled=False)),
        ({"LUXONIS_TELEMETRY_BACKEND": "noop"}, None),
        ({}, TelemetryConfig(backend="NOOP")),
    ],
)
def test_opt_out_and_noop_create_nothing(
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
    assert telemetry.dropped == 0


def test_is_enabled_follows_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Telemetry("a").is_enabled
    assert not Telemetry("a", config=TelemetryConfig(enabled=False)).is_enabled
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    assert not Telemetry("a").is_enabled


@pytest.mark.parametrize("content", ['{"enabled": false}', '{"v": 1, "mode": "off"}'])
def test_persisted_disable_creates_nothing_more(home: Path, content: str) -> None:
    settings = home / ".config" / "luxonis-telemetry" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(content)
    settings.chmod(0o600)
    telemetry = Telemetry("a", config=TelemetryConfig(enabled=True))
    telemetry.capture("e")
    assert not telemetry.is_enabled
    assert files_under(home) == [settings]


def test_local_mode_records(spool_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENABLED", "local")
    telemetry = Telemetry("a")
    telemetry.capture("kept.here")
    assert telemetry.is_enabled
    assert telemetry.config.mode == "local"
    assert events(spool_path) == ["kept.here"]


def test_suppressed_blocks_record_nothing(spool_path: Path) -> None:
    telemetry = Telemetry("a")
    with suppress_telemetry():
        telemetry.capture("hidden")
        telemetry.identify("u")
    telemetry.capture("shown")
    assert events(spool_path) == ["shown"]


def test_debug_prints_each_event_at_capture_and_spools_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_DEBUG", "1")
    telemetry = Telemetry("a")
    assert telemetry.backend_name == "stdout"
    telemetry.capture("debug.event", {"x": 1})
    telemetry.flush()
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    payload = json.loads(line.removeprefix("[luxonis-telemetry] "))
    assert payload["event"] == "debug.event"
    assert payload["properties"] == {"x": 1}
    assert payload["context"]["library_name"] == "a"
    assert not (home / ".local" / "state").exists()


def test_stdout_backend_by_config_prints_too(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Telemetry("a", config=TelemetryConfig(backend="Stdout")).capture("printed")
    assert '"event": "printed"' in capsys.readouterr().err
    assert not (home / ".local" / "state").exists()


# -- luxonis-ml's API (issue 9) ------------------------------------------------------------


def parameters(function: Callable[..., Any]) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


def test_signatures_match_luxonis_ml() -> None:
    assert parameters(Telemetry.__init__) == [
        "library_name",
        "source_component",
        "library_version",
        "config",
        "context_providers",
        "system_context_providers",
    ]
    assert parameters(Telemetry.capture) == [
        "event",
        "properties",
        "allowlist",
        "include_system_metadata",
        "distinct_id",
    ]
    capture = inspect.signature(Telemetry.capture).parameters
    assert capture["include_system_metadata"].default is None
    assert all(
        capture[name].kind is inspect.Parameter.KEYWORD_ONLY
        for name in ("allowlist", "include_system_metadata", "distinct_id")
    )
    for name in ("flush", "shutdown"):
        assert parameters(getattr(Telemetry, name)) == []
    for name in (
        "add_context_provider",
        "add_system_context_provider",
        "extend_context_providers",
        "extend_system_context_providers",
    ):
        assert callable(getattr(Telemetry, name))


def test_read_only_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry = Telemetry("hubai_sdk", source_component="hubai-cli", library_version="1.2.3")
    assert telemetry.library_name == "hubai_sdk"
    assert telemetry.source_component == "hubai-cli"
    assert telemetry.library_version == "1.2.3"
    assert isinstance(telemetry.config, TelemetryConfig)
    assert Telemetry("hubai_sdk").source_component == "hubai_sdk"
    monkeypatch.setenv("LUXONIS_TELEMETRY_API_KEY", "phc_from_env")
    given = TelemetryConfig(api_key="phc_from_library")
    assert Telemetry("a", config=given).config.api_key == "phc_from_env"  # the user wins


def test_library_version_is_looked_up_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry = Telemetry("late_module_for_test")
    module = types.ModuleType("late_module_for_test")
    module.__version__ = "9.9.9"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "late_module_for_test", module)  # imported after Telemetry()
    assert telemetry.library_version == "9.9.9"


def test_library_version_is_detected_from_installed_distributions() -> None:
    import typer

    assert Telemetry("typer").library_version == typer.__version__
    from importlib.metadata import version

    assert Telemetry("platformdirs").library_version == version("platformdirs")
    assert Telemetry("not-installed-anywhere").library_version is None


def test_providers_are_added_once_and_called_in_order(spool_path: Path) -> None:
    calls: list[str] = []

    def first(_t: Telemetry) -> dict[str, Any]:
        calls.append("first")
        return {"team": "vision", "shared": "first"}

    def second(_t: Telemetry) -> dict[str, Any]:
        calls.append("second")
        return {"shared": "second"}

    telemetry = Telemetry("a", context_providers=[first, first])
    telemetry.add_context_provider(first)
    telemetry.extend_context_providers([second, first])
    telemetry.extend_context_providers(None)
    telemetry.capture("e")
    assert calls == ["first", "second"]
    [record] = spool_records(spool_path)
    assert record["context"]["team"] == "vision"
    assert record["context"]["shared"] == "second"  # later providers win, as in luxonis-ml


def test_system_providers_are_used_only_with_system_metadata(spool_path: Path) -> None:
    calls: list[str] = []

    def gpu(_t: Telemetry) -> dict[str, Any]:
        calls.append("gpu")
        return {"gpu": "RTX"}

    telemetry = Telemetry("a", system_context_providers=[system_context_provider])
    telemetry.add_system_context_provider(gpu)
    telemetry.extend_system_context_providers([gpu])
    telemetry.capture("plain")
    telemetry.capture("rich", include_system_metadata=True)
    plain, rich = spool_records(spool_path)
    assert calls == ["gpu"]
    assert "gpu" not in plain["context"]
    assert "cpu_count" not in plain["context"]
    assert rich["context"]["gpu"] == "RTX"
    for key in (
        "arch",
        "cpu_count",
        "processor",
        "is_docker",
        "container",
        "python_implementation",
    ):
        assert key in rich["context"], key


def test_include_system_metadata_none_follows_the_config(spool_path: Path) -> None:
    telemetry = Telemetry("a", config=TelemetryConfig(include_system_metadata=True))
    telemetry.capture("default")
    telemetry.capture("explicit.off", include_system_metadata=False)
    default, off = spool_records(spool_path)
    assert "cpu_count" in default["context"]
    assert "cpu_count" not in off["context"]


def test_allowlists_from_the_call_and_from_the_config(spool_path: Path) -> None:
    configured = Telemetry(
        "a", config=TelemetryConfig.from_environ(TelemetryDefaults(allowlist={"keep"}))
    )
    configured.capture("config", {"keep": 1, "drop": 2})
    configured.capture("call", {"keep": 1, "other": 3}, allowlist={"other"})
    Telemetry("b").capture("none", {"keep": 1, "drop": 2})
    assert [r["properties"] for r in spool_records(spool_path)] == [
        {"keep": 1},
        {"other": 3},
        {"keep": 1, "drop": 2},
    ]


def test_without_base_context_only_providers_fill_the_context(spool_path: Path) -> None:
    telemetry = Telemetry(
        "a",
        config=TelemetryConfig(include_base_context=False),
        context_providers=[lambda _t: {"team": "vision", "session_id": "theirs"}],
    )
    telemetry.capture("e")
    [record] = spool_records(spool_path)
    assert record["context"] == {"team": "vision", "session_id": "theirs"}
    assert record["distinct_id"] == telemetry.install_id


def test_providers_cannot_override_reserved_or_base_keys(spool_path: Path) -> None:
    forged = dict.fromkeys((*RESERVED_METADATA_KEYS, *BASE_CONTEXT_KEYS), "forged")
    forged["team"] = "vision"
    Telemetry("a", context_providers=[lambda _t: forged]).capture("guarded")
    Telemetry(
        "b",
        config=TelemetryConfig(allow_reserved_overrides=True),
        context_providers=[lambda _t: forged],
    ).capture("overridden")
    guarded, overridden = spool_records(spool_path)
    assert guarded["context"]["team"] == "vision"
    assert not any(guarded["context"].get(key) == "forged" for key in forged if key != "team")
    assert all(overridden["context"][key] == "forged" for key in forged if key != "team")


class RecordingBackend(TelemetryBackend):
    """A luxonis-ml style backend."""

    def capture(self, event: Any) -> None:
        return None


def test_register_backend_ignores_case_and_takes_a_class_or_a_factory(spool_path: Path) -> None:
    Telemetry.register_backend("MyBackend", RecordingBackend)
    made: list[TelemetryConfig] = []

    def factory(config: TelemetryConfig) -> RecordingBackend:
        made.append(config)
        return RecordingBackend(config)

    Telemetry.register_backend("Factory", factory)
    config = TelemetryConfig(backend="MYBACKEND")
    assert isinstance(build_backend("mybackend", config), RecordingBackend)
    assert isinstance(build_backend("FACTORY", config), RecordingBackend)
    assert made == [config]
    Telemetry("a", config=config).capture("custom")
    assert events(spool_path) == ["custom"]
    destinations = json.loads((spool_path / "destinations.json").read_text())
    assert destinations["libraries"]["a"]["backend"] == "mybackend"


def test_register_backend_validates() -> None:
    with pytest.raises(ValueError):
        Telemetry.register_backend("", RecordingBackend)
    with pytest.raises(TypeError):
        Telemetry.register_backend("x", "not callable")  # type: ignore[arg-type]


def test_an_in_process_backend_gets_its_exit_worker_at_the_first_event(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No thread can start at interpreter shutdown (3.12+): it must exist before exit."""
    monkeypatch.setenv("LUXONIS_TELEMETRY_UPLOAD_ON_EXIT", "1")
    Telemetry.register_backend("inproc", RecordingBackend)
    telemetry = Telemetry("a", config=TelemetryConfig(backend="inproc"))
    assert _state.state.exit_worker is None
    telemetry.capture("e")
    assert _state.state.exit_worker is not None
    assert _state.state.exit_worker.usable()


# -- nothing escapes (issue 8.2) --------------------------------------------------------------


@pytest.mark.allow_internal_errors
def test_no_exception_escapes_on_internal_bugs(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry = Telemetry("a")

    def explode(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr("luxonis_telemetry.client.encode_line", explode)
    telemetry.capture("e")
    telemetry.identify("u")
    telemetry.flush()
    telemetry.shutdown()
    assert telemetry.dropped == 2


class Hostile:
    """Every hook a sanitizer might touch raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("iter")

    def __bool__(self) -> bool:
        raise RuntimeError("bool")

    def __len__(self) -> int:
        raise RuntimeError("len")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def keys(self) -> Any:
        raise RuntimeError("keys")


def test_hostile_properties_and_providers_never_escape(spool_path: Path) -> None:
    def raising(_t: Telemetry) -> dict[str, Any]:
        raise RuntimeError("provider bug")

    def not_a_mapping(_t: Telemetry) -> Any:
        return Hostile()

    def hostile_values(_t: Telemetry) -> dict[str, Any]:
        return {"value": Hostile(), Hostile(): 1}

    telemetry = Telemetry("a", context_providers=[raising, not_a_mapping, hostile_values])
    telemetry.capture("props", {"bad": Hostile(), "good": 1})
    telemetry.capture("whole", Hostile())  # type: ignore[arg-type]
    telemetry.capture(Hostile(), {"x": 1})  # type: ignore[arg-type]
    telemetry.capture("dist", distinct_id=Hostile())  # type: ignore[arg-type]
    telemetry.capture("allow", {"x": 1}, allowlist=Hostile())  # type: ignore[arg-type]
    telemetry.identify("u", Hostile())  # type: ignore[arg-type]
    records = spool_records(spool_path)
    assert records[0]["properties"]["good"] == 1
    assert len(records) + telemetry.dropped == 6


@pytest.mark.allow_internal_errors
def test_include_system_metadata_that_cannot_be_judged_drops_the_event(spool_path: Path) -> None:
    telemetry = Telemetry("a")
    telemetry.capture("e", include_system_metadata=Hostile())  # type: ignore[arg-type]
    assert telemetry.dropped == 1
    telemetry.capture("fine")
    assert events(spool_path) == ["fine"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_a_providers_keyboard_interrupt_or_exit_belongs_to_the_host(
    spool_path: Path, error: type[BaseException]
) -> None:
    """Decision: ``capture`` swallows ``Exception`` only; Ctrl-C inside a provider still stops the host."""

    def interrupted(_t: Telemetry) -> dict[str, Any]:
        raise error()

    telemetry = Telemetry("a", context_providers=[interrupted])
    with pytest.raises(error):
        telemetry.capture("e")
    telemetry.add_context_provider(lambda _t: {})
    assert not spool_path.exists() or events(spool_path) == []


@pytest.mark.allow_internal_errors
def test_hostile_constructor_arguments_leave_a_disabled_instance(home: Path) -> None:
    for kwargs in (
        {"library_name": Hostile()},
        {"library_name": "a", "config": {"enabled": True}},
        {"library_name": "a", "context_providers": Hostile()},
        {
            "library_name": "a",
            "config": TelemetryConfig.from_environ(TelemetryDefaults(api_key=12345)),
        },  # type: ignore[arg-type]
    ):
        telemetry = Telemetry(**kwargs)  # type: ignore[arg-type]
        telemetry.capture("e")
        telemetry.flush()
        telemetry.shutdown()
        repr(telemetry)


@pytest.mark.allow_internal_errors
def test_a_failing_direct_backend_never_escapes_flush_or_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_DEBUG", "1")
    telemetry = Telemetry("a")

    def broken() -> None:
        raise OSError("stderr closed")

    telemetry._direct.flush = broken
    telemetry._direct.capture = lambda _record: broken()
    telemetry.capture("e")
    telemetry.flush()
    telemetry.shutdown()
    assert telemetry.dropped == 1


def test_garbage_settings_in_the_environment_never_break_construction(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "LUXONIS_TELEMETRY_MAX_SPOOL_MB": "1e400",
        "LUXONIS_TELEMETRY_MAX_AGE_DAYS": "nan",
        "LUXONIS_TELEMETRY_EXIT_TIMEOUT": "-1",
        "LUXONIS_TELEMETRY_SPOOL_DIR": "relative/path",
        "LUXONIS_TELEMETRY_INSTALL_ID_PATH": "relative/id",
    }.items():
        monkeypatch.setenv(name, value)
    telemetry = Telemetry("a")
    telemetry.capture("e")
    assert events(spool_path) == ["e"]


# -- re-entrant captures (issue 8.1) ---------------------------------------------------------

REENTRY_PRELUDE = r"""
import gc, json, os, signal, sys, weakref
from luxonis_telemetry import Telemetry, _state
telemetry = Telemetry("reentry")
telemetry.capture("warmup")
[spool] = _state.state.spools.values()
original = spool._append_locked

def hook(action):
    def hooked(key, line):
        if b'"event":"outer"' in line:
            action()  # runs inside the spool lock, on the capturing thread
        original(key, line)
    spool._append_locked = hooked

def report():
    telemetry.capture("after")  # persists the counted drops
    print(json.dumps({"dropped": telemetry.dropped, "unsaved": spool.unsaved_drops.by_reason}))
"""


def run_reentry(code: str) -> dict[str, Any]:
    try:
        result = run_python(REENTRY_PRELUDE + code, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("a re-entrant capture hung the host")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def test_capture_from_a_signal_handler_inside_capture_never_hangs(spool_path: Path) -> None:
    outcome = run_reentry(
        r"""
signal.signal(signal.SIGUSR1, lambda *_: telemetry.capture("inner.signal"))
hook(lambda: os.kill(os.getpid(), signal.SIGUSR1))
telemetry.capture("outer")
report()
"""
    )
    assert outcome == {"dropped": 1, "unsaved": {}}
    assert events(spool_path) == ["warmup", "outer", "after"]
    assert saved_drops(spool_path) == {"reentrant": 1}


def test_capture_from_a_finalizer_run_inside_capture_never_hangs(spool_path: Path) -> None:
    outcome = run_reentry(
        r"""
class Cyclic:
    def __init__(self):
        self.me = self
    def __del__(self):
        telemetry.capture("inner.del")

class Plain:
    pass

def collect():
    Cyclic()
    gc.collect()  # runs __del__ here
    victim = Plain()
    weakref.finalize(victim, telemetry.capture, "inner.finalize")
    del victim

hook(collect)
telemetry.capture("outer")
report()
"""
    )
    assert outcome == {"dropped": 2, "unsaved": {}}
    assert events(spool_path) == ["warmup", "outer", "after"]
    assert saved_drops(spool_path) == {"reentrant": 2}


def test_a_storm_of_signals_and_finalizers_loses_no_outer_event(spool_path: Path) -> None:
    """Interrupted at random instants, captures still never wait for themselves."""
    outcome = run_reentry(
        r"""
fired = [0]

def handler(*_):
    fired[0] += 1
    telemetry.capture("inner.signal")

class Cyclic:
    def __init__(self):
        self.me = self
    def __del__(self):
        fired[0] += 1
        telemetry.capture("inner.gc")

signal.signal(signal.SIGALRM, handler)
gc.set_threshold(50)
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
for n in range(3000):
    Cyclic()
    telemetry.capture("outer", {"n": n})
signal.setitimer(signal.ITIMER_REAL, 0)
signal.signal(signal.SIGALRM, signal.SIG_IGN)
gc.collect()
gc.disable()
telemetry.capture("after")
print(json.dumps({"fired": fired[0], "dropped": telemetry.dropped,
                  "unsaved": spool.unsaved_drops.by_reason}))
sys.exit(0)
"""
    )
    records = spool_records(spool_path)
    outer = [r["properties"]["n"] for r in records if r["event"] == "outer"]
    inner = [r for r in records if r["event"].startswith("inner.")]
    assert outer == list(range(3000))
    assert outcome["fired"] > 0
    assert len(inner) + outcome["dropped"] == outcome["fired"]
    reasons = dict(saved_drops(spool_path))
    for reason, count in outcome["unsaved"].items():
        reasons[reason] = reasons.get(reason, 0) + count
    assert set(reasons) <= {"reentrant"}
    assert sum(reasons.values()) == outcome["dropped"]


# -- the spool under stress ---------------------------------------------------------------------


def test_a_stuck_lock_holder_costs_a_process_one_bounded_wait(
    spool_path: Path, hold_lock: Callable[[Path], subprocess.Popen[str]]
) -> None:
    """Issue 8.4: 10 captures used to take 20 s behind a stuck holder."""
    telemetry = Telemetry("a")
    telemetry.capture("first")
    holder = hold_lock(spool_path / "lock")
    started = time.monotonic()
    for n in range(11):
        telemetry.capture("blocked", {"n": n})
    assert time.monotonic() - started < 8  # one wait of ~2 s, then no waiting at all
    assert telemetry.dropped == 11
    assert the_spool(spool_path).unsaved_drops.by_reason == {"lock_timeout": 11}
    holder.communicate(timeout=30)  # the holder lets go
    telemetry.capture("after")
    telemetry.capture("again")
    assert events(spool_path) == ["first", "after", "again"]
    assert saved_drops(spool_path) == {"lock_timeout": 11}


def test_ordinary_contention_loses_nothing(spool_path: Path) -> None:
    telemetry = Telemetry("a")
    telemetry.capture("first")
    code = (
        "import fcntl, sys, time\n"
        "handle = open(sys.argv[1], 'a')\n"
        "for _ in range(4):\n"
        "    fcntl.flock(handle, fcntl.LOCK_EX)\n"
        "    print('held', flush=True)\n"
        "    time.sleep(0.5)\n"  # a slow holder that does finish
        "    fcntl.flock(handle, fcntl.LOCK_UN)\n"
        "    time.sleep(0.2)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(spool_path / "lock")], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    count = 0
    while holder.poll() is None:
        telemetry.capture("contended", {"n": count})
        count += 1
    holder.communicate(timeout=30)
    assert telemetry.dropped == 0
    assert Counter(events(spool_path)) == {"first": 1, "contended": count}


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
    assert len(per_pid) == 8
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
    assert telemetry.dropped == 0


def test_sigkill_in_a_capture_loop_loses_at_most_the_line_being_written(spool_path: Path) -> None:
    code = (
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
        time.sleep(0.05 * (attempt + 1))  # let it run a while: the kill lands anywhere
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
    records = []
    bad = 0
    for item in Spool(str(spool_path)).iter_pending():
        if isinstance(item, dict):
            records.append(item)
        else:
            bad += 1
    assert bad <= 3
    numbers = [r["properties"]["n"] for r in records]
    runs = [i for i, n in enumerate(numbers) if n == 0]
    assert len(runs) == 3
    for start, stop in zip(runs, [*runs[1:], len(numbers)], strict=True):
        run = numbers[start:stop]
        assert run == list(range(len(run)))
    Telemetry("killed").capture("after.kill")
    last = list(Spool(str(spool_path)).iter_pending())[-1]
    assert isinstance(last, dict)
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
def test_a_forked_child_gets_its_own_session_and_writes_safely(spool_path: Path) -> None:
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


def test_shutdown_then_capture_again(spool_path: Path) -> None:
    telemetry = Telemetry("a")
    telemetry.capture("one")
    telemetry.shutdown()
    telemetry.capture("two")
    assert events(spool_path) == ["one", "two"]


def test_shutdown_saves_the_drops_counted_in_memory(spool_path: Path) -> None:
    telemetry = Telemetry("a")
    telemetry.capture("one")
    the_spool(spool_path).unsaved_drops.add("lock_timeout", 2)
    telemetry.shutdown()
    assert saved_drops(spool_path) == {"lock_timeout": 2}


# -- the spool folder and its files ------------------------------------------------------------


def test_spool_path_is_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
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


@pytest.mark.parametrize("name", ["active.a.jsonl", "lock"])
@pytest.mark.parametrize("kind", ["fifo", "hard link", "another user"])
def test_an_unsafe_file_in_the_spool_drops_the_event_and_counts_it(
    spool_path: Path, tmp_path: Path, name: str, kind: str
) -> None:
    """Issues 8.3 and 8.12, as a capture sees them: at once, counted, nothing written."""
    spool_path.mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = spool_path / name
    if kind == "fifo":
        os.mkfifo(target, 0o600)
    elif kind == "hard link":
        os.link(victim, target)
    else:
        if os.geteuid() != 0:
            pytest.skip("planting another user's file needs root")
        target.write_text("planted\n")
        os.chown(target, 12345, 12345)
    telemetry = Telemetry("a")
    box: list[None] = []
    thread = threading.Thread(target=lambda: box.append(telemetry.capture("e")), daemon=True)
    thread.start()
    thread.join(20)
    assert box == [None], "capture hung"
    assert telemetry.dropped == 1
    assert the_spool(spool_path).unsaved_drops.by_reason == {"unsafe_file": 1}
    assert str(target) in _state.state.unsafe_files
    assert victim.read_text() == "precious\n"
    if kind == "another user":
        assert target.read_text() == "planted\n"


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


def test_disable_in_another_process_stops_this_one_for_good(spool_path: Path) -> None:
    """``disable`` removes the spool while a tool runs: it stops recording, never recreates it."""
    code = (
        "import sys\n"
        "from luxonis_telemetry import Telemetry, _state\n"
        "t = Telemetry('a')\n"
        "t.capture('before')\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "for n in range(5):\n"
        "    t.capture('after', {'n': n})\n"
        "print(t.is_enabled, _state.state.disabled_here, t.dropped, flush=True)\n"
    )
    running = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert running.stdout is not None
    assert running.stdout.readline().strip() == "ready"
    assert events(spool_path) == ["before"]
    disabling = run_python(
        "from luxonis_telemetry._controls import disable\n"
        "from luxonis_telemetry.config import spool_dir\n"
        "from luxonis_telemetry.spool import Spool\n"
        "disable(Spool(spool_dir()))\n"
    )
    assert disabling.returncode == 0, disabling.stderr
    assert not spool_path.exists()
    out, err = running.communicate("go\n", timeout=60)
    assert running.returncode == 0, err
    assert err == ""
    assert out.split() == ["False", "True", "0"]
    assert not spool_path.exists()


def test_import_is_light() -> None:
    result = run_python(
        "import sys, luxonis_telemetry\n"
        "heavy = ('posthog', 'typer', 'rich', 'requests', 'asyncio', 'click', 'logging', 'uuid')\n"
        "found = [m for m in heavy if m in sys.modules]\n"
        "t = luxonis_telemetry.Telemetry('x'); t.capture('e')\n"
        "found += [m for m in heavy if m in sys.modules]\n"
        "print(found)"
    )
    assert result.stdout.strip() == "[]", result.stderr
