"""Bundles: export on an air-gapped machine, upload on a connected one, never trusted.

"Another machine" is another HOME in the same test: its own spool, settings and
recorded destinations. Hostile bundles are written byte by byte here.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig
from luxonis_telemetry._routing import DEFAULTS_ENTRY_POINT_GROUP
from luxonis_telemetry.bundle import (
    BUNDLE_FORMAT,
    BundleError,
    export_bundle,
    read_bundle,
    upload_bundle,
)
from luxonis_telemetry.spool import Spool
from luxonis_telemetry.testing import FakePostHog
from luxonis_telemetry.testing import _fake_posthog as fake_module
from luxonis_telemetry.uploader import open_spool
from tests.conftest import spool_records

KEY = "phc_test_key_123"
MIB = 1024 * 1024


def spool() -> Spool:
    found = open_spool()
    assert found is not None
    return found


def capture(count: int, library: str = "lib", **config: Any) -> list[str]:
    telemetry = Telemetry(library, config=TelemetryConfig(**config))
    for n in range(count):
        telemetry.capture("e", {"n": n})
    return [r["uuid"] for r in spool_records(Path(spool().path)) if r["library"] == library]


@pytest.fixture
def other_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Spool]:
    """Move this test to a second machine (fresh HOME); returns that machine's spool."""

    def move(**env: str) -> Spool:
        home = tmp_path / "connected"
        home.mkdir(exist_ok=True)
        for name in list(os.environ):
            if name.startswith("LUXONIS_TELEMETRY_") and name != "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT":
                monkeypatch.delenv(name)
        monkeypatch.setenv("HOME", str(home))
        for name, sub in (
            ("XDG_STATE_HOME", ".local/state"),
            ("XDG_CONFIG_HOME", ".config"),
            ("XDG_DATA_HOME", ".local/share"),
            ("XDG_CACHE_HOME", ".cache"),
        ):
            monkeypatch.setenv(name, str(home / sub))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return spool()

    return move


@pytest.fixture
def bundle(tmp_path: Path) -> Callable[..., Path]:
    """Export what this machine holds to a new bundle file."""
    made = iter(range(1000))

    def export(**options: Any) -> Path:
        path = tmp_path / f"week{next(made)}.ltb.gz"
        export_bundle(spool(), str(path), **options)
        return path

    return export


def lines_of(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).splitlines(keepends=True)


def rewrite(
    path: Path,
    *,
    header: Optional[Callable[[dict[str, Any]], None]] = None,
    records: Optional[Callable[[list[bytes]], list[bytes]]] = None,
    recount: bool = False,
) -> None:
    first, *rest = lines_of(path)
    data = json.loads(first)
    if records is not None:
        rest = records(rest)
    if recount:
        data["count"] = len(rest)
        data["sha256"] = hashlib.sha256(b"".join(rest)).hexdigest()
    if header is not None:
        header(data)
    path.write_bytes(gzip.compress(json.dumps(data).encode() + b"\n" + b"".join(rest)))


# ---------------------------------------------------------------- the round trip


def test_a_bundle_carries_events_to_another_machine_once(
    bundle: Callable[..., Path], other_machine: Callable[..., Spool]
) -> None:
    uuids = capture(5, api_key="phc_airgapped", endpoint="http://127.0.0.1:9")
    path = bundle()
    info = read_bundle(str(path))
    assert info.count == 5 and info.header["format"] == BUNDLE_FORMAT
    assert info.header["libraries"] == {"lib": 5}
    assert b"phc_airgapped" not in gzip.decompress(path.read_bytes())
    assert len(spool_records(Path(spool().path))) == 5  # a copy: still pending here

    with FakePostHog() as server:
        connected = other_machine(
            LUXONIS_TELEMETRY_API_KEY=KEY, LUXONIS_TELEMETRY_ENDPOINT=server.url
        )
        result = upload_bundle(str(path), connected, budget=20)
        assert result.ok and result.sent == 5, result.summary()
        assert sorted(server.uuid_counts()) == sorted(uuids)
        # 8.21: another machine's clock stamped them; PostHog must not shift them
        assert all(e["properties"]["$ignore_sent_at"] is True for e in server.events)

        again = upload_bundle(str(path), connected, budget=20)
        assert again.ok and again.sent == 0
        assert "already uploaded" in again.reasons["bundle"]
        assert server.requests == 1


