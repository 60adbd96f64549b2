"""What reaches a person's terminal: URL credentials hidden, keys masked, text shown literally."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from luxonis_telemetry._text import literal, mask_key, mask_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (None, None),
        ("", ""),
        ("https://us.i.posthog.com", "https://us.i.posthog.com"),
        ("https://host:8443/path?q=1", "https://host:8443/path?q=1"),
        ("https://user:pass@host", "https://***@host"),
        ("https://user:pass@host:8443/capture/?x=1#f", "https://***@host:8443/capture/?x=1#f"),
        ("https://user@host/", "https://***@host/"),
        ("https://:token@host", "https://***@host"),
        ("HTTP://User:Pass@Host", "HTTP://***@Host"),
        # odd URLs: a password with characters that should have been escaped
        ("https://user:p@ss@host", "https://***@host"),
        ("https://user:pa/ss@host/x", "https://***@host/x"),
        ("https://user:pa?ss@host", "https://***@host"),
        ("https://user:pa#ss@host", "https://***@host"),
        ("https://user:pa\\ss@host", "https://***@host"),
        # no scheme, or a network-path reference
        ("user:pass@host:443/x", "***@host:443/x"),
        ("//user:pass@host", "//***@host"),
        # an @ after the host: shown less completely, never a password
        ("https://host/?mail=a@b.example", "https://***@b.example"),
    ],
)
def test_mask_url(url: str | None, shown: str | None) -> None:
    assert mask_url(url) == shown


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["https://", "http://", "//", ""]),
    st.text(st.characters(blacklist_characters="@"), min_size=1, max_size=20),
    st.text(st.characters(blacklist_characters="@"), max_size=30),
)
def test_mask_url_never_shows_what_precedes_the_last_at(
    scheme: str, secret: str, rest: str
) -> None:
    secret = "S3cr3t" + secret
    shown = mask_url(f"{scheme}{secret}@{rest}")
    assert shown is not None
    assert secret not in shown
    assert shown.endswith(f"***@{rest}")


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        (None, None),
        ("", None),
        ("k", "****"),
        ("short_key", "****"),
        ("fifteen_chars_k", "****"),
        ("phc_test_key_123", "phc_…23"),
        ("phc_" + "a" * 40 + "xy", "phc_…xy"),
    ],
)
def test_mask_key(key: str | None, shown: str | None) -> None:
    assert mask_key(key) == shown


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_a_masked_key_is_never_usable(key: str) -> None:
    shown = mask_key(key)
    assert shown is not None
    if len(key) > 6:
        assert key not in shown
    assert len(shown.replace("…", "").replace("*", "")) <= 6


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text", "plain text"),
        ("ünïcödé 日本 🙂", "ünïcödé 日本 🙂"),
        ("[/] [bold]markup[/bold]", "[/] [bold]markup[/bold]"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        (
            "\x1b]8;;https://evil.example\x07link\x1b]8;;\x07",
            "\\x1b]8;;https://evil.example\\x07link\\x1b]8;;\\x07",
        ),
        ("a\x00b", "a\\x00b"),
        ("line\nbreak\rreturn\ttab", "line\\nbreak\\rreturn\\ttab"),
        ("del\x7f", "del\\x7f"),
        ("c1\x85\x9b", "c1\\x85\\x9b"),
        ("bidi\u202eevil\u202c", "bidi\\u202eevil\\u202c"),
        ("isolate\u2066x\u2069", "isolate\\u2066x\\u2069"),
        ("marks\u200e\u200f\u061c", "marks\\u200e\\u200f\\u061c"),
        ("sep\u2028\u2029", "sep\\u2028\\u2029"),
        ("lone\ud800surrogate", "lone\\ud800surrogate"),
    ],
)
def test_literal(text: str, shown: str) -> None:
    assert literal(text) == shown


CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))] + [
    "\u061c",
    "\u200e",
    "\u200f",
    "\u2028",
    "\u2029",
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
    *(chr(c) for c in range(0xD800, 0xE000, 97)),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(CONTROLS), st.text(max_size=5)), max_size=20))
def test_literal_output_is_printable_and_acts_on_nothing(parts: list[str]) -> None:
    shown = literal("".join(parts))
    assert not any(control in shown for control in CONTROLS)
    # a strict UTF-8 terminal takes it (a lone surrogate would raise here)
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    stream.write(shown)
    stream.flush()
