"""``flash.connect``: what it takes, and what it leaves behind."""

from __future__ import annotations

import pytest

import flash
from flash.runtime.remote import get_invoker, set_invoker
from flash.runtime.signing import generate_key


@pytest.mark.parametrize(
    ("key", "error", "words"),
    [
        (b"", ValueError, "signing_key must be the app's 32-byte key"),
        (b"k" * 31, ValueError, "got 31 bytes"),
        ("ab" * 32, TypeError, r"signing_key must be bytes, not str \(bytes.fromhex of"),
    ],
)
def test_a_key_that_could_sign_nothing_is_refused_at_once(
    key: object, error: type[Exception], words: str
) -> None:
    # Not accepted and then failing every call: refused here, and nothing is connected.
    before = get_invoker()
    with pytest.raises(error, match=words):
        flash.connect("http://127.0.0.1:9", signing_key=key)  # type: ignore[arg-type]
    assert get_invoker() is before


def test_the_apps_key_is_taken() -> None:
    key = generate_key()
    previous = get_invoker()
    try:
        assert flash.connect("http://127.0.0.1:9", signing_key=key).signing_key == key
        flash.disconnect()
        assert get_invoker() is None
    finally:
        set_invoker(previous)
