"""Portable bundles: carry pending events off an air-gapped machine.

A bundle is one gzip file of JSON lines. The first line is a header naming
the format and version, the event count, the time range, each library's
destination without secrets, and the SHA-256 of the record lines that
follow; a truncated or altered bundle fails that check and nothing is sent.
Uploading a bundle records its checksum and progress in the local spool's
state, so uploading it again sends nothing twice.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional

from .event import validate
from .spool import BadLine, Spool
from .uploader import UploadResult, _Deliverer, _remember, _Run, resolve_destinations

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "BUNDLE_FORMAT",
    "BundleError",
    "BundleInfo",
    "export_bundle",
    "read_bundle",
    "upload_bundle",
]

BUNDLE_FORMAT = "luxonis-telemetry-bundle"
BUNDLE_VERSION = 1
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class BundleError(Exception):
    """The bundle is unreadable, truncated, altered or of an unknown format."""


@dataclass(frozen=True)
class BundleInfo:
    path: str
    count: int
    sha256: str
    header: dict[str, Any]
    size: int = 0  # bytes of record lines, uncompressed


def export_bundle(
    spool: Spool, path: str, *, move: bool = False, lock_timeout: float = 30.0
) -> BundleInfo:
    """Write every pending event to ``path``; with ``move``, then drop them.

    Runs under the upload lock so no uploader takes events meanwhile. Events
    are removed (``move``) only after the finished file was read back and
    verified; events captured during the export stay in the spool.
    """
    lock = spool.upload_lock()
    if not lock.acquire(lock_timeout):
        lock.close()
        raise BundleError("an upload of this spool is running; try again when it ends")
    try:
        spool.seal_all()
        segments = spool.segments()
        info = _write_bundle(spool, segments, path)
        verified = read_bundle(path)
        if verified.sha256 != info.sha256 or verified.count != info.count:
            raise BundleError("the written bundle did not verify; nothing was removed")
        if move:
            for segment in segments:
                spool.commit(segment, segment.size)
        return info
    finally:
        lock.release()
        lock.close()


def _write_bundle(spool: Spool, segments: list[Any], path: str) -> BundleInfo:
    folder = os.path.dirname(os.path.abspath(path))
    digest = hashlib.sha256()
    count = 0
    first: Optional[str] = None
    last: Optional[str] = None
    libraries: dict[str, int] = {}
    with tempfile.TemporaryFile(dir=folder) as body:
        for segment in segments:
            for _end, item in segment.records():
                if isinstance(item, BadLine):
                    continue
                line = json.dumps(item, separators=(",", ":")).encode() + b"\n"
                digest.update(line)
                body.write(line)
                count += 1
                stamp = item["timestamp"]
                first = stamp if first is None or stamp < first else first
                last = stamp if last is None or stamp > last else last
                libraries[item["library"]] = libraries.get(item["library"], 0) + 1
        recorded = spool.read_destinations()
        header: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "count": count,
            "first_timestamp": first,
            "last_timestamp": last,
            "libraries": libraries,
            "destinations": {
                name: {
                    "backend": recorded.get(name, {}).get("backend"),
                    "endpoint": recorded.get(name, {}).get("endpoint"),
                }
                for name in libraries
            },
            "sha256": digest.hexdigest(),
        }
        body.seek(0)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:
                out.write(json.dumps(header, sort_keys=True).encode() + b"\n")
                shutil.copyfileobj(body, out)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return BundleInfo(path, count, digest.hexdigest(), header)


def read_bundle(path: str) -> BundleInfo:
    """Verify ``path`` end to end; raises :class:`BundleError` if it is not intact."""
    digest = hashlib.sha256()
    count = size = 0
    header = _header(path)
    try:
        for line in _record_lines(path):
            digest.update(line)
            count += 1
            size += len(line)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BundleError(f"bundle is truncated or damaged: {exc}") from None
    if digest.hexdigest() != header.get("sha256") or count != header.get("count"):
        raise BundleError("bundle checksum does not match its header: truncated or altered")
    return BundleInfo(path, count, digest.hexdigest(), header, size)


def _header(path: str) -> dict[str, Any]:
    try:
        with gzip.open(path, "rb") as handle:
            first = handle.readline(1024 * 1024)
        header = json.loads(first)
    except FileNotFoundError:
        raise BundleError(f"no such bundle: {path}") from None
    except (OSError, EOFError, ValueError) as exc:
        raise BundleError(f"not a luxonis-telemetry bundle: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != BUNDLE_FORMAT:
        raise BundleError("not a luxonis-telemetry bundle (unknown header)")
    if header.get("version") != BUNDLE_VERSION:
        raise BundleError(f"unsupported bundle version {header.get('version')!r}")
    return header


def _record_lines(path: str) -> Iterator[bytes]:
    with gzip.open(path, "rb") as handle:
        handle.readline(1024 * 1024)
        yield from handle


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
    """Deliver a verified bundle to its destinations, resuming where it stopped.

    Keys come from this machine (flags, environment, its own destinations
    record); the bundle never carries one.
    """
    env = os.environ if environ is None else environ
    info = read_bundle(path)
    result = UploadResult()
    done = _bundle_progress(spool, info.sha256)
    if done >= info.size:
        result.reasons["bundle"] = "already uploaded; nothing sent twice"
        return result
    local = spool.read_destinations() if spool.exists() else {}
    merged: dict[str, dict[str, Any]] = {}
    for name, where in info.header.get("destinations", {}).items():
        known = dict(local.get(name, {}))
        known.update({k: v for k, v in where.items() if v and k != "api_key"})
        merged[name] = known
    destination_of = resolve_destinations(
        merged, env, backend=backend, endpoint=endpoint, api_key=api_key
    )
    deliverer = _Deliverer(time.monotonic() + budget)
    run = _Run(spool, destination_of, deliverer, result, timedelta(days=36500), progress)

    def items() -> Iterator[tuple[int, Any]]:
        offset = 0
        for line in _record_lines(path):
            offset += len(line)
            if offset > done:
                record = validate(json.loads(line))
                yield offset, record or BadLine("not an event record", line[:512], len(line))

    def commit(offset: int) -> None:
        _save_bundle_progress(spool, info.sha256, offset)

    try:
        run.stream(items(), start=done, end=info.size, commit=commit, source=os.path.basename(path))
    finally:
        deliverer.close()
    remaining = info.size - _bundle_progress(spool, info.sha256)
    result.pending = _count_after(path, info.size - remaining) if remaining > 0 else 0
    _remember(spool, result, transient=bool(deliverer.failing))
    return result


def _count_after(path: str, offset: int) -> int:
    count = position = 0
    for line in _record_lines(path):
        position += len(line)
        count += position > offset
    return count


def _bundle_progress(spool: Spool, sha256: str) -> int:
    bundles = spool.read_state().get("bundles", {}) if spool.exists() else {}
    entry = bundles.get(sha256, {}) if isinstance(bundles, dict) else {}
    delivered = entry.get("delivered", 0) if isinstance(entry, dict) else 0
    return delivered if isinstance(delivered, int) else 0


def _save_bundle_progress(spool: Spool, sha256: str, delivered: int) -> None:
    def change(state: dict[str, Any]) -> None:
        bundles = state.get("bundles")
        if not isinstance(bundles, dict):
            bundles = state["bundles"] = {}
        bundles[sha256] = {"delivered": delivered, "at": time.time()}

    spool.update_state(change)
