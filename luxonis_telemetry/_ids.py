"""Random identifiers without the ``uuid`` module (~3 ms to import, on every tool start)."""

from __future__ import annotations

import os

__all__ = ["is_uuid", "new_uuid4"]

_HEX_DIGITS = "0123456789abcdefABCDEF"
_GROUPS = (8, 4, 4, 4, 12)


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
    """Whether ``text`` is a UUID as PostHog parses one (any case, no spaces).

    The spellings PostHog's capture service accepts (Rust's ``uuid`` crate):
    simple, hyphenated, braced and URN; any other fails a whole batch with a
    400. No ``re`` here: reading the install id checks one at every tool
    start, and importing ``re`` costs ~6 ms.
    """
    if not isinstance(text, str):
        return False
    size = len(text)
    if size == 32:
        return _all_hex(text)
    if size == 36:
        return _hyphenated(text)
    if size == 38:
        return text[0] == "{" and text[-1] == "}" and _hyphenated(text[1:-1])
    if size == 45:
        return text.startswith("urn:uuid:") and _hyphenated(text[9:])
    return False


def _all_hex(text: str) -> bool:
    return not text.strip(_HEX_DIGITS)


def _hyphenated(text: str) -> bool:
    groups = text.split("-")
    return len(groups) == 5 and all(
        len(group) == size and _all_hex(group) for group, size in zip(groups, _GROUPS, strict=True)
    )
