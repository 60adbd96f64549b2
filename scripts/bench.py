"""Benchmarks: luxonis-telemetry against the posthog client, in one run.

Run: ``.venv/bin/python scripts/bench.py`` (``--quick`` for smaller sizes).
Prints medians (this machine is noisy) and ratios. All traffic goes to a
PostHog-compatible receiver on 127.0.0.1; everything is written under a
temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from luxonis_telemetry.testing import Action, FakePostHog

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PROPS = {"epochs": 20, "model": "yolov8n", "lr": 0.001, "pretrained": True, "dataset": "coco"}
ROWS: list[tuple[str, str, str, str]] = []


def row(name: str, ours: str, posthog: str = "", note: str = "") -> None:
    ROWS.append((name, ours, posthog, note))
    print(f"  {name}: {ours}  {posthog}  {note}", flush=True)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def base_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUXONIS_TELEMETRY_")}
    env.pop("DO_NOT_TRACK", None)
    env.pop("CI", None)
    env.update(
        HOME=str(folder / "home"),
        XDG_STATE_HOME=str(folder / "home" / "state"),
        XDG_CONFIG_HOME=str(folder / "home" / "config"),
        LUXONIS_TELEMETRY_SPOOL_DIR=str(folder / "spool"),
        LUXONIS_TELEMETRY_CONFIG_DIR=str(folder / "config"),
    )
    (folder / "home").mkdir(parents=True, exist_ok=True)
    return env


def wall(args: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        times.append(time.perf_counter() - started)
    return times


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


def run_measured(
    code: str, env: dict[str, str], stdout: Any = subprocess.PIPE
) -> tuple[str, float, int]:
    """Run a child; returns (stdout, wall seconds, peak RSS KiB of the child itself)."""
    with tempfile.NamedTemporaryFile(suffix=".peak") as peak:
        started = time.perf_counter()
        process = subprocess.Popen(
            [PY, "-c", PEAK_PROBE + code],
            env={**env, "BENCH_PEAK_FILE": peak.name},
            stdout=stdout,
            text=True,
        )
        out, _ = process.communicate()
        elapsed = time.perf_counter() - started
        if process.returncode not in (0, 1):
            raise RuntimeError(f"child failed ({process.returncode}): {code[:80]}")
        text = Path(peak.name).read_text().strip()
    return out or "", elapsed, int(text) if text else 0


# -- 1. capture ---------------------------------------------------------------------


CAPTURE_OURS = """
import json, os, statistics, time
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
    client.flush()
client.shutdown()
print(json.dumps({{"us": statistics.median(rounds) * 1e6}}))
"""


def bench_capture(folder: Path, server: FakePostHog, quick: bool) -> None:
    print("capture latency (5 properties), median of rounds", flush=True)
    env = base_env(folder / "capture")
    env["LUXONIS_TELEMETRY_UPLOAD_ON_EXIT"] = "0"
    rounds, n = (5, 1000) if quick else (11, 2000)
    ours_runs, theirs_runs = [], []
    for _ in range(3):
        out, _, _ = run_measured(CAPTURE_OURS.format(props=PROPS, rounds=rounds, n=n), env)
        ours_runs.append(json.loads(out)["us"])
        out, _, _ = run_measured(
            CAPTURE_POSTHOG.format(props=PROPS, rounds=rounds, n=n, url=server.url), env
        )
        theirs_runs.append(json.loads(out)["us"])
    ours, theirs = statistics.median(ours_runs), statistics.median(theirs_runs)
    row(
        "Telemetry.capture() to the spool",
        f"{ours:.1f} us/call",
        f"{theirs:.1f} us/call (Posthog.capture into its queue)",
        f"ratio {ours / theirs:.2f}x (target <= 0.35x, <= 20 us)",
    )


# -- 2. process cost ----------------------------------------------------------------


def interleaved(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, float]:
    """Median wall ms of each command, run in turns so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, args in commands.items():
            times[name].extend(wall(args, env, 1))
    return {name: median_ms(samples) for name, samples in times.items()}


