"""Portable bundles: carry pending events off an air-gapped machine.

A bundle is one gzip file of JSON lines. The first line is a header naming
the format and version, the event count, the time range, the libraries and
the SHA-256 of the record lines that follow; a truncated or altered bundle
fails that check and nothing is sent. A bundle names libraries, never a
destination: the connected machine sends each library's events where its
own settings say (see ``_routing``), so a bundle can never choose where
that machine's API key goes.

Bundles are read as a stream with bounded memory whatever they hold
(millions of events): one record line at most ``MAX_LINE_BYTES``, and
decompression that stops when the output outgrows the input by more than
``MAX_RATIO`` (a gzip bomb), with one clear error. Uploading a bundle
records its progress in the spool's state, so uploading it again sends
nothing twice.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Optional

from . import _fs
from ._delivery import Deliverer
from ._errors import TelemetryError
from ._pipeline import Pipeline, Source, Tally, bad_line_entry, chunk_stream
from ._reader import MAX_LINE_BYTES, BadLine, decode_line
from ._routing import Router
from .uploader import UploadResult, remember, sending_blocked

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from ._reader import Item
    from .spool import Segment, Spool

__all__ = [
    "BUNDLE_FORMAT",
    "MAX_RATIO",
    "BundleError",
    "BundleInfo",
    "export_bundle",
    "read_bundle",
    "upload_bundle",
]

BUNDLE_FORMAT = "luxonis-telemetry-bundle"
BUNDLE_VERSION = 1
MAX_RATIO = 100  # real bundles of JSON events compress 8-15x; a bomb ~1000x
_RATIO_SLACK = 1024 * 1024  # the first MiB of output is never judged
_MAX_HEADER_BYTES = 64 * 1024
_READ = 64 * 1024
_QUARANTINE_BATCH = 1000


class BundleError(TelemetryError):
    """The bundle is unreadable, truncated, altered, hostile or of an unknown format."""


@dataclass(frozen=True)
class BundleInfo:
    """A verified bundle: ``size`` is the byte length of its record lines, uncompressed."""

    path: str
    count: int
    sha256: str
    header: dict[str, Any]
    size: int = 0


class _Lines:
    """The lines of a gzip file, decompressed in small steps with every size bounded."""

    def __init__(self, path: str) -> None:
        try:
            self._fd = _fs.open_user_file(path)
        except FileNotFoundError:
            raise BundleError(f"no such bundle: {path}") from None
        except _fs.UnsafeFile as exc:
            raise BundleError(f"refusing {path}: {exc.strerror}") from None
        except OSError as exc:
            raise BundleError(f"cannot read {path}: {exc.strerror}") from None
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""  # compressed bytes not yet inflated
        self._eof = False
        self.consumed = 0  # compressed bytes read
        self.produced = 0  # bytes inflated

    def close(self) -> None:
        os.close(self._fd)

    def _inflate(self) -> bytes:
        """Up to ``_READ`` more decompressed bytes (``b""`` at the end)."""
        while True:
            if not self._pending and not self._eof:
                data = os.read(self._fd, _READ)
                self.consumed += len(data)
                if not data:
                    self._eof = True
                self._pending = data
            if self._inflater.eof:
                rest = self._inflater.unused_data + self._pending
                if not rest.strip(b"\0"):
                    if self._eof:
                        return b""
                    self._pending = b""
                    continue
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # concatenated member
                self._pending = rest
            try:
                out = self._inflater.decompress(self._pending, _READ)
            except zlib.error as exc:
                raise BundleError(f"bundle is damaged (not gzip data): {exc}") from None
            self._pending = self._inflater.unconsumed_tail
            if out:
                self.produced += len(out)
                if self.produced > _RATIO_SLACK + MAX_RATIO * self.consumed:
                    raise BundleError(
                        f"bundle expands more than {MAX_RATIO}x: not a bundle (a gzip bomb?)"
                    )
                return out
            if self._eof and not self._pending:
                if not self._inflater.eof:
                    raise BundleError("bundle is truncated")
                return b""

    def __iter__(self) -> Iterator[bytes]:
        """Each line with its newline; a line over ``MAX_LINE_BYTES`` is an error."""
        buffer = b""
        while True:
            chunk = self._inflate()
            if not chunk:
                break
            buffer += chunk
            start = 0
            while (newline := buffer.find(b"\n", start)) >= 0:
                if newline - start > MAX_LINE_BYTES:
                    raise BundleError(
                        f"bundle has a line over {MAX_LINE_BYTES} bytes: not a bundle"
                    )
                yield buffer[start : newline + 1]
                start = newline + 1
            buffer = buffer[start:]
            if len(buffer) > MAX_LINE_BYTES:
                raise BundleError(f"bundle has a line over {MAX_LINE_BYTES} bytes: not a bundle")
        if buffer:
            raise BundleError("bundle is truncated (last line incomplete)")


def _open_lines(path: str) -> tuple[_Lines, Iterator[bytes], dict[str, Any]]:
    """The bundle's lines after its header, and the header (checked)."""
    lines = _Lines(path)
    stream = iter(lines)
    try:
        first = next(stream, b"")
        if len(first) > _MAX_HEADER_BYTES:
            raise BundleError("not a luxonis-telemetry bundle (header too large)")
        try:
            header = json.loads(first) if first else None
        except (ValueError, RecursionError):
            header = None
        if not isinstance(header, dict) or header.get("format") != BUNDLE_FORMAT:
            raise BundleError("not a luxonis-telemetry bundle (unknown header)")
        if header.get("version") != BUNDLE_VERSION:
            raise BundleError(f"unsupported bundle version {header.get('version')!r}")
    except BaseException:
        lines.close()
        raise
    return lines, stream, header


