"""Benchmarks: issue 12's goals, luxonis-telemetry against the posthog client, in one run.

Run: ``.venv/bin/python scripts/bench.py`` (6-8 minutes on 2 cores;
``--quick`` under 2). ``--only process capture upload million far exit cli``
runs some parts; ``--only profile`` prints cProfile tables of one
100,000-event upload and of 1,000 captures (not part of a default run).

Prints one table: for each goal our median, the posthog client's median from
the same run, the ratio and the target, then the details (where import time
goes, the capture floor, what the far-away server received). All traffic goes
to PostHog-compatible receivers (``FakePostHog``) on 127.0.0.1 served from
this process. Every child runs in a throw-away venv holding a byte-compiled
copy of the package, as a wheel install leaves it (see ``bench_env``), with
its own HOME, spool and working folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import bench_env
import bench_profile

from luxonis_telemetry.testing import Action, FakePostHog

ROOT = Path(__file__).resolve().parent.parent
PROPS = {"epochs": 20, "model": "yolov8n", "lr": 0.001, "pretrained": True, "dataset": "coco"}
HEAVY = ("posthog", "typer", "rich", "requests", "asyncio", "click", "cyclopts")
FAR_DELAY = 0.1  # seconds the far-away server adds to every POST
PARTS = ("process", "capture", "upload", "million", "far", "exit", "cli")


@dataclass(frozen=True)
class Row:
    goal: str
    measurement: str
    ours: str
    posthog: str = ""
    ratio: str = ""
    target: str = ""
    met: Optional[bool] = None


@dataclass
class Bench:
    """What every part needs: the children's interpreter, a scratch folder, the results."""

    folder: Path
    env: bench_env.BenchEnv
    server: FakePostHog
    quick: bool
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    @property
    def python(self) -> str:
        return self.env.python

    def add(self, row: Row) -> None:
        self.rows.append(row)
        verdict = "" if row.met is None else (" [met]" if row.met else " [MISSED]")
        figures = " | ".join((row.ours, row.posthog, row.ratio, row.target))
        print(f"  {row.measurement}: {figures}{verdict}", flush=True)

    def detail(self, text: str) -> None:
        self.details.append(text)
        print(textwrap.indent(text, "    "), flush=True)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def base_env(folder: Path) -> dict[str, str]:
    """An environment of our own: fresh HOME, spool and config; no opt-outs inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUXONIS_TELEMETRY_")}
    for name in ("DO_NOT_TRACK", "CI", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH"):
        env.pop(name, None)
    env.update(
        HOME=str(folder / "home"),
        XDG_STATE_HOME=str(folder / "home" / "state"),
        XDG_CONFIG_HOME=str(folder / "home" / "config"),
        LUXONIS_TELEMETRY_SPOOL_DIR=str(folder / "spool"),
        LUXONIS_TELEMETRY_CONFIG_DIR=str(folder / "config"),
    )
    (folder / "home").mkdir(parents=True, exist_ok=True)
    return env


def upload_env(folder: Path, url: str) -> dict[str, str]:
    env = base_env(folder)
    env.update(
        LUXONIS_TELEMETRY_API_KEY="phc_bench",
        LUXONIS_TELEMETRY_ENDPOINT=url,
        LUXONIS_TELEMETRY_MAX_SPOOL_MB="10240",  # hold them all: no cap drops
        LUXONIS_TELEMETRY_UPLOAD_ON_EXIT="0",
    )
    return env


def wall(args: list[str], env: dict[str, str]) -> float:
    """Seconds one run of ``args`` takes; it runs in HOME, where no ``.env`` lies."""
    started = time.perf_counter()
    subprocess.run(
        args,
        env=env,
        cwd=env["HOME"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - started


def interleaved(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, float]:
    """Median wall ms of each command, run in turns so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, args in commands.items():
            times[name].append(wall(args, env))
    return {name: median_ms(samples) for name, samples in times.items()}


# Linux carries the pre-exec high-water mark into ru_maxrss, so a child
# started from this (large) process would report our memory; the child's
# own VmHWM, read at its exit, is its true peak.
PEAK_PROBE = """
import atexit as _atexit, os as _os
def _peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                with open(_os.environ["BENCH_PEAK_FILE"], "w") as out:
                    out.write(line.split()[1])
_atexit.register(_peak)
"""


