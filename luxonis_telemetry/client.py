"""The ``Telemetry`` client a library holds: capture now, deliver later.

``capture`` turns an event into one JSON line and appends it to the spool;
it never touches the network and never raises. Delivery is the uploader's
job (``luxonis-telemetry upload``, or the exit hook).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import uuid

from . import _state
from ._lock import LockTimeout
from .backends import StdoutBackend, register_backend
from .config import TelemetryConfig, config_dir, is_ci, spool_dir
from .event import (
    Sanitizer,
    base_context,
    encode,
    encode_context,
    new_record,
    system_metadata,
)
from .spool import Spool

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Callable, Optional

    ContextProvider = Callable[["Telemetry"], dict[str, Any]]

__all__ = ["Telemetry", "get_telemetry", "initialize_telemetry"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class Telemetry:
    """Records one library's usage events into the per-user spool.

    Construction only reads configuration; nothing is created on disk until
    the first event is recorded, and nothing at all when the user opted out.
    """

    def __init__(
        self,
        library_name: str,
        *,
        library_version: Optional[str] = None,
        config: Optional[TelemetryConfig] = None,
        context_providers: Optional[Iterable[ContextProvider]] = None,
    ) -> None:
        self.library_name = str(library_name)
        self._library_version = library_version
        self._providers: list[ContextProvider] = list(context_providers or [])
        self._direct: Any = None
        self._spool: Optional[Spool] = None
        self._context: Optional[tuple[int, dict[str, Any], str]] = None
        self._metadata: Optional[dict[str, Any]] = None
        self._distinct_id: Optional[str] = None
        self.dropped = 0
        try:
            self.config = TelemetryConfig.from_env(config)
        except Exception as exc:  # noqa: BLE001 - never break the host
            _state.log_internal_error("reading configuration", exc)
            self.config = TelemetryConfig(enabled=False)
        self.enabled = self.config.enabled
        self._sanitizer = Sanitizer(secrets=(self.config.api_key or "",))
        backend = self.config.effective_backend
        if backend == "noop":
            self.enabled = False
        elif backend == "stdout":
            self._direct = StdoutBackend()

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"Telemetry({self.library_name!r}, {state}, backend={self.backend_name!r})"

    @property
    def backend_name(self) -> str:
        return self.config.effective_backend

    @staticmethod
    def register_backend(name: str, factory: Callable[[TelemetryConfig], Any]) -> None:
        """Make ``factory(config) -> backend`` available under ``name``."""
        register_backend(name, factory)

    def add_context_provider(self, provider: ContextProvider) -> None:
        """``provider(telemetry) -> dict`` adds keys to every event's context."""
        self._providers.append(provider)

    # -- recording ----------------------------------------------------------

    def capture(
        self,
        event: str,
        properties: Optional[dict[str, Any]] = None,
        *,
        include_system_metadata: bool = False,
        distinct_id: Optional[str] = None,
    ) -> None:
        """Record ``event``; returns once it is on disk. Never raises."""
        if not self.enabled:
            return
        try:
            self._record(
                "capture",
                self._sanitizer.name(event),
                self._sanitizer.properties(properties),
                distinct_id,
                include_system_metadata,
            )
        except Exception as exc:  # noqa: BLE001 - never break the host
            self._count_drop("internal_error")
            _state.log_internal_error("capture", exc)

    def identify(self, user_id: str, traits: Optional[dict[str, Any]] = None) -> None:
        """Attach ``traits`` to ``user_id``; recorded like an event. Never raises."""
        if not self.enabled:
            return
        try:
            self._record(
                "identify",
                "$identify",
                self._sanitizer.properties(traits),
                self._sanitizer.name(user_id),
                False,
            )
        except Exception as exc:  # noqa: BLE001 - never break the host
            self._count_drop("internal_error")
            _state.log_internal_error("identify", exc)

    def flush(self) -> None:
        """Captures are already on disk when ``capture`` returns; direct backends flush."""
        if self._direct is None:
            return
        try:
            self._direct.flush()
        except Exception as exc:  # noqa: BLE001 - never break the host
            _state.log_internal_error("flush", exc)

    def shutdown(self) -> None:
        """Flush and close our files; a later capture opens them again."""
        self.flush()
        spool = self._spool
        if spool is not None:
            try:
                with spool.locked():
                    spool.forget_descriptors()
            except Exception as exc:  # noqa: BLE001 - never break the host
                _state.log_internal_error("shutdown", exc)

    def _record(
        self,
        kind: str,
        name: str,
        properties: dict[str, Any],
        distinct_id: Optional[str],
        include_system_metadata: bool,
    ) -> None:
        context, context_json = self._event_context(include_system_metadata)
        if distinct_id is not None:
            distinct_id = self._sanitizer.name(distinct_id)
        record = new_record(
            kind,
            event=name,
            distinct_id=distinct_id or self._default_distinct_id(),
            library=self.library_name,
            properties=properties,
            context=context,
        )
        if self._direct is not None:
            if kind == "identify":
                self._direct.identify(record["distinct_id"], properties)
            else:
                self._direct.capture(record)
            return
        if context_json is not None:
            del record["context"]  # spliced in already encoded
        self._append(encode(record, context_json))

    def _append(self, line: bytes) -> None:
        spool = self._spool or self._open_spool()
        if spool is None:
            self._count_drop("no_spool_folder")
            return
        try:
            spool.append(self.library_name, line)
        except LockTimeout:
            self._count_drop("lock_timeout", spool)
            return
        except OSError as exc:
            reason = "disk_full" if exc.errno in (errno.ENOSPC, errno.EFBIG) else "disk_error"
            self._count_drop(reason, spool)
            _state.log_internal_error("writing the spool", exc)
            return
        self._remember_destination(spool)

    def _count_drop(self, reason: str, spool: Optional[Spool] = None) -> None:
        self.dropped += 1
        target = spool or self._spool
        if target is not None:
            target.unsaved_drops.add(reason)

    def _open_spool(self) -> Optional[Spool]:
        path = spool_dir(self.config)
        if path is None:
            return None
        current = _state.state
        with current.lock:
            spool = current.spools.get(path)
            if spool is None:
                spool = Spool(
                    path,
                    max_bytes=self.config.max_spool_bytes,
                    max_age_days=self.config.max_event_age_days,
                )
                current.spools[path] = spool
            _register_process_hooks(current)
        self._spool = spool
        return spool

    def _remember_destination(self, spool: Spool) -> None:
        recorded = _state.state.recorded.setdefault(spool.path, {})
        if recorded.get(self.library_name) is self.config:
            return
        recorded[self.library_name] = self.config
        try:
            spool.record_destination(
                self.library_name,
                {
                    "backend": self.config.effective_backend,
                    "endpoint": self.config.endpoint,
                    "api_key": self.config.api_key,
                },
            )
        except OSError as exc:
            _state.log_internal_error("recording the destination", exc)

    # -- context ---------------------------------------------------------------

    def _event_context(self, include_system_metadata: bool) -> tuple[dict[str, Any], Optional[str]]:
        """The event's context, and its JSON when it is the cached base context."""
        pid = os.getpid()
        cached = self._context
        if cached is None or cached[0] != pid:
            base = self._base_context()
            cached = self._context = (pid, base, encode_context(base))
        if not self._providers and not include_system_metadata:
            return cached[1], cached[2]
        context = dict(cached[1])
        for provider in self._providers:
            try:
                extra = self._sanitizer.properties(provider(self))
            except Exception as exc:  # noqa: BLE001 - a provider must not break capture
                _state.log_internal_error("context provider", exc)
                continue
            for key, value in extra.items():
                context.setdefault(key, value)
        if include_system_metadata:
            if self._metadata is None:
                self._metadata = system_metadata()
            for key, value in self._metadata.items():
                context.setdefault(key, value)
        return context, None

    def _base_context(self) -> dict[str, Any]:
        if self._library_version is None:
            self._library_version = _library_version(self.library_name)
        return base_context(
            library_name=self.library_name,
            library_version=self._library_version,
            session_id=_state.state.session_id(),
            install_id=self.install_id,
            ci=is_ci(),
        )

    @property
    def install_id(self) -> str:
        """The anonymous id of this installation (created on first use)."""
        return _install_id(self.config)

    def _default_distinct_id(self) -> str:
        if self._distinct_id is None:
            self._distinct_id = self.config.distinct_id or self.install_id
        return self._distinct_id