def read_bundle(path: str) -> BundleInfo:
    """Verify ``path`` end to end; raises :class:`BundleError` if it is not intact."""
    lines, stream, header = _open_lines(path)
    digest = hashlib.sha256()
    count = size = 0
    try:
        for line in stream:
            digest.update(line)
            count += 1
            size += len(line)
    finally:
        lines.close()
    if digest.hexdigest() != header.get("sha256") or count != header.get("count"):
        raise BundleError("bundle checksum does not match its header: truncated or altered")
    return BundleInfo(path, count, digest.hexdigest(), header, size)


def export_bundle(
    spool: Spool,
    path: str,
    *,
    move: bool = False,
    force: bool = False,
    lock_timeout: float = 30.0,
) -> BundleInfo:
    """Write every pending event to ``path``; with ``move``, then drop them from the spool.

    An existing ``path`` is refused unless ``force`` (and then only a
    regular file of this user is replaced). The bundle is written through an
    unpredictable, exclusive temporary file next to it, read back and
    verified, then published; events are removed (``move``) only after that.
    Runs under the upload lock, so no uploader takes events meanwhile.
    """
    _check_target(path, force)
    lock = spool.upload_lock()
    if not lock.acquire(lock_timeout):
        lock.close()
        raise BundleError("an upload of this spool is running; try again when it ends")
    try:
        spool.seal_all()
        segments = spool.segments()
        tmp = _fs.temporary_name(os.path.abspath(path))
        try:
            info = _write_bundle(segments, tmp)
            verified = read_bundle(tmp)
            if verified.sha256 != info.sha256 or verified.count != info.count:
                raise BundleError("the written bundle did not verify; nothing was removed")
            _publish(tmp, path, force)
        finally:
            _fs.remove(tmp)
        if move:
            for segment in segments:
                _quarantine_bad_lines(spool, segment)
                spool.commit(segment, segment.size)
        return BundleInfo(path, info.count, info.sha256, info.header, info.size)
    finally:
        lock.release()
        lock.close()


def _quarantine_bad_lines(spool: Spool, segment: Segment) -> None:
    """Lines a bundle cannot carry (corrupt, torn) go to the quarantine, not nowhere."""
    entries: list[dict[str, Any]] = []
    for _begin, _end, item in segment.records():
        if isinstance(item, BadLine):
            entries.append(bad_line_entry(item, segment.name))
            if len(entries) >= _QUARANTINE_BATCH:
                spool.quarantine(entries)
                entries = []
    spool.quarantine(entries)


def _check_target(path: str, force: bool) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not force:
        raise BundleError(f"{path} exists; choose another name or pass --force to replace it")
    if not stat.S_ISREG(info.st_mode):
        raise BundleError(f"{path} exists and is not a regular file; refusing to replace it")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise BundleError(f"{path} belongs to another user; refusing to replace it")


def _publish(tmp: str, path: str, force: bool) -> None:
    """Publish the finished bundle: never over a non-regular file, over a file only if forced."""
    if not force:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise BundleError(f"{path} appeared meanwhile; nothing was replaced") from None
        except OSError:
            _publish_without_links(tmp, path)
        return
    _check_target(path, force)
    os.replace(tmp, path)


