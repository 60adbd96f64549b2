"""From a stream of spooled lines to acknowledged batches, in order, deleting only what was stored.

A source (a spool segment, or a bundle) is read front to back and cut into
chunks: a batch of events for one destination plus the lines before it
that will never be sent (corrupt, oversized, refused by PostHog's rules,
too old). Several chunks may be on the wire at once; they complete in
order, and the source's delivered position advances only over a prefix of
completed chunks, so a crash at any moment costs at most a resend of what
was in flight. A chunk acknowledged after an earlier one failed is recorded
as an acknowledged range and skipped next time: nothing accepted is sent
again when that can be known. A batch the server refuses as a whole (400,
413) is split until the events it refuses are found; only those are
quarantined.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Optional

from ._ids import is_uuid
from ._reader import BadLine
from .backends import DeliveryError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from ._delivery import Deliverer, Job
    from ._reader import Item
    from ._routing import Destination
    from .record import Record

__all__ = [
    "BATCH_BYTES",
    "BATCH_EVENTS",
    "HISTORICAL_AFTER",
    "MAX_EVENT_BYTES",
    "Chunk",
    "Pipeline",
    "Tally",
    "bad_line_entry",
    "chunk_stream",
]

BATCH_EVENTS = 1000
BATCH_BYTES = 4 * 1024 * 1024  # PostHog takes up to 20 MiB per request
MAX_EVENT_BYTES = 900 * 1024  # PostHog refuses events over ~1 MB
HISTORICAL_AFTER = timedelta(hours=48)
_GRACE = 1.0  # seconds past the deadline we still wait for a batch in flight


class Tally:
    """What a run did, shared by every source it delivered."""

    __slots__ = (
        "error",
        "failed",
        "reasons",
        "refused_at",
        "sent",
        "skipped",
        "unauthorized",
    )

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self.skipped = 0
        self.error: Optional[str] = None
        self.reasons: dict[str, str] = {}
        self.unauthorized: Optional[DeliveryError] = None
        self.refused_at: Optional[str] = None  # the destination that refused the key, masked


class Chunk:
    """Bytes ``[begin, end)`` of a source: events to send, and lines set aside before them."""

    __slots__ = ("begin", "destination", "end", "historical", "quarantine", "records", "spans")

    def __init__(self, begin: int) -> None:
        self.begin = begin
        self.end = begin
        self.records: list[Record] = []
        self.spans: list[tuple[int, int]] = []
        self.quarantine: list[dict[str, Any]] = []
        self.destination: Optional[Destination] = None
        self.historical = False


def _parse_time(text: str) -> Optional[datetime]:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)


def _refusal(record: Record) -> Optional[str]:
    """Why PostHog would refuse the whole request for this event, if it would."""
    if not is_uuid(record["uuid"]):
        return "uuid is not a UUID"
    if not record["distinct_id"].strip():
        return "distinct_id is empty"
    if not record["event"].strip():
        return "event name is empty"
    return None


def chunk_stream(
    items: Iterable[tuple[int, int, Item]],
    *,
    route: Callable[[str], Destination],
    source: str,
    tally: Tally,
    max_age: timedelta,
    now: datetime,
) -> Iterator[Chunk]:
    """Cut ``(begin, end, record or BadLine)`` items into chunks (see the module doc)."""
    chunk: Optional[Chunk] = None
    batch_bytes = 0
    for begin, end, item in items:
        if chunk is None:
            chunk = Chunk(begin)
        size = end - begin
        if isinstance(item, BadLine):
            chunk.quarantine.append(bad_line_entry(item, source))
            tally.failed += 1
            chunk.end = end
            continue
        why = "event over 900 KiB" if size > MAX_EVENT_BYTES else _refusal(item)
        if why is not None:
            chunk.quarantine.append({"reason": why, "source": source, "record": _head(item)})
            tally.failed += 1
            chunk.end = end
            continue
        stamp = _parse_time(item["timestamp"])
        if stamp is not None and now - stamp > max_age:
            tally.skipped += 1
            chunk.end = end
            continue
        destination = route(item["library"])
        historical = stamp is not None and now - stamp > HISTORICAL_AFTER
        if chunk.records and (
            destination != chunk.destination
            or historical != chunk.historical
            or len(chunk.records) >= BATCH_EVENTS
            or batch_bytes + size > BATCH_BYTES
        ):
            yield chunk
            chunk = Chunk(begin)
            batch_bytes = 0
        chunk.destination = destination
        chunk.historical = historical
        chunk.records.append(item)
        chunk.spans.append((begin, end))
        chunk.end = end
        batch_bytes += size
    if chunk is not None:
        yield chunk


def bad_line_entry(item: BadLine, source: str) -> dict[str, Any]:
    """The quarantine entry for a line that is not an event (its head, never all of it)."""
    return {
        "reason": item.reason,
        "source": source,
        "length": item.length,
        "head": item.head.decode("utf-8", "backslashreplace"),
    }


def _head(record: Record) -> dict[str, Any]:
    """A refused record, kept whole unless it is huge (then its identity only)."""
    return {key: record.get(key) for key in ("uuid", "timestamp", "event", "library", "type")}


class Pipeline:
    """Delivers the chunks of one source with several in flight, committing in order.

    ``commit(position, acked)`` persists that everything before ``position``
    and inside the ``acked`` ranges left the source; ``quarantine(entries)``
    keeps what will never be sent; ``should_stop()`` returns a reason to stop
    before the next batch (deadline, purge, opt-out) or ``None``.
    """

    def __init__(
        self,
        deliverer: Deliverer,
        tally: Tally,
        *,
        commit: Callable[[int, list[tuple[int, int]]], None],
        quarantine: Callable[[list[dict[str, Any]]], None],
        should_stop: Callable[[], Optional[str]],
        progress: Optional[Callable[[int], None]] = None,
    ) -> None:
        self.deliverer = deliverer
        self.tally = tally
        self._commit = commit
        self._quarantine = quarantine
        self._should_stop = should_stop
        self._progress = progress
        self._in_flight: deque[tuple[Chunk, Optional[Job]]] = deque()
        self._position = 0
        self._acked: list[tuple[int, int]] = []
        self._blocked = False  # a chunk failed: later successes become acknowledged ranges

    def run(
        self, chunks: Iterable[Chunk], start: int, acked: Iterable[tuple[int, int]] = ()
    ) -> bool:
        """Deliver ``chunks``; True when the whole source left the spool.

        ``start`` and ``acked`` are what earlier runs delivered (the chunks
        skip those ranges); they are kept in every commit, or a later commit
        would forget them and their events would be sent again.
        """
        self._position = start
        self._acked = list(acked)
        finished = True
        for chunk in chunks:
            reason = self._should_stop()
            if reason is not None:
                self.tally.error = self.tally.error or reason
                finished = False
                break
            job: Optional[Job] = None
            if chunk.records:
                destination = chunk.destination
                assert destination is not None  # noqa: S101 - set with the first record
                if not self._usable(destination, chunk):
                    finished = False
                    break
                depth = self.deliverer.depth(destination)
                self._drain(depth - 1)
                job = self.deliverer.submit(destination, chunk.records, chunk.historical)
            self._in_flight.append((chunk, job))
            self._drain_done()
        self._drain(0)
        return finished and not self._blocked

    def _usable(self, destination: Destination, chunk: Chunk) -> bool:
        library = chunk.records[0]["library"]
        if self.deliverer.backend(destination) is None:
            reason = self.deliverer.unavailable[destination]
        elif destination in self.deliverer.failing:
            reason = str(self.deliverer.failing[destination])
        else:
            return True
        self.tally.reasons.setdefault(library, reason)
        return False

    def _drain_done(self) -> None:
        while self._in_flight and (self._in_flight[0][1] is None or self._in_flight[0][1].done()):
            self._complete(*self._in_flight.popleft())

    def _drain(self, keep: int) -> None:
        """Complete the oldest chunks until at most ``keep`` are in flight."""
        while len(self._in_flight) > keep:
            self._complete(*self._in_flight.popleft())

    def _complete(self, chunk: Chunk, job: Optional[Job]) -> None:
        delivered: list[tuple[int, int]] = list(chunk.spans)
        refused: list[dict[str, Any]] = []
        if job is not None:
            wait = self.deliverer.deadline - time.monotonic() + _GRACE
            if not job.wait(wait):
                self._fail(chunk, DeliveryError("no answer within the time budget"), [])
                return
            error = job.error
            if error is not None:
                if not isinstance(error, DeliveryError):
                    error = DeliveryError(f"{type(error).__name__}: {error}")
                delivered, refused, failure = self._recover(chunk, error)
                if failure is not None:
                    self._fail(chunk, failure, delivered)
                    return
            self.tally.sent += len(delivered)
            self.tally.failed += len(refused)
            if self._progress is not None:
                self._progress(len(chunk.records))
        self._quarantine(chunk.quarantine + refused)
        self._advance(chunk)

    def _recover(
        self, chunk: Chunk, error: DeliveryError
    ) -> tuple[list[tuple[int, int]], list[dict[str, Any]], Optional[DeliveryError]]:
        """For a refused batch: what was delivered, what was refused, and what still failed."""
        destination = chunk.destination
        assert destination is not None  # noqa: S101
        indexes = list(range(len(chunk.records)))
        if error.kind == DeliveryError.REJECTED:
            reason = f"rejected by {destination.describe()}: {error}"
            return [], [self._refused(chunk, i, reason) for i in indexes], None
        if error.kind not in (DeliveryError.INVALID, DeliveryError.TOO_LARGE):
            return [], [], error
        sent: list[int] = []
        refused: list[dict[str, Any]] = []
        failure = self._bisect(chunk, indexes, error, sent, refused)
        return [chunk.spans[i] for i in sent], refused, failure

    def _bisect(
        self,
        chunk: Chunk,
        indexes: list[int],
        error: DeliveryError,
        sent: list[int],
        refused: list[dict[str, Any]],
    ) -> Optional[DeliveryError]:
        destination = chunk.destination
        assert destination is not None  # noqa: S101
        if len(indexes) == 1:
            reason = f"refused by {destination.describe()}: {error}"
            refused.append(self._refused(chunk, indexes[0], reason))
            return None
        half = len(indexes) // 2
        for part in (indexes[:half], indexes[half:]):
            try:
                self.deliverer.send(destination, [chunk.records[i] for i in part], chunk.historical)
            except DeliveryError as exc:
                if exc.kind in (DeliveryError.INVALID, DeliveryError.TOO_LARGE):
                    failure = self._bisect(chunk, part, exc, sent, refused)
                elif exc.kind == DeliveryError.REJECTED:
                    reason = f"rejected by {destination.describe()}: {exc}"
                    refused.extend(self._refused(chunk, i, reason) for i in part)
                    continue
                else:
                    return exc
                if failure is not None:
                    return failure
                continue
            sent.extend(part)
        return None

    @staticmethod
    def _refused(chunk: Chunk, index: int, reason: str) -> dict[str, Any]:
        return {"reason": reason, "record": chunk.records[index]}

    def _fail(self, chunk: Chunk, error: DeliveryError, delivered: list[tuple[int, int]]) -> None:
        """The chunk stays pending (except what was delivered); later ones may still go."""
        destination = chunk.destination
        assert destination is not None  # noqa: S101
        self.deliverer.mark_failing(destination, error)
        if error.kind == DeliveryError.UNAUTHORIZED and self.tally.unauthorized is None:
            self.tally.unauthorized = error
            self.tally.refused_at = destination.describe()
        self.tally.error = self.tally.error or str(error)
        for library in {record["library"] for record in chunk.records}:
            self.tally.reasons.setdefault(library, f"{destination.describe()}: {error}")
        if delivered:
            self.tally.sent += len(delivered)
            self._acked.extend(delivered)
            self._commit(self._position, self._acked)
        self._blocked = True

    def _advance(self, chunk: Chunk) -> None:
        if self._blocked:
            self._acked.append((chunk.begin, chunk.end))
        else:
            self._position = chunk.end
        self._commit(self._position, self._acked)