def test_export_move_removes_events_only_after_the_bundle_verified(
    bundle: Callable[..., Path],
) -> None:
    capture(3)
    path = bundle(move=True)
    assert read_bundle(str(path)).count == 3
    assert spool_records(Path(spool().path)) == []


def test_export_move_keeps_corrupt_lines_in_the_quarantine(bundle: Callable[..., Path]) -> None:
    capture(2)
    folder = Path(spool().path)
    with open(folder / "active.lib.jsonl", "ab") as active:
        active.write(b"{torn by a crash\n")
    capture(1)
    path = bundle(move=True)
    assert read_bundle(str(path)).count == 3
    [entry] = [json.loads(line) for line in (folder / "quarantine.jsonl").read_text().splitlines()]
    assert entry["reason"] == "not JSON" and entry["head"] == "{torn by a crash"
    assert spool_records(folder) == []


def test_a_bundle_upload_under_an_opt_out_sends_nothing(
    bundle: Callable[..., Path], other_machine: Callable[..., Spool]
) -> None:
    capture(2)
    path = bundle()
    with FakePostHog() as server:
        connected = other_machine(
            LUXONIS_TELEMETRY_API_KEY=KEY,
            LUXONIS_TELEMETRY_ENDPOINT=server.url,
            DO_NOT_TRACK="1",
        )
        result = upload_bundle(str(path), connected, budget=10)
        assert server.requests == 0
    assert result.blocked is not None and result.pending == 2 and result.ok


@pytest.mark.parametrize("backend", ["noop", "stdout"])
def test_debug_backends_never_count_a_bundle_as_sent(
    bundle: Callable[..., Path], other_machine: Callable[..., Spool], backend: str
) -> None:
    """8.19."""
    capture(2)
    path = bundle()
    connected = other_machine(LUXONIS_TELEMETRY_BACKEND=backend)
    result = upload_bundle(str(path), connected, budget=10)
    assert (result.sent, result.pending) == (0, 2) and not result.ok
    assert f"the {backend} backend delivers nothing" in result.reasons["lib"]
    assert upload_bundle(str(path), connected, budget=10).pending == 2


# ---------------------------------------------------------------- progress


