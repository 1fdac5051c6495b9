"""URL credentials are masked wherever a build shows or records a URL."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flash.build.errors import (
    BuildError,
    mask_config_urls,
    mask_uv_urls,
    masking_indexes,
    redact,
    redact_credentials,
)

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
        "cause: Failed to fetch: http://127.0.0.1:28311/****/six/\n"
        "cause: HTTP status server error (500) for url (http://127.0.0.1:28311/****/six/).\n"
        "`https://IDX.example:443/****`, "
        "https://****@idx.example/**** https://pypi.org/simple/six/ https://other.example/a/b"
    )
    # Outside the build, only userinfo is masked, as ever.
    assert BuildError(uv_says).message == redact_credentials(uv_says)
    assert "SECRET_PATHTOKEN_7777" in redact(uv_says)


def test_an_index_host_is_masked_in_the_spelling_uv_prints() -> None:
    # uv writes an IDN host in punycode, an IP address in its usual form, without a
    # trailing dot, in lowercase; the port does not matter (masking more is the safe side).
    indexes = [
        "https://B\u00fccher.invalid/TOK_IDN/simple/",
        "http://127.1:8080/TOK_IP4/simple/",
        "http://[0:0::1]/TOK_IP6/simple/",
        "https://dots.example./TOK_DOT/simple/",
    ]
    uv_says = (
        "https://xn--bcher-kva.invalid/TOK_IDN/simple/six/ "
        "http://127.0.0.1:8080/TOK_IP4/simple/six/ http://[::1]/TOK_IP6/simple/six/ "
        "https://DOTS.example/TOK_DOT/simple/six/ http://127.0.0.1:9/TOK_IP4/files/six.whl"
    )
    with masking_indexes(indexes):
        assert BuildError(uv_says).message == (
            "https://xn--bcher-kva.invalid/****/six/ http://127.0.0.1:8080/****/six/ "
            "http://[::1]/****/six/ https://DOTS.example/****/six/ http://127.0.0.1:9/****"
        )


def test_a_url_under_an_index_keeps_what_follows_the_index() -> None:
    # The package uv was fetching stays readable; other URLs on the host are cut after it.
    with masking_indexes(["https://download.pytorch.org/whl/cu121"]):
        message = BuildError(
            "Failed to fetch: `https://download.pytorch.org/whl/cu121/torch/` "
            "(https://download.pytorch.org/whl/cu121). See https://download.pytorch.org/whl/"
            "cu118/torch/ and https://download.pytorch.org/whl/cu1210/x"
        ).message
    assert message == (
        "Failed to fetch: `https://download.pytorch.org/****/torch/` "
        "(https://download.pytorch.org/****). See https://download.pytorch.org/**** "
        "and https://download.pytorch.org/****"
    )


def test_a_token_with_characters_that_end_a_url_is_masked_whole() -> None:
    token = "T(O)K'E\"N`X"
    index = f"https://h.example/{token}/simple/"
    uv_says = (
        f"`{index}six/` ({index}six/) {index}, https://h.example/{token}/files/six.whl "
        f"and the path alone: /{token}/simple/"
    )
    with masking_indexes([index]):
        message = BuildError(uv_says).message
    assert message == (
        "`https://h.example/****/six/` (https://h.example/****/six/) https://h.example/****/, "
        "https://h.example/**** and the path alone: /****"
    )


def test_every_url_with_a_path_in_a_file_the_archive_holds_is_cut_after_its_host() -> None:
    text = (
        "--extra-index-url \\\n    https://dl.example/TOK1/simple\r\n"
        "--extra-index https://dl.example/TOK2/simple\n"
        "pkg @ https://dl.example/TOK3/pkg.whl ; python_version > '3'\n"
        'url = "https://u:p\\"w@dl.example/TO\\"K4/simple"\n'
        "extra-index-url=['https://dl.example/TOK5(x)/simple']\n"
        "index_url = https://dl.example?token=TOK6\n"
        "Home = 'https://example.com' https://example.com/ mailto:team@example.com\n"
    )
    assert mask_config_urls(text) == (
        "--extra-index-url \\\n    https://dl.example/****\r\n"
        "--extra-index https://dl.example/****\n"
        "pkg @ https://dl.example/**** ; python_version > '3'\n"
        'url = "https://****@dl.example/****"\n'
        "extra-index-url=['https://dl.example/****']\n"
        "index_url = https://dl.example/****\n"
        "Home = 'https://example.com' https://example.com/ mailto:team@example.com\n"
    )


@pytest.mark.parametrize(
    "line",
    [
        "a://" * 250_000,
        "://" * 333_333,
        "https://" + "h:" * 500_000,
        "https://[" + ":" * 1_000_000,
        ("https://h.example/" + "a" * 999 + "b ") * 980,
        "https://h.example/TOK/simple/" * 34_000,
        "https://h.example/" + '\\"' * 500_000,
        ("a" * 1000 + "://(") * 996,
    ],
    ids=range(8),
)
def test_a_megabyte_adversarial_line_is_masked_at_once(line: str) -> None:
    # Each scan goes forward from a "://" it finds: no retry over what it has read.
    indexes = ["https://h.example/TOK/simple", "https://h.example/" + "a" * 1000 + "/(x)"]
    started = time.perf_counter()
    with masking_indexes(indexes):
        masked = redact(line)
        mask_uv_urls(line)
    mask_config_urls(line)
    assert time.perf_counter() - started < 10  # a quadratic scan takes minutes
    assert "TOK/" not in masked


def test_uv_urls_off_the_index_hosts_are_cut_keeping_a_package_file_name() -> None:
    said = (
        "error: Failed to fetch: `https://cdn.example/SIGNED/six-1.16.0-py3-none-any.whl?X=SIG`\n"
        "  cause: for url (https://u:pw@cdn.example/SIGNED/six-1.16.0-py3-none-any.whl#sha256=ab)\n"
        "  see https://other.example/TOK/page. Or https://other.example/ and file:///w/x.whl\n"
        "  Failed to fetch: https://dl.example/TOK/simple/six/\n"
    )
    with masking_indexes(["https://dl.example/TOK/simple"]):
        cut = mask_uv_urls(said)
        assert cut == (
            "error: Failed to fetch: `https://cdn.example/****/six-1.16.0-py3-none-any.whl`\n"
            "  cause: for url (https://****@cdn.example/****/six-1.16.0-py3-none-any.whl)\n"
            "  see https://other.example/****. Or https://other.example/ and file:///w/x.whl\n"
            "  Failed to fetch: https://dl.example/TOK/simple/six/\n"  # left to redact
        )
        assert redact(cut).endswith("Failed to fetch: https://dl.example/****/six/\n")
