"""Replays the spool through each library's backend; deletes only what was accepted.

One uploader per spool at a time (``upload.lock``). It claims the active
files by sealing them into segments, then delivers the segments oldest
first through one pipeline (see ``_pipeline``: batches of the next segment
go out while the last ones of the previous are in flight), recording after
each acknowledged batch how far each segment went. Nothing is sent when the
user opted out or chose local mode, whatever the caller asks; a purge or
``disable`` stops a running upload before its next batch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Optional

from . import _log
from ._delivery import Deliverer
from ._pipeline import Pipeline, Source, Tally, chunk_stream
from ._routing import Router
from .config import TelemetryConfig, config_dir, decide_mode, read_dotenv, spool_dir
from .spool import Spool, library_key

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from ._pipeline import Chunk
    from ._spool_state import SpoolState
    from .spool import Segment

__all__ = ["UploadResult", "open_spool", "plan", "sending_blocked", "upload"]

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
    blocked: Optional[str] = None
    unauthorized: bool = False

    @property
    def ok(self) -> bool:
        """Nothing was left behind that the caller asked to send."""
        if self.blocked is not None:
            return True
        return self.pending == 0 and self.error is None and not self.busy

    def summary(self) -> str:
        """One line for a person."""
        if self.blocked is not None:
            return f"nothing sent: {self.blocked} ({self.pending} pending)"
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

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "pending": self.pending,
            "failed": self.failed,
            "skipped": self.skipped,
            "error": self.error,
            "reasons": self.reasons,
            "busy": self.busy,
            "blocked": self.blocked,
            "unauthorized": self.unauthorized,
        }


def sending_blocked(environ: Mapping[str, str], *, dotenv: bool = True) -> Optional[str]:
    """Why nothing may be sent from here (an opt-out or local mode), or ``None``."""
    decision = decide_mode("on", environ, read_dotenv() if dotenv else {})
    if decision.mode == "off":
        return f"telemetry is off ({decision.reason})"
    if decision.mode == "local":
        return f"local mode: events are recorded, never uploaded ({decision.reason})"
    return None


def open_spool(environ: Optional[Mapping[str, str]] = None) -> Optional[Spool]:
    """The user's spool as configured by the environment (``None``: no home)."""
    from . import _state

    env = os.environ if environ is None else environ
    config = TelemetryConfig.from_environ(environ=env)
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
    progress: Optional[Callable[[int], None]] = None,
    spool: Optional[Spool] = None,
    environ: Optional[Mapping[str, str]] = None,
    threads: bool = True,
) -> UploadResult:
    """Send pending events; never raises for a delivery problem.

    ``budget`` bounds the whole run in seconds (a batch on the wire is given
    what is left of it). ``lock_timeout`` is how long to wait for another
    uploader of the same spool (default: the budget). Under any opt-out or
    in local mode nothing is sent and ``blocked`` says why. ``threads=False``
    sends one batch at a time on the calling thread (at interpreter exit no
    thread can start).
    """
    env = os.environ if environ is None else environ
    result = UploadResult()
    blocked = sending_blocked(env, dotenv=environ is None)
    spool = spool or open_spool(env)
    if blocked is not None:
        result.blocked = blocked
        result.pending = spool.count_pending() if spool is not None and spool.exists() else 0
        return result
    if spool is None:
        result.error = "no spool folder (no home directory?)"
        return result
    if not spool.exists():
        return result
    deadline = time.monotonic() + budget
    lock = spool.upload_lock()
    if not lock.acquire(budget if lock_timeout is None else lock_timeout):
        lock.close()
        result.busy = True
        result.error = "another upload of this spool is running"
        result.pending = spool.count_pending()
        return result
    router = Router(
        spool.read_destinations(), env, backend=backend, endpoint=endpoint, api_key=api_key
    )
    deliverer = Deliverer(deadline, threads=threads)
    tally = Tally()
    wanted = {library_key(name) for name in libraries} if libraries else None
    try:
        spool.seal_all()
        pipeline = Pipeline(deliverer, tally, quarantine=spool.quarantine, progress=progress)
        pipeline.run(
            _sources(
                spool,
                router,
                tally,
                wanted,
                stop=_stop_check(deadline, env, environ is None),
                now=datetime.now(timezone.utc),
            )
        )
        result.pending = spool.count_pending(wanted)
    finally:
        deliverer.close()
        lock.release()
        lock.close()
    _fill(result, tally)
    remember(spool, result, transient=bool(deliverer.failing), tally=tally)
    return result


