"""From a stream of spooled lines to acknowledged batches, in order, deleting only what was stored.

A source (a spool segment, or a bundle) is read front to back and cut into
chunks: a batch of events for one destination plus the lines before it
that will never be sent (corrupt, oversized, refused by PostHog's rules,
too old). Several chunks may be on the wire at once, across sources (the
window does not drain at the end of each segment); they complete in the
order they were handed over, and each source's delivered position advances
only over a prefix of its completed chunks, so a crash at any moment costs
at most a resend of what was in flight. A chunk acknowledged after an
earlier one failed is recorded as an acknowledged range and skipped next
time: nothing accepted is sent again when that can be known. A batch the
server refuses as a whole (400, 413) is split until the events it refuses
are found; only those are quarantined.

Reading and cutting run on the caller's thread, at every event, so they
avoid work the answer does not need: the uuid is matched against its
canonical spelling first, the capture time is compared as text with the
cut-offs when it is written as we write it, and the destination is looked
up again only when the library changes.
"""

from __future__ import annotations

import re
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
    "Source",
    "Tally",
    "bad_line_entry",
    "chunk_stream",
]

BATCH_EVENTS = 1000
BATCH_BYTES = 4 * 1024 * 1024  # PostHog takes up to 20 MiB per request
MAX_EVENT_BYTES = 900 * 1024  # PostHog refuses events over ~1 MB
HISTORICAL_AFTER = timedelta(hours=48)
# The canonical spelling (every uuid we make); others go through ``is_uuid``'s full rules.
_canonical_uuid = re.compile(
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
).fullmatch
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


def _cutoff(now: datetime, age: timedelta) -> str:
    """``now - age`` as ``datetime.isoformat`` writes it in UTC (``""``: before any date)."""
    try:
        return (now - age).astimezone(timezone.utc).isoformat()
    except OverflowError:
        return ""


def _utc_layout(text: str) -> bool:
    """Whether ``text`` is laid out as ``isoformat`` writes a UTC time, to the microsecond or not.

    For such text, string order is time order when it is a valid time; and
    text that is not a valid time is neither too old nor historical, so a
    string comparison with a cut-off written the same way answers like parsing.
    """
    size = len(text)
    return (
        (size == 25 or (size == 32 and text[19] == "."))
        and text.endswith("+00:00")
        and text[4] == text[7] == "-"
        and text[10] == "T"
        and text[13] == text[16] == ":"
    )


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
    """Cut ``(begin, end, record or BadLine)`` items into chunks (see the module doc).

    An event that plainly meets PostHog's rules (canonical uuid, non-blank
    names, captured after both cut-offs in our own UTC layout) is recognised
    without the full checks; any other goes through them all.
    """
    recent = max(_cutoff(now, max_age), _cutoff(now, HISTORICAL_AFTER))
    chunk: Optional[Chunk] = None
    records: list[Record] = []
    batch_bytes = 0
    library: Optional[str] = None
    destination: Optional[Destination] = None
    for begin, end, item in items:
        if chunk is None:
            chunk = Chunk(begin)
            records = chunk.records
        size = end - begin
        if isinstance(item, BadLine):
            chunk.quarantine.append(bad_line_entry(item, source))
            tally.failed += 1
            chunk.end = end
            continue
        if not (
            size <= MAX_EVENT_BYTES
            and _canonical_uuid(item["uuid"]) is not None
            and item["distinct_id"].strip()
            and item["event"].strip()
        ):
            why = "event over 900 KiB" if size > MAX_EVENT_BYTES else _refusal(item)
            if why is not None:
                chunk.quarantine.append({"reason": why, "source": source, "record": _head(item)})
                tally.failed += 1
                chunk.end = end
                continue
        timestamp = item["timestamp"]
        if timestamp >= recent and _utc_layout(timestamp):
            historical = False
        else:
            stamp = _parse_time(timestamp)
            if stamp is not None and now - stamp > max_age:
                tally.skipped += 1
                chunk.end = end
                continue
            historical = stamp is not None and now - stamp > HISTORICAL_AFTER
        if item["library"] != library:
            library = item["library"]
            destination = route(library)
        if records and (
            (destination is not chunk.destination and destination != chunk.destination)
            or historical != chunk.historical
            or len(records) >= BATCH_EVENTS
            or batch_bytes + size > BATCH_BYTES
        ):
            yield chunk
            chunk = Chunk(begin)
            records = chunk.records
            batch_bytes = 0
        if not records:
            chunk.destination = destination
            chunk.historical = historical
        records.append(item)
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


