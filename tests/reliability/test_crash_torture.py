"""Crash torture: capturing processes and uploaders SIGKILLed at random moments.

Seeded (``LUXONIS_TORTURE_SEED``, default 20261128) so a failure can be
replayed. At the end, after one clean upload, every event whose ``capture()``
returned before its process died is at the server; duplicates are only
re-sends of the same uuid; the spool is empty and readable.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from luxonis_telemetry import upload
from luxonis_telemetry._reader import BadLine
from luxonis_telemetry.spool import Spool
from luxonis_telemetry.testing import Action, FakePostHog
from tests.conftest import REPO

KILLS = 60
WRITER = """
import os, sys
from luxonis_telemetry import Telemetry
writer, log_path = sys.argv[1], sys.argv[2]
log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
t = Telemetry("torture")
for n in range(4000):
    t.capture("tick", {"writer": writer, "n": n, "pad": "x" * (n % 300)})
    os.write(log, b"%d\\n" % n)  # written only after capture() returned
"""


def test_random_sigkills_lose_nothing_that_was_captured(
    posthog_env: FakePostHog, spool_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # caps are tested elsewhere; here every captured event must survive
    monkeypatch.setenv("LUXONIS_TELEMETRY_MAX_SPOOL_MB", "2000")
    rng = random.Random(int(os.environ.get("LUXONIS_TORTURE_SEED", "20261128")))
    posthog_env.set_default(Action(delay=0.005))
    env = dict(os.environ)
    logs = tmp_path / "logs"
    logs.mkdir()
    live: list[subprocess.Popen[bytes]] = []
    kills = writers = uploaders = 0
    while kills < KILLS:
        if rng.random() < 0.6:
            writers += 1
            args = [sys.executable, "-c", WRITER, f"w{writers}", str(logs / f"w{writers}.log")]

        else:
            uploaders += 1
            args = [sys.executable, "-m", "luxonis_telemetry", "upload", "--timeout", "20"]

        live.append(
            subprocess.Popen(
                args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        if len(live) >= 3 or rng.random() < 0.7:
            victim = live.pop(rng.randrange(len(live)))
            time.sleep(rng.uniform(0.05, 0.6))  # the random moment of the kill
            if victim.poll() is None:
                os.kill(victim.pid, signal.SIGKILL)
                kills += 1
            victim.wait(timeout=60)
    for process in live:
        process.wait(timeout=120)

    final = upload(budget=120)
    assert final.ok, final.summary()

    returned: dict[str, set[int]] = {}
    for log in logs.iterdir():
        returned[log.stem] = {int(x) for x in log.read_text().split()}
    received: dict[tuple[str, int], set[str]] = defaultdict(set)
    for event in posthog_env.events:
        props = event["properties"]
        received[(props["writer"], props["n"])].add(event["uuid"])
    missing = [(w, n) for w, ns in returned.items() for n in ns if (w, n) not in received]
    state = Spool(str(spool_path)).read_state()
    assert state.dropped == {}, state.dropped
    assert missing == [], f"{len(missing)} captured events never arrived, e.g. {missing[:5]}"
    assert all(len(uuids) == 1 for uuids in received.values()), (
        "one capture arrived under two uuids"
    )
    counts = posthog_env.uuid_counts()
    duplicates = sum(c - 1 for c in counts.values())
    leftovers = list(Spool(str(spool_path)).iter_pending())
    assert [x for x in leftovers if not isinstance(x, BadLine)] == []
    report = {
        "kills": kills,
        "writers": writers,
        "uploaders": uploaders,
        "captured_and_returned": sum(len(v) for v in returned.values()),
        "received_distinct": len(counts),
        "resent_duplicates_same_uuid": duplicates,
        "quarantined_torn_lines": Spool(str(spool_path)).read_state().quarantined,
    }
    print("torture:", json.dumps(report))
    assert report["received_distinct"] >= report["captured_and_returned"]
