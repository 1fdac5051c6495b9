"""The one error type every build stage raises for a user's mistake, the warnings a build
goes on after, and the masking of secrets in what a build shows and writes."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

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
# Such a URL is masked where it shows, and so is any other URL on the same host: uv prints
# the pages it derives from an index (`.../simple/six/`), without userinfo, with its own
# trailing slash and escaping, and with the host as it normalises it (IDN in punycode, IP
# addresses in their usual form). A URL ends at whitespace, a quote, a backtick, an angle
# bracket or a parenthesis (uv wraps URLs in backticks and parentheses); found from its
# `://` (see redact_credentials), its authority first: the rest is read on a masked host only.
_AUTHORITY = re.compile(r"://([^\s/?#\"'`<>()]*)")
_REST = re.compile(r"[^\s\"'`<>()]*")
_URL_END = re.compile(r"[\s\"'`<>()]")  # the characters that end a URL as shown
_SENTENCE_END = ".,:;!?"  # a sentence's punctuation after a URL, not the URL's


# What mask_index_urls masks: for each package source URL with a path, a query or a fragment
# (where a token can be), its normalised host and its rest as written (path, query, fragment).
IndexMasks = frozenset[tuple[str, str]]
_MASKED: ContextVar[IndexMasks] = ContextVar("flash_masked_indexes", default=frozenset())


@lru_cache(maxsize=1024)  # a message names few hosts, many times
def _normal_host(host: str) -> str:
    """``host`` as uv writes it, so that any spelling of a host is one key: lowercase,
    without a trailing dot, IDN labels in punycode, an IPv4 address as a dotted quad
    (``127.1`` and ``0x7f000001`` are ``127.0.0.1``), an IPv6 one compressed."""
    host = host.lower()
    if host.startswith("[") and host.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return host
    host = host.rstrip(".")
    if not host or len(host) > 253:  # no host name: nothing more to make of it
        return host
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except (OSError, ValueError):
        pass
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host


def _host_key(authority: str) -> str:
    """The normalised host of a URL's authority, without userinfo or port: a host is
    masked on every port (masking more is the safe side)."""
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("[") and "]" in hostport:
        return _normal_host(hostport[: hostport.index("]") + 1])
    return _normal_host(hostport.partition(":")[0])


def index_hosts(urls: Iterable[str]) -> IndexMasks:
    """What :func:`mask_index_urls` masks for ``urls``: those with a path, a query or a
    fragment (where a token can be). Local paths and ``file:`` URLs have no host, and hold
    no token."""
    rests = set()
    for url in urls:
        found = _AUTHORITY.search(url)
        if found is None or _scheme_start(url, found.start(), 0) is None:
            continue
        if not found[1].rpartition("@")[2]:
            continue
        rest = url[found.end() :].split(maxsplit=1)
        if rest and rest[0] != "/":
            rests.add((_host_key(found[1]), rest[0]))
    return frozenset(rests)


def _after_prefix(text: str, at: int, rest: str) -> int | None:
    """Where a URL's rest that starts at ``at`` goes on after the configured ``rest``, when
    it starts with it (whatever characters it holds) up to a path, query or URL end."""
    if not text.startswith(rest, at):
        return None
    end = at + len(rest)
    if rest.endswith("/") or end == len(text) or text[end] in "/?#" + _SENTENCE_END:
        return end
    return end if _URL_END.match(text, end) else None


def _common_length(text: str, at: int, rest: str) -> int:
    """How many characters of ``rest`` the text at ``at`` starts with."""
    length = 0
    for char, other in zip(rest, text[at : at + len(rest)], strict=False):
        if char != other:
            break
        length += 1
    return length


def mask_index_urls(text: str, masks: IndexMasks) -> str:
    """``text`` with the URLs on the hosts of ``masks`` masked, their userinfo too: a URL
    that starts with a configured one keeps what follows it
    (``https://dl.example/****/six/``), any other is cut after its host
    (``https://dl.example/****``). Where a configured URL's rest holds a character that ends
    a URL, its text is masked wherever it is."""
    if not masks:
        return text
    rests: dict[str, list[str]] = {}
    for host, rest in sorted(masks, key=lambda item: -len(item[1])):
        rests.setdefault(host, []).append(rest)
    pieces = []
    done = pos = 0
    while (found := _AUTHORITY.search(text, pos)) is not None:
        pos = found.start() + 1  # the next URL may start where this authority ends
        start = _scheme_start(text, found.start(), done)
        if start is None:
            continue
        authority = found[1]
        host_rests = rests.get(_host_key(authority))
        if host_rests is None:
            continue
        _, at, hostport = authority.rpartition("@")
        path = found.end()
        for rest in host_rests:
            after = _after_prefix(text, path, rest)
            if after is not None:  # the configured URL, and what uv derived from it
                shown = "/****/" if rest.endswith("/") else "/****"
                pieces += [text[done : found.start()], f"://{'****@' if at else ''}{hostport}"]
                pieces.append(shown)
                done = pos = after
                break
        else:
            # Over as much of a configured rest as is there too: a token may hold a
            # character that ends a URL.
            end = max(path + _common_length(text, path, rest) for rest in host_rests)
            end = _REST.match(text, max(end, path)).end()  # type: ignore[union-attr]
            shown_rest = text[path:end].rstrip(_SENTENCE_END)
            if shown_rest in ("", "/"):
                continue
            pieces += [text[done : found.start()], f"://{'****@' if at else ''}{hostport}/****"]
            done = pos = path + len(shown_rest)
    if pieces:
        pieces.append(text[done:])
        text = "".join(pieces)
    for rest in {rest for _, rest in masks if _URL_END.search(rest)}:
        text = text.replace(rest, rest[0] + "****")
    return text


# A URL in a file the archive holds, as mask_config_urls finds it: up to whitespace, a quote,
# a backtick or an angle bracket; a backslash escape (TOML's, JSON's) does not end it.
_CONFIG_AUTHORITY = re.compile(r"://((?:[^\s/?#\"'`<>\\]|\\\S)*)")
_CONFIG_REST = re.compile(r"[^\s\"'`<>\\]*(?:\\\S[^\s\"'`<>\\]*)*")


def mask_config_urls(text: str) -> str:
    """``text`` (a file that may name package indexes, as the archive holds it) with every
    URL that has a path, a query or a fragment cut after its host
    (``https://dl.example/****``), whatever the syntax around it, and every userinfo masked:
    dependencies are vendored, so no worker reads these URLs."""
    return _cut_urls(text, _CONFIG_AUTHORITY, _CONFIG_REST, lambda host, rest: "/****")


# The name of a distribution file (a wheel, an sdist, a wheel's metadata) at a URL's end:
# no token has this shape, and it tells which file uv failed to fetch.
_DIST_FILE = re.compile(r"[A-Za-z0-9_.+!-]+\.(?:whl|tar\.gz|zip)(?:\.metadata)?")


def mask_uv_urls(text: str) -> str:
    """``text`` (what uv says) with every URL that is on no host of the package indexes of
    the build running cut after its host, but for a distribution file's name
    (``https://cdn.example/****/six-1.0-py3-none-any.whl``): an index can send uv to files
    on other hosts (a CDN's signed links), whose paths and queries hold tokens too. The
    URLs on the indexes' hosts are left to :func:`redact`, which keeps what follows an
    index's own URL."""
    masked_hosts = {host for host, _ in _MASKED.get()}

    def shown(host: str, rest: str) -> str | None:
        if not host or host in masked_hosts:  # a local file's URL holds no token
            return None
        url_rest = rest.rstrip(_SENTENCE_END)
        name = re.split(r"[?#]", url_rest, maxsplit=1)[0].rpartition("/")[2]
        cut = "/****/" + name if _DIST_FILE.fullmatch(name) else "/****"
        return cut + rest[len(url_rest) :]  # a sentence's full stop is not the URL's

    return _cut_urls(text, _AUTHORITY, _REST, shown)


def _cut_urls(
    text: str,
    authority: re.Pattern[str],
    rest: re.Pattern[str],
    shown: Callable[[str, str], str | None],
) -> str:
    """``text`` with each URL found by ``authority`` (from its ``://``) and ``rest`` that has
    a path, a query or a fragment cut after its host, followed by what ``shown`` (given its
    normalised host and its rest) says, or kept when that is None; every userinfo masked."""
    pieces = []
    done = pos = 0
    while (found := authority.search(text, pos)) is not None:
        pos = found.start() + 1
        if _scheme_start(text, found.start(), done) is None:
            continue
        end = rest.match(text, found.end()).end()  # type: ignore[union-attr]
        _, at, hostport = found[1].rpartition("@")
        if text[found.end() : end] in ("", "/"):
            continue
        kept = shown(_host_key(found[1]), text[found.end() : end])
        if kept is None:
            pos = end  # a "://" in its rest is this URL's: read once, as a cut one is
            continue
        pieces += [text[done : found.start()], f"://{'****@' if at else ''}{hostport}{kept}"]
        done = pos = end
    if not pieces:
        return redact_credentials(text)
    pieces.append(text[done:])
    return redact_credentials("".join(pieces))


@contextmanager
def masking_indexes(urls: Iterable[str]) -> Iterator[Callable[[Iterable[str]], None]]:
    """While the block runs, :func:`redact` (so every BuildError's message) masks the URLs
    on the hosts of ``urls`` too (see :func:`mask_index_urls`); it yields a function that
    adds more URLs, masked from then on to the end of the block."""
    token = _MASKED.set(_MASKED.get() | index_hosts(urls))

    def add(more: Iterable[str]) -> None:
        _MASKED.set(_MASKED.get() | index_hosts(more))

    try:
        yield add
    finally:
        _MASKED.reset(token)


def redact(text: str) -> str:
    """``text`` as a build may show or write it: every URL's userinfo masked, and the
    URLs on the hosts of the package indexes of the build running (see
    :func:`masking_indexes`) masked as :func:`mask_index_urls` masks them."""
    return redact_credentials(mask_index_urls(text, _MASKED.get()))


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
