"""Privacy and security: opt-out means no file and no socket; the key never leaks."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from luxonis_telemetry import Telemetry, TelemetryConfig
from luxonis_telemetry.cli import app
from luxonis_telemetry.testing import FakePostHog
from tests.conftest import REPO, run_python

runner = CliRunner()
KEY = "phc_SuperSecretProjectKey_42"

# A whole program: capture, identify, an instrumented Typer command, flush, exit.
# An audit hook records every socket and every file opened for writing.
PROGRAM = """
import json, os, sys
events = []
def audit(event, args):
    if event.startswith("socket."):
        events.append(event)
    elif event == "open" and isinstance(args[0], str) and args[1] and any(c in str(args[1]) for c in "wax+"):
        events.append("write " + args[0])
    elif event == "open" and isinstance(args[0], str) and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        events.append("write " + args[0])
    elif event in ("os.mkdir", "os.rename", "os.link", "os.symlink"):
        events.append(event + " " + str(args[0]))
sys.addaudithook(audit)

import typer
from luxonis_telemetry import Telemetry, TelemetryConfig, instrument_typer
t = Telemetry("luxonis_ml", config=TelemetryConfig(enabled=True, api_key="KEY", endpoint="ENDPOINT"))
t.capture("train.start", {"epochs": 20}, include_system_metadata=True)
t.identify("user", {"plan": "pro"})
app = typer.Typer()
instrument_typer(app, t)
@app.command()
def run():
    t.capture("inside")
app([], standalone_mode=False)
t.flush()
t.shutdown()
print(json.dumps(events))
"""


def full_program(env: dict[str, str], server: FakePostHog) -> list[str]:
    code = PROGRAM.replace("KEY", KEY).replace("ENDPOINT", server.url)
    result = run_python(code, env={**env, "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("how", ["ENABLED=0", "DO_NOT_TRACK=1", "disable"])
def test_opt_out_creates_no_file_and_opens_no_socket(
    home: Path, server: FakePostHog, how: str
) -> None:
    env = dict(os.environ)
    if how == "disable":
        assert runner.invoke(app, ["disable"]).exit_code == 0
        before = sorted(p.relative_to(home) for p in home.rglob("*"))
    else:
        name, value = how.split("=")
        env["LUXONIS_TELEMETRY_" + name if name == "ENABLED" else name] = value
        before = []
    audited = full_program(env, server)
    assert [e for e in audited if e.startswith("socket.")] == []
    assert [e for e in audited if str(home) in e] == []
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before
    assert server.requests == 0


def test_enabled_program_for_comparison_does_write(home: Path, server: FakePostHog) -> None:
    audited = full_program(dict(os.environ), server)
    assert any("active.luxonis_ml.jsonl" in e for e in audited)  # the audit hook does see writes


def test_api_key_appears_only_in_the_private_destinations_record(
    home: Path,
    spool_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    with FakePostHog() as server:
        telemetry = Telemetry("lib", config=TelemetryConfig(api_key=KEY, endpoint=server.url))
        telemetry.capture("e", {"note": f"key={KEY}", "nested": {"deeper": [KEY]}})
        telemetry.identify("u", {"k": KEY})
        outputs = []
        for args in (
            ["status"],
            ["status", "--json"],
            ["inspect"],
            ["inspect", "--json"],
            ["upload", "--dry-run"],
            ["upload", "--dry-run", "--json"],
        ):
            result = runner.invoke(app, args)
            outputs.append(result.output)
        bundle = tmp_path / "b.gz"
        outputs.append(runner.invoke(app, ["export", str(bundle)]).output)
        monkeypatch.setenv(
            "LUXONIS_TELEMETRY_ENDPOINT", "http://127.0.0.1:1"
        )  # refused: error text
        outputs.append(runner.invoke(app, ["upload", "--timeout", "2"]).output)
        monkeypatch.delenv("LUXONIS_TELEMETRY_ENDPOINT")
        outputs.append(runner.invoke(app, ["upload"]).output)
        outputs.append(runner.invoke(app, ["upload", "--json"]).output)
        assert server.event_count == 2
    for output in outputs:
        assert KEY not in output
    for record in caplog.records:
        assert KEY not in record.getMessage()
    assert KEY not in gzip.decompress(bundle.read_bytes()).decode()
    for path in spool_path.iterdir():
        text = path.read_bytes().decode("latin-1")
        if path.name == "destinations.json":
            assert KEY in text
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        else:
            assert KEY not in text, path.name
    assert KEY not in repr(telemetry.config)


def test_permissions_hold_under_a_permissive_umask(
    home: Path, spool_path: Path, tmp_path: Path
) -> None:
    code = (
        "import os, sys\n"
        "os.umask(0)\n"
        "from luxonis_telemetry import Telemetry, TelemetryConfig\n"
        "t = Telemetry('lib', config=TelemetryConfig(api_key='k'))\n"
        "for n in range(3): t.capture('e')\n"
        "from luxonis_telemetry.cli import main\n"
        "sys.argv = ['x', 'export', sys.argv[1]]\n"
        "main()\n"
    )
    bundle = tmp_path / "out.gz"
    result = subprocess.run(
        [sys.executable, "-c", code, str(bundle)],
        env=dict(os.environ),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(spool_path.stat().st_mode) == 0o700
    for path in spool_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    config = home / ".config" / "luxonis-telemetry"
    assert stat.S_IMODE((config / "install_id").stat().st_mode) == 0o600


def test_redaction_of_secrets_and_home_paths_in_nested_values(home: Path, spool_path: Path) -> None:
    telemetry = Telemetry("lib")
    telemetry.capture(
        "e",
        {
            "config": {
                "db": {"password": "pw1", "hosts": [{"auth_token": "tok"}]},
                "paths": [str(home / "data")],
            },
            "tuple": (str(home / "x"), {"client_secret": "s3"}),
            "Authorization": "Bearer abc",
        },
    )
    line = next(spool_path.glob("active.*")).read_text()
    for secret in ("pw1", '"tok"', '"s3"', "Bearer abc", str(home)):
        assert secret not in line
    record = json.loads(line)
    # luxonis-ml's rule: a path is never recorded, not even with the home folder hidden
    assert record["properties"]["config"]["paths"] == ["<redacted>"]
    assert record["properties"]["tuple"][0] == "<redacted>"
