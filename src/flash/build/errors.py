"""The one error type every build stage raises for a user's mistake, the warnings a build
goes on after, and the masking of secrets in what a build shows and writes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

# The userinfo of a URL (`https://user:token@host`): a password or a token on its own. Up
# to the last `@` before the host ends (pip, uv and urllib take `https://u:p@ss@host` as
# password `p@ss`), and never across a quote: the next URL on a line is not this one's.
# Found from the `://` on: a regex that starts at the scheme retries at every letter of a
# long word, which takes minutes on a megabyte line.
_USERINFO = re.compile(r"://[^\s/?#\"']+@")
_SCHEME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-")


def _scheme_start(text: str, colon: int, floor: int) -> int | None:
    """Where the scheme of the URL whose ``://`` is at ``colon`` starts (not before
    ``floor``), or None when no scheme is there: a letter, then letters, digits, ``+``,
    ``.`` or ``-`` (RFC 3986)."""
    start = colon
    while start > floor and text[start - 1] in _SCHEME_CHARS:
        start -= 1
    while start < colon and not text[start].isalpha():  # a scheme starts with a letter
        start += 1
    return start if start < colon else None


def redact_credentials(text: str) -> str:
    """``text`` with every URL's userinfo replaced by ``****``: for what is shown (every
    BuildError's message) and recorded (the manifest). uv still gets the real URLs."""
    pieces = []
    done = 0
    for found in _USERINFO.finditer(text):
        colon = found.start()
        if _scheme_start(text, colon, done) is not None:
            pieces.append(text[done:colon])
            pieces.append("://****@")
            done = found.end()
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


# A package index or find-links URL can hold its token where no userinfo masking finds it:
# in the path (`https://dl.example/TOKEN/org/repo/simple/`) or the query (`?token=...`).
# Such a URL is masked after its host, and so is any URL on the same host: uv prints the
# pages it derives from an index (`.../simple/six/`), without userinfo, with its own
# trailing slash and escaping. A URL ends at whitespace, a quote, a backtick, an angle
# bracket or a parenthesis (uv wraps URLs in backticks and parentheses).
_URL_REST = re.compile(r"://([^\s/?#\"'`<>()]*)([^\s\"'`<>()]*)")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HostKey = tuple[str, int | None]
_MASKED_HOSTS: ContextVar[frozenset[_HostKey]] = ContextVar(
    "flash_masked_index_hosts", default=frozenset()
)


def _host_key(scheme: str, authority: str) -> _HostKey:
    """(lowercase host, port or the scheme's default) of a URL's authority."""
    hostport = authority.rpartition("@")[2]
    host, colon, port = hostport.rpartition(":")
    if not colon or not port.isdigit():  # no port; an IPv6 address without one ends in "]"
        host = host if colon and not port else hostport
        number = None
    else:
        number = int(port)
    if number is None:
        number = _DEFAULT_PORTS.get(scheme.lower().rpartition("+")[2])
    return host.lower(), number


def index_hosts(urls: Iterable[str]) -> frozenset[_HostKey]:
    """The hosts of ``urls`` whose URLs :func:`mask_index_urls` masks: those of the URLs
    with a path, a query or a fragment (where a token can be). Local paths and ``file:``
    URLs have no host, and hold no token."""
    hosts = set()
    for url in urls:
        found = _URL_REST.search(url)
        if found is None:
            continue
        scheme_start = _scheme_start(url, found.start(), 0)
        if scheme_start is None or not found[1].rpartition("@")[2]:
            continue
        if found[2] not in ("", "/"):
            hosts.add(_host_key(url[scheme_start : found.start()], found[1]))
    return frozenset(hosts)


def mask_index_urls(text: str, hosts: frozenset[_HostKey]) -> str:
    """``text`` with every URL on one of ``hosts`` cut after its host
    (``https://dl.example/****``), its userinfo masked as :func:`redact_credentials` does."""
    if not hosts:
        return text
    pieces = []
    done = 0
    for found in _URL_REST.finditer(text):
        start = _scheme_start(text, found.start(), done)
        if start is None:
            continue
        authority, rest = found[1], found[2]
        kept = len(rest) - len(rest.rstrip(".,:;!?"))  # a sentence's punctuation, not the URL's
        if rest[: len(rest) - kept] in ("", "/"):
            continue
        if _host_key(text[start : found.start()], authority) not in hosts:
            continue
        _, at, hostport = authority.rpartition("@")
        pieces.append(text[done : found.start()])
        pieces.append(f"://{'****@' if at else ''}{hostport}/****")
        done = found.end() - kept
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


@contextmanager
def masking_indexes(urls: Iterable[str]) -> Iterator[Callable[[Iterable[str]], None]]:
    """While the block runs, :func:`redact` (so every BuildError's message) masks the URLs
    on the hosts of ``urls`` too (see :func:`mask_index_urls`); it yields a function that
    adds more URLs, masked from then on to the end of the block."""
    token = _MASKED_HOSTS.set(_MASKED_HOSTS.get() | index_hosts(urls))

    def add(more: Iterable[str]) -> None:
        _MASKED_HOSTS.set(_MASKED_HOSTS.get() | index_hosts(more))

    try:
        yield add
    finally:
        _MASKED_HOSTS.reset(token)


def redact(text: str) -> str:
    """``text`` as a build may show or write it: every URL's userinfo masked, and the
    URLs on the hosts of the package indexes of the build running (see
    :func:`masking_indexes`) cut after their host."""
    return redact_credentials(mask_index_urls(text, _MASKED_HOSTS.get()))


def _location(path: str | None, line: int | None, col: int | None) -> str:
    if path is None:
        return ""
    parts = [path]
    if line is not None:
        parts.append(str(line))
        if col is not None:
            parts.append(str(col))
    return ":".join(parts)


class BuildError(Exception):
    """A problem in the user's project or options, reported without a traceback.

    ``path`` is relative to the project root; ``line`` and ``col`` are 1-based. Secrets
    in the message (URL credentials, package index URLs: see :func:`redact`) are masked,
    whoever raises it.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.col = col

    @property
    def location(self) -> str:
        return _location(self.path, self.line, self.col)

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


@dataclass(frozen=True)
class BuildWarning:
    """A problem the build goes on after, located as a BuildError is; shown as
    ``path:line:col: message``."""

    message: str
    path: str | None = None
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        location = _location(self.path, self.line, self.col)
        return f"{location}: {self.message}" if location else self.message
