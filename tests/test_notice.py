"""The first-run notice (issue 10.1): once per user, on a terminal, never to a pipe."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig, TelemetryDefaults, _state
from luxonis_telemetry._notice import notice_text
from tests.conftest import run_python

pytestmark = pytest.mark.skipif(os.name == "nt", reason="needs a pseudo-terminal")

TOOL = (
    "from luxonis_telemetry import Telemetry, TelemetryConfig, TelemetryDefaults, _state\n"
    "defaults = TelemetryDefaults(product_name='Acme Converter',\n"
    "                             privacy_url='https://example.com/acme-privacy')\n"
    "t = Telemetry('acme', config=TelemetryConfig.from_environ(defaults))\n"
    "t.capture('convert.start')\n"
    "t.capture('convert.end')\n"
    "print(_state.state.notice_shown, flush=True)\n"
)


def on_terminal(code: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Run ``code`` with stderr on a real pseudo-terminal: (what the terminal showed, stdout)."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=dict(os.environ) if env is None else env,
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if process.poll() is not None and not select.select([master], [], [], 0)[0]:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            shown += chunk
        out, _ = process.communicate(timeout=60)
    finally:
        os.close(master)
    assert process.returncode == 0, shown
    return shown.decode("utf-8", "replace"), out.decode()


def marker(home: Path) -> Path:
    return home / ".config" / "luxonis-telemetry" / "notice_shown"


def test_shown_once_on_a_terminal_then_never_again(home: Path) -> None:
    shown, out = on_terminal(TOOL)
    assert out.strip() == "True"  # this run uploads nothing at exit
    assert shown.count("This notice is shown once") == 1
    assert "Acme Converter records anonymous usage events and uploads them later" in shown
    assert "luxonis-telemetry inspect" in shown
    assert "luxonis-telemetry disable" in shown
    assert "https://example.com/acme-privacy" in shown
    assert marker(home).exists()
    again, out = on_terminal(TOOL)
    assert again == ""
    assert out.strip() == "False"


def test_a_pipe_gets_nothing_and_no_marker_is_made(home: Path) -> None:
    result = run_python(TOOL)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() == "False"
    assert not marker(home).exists()
    shown, _out = on_terminal(TOOL)  # a later run on a terminal still tells the person
    assert "This notice is shown once" in shown


@pytest.mark.parametrize("ci", [{"CI": "true"}, {"GITHUB_ACTIONS": "true"}])
def test_ci_gets_nothing(home: Path, ci: dict[str, str]) -> None:
    shown, out = on_terminal(TOOL, env={**os.environ, **ci})
    assert shown == ""
    assert out.strip() == "False"
    assert not marker(home).exists()


@pytest.mark.parametrize(
    "opt_out",
    [{"DO_NOT_TRACK": "1"}, {"LUXONIS_TELEMETRY_ENABLED": "0"}, {"LUXONIS_TELEMETRY_DEBUG": "1"}],
)
def test_opted_out_or_debug_gets_nothing_and_nothing_is_created(
    home: Path, opt_out: dict[str, str]
) -> None:
    shown, out = on_terminal(TOOL, env={**os.environ, **opt_out})
    assert "This notice is shown once" not in shown
    assert out.strip() == "False"
    assert not marker(home).exists()
    if "LUXONIS_TELEMETRY_DEBUG" not in opt_out:
        assert [p for p in home.rglob("*") if not p.is_dir()] == []


def test_local_mode_says_nothing_is_uploaded(home: Path) -> None:
    shown, _out = on_terminal(TOOL, env={**os.environ, "LUXONIS_TELEMETRY_ENABLED": "local"})
    assert "Acme Converter records anonymous usage events on this machine only" in shown
    assert "uploads them" not in shown


def test_jupyter_kernel_output_gets_it_once(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a kernel stderr is no terminal, but a person reads the cell's output."""
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    telemetry = Telemetry("a")
    telemetry.capture("one")
    telemetry.capture("two")
    assert capsys.readouterr().err.count("This notice is shown once") == 1
    assert _state.state.notice_shown
    _state.reset()  # a new kernel: the marker remembers
    Telemetry("a").capture("three")
    assert capsys.readouterr().err == ""
    assert not _state.state.notice_shown


def test_without_terminal_or_kernel_nothing_is_shown(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Telemetry("a").capture("one")
    assert capsys.readouterr().err == ""
    assert not marker(home).exists()
    assert not _state.state.notice_shown


def test_the_text_names_the_product_and_its_page() -> None:
    plain = notice_text(TelemetryConfig())
    assert plain.startswith("This Luxonis tool records anonymous usage events and uploads")
    assert all(len(line) <= 88 for line in plain.splitlines())
    assert "More:" not in plain
    named = notice_text(
        TelemetryConfig.from_environ(
            TelemetryDefaults(product_name="HubAI", privacy_url="https://hub.example/privacy")
        )
    )
    assert named.startswith("HubAI records")
    assert "More: https://hub.example/privacy" in named


def test_the_privacy_page_quotes_the_notice_word_for_word() -> None:
    """docs/privacy.md shows people what they will read; it must not drift from the code."""
    page = (Path(__file__).parents[1] / "docs" / "privacy.md").read_text(encoding="utf-8")
    quoted = page.split("## The one-time notice", 1)[1].split("```text\n", 1)[1].split("```")[0]
    assert quoted == notice_text(TelemetryConfig()) + "\n"
