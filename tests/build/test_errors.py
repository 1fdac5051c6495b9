"""URL credentials are masked wherever a build shows or records a URL."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from flash.build.errors import BuildError, masking_indexes, redact, redact_credentials

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


def test_index_urls_are_masked_after_their_host_while_a_build_names_them() -> None:
    indexes = [
        "http://127.0.0.1:28311/SECRET_PATHTOKEN_7777/simple/",  # Cloudsmith-style
        "https://deploy:tok@idx.example/simple?token=QUERYTOKEN",
        "https://pypi.org/",  # nothing after the host: nothing to mask
        "/local/wheels",  # no host, no token
    ]
    uv_says = (
        "cause: Failed to fetch: http://127.0.0.1:28311/SECRET_PATHTOKEN_7777/simple/six/\n"
        "cause: HTTP status server error (500) for url "
        "(http://127.0.0.1:28311/SECRET_PATHTOKEN_7777/simple/six/).\n"
        "`https://IDX.example:443/simple/six/?token=QUERYTOKEN`, "
        "https://u:p@idx.example/x https://pypi.org/simple/six/ https://other.example/a/b"
    )
    with masking_indexes(indexes[:2]) as mask_too:
        mask_too(indexes[2:])
        error = BuildError(uv_says)
        assert redact(uv_says) == error.message
    assert error.message == (
        "cause: Failed to fetch: http://127.0.0.1:28311/****\n"
        "cause: HTTP status server error (500) for url (http://127.0.0.1:28311/****).\n"
        "`https://IDX.example:443/****`, "
        "https://****@idx.example/**** https://pypi.org/simple/six/ https://other.example/a/b"
    )
    # Outside the build, only userinfo is masked, as ever.
    assert BuildError(uv_says).message == redact_credentials(uv_says)
    assert "SECRET_PATHTOKEN_7777" in redact(uv_says)
