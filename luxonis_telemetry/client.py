"""The ``Telemetry`` client a library holds: capture now, deliver later.

``capture`` turns an event into one JSON line and appends it to the spool;
it never touches the network, never raises and never prints (the one-time
notice aside). Delivery is the uploader's job (``luxonis-telemetry upload``,
or the exit hook). The constructor and methods keep luxonis-ml 0.10.2's
names and parameters, so its callers switch by changing one import.
"""

from __future__ import annotations

import errno
import os
import sys

from . import _destinations, _fs, _log, _state
from ._install_id import load_install_id, read_install_id
from ._lock import LockTimeout
from .config import TelemetryConfig, install_id_path, spool_dir
from .context import BASE_CONTEXT_KEYS, RESERVED_METADATA_KEYS, spooled_context, system_metadata
from .record import encode_context, encode_line, json_string, new_record
from .redaction import Sanitizer
from .spool import Reentered, Spool, SpoolError, TurnedOff
from .suppression import is_suppressed

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable
    from typing import Any, Optional

    ContextProvider = Callable[["Telemetry"], Optional[dict[str, Any]]]
    SystemContextProvider = ContextProvider
else:  # the same aliases at run time (luxonis-ml exports them), importing neither typing
    from _collections_abc import Callable  # nor collections (collections.abc's own source)

    ContextProvider = Callable[["Telemetry"], "Optional[dict[str, Any]]"]
    SystemContextProvider = ContextProvider

__all__ = ["ContextProvider", "SystemContextProvider", "Telemetry"]

_PROTECTED = RESERVED_METADATA_KEYS | frozenset(BASE_CONTEXT_KEYS)