def run_child(
    bench: Bench, code: str, env: dict[str, str], stdout: Any = subprocess.PIPE
) -> tuple[str, float, int]:
    """Run a child; returns (stdout, wall seconds, peak RSS KiB of the child itself)."""
    with tempfile.NamedTemporaryFile(suffix=".peak", dir=bench.folder) as peak:
        started = time.perf_counter()
        process = subprocess.Popen(
            [bench.python, "-c", PEAK_PROBE + code],
            env={**env, "BENCH_PEAK_FILE": peak.name},
            cwd=env["HOME"],
            stdout=stdout,
            text=True,
        )
        out, _ = process.communicate()
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"child failed ({process.returncode}): {code[-300:]}")
        text = Path(peak.name).read_text().strip()
    return out or "", elapsed, int(text) if text else 0


# -- 1. process cost ------------------------------------------------------------------

OURS_PROCESS = (
    "import luxonis_telemetry; "
    f"luxonis_telemetry.Telemetry('bench').capture('train.start', {PROPS!r})"
)


def posthog_process(url: str) -> str:
    """posthog's counterpart of ``OURS_PROCESS``, its queue flushed to ``url`` at exit."""
    return (
        f"import posthog; posthog.Posthog('phc_bench', host={url!r})"
        f".capture('train.start', distinct_id='d', properties={PROPS!r})"
    )


# The least a recording process does: import json, append one JSON line under flock.
PROCESS_FLOOR = (
    "import fcntl, json, os; "
    "fd = os.open('floor.jsonl', os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600); "
    "fcntl.flock(fd, fcntl.LOCK_EX); "
    f"os.write(fd, json.dumps({PROPS!r}).encode() + b'\\n')"
)
HEAVY_PROBE = f"""
import sys
import luxonis_telemetry
after_import = [m for m in {HEAVY!r} if m in sys.modules]
luxonis_telemetry.Telemetry('bench').capture('train.start', {PROPS!r})
after_capture = [m for m in {HEAVY!r} if m in sys.modules]
import json
print(json.dumps([after_import, after_capture]))
"""
_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_times(
    bench: Bench, env: dict[str, str], code: str, runs: int
) -> list[dict[str, tuple[int, int, str]]]:
    """Per run: {module: (self us, cumulative us, importer)} for modules bare python lacks.

    ``-X importtime`` prints a module after everything it imported, indented
    one level deeper than its importer: the importer is the next line with
    less indentation (``-`` for the code itself).
    """

    def once(source: str) -> dict[str, tuple[int, int, str]]:
        result = subprocess.run(
            [bench.python, "-X", "importtime", "-c", source],
            env=env,
            cwd=env["HOME"],
            capture_output=True,
            text=True,
            check=True,
        )
        entries = [
            (match[4], int(match[1]), int(match[2]), len(match[3]))
            for match in map(_IMPORTTIME.match, result.stderr.splitlines())
            if match
        ]
        found = {}
        for index, (name, own, cumulative, depth) in enumerate(entries):
            importer = next((e[0] for e in entries[index + 1 :] if e[3] < depth), "-")
            found[name] = (own, cumulative, importer)
        return found

    baseline = set(once("pass"))
    return [
        {name: value for name, value in once(code).items() if name not in baseline}
        for _ in range(runs)
    ]


def summarize_import_times(
    samples: list[dict[str, tuple[int, int, str]]], top: int
) -> tuple[float, str]:
    """Median total self ms, and the ``top`` modules by median self time as text."""
    total = statistics.median(sum(entry[0] for entry in run.values()) for run in samples) / 1000
    names: set[str] = set().union(*samples)
    medians = {
        name: (
            statistics.median(run[name][0] for run in samples if name in run),
            statistics.median(run[name][1] for run in samples if name in run),
            next(run[name][2] for run in samples if name in run),
        )
        for name in names
    }
    ranked = sorted(medians.items(), key=lambda item: item[1][0], reverse=True)[:top]
    lines = [
        f"{rank:>2}. {name:<34} self {own / 1000:5.2f} ms, cumulative {cumulative / 1000:5.2f} ms,"
        f" imported by {importer}"
        for rank, (name, (own, cumulative, importer)) in enumerate(ranked, 1)
    ]
    direct = sorted(
        ((name, entry[1]) for name, entry in medians.items() if entry[2] == "-"),
        key=lambda item: item[1],
        reverse=True,
    )
    lines.append(
        "imported by the code itself (cumulative ms; after the first, those the calls import): "
        + ", ".join(f"{name} {cumulative / 1000:.2f}" for name, cumulative in direct)
    )
    return total, "\n".join(lines)


