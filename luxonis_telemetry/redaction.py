"""The privacy rules applied at capture: what of a value may leave the machine.

luxonis-ml 0.10.2's ``luxonis_ml.telemetry.redaction`` rules are the base, with
its markers (``<redacted>``, ``<string>``, ``<bytes>``, ``<TypeName>``), so the
dashboards built on what it sent keep working. Our rules are added wherever they
are stricter or needed for safety: values come from code we do not control, so
sanitizing never raises, never loops and never grows without bound; the
configured API key and the user's home folder never survive; ``key=secret``
pairs inside strings are redacted; top-level ``$`` keys, which PostHog treats as
instructions (``$set``, ``$ip``, ...), cannot be set through properties.

Capture calls this for every event, so the common case (a small flat dict of
scalars with keys and enum-like values seen before) runs from caches.
"""

from __future__ import annotations

import os
import sys
from _collections_abc import Mapping  # collections.abc's own source: no ``collections`` import
from itertools import islice

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Collection
    from typing import Any, Optional

__all__ = [
    "DEFAULT_BLOCKED_KEYS",
    "DEFAULT_REDACT_KEYS",
    "MAX_MAPPING_ITEMS",
    "MAX_SEQUENCE_ITEMS",
    "REDACTED",
    "Sanitizer",
    "sanitize_properties",
]

REDACTED = "<redacted>"
FREE_TEXT = "<string>"
BYTES = "<bytes>"
CYCLE = "<cycle>"
TOO_DEEP = "<too deep>"
TRUNCATED = "<truncated>"

#: luxonis-ml's key substrings: a key containing one names a secret.
DEFAULT_REDACT_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "api-key",
        "auth",
        "credential",
        "access_key",
        "access-key",
        "private_key",
        "private-key",
    }
)

#: luxonis-ml's exact key names (any case) whose values identify a person or machine.
DEFAULT_BLOCKED_KEYS = frozenset(
    {
        "account_id",
        "anonymous_analytics_id",
        "app_id",
        "device_id",
        "email",
        "file_path",
        "hostname",
        "installation_id",
        "machine_id",
        "mac_address",
        "output_path",
        "remote_url",
        "serial_number",
        "team_id",
        "url",
        "user_id",
        "user_path",
    }
)

MAX_KEY_CHARS = 200
MAX_STRING_CHARS = 200
MAX_NAME_CHARS = 200
MAX_CONTEXT_CHARS = 4096
MAX_SEQUENCE_ITEMS = 20
MAX_MAPPING_ITEMS = 50
MAX_DEPTH = 8
MAX_NODES = 10_000
MAX_TEXT_CHARS = 256 * 1024

