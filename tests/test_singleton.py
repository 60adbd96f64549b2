"""One ``Telemetry`` per (library, source component), as luxonis-ml's ``get_or_init`` gives."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from luxonis_telemetry import (
    Telemetry,
    TelemetryConfig,
    _state,
    get_or_init,
    get_telemetry,
    initialize_telemetry,
    shutdown_on_exit,
)
from tests.conftest import run_python, spool_records


def test_instances_are_keyed_by_library_and_source_component() -> None:
    library = get_or_init("hubai_sdk")
    cli = get_or_init("hubai_sdk", source_component="hubai-cli")
    assert library is not cli
    assert library.source_component == "hubai_sdk"
    assert cli.source_component == "hubai-cli"
    assert get_or_init("hubai_sdk", source_component="hubai-cli") is cli
    assert get_or_init("hubai_sdk", source_component="hubai_sdk") is library
    # two instances for the library: the plain name means its own component
    assert get_or_init("hubai_sdk") is library
    assert initialize_telemetry(library_name="hubai_sdk", source_component="hubai-cli") is cli
    assert get_or_init("modelconverter") is not library


def test_get_or_init_reuses_the_only_instance_of_a_library() -> None:
    cli = initialize_telemetry("tools", source_component="tools-cli")
    assert get_or_init("tools") is cli  # any component will do when there is one


def test_get_telemetry_finds_one_or_none() -> None:
    assert get_telemetry() is None
    assert get_telemetry("a") is None
    a = initialize_telemetry("a")
    assert get_telemetry() is a
    assert get_telemetry("a") is a
    assert get_telemetry(source_component="a") is a
    assert get_telemetry("a", source_component="a") is a
    assert get_telemetry("a", source_component="other") is None
    a_cli = initialize_telemetry("a", source_component="cli")
    assert get_telemetry("a") is None  # ambiguous
    assert get_telemetry() is None  # ambiguous
    assert get_telemetry(source_component="cli") is a_cli
    assert get_telemetry("a", source_component="cli") is a_cli


def test_racing_threads_get_one_instance() -> None:
    seen: list[Telemetry] = []
    barrier = threading.Barrier(16)

    def worker(index: int) -> None:
        barrier.wait()
        if index % 2:
            seen.append(get_or_init("shared", source_component="cli"))
        else:
            seen.append(initialize_telemetry("shared", source_component="cli"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 16
    assert len({id(t) for t in seen}) == 1
    assert get_telemetry("shared") is seen[0]


def test_providers_are_merged_into_a_reused_instance(spool_path: Path) -> None:
    def team(_t: Telemetry) -> dict[str, Any]:
        return {"team": "vision"}

    def gpu(_t: Telemetry) -> dict[str, Any]:
        return {"gpu": "RTX"}

    first = get_or_init("lib", context_providers=[team])
    again = get_or_init("lib", context_providers=[team], system_context_providers=[gpu])
    assert again is first
    again.capture("plain")
    again.capture("rich", include_system_metadata=True)
    plain, rich = spool_records(spool_path)
    assert plain["context"]["team"] == "vision"
    assert "gpu" not in plain["context"]
    assert rich["context"]["gpu"] == "RTX"


def test_a_new_config_or_version_for_an_existing_instance_is_ignored_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="luxonis_telemetry")
    first = get_or_init("lib", library_version="1.0")
    again = get_or_init("lib", library_version="2.0", config=TelemetryConfig(enabled=False))
    assert again is first
    assert first.library_version == "1.0"
    assert first.is_enabled
    assert "the new config was ignored" in caplog.text
    assert "the new library version was ignored" in caplog.text
    caplog.clear()
    get_or_init("lib", library_version="1.0", config=TelemetryConfig())
    assert "ignored" not in caplog.text  # the same values are no change


def test_reuse_resolves_no_config_unless_debug_logging_would_show_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: a tool calling get_or_init on every command must not re-read settings each time."""
    caplog.set_level(logging.INFO, logger="luxonis_telemetry")
    first = get_or_init("lib")
    resolved: list[object] = []
    original = TelemetryConfig.from_environ.__func__  # type: ignore[attr-defined]

    def counting(cls: type[TelemetryConfig], *args: Any, **kwargs: Any) -> TelemetryConfig:
        resolved.append(args)
        return original(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(TelemetryConfig, "from_environ", classmethod(counting))
    assert get_or_init("lib", config=TelemetryConfig(enabled=False)) is first
    assert resolved == []
    caplog.set_level(logging.DEBUG, logger="luxonis_telemetry")
    assert get_or_init("lib", config=TelemetryConfig(enabled=False)) is first
    assert len(resolved) == 1
    assert "the new config was ignored" in caplog.text


@pytest.mark.allow_internal_errors
def test_odd_arguments_on_reuse_never_raise() -> None:
    first = get_or_init("lib")
    again = get_or_init(
        "lib",
        config=object(),  # type: ignore[arg-type]
        context_providers=42,  # type: ignore[arg-type]
    )
    assert again is first


def test_register_exit_handler_shuts_the_instances_down_at_exit() -> None:
    code = (
        "import sys\n"
        "from luxonis_telemetry import get_or_init, _state\n"
        "t = get_or_init('lib', register_exit_handler=sys.argv[1] == 'yes')\n"
        "t.shutdown = lambda: print('shutdown called', flush=True)\n"
        "t.capture('e')\n"
        "print('flag', _state.state.shutdown_singletons, flush=True)\n"
    )

    def run(answer: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-c", code, answer], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    assert run("yes") == ["flag True", "shutdown called"]
    assert run("no") == ["flag False"]


def test_the_exit_hook_is_registered_once_per_process_whatever_the_resets() -> None:
    """Issue 11.5: five resets used to leave five ``atexit`` callbacks."""
    result = run_python(
        "import atexit\n"
        "from luxonis_telemetry import Telemetry, _state, get_or_init, shutdown_on_exit\n"
        "before = atexit._ncallbacks()\n"
        "for n in range(5):\n"
        "    _state.reset()\n"
        "    shutdown_on_exit()\n"
        "    t = get_or_init('lib')\n"
        "    Telemetry('other').capture('e')\n"
        "t.shutdown = lambda: print('shutdown called', flush=True)\n"
        "print(atexit._ncallbacks() - before, flush=True)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["1", "shutdown called"]


def test_shutdown_on_exit_marks_the_state() -> None:
    assert not _state.state.shutdown_singletons
    shutdown_on_exit()
    assert _state.state.shutdown_singletons
