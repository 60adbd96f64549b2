"""Showing things to people safely: keys masked, URL credentials hidden, text made literal.

Whatever reaches a terminal or a log passes through here: a recorded
property may hold escape sequences, an endpoint may carry ``user:password@``,
and a key must be recognisable without being usable.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Optional

__all__ = ["literal", "mask_key", "mask_url"]

# C0 and C1 controls, DEL, the marks and overrides that reorder what a terminal
# shows (bidi), the line and paragraph separators some terminals break lines
# at, and lone surrogates (JSON can carry them; printing one raises).
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SHORTEST_SHOWN_KEY = 16


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def mask_url(url: Optional[str]) -> Optional[str]:
    """``url`` with any ``user:password@`` replaced by ``***@``.

    Everything between the scheme and the *last* ``@`` is hidden: parsers
    disagree on where a malformed authority ends (an unencoded ``/``, ``?``,
    ``#`` or ``\\`` in a password), and a URL with an ``@`` in its path is
    better shown too little than a password shown at all.
    """
    if not url or "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest or not _SCHEME.fullmatch(scheme):
        scheme, sep, rest = "", "", url
        if rest.startswith("//"):
            sep, rest = "//", rest[2:]
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}"


def mask_key(key: Optional[str]) -> Optional[str]:
    """Enough of a key to recognise it, never enough to use it.

    A short key is hidden entirely: six known characters of a ten-character
    secret leave too little to guess.
    """
    if not key:
        return None
    if len(key) < _SHORTEST_SHOWN_KEY:
        return "****"
    return f"{key[:4]}…{key[-2:]}"


def literal(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\n``), never acted on."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if "\ud800" <= char <= "\udfff":
        return f"\\u{ord(char):04x}"
    return char.encode("unicode_escape").decode("ascii")
