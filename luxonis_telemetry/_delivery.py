"""Handing batches to backends: one backend per destination, retries within a deadline.

A :class:`Deliverer` lives for one upload run. It builds each destination's
backend once, remembers which destinations cannot be built (no key,
unknown backend) or have failed in this run, and sends a batch with
retries for transient failures (honouring ``Retry-After``) as long as the
run's deadline allows. Batches run on a few daemon worker threads, so
several can be on the wire at once for a far-away server, and a backend's
own work on a batch (the PostHog backend encodes and gzips it) runs there,
off the thread that reads the spool; a backend that blocks forever can never
hold the process: the run stops waiting at its deadline and daemon threads
do not delay exit.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from . import _log
from .backends import BackendUnavailable, DeliveryError, build_backend, is_registered

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._routing import Destination
    from .record import Record

__all__ = ["MAX_ATTEMPTS", "MAX_IN_FLIGHT", "Deliverer", "Job"]

MAX_ATTEMPTS = 3
# Batches on the wire at once (one worker thread each). Measured on 2 cores: a local
# server gains nothing past 3-4 (the GIL, not the wire, bounds it), a server 100 ms
# away goes 20x posthog's rate with 4 and ~25x with 8, for ~4 MB more memory a worker.
MAX_IN_FLIGHT = 4
MAX_REQUEST_SECONDS = 10.0
_LOCAL_ONLY = ("noop", "stdout")  # debug output at capture, never an upload destination


class Job:
    """One batch handed to a worker thread; ``wait`` bounds how long anyone waits for it."""

    __slots__ = ("_done", "_work", "error", "value")

    def __init__(self, work: Callable[[], Any]) -> None:
        self._work = work
        self._done = threading.Event()
        self.error: Optional[BaseException] = None
        self.value: Any = None

    def run(self) -> None:
        try:
            self.value = self._work()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            self.error = exc
        finally:
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(max(0.0, timeout))


class _Workers:
    """A few daemon threads started on first use (a run that sends nothing starts none)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._queue: queue.SimpleQueue[Optional[Job]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, job: Job) -> Job:
        if len(self._threads) < self._size:
            thread = threading.Thread(target=self._loop, name="luxonis-telemetry-send", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._queue.put(job)
        return job

    def _loop(self) -> None:
        while (job := self._queue.get()) is not None:
            job.run()

    def stop(self) -> None:
        """Let idle workers end; a worker stuck in a backend is abandoned (it is a daemon)."""
        for _thread in self._threads:
            self._queue.put(None)


class Deliverer:
    """Backends and their failures for one upload run, bounded by ``deadline`` (monotonic)."""

    def __init__(
        self, deadline: float, *, trust_sent_at: bool = True, threads: bool = True
    ) -> None:
        self.deadline = deadline
        self.threads = threads
        self.trust_sent_at = trust_sent_at
        self._backends: dict[Destination, Any] = {}
        self.unavailable: dict[Destination, str] = {}
        self.failing: dict[Destination, DeliveryError] = {}
        self._workers = _Workers(MAX_IN_FLIGHT)
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def backend(self, destination: Destination) -> Any:
        """The destination's backend, or ``None`` when it cannot be built (reason kept)."""
        if destination in self.unavailable:
            return None
        found = self._backends.get(destination)
        if found is None and destination.backend in _LOCAL_ONLY:
            self.unavailable[destination] = (
                f"the {destination.backend} backend delivers nothing; events stay pending "
                "(choose a destination with --backend/--endpoint)"
            )
            return None
        if found is None:
            try:
                found = build_backend(destination.backend, destination.config())
            except BackendUnavailable as exc:
                self.unavailable[destination] = str(exc)
                return None
            if hasattr(found, "trust_sent_at"):
                found.trust_sent_at = self.trust_sent_at
            self._backends[destination] = found
        return found

    def depth(self, destination: Destination) -> int:
        """Batches that may be in flight at once: several for batch backends, one otherwise.

        A luxonis-ml style backend (``capture``/``flush``) was not written for
        concurrent calls, so it gets one batch at a time.
        """
        backend = self._backends.get(destination)
        if not self.threads or backend is None or not callable(getattr(backend, "send", None)):
            return 1
        return 1 if is_registered(destination.backend) else MAX_IN_FLIGHT

    def submit(self, destination: Destination, records: Sequence[Record], historical: bool) -> Job:
        """Start delivering ``records`` on a worker; the job holds a ``DeliveryError`` on failure.

        Without threads (at interpreter exit, where none can start) the job
        runs here and now.
        """
        job = Job(lambda: self.send(destination, records, historical))
        if not self.threads:
            job.run()
            return job
        return self._workers.submit(job)

    def send(self, destination: Destination, records: Sequence[Record], historical: bool) -> None:
        """Deliver or raise ``DeliveryError``, retrying transient failures within the deadline."""
        backend = self._backends[destination]
        attempt = 0
        while True:
            attempt += 1
            remaining = self.remaining()
            if remaining <= 0:
                raise DeliveryError("time budget exhausted", kind=DeliveryError.TRANSIENT)
            try:
                _send_once(backend, records, historical, min(MAX_REQUEST_SECONDS, remaining))
                return
            except DeliveryError as exc:
                if exc.kind != DeliveryError.TRANSIENT or attempt >= MAX_ATTEMPTS:
                    raise
                pause = exc.retry_after if exc.retry_after is not None else 0.5 * 2 ** (attempt - 1)
                if pause > self.remaining() - 0.5:
                    raise
                time.sleep(max(0.0, pause))

    def mark_failing(self, destination: Destination, error: DeliveryError) -> None:
        with self._lock:
            self.failing.setdefault(destination, error)

    def close(self) -> None:
        self._workers.stop()
        for backend in self._backends.values():
            shutdown = getattr(backend, "shutdown", None)
            if not callable(shutdown):
                continue
            try:
                shutdown()
            except Exception as exc:  # noqa: BLE001 - a user's backend must not stop us
                _log.internal_error("backend shutdown", exc)


def _send_once(backend: Any, records: Sequence[Record], historical: bool, timeout: float) -> None:
    send = getattr(backend, "send", None)
    if callable(send):
        send(records, historical=historical, timeout=timeout)
        return
    from .events import TelemetryEvent

    identify = getattr(backend, "identify", None)
    try:
        for record in records:
            if record.get("type") == "identify" and callable(identify):
                identify(record["distinct_id"], dict(record.get("properties", {})))
            else:
                backend.capture(TelemetryEvent.from_record(record))
        backend.flush()
    except DeliveryError:
        raise
    except Exception as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", kind=DeliveryError.TRANSIENT) from exc
