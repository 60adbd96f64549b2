"""The exit hook, exercised by real programs that capture and exit."""

from __future__ import annotations

import glob
import os
import pwd
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from luxonis_telemetry.spool import Spool
from luxonis_telemetry.testing import Action, FakePostHog
from tests.conftest import (
    REPO,
    free_port,
    helpers_of,
    on_terminal,
    run_python,
    spool_records,
    wait_until,
)

PROGRAM = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
from luxonis_telemetry import Telemetry
t = Telemetry("exiting")
for n in range(10):
    t.capture("work", {"n": n})
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def run_program(**env: str) -> tuple[float, str, int]:
    full = {**os.environ, "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1", **env}
    started = time.monotonic()
    result = run_python(PROGRAM, env=full)
    return time.monotonic() - started, result.stderr, result.returncode


@pytest.fixture
def exit_env(posthog_env: FakePostHog, monkeypatch: pytest.MonkeyPatch) -> FakePostHog:
    monkeypatch.setenv("LUXONIS_TELEMETRY_EXIT_TIMEOUT", "3")
    return posthog_env


def test_healthy_endpoint_gets_the_events_soon_after_exit(
    exit_env: FakePostHog, spool_path: Path
) -> None:
    _elapsed, stderr, code = run_program()
    assert code == 0
    assert "helper" in stderr and "started" in stderr
    assert exit_env.wait_for(10, timeout=10)
    assert wait_until(lambda: not helpers_of(spool_path), 30)
    assert len(exit_env.uuid_counts()) == 10
    assert spool_records(spool_path) == []


