"""Random identifiers without the ``uuid`` module (~3 ms to import, on every tool start)."""

from __future__ import annotations

import os
import re

__all__ = ["is_uuid", "new_uuid4"]

_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


def new_uuid4() -> str:
    """A random (version 4) UUID in its canonical text form."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def is_uuid(text: object) -> bool:
    """Whether ``text`` is a UUID as PostHog parses one (hyphens optional, any case)."""
    return isinstance(text, str) and _UUID.fullmatch(text.strip("{}")) is not None
