"""Replays the spool through each library's backend; deletes only what was accepted.

One uploader per spool at a time (``upload.lock``). It claims the active
files by sealing them into segments, then walks the segments oldest first,
sending batches and recording after each accepted batch how far the segment
is delivered. A crash costs at most a resend of the batch in flight, with the
same uuids, which PostHog de-duplicates.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import _state
from .backends import BackendUnavailable, DeliveryError, build_backend
from .config import TelemetryConfig, spool_dir
from .spool import BadLine, Segment, Spool, count_lines, library_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "Destination",
    "UploadResult",
    "count_pending",
    "open_spool",
    "resolve_destinations",
    "upload",
]

BATCH_EVENTS = 1000
BATCH_BYTES = 4 * 1024 * 1024  # PostHog accepts up to 5 MiB per batch
MAX_EVENT_BYTES = 900 * 1024  # PostHog drops larger events
MAX_ATTEMPTS = 3
HISTORICAL_AFTER = timedelta(hours=48)
BACKOFF_FIRST = 60.0
BACKOFF_MAX = 6 * 3600.0


@dataclass
class UploadResult:
    """What one upload did; ``pending`` counts what is still in the spool."""

    sent: int = 0
    pending: int = 0
    failed: int = 0
    skipped: int = 0
    error: Optional[str] = None
    reasons: dict[str, str] = field(default_factory=dict)
    busy: bool = False
    planned: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.pending == 0 and self.error is None and not self.busy

    def summary(self) -> str:
        parts = [f"sent {self.sent}", f"pending {self.pending}"]
        if self.failed:
            parts.append(f"quarantined {self.failed}")
        if self.skipped:
            parts.append(f"skipped {self.skipped}")
        text = ", ".join(parts)
        why = self.error or "; ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items()))
        if not why and self.pending:
            why = "new events arrived during the upload; run it again"
        return f"{text} ({why})" if why else text


@dataclass(frozen=True)
class Destination:
    """Where one library's events go. ``api_key`` never leaves this object."""

    backend: str
    endpoint: Optional[str]
    api_key: Optional[str] = field(default=None, repr=False)

    def describe(self) -> str:
        return f"{self.backend} {self.endpoint}" if self.endpoint else self.backend


def resolve_destinations(
    recorded: Mapping[str, Mapping[str, Any]],
    environ: Mapping[str, str],
    *,
    backend: Optional[str] = None,
    endpoint: Optional[str] = None,
    api_key: Optional[str] = None,
) -> Callable[[str], Destination]:
    """Each library's recorded destination, with the user's env and flags on top."""
    user = TelemetryConfig.from_env(TelemetryConfig(), environ)
    env_backend = environ.get("LUXONIS_TELEMETRY_BACKEND", "").strip() or None
    env_endpoint = environ.get("LUXONIS_TELEMETRY_ENDPOINT", "").strip() or None

    def lookup(library: str) -> Destination:
        known = recorded.get(library, {})
        name = backend or env_backend or _text(known.get("backend")) or "posthog"
        where = endpoint or env_endpoint or _text(known.get("endpoint"))
        if where is None and name == "posthog":
            where = user.effective_endpoint
        return Destination(
            backend=name,
            endpoint=where,
            api_key=api_key or user.api_key or _text(known.get("api_key")),
        )

    return lookup


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