# The regular expressions below are compiled on first use (``_regex``): importing
# ``re`` and compiling them costs ~3 ms, which every tool would pay at start-up,
# while a typical event (keys like "epochs", values like "yolov8n") needs none.
# Our own secret-key rule; a key is secret when this or a redact substring matches.
_SENSITIVE_NAMES = (
    r"pass(word|wd|phrase)?|secret|token|api[-_ ]?key|access[-_ ]?key|"
    r"private[-_ ]?key|auth(?!ors?(?![a-z]))|credential|cookie|session[-_ ]?key|signature|dsn"
)
# Every match of _SENSITIVE_NAMES contains one of these (lower case): only then it runs.
_SECRET_HINTS = (
    "pass",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "cookie",
    "signature",
    "dsn",
)
# A ``key=value`` / ``key: value`` / ``"key": value`` / ``--flag value`` pair inside a
# string. Only the key is matched here: whether its value is consumed depends on the
# key looking secret, so a harmless ``url=...`` does not hide a ``token=`` after it.
_PAIR_KEY = (
    r"(?<![\w.-])(?:(-{1,2}[A-Za-z][\w.-]*)[ \t]+(?=[^\s-])|([\w.-]+)[\"']?[ \t]*[:=][ \t]*)"
)
_PAIR_VALUE = r"(?:bearer|basic|digest|token)[ \t]+[^\s,;&\"']+|\"[^\"]*\"?|'[^']*'?|[^\s,;&\"']+"
_USERINFO = r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]+@"
_BEARER = r"(?<![\w-])(bearer[ \t]+)[^\s,;&\"']+"
_IGNORING_CASE = frozenset({_SENSITIVE_NAMES, _PAIR_VALUE, _BEARER})
_compiled: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled (once), importing ``re`` only when a string needs it."""
    found = _compiled.get(pattern)
    if found is None:
        import re

        flags = re.IGNORECASE if pattern in _IGNORING_CASE else 0
        found = _compiled[pattern] = re.compile(pattern, flags)
    return found


_SECRET = 1  # key flags: the value is replaced by REDACTED
_DOLLAR = 2  # the key is reserved by PostHog when at the top level of properties
_INT_LIMIT = 1 << 64
_SCRUB_MARGIN = 256  # room past a cut so a pair or secret straddling it is still seen
_CACHED_TEXT_CHARS = 64
_CACHED_KEY_CHARS = 256
_CACHE_ENTRIES = 4096
_PLAIN_SCALARS = (bool, int, float, str)
_MISSING = object()


def _is_temporal(value: object) -> bool:
    """A date, time or duration, without importing ``datetime`` on the capture path.

    An object of those types exists only once its module was imported, so
    when it was not, nothing is one.
    """
    module = sys.modules.get("datetime")
    return module is not None and isinstance(value, (module.date, module.time, module.timedelta))


class _Walk:
    """One traversal: the budgets left, the containers open above, the string rule."""

    __slots__ = ("chars", "nodes", "open", "text")

    def __init__(self, text: Callable[[str], str]) -> None:
        self.text = text
        self.nodes = MAX_NODES
        self.chars = MAX_TEXT_CHARS
        self.open: set[int] = set()


class Sanitizer:
    """Turns arbitrary values into bounded, JSON-safe values that are safe to send.

    ``secrets`` are literal strings (the configured API key) that never survive;
    ``home`` (default: the user's home folder) never survives in event properties
    and becomes ``~`` elsewhere. ``redact_keys`` replaces luxonis-ml's key
    substrings, as its ``sanitize_properties(redact_keys=)`` does; our own
    secret-key pattern applies in any case.
    """

    def __init__(
        self,
        *,
        home: Optional[str] = None,
        secrets: tuple[str, ...] = (),
        redact_keys: Optional[Collection[str]] = None,
    ) -> None:
        self._homes = _home_variants(os.path.expanduser("~") if home is None else home)
        # longest first, so a secret containing another is removed whole
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self._private = self._secrets + self._homes
        tokens = frozenset(t.lower() for t in redact_keys or () if isinstance(t, str))
        self._redact = tuple(sorted(tokens or DEFAULT_REDACT_KEYS))
        self._keys: dict[str, tuple[str, int]] = {}
        self._texts: dict[str, str] = {}
        self._context_texts: dict[str, str] = {}
        self._names: dict[str, str] = {}

    # -- public --------------------------------------------------------------

    def properties(
        self, value: object, allowlist: Optional[Collection[str]] = None
    ) -> dict[str, Any]:
        """Event properties under the full rules; never raises."""
        if value is None:
            return {}
        try:
            allowed = _allowed(allowlist)
            if type(value) is dict:
                flat = self._flat(value, allowed, self._texts, self._free_text, _DOLLAR)
                if flat is not None:
                    return flat
            walk = _Walk(self._free_text)
            if isinstance(value, Mapping):
                return self._mapping(value, 0, walk, allowed, _DOLLAR)
            if allowed is not None and "value" not in allowed:
                return {}
            return {"value": self._value(value, 1, walk)}
        except Exception as exc:  # noqa: BLE001 - hostile __iter__/__eq__ and friends
            return {"properties_error": _type_name(exc)}

    def context(self, value: object) -> dict[str, Any]:
        """What a context provider returned, made safe without the free-text rules.

        Providers legitimately return strings such as a GPU model or a platform
        string, so strings are only bounded and scrubbed, never judged; and
        luxonis-ml's own context keys start with ``$``, so those are kept.
        """
        if value is None:
            return {}
        try:
            if type(value) is dict:
                flat = self._flat(value, None, self._context_texts, self._context_text, 0)
                if flat is not None:
                    return flat
            if not isinstance(value, Mapping):
                return {}
            return self._mapping(value, 0, _Walk(self._context_text), None, 0)
        except Exception:  # noqa: BLE001 - a hostile mapping adds nothing, breaks nothing
            return {}

    def name(self, value: object) -> str:
        """An event name or distinct id: a string of at most 200 characters, scrubbed."""
        try:
            text = value if type(value) is str else _key_text(value)
            cleaned = self._names.get(text)
            if cleaned is None:
                cleaned = self._bounded(text, MAX_NAME_CHARS, "")
                if len(text) <= _CACHED_KEY_CHARS:
                    _remember(self._names, text, cleaned)
        except Exception:  # noqa: BLE001 - e.g. MemoryError on a huge str()
            return _type_marker(value)
        return cleaned

    # -- traversal -------------------------------------------------------------

    def _flat(  # noqa: PLR0912 - one inlined loop is what keeps capture fast
        self,
        value: dict[Any, Any],
        allowed: Optional[Collection[str]],
        texts: dict[str, str],
        judge: Callable[[str], str],
        drop: int,
    ) -> Optional[dict[str, Any]]:
        """The common case (a small dict of plain scalars) without recursion or budgets."""
        if len(value) > MAX_MAPPING_ITEMS:
            return None
        keys = self._keys
        out: dict[str, Any] = {}
        for raw, item in value.items():
            if type(raw) is not str:
                return None
            if allowed is not None and raw not in allowed:
                continue
            entry = keys.get(raw)
            if entry is None:
                entry = self._str_key(raw)
            key, flags = entry
            if flags:
                if flags & drop:
                    continue
                if flags & _SECRET:
                    out[key] = REDACTED
                    continue
            kind = type(item)
            if kind is str:
                text = texts.get(item)
                out[key] = judge(item) if text is None else text
            elif kind is int:
                if not -_INT_LIMIT < item < _INT_LIMIT:
                    return None
                out[key] = item
            elif kind is bool or item is None:
                out[key] = item
            elif kind is float:
                out[key] = item if item - item == 0.0 else None
            else:
                return None
        return out

    def _mapping(
        self,
        value: Mapping[Any, Any],
        depth: int,
        walk: _Walk,
        allowed: Optional[Collection[str]] = None,
        drop: int = 0,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        marker = id(value)
        walk.open.add(marker)
        try:
            for scanned, (raw, item) in enumerate(value.items()):
                if scanned >= MAX_NODES:
                    break
                if allowed is not None and _allow_name(raw) not in allowed:
                    continue
                key, flags = self._key(raw)
                if flags & drop:
                    continue
                walk.chars -= len(key)
                if flags & _SECRET:
                    walk.nodes -= 1
                    out[key] = REDACTED
                else:
                    out[key] = self._value(item, depth + 1, walk)
                if len(out) >= MAX_MAPPING_ITEMS or walk.nodes < 0 or walk.chars < 0:
                    break
        finally:
            walk.open.discard(marker)
        return out

    def _value(self, value: object, depth: int, walk: _Walk) -> Any:
        walk.nodes -= 1
        if walk.nodes < 0:
            return TRUNCATED
        kind = type(value)
        if kind is str:
            return self._text(value, walk)  # type: ignore[arg-type]
        if kind is int:
            return _int(value)  # type: ignore[arg-type]
        if kind is float:
            return value if value - value == 0.0 else None  # type: ignore[operator]
        if value is None or kind is bool:
            return value
        try:
            return self._other(value, depth, walk)
        except Exception:  # noqa: BLE001 - a hostile object spoils only its own node
            return _type_marker(value)

    def _text(self, text: str, walk: _Walk) -> str:
        cleaned = walk.text(text)
        walk.chars -= len(cleaned)
        return cleaned if walk.chars >= 0 else TRUNCATED

    def _other(self, value: object, depth: int, walk: _Walk) -> Any:
        """Everything but the exact JSON scalars, in luxonis-ml's order of checks."""
        if isinstance(value, str):
            return self._text(str.__str__(value), walk)
        if isinstance(value, int):  # IntEnum and friends: their plain number
            return _int(int.__int__(value))
        if isinstance(value, float):
            number = float.__float__(value)
            return number if number - number == 0.0 else None
        if isinstance(value, (bytes, bytearray, memoryview)):
            return BYTES
        if _is_temporal(value):  # before ``.value``: pandas' Timestamp has one
            return _type_marker(value)
        if isinstance(value, os.PathLike):
            return REDACTED
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        if id(value) in walk.open:
            return CYCLE
        if isinstance(value, (list, tuple)):
            return self._sequence(value, islice(value, MAX_SEQUENCE_ITEMS), depth, walk)
        if isinstance(value, (set, frozenset)):
            return self._sequence(value, _stable_order(value), depth, walk)
        if isinstance(value, Mapping):
            return self._mapping(value, depth, walk)
        return self._unwrapped(value, depth, walk)

    def _sequence(self, value: object, items: Any, depth: int, walk: _Walk) -> list[Any]:
        out: list[Any] = []
        marker = id(value)
        walk.open.add(marker)
        try:
            for item in items:
                out.append(self._value(item, depth + 1, walk))
                if walk.nodes < 0 or walk.chars < 0:
                    break
        finally:
            walk.open.discard(marker)
        return out

    def _unwrapped(self, value: object, depth: int, walk: _Walk) -> Any:
        """A numpy-style scalar's number, an enum's ``.value``, or the type's name."""
        if getattr(value, "dtype", _MISSING) is not _MISSING:
            item = getattr(value, "item", None)
            if callable(item) and getattr(value, "ndim", 0) == 0:
                plain = item()
                if type(plain) in _PLAIN_SCALARS:
                    return self._value(plain, depth + 1, walk)
        inner = getattr(value, "value", _MISSING)
        if inner is _MISSING:
            return _type_marker(value)
        marker = id(value)
        walk.open.add(marker)
        try:
            return self._value(inner, depth + 1, walk)
        finally:
            walk.open.discard(marker)

    # -- keys ------------------------------------------------------------------

    def _key(self, raw: object) -> tuple[str, int]:
        """The cleaned key and its flags (``_SECRET``, ``_DOLLAR``)."""
        if type(raw) is str:
            entry = self._keys.get(raw)
            return entry if entry is not None else self._str_key(raw)
        return self._classify(_key_text(raw))

    def _str_key(self, raw: str) -> tuple[str, int]:
        entry = self._classify(raw)
        if len(raw) <= _CACHED_KEY_CHARS:
            _remember(self._keys, raw, entry)
        return entry

    def _classify(self, text: str) -> tuple[str, int]:
        lowered = text.lower()
        secret = lowered.strip() in DEFAULT_BLOCKED_KEYS or self._secret_name(text, lowered)
        flags = _SECRET if secret else 0
        if text.startswith("$"):
            flags |= _DOLLAR
        return self._bounded(text, MAX_KEY_CHARS, "..."), flags

    def _secret_name(self, text: str, lowered: str) -> bool:
        if any(token in lowered for token in self._redact):
            return True
        if not any(hint in lowered for hint in _SECRET_HINTS):
            return False
        return _regex(_SENSITIVE_NAMES).search(text) is not None

    # -- strings ---------------------------------------------------------------

    def _free_text(self, text: str) -> str:
        """A property value under luxonis-ml's free-text rules and ours, cached when short."""
        cached = self._texts.get(text)
        if cached is not None:
            return cached
        judged = self._judge(text)
        if len(text) <= _CACHED_TEXT_CHARS:
            _remember(self._texts, text, judged)
        return judged

    def _judge(self, text: str) -> str:
        stripped = text.strip()
        if not stripped:
            return ""
        for word in self._private:
            if word in text:
                return REDACTED
        # luxonis-ml's URL and path patterns all need a slash, except ``www.``
        if "/" in stripped or "\\" in stripped or stripped[:4].lower() == "www.":
            return REDACTED
        if _is_email(stripped):
            return REDACTED
        if "\n" in stripped or "\r" in stripped or "\t" in stripped:
            return FREE_TEXT
        if len(stripped.split(None, 3)) > 3:
            return FREE_TEXT
        return self._bounded(stripped, MAX_STRING_CHARS, "...")

    def _context_text(self, text: str) -> str:
        cached = self._context_texts.get(text)
        if cached is not None:
            return cached
        cleaned = self._bounded(text, MAX_CONTEXT_CHARS, "...")
        if len(text) <= _CACHED_KEY_CHARS:
            _remember(self._context_texts, text, cleaned)
        return cleaned

    def _bounded(self, text: str, limit: int, suffix: str) -> str:
        """``text`` scrubbed, then cut to ``limit`` characters plus ``suffix`` if cut.

        Only a window past the limit is scrubbed (a huge string costs no more
        than a short one); the window never ends inside a secret, so no part
        of one can slide under the limit once earlier matches shrink the text.
        """
        window = self._window(text, limit + _SCRUB_MARGIN)
        cleaned = self._scrub(window)
        if len(window) < len(text) or len(cleaned) > limit:
            return cleaned[:limit] + suffix
        return cleaned

    def _window(self, text: str, size: int) -> str:
        if len(text) <= size:
            return text
        cut = size
        for _ in range(len(self._private) + 1):
            moved = False
            for word in self._private:
                start = text.find(word, max(0, cut - len(word) + 1), cut + len(word) - 1)
                if -1 < start < cut:
                    cut = start + len(word)
                    moved = True
            if not moved:
                break
        return text[:cut]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for home in self._homes:
            if home in text:
                text = text.replace(home, "~")
        if "=" in text or ":" in text or "-" in text:
            text = self._pairs(text)
        if "@" in text and "://" in text:
            text = _regex(_USERINFO).sub(rf"\1{REDACTED}@", text)
        if "bearer" in text.lower():
            text = _regex(_BEARER).sub(rf"\1{REDACTED}", text)
        return text

    def _pairs(self, text: str) -> str:
        """``text`` with the value of every secret-looking ``key=value`` pair redacted."""
        parts: list[str] = []
        done = pos = 0
        while True:
            found = _regex(_PAIR_KEY).search(text, pos)
            if found is None:
                break
            pos = found.end()
            key = found.group(1) or found.group(2)
            if not self._secret_name(key, key.lower()):
                continue
            value = _regex(_PAIR_VALUE).match(text, pos)
            if value is None:
                continue
            parts.append(text[done:pos])
            parts.append(REDACTED)
            done = pos = value.end()
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)