def test_starting_the_helper_prints_nothing_even_in_development_mode(
    exit_env: FakePostHog, spool_path: Path
) -> None:
    """Review: ``-X dev`` showed "ResourceWarning: subprocess ... is still running" at exit."""
    program = PROGRAM.replace("logging.basicConfig(", "(lambda **_: None)(")
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", program],
        env={**os.environ, "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert exit_env.wait_for(10, timeout=10)  # the helper did start
    assert wait_until(lambda: not helpers_of(spool_path), 30)


def test_exit_code_is_untouched(exit_env: FakePostHog) -> None:
    _elapsed, _stderr, code = run_program()
    assert code == 0
    result = run_python(
        PROGRAM.replace("sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)", "sys.exit(3)"),
        env=dict(os.environ, LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="1"),
    )
    assert result.returncode == 3


@pytest.mark.parametrize("fault", ["refused", "hang"])
def test_unreachable_endpoint_neither_delays_exit_nor_leaves_processes(
    exit_env: FakePostHog, spool_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    if fault == "refused":
        monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    else:
        exit_env.set_default(Action("hang"))
    elapsed, stderr, code = run_program()
    assert code == 0
    assert elapsed < 5, elapsed  # generous: the benchmark measures the real cost
    assert "started" in stderr
    # the helper gives up within its budget (3 s here) plus the grace period
    assert wait_until(lambda: not helpers_of(spool_path), 30)
    assert len(spool_records(spool_path)) == 10
    assert wait_until(lambda: Spool(str(spool_path)).read_state().next_attempt_at > 0, 10)
    # the next exit backs off: no helper, no network
    _elapsed, stderr, _code = run_program()
    assert "backing off" in stderr
    assert "started" not in stderr


def test_no_helper_under_ci_unless_forced(exit_env: FakePostHog, spool_path: Path) -> None:
    result = run_python(
        PROGRAM, env=dict(os.environ, CI="true", LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="")
    )
    assert result.returncode == 0
    assert "running under CI" in result.stderr
    assert "started" not in result.stderr
    assert len(spool_records(spool_path)) == 10
    forced = run_python(
        PROGRAM, env=dict(os.environ, CI="true", LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="1")
    )
    assert "started" in forced.stderr
    assert exit_env.wait_for(20, timeout=30)


def test_no_helper_without_a_key(
    server: FakePostHog, spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_ENDPOINT", server.url)
    _elapsed, stderr, _code = run_program()
    assert "helper" not in stderr
    assert server.requests == 0
    assert len(spool_records(spool_path)) == 10


def test_opted_out_by_upload_on_exit(exit_env: FakePostHog, spool_path: Path) -> None:
    _elapsed, stderr, _code = run_program(LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="0")
    assert "helper" not in stderr
    assert len(spool_records(spool_path)) == 10


def test_programs_exiting_together_send_each_event_once(
    exit_env: FakePostHog, spool_path: Path
) -> None:
    import subprocess
    import sys

    env = dict(os.environ, LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="1")
    programs = [
        subprocess.Popen([sys.executable, "-c", PROGRAM], env=env, stderr=subprocess.DEVNULL)
        for _ in range(4)
    ]
    for program in programs:
        assert program.wait(timeout=60) == 0
    assert wait_until(lambda: not helpers_of(spool_path), 30)
    # whatever a busy helper could not take is sent by the next upload
    from luxonis_telemetry import upload

    assert upload(budget=30).ok
    counts = exit_env.uuid_counts()
    assert len(counts) == 40
    assert max(counts.values()) == 1


def test_a_hanging_in_process_backend_cannot_hold_the_exit(spool_path: Path) -> None:
    code = (
        "import threading\n"
        "from luxonis_telemetry import Telemetry, TelemetryConfig\n"
        "class Stuck:\n"
        "    def capture(self, event): threading.Event().wait()\n"
        "    def identify(self, user_id, traits): pass\n"
        "    def flush(self): pass\n"
        "    def shutdown(self): pass\n"
        "Telemetry.register_backend('stuck', lambda cfg: Stuck())\n"
        "Telemetry('lib', config=TelemetryConfig(backend='stuck')).capture('e')\n"
    )
    started = time.monotonic()
    result = run_python(code, env={**os.environ, "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1"})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10  # 2 s budget + 1 s grace, generously bounded
    assert len(spool_records(spool_path)) == 1  # not confirmed, so still pending


# -- how the helper is started ------------------------------------------------------------

WATCHED_EXIT = """
import atexit, os, sys
def after_our_hook():  # registered first, so it runs after the library's own hook
    with open(sys.argv[1], "w") as handle:
        handle.write(repr(sorted({"subprocess", "locale", "re"} & set(sys.modules))))
atexit.register(after_our_hook)
if len(sys.argv) > 2:
    def refuse(*args, **kwargs):
        raise NotImplementedError("no setsid here")
    os.posix_spawn = refuse
from luxonis_telemetry import Telemetry
Telemetry("exiting").capture("work")
"""


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="POSIX only")
def test_the_helper_starts_without_importing_subprocess(
    exit_env: FakePostHog, spool_path: Path, tmp_path: Path
) -> None:
    """Issue 12: ``import subprocess`` (with locale and re) cost every exit about 10 ms."""
    seen = tmp_path / "modules.txt"
    result = subprocess.run(
        [sys.executable, "-I", "-c", WATCHED_EXIT, str(seen)],
        env={**os.environ, "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert "subprocess" not in seen.read_text()
    assert exit_env.wait_for(1, timeout=30)
    assert wait_until(lambda: not helpers_of(spool_path), 30)


def test_without_posix_spawn_the_helper_starts_through_subprocess(
    exit_env: FakePostHog, spool_path: Path, tmp_path: Path
) -> None:
    seen = tmp_path / "modules.txt"
    result = subprocess.run(
        [sys.executable, "-I", "-c", WATCHED_EXIT, str(seen), "no-posix-spawn"],
        env={**os.environ, "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert "subprocess" in seen.read_text()
    assert exit_env.wait_for(1, timeout=30)
    assert wait_until(lambda: not helpers_of(spool_path), 30)


def test_the_helper_holds_no_pipe_the_hosts_parent_waits_on(
    exit_env: FakePostHog, spool_path: Path
) -> None:
    """A parent reading the host's inherited pipe must see it closed when the host exits."""
    exit_env.delay = 3.0  # the helper is still uploading when the host is gone
    read_end, write_end = os.pipe()
    try:
        host = subprocess.Popen(
            [sys.executable, "-c", PROGRAM],
            env={**os.environ, "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1"},
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_end)
        write_end = -1
        assert host.wait(timeout=60) == 0
        assert helpers_of(spool_path)  # still running (it waits ~3 s for the answer)
        ready, _, _ = select.select([read_end], [], [], 1.0)
        assert ready and os.read(read_end, 1) == b""  # end of file: nobody holds it
        assert helpers_of(spool_path)  # ... and the helper was alive all along
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    assert exit_env.wait_for(10, timeout=30)
    assert wait_until(lambda: not helpers_of(spool_path), 30)


def _started_program_writes(tmp_path: Path, env: dict[str, str]) -> Path:
    """Start a tiny program through the helper's starter; the file it writes."""
    from luxonis_telemetry import _exit

    marker = tmp_path / "ran.txt"
    code = f"open({str(marker)!r}, 'w').write('ran')"
    pid = _exit._start_detached([sys.executable, "-I", "-c", code], env)
    assert wait_until(marker.exists, 30)
    assert wait_until(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, 30)
    return marker


def test_an_environment_entry_posix_spawn_refuses_still_starts_the_helper(
    tmp_path: Path,
) -> None:
    """A launcher may leave an entry with an empty name: posix_spawn raises ValueError."""
    marker = _started_program_writes(tmp_path, {**os.environ, "": "oops"})
    assert marker.read_text() == "ran"


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="POSIX only")
def test_without_a_descriptor_listing_the_helper_still_holds_no_inherited_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox without /proc: the descriptors to close are unknown, so subprocess starts it."""
    from luxonis_telemetry import _exit

    real_listdir = os.listdir

    def no_fd_listing(path: object = ".") -> list[str]:
        if path in ("/proc/self/fd", "/dev/fd"):
            raise FileNotFoundError(2, "no such folder", path)
        return real_listdir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "listdir", no_fd_listing)
    monkeypatch.delattr(os, "POSIX_SPAWN_CLOSEFROM", raising=False)
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        pid = _exit._start_detached(
            [sys.executable, "-I", "-c", "import time; time.sleep(5)"], dict(os.environ)
        )
        os.close(write_end)
        write_end = -1
        ready, _, _ = select.select([read_end], [], [], 2.0)
        assert ready and os.read(read_end, 1) == b""  # nobody else holds the write end
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # while the program still runs
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_a_relative_interpreter_path_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """posix_spawn does not search PATH: ``python3`` would run ``./python3`` of the host's folder."""
    from luxonis_telemetry._exit import helper_interpreter

    assert helper_interpreter() == sys.executable
    monkeypatch.setattr(sys, "executable", "python3")
    assert helper_interpreter() is None


# -- no Python interpreter to run a helper with (8.5) -------------------------------------

NO_INTERPRETER = """
import logging, os, subprocess, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
launches, kind, fake_binary = sys.argv[1:4]
real_init = subprocess.Popen.__init__

def spy(self, args, *more, **options):
    with open(launches, "a") as handle:
        handle.write(repr(args) + "\\n")
    real_init(self, args, *more, **options)

subprocess.Popen.__init__ = spy
real_spawn = os.posix_spawn

def spawn_spy(path, argv, *more, **options):
    with open(launches, "a") as handle:
        handle.write(repr(argv) + "\\n")
    return real_spawn(path, argv, *more, **options)

os.posix_spawn = spawn_spy
if kind == "frozen":  # PyInstaller and the like: sys.executable is the application
    sys.frozen = True
sys.executable = fake_binary  # frozen, or a program embedding Python (uWSGI, a plug-in host)
from luxonis_telemetry import Telemetry
telemetry = Telemetry("app")
for n in range(10):
    telemetry.capture("work", {"n": n})
"""


def _no_interpreter_run(tmp_path: Path, kind: str) -> tuple[float, str, Path, Path]:
    launches = tmp_path / "launches.txt"
    relaunched = tmp_path / "relaunched.txt"
    fake_binary = tmp_path / ("MyApp" if kind == "frozen" else "uwsgi")
    fake_binary.write_text(f"#!/bin/sh\necho relaunched >> {relaunched}\n")
    fake_binary.chmod(0o755)
    script = tmp_path / "app.py"
    script.write_text(NO_INTERPRETER)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), str(launches), kind, str(fake_binary)],
        env=dict(os.environ, LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    return elapsed, result.stderr, launches, relaunched


@pytest.mark.parametrize("kind", ["frozen", "embedded"])
def test_without_an_interpreter_events_go_in_process_and_nothing_is_relaunched(
    exit_env: FakePostHog, spool_path: Path, tmp_path: Path, kind: str
) -> None:
    _elapsed, stderr, launches, relaunched = _no_interpreter_run(tmp_path, kind)
    assert not launches.exists(), launches.read_text()  # no process started at all
    assert not relaunched.exists()
    assert "helper" not in stderr or "started" not in stderr
    assert helpers_of(spool_path) == []
    # delivered by the exiting process itself, within its budget
    assert exit_env.event_count == 10, stderr
    assert spool_records(spool_path) == []


@pytest.mark.parametrize("kind", ["frozen", "embedded"])
def test_without_an_interpreter_a_hanging_endpoint_leaves_events_pending(
    exit_env: FakePostHog, spool_path: Path, tmp_path: Path, kind: str
) -> None:
    exit_env.set_default(Action("hang"))
    elapsed, _stderr, launches, relaunched = _no_interpreter_run(tmp_path, kind)
    assert elapsed < 15, elapsed  # the 2 s in-process budget, generously bounded
    assert not launches.exists()
    assert not relaunched.exists()
    assert len(spool_records(spool_path)) == 10


# -- the helper imports nothing planted around it (8.12) ------------------------------------


def test_the_helper_runs_from_the_root_folder_with_an_isolated_path(
    exit_env: FakePostHog, spool_path: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "planted-module-ran.txt"
    planted = f"open({str(marker)!r}, 'a').write(__file__ + '\\n')\n"
    spool_path.mkdir(parents=True, mode=0o700)
    workdir = tmp_path / "workdir"
    program_dir = tmp_path / "program"
    workdir.mkdir()
    program_dir.mkdir()
    for folder in (spool_path, workdir):
        for name in ("json.py", "requests.py", "posthog.py", "luxonis_telemetry.py"):
            (folder / name).write_text(planted)
    program = program_dir / "program.py"
    program.write_text(PROGRAM)
    exit_env.delay = 2.0  # keeps the helper alive long enough to look at it
    result = subprocess.run(
        [sys.executable, str(program)],
        env=dict(os.environ, LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="1"),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "started" in result.stderr
    assert wait_until(lambda: helpers_of(spool_path), 10)
    pid = helpers_of(spool_path)[0]

    def working_folder() -> str:
        try:
            return os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            pytest.fail("the helper finished before it could be looked at")

    # its first statement leaves the host's folder (no mount is held busy)
    assert wait_until(lambda: working_folder() == "/", 10), working_folder()
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        argv = handle.read().split(b"\0")
    assert argv[1] == b"-I"
    assert exit_env.wait_for(10, timeout=30)
    assert wait_until(lambda: not helpers_of(spool_path), 30)
    assert not marker.exists(), marker.read_text()


# -- the run that showed the first-run notice uploads nothing (10.1) -----------------------


def test_the_run_that_shows_the_notice_uploads_nothing_at_exit(
    exit_env: FakePostHog, spool_path: Path
) -> None:
    env = dict(os.environ, LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="1")
    code, output = on_terminal([sys.executable, "-c", PROGRAM], env=env)
    assert code == 0
    text = output.decode(errors="replace")
    assert "luxonis-telemetry disable" in text  # the notice, on the terminal
    assert "first-run notice was shown" in text
    assert "started" not in text
    assert wait_until(lambda: not helpers_of(spool_path), 30)
    assert exit_env.requests == 0
    assert len(spool_records(spool_path)) == 10
    code, output = on_terminal([sys.executable, "-c", PROGRAM], env=env)
    text = output.decode(errors="replace")
    assert code == 0
    assert "luxonis-telemetry disable" not in text  # shown once per user
    assert "started" in text
    assert exit_env.wait_for(20, timeout=30)


# -- in-process delivery at exit on every CPython here (10.9) -------------------------------


def _interpreters() -> list[tuple[str, str]]:
    """(version, path) of every CPython >= 3.10 found: this one, pyenv's, and PATH's."""
    home = pwd.getpwuid(os.getuid()).pw_dir  # the real home: tests isolate HOME
    root = os.environ.get("PYENV_ROOT") or os.path.join(home, ".pyenv")
    candidates = [
        sys.executable,
        *sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python"))),
    ]
    candidates += [found for minor in range(10, 20) if (found := shutil.which(f"python3.{minor}"))]
    versions: dict[str, str] = {}
    probe = "import sys, platform; print(platform.python_implementation(), *sys.version_info[:3])"
    for candidate in candidates:
        try:
            answer = subprocess.run(
                [candidate, "-I", "-c", probe], capture_output=True, text=True, timeout=30
            ).stdout.split()
        except (OSError, subprocess.SubprocessError):
            continue
        if (
            len(answer) == 4
            and answer[0] == "CPython"
            and (int(answer[1]), int(answer[2])) >= (3, 10)
        ):
            versions.setdefault(".".join(answer[1:]), candidate)
    return sorted(versions.items())


IN_PROCESS = """
from luxonis_telemetry import Telemetry, TelemetryConfig

class Printer:
    def __init__(self, config):
        pass
    def capture(self, event):
        print("delivered", event.name, event.properties["n"], flush=True)
    def identify(self, user_id, traits):
        pass
    def flush(self):
        pass
    def shutdown(self):
        pass

Telemetry.register_backend("printer", Printer)
telemetry = Telemetry("inproc", config=TelemetryConfig(backend="printer"))
for n in range(3):
    telemetry.capture("work", {"n": n})
"""


@pytest.mark.parametrize(("version", "python"), _interpreters(), ids=lambda value: value)
def test_in_process_delivery_at_exit_on_every_python(
    version: str, python: str, spool_path: Path
) -> None:
    """A registered backend needs no posthog: the library alone, on each interpreter."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="1", PYTHONPATH=os.pathsep.join(paths))
    result = subprocess.run(
        [python, "-c", IN_PROCESS], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines() == [f"delivered work {n}" for n in range(3)], result.stderr
    assert spool_records(spool_path) == []


def test_registered_backends_get_their_events_under_ci_but_nothing_goes_to_the_network(
    exit_env: FakePostHog, spool_path: Path
) -> None:
    program = (
        IN_PROCESS
        + "Telemetry('networked').capture('work', {'n': 9})\n"
        + "import logging, sys\n"
        + "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format='%(message)s')\n"
    )
    env = dict(os.environ, CI="true")
    env.pop("LUXONIS_TELEMETRY_UPLOAD_ON_EXIT")
    result = run_python(program, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"delivered work {n}" for n in range(3)]
    assert "running under CI" in result.stderr
    assert "started" not in result.stderr
    assert [r["library"] for r in spool_records(spool_path)] == ["networked"]
    assert exit_env.requests == 0