class _Deliverer:
    """One backend instance per destination for the length of a run."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._backends: dict[Destination, Any] = {}
        self.unavailable: dict[Destination, str] = {}
        self.failing: dict[Destination, str] = {}

    def backend(self, destination: Destination) -> Any:
        if destination in self.unavailable or destination in self.failing:
            return None
        found = self._backends.get(destination)
        if found is None:
            config = TelemetryConfig(
                backend=destination.backend,
                endpoint=destination.endpoint,
                api_key=destination.api_key,
            )
            try:
                found = build_backend(destination.backend, config)
            except BackendUnavailable as exc:
                self.unavailable[destination] = str(exc)
                return None
            self._backends[destination] = found
        return found

    def send(
        self, destination: Destination, records: Sequence[dict[str, Any]], historical: bool
    ) -> None:
        """Deliver or raise ``DeliveryError``, retrying transient failures in budget."""
        backend = self._backends[destination]
        attempt = 0
        while True:
            attempt += 1
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise DeliveryError("time budget exhausted", kind="transient")
            if hasattr(backend, "timeout"):
                backend.timeout = max(0.5, min(10.0, remaining))
            try:
                _send_once(backend, records, historical)
                return
            except DeliveryError as exc:
                if exc.kind != "transient" or attempt >= MAX_ATTEMPTS:
                    raise
                pause = exc.retry_after if exc.retry_after is not None else 0.5 * 2 ** (attempt - 1)
                if pause > self.deadline - time.monotonic() - 0.5:
                    raise
                time.sleep(max(0.0, pause))

    def close(self) -> None:
        for backend in self._backends.values():
            try:
                backend.shutdown()
            except Exception as exc:  # noqa: BLE001 - a user's backend must not stop us
                _state.log_internal_error("backend shutdown", exc)


def _send_once(backend: Any, records: Sequence[dict[str, Any]], historical: bool) -> None:
    send = getattr(backend, "send", None)
    if callable(send):
        send(records, historical=historical)
        return
    try:
        for record in records:
            if record.get("type") == "identify":
                backend.identify(record["distinct_id"], record.get("properties", {}))
            else:
                backend.capture(record)
        backend.flush()
    except Exception as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", kind="transient") from exc


@dataclass
class _Run:
    spool: Spool
    destination_of: Callable[[str], Destination]
    deliverer: _Deliverer
    result: UploadResult
    max_age: timedelta
    progress: Optional[Callable[[int], None]]
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def segment(self, segment: Segment) -> bool:
        """Deliver one segment front to back; False when it must stay pending."""
        return self.stream(
            segment.records(),
            start=segment.start,
            end=segment.size,
            commit=lambda offset: self.spool.commit(segment, offset),
            source=os.path.basename(segment.path),
        )

    def stream(
        self,
        items: Iterable[tuple[int, Any]],
        *,
        start: int,
        end: int,
        commit: Callable[[int], None],
        source: str,
    ) -> bool:
        """Deliver ``(position, record or BadLine)`` items in order.

        ``commit(position)`` is called after each accepted batch with the
        position up to which everything was delivered, quarantined or
        skipped; a False return means the rest stays pending.
        """
        batch: list[dict[str, Any]] = []
        batch_bytes = 0
        batch_key: Optional[tuple[Destination, bool]] = None
        committed = position = previous = start
        quarantine: list[dict[str, Any]] = []
        destinations: dict[str, Destination] = {}

        def flush() -> bool:
            nonlocal batch, batch_bytes, committed
            if batch and batch_key is not None and not self._deliver(batch, *batch_key, quarantine):
                return False
            self.spool.quarantine(quarantine)
            quarantine.clear()
            batch, batch_bytes = [], 0
            if position != committed:
                commit(position)
                committed = position
            return True

        for item_end, item in items:
            size, previous = item_end - previous, item_end
            keep, stamp = self._screen(item, size, source, quarantine)
            if not keep:
                if not batch:
                    position = item_end
                continue
            destination = destinations.get(item["library"])
            if destination is None:
                destination = destinations[item["library"]] = self.destination_of(item["library"])
            if self.deliverer.backend(destination) is None:
                flush()
                self._note_unavailable(item["library"], destination)
                return False
            historical = stamp is not None and self.now - stamp > HISTORICAL_AFTER
            key = (destination, historical)
            if (
                batch
                and (
                    key != batch_key
                    or len(batch) >= BATCH_EVENTS
                    or batch_bytes + size > BATCH_BYTES
                )
                and not flush()
            ):
                return False
            batch_key = key
            batch.append(item)
            batch_bytes += size
            position = item_end
            if time.monotonic() > self.deliverer.deadline:
                flush()
                self.result.error = self.result.error or "time budget exhausted"
                return False
        if not flush():
            return False
        if end and committed < end:
            commit(end)
        return True

    def _screen(
        self, item: Any, size: int, source: str, quarantine: list[dict[str, Any]]
    ) -> tuple[bool, Optional[datetime]]:
        """Whether ``item`` is to be sent (and its time); the rest is set aside, counted."""
        if isinstance(item, BadLine):
            quarantine.append(_bad_entry(item, source))
            self.result.failed += 1
            return False, None
        if size > MAX_EVENT_BYTES:
            quarantine.append(_bad_entry(BadLine("event over 900 KiB", b"", size), source))
            self.result.failed += 1
            return False, None
        stamp = _parse_time(item["timestamp"])
        if stamp is not None and self.now - stamp > self.max_age:
            self.result.skipped += 1
            return False, stamp
        return True, stamp

    def _deliver(
        self,
        batch: list[dict[str, Any]],
        destination: Destination,
        historical: bool,
        quarantine: list[dict[str, Any]],
    ) -> bool:
        try:
            self.deliverer.send(destination, batch, historical)
        except DeliveryError as exc:
            if exc.kind == "too_large" and len(batch) > 1:
                half = len(batch) // 2
                return self._deliver(batch[:half], destination, historical, quarantine) and (
                    self._deliver(batch[half:], destination, historical, quarantine)
                )
            if exc.kind in ("rejected", "too_large"):
                reason = f"rejected by {destination.describe()}: {exc}"
                quarantine.extend({"reason": reason, "record": record} for record in batch)
                self.result.failed += len(batch)
                return True
            self.deliverer.failing[destination] = str(exc)
            for library in {record["library"] for record in batch}:
                self.result.reasons[library] = f"{destination.describe()}: {exc}"
            self.result.error = self.result.error or str(exc)
            return False
        self.result.sent += len(batch)
        if self.progress is not None:
            self.progress(len(batch))
        return True

    def _note_unavailable(self, library: str, destination: Destination) -> None:
        reason = self.deliverer.unavailable.get(destination) or self.deliverer.failing.get(
            destination, "unavailable"
        )
        self.result.reasons.setdefault(library, reason)


def _bad_entry(item: BadLine, source: str) -> dict[str, Any]:
    return {
        "reason": item.reason,
        "source": source,
        "length": item.length,
        "head": item.head.decode("utf-8", "backslashreplace"),
    }


def _parse_time(text: str) -> Optional[datetime]:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)


def open_spool(environ: Optional[Mapping[str, str]] = None) -> Optional[Spool]:
    """The user's spool as configured by the environment (``None``: no home)."""
    env = os.environ if environ is None else environ
    config = TelemetryConfig.from_env(TelemetryConfig(), env)
    path = spool_dir(config, env)
    if path is None:
        return None
    known = _state.state.spools.get(path)
    if known is not None:
        return known
    return Spool(path, max_bytes=config.max_spool_bytes, max_age_days=config.max_event_age_days)


