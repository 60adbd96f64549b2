"""The CLI adapters: one ``cli_command`` event per command run, nothing else changed.

Typer apps run under ``typer.testing.CliRunner`` and as real programs; Cyclopts
apps are called with a token list (they end with ``sys.exit``, so calls catch
``SystemExit`` unless they ask for ``result_action="return_value"``) and run
as real programs too. Most tests record into a small fake client; the last
ones go through the real ``Telemetry`` to the spool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Optional

import cyclopts
import pytest
import typer
from typer.testing import CliRunner

from luxonis_telemetry.instrument import (
    COMMAND_EVENT,
    instrument_cyclopts,
    instrument_typer,
    skip_telemetry,
)
from tests.conftest import spool_records

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
FIXED_KEYS = {"command", "success", "duration_ms", "exit_code"}


class Recorder:
    """A telemetry client that keeps what it is given (the real one is tested below)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], Optional[bool]]] = []

    def capture(
        self,
        event: str,
        properties: Optional[dict[str, Any]] = None,
        *,
        allowlist: Optional[set[str]] = None,
        include_system_metadata: Optional[bool] = None,
        distinct_id: Optional[str] = None,
    ) -> None:
        self.calls.append((event, dict(properties or {}), include_system_metadata))

    @property
    def events(self) -> list[dict[str, Any]]:
        assert all(event == COMMAND_EVENT for event, _, _ in self.calls)
        return [properties for _, properties, _ in self.calls]

    @property
    def commands(self) -> list[str]:
        return [properties["command"] for properties in self.events]