_shared: dict[tuple[str, object], Sanitizer] = {}


def sanitize_properties(
    properties: object,
    *,
    allowlist: Optional[Collection[str]] = None,
    redact_keys: Optional[Collection[str]] = None,
) -> dict[str, Any]:
    """luxonis-ml's ``sanitize_properties``, under our stricter rules; never raises.

    ``allowlist`` keeps only those top-level keys; ``redact_keys`` replaces the
    key substrings that mark a secret. The user's home is looked up on each call
    (it is what the process sees now), the sanitizer for it is reused.
    """
    try:
        if not properties:
            return {}
        home = os.path.expanduser("~")
        keys = frozenset(redact_keys) if redact_keys else None
        sanitizer = _shared.get((home, keys))
        if sanitizer is None:
            sanitizer = Sanitizer(home=home, redact_keys=keys)
            _remember(_shared, (home, keys), sanitizer, 16)
    except Exception as exc:  # noqa: BLE001 - a hostile __bool__ or redact_keys
        return {"properties_error": _type_name(exc)}
    return sanitizer.properties(properties, allowlist)


def _allowed(allowlist: Optional[Collection[str]]) -> Optional[Collection[str]]:
    """The allowlist as a set (a bare string is one key, not its characters)."""
    if allowlist is None or type(allowlist) in (set, frozenset):
        return allowlist
    if isinstance(allowlist, str):
        return frozenset((str.__str__(allowlist),))
    return frozenset(str.__str__(key) for key in allowlist if isinstance(key, str))