def upload(
    *,
    budget: float = 30.0,
    lock_timeout: Optional[float] = None,
    backend: Optional[str] = None,
    endpoint: Optional[str] = None,
    api_key: Optional[str] = None,
    libraries: Optional[Sequence[str]] = None,
    dry_run: bool = False,
    progress: Optional[Callable[[int], None]] = None,
    spool: Optional[Spool] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> UploadResult:
    """Send pending events; never raises for a delivery problem.

    ``budget`` bounds the whole run in seconds. ``lock_timeout`` is how long
    to wait for another uploader of the same spool (default: the budget).
    """
    env = os.environ if environ is None else environ
    result = UploadResult()
    spool = spool or open_spool(env)
    if spool is None:
        result.error = "no spool folder (no home directory?)"
        return result
    if not spool.exists():
        return result
    destination_of = resolve_destinations(
        spool.read_destinations(), env, backend=backend, endpoint=endpoint, api_key=api_key
    )
    if dry_run:
        return _plan(spool, destination_of, libraries)
    deadline = time.monotonic() + budget
    lock = spool.upload_lock()
    if not lock.acquire(budget if lock_timeout is None else lock_timeout):
        lock.close()
        result.busy = True
        result.error = "another upload of this spool is running"
        result.pending = count_pending(spool)
        return result
    deliverer = _Deliverer(deadline)
    try:
        spool.seal_all()
        run = _Run(
            spool,
            destination_of,
            deliverer,
            result,
            timedelta(seconds=spool.max_age_seconds),
            progress,
        )
        wanted = {library_key(name) for name in libraries} if libraries else None
        for segment in spool.segments():
            if wanted is not None and segment.key not in wanted:
                continue
            run.segment(segment)
        result.pending = count_pending(spool, wanted)
    finally:
        deliverer.close()
        lock.release()
        lock.close()
    _remember(spool, result, transient=bool(deliverer.failing))
    return result


def count_pending(spool: Spool, keys: Optional[set[str]] = None) -> int:
    """Pending lines (events, or bad lines not yet quarantined)."""
    total = 0
    for segment in spool.segments():
        if keys is None or segment.key in keys:
            total += count_lines(segment.path, segment.start)
    for path in spool.active_files():
        key = os.path.basename(path)[len("active.") : -len(".jsonl")]
        if keys is None or key in keys:
            total += count_lines(path, 0)
    return total


def _plan(
    spool: Spool,
    destination_of: Callable[[str], Destination],
    libraries: Optional[Sequence[str]],
) -> UploadResult:
    result = UploadResult()
    deliverer = _Deliverer(time.monotonic() + 60)
    labels: dict[str, str] = {}
    for _end, item in spool.iter_pending():
        if isinstance(item, BadLine):
            result.failed += 1
            continue
        if libraries and item["library"] not in libraries:
            continue
        where = labels.get(item["library"])
        if where is None:
            destination = destination_of(item["library"])
            where = f"{item['library']} -> {destination.describe()}"
            if deliverer.backend(destination) is None:
                where += f" (would stay pending: {deliverer.unavailable[destination]})"
            labels[item["library"]] = where
        result.planned[where] = result.planned.get(where, 0) + 1
        result.pending += 1
    deliverer.close()
    return result


def _remember(spool: Spool, result: UploadResult, *, transient: bool) -> None:
    """Persist the outcome: ``status`` shows it and the exit hook backs off by it."""
    now = time.time()

    def change(state: dict[str, Any]) -> None:
        state["last_upload"] = {
            "at": now,
            "sent": result.sent,
            "pending": result.pending,
            "failed": result.failed,
            "error": result.error,
        }
        if transient:
            failures = int(state.get("exit_backoff", {}).get("failures", 0)) + 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
            state["exit_backoff"] = {"failures": failures, "next_attempt_at": now + delay}
        elif result.sent or not result.pending:
            state.pop("exit_backoff", None)
        if result.skipped:
            dropped = state.setdefault("dropped", {})
            dropped["age_cap"] = int(dropped.get("age_cap", 0)) + result.skipped

    try:
        spool.update_state(change)
    except OSError as exc:
        _state.log_internal_error("saving the upload result", exc)
