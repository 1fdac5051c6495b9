"""The one error type every build stage raises for a user's mistake."""

from __future__ import annotations

import re

# The userinfo of a URL (`https://user:token@host`): a password or a token on its own. Up
# to the last `@` before the host ends (pip, uv and urllib take `https://u:p@ss@host` as
# password `p@ss`), and never across a quote: the next URL on a line is not this one's.
# Found from the `://` on: a regex that starts at the scheme retries at every letter of a
# long word, which takes minutes on a megabyte line.
_USERINFO = re.compile(r"://[^\s/?#\"']+@")
_SCHEME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-")


def redact_credentials(text: str) -> str:
    """``text`` with every URL's userinfo replaced by ``****``: for what is shown (every
    BuildError's message) and recorded (the manifest). uv still gets the real URLs.

    A URL's scheme is a letter, then letters, digits, ``+``, ``.`` or ``-`` (RFC 3986)."""
    pieces = []
    done = 0
    for found in _USERINFO.finditer(text):
        colon = found.start()
        start = colon
        while start > done and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        while start < colon and not text[start].isalpha():  # a scheme starts with a letter
            start += 1
        if start < colon:
            pieces.append(text[done:colon])
            pieces.append("://****@")
            done = found.end()
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


class BuildError(Exception):
    """A problem in the user's project or options, reported without a traceback.

    ``path`` is relative to the project root; ``line`` and ``col`` are 1-based. URL
    credentials in the message (a requirement, an index) are masked, whoever raises it.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        message = redact_credentials(message)
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.col = col

    @property
    def location(self) -> str:
        if self.path is None:
            return ""
        parts = [self.path]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message