class Telemetry:
    """Records one library's usage events into the per-user spool.

    Construction only reads configuration: nothing is created on disk until
    the first event is recorded, and nothing at all when the user opted out.
    ``source_component`` names the part of the library that emits (one
    instance per library and component, see ``get_or_init``).
    """

    def __init__(
        self,
        library_name: str,
        *,
        source_component: Optional[str] = None,
        library_version: Optional[str] = None,
        config: Optional[TelemetryConfig] = None,
        context_providers: Optional[Iterable[ContextProvider]] = None,
        system_context_providers: Optional[Iterable[SystemContextProvider]] = None,
    ) -> None:
        self._library_name = "unknown"
        self._library_json = '"unknown"'
        self._source_component = "unknown"
        self._library_version: Optional[str] = None
        self._version_resolved = True
        self._providers: list[ContextProvider] = []
        self._system_providers: list[SystemContextProvider] = []
        self._direct: Any = None
        self._spool: Optional[Spool] = None
        self._context: Optional[tuple[int, dict[str, Any], str]] = None
        self._metadata: Optional[dict[str, Any]] = None
        self._distinct_id: Optional[str] = None
        self._distinct_id_json: Optional[str] = None
        self._names: dict[str, str] = {}
        self._recording = False
        self.dropped = 0
        self._guard = _log.Guard("capture", self._count_internal_error)
        self.config = TelemetryConfig(enabled=False)
        self._sanitizer = Sanitizer()
        # Anything odd in the arguments leaves a disabled instance, never an exception.
        with _log.Guard("Telemetry()"):
            self._library_name = str(library_name)
            self._library_json = json_string(self._library_name)
            self._source_component = str(source_component or library_name)
            self._library_version = library_version
            self._version_resolved = library_version is not None
            self.config = TelemetryConfig.from_environ(config)
            key = self.config.api_key
            self._sanitizer = Sanitizer(secrets=(key,) if isinstance(key, str) else ())
            self.extend_context_providers(context_providers)
            self.extend_system_context_providers(system_context_providers)
            backend = self.config.effective_backend
            self._recording = self.config.enabled and backend != "noop"
            if self._recording and backend == "stdout":
                from .backends import StdoutBackend

                self._direct = StdoutBackend(self.config)

    def __repr__(self) -> str:
        return (
            f"Telemetry({self._library_name!r}, source_component={self._source_component!r}, "
            f"{self.config.mode}, backend={self.config.effective_backend!r})"
        )

    # -- luxonis-ml's read-only attributes -------------------------------------

    @property
    def library_name(self) -> str:
        return self._library_name

    @property
    def source_component(self) -> str:
        return self._source_component

    @property
    def library_version(self) -> Optional[str]:
        """The version given, else the installed distribution's (looked up once)."""
        if not self._version_resolved:
            self._version_resolved = True
            with _log.Guard("library_version"):
                self._library_version = _library_version(self._library_name)
        return self._library_version

    @property
    def is_enabled(self) -> bool:
        """Whether events are recorded (off after an opt-out, or ``disable`` in this process)."""
        return self.config.enabled and not _state.state.disabled_here

    enabled = is_enabled

    @property
    def backend_name(self) -> str:
        return self.config.effective_backend

    @property
    def install_id(self) -> Optional[str]:
        """The anonymous id of this installation (created on first use), if it can be kept.

        When telemetry is off here, an existing id is read but none is created.
        """
        path = install_id_path(self.config)
        if not self.is_enabled:
            return read_install_id(path) if path else None
        return load_install_id(path)

    # -- configuration -------------------------------------------------------------

    @staticmethod
    def register_backend(
        name: str,
        factory: Optional[Callable[[TelemetryConfig], Any]] = None,
        *,
        backend_cls: Optional[Callable[[TelemetryConfig], Any]] = None,
    ) -> None:
        """Make ``factory(config) -> backend`` (a class or callable) available as ``name``.

        Names ignore case; ``backend_cls=`` is luxonis-ml's name for the same
        argument. Events of a library using a registered backend are handed
        to it by this process at exit (or by ``upload()`` here).
        """
        from .backends import register_backend

        chosen = factory if factory is not None else backend_cls
        if chosen is None or (factory is not None and backend_cls is not None):
            raise TypeError("register_backend(name, factory) takes exactly one factory")
        register_backend(name, chosen)

    def add_context_provider(self, provider: ContextProvider) -> None:
        """``provider(telemetry) -> dict`` adds keys to every event's context (added once)."""
        if provider not in self._providers:
            self._providers.append(provider)

    def add_system_context_provider(self, provider: SystemContextProvider) -> None:
        """A provider consulted only for events with system metadata."""
        if provider not in self._system_providers:
            self._system_providers.append(provider)

    def extend_context_providers(self, providers: Optional[Iterable[ContextProvider]]) -> None:
        for provider in providers or ():
            self.add_context_provider(provider)

    def extend_system_context_providers(
        self, providers: Optional[Iterable[SystemContextProvider]]
    ) -> None:
        for provider in providers or ():
            self.add_system_context_provider(provider)

    # -- recording ----------------------------------------------------------

    def capture(
        self,
        event: str,
        properties: Optional[dict[str, Any]] = None,
        *,
        allowlist: Optional[Collection[str]] = None,
        include_system_metadata: Optional[bool] = None,
        distinct_id: Optional[str] = None,
    ) -> None:
        """Record ``event``; returns once it is on disk. Never raises an ``Exception``.

        ``allowlist`` keeps only the named property keys (default: the
        config's); ``include_system_metadata=None`` follows the config;
        ``distinct_id`` overrides the anonymous install id for this event
        (a blank one is replaced by the default). Failures inside (ours, a
        context provider's, a hostile property's) drop or trim the event;
        ``KeyboardInterrupt``, ``SystemExit`` and other ``BaseException``
        subclasses raised by the caller's code (a provider, a signal handler)
        belong to the host and pass through. Called re-entrantly on the same
        thread (from a signal handler or a finalizer while a capture is
        writing), the inner event is dropped and counted, never waited for.
        """
        current = _state.state
        if (not self._recording or current.disabled_here) and current.sink is None:
            return
        if is_suppressed():
            return
        with self._guard:
            cleaned = self._sanitizer.properties(
                properties, self.config.allowlist if allowlist is None else allowlist
            )
            if include_system_metadata is None:
                include_system_metadata = self.config.include_system_metadata
            self._record(
                "capture",
                self._sanitizer.name(event),
                cleaned,
                distinct_id,
                include_system_metadata,
            )

    def identify(self, user_id: str, traits: Optional[dict[str, Any]] = None) -> None:
        """Link this installation's events to ``user_id`` with ``traits``. Never raises.

        PostHog merges the anonymous install id's earlier events into the
        identified person (``$anon_distinct_id``).
        """
        current = _state.state
        if (not self._recording or current.disabled_here) and current.sink is None:
            return
        if is_suppressed():
            return
        with self._guard:
            user = self._sanitizer.name(user_id).strip()
            if not user:
                self._count_drop("invalid_distinct_id")
                return
            self._record("identify", "$identify", self._sanitizer.properties(traits), user, False)

    def flush(self) -> None:
        """Captures are on disk when ``capture`` returns; a direct backend is flushed."""
        if self._direct is None:
            return
        with _log.Guard("flush"):
            self._direct.flush()

    def shutdown(self) -> None:
        """Flush, persist the drop counts and close our files; a later capture reopens them."""
        self.flush()
        spool = self._spool
        if spool is not None:
            with _log.Guard("shutdown"):
                spool.save_drops()
                spool.close()

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
            distinct_id = self._sanitizer.name(distinct_id).strip() or None
        if kind == "identify":
            context = dict(context, anon_distinct_id=self._default_distinct_id())
            context_json = None
        sink = _state.state.sink
        if sink is not None or self._direct is not None:
            record = new_record(
                kind,
                event=name,
                distinct_id=distinct_id or self._default_distinct_id(),
                library=self._library_name,
                properties=properties,
                context=context,
            )
            if sink is not None:
                sink.append(record)
            else:
                self._direct.capture(record)
            return
        self._append(
            encode_line(
                kind,
                event_json=self._json(name),
                distinct_id_json=(
                    json_string(distinct_id) if distinct_id else self._default_distinct_id_json()
                ),
                library_json=self._library_json,
                properties=properties,
                context_json=context_json or encode_context(context),
            )
        )

    def _json(self, name: str) -> str:
        """An event name as a JSON string, cached (tools use a handful of names)."""
        known = self._names.get(name)
        if known is None:
            known = json_string(name)
            if len(self._names) < 256:
                self._names[name] = known
        return known

    def _append(self, line: bytes) -> None:
        spool = self._spool or self._open_spool()
        if spool is None:
            self._count_drop("no_spool_folder")
            return
        try:
            spool.append(self._library_name, line)
        except LockTimeout:
            self._count_drop("lock_timeout", spool)
            return
        except Reentered:
            self._count_drop("reentrant", spool)
            return
        except TurnedOff:
            _state.state.disabled_here = True
            return
        except _fs.UnsafeFile:
            self._count_drop("unsafe_file", spool)
            return
        except SpoolError as exc:
            self._count_drop("spool_unusable", spool)
            _log.debug("the spool cannot be used: %s", exc)
            return
        except OSError as exc:
            reason = "disk_full" if exc.errno in (errno.ENOSPC, errno.EFBIG) else "disk_error"
            self._count_drop(reason, spool)
            _log.debug("writing the spool failed: %s", exc)
            return
        current = _state.state
        if not current.notice_checked:
            from ._notice import maybe_show_notice

            maybe_show_notice(self.config)
        recorded = current.recorded.get(spool.path)
        if recorded is None or recorded.get(self._library_name) is not self.config:
            self._remember_destination(spool)

    def _count_drop(self, reason: str, spool: Optional[Spool] = None) -> None:
        self.dropped += 1
        target = spool or self._spool
        if target is not None:
            target.unsaved_drops.add(reason)

    def _count_internal_error(self) -> None:
        self._count_drop("internal_error")

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
        from ._exit import run_exit_hook

        _state.register_process_hooks(run_exit_hook)
        self._spool = spool
        return spool

    def _remember_destination(self, spool: Spool) -> None:
        """Record where this library sends (once per process and config), for the uploader.

        A library whose events this very process must deliver at exit (a
        backend registered in-process) gets its exit worker started now:
        no thread can start during interpreter shutdown.
        """
        _state.state.recorded.setdefault(spool.path, {})[self._library_name] = self.config
        config = self.config
        from ._exit import prepare_in_process_delivery

        prepare_in_process_delivery(config)
        destination = _destinations.RecordedDestination(
            backend=config.effective_backend,
            endpoint=config.endpoint,
            api_key=config.api_key,
            install_id_path=install_id_path(config),
            disable_geoip=config.disable_geoip,
        )
        try:
            spool.record_destination(self._library_name, destination)
        except OSError as exc:
            _log.debug("recording the destination failed: %s", exc)

    # -- context ---------------------------------------------------------------

    def _event_context(self, include_system_metadata: bool) -> tuple[dict[str, Any], Optional[str]]:
        """The event's context, and its JSON when it is the cached base context."""
        forks = _state.forks  # a forked child gets its own session id
        cached = self._context
        if cached is None or cached[0] != forks:
            base = self._base_context()
            cached = self._context = (forks, base, encode_context(base))
        if not self._providers and not include_system_metadata:
            return cached[1], cached[2]
        context = dict(cached[1])
        if include_system_metadata:
            if self._metadata is None:
                self._metadata = system_metadata()
            for key, value in self._metadata.items():
                context.setdefault(key, value)
            self._merge(context, self._system_providers)
        self._merge(context, self._providers)
        return context, None

    def _merge(self, context: dict[str, Any], providers: list[ContextProvider]) -> None:
        """Add what providers return, later ones winning, as in luxonis-ml.

        Reserved and base keys are kept unless the config allows overrides
        (without a base context there is nothing to protect, as in
        luxonis-ml). A provider that raises an ``Exception`` is skipped and
        logged at debug level: it is the caller's code, not ours.
        """
        config = self.config
        protected = (
            _PROTECTED
            if config.include_base_context and not config.allow_reserved_overrides
            else frozenset()
        )
        for provider in providers:
            try:
                extra = provider(self)
            except Exception as exc:  # noqa: BLE001 - a provider must not break capture
                _log.debug("context provider %r failed: %s", provider, exc)
                continue
            for key, value in self._sanitizer.context(extra).items():
                if key not in protected:
                    context[key] = value

    def _base_context(self) -> dict[str, Any]:
        if not self.config.include_base_context:
            return {}
        return spooled_context(
            library_name=self._library_name,
            library_version=self.library_version,
            session_id=_state.state.session_id(),
            install_id=self.install_id,
            source_component=self._source_component,
        )

    def _default_distinct_id_json(self) -> str:
        if self._distinct_id_json is None:
            self._distinct_id_json = json_string(self._default_distinct_id())
        return self._distinct_id_json

    def _default_distinct_id(self) -> str:
        if self._distinct_id is None:
            chosen = self.config.distinct_id
            chosen = self._sanitizer.name(chosen).strip() if chosen else ""
            self._distinct_id = chosen or self.install_id or _state.state.session_id()
        return self._distinct_id


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