def _stop_check(
    deadline: float, env: Mapping[str, str], dotenv: bool
) -> Callable[[], Optional[str]]:
    """Checked before each batch: the deadline, and an opt-out made while we run."""
    folder = config_dir(env)

    def check() -> Optional[str]:
        if time.monotonic() > deadline:
            return "time budget exhausted"
        if folder is not None:
            return sending_blocked(env, dotenv=dotenv)
        return None

    return check


def _sources(
    spool: Spool,
    router: Router,
    tally: Tally,
    wanted: Optional[set[str]],
    *,
    stop: Callable[[], Optional[str]],
    now: datetime,
) -> Iterator[Source]:
    """The sealed segments to deliver, oldest first, each read only when its turn comes."""
    max_age = timedelta(seconds=spool.max_age_seconds)
    for segment in spool.segments():
        if wanted is not None and segment.key not in wanted:
            continue
        chunks = chunk_stream(
            segment.records(),
            route=router,
            source=segment.name,
            tally=tally,
            max_age=max_age,
            now=now,
        )
        yield Source(
            chunks,
            start=segment.start,
            acked=segment.acked,
            commit=_committer(spool, segment),
            should_stop=_segment_stop(segment, stop),
        )


def _segment_stop(
    segment: Segment, stop: Callable[[], Optional[str]]
) -> Callable[[], Optional[str]]:
    def check() -> Optional[str]:
        return "the events were purged" if not segment.exists() else stop()

    return check


def _committer(spool: Spool, segment: Segment) -> Callable[[int, list[tuple[int, int]]], None]:
    def commit(position: int, acked: list[tuple[int, int]]) -> None:
        spool.commit(segment, position, acked)

    return commit


def _fill(result: UploadResult, tally: Tally) -> None:
    result.sent += tally.sent
    result.failed += tally.failed
    result.skipped += tally.skipped
    result.error = result.error or tally.error
    result.reasons.update(tally.reasons)
    result.unauthorized = tally.unauthorized is not None


def remember(spool: Spool, result: UploadResult, *, transient: bool, tally: Tally) -> None:
    """Persist the outcome: ``status`` shows it and the exit hook backs off by it."""
    now = time.time()
    unauthorized = tally.unauthorized
    refused_at = tally.refused_at

    def change(state: SpoolState) -> None:
        state.last_upload = {
            "at": now,
            "sent": result.sent,
            "pending": result.pending,
            "failed": result.failed,
            "error": result.error,
        }
        if transient:
            state.backoff_failures += 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (min(state.backoff_failures, 30) - 1))
            state.next_attempt_at = now + delay
        elif result.sent or not result.pending:
            state.backoff_failures = 0
            state.next_attempt_at = 0.0
        if unauthorized is not None:
            state.auth_failure = {
                "at": now,
                "status": unauthorized.status or 0,
                "destination": refused_at,
                "message": str(unauthorized),
            }
        elif result.sent:
            state.auth_failure = None
        if result.skipped:
            state.add_drops({"age_cap": result.skipped})

    try:
        spool.update_state(change)
    except OSError as exc:
        _log.debug("saving the upload result failed: %s", exc)


def plan(
    *,
    spool: Spool,
    backend: Optional[str] = None,
    endpoint: Optional[str] = None,
    api_key: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Iterator[tuple[Chunk, Any]]:
    """The batches an upload would send now, each with its destination's backend (or ``None``).

    Nothing is sent and nothing changes on disk (no sealing, no quarantine).
    """
    env = os.environ if environ is None else environ
    router = Router(
        spool.read_destinations(), env, backend=backend, endpoint=endpoint, api_key=api_key
    )
    deliverer = Deliverer(time.monotonic() + 60)
    tally = Tally()
    now = datetime.now(timezone.utc)
    max_age = timedelta(seconds=spool.max_age_seconds)
    try:
        for segment in spool.segments():
            yield from _planned(
                segment.records(), router, deliverer, tally, segment.name, now, max_age
            )
        for path in spool.active_files():
            from ._reader import iter_records

            items = _spans(iter_records(path, torn_tail_is_bad=False))
            yield from _planned(
                items, router, deliverer, tally, os.path.basename(path), now, max_age
            )
    finally:
        deliverer.close()


def _spans(items: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, int, Any]]:
    begin = 0
    for end, item in items:
        yield begin, end, item
        begin = end


def _planned(
    items: Iterator[tuple[int, int, Any]],
    router: Router,
    deliverer: Deliverer,
    tally: Tally,
    source: str,
    now: datetime,
    max_age: timedelta,
) -> Iterator[tuple[Chunk, Any]]:
    for chunk in chunk_stream(
        items, route=router, source=source, tally=tally, max_age=max_age, now=now
    ):
        if chunk.records and chunk.destination is not None:
            yield chunk, deliverer.backend(chunk.destination)
        else:
            yield chunk, None