@pytest.fixture
def refuse(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """FakePostHog answers ``status`` to any batch holding an event ``rule`` picks."""
    original = fake_module._event_problem

    def install(rule: Callable[[dict[str, Any]], Optional[int]]) -> None:
        def problem(index: int, event: dict[str, Any]) -> Any:
            status = rule(event)
            if status is not None:
                return fake_module._Refusal(status, "refused by the test")
            return original(index, event)

        monkeypatch.setattr(fake_module, "_event_problem", problem)

    return install


def test_an_interrupted_bundle_upload_resumes_where_it_stopped(
    bundle: Callable[..., Path],
    other_machine: Callable[..., Spool],
    refuse: Callable[..., None],
) -> None:
    capture(3 * 1000)
    path = bundle()
    with FakePostHog() as server:
        connected = other_machine(
            LUXONIS_TELEMETRY_API_KEY=KEY, LUXONIS_TELEMETRY_ENDPOINT=server.url
        )
        refuse(lambda event: 503 if event["properties"]["n"] >= 1000 else None)
        first = upload_bundle(str(path), connected, budget=20)
        assert first.sent == 1000 and first.pending == 2000 and not first.ok, first.summary()
        refuse(lambda event: None)
        second = upload_bundle(str(path), connected, budget=20)
        assert second.ok and second.sent == 2000, second.summary()
        counts = server.uuid_counts()
        assert len(counts) == 3000 and max(counts.values()) == 1


def test_batches_acknowledged_after_a_failed_one_are_not_sent_again(
    bundle: Callable[..., Path],
    other_machine: Callable[..., Spool],
    refuse: Callable[..., None],
) -> None:
    capture(3 * 1000)
    path = bundle()
    with FakePostHog() as server:
        connected = other_machine(
            LUXONIS_TELEMETRY_API_KEY=KEY, LUXONIS_TELEMETRY_ENDPOINT=server.url
        )
        refuse(lambda event: 503 if 1000 <= event["properties"]["n"] < 2000 else None)
        upload_bundle(str(path), connected, budget=20)
        refuse(lambda event: None)
        assert upload_bundle(str(path), connected, budget=20).ok
        assert max(server.uuid_counts().values()) == 1


# ---------------------------------------------------------------- 8.9: who chooses the destination


def test_a_bundle_header_never_chooses_where_the_key_goes(
    bundle: Callable[..., Path], other_machine: Callable[..., Spool]
) -> None:
    capture(2)
    path = bundle()
    with FakePostHog() as evil, FakePostHog() as mine:

        def redirect(header: dict[str, Any]) -> None:
            header.update(endpoint=evil.url, backend="posthog", api_key="phc_evil")
            header["destinations"] = {"lib": {"endpoint": evil.url}}

        rewrite(path, header=redirect)
        read_bundle(str(path))  # the header is not covered by the checksum: still intact

        nothing_here = other_machine()
        stranded = upload_bundle(str(path), nothing_here, budget=10)
        assert stranded.pending == 2 and "API key" in stranded.reasons["lib"]

        connected = other_machine(
            LUXONIS_TELEMETRY_API_KEY=KEY, LUXONIS_TELEMETRY_ENDPOINT=mine.url
        )
        assert upload_bundle(str(path), connected, budget=10).ok
        assert evil.requests == 0
        assert [b.api_key for b in mine.batches] == [KEY]


def test_flags_and_this_machines_records_choose(
    bundle: Callable[..., Path], other_machine: Callable[..., Spool]
) -> None:
    capture(1)
    path = bundle()
    with FakePostHog() as recorded, FakePostHog() as flagged:
        connected = other_machine()
        Telemetry("lib", config=TelemetryConfig(api_key="phc_rec", endpoint=recorded.url)).capture(
            "here"
        )
        assert upload_bundle(str(path), connected, budget=10).ok
        assert [b.api_key for b in recorded.batches] == ["phc_rec"]

        capture(1)  # a new bundle from this machine, sent where the flags say
        second = path.parent / "second.ltb.gz"
        export_bundle(spool(), str(second))
        result = upload_bundle(
            str(second), connected, budget=10, endpoint=flagged.url, api_key="phc_flag"
        )
        assert result.ok
        assert [b.api_key for b in flagged.batches] == ["phc_flag"]


def test_published_library_defaults_deliver_a_bundle_for_a_library_never_run_here(
    bundle: Callable[..., Path], other_machine: Callable[..., Spool], tmp_path: Path
) -> None:
    capture(3, library="acme")
    path = bundle()
    with FakePostHog(api_keys=["phc_acme"]) as published:
        site = tmp_path / "site"
        (site / "acme_telemetry").mkdir(parents=True)
        (site / "acme_telemetry" / "__init__.py").write_text(
            "from luxonis_telemetry import TelemetryDefaults\n"
            f"DEFAULTS = TelemetryDefaults(api_key='phc_acme', endpoint={published.url!r})\n"
        )
        dist = site / "acme_telemetry-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: acme-telemetry\nVersion: 1.0\n"
        )
        (dist / "entry_points.txt").write_text(
            f"[{DEFAULTS_ENTRY_POINT_GROUP}]\nacme = acme_telemetry:DEFAULTS\n"
        )
        other_machine()
        done = subprocess.run(
            [sys.executable, "-m", "luxonis_telemetry", "upload", "--from", str(path)],
            env=dict(os.environ, PYTHONPATH=str(site)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert published.event_count == 3


# ---------------------------------------------------------------- 8.10: hostile bundles


def _header(count: int = 1) -> bytes:
    return (
        json.dumps(
            {"format": BUNDLE_FORMAT, "version": 1, "count": count, "sha256": "0" * 64}
        ).encode()
        + b"\n"
    )


def _bomb(path: Path, block: bytes, members: int) -> None:
    """Concatenated gzip members: a small file that inflates to ``len(block) * members``."""
    member = gzip.compress(block, compresslevel=9)
    with open(path, "wb") as out:
        out.write(gzip.compress(_header()))
        for _ in range(members):
            out.write(member)


PROBE = """
import json, resource, sys, time
from luxonis_telemetry.bundle import BundleError, read_bundle
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
try:
    read_bundle(sys.argv[1])
    outcome = "accepted"
except BundleError as exc:
    outcome = str(exc)
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - started,
                  "grown_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}))
"""


def _probe(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


_LINE = (
    b'{"v":1,"type":"capture","uuid":"x","timestamp":"t","event":"e",'
    b'"distinct_id":"d","library":"l","properties":{},"context":{}}\n'
)


@pytest.mark.parametrize(
    ("block", "members", "message"),
    [
        (bytes(256 * MIB), 4, "line over"),
        (_LINE * 200_000, 24, "expands more than"),
    ],
    ids=["zeros", "repeated-lines"],
)
def test_a_gzip_bomb_is_one_clear_error_with_small_memory(
    tmp_path: Path, block: bytes, members: int, message: str
) -> None:
    path = tmp_path / "bomb.ltb.gz"
    _bomb(path, block, members)
    assert path.stat().st_size < 2 * MIB
    assert len(block) * members > 512 * MIB
    report = _probe(path)
    assert message in report["outcome"], report
    assert report["grown_kib"] < 48 * 1024, report


def test_a_line_over_a_mebibyte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.ltb.gz"
    path.write_bytes(gzip.compress(_header() + b'{"pad": "' + b"x" * (MIB + 10) + b'"}\n'))
    with pytest.raises(BundleError, match="line over"):
        read_bundle(str(path))


def test_a_truncated_bundle_is_refused(bundle: Callable[..., Path]) -> None:
    capture(200)
    path = bundle()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated"):
        read_bundle(str(path))


@pytest.mark.parametrize(
    "change",
    [
        lambda lines: [lines[0].replace(b'"n":0', b'"n":7'), *lines[1:]],
        lambda lines: lines[1:],
        lambda lines: [*lines, lines[0]],
    ],
    ids=["edited", "dropped", "duplicated"],
)
def test_an_altered_bundle_is_refused_and_nothing_sent(
    bundle: Callable[..., Path],
    other_machine: Callable[..., Spool],
    change: Callable[[list[bytes]], list[bytes]],
) -> None:
    capture(3)
    path = bundle()
    rewrite(path, records=change)
    with FakePostHog() as server:
        connected = other_machine(
            LUXONIS_TELEMETRY_API_KEY=KEY, LUXONIS_TELEMETRY_ENDPOINT=server.url
        )
        with pytest.raises(BundleError, match="truncated or altered"):
            upload_bundle(str(path), connected, budget=10)
        assert server.requests == 0


@pytest.mark.parametrize(
    "content",
    [b"", b"not gzip at all", gzip.compress(b'{"format": "other"}\n')],
    ids=["empty", "not-gzip", "other-format"],
)
def test_not_a_bundle(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(content)
    with pytest.raises(BundleError):
        read_bundle(str(path))


def test_a_fifo_given_as_a_bundle_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.ltb.gz"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_bundle(str(fifo))
        except BundleError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO hung"
    [error] = outcome
    assert "not a regular file" in str(error)


def test_a_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle"):
        read_bundle(str(tmp_path / "missing.ltb.gz"))


def test_the_cli_reports_a_bad_bundle_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.ltb.gz"
    path.write_bytes(b"garbage")
    done = subprocess.run(
        [sys.executable, "-m", "luxonis_telemetry", "upload", "--from", str(path)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("luxonis-telemetry: error: bundle is damaged")


# ---------------------------------------------------------------- 8.13: writing bundles safely


def test_export_refuses_an_existing_path(bundle: Callable[..., Path], tmp_path: Path) -> None:
    capture(1)
    path = tmp_path / "taken.ltb.gz"
    path.write_bytes(b"precious")
    with pytest.raises(BundleError, match="exists; choose another name or pass --force"):
        export_bundle(spool(), str(path))
    assert path.read_bytes() == b"precious"
    export_bundle(spool(), str(path), force=True)
    assert read_bundle(str(path)).count == 1


def test_export_move_twice_never_destroys_the_first_bundle(
    bundle: Callable[..., Path], tmp_path: Path
) -> None:
    capture(3)
    path = tmp_path / "week.ltb.gz"
    export_bundle(spool(), str(path), move=True)
    first = path.read_bytes()
    capture(2, library="later")
    with pytest.raises(BundleError, match="exists"):
        export_bundle(spool(), str(path), move=True)
    assert path.read_bytes() == first and read_bundle(str(path)).count == 3
    assert len(spool_records(Path(spool().path))) == 2  # still pending: nothing moved


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch")
    return victim


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("kind", ["fifo", "device", "symlink", "folder"])
def test_export_never_replaces_what_is_not_a_regular_file(
    tmp_path: Path, kind: str, force: bool
) -> None:
    capture(1)
    target = tmp_path / "target"
    victim = _victim(tmp_path)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        if os.geteuid() != 0:
            pytest.skip("creating a device node needs root")
        os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    elif kind == "symlink":
        target.symlink_to(victim)
    else:
        target.mkdir()
    before = os.lstat(target)
    with pytest.raises(BundleError):
        export_bundle(spool(), str(target), force=force)
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert victim.read_text() == "do not touch"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == sorted(
        ["target", "victim.txt"]
    )


def test_export_writes_through_an_unpredictable_exclusive_temp_file(tmp_path: Path) -> None:
    capture(2)
    path = tmp_path / "out.ltb.gz"
    victim = _victim(tmp_path)
    for guess in ("out.ltb.gz.tmp", ".out.ltb.gz.tmp", "out.ltb.gz~", "out.ltb.gz.part"):
        (tmp_path / guess).symlink_to(victim)
    names: list[str] = []
    real_open = os.open

    def watching(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(name).startswith(str(path)) and flags & os.O_CREAT:
            names.append(str(name))
            assert flags & os.O_EXCL, f"{name} opened without O_EXCL"
        return real_open(name, flags, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "open", watching)
        export_bundle(spool(), str(path))
    assert victim.read_text() == "do not touch"
    assert read_bundle(str(path)).count == 2
    temporary = [n for n in names if n != str(path)]
    assert temporary and all(len(Path(n).name) > len("out.ltb.gz") + 16 for n in temporary)
    leftovers = {p.name for p in tmp_path.iterdir()} - {"home", "victim.txt", "out.ltb.gz"}
    assert leftovers == {"out.ltb.gz.tmp", ".out.ltb.gz.tmp", "out.ltb.gz~", "out.ltb.gz.part"}


def test_export_works_where_hard_links_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FAT USB stick: ``link`` fails with EPERM; the name is claimed exclusively instead."""
    capture(2)

    def no_links(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "usb.ltb.gz"
    export_bundle(spool(), str(path))
    assert read_bundle(str(path)).count == 2
    assert {p.name for p in tmp_path.iterdir()} == {"home", "usb.ltb.gz"}


def test_a_bundle_is_private(bundle: Callable[..., Path]) -> None:
    capture(1)
    assert stat.S_IMODE(bundle().stat().st_mode) == 0o600


def test_export_streams_large_spools(bundle: Callable[..., Path]) -> None:
    capture(20_000)
    info = read_bundle(str(bundle()))
    assert info.count == 20_000
    assert info.size > 0
