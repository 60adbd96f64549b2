"""Disk faults: the host never sees an exception, drops are counted, the CLI says what is wrong."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from luxonis_telemetry import Telemetry
from luxonis_telemetry.cli import app
from luxonis_telemetry.spool import Spool
from tests.conftest import REPO, run_python, spool_records
from tests.reliability.conftest import immutable, tiny_filesystem

runner = CliRunner()


def test_read_only_spool_folder(spool_path: Path) -> None:
    Telemetry("a").capture("first")
    with immutable(spool_path):
        telemetry = Telemetry("b")
        for _ in range(3):
            telemetry.capture("blocked")
        assert telemetry.dropped == 3
        result = runner.invoke(app, ["upload"])
        assert "Traceback" not in result.output
        assert result.exit_code == 1
        assert len(result.stderr.strip().splitlines()) == 1
        status = runner.invoke(app, ["status"])
        assert "read-only" in status.stdout or "problem" in status.stdout
    Telemetry("b").capture("later")
    assert {r["event"] for r in spool_records(spool_path)} == {"first", "later"}
    state = Spool(str(spool_path)).read_state()
    assert state.dropped["disk_error"] == 3


def test_lock_file_cannot_be_opened(spool_path: Path) -> None:
    Telemetry("a").capture("first")
    from luxonis_telemetry import _state

    _state.reset()  # a fresh process: it has to open the lock file
    lock = spool_path / "lock"
    with immutable(lock):
        telemetry = Telemetry("a")
        telemetry.capture("blocked")
        assert telemetry.dropped == 1
    Telemetry("a").capture("after")
    assert [r["event"] for r in spool_records(spool_path)] == ["first", "after"]


def test_lock_held_forever_drops_after_a_bounded_wait(spool_path: Path) -> None:
    Telemetry("a").capture("first")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
            str(spool_path / "lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        telemetry = Telemetry("a")
        started = time.monotonic()
        telemetry.capture("stuck")
        assert time.monotonic() - started < 10
        assert telemetry.dropped == 1
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdin.close()  # type: ignore[union-attr]
        holder.stdout.close()  # type: ignore[union-attr]
    Telemetry("a").capture("after")
    assert Spool(str(spool_path)).read_state().dropped["lock_timeout"] == 1


def test_full_disk_enospc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with tiny_filesystem(tmp_path / "tiny", "64k") as mount:
        spool = mount / "spool"
        monkeypatch.setenv("LUXONIS_TELEMETRY_SPOOL_DIR", str(spool))
        telemetry = Telemetry("a")
        for n in range(400):
            telemetry.capture("fill", {"n": n, "pad": "x" * 200})
        assert telemetry.dropped > 0
        records = spool_records(spool)
        assert len(records) + telemetry.dropped == 400
        numbers = [r["properties"]["n"] for r in records]
        assert numbers == sorted(numbers)
        result = runner.invoke(app, ["inspect", "--json"])
        assert result.exit_code == 0
        assert len(result.stdout.splitlines()) == len(records)


def test_file_size_limit_in_a_real_program(spool_path: Path) -> None:
    code = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from luxonis_telemetry import Telemetry\n"
        "t = Telemetry('a')\n"
        "for i in range(100): t.capture('e', {'i': i})\n"
        "print(t.dropped)\n"
    )
    result = run_python(code)
    assert result.returncode == 0
    assert result.stderr == ""
    assert int(result.stdout) > 0


def test_spool_deleted_while_a_process_appends(spool_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from luxonis_telemetry import Telemetry\n"
        "t = Telemetry('a')\n"
        "n = 0\n"
        "for line in sys.stdin:\n"
        "    for _ in range(int(line)):\n"
        "        t.capture('e', {'n': n}); n += 1\n"
        "    print(t.dropped, flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("50\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "0"
    import shutil

    shutil.rmtree(spool_path)
    process.stdin.write("50\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "0"
    # another process must share the recreated folder's lock, not a deleted one
    other = Telemetry("a")
    other.capture("from.other")
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    process.stdout.close()
    records = spool_records(spool_path)
    assert sorted(r["properties"].get("n", -1) for r in records) == [-1, *range(50, 100)]


def test_symlink_planted_as_a_spool_file_is_not_followed(spool_path: Path, tmp_path: Path) -> None:
    Telemetry("a").capture("first")
    from luxonis_telemetry import _state

    _state.reset()
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    active = spool_path / "active.b.jsonl"
    active.symlink_to(victim)
    telemetry = Telemetry("b")
    telemetry.capture("redirected?")
    assert telemetry.dropped == 1
    assert victim.read_text() == "keep me\n"
    state_link = spool_path / "state.json"
    state_link.unlink(missing_ok=True)
    state_link.symlink_to(victim)
    Telemetry("c").capture("counts")  # saving the drop counter replaces the link, not the victim
    assert victim.read_text() == "keep me\n"


def test_spool_path_is_a_file_for_cli_and_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    monkeypatch.setenv("LUXONIS_TELEMETRY_SPOOL_DIR", str(target))
    result = run_python(
        "from luxonis_telemetry import Telemetry; t = Telemetry('a'); t.capture('e'); print(t.dropped)"
    )
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "1", "")
    for command in (["inspect"], ["upload"], ["purge", "--yes"], ["export", str(tmp_path / "b")]):
        cli = runner.invoke(app, command)
        assert cli.exit_code == 1
        assert cli.stderr.strip().splitlines() == [
            f"luxonis-telemetry: error: spool path {target} is not a folder"
        ]
    assert "is not a folder" in runner.invoke(app, ["status"]).stdout


def test_sigkill_during_state_write_leaves_readable_state(spool_path: Path) -> None:
    code = (
        "from luxonis_telemetry.spool import Spool\n"
        "import sys\n"
        "s = Spool(sys.argv[1])\n"
        "n = 0\n"
        "while True:\n"
        "    s.update_state(lambda st: setattr(st, 'quarantined', st.quarantined + 1))\n"
        "    n += 1\n"
        "    if n == 20: print('go', flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(spool_path)], stdout=subprocess.PIPE, cwd=REPO
    )
    assert process.stdout is not None
    process.stdout.readline()
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()
    assert Spool(str(spool_path)).read_state().quarantined >= 20