def bench_process(folder: Path, server: FakePostHog, quick: bool) -> None:
    print("process wall time, median", flush=True)
    env = base_env(folder / "process")
    medians = interleaved(
        {
            "pass": [PY, "-c", "pass"],
            "ours": [
                PY,
                "-c",
                "import luxonis_telemetry; luxonis_telemetry.Telemetry('x').capture('e')",
            ],
            "posthog": [
                PY,
                "-c",
                f"import posthog; posthog.Posthog('phc_bench', host='{server.url}')"
                ".capture('e', distinct_id='d')",
            ],
        },
        env,
        9 if quick else 21,
    )
    baseline, ours, theirs = medians["pass"], medians["ours"], medians["posthog"]
    row(
        "python -c 'import + Telemetry(x).capture(e)'",
        f"+{ours - baseline:.1f} ms over python -c pass ({baseline:.1f} ms)",
        f"+{theirs - baseline:.1f} ms (import posthog; Posthog().capture())",
        f"ratio {(ours - baseline) / (theirs - baseline):.2f}x (target <= 40 ms, <= 0.25x)",
    )
    heavy = subprocess.run(
        [
            PY,
            "-c",
            "import sys, luxonis_telemetry; print([m for m in "
            "('posthog','typer','rich','requests','asyncio','click') if m in sys.modules])",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    row("heavy modules loaded by import luxonis_telemetry", heavy)


# -- 3. upload throughput -----------------------------------------------------------


def fill_spool(env: dict[str, str], count: int) -> None:
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
    env = {
        **env,
        "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "0",
        "LUXONIS_TELEMETRY_MAX_SPOOL_MB": "10240",
    }
    result = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0", result.stdout


UPLOAD_OURS = """
import json, time
import posthog.request  # imported before the clock starts, as on the posthog side
from luxonis_telemetry import upload
started = time.perf_counter()
result = upload(budget=3600)
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "sent": result.sent, "pending": result.pending}))
"""

UPLOAD_POSTHOG = """
import json, time, uuid
from datetime import datetime, timezone
from posthog import Posthog
client = Posthog("phc_bench", host="{url}", max_queue_size={n} + 10, flush_at=100)
props = {props}
now = datetime.now(timezone.utc)
started = time.perf_counter()
accepted = 0
for n in range({n}):
    if client.capture("train.start", distinct_id="d", properties=props, timestamp=now):
        accepted += 1
client.flush()
elapsed = time.perf_counter() - started
print(json.dumps({{"seconds": elapsed, "accepted": accepted}}))
import os; os._exit(0)
"""


def bench_upload(folder: Path, quick: bool) -> None:
    count = 20_000 if quick else 100_000
    print(f"upload of {count} events to the loopback receiver", flush=True)
    ours_rates, theirs_rates = [], []
    for attempt in range(3 if quick else 5):
        with FakePostHog(keep_events=False) as server:
            env = base_env(folder / f"upload{attempt}")
            env.update(
                LUXONIS_TELEMETRY_API_KEY="phc_bench",
                LUXONIS_TELEMETRY_ENDPOINT=server.url,
                LUXONIS_TELEMETRY_MAX_SPOOL_MB="10240",  # hold them all: no cap drops
            )
            fill_spool(env, count)
            out, _, _ = run_measured(UPLOAD_OURS, env)
            result = json.loads(out)
            assert result["sent"] == count, result
            assert result["pending"] == 0, result
            assert len(server.uuid_counts()) == count
            ours_rates.append(count / result["seconds"])
        with FakePostHog(keep_events=False) as server:
            out, _, _ = run_measured(
                UPLOAD_POSTHOG.format(url=server.url, n=count, props=PROPS), env
            )
            result = json.loads(out)
            server.wait_for(result["accepted"], timeout=60)
            theirs_rates.append(count / result["seconds"])
            theirs_received = server.event_count
    ours, theirs = statistics.median(ours_rates), statistics.median(theirs_rates)
    row(
        f"upload {count:,} spooled events",
        f"{ours:,.0f} events/s (each batch confirmed)",
        f"{theirs:,.0f} events/s (capture + flush, {theirs_received:,} received in last run)",
        f"ratio {ours / theirs:.2f}x (target >= 2.0x)",
    )


def bench_million(folder: Path, quick: bool) -> None:
    count = 100_000 if quick else 1_000_000
    print(f"{count:,}-event spool: upload and inspect --json (peak RSS)", flush=True)
    with FakePostHog(keep_events=False) as server:
        env = base_env(folder / "million")
        env.update(
            LUXONIS_TELEMETRY_API_KEY="phc_bench",
            LUXONIS_TELEMETRY_ENDPOINT=server.url,
            LUXONIS_TELEMETRY_MAX_SPOOL_MB="10240",
        )
        fill_spool(env, count)
        code = (
            "import sys; from luxonis_telemetry.cli import main; "
            "sys.argv = ['x', 'inspect', '--json']; main()"
        )
        with open(os.devnull, "w") as sink:
            _out, seconds, rss = run_measured(code, env, stdout=sink)
        row(
            f"inspect --json of {count:,} events",
            f"{count / seconds:,.0f} events/s, peak RSS {rss / 1024:.0f} MB",
            "",
            "target RSS <= 100 MB",
        )
        out, seconds, rss = run_measured(UPLOAD_OURS, env)
        result = json.loads(out)
        assert result["sent"] == count, result
        row(
            f"upload of {count:,} events",
            f"{count / result['seconds']:,.0f} events/s, peak RSS {rss / 1024:.0f} MB",
            "",
            f"received {server.event_count:,}; target RSS <= 100 MB",
        )


# -- 4. exit cost --------------------------------------------------------------------

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


def timed_exit(env: dict[str, str], script: str, spool: Path, fresh: bool) -> float:
    """Wall time of one program run; helpers of earlier runs are gone first."""
    wait_helpers_gone(spool)
    if fresh and spool.exists():
        shutil.rmtree(spool)  # no back-off: this run pays for starting the helper
    started = time.perf_counter()
    subprocess.run([PY, "-c", script], env=env, check=True)
    return time.perf_counter() - started


def bench_exit(folder: Path, quick: bool) -> None:
    print("exit cost of a script that captures 10 events", flush=True)
    runs = 7 if quick else 15
    env = base_env(folder / "exit")
    spool = Path(env["LUXONIS_TELEMETRY_SPOOL_DIR"])
    refused_url = f"http://127.0.0.1:{free_port()}"
    with FakePostHog() as hang:
        hang.set_default(Action("hang"))
        for label, url in (("refused", refused_url), ("hang", hang.url)):
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
                disabled.append(timed_exit(off, EXIT_SCRIPT, spool, fresh=True))
                helper.append(timed_exit(live, EXIT_SCRIPT, spool, fresh=True))
                wait_helpers_gone(spool)
                backing_off.append(timed_exit(live, EXIT_SCRIPT, spool, fresh=False))
            theirs = [
                timed_exit(env, EXIT_POSTHOG.format(url=url), spool, fresh=False)
                for _ in range(max(3, runs // 3))
            ]
            base = median_ms(disabled)
            row(
                f"exit, endpoint {label}",
                f"+{median_ms(helper) - base:.1f} ms vs disabled ({base:.1f} ms); "
                f"+{median_ms(backing_off) - base:.1f} ms when backing off",
                f"+{median_ms(theirs) - base:.0f} ms (posthog-python, events lost)",
                "target <= 50 ms",
            )
    waits = []
    for _ in range(3 if quick else 5):
        with FakePostHog() as healthy:
            live = {
                **env,
                "LUXONIS_TELEMETRY_API_KEY": "phc_bench",
                "LUXONIS_TELEMETRY_ENDPOINT": healthy.url,
                "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "1",
            }
            timed_exit(live, EXIT_SCRIPT, spool, fresh=True)
            exited = time.perf_counter()
            assert healthy.wait_for(10, timeout=30)
            waits.append(time.perf_counter() - exited)
            wait_helpers_gone(spool)
    row(
        "healthy endpoint: events at the server after exit",
        f"{median_ms(waits):.0f} ms",
        "",
        "target <= 10 s",
    )


def wait_helpers_gone(spool: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = False
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    busy = busy or os.readlink(f"/proc/{entry}/cwd") == str(spool)
        if not busy:
            return
        time.sleep(0.05)
    raise RuntimeError("an exit helper outlived its deadline")


# -- 5. CLI ---------------------------------------------------------------------------


def bench_cli(folder: Path, quick: bool) -> None:
    print("CLI wall time, median", flush=True)
    env = base_env(folder / "cli")
    script = str(Path(PY).parent / "luxonis-telemetry")
    medians = interleaved(
        {"pass": [PY, "-c", "pass"], "--help": [script, "--help"], "status": [script, "status"]},
        env,
        7 if quick else 15,
    )
    for name in ("--help", "status"):
        row(
            f"luxonis-telemetry {name}",
            f"{medians[name]:.0f} ms",
            "",
            f"python -c pass {medians['pass']:.0f} ms; aim <= 250 ms",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument(
        "--only", nargs="*", default=None, help="capture process upload million exit cli"
    )
    args = parser.parse_args()
    chosen = set(args.only or ["capture", "process", "upload", "million", "exit", "cli"])
    started = datetime.now(timezone.utc)
    # a wheel install byte-compiles; an editable one under PYTHONDONTWRITEBYTECODE does not
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "luxonis_telemetry")], check=True)
    with (
        tempfile.TemporaryDirectory(prefix="lt-bench-") as tmp,
        FakePostHog(keep_events=False) as server,
    ):
        folder = Path(tmp)
        if "capture" in chosen:
            bench_capture(folder, server, args.quick)
        if "process" in chosen:
            bench_process(folder, server, args.quick)
        if "upload" in chosen:
            bench_upload(folder, args.quick)
        if "million" in chosen:
            bench_million(folder, args.quick)
        if "exit" in chosen:
            bench_exit(folder, args.quick)
        if "cli" in chosen:
            bench_cli(folder, args.quick)
    print(
        f"\nluxonis-telemetry benchmark, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, run id {uuid.uuid4().hex[:8]}\n"
    )
    print("| measurement | luxonis-telemetry | posthog client | note |")
    print("|---|---|---|---|")
    for name, ours, theirs, note in ROWS:
        print(f"| {name} | {ours} | {theirs} | {note} |")


if __name__ == "__main__":
    main()
