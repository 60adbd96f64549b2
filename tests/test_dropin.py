"""Issue 9: a tool that called ``luxonis_ml.telemetry`` switches by changing one import.

Each test is a real program written as modelconverter, hubai-sdk or Luxonis
``tools`` write theirs, with ``luxonis_ml.telemetry`` spelled
``luxonis_telemetry``, followed by a real ``luxonis-telemetry upload`` to a
loopback PostHog: what arrives must carry the property keys luxonis-ml 0.10.2
sent, so the tool's dashboards keep working. Behaviour already pinned
elsewhere (singleton keying, provider merging, sanitizer parity, ``.env``
parsing) is tested in the module's own test file; here it is the switch
itself, end to end.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from luxonis_telemetry.testing import FakePostHog
from tests.conftest import free_port, spool_records

KEY = "phc_test_key_123"
# luxonis-ml's system context: what `include_system_metadata=True` sent to PostHog.
SYSTEM_KEYS = {
    "os",
    "os_version",
    "arch",
    "python_version",
    "ci",
    "is_luxonis_cloud",
    "processor",
    "cpu_count",
    "is_docker",
}

# Issue 9's "Why": the calls modelconverter, hubai-sdk and tools make, as one program.
CALLER = """
import json
from luxonis_telemetry import (Telemetry, TelemetryConfig, TelemetryDefaults, get_or_init,
                               system_context_provider, suppress_telemetry)
from luxonis_telemetry.suppression import is_suppressed

__version__ = "2.3.4"
run_id = "convert-run-42"
DEFAULTS = TelemetryDefaults(enabled=True, backend="posthog", api_key={api_key!r}, endpoint={endpoint!r})
t = get_or_init("hubai_sdk", source_component="hubai-sdk", library_version=__version__,
                config=TelemetryConfig.from_environ(defaults=DEFAULTS),
                system_context_providers=[system_context_provider])
assert isinstance(t, Telemetry) and t.is_enabled
t.capture("convert.start", {{"model": "yolo"}}, include_system_metadata=True, distinct_id=run_id)
seen = [is_suppressed()]
with suppress_telemetry():
    seen.append(is_suppressed())
    t.capture("convert.suppressed", {{"model": "yolo"}})
