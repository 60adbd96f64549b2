"""The event record: what one spooled line holds, and how it is made safe.

Properties come from code we do not control, so turning them into JSON must
never raise, never loop and never grow without bound; and since the record is
what leaves the machine, secrets and the user's home path are scrubbed here,
once, before anything is written.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time, timezone
from enum import Enum

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = [
    "RECORD_VERSION",
    "REDACTED",
    "Sanitizer",
    "base_context",
    "encode",
    "encode_context",
    "new_record",
    "system_metadata",
    "validate",
]

RECORD_VERSION = 1
REDACTED = "[redacted]"
MAX_STRING_CHARS = 4096
MAX_NAME_CHARS = 200
MAX_DEPTH = 8
MAX_ITEMS = 1000
MAX_NODES = 10_000
MAX_RECORD_BYTES = 256 * 1024

_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[-_ ]?key|access[-_ ]?key|"
    r"private[-_ ]?key|auth(?!ors?(?![a-z]))|credential|cookie|session[-_ ]?key|signature|dsn",
    re.IGNORECASE,
)
_RECORD_TYPES = frozenset({"capture", "identify"})


class _Budget:
    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes = MAX_NODES


class Sanitizer:
    """Turns arbitrary values into bounded, JSON-safe, scrubbed ones.

    ``secrets`` are literal strings (the configured API key) removed wherever
    they appear; ``home`` becomes ``~`` so paths do not reveal a user name.
    """

    def __init__(self, *, home: Optional[str] = None, secrets: tuple[str, ...] = ()):
        home = home if home is not None else os.path.expanduser("~")
        self._home = home if len(home) > 1 and os.path.isabs(home) else None
        self._secrets = tuple(s for s in secrets if s)
        # raw key -> cleaned key, or REDACTED for a secret-looking key
        self._keys: dict[str, str] = {}

    def properties(self, value: Any) -> dict[str, Any]:
        """A JSON-safe dict for ``value``; never raises."""
        if value is None:
            return {}
        try:
            if type(value) is dict:
                flat = self._flat(value)
                if flat is not None:
                    return flat
            if not isinstance(value, Mapping):
                return {"value": self._value(value, 0, set(), _Budget())}
            return self._mapping(value, 0, set(), _Budget())
        except Exception as exc:  # noqa: BLE001 - hostile __iter__/__eq__ and friends
            return {"$properties_error": type(exc).__name__}

    def _flat(self, value: dict[Any, Any]) -> Optional[dict[str, Any]]:
        """The common case (a small dict of plain scalars) without recursion."""
        if len(value) > MAX_ITEMS:
            return None
        out: dict[str, Any] = {}
        keys = self._keys
        for raw_key, item in value.items():
            key = keys.get(raw_key) if type(raw_key) is str else None
            if key is None:
                return None
            if key is REDACTED:
                out[self._redacted_name(raw_key)] = REDACTED
                continue
            kind = type(item)
            if kind is str:
                out[key] = self.string(item)
            elif kind is int or kind is bool or item is None:
                out[key] = item
            elif kind is float:
                out[key] = item if math.isfinite(item) else None
            else:
                return None
        return out

    def name(self, value: Any) -> str:
        text = value if isinstance(value, str) else self._repr(value)
        return self.string(text[:MAX_NAME_CHARS])

    def string(self, text: str) -> str:
        if len(text) > MAX_STRING_CHARS:
            dropped = len(text) - MAX_STRING_CHARS
            text = f"{text[:MAX_STRING_CHARS]}...[{dropped} chars truncated]"
        home = self._home
        if home is not None and home in text:
            text = _replace_home(text, home)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _key(self, key: Any) -> str:
        """The cleaned key, or ``REDACTED`` when it names a secret."""
        if type(key) is str:
            known = self._keys.get(key)
            if known is not None:
                return known
        if isinstance(key, str):
            cleaned = self.string(key[:MAX_NAME_CHARS])
        elif key is None or isinstance(key, (bool, int, float)):
            cleaned = str(key)
        else:
            cleaned = self.name(self._plain(key))
        result = REDACTED if _SECRET_KEY.search(cleaned) else cleaned
        if type(key) is str and len(self._keys) < 4096:
            self._keys[key] = result
        return result

    def _mapping(
        self, value: Mapping[Any, Any], depth: int, path: set[int], budget: _Budget
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        marker = id(value)
        path.add(marker)
        try:
            for index, (raw_key, item) in enumerate(value.items()):
                if index >= MAX_ITEMS:
                    out["$truncated_items"] = len(value) - MAX_ITEMS
                    break
                key = self._key(raw_key)
                if key is REDACTED:
                    out[self._redacted_name(raw_key)] = REDACTED
                    continue
                out[key] = self._value(item, depth + 1, path, budget)
        finally:
            path.discard(marker)
        return out

    def _redacted_name(self, raw_key: Any) -> str:
        return self.string(raw_key[:MAX_NAME_CHARS]) if isinstance(raw_key, str) else "secret"

    def _value(self, value: Any, depth: int, path: set[int], budget: _Budget) -> Any:
        budget.nodes -= 1
        if budget.nodes < 0:
            return "[truncated]"
        kind = type(value)
        if kind is str:
            return self.string(value)
        if value is None or kind is bool or kind is int:
            return value
        if kind is float:
            return value if math.isfinite(value) else None
        if depth >= MAX_DEPTH:
            return "[too deep]"
        if id(value) in path:
            return "[cycle]"
        return self._other(value, depth, path, budget)

    def _other(self, value: Any, depth: int, path: set[int], budget: _Budget) -> Any:
        if isinstance(value, Enum):
            return self._value(value.value, depth + 1, path, budget)
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            number = float(value)
            return number if math.isfinite(number) else None
        if isinstance(value, str):
            return self.string(str(value))
        if isinstance(value, Mapping):
            return self._mapping(value, depth, path, budget)
        if isinstance(value, (list, tuple, set, frozenset)):
            return self._sequence(value, depth, path, budget)
        plain = self._plain(value)
        if plain is not value:
            return self._value(plain, depth + 1, path, budget)
        return self.string(self._repr(value))

    def _sequence(self, value: Any, depth: int, path: set[int], budget: _Budget) -> list[Any]:
        items = list(value)
        if isinstance(value, (set, frozenset)):
            try:
                items.sort()
            except TypeError:
                items.sort(key=self._repr)
        marker = id(value)
        path.add(marker)
        try:
            out = [self._value(item, depth + 1, path, budget) for item in items[:MAX_ITEMS]]
        finally:
            path.discard(marker)
        if len(items) > MAX_ITEMS:
            out.append(f"[{len(items) - MAX_ITEMS} items truncated]")
        return out

    @staticmethod
    def _plain(value: Any) -> Any:
        """The nearest JSON-friendly form of a well-known non-JSON type."""
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, (date, time)):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, os.PathLike):
            try:
                path = os.fspath(value)
            except Exception:  # noqa: BLE001 - a broken __fspath__
                return value
            return path if isinstance(path, str) else f"<{len(path)} bytes>"
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<{len(value)} bytes>"
        item = getattr(value, "item", None)
        if callable(item) and hasattr(value, "dtype"):
            try:
                return item()
            except Exception:  # noqa: BLE001 - arrays of size != 1
                tolist = getattr(value, "tolist", None)
                if callable(tolist) and getattr(value, "size", MAX_ITEMS + 1) <= MAX_ITEMS:
                    try:
                        return tolist()
                    except Exception:  # noqa: BLE001
                        return value
        return value

    @staticmethod
    def _repr(value: Any) -> str:
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001 - objects whose __repr__ raises
            return f"<unrepresentable {type(value).__qualname__}>"
        return text if isinstance(text, str) else f"<{type(value).__qualname__}>"


def _replace_home(text: str, home: str) -> str:
    if text == home:
        return "~"
    return text.replace(home + os.sep, "~" + os.sep).replace(home + "/", "~/")


def new_record(
    kind: str,
    *,
    event: str,
    distinct_id: str,
    library: str,
    properties: dict[str, Any],
    context: dict[str, Any],
) -> dict[str, Any]:
    """A record whose uuid and timestamp are fixed now and never change again."""
    return {
        "v": RECORD_VERSION,
        "type": kind,
        "uuid": str(uuid.uuid4()),
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "event": event,
        "distinct_id": distinct_id,
        "library": library,
        "properties": properties,
        "context": context,
    }


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode(record: Mapping[str, Any], context_json: Optional[str] = None) -> bytes:
    """One spool line; oversized properties are replaced, never the record.

    ``context_json`` is the record's context already encoded (and then the
    record holds no ``context`` key): the context is the same for every event
    of a process, so callers encode it once.
    """
    if context_json is None:
        line = _ENCODER.encode(record)
    else:
        line = f'{_ENCODER.encode(record)[:-1]},"context":{context_json}}}'
        if len(line) > MAX_RECORD_BYTES:
            record = {**record, "context": json.loads(context_json)}
    if len(line) > MAX_RECORD_BYTES:
        slim = dict(record)
        slim["properties"] = {"$properties_truncated": True, "$original_bytes": len(line)}
        slim["context"] = {
            key: value
            for key, value in record.get("context", {}).items()
            if key in _BASE_CONTEXT_KEYS
        }
        line = _ENCODER.encode(slim)
    return line.encode() + b"\n"


def encode_context(context: Mapping[str, Any]) -> str:
    return _ENCODER.encode(context)


def validate(value: Any) -> Optional[dict[str, Any]]:
    """The record when ``value`` is a well-formed v1 event, else ``None``."""
    if not isinstance(value, dict):
        return None
    if value.get("v") != RECORD_VERSION or value.get("type") not in _RECORD_TYPES:
        return None
    for key in ("uuid", "timestamp", "event", "distinct_id", "library"):
        if not isinstance(value.get(key), str):
            return None
    if not isinstance(value.get("properties"), dict):
        return None
    if not isinstance(value.get("context"), dict):
        return None
    return value


_BASE_CONTEXT_KEYS = (
    "os",
    "os_version",
    "python_version",
    "library_name",
    "library_version",
    "session_id",
    "install_id",
    "ci",
)


def base_context(
    *,
    library_name: str,
    library_version: Optional[str],
    session_id: str,
    install_id: str,
    ci: bool,
) -> dict[str, Any]:
    return {
        **_os_facts(),
        "library_name": library_name,
        "library_version": library_version,
        "session_id": session_id,
        "install_id": install_id,
        "ci": ci,
    }


def _os_facts() -> dict[str, str]:
    """What ``platform`` reports, without importing it where ``uname`` exists."""
    python = ".".join(str(part) for part in sys.version_info[:3])
    if hasattr(os, "uname"):
        uname = os.uname()
        return {"os": uname.sysname, "os_version": uname.release, "python_version": python}
    import platform  # pragma: no cover - Windows

    return {"os": platform.system(), "os_version": platform.release(), "python_version": python}


def system_metadata() -> dict[str, Any]:
    """Machine facts for ``include_system_metadata=True``: coarse, nothing personal."""
    import platform

    return {
        "architecture": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "container": _in_container(),
        "timezone_offset_minutes": _utc_offset_minutes(),
    }


def _in_container() -> bool:
    if os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv"):
        return True
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    try:
        with open("/proc/1/cgroup", encoding="utf-8", errors="replace") as handle:
            text = handle.read(65536)
    except OSError:
        return False
    return any(word in text for word in ("docker", "kubepods", "containerd", "lxc"))


def _utc_offset_minutes() -> int:
    offset = datetime.now().astimezone().utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0