class Source:
    """One file delivered front to back (a spool segment, a bundle) and how far it went.

    ``chunks`` cut it (see :func:`chunk_stream`); ``start`` and ``acked`` are
    what earlier runs delivered (the chunks skip those ranges), kept in every
    commit, or a later commit would forget them and their events would be
    sent again. ``commit(position, acked)`` persists that everything before
    ``position`` and inside the ``acked`` ranges left the source;
    ``should_stop()`` returns a reason to stop the run before the source's
    next batch (deadline, purge, opt-out) or ``None``.
    """

    __slots__ = ("acked", "blocked", "chunks", "commit", "position", "should_stop")

    def __init__(
        self,
        chunks: Iterable[Chunk],
        *,
        start: int,
        acked: Iterable[tuple[int, int]] = (),
        commit: Callable[[int, list[tuple[int, int]]], None],
        should_stop: Callable[[], Optional[str]],
    ) -> None:
        self.chunks = chunks
        self.position = start
        self.acked = list(acked)
        self.commit = commit
        self.should_stop = should_stop
        self.blocked = False  # a chunk failed: later successes become acknowledged ranges


class Pipeline:
    """Delivers the chunks of several sources with batches in flight, committing in order.

    One window of batches in flight spans the whole run: the first batches of
    the next source go out while the last ones of the previous source are
    still on the wire. Chunks complete in the order they were handed over, so
    each source commits in order. ``quarantine(entries)`` keeps what will
    never be sent.
    """

    def __init__(
        self,
        deliverer: Deliverer,
        tally: Tally,
        *,
        quarantine: Callable[[list[dict[str, Any]]], None],
        progress: Optional[Callable[[int], None]] = None,
    ) -> None:
        self.deliverer = deliverer
        self.tally = tally
        self._quarantine = quarantine
        self._progress = progress
        self._in_flight: deque[tuple[Source, Chunk, Optional[Job]]] = deque()

    def run(self, sources: Iterable[Source]) -> None:
        """Deliver the sources in turn; returns when every batch handed over completed."""
        for source in sources:
            if not self._feed(source):
                break
        self._drain(0)

    def _feed(self, source: Source) -> bool:
        """Hand over the source's chunks; False when the whole run must stop.

        A destination that cannot take batches (no backend, failed in this
        run) leaves the rest of the source pending; later sources may still go.
        """
        for chunk in source.chunks:
            reason = source.should_stop()
            if reason is not None:
                self.tally.error = self.tally.error or reason
                return False
            job: Optional[Job] = None
            if chunk.records:
                destination = chunk.destination
                assert destination is not None  # noqa: S101 - set with the first record
                if not self._usable(destination, chunk):
                    return True
                self._drain(self.deliverer.depth(destination) - 1)
                job = self.deliverer.submit(destination, chunk.records, chunk.historical)
            self._in_flight.append((source, chunk, job))
            self._drain_done()
        return True

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
        while self._in_flight and (self._in_flight[0][2] is None or self._in_flight[0][2].done()):
            self._complete(*self._in_flight.popleft())

    def _drain(self, keep: int) -> None:
        """Complete the oldest chunks until at most ``keep`` are in flight."""
        while len(self._in_flight) > keep:
            self._complete(*self._in_flight.popleft())

    def _complete(self, source: Source, chunk: Chunk, job: Optional[Job]) -> None:
        delivered: list[tuple[int, int]] = list(chunk.spans)
        refused: list[dict[str, Any]] = []
        if job is not None:
            wait = self.deliverer.deadline - time.monotonic() + _GRACE
            if not job.wait(wait):
                self._fail(source, chunk, DeliveryError("no answer within the time budget"), [])
                return
            error = job.error
            if error is not None:
                if not isinstance(error, DeliveryError):
                    error = DeliveryError(f"{type(error).__name__}: {error}")
                delivered, refused, failure = self._recover(chunk, error)
                if failure is not None:
                    self._fail(source, chunk, failure, delivered)
                    return
            self.tally.sent += len(delivered)
            self.tally.failed += len(refused)
            if self._progress is not None:
                self._progress(len(chunk.records))
        self._quarantine(chunk.quarantine + refused)
        self._advance(source, chunk)

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

    def _fail(
        self,
        source: Source,
        chunk: Chunk,
        error: DeliveryError,
        delivered: list[tuple[int, int]],
    ) -> None:
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
            source.acked.extend(delivered)
            source.commit(source.position, source.acked)
        source.blocked = True

    @staticmethod
    def _advance(source: Source, chunk: Chunk) -> None:
        if source.blocked:
            source.acked.append((chunk.begin, chunk.end))
        else:
            source.position = chunk.end
        source.commit(source.position, source.acked)