def _allow_name(raw: object) -> Optional[str]:
    if type(raw) is str:
        return raw
    return str.__str__(raw) if isinstance(raw, str) else None


def _key_text(raw: object) -> str:
    """``str(raw)`` as luxonis-ml does, but an exact ``str`` and never an exception."""
    try:
        return str.__str__(raw if isinstance(raw, str) else str(raw))
    except Exception:  # noqa: BLE001 - hostile __str__, or an int too long to print
        return _type_marker(raw)


def _int(value: int) -> Any:
    """A JSON number that any reader can parse: huge integers become floats."""
    if -_INT_LIMIT < value < _INT_LIMIT:
        return value
    return float(value) if value.bit_length() < 1024 else "<int>"


def _is_email(text: str) -> bool:
    """luxonis-ml's ``^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$`` in linear time for any input."""
    local, at, domain = text.partition("@")
    if not at or not local or "@" in domain or len(text.split(None, 1)) > 1:
        return False
    return domain.find(".", 1, len(domain) - 1) != -1


def _stable_order(value: Collection[Any]) -> list[Any]:
    """A set's first items in an order that does not depend on hash seeds."""
    items = list(islice(value, MAX_NODES))
    try:
        items.sort(key=_sort_key)
    except Exception:  # noqa: BLE001 - incomparable or hostile items keep set order
        return items[:MAX_SEQUENCE_ITEMS]
    return items[:MAX_SEQUENCE_ITEMS]


def _sort_key(item: object) -> tuple[str, Any]:
    kind = type(item)
    if kind in _PLAIN_SCALARS:
        return kind.__name__, item
    return _type_name(item), ""


def _type_name(value: object) -> str:
    try:
        name = type(value).__name__
        return str.__str__(name)[:MAX_KEY_CHARS] if isinstance(name, str) else "object"
    except Exception:  # noqa: BLE001 - a metaclass with a hostile __name__
        return "object"


def _type_marker(value: object) -> str:
    return f"<{_type_name(value)}>"


def _home_variants(home: str) -> tuple[str, ...]:
    """The home folder as it may appear in text; none when it would match too much."""
    home = home.rstrip("/\\")
    if len(home) <= 1 or not os.path.isabs(home):
        return ()
    return tuple(sorted({home, home.replace("\\", "/")}, key=len, reverse=True))


def _remember(
    cache: dict[Any, Any], key: object, value: object, limit: int = _CACHE_ENTRIES
) -> None:
    """Bounded caches: when full, start over, so a long run keeps its current hot set."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
