"""``destinations.json``: where each library that recorded here sends its events.

A plain ``luxonis-telemetry upload`` must deliver every library's events
where that library would have sent them, so each library records its
backend, endpoint and API key (the only place a key is ever kept, 0600), and
where its install id lives so ``disable`` can remove it. The file is read
tolerantly; a newer format than this version knows is neither used nor
overwritten (those events wait for the newer copy of the library, or for
a destination given by the user).
"""

from __future__ import annotations

import os

from . import _fs
from ._jsonio import dumps_sorted, loads

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = [
    "DESTINATIONS_FILE",
    "FORMAT_VERSION",
    "RecordedDestination",
    "load_destinations",
    "record",
]

FORMAT_VERSION = 1
DESTINATIONS_FILE = "destinations.json"
_MAX_BYTES = 1024 * 1024
_TEXT_FIELDS = ("backend", "endpoint", "api_key", "install_id_path")
_FIELDS = (*_TEXT_FIELDS, "disable_geoip")


class RecordedDestination:
    """What one library recorded with (``api_key`` is never shown or logged).

    ``disable_geoip`` is the library's GeoIP choice (``None``: not recorded,
    GeoIP stays off).
    """

    __slots__ = _FIELDS

    def __init__(
        self,
        backend: Optional[str] = None,
        endpoint: Optional[str] = None,
        api_key: Optional[str] = None,
        install_id_path: Optional[str] = None,
        disable_geoip: Optional[bool] = None,
    ) -> None:
        self.backend = backend
        self.endpoint = endpoint
        self.api_key = api_key
        self.install_id_path = install_id_path
        self.disable_geoip = disable_geoip

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS if getattr(self, name) is not None}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecordedDestination) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RecordedDestination(backend={self.backend!r}, endpoint={self.endpoint!r})"


def _read(folder: str) -> tuple[dict[str, Any], bool]:
    """The raw libraries mapping, and whether the file must be left as it is.

    It is left alone when it has a newer format, or exists but cannot be
    read (rewriting it then would lose the other libraries' destinations);
    a file that reads but is not valid JSON holds nothing to lose.
    """
    path = os.path.join(folder, DESTINATIONS_FILE)
    raw = _fs.read_limited(path, _MAX_BYTES)
    if raw is None:
        return {}, os.path.lexists(path)
    try:
        data = loads(raw)
    except (ValueError, RecursionError):
        return {}, False
    if not isinstance(data, dict):
        return {}, False
    if "v" not in data:  # the first release kept {library: {...}} at the top level
        return data, False
    version = data.get("v")
    if type(version) is int and version > FORMAT_VERSION:
        return {}, True
    libraries = data.get("libraries")
    return (libraries if isinstance(libraries, dict) else {}), False


def _entry(value: Any) -> Optional[RecordedDestination]:
    if not isinstance(value, dict):
        return None
    texts = {name: value.get(name) for name in _TEXT_FIELDS}
    if not all(item is None or isinstance(item, str) for item in texts.values()):
        return None
    geoip = value.get("disable_geoip")
    return RecordedDestination(**texts, disable_geoip=geoip if isinstance(geoip, bool) else None)


def load_destinations(folder: str) -> dict[str, RecordedDestination]:
    """Each library's recorded destination (malformed entries are skipped)."""
    libraries, _keep = _read(folder)
    found = {}
    for name, value in libraries.items():
        entry = _entry(value)
        if isinstance(name, str) and entry is not None:
            found[name] = entry
    return found


def record(folder: str, library: str, destination: RecordedDestination) -> bool:
    """Store ``library``'s destination if it changed (caller holds the spool lock).

    Returns False when the file has a newer format or cannot be read (left
    untouched).
    """
    entry = dumps_sorted({library: destination.to_json()})[1:-1].encode()
    raw = _fs.read_limited(os.path.join(folder, DESTINATIONS_FILE), _MAX_BYTES)
    if raw is not None and entry in raw:
        # Written by us in this exact form: unchanged, and no need to parse the file
        # (decoding would import ``json`` on the capture path of every process).
        return True
    libraries, keep = _read(folder)
    if keep:
        return False
    if _entry(libraries.get(library)) == destination:
        return True
    kept = {name: value for name, value in libraries.items() if _entry(value) is not None}
    kept[library] = destination.to_json()
    data = {"v": FORMAT_VERSION, "libraries": kept}
    _fs.atomic_write(os.path.join(folder, DESTINATIONS_FILE), dumps_sorted(data).encode())
    return True
