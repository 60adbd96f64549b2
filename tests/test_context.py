"""Context: luxonis-ml's names and keys, coarse facts only, and never a process started."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import pytest

import luxonis_telemetry
from luxonis_telemetry import context
from luxonis_telemetry.context import (
    BASE_CONTEXT_KEYS,
    RESERVED_METADATA_KEYS,
    base_context,
    host_context,
    host_context_provider,
    is_ci,
    is_luxonis_cloud,
    normalized_processor,
    spooled_context,
    system_context,
    system_context_provider,
    system_metadata,
)
from tests.conftest import run_python

HOST_KEYS = {"os", "os_version", "arch", "python_version"}
SYSTEM_KEYS = HOST_KEYS | {"ci", "is_luxonis_cloud", "processor", "cpu_count", "is_docker"}


def test_luxonis_mls_names_are_exported_from_the_package() -> None:
    for name in (
        "RESERVED_METADATA_KEYS",
        "host_context",
        "host_context_provider",
        "is_ci",
        "is_luxonis_cloud",
        "normalized_processor",
        "system_context",
        "system_context_provider",
    ):
        assert getattr(luxonis_telemetry, name) is getattr(context, name), name


def test_reserved_keys_are_luxonis_mls() -> None:
    assert (
        frozenset(
            {
                "$process_person_profile",
                "$session_id",
                "source_product",
                "source_component",
                "sdk_version",
            }
        )
        == RESERVED_METADATA_KEYS
    )


def test_host_context_is_what_platform_says() -> None:
    facts = host_context()
    assert set(facts) == HOST_KEYS
    assert facts["os"] == platform.system()
    assert facts["os_version"] == platform.release()
    assert facts["arch"] == platform.machine()
    assert facts["python_version"] == ".".join(map(str, sys.version_info[:3]))


def test_system_context_has_luxonis_mls_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    facts = system_context()
    assert set(facts) == SYSTEM_KEYS
    assert facts["ci"] is False
    assert facts["is_luxonis_cloud"] is False
    assert facts["processor"] == normalized_processor()
    assert facts["cpu_count"] == os.cpu_count()
    assert facts["is_docker"] is os.path.exists("/.dockerenv")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("LUXONIS_TELEMETRY_IS_LUXONIS_CLOUD", "1")
    facts = system_context()
    assert facts["ci"] is True
    assert facts["is_luxonis_cloud"] is True


def test_providers_give_the_same_facts() -> None:
    assert host_context_provider(object()) == host_context()
    assert system_context_provider(None) == system_context()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("1", True),
        ("true", True),
        ("YES", True),
        ("0", False),
        ("false", False),
        ("", False),
        ("garbage", False),
    ],
)
def test_is_luxonis_cloud(
    value: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is not None:
        monkeypatch.setenv("LUXONIS_TELEMETRY_IS_LUXONIS_CLOUD", value)
    assert is_luxonis_cloud() is expected


def test_is_ci_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_ci() is False
    monkeypatch.setenv("CI", "true")
    assert is_ci() is True


@pytest.mark.parametrize(
    ("machine", "family"),
    [
        ("aarch64", "arm64"),
        ("arm64", "arm64"),
        ("ARM64", "arm64"),
        ("armv7l", "arm"),
        ("armv6l", "arm"),
        ("x86_64", "x86_64"),
        ("AMD64", "x86_64"),
        ("i686", "x86"),
        ("i386", "x86"),
        ("x86", "x86"),
        ("ppc64le", "powerpc"),
        ("powerpc", "powerpc"),
        ("riscv64", "riscv"),
        ("s390x", "unknown"),
        ("sparc64", "unknown"),
    ],
)
def test_normalized_processor(machine: str, family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "_uname", lambda: ("Linux", "6.0", machine))
    assert normalized_processor() == family


@pytest.mark.parametrize(
    ("variable", "family"), [("AMD64", "x86_64"), ("ARM64", "arm64"), (None, "unknown")]
)
def test_normalized_processor_without_a_machine_type(
    variable: str | None, family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context, "_uname", lambda: ("Windows", "10", ""))
    if variable is None:
        monkeypatch.delenv("PROCESSOR_ARCHITECTURE", raising=False)
    else:
        monkeypatch.setenv("PROCESSOR_ARCHITECTURE", variable)
    assert normalized_processor() == family


def test_system_metadata_adds_ours_to_luxonis_mls() -> None:
    facts = system_metadata()
    assert set(facts) == SYSTEM_KEYS | {"container", "timezone_offset_minutes"}
    assert isinstance(facts["container"], bool)
    assert isinstance(facts["timezone_offset_minutes"], int)
    assert -24 * 60 < facts["timezone_offset_minutes"] < 24 * 60
    assert json.loads(json.dumps(facts)) == facts


def test_nothing_personal_in_the_metadata(home: Path) -> None:
    text = json.dumps(system_metadata())
    for private in (platform.node(), str(home), os.environ.get("USER", "\0")):
        if private:
            assert private not in text


def test_spooled_context() -> None:
    facts = spooled_context(
        library_name="lib",
        library_version="1.2",
        session_id="s",
        install_id=None,
        source_component="cli",
    )
    assert tuple(facts) == BASE_CONTEXT_KEYS
    assert facts["os"] == platform.system()
    assert facts["os_version"] == platform.release()
    assert facts["library_name"] == "lib"
    assert facts["library_version"] == "1.2"
    assert facts["session_id"] == "s"
    assert facts["install_id"] is None
    assert facts["ci"] is False
    assert facts["source_component"] == "cli"
    assert not set(facts) & RESERVED_METADATA_KEYS - {"source_component"}


def test_base_context_is_luxonis_mls() -> None:
    """Same call, same answer as luxonis_ml.telemetry.context.base_context."""
    facts = base_context(
        library_name="lib", library_version="1.2", session_id="s", source_component=None
    )
    assert facts == {
        "$process_person_profile": False,
        "$session_id": "s",
        "source_product": "lib",
        "source_component": "lib",
        "sdk_version": "1.2",
    }
    assert set(facts) == RESERVED_METADATA_KEYS
    assert (
        base_context(
            library_name="lib", library_version=None, session_id="s", source_component="cli"
        )["source_component"]
        == "cli"
    )


NO_PROCESS = r"""
import json, os, sys