def bench_process(bench: Bench) -> None:
    print("1. process: import + Telemetry() + first capture(), median wall time", flush=True)
    env = base_env(bench.folder / "process")
    py, editable = bench.python, bench.env.editable_python
    medians = interleaved(
        {
            "pass": [py, "-c", "pass"],
            "ours": [py, "-c", OURS_PROCESS],
            "posthog": [py, "-c", posthog_process(bench.server.url)],
            "floor": [py, "-c", PROCESS_FLOOR],
            "editable pass": [editable, "-c", "pass"],
            "editable ours": [editable, "-c", OURS_PROCESS],
        },
        env,
        9 if bench.quick else 21,
    )
    baseline = medians["pass"]
    ours, theirs = medians["ours"] - baseline, medians["posthog"] - baseline
    ratio = ours / theirs
    bench.add(
        Row(
            "1",
            "process: import + Telemetry() + first capture() (5 properties)",
            f"+{ours:.1f} ms over `python -c pass` ({baseline:.1f} ms)",
            f"+{theirs:.1f} ms (`import posthog; Posthog().capture()`)",
            f"{ratio:.2f}x",
            "<= +15 ms and <= 0.12x",
            ours <= 15 and ratio <= 0.12,
        )
    )
    bench.detail(
        f"process floor (import json, fcntl; one JSON line appended under flock): "
        f"+{medians['floor'] - baseline:.1f} ms over `python -c pass`"
    )
    bench.detail(
        "same command in the development venv (editable install, whose finder preloads "
        f"pathlib & co. at start-up): +{medians['editable ours'] - medians['editable pass']:.1f}"
        f" ms over its own `python -c pass` ({medians['editable pass']:.1f} ms): "
        "the wheel-like venv above is what users run"
    )
    probe = subprocess.run(
        [py, "-c", HEAVY_PROBE],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    after_import, after_capture = json.loads(probe)
    bench.add(
        Row(
            "1",
            f"heavy modules loaded by `import luxonis_telemetry` (of {', '.join(HEAVY)})",
            ", ".join(after_import) or "none",
            "",
            "",
            "none",
            not after_import,
        )
    )
    bench.detail(f"after Telemetry() + first capture(): {', '.join(after_capture) or 'none'}")
    runs = 3 if bench.quick else 7
    total, table = summarize_import_times(import_times(bench, env, OURS_PROCESS, runs), 10)
    theirs_total, _ = summarize_import_times(
        import_times(bench, env, posthog_process(bench.server.url), runs), 10
    )
    bench.detail(
        f"-X importtime of the import + first capture path (modules bare python does not load, "
        f"median of {runs} runs): {total:.1f} ms of self time in all (posthog's path: "
        f"{theirs_total:.1f} ms); top 10 by self time:\n{table}"
    )


# -- 2. capture -----------------------------------------------------------------------

CAPTURE_OURS = """
import json, statistics, time
from luxonis_telemetry import Telemetry
t = Telemetry("bench")
props = {props}
t.capture("warm", props)
rounds = []
for _ in range({rounds}):
    started = time.perf_counter()
    for _ in range({n}):
        t.capture("train.start", props)
    rounds.append((time.perf_counter() - started) / {n})
assert t.dropped == 0, t.dropped
print(json.dumps({{"us": statistics.median(rounds) * 1e6}}))
"""

CAPTURE_POSTHOG = """
import json, statistics, time
from posthog import Posthog
client = Posthog("phc_bench", host="{url}")
props = {props}
client.capture("warm", distinct_id="d", properties=props)
rounds = []
for _ in range({rounds}):
    started = time.perf_counter()
    for _ in range({n}):
        client.capture("train.start", distinct_id="d", properties=props)
    rounds.append((time.perf_counter() - started) / {n})
    client.flush(timeout_seconds=None)  # its default gives up after 10 s
client.shutdown()
print(json.dumps({{"us": statistics.median(rounds) * 1e6}}))
"""

# What no capture can avoid: a new uuid, the record as JSON, one append under
# the inter-process lock. The record is the one our capture builds.
CAPTURE_FLOOR = """
import fcntl, json, os, statistics, time
from luxonis_telemetry import Telemetry
from luxonis_telemetry._ids import new_uuid4
from luxonis_telemetry.testing import capture_events
t = Telemetry("bench")
with capture_events() as events:
    t.capture("train.start", {props})
record = dict(events[0])
bare = {{key: value for key, value in record.items() if key != "context"}}
encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
context_json = encoder.encode(record.get("context", {{}}))
line = encoder.encode(record).encode() + b"\\n"
folder = os.environ["HOME"]
lock = os.open(os.path.join(folder, "floor.lock"), os.O_RDWR | os.O_CREAT, 0o600)
out = os.open(os.path.join(folder, "floor.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

def new_id():
    new_uuid4()

def encode():
    encoder.encode(record).encode()

def encode_spliced():
    (encoder.encode(bare)[:-1] + ',"context":' + context_json + "}}\\n").encode()

def append():
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(out, line)
    fcntl.flock(lock, fcntl.LOCK_UN)

def floor():
    record["uuid"] = new_uuid4()
    data = encoder.encode(record).encode() + b"\\n"
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(out, data)
    fcntl.flock(lock, fcntl.LOCK_UN)

def timed(step):
    rounds = []
    for _ in range({rounds}):
        started = time.perf_counter()
        for _ in range({n}):
            step()
        rounds.append((time.perf_counter() - started) / {n})
    return statistics.median(rounds) * 1e6

steps = (new_id, encode, encode_spliced, append, floor)
print(json.dumps({{step.__name__: timed(step) for step in steps}} | {{"bytes": len(line)}}))
"""


def bench_capture(bench: Bench) -> None:
    print("2. capture() of the 5-property event, median of rounds", flush=True)
    env = base_env(bench.folder / "capture")
    env["LUXONIS_TELEMETRY_UPLOAD_ON_EXIT"] = "0"
    rounds, n = (5, 1000) if bench.quick else (11, 2000)
    fill = {"props": PROPS, "rounds": rounds, "n": n, "url": bench.server.url}
    ours_runs, theirs_runs, floors = [], [], []
    for _ in range(3):
        out, _, _ = run_child(bench, CAPTURE_OURS.format(**fill), env)
        ours_runs.append(json.loads(out)["us"])
        out, _, _ = run_child(bench, CAPTURE_POSTHOG.format(**fill), env)
        theirs_runs.append(json.loads(out)["us"])
        out, _, _ = run_child(bench, CAPTURE_FLOOR.format(**fill), env)
        floors.append(json.loads(out))
    ours, theirs = statistics.median(ours_runs), statistics.median(theirs_runs)
    bench.add(
        Row(
            "2",
            "`capture()` of the 5-property event",
            f"{ours:.1f} us per call, to disk",
            f"{theirs:.1f} us per call, into its in-memory queue",
            f"{ours / theirs:.2f}x",
            "<= 12 us and <= 0.2x",
            ours <= 12 and ours / theirs <= 0.2,
        )
    )
    part = {key: statistics.median(run[key] for run in floors) for key in floors[0]}
    bench.detail(
        f"capture floor {part['floor']:.1f} us (measured as one step: new uuid "
        f"{part['new_id']:.2f} + json of the {part['bytes']:.0f}-byte record "
        f"{part['encode']:.2f} (context pre-encoded and spliced: {part['encode_spliced']:.2f}) "
        f"+ flock, O_APPEND write, unlock {part['append']:.2f}); "
        f"capture() spends {ours - part['floor']:.1f} us above it"
    )


# -- 3. local upload ------------------------------------------------------------------


def fill_spool(bench: Bench, env: dict[str, str], count: int) -> None:
    """Spool ``count`` events the way captures would, quickly (one writer)."""
    code = textwrap.dedent(
        f"""
        from luxonis_telemetry import Telemetry, TelemetryConfig
        t = Telemetry("bench", config=TelemetryConfig(max_spool_bytes=10 * 1024**3))
        props = {PROPS}
        for n in range({count}):
            t.capture("train.start", props)
        print(t.dropped)
        """
    )
    out, _, _ = run_child(bench, code, {**env, "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "0"})
    assert out.strip() == "0", out


def spooled_uuids(env: dict[str, str]) -> Counter[str]:
    """The uuid of every pending line in the spool (read before an upload deletes them)."""
    found: Counter[str] = Counter()
    pattern = re.compile(rb'"uuid":"([^"]+)"')
    for path in Path(env["LUXONIS_TELEMETRY_SPOOL_DIR"]).glob("*.jsonl"):
        if path.name == "quarantine.jsonl":
            continue
        with path.open("rb") as lines:
            for line in lines:
                match = pattern.search(line)
                if match:
                    found[match[1].decode()] += 1
    return found


# What no upload can avoid, per event, on one thread: parse the spooled line,
# serialise the batch, gzip it (posthog.request gzips with GzipFile's default
# level 9; the posthog client itself sends uncompressed by default).
UPLOAD_FLOOR = """
import gzip, json, os, statistics, time
folder = os.environ["LUXONIS_TELEMETRY_SPOOL_DIR"]
lines = []
for name in sorted(os.listdir(folder)):
    if name.endswith(".jsonl") and name != "quarantine.jsonl":
        with open(os.path.join(folder, name), "rb") as spooled:
            lines.extend(spooled.read().splitlines())
lines = lines[:{n}]
def per_event(step):
    started = time.perf_counter()
    result = step()
    return result, (time.perf_counter() - started) / len(lines) * 1e6
records, loads = per_event(lambda: [json.loads(line) for line in lines])
batches = [records[i : i + 1000] for i in range(0, len(records), 1000)]
bodies, dumps = per_event(
    lambda: [json.dumps({{"api_key": "phc_bench", "batch": batch}}).encode() for batch in batches]
)
_, gzip9 = per_event(lambda: [gzip.compress(body, 9) for body in bodies])
_, gzip1 = per_event(lambda: [gzip.compress(body, 1) for body in bodies])
print(json.dumps({{"loads": loads, "dumps": dumps, "gzip9": gzip9, "gzip1": gzip1}}))
"""

UPLOAD_OURS = """
import json, time
import posthog.request  # imported before the clock starts, as on the posthog side
from luxonis_telemetry import upload
cpu, started = time.process_time(), time.perf_counter()
result = upload(budget=3600)
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({"seconds": elapsed, "cpu": cpu, "sent": result.sent, "pending": result.pending}))
"""

UPLOAD_POSTHOG = """
import json, time
from datetime import datetime, timezone
from posthog import Posthog
client = Posthog("phc_bench", host="{url}", max_queue_size={n} + 10, flush_at=100)
props = {props}
now = datetime.now(timezone.utc)
cpu, started = time.process_time(), time.perf_counter()
accepted = 0
for n in range({n}):
    if client.capture("train.start", distinct_id="d", properties=props, timestamp=now):
        accepted += 1
client.flush(timeout_seconds=None)  # its default gives up after 10 s
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({{"seconds": elapsed, "cpu": cpu, "accepted": accepted}}))
import os; os._exit(0)
"""


@dataclass(frozen=True)
class UploadRun:
    """One timed upload: throughput, and whose CPU it took (2 cores: both sides compete)."""

    count: int
    seconds: float
    cpu: float  # the sending process, timed region only
    receiver_cpu: float  # this process (the FakePostHog threads) while the child ran
    rss: int  # peak KiB of the sending process
    stored: int

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def upload_ours(bench: Bench, env: dict[str, str], server: FakePostHog, count: int) -> UploadRun:
    """Upload a spool holding ``count`` events to ``server``; every one must be sent."""
    receiver = time.process_time()
    out, _, rss = run_child(bench, UPLOAD_OURS, env)
    receiver = time.process_time() - receiver
    result = json.loads(out)
    if result["sent"] != count or result["pending"] != 0:
        raise RuntimeError(f"upload left events behind: {result}")
    return UploadRun(count, result["seconds"], result["cpu"], receiver, rss, server.event_count)


def upload_posthog(bench: Bench, delay: float, count: int) -> UploadRun:
    """posthog's capture of ``count`` events and flush, to a fresh receiver."""
    with FakePostHog(keep_events=False, delay=delay) as server:
        env = base_env(bench.folder / "posthog")
        code = UPLOAD_POSTHOG.format(url=server.url, n=count, props=PROPS)
        receiver = time.process_time()
        out, _, rss = run_child(bench, code, env)
        result = json.loads(out)
        server.wait_for(result["accepted"], timeout=60)
        receiver = time.process_time() - receiver
        return UploadRun(count, result["seconds"], result["cpu"], receiver, rss, server.event_count)


def cpu_summary(runs: list[UploadRun]) -> str:
    """Medians of wall and CPU per event of ``runs``, so one sees who limits the rate."""
    count = runs[0].count
    wall = statistics.median(run.seconds for run in runs)
    cpu = statistics.median(run.cpu for run in runs)
    receiver = statistics.median(run.receiver_cpu for run in runs)
    return (
        f"{wall:.2f} s wall, sender CPU {cpu:.2f} s ({cpu / count * 1e6:.0f} us/event), "
        f"receiver CPU {receiver:.2f} s ({receiver / count * 1e6:.0f} us/event)"
    )


def bench_upload(bench: Bench) -> None:
    count = 20_000 if bench.quick else 100_000
    print(f"3. upload of {count:,} spooled events to the loopback receiver", flush=True)
    ours: list[UploadRun] = []
    theirs: list[UploadRun] = []
    for attempt in range(3 if bench.quick else 5):
        with FakePostHog(keep_events=False) as server:
            env = upload_env(bench.folder / f"upload{attempt}", server.url)
            fill_spool(bench, env, count)
            if attempt == 0:
                out, _, _ = run_child(bench, UPLOAD_FLOOR.format(n=20_000), env)
                floor = json.loads(out)
            ours.append(upload_ours(bench, env, server, count))
            if len(server.uuid_counts()) != count:
                raise RuntimeError("the receiver did not store every event")
        theirs.append(upload_posthog(bench, 0.0, count))
    rate = statistics.median(run.rate for run in ours)
    theirs_rate = statistics.median(run.rate for run in theirs)
    bench.add(
        Row(
            "3",
            f"upload of {count:,} spooled events, local server",
            f"{rate:,.0f} events/s, every batch confirmed",
            f"{theirs_rate:,.0f} events/s (capture + flush, unconfirmed; "
            f"{theirs[-1].stored:,} stored in the last run)",
            f"{rate / theirs_rate:.2f}x",
            ">= 3x",
            rate / theirs_rate >= 3,
        )
    )
    bench.detail(
        f"local upload, medians: ours {cpu_summary(ours)}; posthog {cpu_summary(theirs)} "
        "(the receiver runs in the benchmark's process, on the same 2 cores)"
    )
    least = floor["loads"] + floor["dumps"] + floor["gzip9"]
    bench.detail(
        f"upload floor, CPU per event on one thread: json.loads of the line {floor['loads']:.1f}"
        f" + json.dumps of the batch {floor['dumps']:.1f} + gzip level 9 {floor['gzip9']:.1f}"
        f" (level 1: {floor['gzip1']:.1f}) = {least:.1f} us, at most {1e6 / least:,.0f} events/s;"
        f" 3x posthog's rate needs <= {1e6 / (3 * theirs_rate):.0f} us of wall per event"
    )


def bench_million(bench: Bench) -> None:
    count = 100_000 if bench.quick else 1_000_000
    print(f"3. {count:,}-event spool: upload and inspect --json (peak RSS)", flush=True)
    with FakePostHog(keep_events=False) as server:
        env = upload_env(bench.folder / "million", server.url)
        fill_spool(bench, env, count)
        code = (
            "import sys; from luxonis_telemetry.cli import main; "
            "sys.argv = ['luxonis-telemetry', 'inspect', '--json']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code"
        )
        with open(os.devnull, "w") as sink:
            _out, seconds, rss = run_child(bench, code, env, stdout=sink)
        bench.add(
            Row(
                "3",
                f"`inspect --json` of {count:,} events",
                f"peak RSS {rss / 1024:.0f} MB ({count / seconds:,.0f} events/s)",
                "",
                "",
                "<= 100 MB",
                rss <= 100 * 1024,
            )
        )
        run = upload_ours(bench, env, server, count)
        bench.add(
            Row(
                "3",
                f"upload of {count:,} spooled events",
                f"peak RSS {run.rss / 1024:.0f} MB ({run.rate:,.0f} events/s; "
                f"{run.stored:,} stored)",
                "",
                "",
                "<= 100 MB",
                run.rss <= 100 * 1024 and run.stored >= count,
            )
        )


# -- 4. far-away server ---------------------------------------------------------------


def arrival(spooled: Counter[str], server: FakePostHog) -> dict[str, int]:
    """What the receiver stored against what was spooled, and how it was sent."""
    arrived = server.uuid_counts()
    return {
        "missing": len(spooled.keys() - arrived.keys()),
        "unexpected": len(arrived.keys() - spooled.keys()),
        "resent": sum(times - 1 for times in arrived.values()),
        "in_flight": server.max_in_flight,
        "requests": server.requests,
    }


def bench_far(bench: Bench) -> None:
    count = 20_000
    theirs_count = 5_000 if bench.quick else 20_000
    print(
        f"4. far-away server (+{FAR_DELAY * 1000:.0f} ms per POST): upload of {count:,} events",
        flush=True,
    )
    ours: list[UploadRun] = []
    theirs: list[UploadRun] = []
    checks = []
    for attempt in range(2 if bench.quick else 3):
        with FakePostHog(keep_events=False, delay=FAR_DELAY) as server:
            env = upload_env(bench.folder / f"far{attempt}", server.url)
            fill_spool(bench, env, count)
            spooled = spooled_uuids(env)
            if len(spooled) != count:
                raise RuntimeError(f"expected {count} spooled uuids, found {len(spooled)}")
            ours.append(upload_ours(bench, env, server, count))
            checks.append(arrival(spooled, server))
        theirs.append(upload_posthog(bench, FAR_DELAY, theirs_count))
    rate = statistics.median(run.rate for run in ours)
    theirs_rate = statistics.median(run.rate for run in theirs)
    lossless = all(check["missing"] == 0 and check["unexpected"] == 0 for check in checks)
    parallel = min(check["in_flight"] for check in checks)
    resent = sum(check["resent"] for check in checks)
    bench.add(
        Row(
            "4",
            f"upload of {count:,} events to a server adding {FAR_DELAY * 1000:.0f} ms per POST",
            f"{rate:,.0f} events/s; {'lossless' if lossless else 'EVENTS LOST'}, "
            f"{resent} same-uuid resends, >= {parallel} POSTs in flight in every run",
            f"{theirs_rate:,.0f} events/s (capture + flush of {theirs_count:,})",
            f"{rate / theirs_rate:.1f}x",
            ">= 10x, lossless, several in flight",
            rate / theirs_rate >= 10 and lossless and parallel > 1,
        )
    )
    bench.detail(
        "far-away runs (missing / unexpected / resent uuids, most POSTs in flight, POSTs): "
        + "; ".join(
            f"{c['missing']}/{c['unexpected']}/{c['resent']}, {c['in_flight']}, {c['requests']}"
            for c in checks
        )
        + f"; medians: ours {cpu_summary(ours)}; posthog {cpu_summary(theirs)}"
    )


# -- 5. exit cost ---------------------------------------------------------------------

EXIT_SCRIPT = """
from luxonis_telemetry import Telemetry
t = Telemetry("exiting")
for n in range(10):
    t.capture("work", {"n": n})
"""

EXIT_POSTHOG = """
from posthog import Posthog
c = Posthog("phc_bench", host="{url}")
for n in range(10):
    c.capture("work", distinct_id="d", properties={{"n": n}})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def helpers_of(spool: Path) -> list[int]:
    """Pids of exit helpers working on ``spool`` (their environment names it)."""
    wanted = f"LUXONIS_TELEMETRY_SPOOL_DIR={spool}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if b"luxonis_telemetry._exit" not in handle.read():
                    continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if wanted in handle.read().split(b"\0"):
                    found.append(int(entry))
    return found


def wait_helpers_gone(spool: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while helpers_of(spool):
        if time.monotonic() > deadline:
            raise RuntimeError("an exit helper outlived its deadline")
        time.sleep(0.05)


def timed_exit(bench: Bench, env: dict[str, str], script: str, fresh: bool) -> float:
    """Wall time of one program run; helpers of earlier runs are gone first."""
    spool = Path(env["LUXONIS_TELEMETRY_SPOOL_DIR"])
    wait_helpers_gone(spool)
    if fresh and spool.exists():
        shutil.rmtree(spool)  # no back-off: this run pays for starting the helper
    return wall([bench.python, "-c", script], env)


def bench_exit(bench: Bench) -> None:
    print("5. exit cost of a script that captured 10 events", flush=True)
    runs = 7 if bench.quick else 15
    env = base_env(bench.folder / "exit")
    spool = Path(env["LUXONIS_TELEMETRY_SPOOL_DIR"])
    refused_url = f"http://127.0.0.1:{free_port()}"
    with FakePostHog() as hang:
        hang.set_default(Action("hang"))
        for label, url in (("refusing", refused_url), ("hanging", hang.url)):
            live = {
                **env,
                "LUXONIS_TELEMETRY_API_KEY": "phc_bench",
                "LUXONIS_TELEMETRY_ENDPOINT": url,
                "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1",
                "LUXONIS_TELEMETRY_EXIT_TIMEOUT": "2",
            }
            off = {**env, "LUXONIS_TELEMETRY_ENABLED": "0"}
            disabled, helper, backing_off = [], [], []
            for _ in range(runs):
                disabled.append(timed_exit(bench, off, EXIT_SCRIPT, fresh=True))
                helper.append(timed_exit(bench, live, EXIT_SCRIPT, fresh=True))
                backing_off.append(timed_exit(bench, live, EXIT_SCRIPT, fresh=False))
            theirs = [
                timed_exit(bench, env, EXIT_POSTHOG.format(url=url), fresh=False)
                for _ in range(max(3, runs // 3))
            ]
            base = median_ms(disabled)
            cost = median_ms(helper) - base
            bench.add(
                Row(
                    "5",
                    f"exit of a script that captured 10 events, endpoint {label}",
                    f"+{cost:.1f} ms over telemetry off ({base:.1f} ms); "
                    f"+{median_ms(backing_off) - base:.1f} ms when backing off",
                    f"+{median_ms(theirs) - base:,.0f} ms, events lost",
                    "",
                    "<= 50 ms",
                    cost <= 50,
                )
            )
    waits = []
    for _ in range(3 if bench.quick else 5):
        with FakePostHog() as healthy:
            live = {
                **env,
                "LUXONIS_TELEMETRY_API_KEY": "phc_bench",
                "LUXONIS_TELEMETRY_ENDPOINT": healthy.url,
                "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1",
            }
            timed_exit(bench, live, EXIT_SCRIPT, fresh=True)
            exited = time.perf_counter()
            arrived = healthy.wait_for(10, timeout=30)
            waits.append(time.perf_counter() - exited if arrived else float("inf"))
            wait_helpers_gone(spool)
    bench.add(
        Row(
            "5",
            "healthy endpoint: the 10 events at the server after the exit",
            f"{median_ms(waits):,.0f} ms",
            "",
            "",
            "<= 10 s",
            median_ms(waits) <= 10_000,
        )
    )


def bench_cli(bench: Bench) -> None:
    print("5. CLI wall time, median", flush=True)
    env = base_env(bench.folder / "cli")
    script = bench.env.script
    medians = interleaved(
        {
            "pass": [bench.python, "-c", "pass"],
            "--help": [script, "--help"],
            "status": [script, "status"],
        },
        env,
        7 if bench.quick else 15,
    )
    bench.add(
        Row(
            "5",
            "`luxonis-telemetry --help` / `status`",
            f"{medians['--help']:.0f} ms / {medians['status']:.0f} ms "
            f"(`python -c pass` {medians['pass']:.0f} ms)",
            "",
            "",
            "<= 250 ms",
            max(medians["--help"], medians["status"]) <= 250,
        )
    )


# -- profiles (--only profile) ---------------------------------------------------------


def bench_profile_run(bench: Bench) -> None:
    count = 100_000
    print(f"cProfile: one upload of {count:,} events, then 1,000 captures", flush=True)
    with FakePostHog(keep_events=False) as server:
        env = upload_env(bench.folder / "profile", server.url)
        for threads in (True, False):
            fill_spool(bench, env, count)
            out, _, _ = run_child(bench, bench_profile.upload(threads), env)
            bench.detail(out.rstrip())
    env = base_env(bench.folder / "profile-capture")
    env["LUXONIS_TELEMETRY_UPLOAD_ON_EXIT"] = "0"
    out, _, _ = run_child(bench, bench_profile.captures(PROPS), env)
    bench.detail(out.rstrip())


# -- the run ----------------------------------------------------------------------------


def revision() -> str:
    """The commit measured, marked when the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "luxonis_telemetry"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} + uncommitted changes to luxonis_telemetry/" if dirty else head


def print_table(bench: Bench, commit: str, started: datetime, elapsed: float, label: str) -> None:
    print(
        f"\nluxonis-telemetry benchmark{label}, commit {commit}, "
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"{elapsed / 60:.1f} min\n"
    )
    print("| goal | measurement | luxonis-telemetry | posthog client | ratio | target | met |")
    print("|---|---|---|---|---|---|---|")
    for row in bench.rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        print(
            f"| {row.goal} | {row.measurement} | {row.ours} | {row.posthog} | {row.ratio} "
            f"| {row.target} | {met} |"
        )
    if bench.details:
        print("\nDetails:")
        for text in bench.details:
            print("- " + text.replace("\n", "\n    "))


def main() -> None:
    parser = argparse.ArgumentParser(description="issue 12's goals against the posthog client")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=(*PARTS, "profile"),
        default=None,
        help="run only these parts",
    )
    args = parser.parse_args()
    chosen = args.only or PARTS
    started, clock = datetime.now(timezone.utc), time.monotonic()
    commit = revision()  # what the snapshot below copies; the tree may move on meanwhile
    with (
        tempfile.TemporaryDirectory(prefix="lt-bench-") as tmp,
        FakePostHog(keep_events=False) as server,
    ):
        folder = Path(tmp)
        bench = Bench(folder, bench_env.build(ROOT, folder), server, args.quick)
        steps = {
            "process": bench_process,
            "capture": bench_capture,
            "upload": bench_upload,
            "million": bench_million,
            "far": bench_far,
            "exit": bench_exit,
            "cli": bench_cli,
            "profile": bench_profile_run,
        }
        for name, step in steps.items():
            if name in chosen:
                step(bench)
    label = " (--quick)" if args.quick else ""
    print_table(bench, commit, started, time.monotonic() - clock, label)


if __name__ == "__main__":
    main()