def _register_process_hooks(current: _state.State) -> None:
    if not current.exit_hook_registered:
        import atexit

        from ._exit import run_exit_hook

        atexit.register(run_exit_hook)
        current.exit_hook_registered = True
    if not current.fork_hook_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_state.after_fork_in_child)
        current.fork_hook_registered = True


def _install_id(config: TelemetryConfig) -> str:
    path = config.install_id_path or _default_install_id_path()
    current = _state.state
    key = path or ""
    known = current.install_ids.get(key)
    if known is None:
        known = _read_or_create_install_id(path) if path else None
        known = known or str(uuid.uuid4())  # no home: an id for this process only
        current.install_ids[key] = known
    return known


def _default_install_id_path() -> Optional[str]:
    folder = config_dir()
    return os.path.join(folder, "install_id") if folder else None


def _read_or_create_install_id(path: str) -> Optional[str]:
    """Read the id, or publish a new one atomically: racing processes agree.

    The new id is written to a private temp file and hard-linked into place;
    ``link`` fails if another process won, and then we read the winner's id.
    """
    existing = _read_install_id(path)
    if existing:
        return existing
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        candidate = str(uuid.uuid4())
        tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        try:
            os.write(fd, candidate.encode() + b"\n")
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_install_id(path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return candidate
    except OSError as exc:
        _state.log_internal_error("creating the install id", exc)
        return None


def _read_install_id(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(100).strip()
        return str(uuid.UUID(text))
    except (OSError, ValueError):
        return None


def _library_version(library_name: str) -> Optional[str]:
    """The library's version without importing ``importlib.metadata`` (~35 ms).

    First the imported module's ``__version__``; then the version in the name
    of the installed distribution's ``.dist-info`` folder (part of the wheel
    standard), found on ``sys.path``.
    """
    module = sys.modules.get(library_name)
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    wanted = library_name.replace("-", "_").replace(".", "_").lower()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            stem = name.rsplit(".", 1)[0]
            dist, _, found = stem.partition("-")
            if found and dist.replace(".", "_").lower() == wanted:
                return found.split("-")[0]
    return None


def initialize_telemetry(
    library_name: str,
    *,
    library_version: Optional[str] = None,
    config: Optional[TelemetryConfig] = None,
    context_providers: Optional[Iterable[ContextProvider]] = None,
) -> Telemetry:
    """The one ``Telemetry`` for ``library_name``, created on the first call."""
    current = _state.state
    with current.lock:
        existing = current.singletons.get(library_name)
        if existing is None:
            existing = Telemetry(
                library_name,
                library_version=library_version,
                config=config,
                context_providers=context_providers,
            )
            current.singletons[library_name] = existing
        return existing


def get_telemetry(library_name: str) -> Optional[Telemetry]:
    """The instance made by ``initialize_telemetry``, or ``None``."""
    return _state.state.singletons.get(library_name)
