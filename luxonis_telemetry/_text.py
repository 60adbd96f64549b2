"""Showing things to people safely: keys masked, URL credentials hidden, text made literal.

Whatever reaches a terminal or a log passes through here: a recorded
property may hold escape sequences, an endpoint may carry ``user:password@``,
and a key must be recognisable without being usable.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from typing import Optional

__all__ = ["literal", "mask_key", "mask_url"]

# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def mask_url(url: Optional[str]) -> Optional[str]:
    """``url`` with any ``user:password@`` replaced by ``***@``."""
    if not url or "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"


def mask_key(key: Optional[str]) -> Optional[str]:
    """Enough of a key to recognise it, never enough to use it."""
    if not key:
        return None
    if len(key) <= 8:
        return "****"
    return f"{key[:4]}…{key[-2:]}"


def literal(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\n``), never acted on."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)
