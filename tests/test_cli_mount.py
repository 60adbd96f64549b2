"""Our commands mounted under a tool's own Typer CLI: ``mytool telemetry status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from luxonis_telemetry import Telemetry
from luxonis_telemetry.cli import add_commands
from luxonis_telemetry.instrument import instrument_typer
from tests.conftest import REPO, spool_records

runner = CliRunner()


def make_tool(instrumented: str, name: str = "telemetry") -> tuple[typer.Typer, Telemetry]:
    """A tool with one command of its own and ours mounted under ``name``.

    ``instrumented`` says when the tool instruments its CLI: before or after mounting.
    """
    tool = typer.Typer()
    telemetry = Telemetry("mytool")
    if instrumented == "before":
        instrument_typer(tool, telemetry)

    @tool.command()
    def train(epochs: int = 1) -> None:
        typer.echo(f"training {epochs}")

    add_commands(tool, name=name)
    if instrumented == "after":
        instrument_typer(tool, telemetry)
    return tool, telemetry


def run(tool: typer.Typer, *args: str) -> Any:
    result = runner.invoke(tool, list(args))
    assert "Traceback" not in result.output
    return result


def recorded_commands(spool: Path) -> list[str]:
    return [r["properties"]["command"] for r in spool_records(spool) if r["event"] == "cli_command"]


@pytest.mark.parametrize("instrumented", ["before", "after"])
def test_mounted_commands_work_and_record_nothing(instrumented: str, spool_path: Path) -> None:
    tool, _telemetry = make_tool(instrumented)
    assert run(tool, "train").exit_code == 0
    assert recorded_commands(spool_path) == ["train"]  # the tool's own command is recorded
    status = run(tool, "telemetry", "status")
    assert status.exit_code == 0
    assert status.stdout.startswith("telemetry:        on")
    assert json.loads(run(tool, "telemetry", "status", "--json").stdout)["pending_events"] == 1
    inspected = run(tool, "telemetry", "inspect", "--json")
    assert [json.loads(line)["event"] for line in inspected.stdout.splitlines()] == ["cli_command"]
    for args in (
        ["telemetry", "inspect"],
        ["telemetry", "upload", "--dry-run"],
        ["telemetry", "upload"],  # no key: exits 1, records nothing either
        ["telemetry", "local"],
        ["telemetry", "enable"],
        ["telemetry", "--help"],
        ["telemetry", "inspect", "--limit", "-1"],  # a usage error
    ):
        run(tool, *args)
    assert recorded_commands(spool_path) == ["train"]


def test_the_group_name_is_the_tool_s_choice(spool_path: Path) -> None:
    tool, _telemetry = make_tool("before", name="privacy")
    assert "privacy" in run(tool, "--help").stdout
    assert run(tool, "privacy", "status").exit_code == 0
    assert run(tool, "telemetry", "status").exit_code == 2


@pytest.mark.parametrize("instrumented", ["before", "after"])
def test_after_disable_nothing_more_is_recorded_in_the_same_process(
    instrumented: str, home: Path
) -> None:
    tool, telemetry = make_tool(instrumented)
    assert run(tool, "train").exit_code == 0
    install_id = home / ".config" / "luxonis-telemetry" / "install_id"
    assert install_id.exists()
    disabled = run(tool, "telemetry", "disable")
    assert disabled.exit_code == 0, disabled.output
    after = sorted(str(p.relative_to(home)) for p in home.rglob("*") if not p.is_dir())
    assert after == [".config/luxonis-telemetry/settings.json"]
    assert run(tool, "train").exit_code == 0  # the tool still works
    telemetry.capture("late", {"n": 1})
    Telemetry("another_library").capture("late")
    now = sorted(str(p.relative_to(home)) for p in home.rglob("*") if not p.is_dir())
    assert now == after
    assert not install_id.exists()


TOOL = """
import sys
import typer
from luxonis_telemetry import Telemetry
from luxonis_telemetry.cli import add_commands
from luxonis_telemetry.instrument import instrument_typer

app = typer.Typer()
telemetry = Telemetry("mytool")
if sys.argv[1] == "before":
    instrument_typer(app, telemetry)

@app.command()
def train() -> None:
    typer.echo("training")

add_commands(app, name="telemetry")
if sys.argv[1] == "after":
    instrument_typer(app, telemetry)
del sys.argv[1]
app()
"""


@pytest.mark.parametrize("instrumented", ["before", "after"])
def test_a_real_tool_process(instrumented: str, tmp_path: Path, spool_path: Path) -> None:
    script = tmp_path / "mytool.py"
    script.write_text(TOOL)

    def mytool(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), instrumented, *args],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )

    assert mytool("train").stdout == "training\n"
    status = mytool("telemetry", "status")
    assert status.returncode == 0, status.stderr
    assert "pending:          1 events" in status.stdout
    listed = mytool("telemetry", "inspect", "--json")
    assert [json.loads(line)["properties"]["command"] for line in listed.stdout.splitlines()] == [
        "train"
    ]
    assert mytool("telemetry", "disable").returncode == 0
    assert mytool("train").stdout == "training\n"
    assert not spool_path.exists()