class BrokenTelemetry:
    def capture(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("telemetry is broken")


def assert_event(
    properties: dict[str, Any], command: str, exit_code: int, **arguments: Any
) -> None:
    assert set(properties) == FIXED_KEYS | set(arguments)
    assert properties["command"] == command
    assert properties["exit_code"] == exit_code
    assert properties["success"] is (exit_code == 0)
    assert isinstance(properties["duration_ms"], int)
    assert properties["duration_ms"] >= 0
    for key, value in arguments.items():
        assert properties[key] == value


def test_event_name_is_luxonis_mls() -> None:
    assert COMMAND_EVENT == "cli_command"


def test_importing_the_adapters_loads_no_cli_framework() -> None:
    code = "import sys, luxonis_telemetry.instrument; print(sorted({'typer', 'click', 'cyclopts'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "[]\n"


# -- Typer ----------------------------------------------------------------------


def typer_app(
    telemetry: Any = None, *, instrument_first: bool = False, **options: Any
) -> typer.Typer:
    """A tool with every kind of outcome, nested groups and renamed commands.

    ``instrument_first`` instruments the empty app before anything is
    registered, as the seed README does; otherwise instrumentation comes last.
    """
    app = typer.Typer()
    if telemetry is not None and instrument_first:
        instrument_typer(app, telemetry, **options)

    @app.command()
    def ok(name: str = "x", token: str = "secret-token") -> None:
        typer.echo(f"hello {name}")

    @app.command()
    def boom() -> None:
        typer.echo("about to fail")
        raise ValueError("broken")

    @app.command()
    def quit0() -> None:
        typer.echo("bye")
        raise typer.Exit(0)

    @app.command()
    def quit3() -> None:
        raise typer.Exit(3)

    @app.command()
    def sysexit2() -> None:
        raise SystemExit(2)

    @app.command()
    def sysexit_none() -> None:
        sys.exit()

    @app.command()
    def interrupted() -> None:
        raise KeyboardInterrupt

    @app.command()
    def abort() -> None:
        raise typer.Abort

    @app.command()
    def bad_value(count: int = 1) -> None:
        raise typer.BadParameter("count must be even")

    data = typer.Typer()
    deep = typer.Typer()

    @data.command("parse")
    def parse_cmd(path: str, fast: bool = False) -> None:
        typer.echo(f"parse {path} {fast}")

    @deep.command("run")
    def deep_run(level: int = 1) -> None:
        typer.echo(f"deep {level}")

    data.add_typer(deep, name="deep")
    app.add_typer(data, name="data")
    if telemetry is not None and not instrument_first:
        instrument_typer(app, telemetry, **options)
    return app


OUTCOMES = [
    (["ok", "--name", "bob"], "ok", 0),
    (["boom"], "boom", 1),
    (["quit0"], "quit0", 0),
    (["quit3"], "quit3", 3),
    (["sysexit2"], "sysexit2", 2),
    (["sysexit-none"], "sysexit-none", 0),
    (["interrupted"], "interrupted", 130),
    (["abort"], "abort", 1),
    (["bad-value"], "bad-value", 2),
    (["data", "parse", "in.csv", "--fast"], "data parse", 0),
    (["data", "deep", "run", "--level", "3"], "data deep run", 0),
]


@pytest.mark.parametrize("instrument_first", [False, True], ids=["after", "before"])
@pytest.mark.parametrize(("args", "command", "exit_code"), OUTCOMES)
def test_typer_each_outcome_is_one_event_and_nothing_changes(
    args: list[str], command: str, exit_code: int, instrument_first: bool
) -> None:
    plain = runner.invoke(typer_app(), args)
    telemetry = Recorder()
    observed = runner.invoke(typer_app(telemetry, instrument_first=instrument_first), args)
    assert observed.exit_code == plain.exit_code == exit_code
    assert observed.output == plain.output
    assert type(observed.exception) is type(plain.exception)
    [event] = telemetry.events
    assert_event(event, command, exit_code)


def test_typer_return_value_is_unchanged() -> None:
    app = typer.Typer()
    instrument_typer(app, Recorder())

    @app.command()
    def answer() -> int:
        return 42

    [info] = app.registered_commands
    assert info.callback() == 42
    assert info.callback.__name__ == "answer"


def test_typer_usage_error_never_runs_the_callback() -> None:
    """Click rejects a bad option while parsing: no command ran, so nothing is recorded."""
    telemetry = Recorder()
    ran: list[str] = []
    app = typer.Typer()
    instrument_typer(app, telemetry)

    @app.command()
    def first() -> None:
        ran.append("first")

    @app.command()
    def second(count: int = 1) -> None:
        ran.append("second")

    assert runner.invoke(app, ["second", "--bogus"]).exit_code == 2
    assert runner.invoke(app, ["second", "--count", "many"]).exit_code == 2
    assert runner.invoke(app, ["nosuch"]).exit_code == 2
    assert ran == []
    assert telemetry.calls == []


def test_typer_command_names_follow_typers_rules() -> None:
    telemetry = Recorder()
    app = typer.Typer()
    models = typer.Typer(name="models")  # named by the sub-app itself
    merged = typer.Typer()  # no name anywhere: its commands join the parent

    @app.command(name="train-model")
    def train() -> None:
        pass

    @models.command("list")
    def list_models() -> None:
        pass

    @merged.command()
    def flat_cmd() -> None:
        pass

    app.add_typer(models)
    app.add_typer(merged)
    instrument_typer(app, telemetry)
    for args in (["train-model"], ["models", "list"], ["flat-cmd"]):
        assert runner.invoke(app, args).exit_code == 0
    assert telemetry.commands == ["train-model", "models list", "flat-cmd"]


def test_typer_single_command_app_reports_the_registered_name() -> None:
    """The user types no command name; like luxonis-ml, the registered name is reported."""
    telemetry = Recorder()
    app = typer.Typer()

    @app.command()
    def main(count: int = 1) -> None:
        typer.echo(f"count {count}")

    instrument_typer(app, telemetry)
    result = runner.invoke(app, ["--count", "2"])
    assert (result.exit_code, result.output) == (0, "count 2\n")
    [event] = telemetry.events
    assert_event(event, "main", 0)


def test_typer_commands_and_sub_apps_registered_after_instrumenting() -> None:
    telemetry = Recorder()
    app = typer.Typer()
    instrument_typer(app, telemetry)

    @app.command()
    def first() -> None:
        pass

    @app.command()
    def second() -> None:
        typer.echo("second ran")

    sub = typer.Typer()
    app.add_typer(sub, name="sub")

    @sub.command()  # registered on the sub-app after it was mounted
    def inner() -> None:
        pass

    deeper = typer.Typer()

    @deeper.command()
    def leaf() -> None:
        pass

    sub.add_typer(deeper, name="deeper")
    assert runner.invoke(app, ["second"]).output == "second ran\n"
    assert runner.invoke(app, ["sub", "inner"]).exit_code == 0
    assert runner.invoke(app, ["sub", "deeper", "leaf"]).exit_code == 0
    assert telemetry.commands == ["second", "sub inner", "sub deeper leaf"]


def test_typer_sub_app_instrumented_on_its_own_keeps_its_client_and_gains_its_path() -> None:
    """A plugin instruments its own app; the host mounts it later under a name."""
    plugin_telemetry, host_telemetry = Recorder(), Recorder()
    plugin = typer.Typer()

    @plugin.command()
    def sync() -> None:
        pass

    instrument_typer(plugin, plugin_telemetry)
    host = typer.Typer()

    @host.command()
    def status() -> None:
        pass

    instrument_typer(host, host_telemetry)
    host.add_typer(plugin, name="plugin")
    assert runner.invoke(host, ["plugin", "sync"]).exit_code == 0
    assert runner.invoke(host, ["status"]).exit_code == 0
    assert plugin_telemetry.commands == ["plugin sync"]
    assert host_telemetry.commands == ["status"]


@pytest.mark.parametrize(
    "excluded", [["data parse", "quit0"], ["parse", "quit0"], ("parse", "quit0")]
)
def test_typer_exclude_commands_by_full_path_or_leaf_name(excluded: Any) -> None:
    telemetry = Recorder()
    app = typer_app(telemetry, exclude_commands=excluded)
    for args in (["data", "parse", "x"], ["quit0"], ["data", "deep", "run"], ["ok"]):
        runner.invoke(app, args)
    assert telemetry.commands == ["data deep run", "ok"]


def test_typer_exclude_commands_takes_a_lone_string_as_one_name() -> None:
    telemetry = Recorder()
    app = typer_app(telemetry, exclude_commands="ok")
    runner.invoke(app, ["ok"])
    runner.invoke(app, ["quit0"])
    assert telemetry.commands == ["quit0"]


def test_typer_exclude_commands_applies_to_commands_registered_later() -> None:
    telemetry = Recorder()
    app = typer_app(telemetry, instrument_first=True, exclude_commands={"data deep run"})
    runner.invoke(app, ["data", "deep", "run"])
    runner.invoke(app, ["data", "parse", "x"])
    assert telemetry.commands == ["data parse"]


def test_skip_telemetry_leaves_the_callback_unwrapped_in_typer() -> None:
    telemetry = Recorder()
    app = typer.Typer()
    instrument_typer(app, telemetry)

    @app.command()
    @skip_telemetry
    def private() -> None:
        typer.echo("private ran")

    @app.command()
    def public() -> None:
        pass

    assert runner.invoke(app, ["private"]).output == "private ran\n"
    assert runner.invoke(app, ["public"]).exit_code == 0
    assert telemetry.commands == ["public"]
    assert app.registered_commands[0].callback is private
    assert private._telemetry_skip is True  # type: ignore[attr-defined]


def test_skip_telemetry_applied_after_registration_still_records_nothing() -> None:
    """The decorator order is easy to get wrong when the app is instrumented first."""
    telemetry = Recorder()
    app = typer.Typer()
    instrument_typer(app, telemetry)

    @skip_telemetry
    @app.command()
    def private() -> None:
        typer.echo("private ran")

    @app.command()
    def public() -> None:
        pass

    assert runner.invoke(app, ["private"]).output == "private ran\n"
    runner.invoke(app, ["public"])
    assert telemetry.commands == ["public"]


def test_typer_allowlist_gives_flat_keys_and_never_a_context() -> None:
    telemetry = Recorder()
    app = typer.Typer()

    @app.command()
    def train(
        ctx: typer.Context,
        epochs: int = 10,
        token: str = "secret-token",
        command: str = "user value",
    ) -> None:
        typer.echo(f"epochs {epochs}")

    @app.command()
    def other(c: typer.Context, epochs: int = 1) -> None:
        pass

    instrument_typer(app, telemetry, allowlist={"epochs", "ctx", "c", "command"})
    assert (
        runner.invoke(app, ["train", "--epochs", "20", "--token", "hunter2"]).output
        == "epochs 20\n"
    )
    runner.invoke(app, ["other"])
    train_event, other_event = telemetry.events
    assert_event(train_event, "train", 0, epochs=20)
    assert_event(other_event, "other", 0, epochs=1)
    assert "hunter2" not in repr(telemetry.calls)


def test_typer_without_allowlist_no_argument_value_is_recorded() -> None:
    telemetry = Recorder()
    runner.invoke(typer_app(telemetry), ["ok", "--name", "bob", "--token", "hunter2"])
    [event] = telemetry.events
    assert_event(event, "ok", 0)


@pytest.mark.parametrize("include", [None, True, False])
def test_include_system_metadata_is_passed_through(include: Optional[bool]) -> None:
    telemetry = Recorder()
    options = {} if include is None else {"include_system_metadata": include}
    runner.invoke(typer_app(telemetry, **options), ["ok"])
    [(_, _, passed)] = telemetry.calls
    assert passed is include


def test_typer_instrumenting_twice_wraps_once() -> None:
    telemetry = Recorder()
    app = typer_app(telemetry)
    instrument_typer(app, telemetry)
    instrument_typer(app, Recorder())
    runner.invoke(app, ["ok"])
    runner.invoke(app, ["data", "deep", "run"])
    assert telemetry.commands == ["ok", "data deep run"]
    ok = app.registered_commands[0].callback
    assert ok._telemetry_wrapped is True
    assert not getattr(ok.__wrapped__, "_telemetry_wrapped", False)


def test_typer_callback_wrapped_by_luxonis_ml_is_not_wrapped_again() -> None:
    """luxonis-ml's adapters mark their wrappers with the same attribute."""
    telemetry = Recorder()
    app = typer.Typer()

    def already() -> None:
        pass

    already._telemetry_wrapped = True  # type: ignore[attr-defined]
    app.command()(already)
    instrument_typer(app, telemetry)
    assert app.registered_commands[0].callback is already


@pytest.mark.allow_internal_errors
@pytest.mark.parametrize(("args", "exit_code"), [(["ok"], 0), (["boom"], 1), (["quit3"], 3)])
def test_a_failing_client_never_changes_the_command(args: list[str], exit_code: int) -> None:
    plain = runner.invoke(typer_app(), args)
    observed = runner.invoke(typer_app(BrokenTelemetry()), args)
    assert observed.exit_code == plain.exit_code == exit_code
    assert observed.output == plain.output
    assert type(observed.exception) is type(plain.exception)


@pytest.mark.allow_internal_errors
def test_a_failing_client_never_replaces_the_commands_exception() -> None:
    app = typer.Typer()
    instrument_typer(app, BrokenTelemetry())

    @app.command()
    def boom() -> None:
        raise ValueError("the command's own error")

    with pytest.raises(ValueError, match="the command's own error"):
        app.registered_commands[0].callback()


def test_typer_async_callback_gets_an_async_wrapper() -> None:
    """Typer itself does not await callbacks; an app that runs them (or asyncio) still records."""
    import asyncio
    import inspect

    telemetry = Recorder()
    app = typer.Typer()
    instrument_typer(app, telemetry)

    @app.command()
    async def fetch(url: str) -> str:
        await asyncio.sleep(0)
        return f"fetched {url}"

    callback = app.registered_commands[0].callback
    assert inspect.iscoroutinefunction(callback)
    assert asyncio.run(callback("x")) == "fetched x"
    [event] = telemetry.events
    assert_event(event, "fetch", 0)


def write_program(path: Path, body: str) -> Path:
    """A program whose telemetry client appends each capture to $EVENTS_FILE."""
    header = """
        import json, os, sys

        class FileTelemetry:
            def capture(self, event, properties=None, *, allowlist=None,
                        include_system_metadata=None, distinct_id=None):
                with open(os.environ["EVENTS_FILE"], "a") as f:
                    f.write(json.dumps({"event": event, "properties": properties}) + "\\n")

        telemetry = FileTelemetry()
    """
    path.write_text(textwrap.dedent(header) + textwrap.dedent(body))
    return path


def run_program(
    program: Path, args: list[str], events: Path
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    env = dict(os.environ, EVENTS_FILE=str(events), PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, str(program), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    recorded = (
        [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
    )
    events.unlink(missing_ok=True)
    return result, recorded


TYPER_PROGRAM = """
    import typer
    from luxonis_telemetry.instrument import instrument_typer

    app = typer.Typer()
    instrument_typer(app, telemetry, allowlist=["epochs"])

    @app.command()
    def train(epochs: int = 10):
        print(f"training {epochs}")

    @app.command()
    def fail():
        raise typer.Exit(3)

    @app.command()
    def interrupt():
        raise KeyboardInterrupt

    data = typer.Typer()
    app.add_typer(data, name="data")

    @data.command("parse")
    def parse_cmd(path: str):
        print(f"parsed {path}")

    if __name__ == "__main__":
        app()
"""


@pytest.mark.parametrize(
    ("args", "stdout", "exit_code", "expected"),
    [
        (["train", "--epochs", "5"], "training 5\n", 0, {"command": "train", "epochs": 5}),
        (["fail"], "", 3, {"command": "fail"}),
        (["interrupt"], "", 130, {"command": "interrupt"}),
        (["data", "parse", "a.csv"], "parsed a.csv\n", 0, {"command": "data parse"}),
        (["train", "--bogus"], "", 2, None),
    ],
)
def test_typer_program_run_from_the_shell(
    tmp_path: Path, args: list[str], stdout: str, exit_code: int, expected: Optional[dict[str, Any]]
) -> None:
    program = write_program(tmp_path / "tool.py", TYPER_PROGRAM)
    result, recorded = run_program(program, args, tmp_path / "events.jsonl")
    assert (result.returncode, result.stdout) == (exit_code, stdout), result.stderr
    if expected is None:
        assert recorded == []
        return
    [record] = recorded
    assert record["event"] == "cli_command"
    command = expected.pop("command")
    assert_event(record["properties"], command, exit_code, **expected)


# -- Cyclopts -------------------------------------------------------------------


def run_cyclopts(app: cyclopts.App, args: list[str]) -> int:
    """Run ``app`` as ``main`` would: Cyclopts ends every run with ``sys.exit``."""
    with pytest.raises(SystemExit) as exit_info:
        app(args)
    code = exit_info.value.code
    return 0 if code is None else int(code)


def cyclopts_app(telemetry: Any = None, **options: Any) -> cyclopts.App:
    app = cyclopts.App(name="tool", version="1.0")

    @app.command
    def ok(name: str = "x", *, token: str = "secret-token") -> None:
        print(f"hello {name}")

    @app.command
    def boom() -> None:
        print("about to fail")
        raise ValueError("broken")

    @app.command
    def ret3() -> int:
        return 3

    @app.command
    def refuse() -> bool:
        return False

    @app.command
    def sysexit2() -> None:
        raise SystemExit(2)

    @app.command
    def interrupted() -> None:
        raise KeyboardInterrupt

    data = cyclopts.App(name="data")
    app.command(data)

    @data.default
    def data_default() -> None:
        print("data default")

    @data.command(name="parse", alias="p")
    def parse_cmd(path: str, *, fast: bool = False) -> None:
        print(f"parse {path} {fast}")

    deep = cyclopts.App(name="deep")
    data.command(deep)

    @deep.command
    def run(level: int = 1) -> None:
        print(f"deep {level}")

    if telemetry is not None:
        instrument_cyclopts(app, telemetry, **options)
    return app


CYCLOPTS_OUTCOMES = [
    (["ok", "bob"], "ok", 0),
    (["ret3"], "ret3", 3),
    (["refuse"], "refuse", 1),
    (["sysexit2"], "sysexit2", 2),
    (["interrupted"], "interrupted", 130),
    (["data"], "data", 0),
    (["data", "parse", "in.csv", "--fast"], "data parse", 0),
    (["data", "p", "in.csv"], "data parse", 0),
    (["data", "deep", "run", "--level", "3"], "data deep run", 0),
]


@pytest.mark.parametrize(("args", "command", "exit_code"), CYCLOPTS_OUTCOMES)
def test_cyclopts_each_outcome_is_one_event_and_nothing_changes(
    capsys: pytest.CaptureFixture[str], args: list[str], command: str, exit_code: int
) -> None:
    assert run_cyclopts(cyclopts_app(), args) == exit_code
    plain = capsys.readouterr()
    telemetry = Recorder()
    assert run_cyclopts(cyclopts_app(telemetry), args) == exit_code
    assert capsys.readouterr() == plain
    [event] = telemetry.events
    assert_event(event, command, exit_code)


def test_cyclopts_exception_propagates_and_is_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    telemetry = Recorder()
    with pytest.raises(ValueError, match="broken"):
        cyclopts_app(telemetry)(["boom"])
    assert capsys.readouterr().out == "about to fail\n"
    [event] = telemetry.events
    assert_event(event, "boom", 1)


def test_cyclopts_return_value_is_unchanged() -> None:
    telemetry = Recorder()
    app = cyclopts_app(telemetry)
    assert app(["ret3"], result_action="return_value") == 3
    [event] = telemetry.events
    assert_event(event, "ret3", 3)


def test_cyclopts_help_version_and_usage_errors_record_nothing() -> None:
    telemetry = Recorder()
    app = cyclopts_app(telemetry)
    assert run_cyclopts(app, ["--help"]) == 0
    assert run_cyclopts(app, ["--version"]) == 0
    assert run_cyclopts(app, ["data", "--help"]) == 0
    assert run_cyclopts(app, ["ok", "--bogus"]) != 0
    assert run_cyclopts(app, ["nosuch"]) != 0  # 2 in cyclopts 5, 1 in 4
    assert telemetry.calls == []
    for flag in ("--help", "-h", "--version"):
        assert not hasattr(app[flag].default_command, "_telemetry_wrapped")
        assert not hasattr(app["data"][flag].default_command, "_telemetry_wrapped")


def test_cyclopts_root_default_command_is_named_after_the_app() -> None:
    telemetry = Recorder()
    app = cyclopts.App(name="mytool")

    @app.default
    def main(count: int = 1) -> None:
        print(f"count {count}")

    instrument_cyclopts(app, telemetry, allowlist=["count"])
    assert run_cyclopts(app, ["--count", "2"]) == 0
    [event] = telemetry.events
    assert_event(event, "mytool", 0, count=2)


def test_cyclopts_async_command(capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    telemetry = Recorder()
    app = cyclopts.App(name="tool")

    @app.command
    async def fetch(url: str) -> None:
        await asyncio.sleep(0)
        print(f"fetched {url}")

    @app.command
    async def fail() -> None:
        await asyncio.sleep(0)
        raise ValueError("async failure")

    instrument_cyclopts(app, telemetry, allowlist={"url"})
    assert run_cyclopts(app, ["fetch", "example"]) == 0
    assert capsys.readouterr().out == "fetched example\n"
    with pytest.raises(ValueError, match="async failure"):
        app(["fail"])
    fetched, failed = telemetry.events
    assert_event(fetched, "fetch", 0, url="example")
    assert_event(failed, "fail", 1)


def test_cyclopts_allowlist_binds_positional_and_keyword_arguments() -> None:
    telemetry = Recorder()
    app = cyclopts_app(telemetry, allowlist=["path", "fast", "name"])
    run_cyclopts(app, ["data", "parse", "in.csv", "--fast"])
    run_cyclopts(app, ["ok", "bob", "--token", "hunter2"])
    parsed, ok = telemetry.events
    assert_event(parsed, "data parse", 0, path="in.csv", fast=True)
    assert_event(ok, "ok", 0, name="bob")
    assert "hunter2" not in repr(telemetry.calls)


@pytest.mark.parametrize("excluded", [{"data parse", "ok"}, ["parse", "ok"]])
def test_cyclopts_exclude_commands_by_full_path_or_leaf_name(excluded: Any) -> None:
    telemetry = Recorder()
    app = cyclopts_app(telemetry, exclude_commands=excluded)
    for args in (["data", "parse", "x"], ["ok"], ["data", "deep", "run"], ["ret3"]):
        run_cyclopts(app, args)
    assert telemetry.commands == ["data deep run", "ret3"]


def test_skip_telemetry_in_cyclopts() -> None:
    telemetry = Recorder()
    app = cyclopts.App(name="tool")

    @app.command
    @skip_telemetry
    def private() -> None:
        print("private ran")

    @app.command
    def public() -> None:
        pass

    instrument_cyclopts(app, telemetry)
    assert app["private"].default_command is private
    run_cyclopts(app, ["private"])
    run_cyclopts(app, ["public"])
    assert telemetry.commands == ["public"]


def test_cyclopts_instrumenting_twice_wraps_once() -> None:
    telemetry = Recorder()
    app = cyclopts_app(telemetry)
    instrument_cyclopts(app, Recorder())
    run_cyclopts(app, ["ok"])
    run_cyclopts(app, ["data", "p", "x"])
    assert telemetry.commands == ["ok", "data parse"]
    wrapped = app["ok"].default_command
    assert not getattr(wrapped.__wrapped__, "_telemetry_wrapped", False)


def test_cyclopts_flattened_sub_app_commands_are_recorded_at_the_parent_path() -> None:
    telemetry = Recorder()
    app = cyclopts.App(name="tool")
    tools = cyclopts.App(name="tools")

    @tools.command
    def lint() -> None:
        print("linted")

    app.command(tools, name="*")
    instrument_cyclopts(app, telemetry)
    assert run_cyclopts(app, ["lint"]) == 0
    assert telemetry.commands == ["lint"]


def test_cyclopts_import_path_commands_are_wrapped_once_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a lazy command to instrument it would import every command module at start."""
    (tmp_path / "lazy_commands.py").write_text(
        "def build():\n    print('built')\n\ndef clean():\n    print('cleaned')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_commands", raising=False)
    telemetry = Recorder()
    app = cyclopts.App(name="tool")
    app.command("lazy_commands:build")
    app.command("lazy_commands:clean")
    app["build"]  # loaded before instrumentation
    instrument_cyclopts(app, telemetry)
    assert run_cyclopts(app, ["build"]) == 0
    assert run_cyclopts(app, ["clean"]) == 0
    assert telemetry.commands == ["build"]


@pytest.mark.allow_internal_errors
def test_cyclopts_failing_client_never_changes_the_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = cyclopts_app(BrokenTelemetry())
    assert run_cyclopts(app, ["ok", "bob"]) == 0
    assert run_cyclopts(app, ["ret3"]) == 3
    assert capsys.readouterr().out == "hello bob\n"
    with pytest.raises(ValueError, match="broken"):
        app(["boom"])


def test_instrument_cyclopts_without_cyclopts_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cyclopts", None)
    with pytest.raises(ImportError, match=r"pip install 'luxonis-telemetry\[cyclopts\]'"):
        instrument_cyclopts(object(), Recorder())


CYCLOPTS_PROGRAM = """
    import cyclopts
    from luxonis_telemetry.instrument import instrument_cyclopts

    app = cyclopts.App(name="tool")

    @app.command
    def train(epochs: int = 10):
        print(f"training {epochs}")

    @app.command
    def check() -> int:
        return 4

    @app.command
    def interrupt():
        raise KeyboardInterrupt

    instrument_cyclopts(app, telemetry, allowlist=["epochs"])

    if __name__ == "__main__":
        app()
"""


@pytest.mark.parametrize(
    ("args", "stdout", "exit_code", "expected"),
    [
        (["train", "--epochs", "5"], "training 5\n", 0, {"command": "train", "epochs": 5}),
        (["check"], "", 4, {"command": "check"}),
        (["interrupt"], "", 130, {"command": "interrupt"}),
        (["train", "--bogus"], None, None, None),
    ],
)
def test_cyclopts_program_run_from_the_shell(
    tmp_path: Path,
    args: list[str],
    stdout: Optional[str],
    exit_code: Optional[int],
    expected: Optional[dict[str, Any]],
) -> None:
    program = write_program(tmp_path / "tool.py", CYCLOPTS_PROGRAM)
    result, recorded = run_program(program, args, tmp_path / "events.jsonl")
    if exit_code is None:  # a usage error: whatever code this cyclopts gives it (4.x 1, 5.x 2)
        bare_source = CYCLOPTS_PROGRAM.replace(
            'instrument_cyclopts(app, telemetry, allowlist=["epochs"])', ""
        )
        assert bare_source != CYCLOPTS_PROGRAM
        bare = write_program(tmp_path / "bare.py", bare_source)
        exit_code = run_program(bare, args, tmp_path / "bare.jsonl")[0].returncode
        assert exit_code != 0
    assert result.returncode == exit_code, result.stderr
    if stdout is not None:
        assert result.stdout == stdout
    if expected is None:
        assert recorded == []
        return
    [record] = recorded
    assert record["event"] == "cli_command"
    command = expected.pop("command")
    assert_event(record["properties"], command, exit_code, **expected)


# -- with the real client ---------------------------------------------------------


def spooled_commands(spool: Path) -> list[dict[str, Any]]:
    return [r["properties"] for r in spool_records(spool) if r["event"] == COMMAND_EVENT]


def test_real_client_spools_one_flat_event_per_typer_command(spool_path: Path) -> None:
    from luxonis_telemetry import Telemetry

    app = typer_app(Telemetry("mytool"), instrument_first=True, allowlist=["path"])
    assert runner.invoke(app, ["data", "parse", "in.csv"]).exit_code == 0
    assert runner.invoke(app, ["quit3"]).exit_code == 3
    parsed, quit3 = spooled_commands(spool_path)
    assert_event(parsed, "data parse", 0, path="in.csv")
    assert_event(quit3, "quit3", 3)
    assert {r["library"] for r in spool_records(spool_path)} == {"mytool"}


def test_real_client_spools_cyclopts_commands(spool_path: Path) -> None:
    from luxonis_telemetry import Telemetry

    app = cyclopts_app(Telemetry("mytool"))
    assert run_cyclopts(app, ["data", "deep", "run"]) == 0
    assert run_cyclopts(app, ["refuse"]) == 1
    deep, refused = spooled_commands(spool_path)
    assert_event(deep, "data deep run", 0)
    assert_event(refused, "refuse", 1)


def test_real_client_in_a_typer_program(tmp_path: Path, spool_path: Path) -> None:
    program = tmp_path / "tool.py"
    program.write_text(
        textwrap.dedent(
            """
            import typer
            from luxonis_telemetry import Telemetry
            from luxonis_telemetry.instrument import instrument_typer

            app = typer.Typer()
            instrument_typer(app, Telemetry("mytool"))

            @app.command()
            def train(epochs: int = 10):
                print(f"training {epochs}")

            @app.command()
            def evaluate():
                raise typer.Exit(0)

            app()
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, str(program), "train", "--epochs", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "training 3\n"), result.stderr
    [event] = spooled_commands(spool_path)
    assert_event(event, "train", 0)


def test_suppressed_telemetry_records_nothing_and_changes_nothing(spool_path: Path) -> None:
    from luxonis_telemetry import Telemetry
    from luxonis_telemetry.suppression import suppress_telemetry

    app = typer_app(Telemetry("mytool"))
    with suppress_telemetry():
        result = runner.invoke(app, ["ok", "--name", "bob"])
    assert (result.exit_code, result.output) == (0, "hello bob\n")
    assert spooled_commands(spool_path) == []
