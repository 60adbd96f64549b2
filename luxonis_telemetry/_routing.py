"""Where each library's events go when they are uploaded, and with which key.

Only the user's own settings decide where the user's key goes. For each
library, in order: what the command line gives (``--endpoint``,
``--api-key``, ``--backend``), the user's environment, what that library
recorded in this spool when it ran here, and the defaults an installed
library publishes under the ``luxonis_telemetry.defaults`` entry-point
group (so a connected machine can deliver a bundle's events for a library
that never ran there). A bundle names its libraries, never a destination;
redirects and ``.env`` files cannot move a key either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from . import _log
from ._text import mask_url
from .config import (
    API_KEY,
    BACKEND,
    DEFAULT_ENDPOINT,
    ENDPOINT,
    TelemetryConfig,
    TelemetryDefaults,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._destinations import RecordedDestination

__all__ = ["DEFAULTS_ENTRY_POINT_GROUP", "Destination", "Router", "published_defaults"]

DEFAULTS_ENTRY_POINT_GROUP = "luxonis_telemetry.defaults"


class Destination:
    """One backend, endpoint and key; hashable so each gets one backend per run."""

    __slots__ = ("api_key", "backend", "disable_geoip", "endpoint", "source")

    def __init__(
        self,
        backend: str,
        endpoint: Optional[str],
        api_key: Optional[str] = None,
        *,
        disable_geoip: bool = True,
        source: str = "default",
    ) -> None:
        self.backend = backend.strip().lower() or "posthog"
        self.endpoint = endpoint
        self.api_key = api_key
        self.disable_geoip = disable_geoip
        self.source = source

    def _key(self) -> tuple[Any, ...]:
        return (self.backend, self.endpoint, self.api_key, self.disable_geoip)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Destination) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Destination({self.describe()!r})"

    def describe(self) -> str:
        """For people: backend and endpoint, credentials in the URL masked, never the key."""
        where = mask_url(self.endpoint)
        return f"{self.backend} {where}" if where else self.backend

    def config(self) -> TelemetryConfig:
        """The configuration a backend for this destination is built with."""
        return TelemetryConfig(
            backend=self.backend,
            endpoint=self.endpoint,
            api_key=self.api_key,
            disable_geoip=self.disable_geoip,
        )


def _text(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    text = value.strip()
    return text or None


class Router:
    """Looks up each library's destination once per run."""

    def __init__(
        self,
        recorded: Mapping[str, RecordedDestination],
        environ: Mapping[str, str],
        *,
        backend: Optional[str] = None,
        endpoint: Optional[str] = None,
        api_key: Optional[str] = None,
    ) -> None:
        self._recorded = recorded
        self._flags = (_text(backend), _text(endpoint), _text(api_key))
        self._env = (
            _text(environ.get(BACKEND)),
            _text(environ.get(ENDPOINT)),
            _text(environ.get(API_KEY)),
        )
        self._known: dict[str, Destination] = {}

    def __call__(self, library: str) -> Destination:
        found = self._known.get(library)
        if found is None:
            found = self._known[library] = self._resolve(library)
        return found

    def _resolve(self, library: str) -> Destination:
        flag_backend, flag_endpoint, flag_key = self._flags
        env_backend, env_endpoint, env_key = self._env
        recorded = self._recorded.get(library)
        published = None
        if recorded is None and not (flag_key or env_key):
            published = published_defaults(library)
        backend = flag_backend or env_backend
        endpoint = flag_endpoint or env_endpoint
        key = flag_key or env_key
        source = "command line" if any(self._flags) else "environment"
        geoip = True
        stored, stored_source = (
            (recorded, "recorded here")
            if recorded is not None
            else (published, "published by the library")
        )
        if stored is not None:
            backend = backend or stored.backend
            endpoint = endpoint or stored.endpoint
            key = key or stored.api_key
            geoip = stored.disable_geoip is not False
            source = source if (flag_key or env_key) else stored_source
        elif not (flag_key or env_key):
            source = "default"
        backend = backend or "posthog"
        if endpoint is None and backend.strip().lower() == "posthog":
            endpoint = DEFAULT_ENDPOINT
        return Destination(backend, endpoint, key, disable_geoip=geoip, source=source)


def published_defaults(library: str) -> Optional[TelemetryDefaults]:
    """The ``TelemetryDefaults`` an installed package publishes for ``library``, if any.

    ``[project.entry-points."luxonis_telemetry.defaults"]`` maps a library
    name to a ``TelemetryDefaults`` object (or a callable returning one).
    """
    from importlib.metadata import entry_points

    try:
        found = [ep for ep in entry_points(group=DEFAULTS_ENTRY_POINT_GROUP) if ep.name == library]
    except Exception as exc:  # noqa: BLE001 - broken metadata of some other package
        _log.debug("reading %s entry points failed: %s", DEFAULTS_ENTRY_POINT_GROUP, exc)
        return None
    for entry in found:
        try:
            value = entry.load()
            if callable(value) and not isinstance(value, TelemetryDefaults):
                value = value()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the upload
            _log.debug("published defaults %s failed to load: %s", entry.value, exc)
            continue
        if isinstance(value, (TelemetryDefaults, TelemetryConfig)):
            return value if isinstance(value, TelemetryDefaults) else _as_defaults(value)
    return None


def _as_defaults(config: TelemetryConfig) -> TelemetryDefaults:
    return TelemetryDefaults(
        backend=config.backend,
        endpoint=config.endpoint,
        api_key=config.api_key,
        disable_geoip=config.disable_geoip,
    )
