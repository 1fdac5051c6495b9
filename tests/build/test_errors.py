"""URL credentials are masked wherever a build shows or records a URL."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from flash.build.errors import BuildError, redact_credentials

# The rule, written as the plain regex it is: a scheme (a letter, then letters, digits,
# "+", "." or "-"), "://", then the userinfo up to the last "@" before whitespace, a path,
# a query, a fragment or a quote.
_RULE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#\"']+@")


def _by_the_rule(text: str) -> str:
    return _RULE.sub(r"\1****@", text)


def test_credentials_in_urls_are_masked() -> None:
    cases = {
        "-i https://deploy:tok@pypi.example/simple": "-i https://****@pypi.example/simple",
        "https://u:p@ss@host/x": "https://****@host/x",  # the password is "p@ss"
        "git+https://tok@github.com/o/r.git": "git+https://****@github.com/o/r.git",
        "9http://u:t@h": "9http://****@h",  # the scheme starts at the first letter
        "a://b@c d://e@f": "a://****@c d://****@f",
        "'https://u:t@h', 'https://v:w@h'": "'https://****@h', 'https://****@h'",
        "-://u@h mailto:team@example.com https://example.com/@x": (
            "-://u@h mailto:team@example.com https://example.com/@x"
        ),
    }
    for text, masked in cases.items():
        assert redact_credentials(text) == masked, text
    assert BuildError("cannot fetch https://u:tok@h/x").message == "cannot fetch https://****@h/x"


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab9+.-:/@ \"'?#\u00e9\u3000\x1c", max_size=40))
def test_masking_follows_the_rule_on_any_text(text: str) -> None:
    assert redact_credentials(text) == _by_the_rule(text)


def test_a_megabyte_line_of_letters_is_masked_at_once() -> None:
    # The rule's regex retries at every letter of a word: about twenty minutes on this line.
    # The masking finds each "://" first, so this takes milliseconds.
    line = "a" * 1_000_000 + " https://u:tok@host/simple"
    assert redact_credentials(line) == "a" * 1_000_000 + " https://****@host/simple"