def _publish_without_links(tmp: str, path: str) -> None:
    """Where hard links are unsupported (a FAT USB stick): claim the name, then replace it.

    The exclusive create fails if anything appeared at ``path``; the rename
    then replaces only the empty file we just created.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(path, flags, 0o600))
    except FileExistsError:
        raise BundleError(f"{path} appeared meanwhile; nothing was replaced") from None
    os.replace(tmp, path)


def _write_bundle(segments: list[Segment], tmp: str) -> BundleInfo:
    digest = hashlib.sha256()
    count = size = 0
    first: Optional[str] = None
    last: Optional[str] = None
    libraries: dict[str, int] = {}
    body_path = _fs.temporary_name(tmp)
    body = os.fdopen(
        os.open(
            body_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
        ),
        "w+b",
    )
    try:
        _fs.remove(body_path)  # nameless from here on: nothing to clean up after a crash
        for segment in segments:
            for _begin, _end, item in segment.records():
                if isinstance(item, BadLine):
                    continue
                line = json.dumps(item, separators=(",", ":")).encode() + b"\n"
                digest.update(line)
                body.write(line)
                count += 1
                size += len(line)
                stamp = item["timestamp"]
                first = stamp if first is None or stamp < first else first
                last = stamp if last is None or stamp > last else last
                libraries[item["library"]] = libraries.get(item["library"], 0) + 1
        header: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "count": count,
            "first_timestamp": first,
            "last_timestamp": last,
            "libraries": libraries,
            "sha256": digest.hexdigest(),
        }
        body.seek(0)
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as out,
        ):
            out.write(json.dumps(header, sort_keys=True).encode() + b"\n")
            while block := body.read(1 << 20):
                out.write(block)
    finally:
        body.close()
    return BundleInfo(tmp, count, digest.hexdigest(), header, size)


def upload_bundle(
    path: str,
    spool: Spool,
    *,
    budget: float = 60.0,
    backend: Optional[str] = None,
    endpoint: Optional[str] = None,
    api_key: Optional[str] = None,
    progress: Optional[Callable[[int], None]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> UploadResult:
    """Deliver a verified bundle, resuming where an earlier upload of it stopped.

    Destinations and keys come from this machine only (flags, environment,
    its own records, published library defaults). Event times are kept as
    captured (``$ignore_sent_at``): this machine's clock never saw them.
    """
    env = os.environ if environ is None else environ
    info = read_bundle(path)
    result = UploadResult()
    done, acked = _progress(spool, info.sha256)
    blocked = sending_blocked(env, dotenv=environ is None)
    if blocked is not None:
        result.blocked = blocked
        result.pending = info.count - _count_delivered(path, done, acked)
        return result
    if _covered(done, acked, info.size):
        result.reasons["bundle"] = "already uploaded; nothing sent twice"
        return result
    deadline = time.monotonic() + budget
    lock = spool.upload_lock()
    if not lock.acquire(budget):
        lock.close()
        result.busy = True
        result.error = "another upload of this spool is running"
        result.pending = info.count - _count_delivered(path, done, acked)
        return result
    router = Router(
        spool.read_destinations() if spool.exists() else {},
        env,
        backend=backend,
        endpoint=endpoint,
        api_key=api_key,
    )
    deliverer = Deliverer(deadline, trust_sent_at=False)
    tally = Tally()

    def commit(position: int, ranges: list[tuple[int, int]]) -> None:
        spool.update_state(lambda state: state.set_bundle_progress(info.sha256, position, ranges))

    def should_stop() -> Optional[str]:
        if time.monotonic() > deadline:
            return "time budget exhausted"
        return sending_blocked(env, dotenv=environ is None)

    try:
        chunks = chunk_stream(
            _items(path, done, acked),
            route=router,
            source=os.path.basename(path),
            tally=tally,
            max_age=timedelta(days=36500),
            now=datetime.now(timezone.utc),
        )
        pipeline = Pipeline(deliverer, tally, quarantine=spool.quarantine, progress=progress)
        pipeline.run(
            [Source(chunks, start=done, acked=acked, commit=commit, should_stop=should_stop)]
        )
    finally:
        deliverer.close()
        lock.release()
        lock.close()
    result.sent, result.failed, result.skipped = tally.sent, tally.failed, tally.skipped
    result.error = tally.error
    result.reasons.update(tally.reasons)
    result.unauthorized = tally.unauthorized is not None
    result.pending = info.count - _count_delivered(path, *_progress(spool, info.sha256))
    remember(spool, result, transient=bool(deliverer.failing), tally=tally)
    return result


def _spans(path: str) -> Iterator[tuple[int, int, bytes]]:
    """``(begin, end, line)`` of each record line, offsets in the uncompressed record stream."""
    lines, stream, _header = _open_lines(path)
    try:
        offset = 0
        for line in stream:
            begin, offset = offset, offset + len(line)
            yield begin, offset, line
    finally:
        lines.close()


def _delivered(begin: int, end: int, done: int, acked: Sequence[tuple[int, int]]) -> bool:
    return end <= done or any(low <= begin and end <= high for low, high in acked)


def _items(
    path: str, done: int, acked: Sequence[tuple[int, int]]
) -> Iterator[tuple[int, int, Item]]:
    """``(begin, end, record or BadLine)`` of the record lines not delivered yet."""
    for begin, end, line in _spans(path):
        if not _delivered(begin, end, done, acked):
            yield begin, end, decode_line(line.rstrip(b"\n"))


def _count_delivered(path: str, done: int, acked: Sequence[tuple[int, int]]) -> int:
    """Record lines already delivered (before ``done`` or inside an acknowledged range)."""
    if done <= 0 and not acked:
        return 0
    return sum(1 for begin, end, _line in _spans(path) if _delivered(begin, end, done, acked))


def _covered(done: int, acked: Sequence[tuple[int, int]], size: int) -> bool:
    """Whether ``[done, size)`` is all inside the acknowledged ranges."""
    position = done
    for begin, end in sorted(acked):
        if begin > position:
            break
        position = max(position, end)
    return position >= size


def _progress(spool: Spool, sha256: str) -> tuple[int, tuple[tuple[int, int], ...]]:
    if not spool.exists():
        return 0, ()
    return spool.read_state().bundle_progress(sha256)
