from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from luxonis_telemetry import Telemetry, instrument_typer
from tests.conftest import spool_records

runner = CliRunner()


def build_app() -> typer.Typer:
    app = typer.Typer()
    data = typer.Typer()
    deep = typer.Typer()

    @app.command()
    def ok(name: str = "x", token: str = "secret-token") -> None:
        typer.echo(f"hello {name}")

    @app.command()
    def boom() -> None:
        raise ValueError("broken")

    @app.command()
    def quit0() -> None:
        typer.echo("bye")
        raise typer.Exit(0)

    @app.command()
    def quit2() -> None:
        raise typer.Exit(2)

    @app.command()
    def sysexit() -> None:
        raise SystemExit(0)

    @app.command()
    def interrupted() -> None:
        raise KeyboardInterrupt

    @deep.command("run")
    def deep_run(level: int = 1) -> None:
        typer.echo(f"deep {level}")

    data.add_typer(deep, name="deep")

    @data.command("export")
    def export(fmt: str = "csv") -> None:
        typer.echo(f"exported {fmt}")

    app.add_typer(data, name="data")
    return app


def commands(spool: Path) -> dict[str, dict[str, Any]]:
    return {
        r["properties"]["command"]: r["properties"]
        for r in spool_records(spool)
        if r["event"] == "cli.command"
    }


@pytest.mark.parametrize(
    ("args", "suffix", "success", "exit_code", "exception"),
    [
        (["ok", "--name", "bob"], "ok", True, 0, None),
        (["boom"], "boom", False, 1, "ValueError"),
        (["quit0"], "quit0", True, 0, None),
        (["quit2"], "quit2", False, 2, "Exit"),
        (["sysexit"], "sysexit", True, 0, None),
        (["data", "export", "--fmt", "json"], "data export", True, 0, None),
        (["data", "deep", "run", "--level", "3"], "data deep run", True, 0, None),
    ],
)
def test_each_outcome_is_recorded_and_nothing_changes(
    spool_path: Path,
    args: list[str],
    suffix: str,
    success: bool,
    exit_code: int,
    exception: str | None,
) -> None:
    plain = runner.invoke(build_app(), args)
    app = build_app()
    instrument_typer(app, Telemetry("tool"))
    observed = runner.invoke(app, args)
    assert observed.exit_code == plain.exit_code == exit_code
    assert observed.stdout == plain.stdout
    assert type(observed.exception) is type(plain.exception)
    [(command, props)] = commands(spool_path).items()
    assert command.endswith(suffix)
    assert props["success"] is success
    assert props["exit_code"] == exit_code
    assert props["duration_ms"] >= 0
    assert props.get("exception_type") == exception
    assert "args" not in props


def test_keyboard_interrupt_is_recorded_as_interrupted(spool_path: Path) -> None:
    app = build_app()
    instrument_typer(app, Telemetry("tool"))
    result = runner.invoke(app, ["interrupted"])
    assert result.exit_code != 0
    [props] = commands(spool_path).values()
    assert props["interrupted"] is True
    assert props["success"] is False
    assert props["exit_code"] == 130


def test_commands_registered_after_instrumenting_are_recorded(spool_path: Path) -> None:
    app = typer.Typer()
    instrument_typer(app, Telemetry("tool"))

    @app.command()
    def first() -> None:
        pass

    @app.command()
    def second() -> None:
        pass

    sub = typer.Typer()

    @sub.command()
    def inner() -> None:
        pass

    app.add_typer(sub, name="sub")
    assert runner.invoke(app, ["second"]).exit_code == 0
    assert runner.invoke(app, ["sub", "inner"]).exit_code == 0
    assert {c.split(" ", 1)[1] for c in commands(spool_path)} == {"second", "sub inner"}


def test_allowlist_and_exclusions(spool_path: Path) -> None:
    app = build_app()
    instrument_typer(app, Telemetry("tool"), allowlist=["name", "fmt"], exclude_commands=["quit0"])
    runner.invoke(app, ["ok", "--name", "bob", "--token", "hunter2"])
    runner.invoke(app, ["data", "export", "--fmt", "json"])
    runner.invoke(app, ["quit0"])
    recorded = commands(spool_path)
    ok = next(p for c, p in recorded.items() if c.endswith("ok"))
    assert ok["args"] == {"name": "bob"}
    export = next(p for c, p in recorded.items() if c.endswith("data export"))
    assert export["args"] == {"fmt": "json"}
    assert not any(c.endswith("quit0") for c in recorded)
    assert "hunter2" not in str(spool_records(spool_path))


def test_instrumenting_twice_records_once(spool_path: Path) -> None:
    app = build_app()
    telemetry = Telemetry("tool")
    instrument_typer(app, telemetry)
    instrument_typer(app, telemetry)
    runner.invoke(app, ["ok"])
    assert len([r for r in spool_records(spool_path) if r["event"] == "cli.command"]) == 1


def test_disabled_telemetry_changes_nothing(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    app = build_app()
    instrument_typer(app, Telemetry("tool"))
    assert runner.invoke(app, ["ok"]).stdout == "hello x\n"
    assert list(home.rglob("*")) == []