watched = ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system", "os.fork",
           "os.forkpty", "os.spawn", "os.startfile")
events = []

def hook(name, args):
    if name in watched:
        events.append(name)

sys.addaudithook(hook)

from luxonis_telemetry import Telemetry, context

context.system_metadata()
context.system_context()
context.host_context()
context.normalized_processor()
context.base_context(library_name="l", library_version=None, session_id="s",
                     source_component="c")
context.spooled_context(library_name="l", library_version=None, session_id="s",
                        install_id=None, source_component="c")
telemetry = Telemetry(
    "lib",
    system_context_providers=[context.system_context_provider, context.host_context_provider],
)
telemetry.capture("e", {"a": 1}, include_system_metadata=True)
telemetry.capture("e", {"a": 2}, include_system_metadata=True)
telemetry.flush()
checked = list(events)
marker_before = os.path.exists(sys.argv[1])

import platform
platform.processor()  # the control: this runs `uname -p` from PATH
print(json.dumps({"checked": checked, "marker_before": marker_before,
                  "control": events[len(checked):]}))
"""


def test_no_process_is_ever_started(tmp_path: Path, spool_path: Path) -> None:
    """``platform.processor()`` runs ``uname -p``; ours never does, inside capture or out."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "uname_ran"
    uname = bin_dir / "uname"
    uname.write_text(f"#!/bin/sh\ntouch {marker}\necho x86_64\n")
    uname.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = tmp_path / "no_process.py"
    script.write_text(NO_PROCESS)
    done = run_python(
        f"import sys; sys.argv = ['x', {str(marker)!r}]; exec(open({str(script)!r}).read())",
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["checked"] == []
    assert report["marker_before"] is False
    # the audit hook and the planted `uname` do see a process when one is started
    assert report["control"]
    assert marker.exists()
    records = [
        json.loads(line)
        for path in spool_path.glob("*.jsonl")
        for line in path.read_bytes().splitlines()
    ]
    assert len(records) == 2
    assert all(set(r["context"]) >= SYSTEM_KEYS for r in records)
