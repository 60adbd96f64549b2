"""Random identifiers without the ``uuid`` module (~3 ms to import, on every tool start)."""

from __future__ import annotations

import os

__all__ = ["is_uuid", "new_uuid4"]

_HEX = "[0-9a-fA-F]"
_HYPHENATED = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
# The spellings PostHog's capture service parses (Rust ``uuid`` crate): simple,
# hyphenated, braced and URN; anything else fails the whole batch with a 400.
_UUID = f"{_HEX}{{32}}|{_HYPHENATED}|\\{{{_HYPHENATED}\\}}|urn:uuid:{_HYPHENATED}"


_POOL_SIZE = 128
_VARIANT = "89ab89ab89ab89ab"  # hex digit -> a variant-1 digit (10xx), by the low two bits
# Ready-made random hex strings, 32 digits each, from one urandom call per _POOL_SIZE
# UUIDs. list.pop is atomic (threads, signal handlers); a forked child starts empty,
# so it never repeats its parent's UUIDs.
_pool: list[str] = []
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.clear)


def new_uuid4() -> str:
    """A random (version 4) UUID in its canonical text form."""
    try:
        text = _pool.pop()
    except IndexError:
        block = os.urandom(16 * _POOL_SIZE).hex()
        _pool.extend(block[start : start + 32] for start in range(32, len(block), 32))
        text = block[:32]
    variant = _VARIANT[int(text[16], 16)]
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{variant}{text[17:20]}-{text[20:]}"


def is_uuid(text: object) -> bool:
    """Whether ``text`` is a UUID as PostHog parses one (any case, no spaces)."""
    # imported here: capturing never checks a uuid, and ``re`` costs ~3 ms to import
    import re

    return isinstance(text, str) and re.fullmatch(_UUID, text) is not None
