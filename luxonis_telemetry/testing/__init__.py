"""Test helpers shipped with the library, for its own tests and library authors'.

``capture_events()`` collects what a block of code records (in memory;
nothing written or sent); ``reset()`` forgets all process-wide state;
``MemoryBackend`` keeps what an upload delivers. ``FakePostHog`` is a
PostHog ``/batch/`` endpoint on 127.0.0.1: it refuses what PostHog's capture
service refuses (bad uuids, blank distinct ids, unknown keys, oversized
bodies and events) and can be scripted with ``Action``s to fail, redirect,
answer like a captive portal, stream without end, drip, reset or hang, so
delivery is tested with the real ``posthog`` client without any event
leaving the machine.

Run ``python -m luxonis_telemetry.testing [PORT]`` to keep one in the foreground.
"""

from __future__ import annotations

from ._capture import capture_events, reset
from ._fake_posthog import Action, FakePostHog, ReceivedBatch
from ._memory import MemoryBackend

__all__ = ["Action", "FakePostHog", "MemoryBackend", "ReceivedBatch", "capture_events", "reset"]
