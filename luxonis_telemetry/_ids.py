"""Random identifiers without the ``uuid`` module (~3 ms to import, on every tool start)."""

from __future__ import annotations

import os
import re

__all__ = ["is_uuid", "new_uuid4"]

_HEX = "[0-9a-fA-F]"
_HYPHENATED = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
# The spellings PostHog's capture service parses (Rust ``uuid`` crate): simple,
# hyphenated, braced and URN; anything else fails the whole batch with a 400.
_UUID = re.compile(f"{_HEX}{{32}}|{_HYPHENATED}|\\{{{_HYPHENATED}\\}}|urn:uuid:{_HYPHENATED}")


def new_uuid4() -> str:
    """A random (version 4) UUID in its canonical text form."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def is_uuid(text: object) -> bool:
    """Whether ``text`` is a UUID as PostHog parses one (any case, no spaces)."""
    return isinstance(text, str) and _UUID.fullmatch(text) is not None