seen.append(is_suppressed())
print(json.dumps(seen))
"""


def run_program(
    folder: Path, code: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """``code`` as a program file of the tool, run in ``folder`` (exit upload off)."""
    program = folder / "tool.py"
    program.write_text(textwrap.dedent(code), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(program), *args],
        env={**os.environ, "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "0", **env},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def upload_command(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``luxonis-telemetry upload``, as the person types it."""
    script = Path(sys.executable).parent / "luxonis-telemetry"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "luxonis_telemetry"]
    return subprocess.run(
        [*command, "upload"],
        env={**os.environ, **env},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def checked(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def other_server() -> Iterator[FakePostHog]:
    """A second receiver, standing for a destination that must never be used."""
    with FakePostHog() as fake:
        yield fake


# -- the caller pattern of issue 9, end to end ----------------------------------------------------


def _defaults_name_the_server(server: FakePostHog) -> tuple[dict[str, str], dict[str, str]]:
    return {"api_key": KEY, "endpoint": server.url}, {}


def _environment_names_the_server(server: FakePostHog) -> tuple[dict[str, str], dict[str, str]]:
    # the library bakes in its production destination; the user's environment wins
    baked_in = {"api_key": "phc_library_default", "endpoint": f"http://127.0.0.1:{free_port()}"}
    return baked_in, {"LUXONIS_TELEMETRY_API_KEY": KEY, "LUXONIS_TELEMETRY_ENDPOINT": server.url}


@pytest.mark.parametrize(
    "destination",
    [_defaults_name_the_server, _environment_names_the_server],
    ids=["through-defaults", "through-environment"],
)
def test_the_callers_of_luxonis_ml_run_unchanged_and_their_event_arrives(
    destination: Any, server: FakePostHog, tmp_path: Path, spool_path: Path
) -> None:
    defaults, env = destination(server)
    result = run_program(tmp_path, CALLER.format(**defaults), **env)
    assert (checked(result), result.stderr) == ("[false, true, false]\n", "")
    [spooled] = spool_records(spool_path)  # the suppressed capture was never recorded
    assert "phc_" not in json.dumps(spooled)

    checked(upload_command(tmp_path, **env))

    assert server.wait_for(1, timeout=10)
    [batch] = server.batches
    assert batch.api_key == KEY
    [event] = batch.events
    assert event["event"] == "convert.start"
    assert event["uuid"] == spooled["uuid"]
    assert event["distinct_id"] == "convert-run-42"
    properties = event["properties"]
    assert properties["model"] == "yolo"
    assert properties["$process_person_profile"] is False
    assert properties["$session_id"] == spooled["context"]["session_id"]
    assert properties["source_product"] == "hubai_sdk"
    assert properties["source_component"] == "hubai-sdk"
    assert properties["sdk_version"] == "2.3.4"
    assert properties["schema_version"] == 1
    assert set(properties) >= SYSTEM_KEYS, sorted(SYSTEM_KEYS - set(properties))
    assert spool_records(spool_path) == []
    assert server.event_count == 1  # the suppressed capture never arrives


# -- the re-export luxonis-ml would ship (docs/migrating-from-luxonis-ml.md) ----------------------

MIGRATION_PAGE = Path(__file__).parents[1] / "docs" / "migrating-from-luxonis-ml.md"


def build_luxonis_ml_reexport(root: Path) -> list[str]:
    """``luxonis_ml.telemetry`` as the migration page writes it; returns the modules built."""
    text = MIGRATION_PAGE.read_text(encoding="utf-8")
    section = text.split("## For luxonis-ml itself: the re-export", 1)[1].split("\n## ", 1)[0]
    init = section.split("```python\n", 1)[1].split("```", 1)[0]
    files = {"luxonis_ml/__init__.py": "", "luxonis_ml/telemetry/__init__.py": init}
    for row in re.findall(r"^\| `(luxonis_ml/telemetry/[^`]+)` \| `([^`]+)` \|$", section, re.M):
        files[row[0]] = row[1] + "\n"
    for name in ("backends", "cli"):
        files.setdefault(f"luxonis_ml/telemetry/{name}/__init__.py", "")
    for relative, code in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(code, encoding="utf-8")
    return sorted(
        relative[: -len(".py")].replace("/__init__", "").replace("/", ".") for relative in files
    )


REEXPORT_CHECK = """
import json, sys
import luxonis_ml.telemetry as telemetry
heavy = sorted({"posthog", "requests", "typer", "click", "cyclopts"} & set(sys.modules))
import luxonis_ml.telemetry.backends.posthog, luxonis_ml.telemetry.cli.shared
from luxonis_ml.telemetry import PostHogBackend, instrument_typer
from luxonis_ml.telemetry.context import base_context
print(json.dumps([heavy, sorted(telemetry.__all__), base_context(
    library_name="l", library_version="1", session_id="s", source_component=None)["source_product"]]))
"""


def test_luxonis_mls_module_rebuilt_as_the_migration_page_says_runs_its_callers(
    server: FakePostHog, tmp_path: Path, spool_path: Path
) -> None:
    modules = build_luxonis_ml_reexport(tmp_path)
    telemetry_modules = ["", ".backends", ".backends.base", ".backends.noop", ".backends.posthog"]
    telemetry_modules += [".backends.stdout", ".cli", ".cli.cyclopts", ".cli.shared", ".cli.typer"]
    telemetry_modules += [".client", ".config", ".context", ".events", ".redaction"]
    telemetry_modules += [".singleton", ".suppression"]
    # every module of luxonis-ml 0.10.2's telemetry package
    assert modules == sorted(
        ["luxonis_ml"] + [f"luxonis_ml.telemetry{m}" for m in telemetry_modules]
    )
    for module in modules:
        checked(run_program(tmp_path, f"import {module}"))

    heavy, exported, product = json.loads(checked(run_program(tmp_path, REEXPORT_CHECK)))
    assert heavy == []  # no star import: the names that load on first use stayed unloaded
    assert len(exported) == 12
    assert product == "l"

    caller = CALLER.format(api_key=KEY, endpoint=server.url)
    caller = caller.replace("from luxonis_telemetry", "from luxonis_ml.telemetry")
    result = run_program(tmp_path, caller)
    assert (checked(result), result.stderr) == ("[false, true, false]\n", "")
    checked(upload_command(tmp_path))
    assert server.wait_for(1, timeout=10)
    assert server.batches[0].events[0]["properties"]["source_product"] == "hubai_sdk"


# -- one test per issue-9 item a tool relies on ----------------------------------------------------


def test_luxonis_mls_singleton_helpers_keep_components_apart_on_the_wire(
    posthog_env: FakePostHog, tmp_path: Path
) -> None:
    """Item 2: ``initialize_telemetry``, ``get_telemetry(None, source_component=)``, ``shutdown_on_exit``."""
    code = """
        from luxonis_telemetry import get_telemetry, initialize_telemetry, shutdown_on_exit

        initialize_telemetry(library_name="tools", library_version="1.0.0")
        initialize_telemetry(library_name="tools", source_component="tools-cli")
        shutdown_on_exit()
        assert get_telemetry("tools") is None  # ambiguous: two components
        cli = get_telemetry(None, source_component="tools-cli")
        cli.capture("command.run", {"name": "convert"})
        get_telemetry("tools", source_component="tools").capture("library.used")
        print(cli.source_component, cli.library_name)
    """
    result = run_program(tmp_path, code)
    assert (checked(result), result.stderr) == ("tools-cli tools\n", "")
    checked(upload_command(tmp_path))
    assert posthog_env.wait_for(2, timeout=10)
    by_name = {e["event"]: e["properties"] for e in posthog_env.events}
    assert by_name["command.run"]["source_component"] == "tools-cli"
    assert by_name["library.used"]["source_component"] == "tools"
    assert {p["source_product"] for p in by_name.values()} == {"tools"}
    assert by_name["library.used"]["sdk_version"] == "1.0.0"


def test_a_luxonis_ml_backend_registered_by_class_receives_telemetry_events(
    tmp_path: Path, spool_path: Path, home: Path
) -> None:
    """Item 6: luxonis-ml's custom backend example, with only the import changed."""
    code = """
        import json
        from luxonis_telemetry import Telemetry, TelemetryConfig
        from luxonis_telemetry.backends import TelemetryBackend


        class MyBackend(TelemetryBackend):
            def capture(self, event):
                payload = event.to_payload()
                print(json.dumps({
                    "type": type(event).__name__,
                    "name": event.name,
                    "properties": event.properties,
                    "distinct_id": event.distinct_id,
                    "schema_version": event.schema_version,
                    "source_product": event.context["source_product"],
                    "person_profile": event.context["$process_person_profile"],
                    "payload_event": payload["event"],
                    "payload_uuid": payload["uuid"],
                }), flush=True)


        Telemetry.register_backend("My_Backend", MyBackend)
        config = TelemetryConfig(enabled=True, backend="my_backend")
        telemetry = Telemetry("luxonis_ml", config=config)
        telemetry.capture("custom_event", {"step": 1})
    """
    # delivered by the exiting process itself, as the seed README promises
    result = run_program(tmp_path, code, LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="1")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    received = json.loads(line)
    assert uuid.UUID(received.pop("payload_uuid")).version == 4
    install_id = home / ".config" / "luxonis-telemetry" / "install_id"
    assert received.pop("distinct_id") == install_id.read_text().strip()
    assert received == {
        "type": "TelemetryEvent",
        "name": "custom_event",
        "properties": {"step": 1},
        "schema_version": 1,
        "source_product": "luxonis_ml",
        "person_profile": False,
        "payload_event": "custom_event",
    }
    assert spool_records(spool_path) == []  # delivered, so no longer pending


def test_a_cyclopts_tool_sends_luxonis_mls_cli_command_event(
    posthog_env: FakePostHog, tmp_path: Path
) -> None:
    """Items 7 and 8: ``instrument_cyclopts`` with an allowlist; flat keys reach PostHog."""
    pytest.importorskip("cyclopts")
    code = """
        import cyclopts
        from luxonis_telemetry import get_or_init
        from luxonis_telemetry.instrument import instrument_cyclopts

        app = cyclopts.App(name="modelconverter")
        telemetry = get_or_init("modelconverter", source_component="modelconverter-cli")


        @app.command
        def convert(target: str, *, archive: str = "model.tar.xz"):
            print(f"converted for {target}")


        instrument_cyclopts(app, telemetry, allowlist={"target"}, include_system_metadata=True)
        app()
    """
    result = run_program(tmp_path, code, "convert", "rvc4", "--archive", "/home/me/secret.tar.xz")
    assert (checked(result), result.stderr) == ("converted for rvc4\n", "")
    checked(upload_command(tmp_path))
    assert posthog_env.wait_for(1, timeout=10)
    [event] = posthog_env.events
    assert event["event"] == "cli_command"
    properties = event["properties"]
    assert properties["command"] == "convert"
    assert properties["success"] is True
    assert properties["exit_code"] == 0
    assert isinstance(properties["duration_ms"], (int, float))
    assert properties["target"] == "rvc4"
    assert "archive" not in properties
    assert "secret" not in json.dumps(event)
    assert properties["source_component"] == "modelconverter-cli"
    assert set(properties) >= SYSTEM_KEYS


def test_a_dotenv_of_luxonis_ml_users_turns_telemetry_off(tmp_path: Path, spool_path: Path) -> None:
    """Deliberate difference, first half: ``./.env`` may still turn telemetry off."""
    (tmp_path / ".env").write_text("LUXONIS_TELEMETRY_ENABLED=false\n")
    code = CALLER.format(api_key=KEY, endpoint=f"http://127.0.0.1:{free_port()}")
    result = run_program(tmp_path, code.replace("and t.is_enabled", "and not t.is_enabled"))
    assert (checked(result), result.stderr) == ("[false, true, false]\n", "")
    assert not spool_path.exists()


def test_a_dotenv_never_redirects_events_or_the_key(
    server: FakePostHog, other_server: FakePostHog, tmp_path: Path
) -> None:
    """Deliberate difference, second half: a cloned repository's ``.env`` cannot redirect."""
    (tmp_path / ".env").write_text(
        f"LUXONIS_TELEMETRY_ENDPOINT={other_server.url}\n"
        "LUXONIS_TELEMETRY_API_KEY=phc_attacker_key\n"
        "LUXONIS_TELEMETRY_BACKEND=posthog\n"
    )
    result = run_program(tmp_path, CALLER.format(api_key=KEY, endpoint=server.url))
    assert (checked(result), result.stderr) == ("[false, true, false]\n", "")
    checked(upload_command(tmp_path))  # run from the folder holding the .env, too
    assert server.wait_for(1, timeout=10)
    assert [b.api_key for b in server.batches] == [KEY]
    assert other_server.requests == 0
