"""Signed pickles: only callers holding the app's key can make a worker unpickle anything.

A pickled call carries a signature block under ``input["signature"]``::

    {"v": 4, "alg": "HMAC-SHA256", "endpoint": ..., "function": ..., "digest": ...,
     "deadline": <epoch seconds>, "nonce": <128-bit hex>,
     "caller": {"python": "3.11", "cloudpickle": "3.1.3"}, "mac": ...}

``digest`` is SHA-256 over the fields that carry pickles (:data:`SIGNED_FIELDS`, see
:func:`payload_digest`); ``mac`` is HMAC-SHA256 over everything else in the block. The worker
checks the block and its MAC, decodes the base64 of big pickles (decoding runs no code), checks
the digest, and only then unpickles anything; results come back with a MAC bound to the
request's nonce.

Standard library only: this module runs inside every worker.
"""

from __future__ import annotations

import array
import binascii
import hashlib
import heapq
import hmac
import json
import math
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from flash.runtime.context import seconds as _finite_seconds
from flash.runtime.protocol import MAX_JSON_DEPTH

__all__ = [
    "ALGORITHM",
    "ALLOW_UNSIGNED_ENV_VAR",
    "BAD_MAC",
    "BIG_TEXT",
    "CLOCK_SKEW_S",
    "DEFAULT_TTL_S",
    "EXPIRED",
    "KEY_BYTES",
    "KEY_ENV_VAR",
    "MALFORMED",
    "MAX_TTL_S",
    "MISSING",
    "REASONS",
    "REPLAYED",
    "REPLAY_CACHE_FULL",
    "SIGNATURE_VERSION",
    "SIGNED_FIELDS",
    "TAMPERED",
    "UNSUPPORTED",
    "WRONG_TARGET",
    "Digests",
    "ReplayCache",
    "SignatureError",
    "SigningKeyError",
    "UnsignablePayload",
    "check_versions",
    "encode_and_hash",
    "generate_key",
    "key_from_text",
    "key_source",
    "key_to_text",
    "load_signing_key",
    "local_versions",
    "payload_digest",
    "remember_key_source",
    "sign_request",
    "sign_result",
    "signed_nonce",
    "unsigned_allowed",
    "verify_request",
    "verify_result",
]

# 3: a big pickle is hashed as its decoded bytes (see payload_digest).
SIGNATURE_VERSION = 4
ALGORITHM = "HMAC-SHA256"
KEY_ENV_VAR = "FLASH_SIGNING_KEY"
ALLOW_UNSIGNED_ENV_VAR = "FLASH_ALLOW_UNSIGNED"
KEY_BYTES = 32
# Clocks of caller and worker disagree a little; a deadline counts as passed only this much later.
CLOCK_SKEW_S = 30.0
DEFAULT_TTL_S = 15 * 60.0
# A deadline further ahead than this is refused: every accepted nonce is remembered until its
# deadline, so a far deadline would pin memory for that long.
MAX_TTL_S = 24 * 3600.0
# The request fields whose content decides what gets unpickled and run (a typed JSON call's
# are "kwargs", "init" and "method"; it is signed so that a failure can be signed back).
SIGNED_FIELDS = (
    "args",
    "kwargs",
    "method_args",
    "method_kwargs",
    "method_name",
    "execution_type",
    "function_name",
    "items",
    "init",
    "method",
)

_SIGNED_SORTED = tuple(sorted(SIGNED_FIELDS))  # canonical order
_PREFIXES = {name: f'"{name}":' for name in SIGNED_FIELDS}

# SignatureError.reason values.
MISSING = "missing"
MALFORMED = "malformed"
UNSUPPORTED = "unsupported"
WRONG_TARGET = "wrong_target"
TAMPERED = "tampered"
BAD_MAC = "bad_mac"
EXPIRED = "expired"
REPLAYED = "replayed"
REPLAY_CACHE_FULL = "replay_cache_full"
REASONS = frozenset(
    {
        MISSING,
        MALFORMED,
        UNSUPPORTED,
        WRONG_TARGET,
        TAMPERED,
        BAD_MAC,
        EXPIRED,
        REPLAYED,
        REPLAY_CACHE_FULL,
    }
)

_LOCAL_VERSIONS: dict[str, str] | None = None
_VERSION_TEXT = str(SIGNATURE_VERSION)
# Constant heads of the MAC messages: domain, version and algorithm.
_REQUEST_HEAD = f"flash-request\n{_VERSION_TEXT}\n{ALGORITHM}\n"
_RESULT_HEAD = f"flash-result\n{_VERSION_TEXT}\n{ALGORITHM}\n"
_MAX_NAME = 1024  # endpoint and function names; anything longer is not ours
_MAX_CALLER_ITEMS = 8
_MAX_CALLER_TEXT = 64
# Deeper than any job a worker takes: its JSON arguments, under their wrapper.
_MAX_FIELD_DEPTH = MAX_JSON_DEPTH + 16
# String values at least this long are hashed on their own; the canonical text holds only
# their digest (see payload_digest).
BIG_TEXT = 1 << 16
# Decoded bytes a verifier keeps for unpickling, per payload.
_DECODED_BUDGET = 64 << 20
# The replay cache groups nonces by expiry in buckets this many seconds wide.
_BUCKET_S = 5


class SignatureError(Exception):
    """A signature that does not let the request (or result) through; ``reason`` is in REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class UnsignablePayload(ValueError):
    """The fields hold a value no JSON job can carry (an integer too long to write, say)."""


class SigningKeyError(ValueError):
    """``FLASH_SIGNING_KEY`` (or another key text) is not a valid key. Never holds the key."""


def generate_key() -> bytes:
    """A fresh random key."""
    return secrets.token_bytes(KEY_BYTES)


def key_to_text(key: bytes) -> str:
    """The text form of a key: lowercase hex."""
    if type(key) is not bytes or len(key) != KEY_BYTES:
        _check_key(key)
    return key.hex()


def key_from_text(text: str, *, source: str = KEY_ENV_VAR) -> bytes:
    """Parse the hex text form; the error names ``source`` but never echoes the text."""
    cleaned = text.strip()
    if len(cleaned) != 2 * KEY_BYTES:
        raise SigningKeyError(
            f"{source} must be {2 * KEY_BYTES} hexadecimal characters ({KEY_BYTES} bytes), "
            f"got {len(cleaned)} characters"
        )
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise SigningKeyError(
            f"{source} must be {2 * KEY_BYTES} hexadecimal characters ({KEY_BYTES} bytes), "
            "and it holds other characters"
        ) from None


def unsigned_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``$FLASH_ALLOW_UNSIGNED`` is ``1``: workers take, and clients send and accept,
    unsigned pickles (tests and trusted local experiments only)."""
    env = os.environ if environ is None else environ
    return env.get(ALLOW_UNSIGNED_ENV_VAR) == "1"


# Where this process got each key it signs with, for messages (never the key): a call
# refused for its signature names the source, the one for the user to fix.
_KEY_SOURCES: dict[bytes, str] = {}
_MAX_KEY_SOURCES = 16


def remember_key_source(key: bytes, source: str) -> bytes:
    """Record that ``key`` came from ``source`` (a key file's path, ``$FLASH_SIGNING_KEY``)."""
    if len(_KEY_SOURCES) >= _MAX_KEY_SOURCES:
        _KEY_SOURCES.clear()
    _KEY_SOURCES[key] = source
    return key


def key_source(key: bytes) -> str:
    """Where this process got ``key``: as remembered; else ``$FLASH_SIGNING_KEY`` if it
    holds it (a worker's key); else it was given in code, to ``flash.connect``."""
    found = _KEY_SOURCES.get(key)
    if found is not None:
        return found
    try:
        if load_signing_key() == key:
            return f"${KEY_ENV_VAR}"
    except SigningKeyError:
        pass
    return "flash.connect(signing_key=...)"


def load_signing_key(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The key from ``$FLASH_SIGNING_KEY``; None when unset or empty."""
    env = os.environ if environ is None else environ
    text = env.get(KEY_ENV_VAR)
    if text is None or not text.strip():
        return None
    return key_from_text(text)


def local_versions() -> dict[str, str]:
    """This interpreter's Python minor version and cloudpickle version, as sent by callers."""
    global _LOCAL_VERSIONS
    if _LOCAL_VERSIONS is None:
        _LOCAL_VERSIONS = {"python": _python_version(), "cloudpickle": _cloudpickle_version()}
    return dict(_LOCAL_VERSIONS)


def payload_digest(fields: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the :data:`SIGNED_FIELDS` present in ``fields`` (None counts as absent).

    The canonical form is compact sorted-key JSON, except for strings: one holding no ``"``,
    ``\\`` or non-ASCII character is written verbatim between quotes (base64 text is hashed
    as it is, never re-encoded); others get JSON's ASCII escapes, which always contain a
    backslash. A string of :data:`BIG_TEXT` characters or more (a big pickle) is written as
    ``#`` and the SHA-256 of its decoded bytes when it is canonical standard base64 (the one
    encoding of those bytes), else as ``$`` and the SHA-256 of its UTF-8 text. A list of 32
    floats or more, none NaN, is written as ``%`` and the SHA-256 of the floats as
    little-endian doubles. No JSON value starts with ``#``, ``$`` or ``%``, so the form stays
    unambiguous; a big pickle is hashed once, as bytes, where it is decoded anyway, and a
    long list of floats without writing each out.

    Raises ValueError for values no JSON job can hold (or nested absurdly deep).
    """
    return _payload_digest(fields, _hashed_big)


def _payload_digest(fields: Mapping[str, Any], big: Callable[[str], str]) -> str:
    """payload_digest, with ``big`` writing the canonical text of big strings."""
    parts = []
    get = fields.get
    for name in _SIGNED_SORTED:
        value = get(name)
        if value is None:
            continue
        kind = type(value)
        # The usual shapes are written in place, saving a call on the hot path: a list of
        # short plain strings (args), a short plain string (function_name), no keyword
        # arguments.
        if kind is list:
            text = _strings_text(value)
            parts.append(_PREFIXES[name] + (_canonical(value, 1, big) if text is None else text))
        elif (
            kind is str
            and len(value) < BIG_TEXT
            and value.isascii()
            and '"' not in value
            and "\\" not in value
        ):
            parts.append(f'{_PREFIXES[name]}"{value}"')
        elif kind is dict and not value:
            parts.append(_PREFIXES[name] + "{}")
        else:
            parts.append(_PREFIXES[name] + _canonical(value, 1, big))
    return hashlib.sha256(("{" + ",".join(parts) + "}").encode("ascii")).hexdigest()


# The SHA-256 (hex) of big pickles' bytes, kept by the side that encoded them so that signing
# never decodes its own output: ``id(text) -> (text, digest)``. The text is kept with its
# digest, so that its id cannot pass to another string while the entry lives.
Digests = dict[int, tuple[str, str]]


def _big_writer(
    *,
    digests: Digests | None = None,
    decoded: dict[int, bytes] | None = None,
) -> Callable[[str], str]:
    """What writes the canonical text of big strings: the digest a signer kept for one
    (``digests``, used once, then let go), else the digest of what it decodes to, whose bytes
    go into ``decoded`` up to :data:`_DECODED_BUDGET` (past it they are decoded again when
    unpickled: a big map job must not hold all its items' bytes at once). Verifiers pass no
    ``digests``: they hash what they decode."""
    if not digests and decoded is None:
        return _hashed_big
    room = _DECODED_BUDGET

    def big(text: str) -> str:
        nonlocal room
        kept = digests.pop(id(text), None) if digests else None
        if kept is not None:  # the entry holds its text, so the id is that text's
            return "#" + kept[1]
        if decoded is None or room <= 0:
            return _big_text(text, None)
        canonical = _big_text(text, decoded)
        room -= len(decoded.get(id(text), b""))
        return canonical

    return big


def _hashed_big(text: str) -> str:
    return _big_text(text, None)


class _BigText(Exception):
    """Raised by :func:`_no_big`: the fields hold a big string after all."""


def _no_big(text: str) -> str:
    # Verifiers hash small payloads (nearly all) without setting up a writer for big
    # strings, and set one up only when this is raised.
    raise _BigText


def _big_text(text: str, decoded: dict[int, bytes] | None) -> str:
    """The canonical text of a big string: the digest of its decoded bytes, or of its text."""
    found = _decode_and_hash(text)
    if found is None:
        return "$" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    raw, digest = found
    if decoded is not None:
        decoded[id(text)] = raw
    return "#" + digest


def encode_and_hash(raw: bytes) -> tuple[bytes, str]:
    """Standard base64 of ``raw`` and the SHA-256 (hex) of ``raw``.

    For big inputs both run at once: the helper thread encodes (base64 holds the GIL) while
    this thread hashes (hashlib lets go of it).
    """
    if len(raw) < _BESIDE_MIN:
        return binascii.b2a_base64(raw, newline=False), hashlib.sha256(raw).hexdigest()
    encoding = _HELPER.run(_encode, raw)
    digest = hashlib.sha256(raw).hexdigest()
    return encoding.result(), digest


def _encode(raw: bytes) -> bytes:
    return binascii.b2a_base64(raw, newline=False)


def _decode_and_hash(text: str) -> tuple[bytes, str] | None:
    """The bytes of standard base64 ``text`` (padded, canonical, no other characters) and
    their SHA-256 (hex); None when ``text`` is not such base64.

    A big text is decoded in two parts: the helper thread decodes the second, an eighth of
    the whole, while this thread hashes the first, which takes about as long.
    """
    if len(text) % 4 or not text.isascii():
        return None
    if len(text) < _BESIDE_MIN:
        raw = _base64_bytes(text)
        if raw is None or not _canonical_end(text, raw):
            return None
        return raw, hashlib.sha256(raw).hexdigest()
    cut = _head_length(len(text))
    if text[cut - 1] == "=":  # padding before the end: the whole is not canonical base64
        return None
    head = _base64_bytes(text[:cut])
    if head is None:
        return None
    decoding = _HELPER.run(_decode_tail, (text, cut))
    hasher = hashlib.sha256(head)
    tail = decoding.result()
    if tail is None or not _canonical_end(text, tail):
        return None
    hasher.update(tail)
    return head + tail, hasher.hexdigest()


def _decode_tail(text_and_cut: tuple[str, int]) -> bytes | None:
    text, cut = text_and_cut
    return _base64_bytes(text[cut:])


def _canonical_end(text: str, raw: bytes) -> bool:
    """Whether padded ``text`` sets no unused bits in its last group (``QQ==``, not ``QR==``,
    though both decode alike): only then is the text the one encoding of its bytes, so
    that hashing the bytes covers the text (a JSON argument is used as the text itself).
    ``raw`` ends with the decoded bytes of that group."""
    if not text.endswith("="):
        return True  # whole groups: each of 4 characters is the one encoding of its 3 bytes
    tail = raw[-(2 if text[-2] != "=" else 1) :]
    return binascii.b2a_base64(tail, newline=False) == text[-4:].encode("ascii")


def _head_length(length: int) -> int:
    """Where _decode_and_hash splits a text: whole 4-character groups, an eighth left over
    (base64 decodes about five times slower than SHA-256 hashes what it decodes, and the
    helper thread must wake first)."""
    return (length * 7 // 8) & ~3


def _base64_bytes(text: str) -> bytes | None:
    try:
        if _STRICT_BASE64:
            return binascii.a2b_base64(text, strict_mode=True)
        # Python 3.10: validate=True checks the alphabet; with the length checked first it
        # refuses what strict mode refuses, but for excess padding, which no encoder writes.
        import base64  # only here: 3.10 needs it

        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


_STRICT_BASE64 = sys.version_info >= (3, 11)
# Below this many bytes (or characters), handing base64 to the helper thread costs more
# than it saves.
_BESIDE_MIN = 1 << 18


class _Job:
    """``fn(arg)``, run by whichever thread claims it first: the helper thread, or the thread
    that asked, once its own share is done (:meth:`result`). On a busy machine the helper may
    not even have woken by then; waiting for it would cost more than doing the job."""

    __slots__ = ("arg", "claimed", "done", "error", "fn", "value")

    def __init__(self, fn: Callable[[Any], Any], arg: Any) -> None:
        self.fn = fn
        self.arg = arg
        self.value: Any = None
        self.error: BaseException | None = None
        self.claimed = threading.Lock()  # held by the thread that runs it
        self.done = threading.Lock()
        self.done.acquire()

    def claim(self) -> bool:
        """Whether this thread is the one to run it (a lock's acquire is atomic)."""
        return self.claimed.acquire(blocking=False)

    def run(self) -> None:
        try:
            self.value = self.fn(self.arg)
        except BaseException as exc:  # raised again by the thread that asked
            self.error = exc
        finally:
            self.arg = None
            self.done.release()

    def result(self) -> Any:
        """The job's value: run here if the helper has not started it, else waited for."""
        if self.claim():
            self.run()
        self.done.acquire()
        if self.error is not None:  # out of memory, say
            raise self.error
        return self.value


class _Helper:
    """One thread that does the base64 of big payloads while the thread that asked hashes.

    Base64 holds the GIL and hashlib lets go of it, so the two run at once. The asking
    thread starts hashing at once, which lets the helper take the GIL as soon as it wakes:
    waking it (a tenth of a millisecond on a small VM) costs no time of its own. A helper
    that has not started the job by the time the asking thread has hashed (a busy machine
    can leave it unscheduled for milliseconds) leaves it to that thread (see _Job).
    """

    def __init__(self) -> None:
        self._jobs: Any = None  # queue.SimpleQueue of the running thread
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[[Any], Any], arg: Any) -> _Job:
        """Start ``fn(arg)`` on the helper thread, or run it here when no thread can be
        had."""
        job = _Job(fn, arg)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                import queue  # only big payloads need it

                jobs: Any = queue.SimpleQueue()
                thread = threading.Thread(
                    target=self._serve, args=(jobs,), name="flash-base64", daemon=True
                )
                try:
                    thread.start()
                except RuntimeError:  # no thread to spare, or the interpreter is exiting
                    jobs.put(job)
                    jobs.put(None)
                    self._serve(jobs)
                    return job
                self._jobs, self._thread = jobs, thread
            self._jobs.put(job)
        return job

    @staticmethod
    def _serve(jobs: Any) -> None:
        while (job := jobs.get()) is not None:
            if job.claim():  # else the thread that asked runs it (or ran it)
                job.run()

    def forget_thread(self) -> None:
        self._jobs = self._thread = None
        self._lock = threading.Lock()


_HELPER = _Helper()


def sign_request(
    key: bytes,
    *,
    endpoint: str,
    function: str,
    fields: Mapping[str, Any],
    deadline: float,
    nonce: str | None = None,
    now: float | None = None,
    digests: Digests | None = None,
) -> dict[str, Any]:
    """The signature block to put in the job input under ``"signature"``.

    ``deadline`` (epoch seconds) is when the worker must have started the job; keep it within
    :data:`MAX_TTL_S` of ``now``. ``nonce`` defaults to 128 random bits. ``digests``: what
    :func:`flash.runtime.serialization.serialize` kept for the big pickles in ``fields``.
    """
    if type(key) is not bytes or len(key) != KEY_BYTES:
        _check_key(key)
    current = time.time() if now is None else now
    if type(deadline) is not float or deadline - deadline != 0.0:  # not a finite float
        finite = _finite_seconds(deadline)
        if finite is None:
            raise ValueError(f"deadline must be a finite number of epoch seconds, got {deadline!r}")
        deadline = finite
    if deadline <= current:
        raise ValueError("deadline has already passed")
    if deadline - current > MAX_TTL_S:
        raise ValueError(f"deadline is more than {MAX_TTL_S:.0f} s ahead; workers would refuse it")
    if nonce is None:
        nonce = _new_nonce()
    elif not isinstance(nonce, str) or len(nonce) != 32 or not _is_hex(nonce):
        raise ValueError("nonce must be 32 lowercase hexadecimal characters")
    if not (
        type(endpoint) is str
        and type(function) is str
        and 0 < len(endpoint) <= _MAX_NAME
        and 0 < len(function) <= _MAX_NAME
    ):
        for label, name in (("endpoint", endpoint), ("function", function)):
            if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
                raise ValueError(
                    f"{label} must be a non-empty string of at most {_MAX_NAME} characters"
                )
    caller = local_versions()
    try:
        # Not _big_writer(digests=None): the call is measurable on a small call's 20 µs.
        digest = _payload_digest(fields, _big_writer(digests=digests) if digests else _hashed_big)
    except ValueError as exc:
        raise UnsignablePayload(str(exc)) from None
    return {
        "v": SIGNATURE_VERSION,
        "alg": ALGORITHM,
        "endpoint": endpoint,
        "function": function,
        "digest": digest,
        "deadline": deadline,
        "nonce": nonce,
        "caller": caller,
        "mac": _request_mac(key, endpoint, function, digest, deadline, nonce, _caller_text(caller)),
    }


def verify_request(
    key: bytes,
    signature: Any,
    *,
    endpoint: str,
    function: str,
    fields: Mapping[str, Any],
    replay: ReplayCache,
    now: float | None = None,
    decoded: dict[int, bytes] | None = None,
    job: str | None = None,
) -> None:
    """Let a signed request through, or raise :class:`SignatureError`.

    Checks, in order: the block's shape, version and algorithm, that it was made for this
    endpoint and function, the MAC (the key), the deadline, the payload digest (tampering),
    and last the nonce, which is remembered only once everything else passed. Big pickles
    are base64-decoded for the digest, once the MAC has passed and the nonce is known to be
    new, and never unpickled; their bytes go into ``decoded`` (see :func:`payload_digest`).
    ``job``: the id of the job the request came in; that job may come again (see
    :class:`ReplayCache`).
    """
    if type(key) is not bytes or len(key) != KEY_BYTES:
        _check_key(key)
    current = time.time() if now is None else now
    signed_endpoint, signed_function, digest, deadline, nonce, caller_text, mac = _parse_block(
        signature
    )
    if signed_endpoint != endpoint:
        raise SignatureError(
            WRONG_TARGET,
            f"the request was signed for endpoint {_clip(signed_endpoint)!r}, "
            f"not {_clip(endpoint)!r}",
        )
    if signed_function != function:
        raise SignatureError(
            WRONG_TARGET,
            f"the request was signed for function {_clip(signed_function)!r}, "
            f"not {_clip(function)!r}",
        )
    expected = _request_mac(key, endpoint, function, digest, deadline, nonce, caller_text)
    if not hmac.compare_digest(expected, mac):
        raise SignatureError(
            BAD_MAC,
            "the request signature does not match: it was signed with another key "
            f"(check {KEY_ENV_VAR} on caller and worker) or the signature block was altered",
        )
    if current > deadline + CLOCK_SKEW_S:
        raise SignatureError(
            EXPIRED,
            f"the request expired {current - deadline:.0f} s ago (its deadline passed before "
            "a worker started it); send it again",
        )
    if deadline - current > MAX_TTL_S + CLOCK_SKEW_S:
        raise SignatureError(
            MALFORMED, f"the request deadline is more than {MAX_TTL_S:.0f} s ahead; refused"
        )
    try:
        try:
            actual = _payload_digest(fields, _no_big)
        except _BigText:
            # A replay is refused before its big pickles are decoded and hashed (5 ms a
            # megabyte here); the nonce is recorded only once the digest matched, below.
            replay.check(nonce, deadline, job)
            actual = _payload_digest(fields, _big_writer(decoded=decoded))
    except ValueError as exc:
        raise SignatureError(MALFORMED, f"the request payload cannot be hashed: {exc}") from None
    if not hmac.compare_digest(actual, digest):
        raise SignatureError(
            TAMPERED, "the request payload does not match its signature: it was altered in transit"
        )
    replay.remember(nonce, deadline, now=current, job=job)


def check_versions(caller: Mapping[str, Any], local: Mapping[str, str] | None = None) -> str | None:
    """A message when pickles from ``caller`` cannot be trusted to load here, else None.

    Pickled code needs the same Python minor version and cloudpickle major version on both
    sides. Unknown versions (a missing or "unknown" entry) are not held against the caller.
    """
    mine = local_versions() if local is None else local
    theirs_py = _text(caller.get("python"))
    theirs_cp = _text(caller.get("cloudpickle"))
    mine_py = _text(mine.get("python"))
    mine_cp = _text(mine.get("cloudpickle"))
    problem = None
    if _known(theirs_py) and _known(mine_py) and _minor(theirs_py) != _minor(mine_py):
        problem = (
            "pickled calls need the same Python minor version; "
            f"use the JSON path or build for {_minor(theirs_py)}"
        )
    elif _known(theirs_cp) and _known(mine_cp) and _major(theirs_cp) != _major(mine_cp):
        problem = (
            "pickled calls need the same cloudpickle major version; use the JSON path or pin "
            f"cloudpickle=={theirs_cp} in the endpoint's dependencies"
        )
    if problem is None:
        return None
    return (
        f"caller runs Python {_minor(theirs_py)} with cloudpickle {_minor(theirs_cp)}, "
        f"this worker Python {_minor(mine_py)} with cloudpickle {_minor(mine_cp)}: {problem}"
    )


def sign_result(
    key: bytes,
    *,
    nonce: str,
    result_fields: Mapping[str, Any],
    digests: Digests | None = None,
) -> str:
    """MAC (hex) binding ``result_fields`` (all of them) to the request's nonce; ``digests``
    as for :func:`sign_request`."""
    if type(key) is not bytes or len(key) != KEY_BYTES:
        _check_key(key)
    return _result_mac(
        key,
        nonce,
        _result_text(result_fields, _big_writer(digests=digests) if digests else _hashed_big),
    )


def verify_result(
    key: bytes,
    mac: Any,
    *,
    nonce: str,
    result_fields: Mapping[str, Any],
    decoded: dict[int, bytes] | None = None,
) -> None:
    """Raise :class:`SignatureError` unless ``mac`` is :func:`sign_result`'s for these fields.

    Big pickles in the fields are decoded to be hashed; their bytes go into ``decoded`` (see
    :func:`payload_digest`), to be unpickled only once this returns.
    """
    if type(key) is not bytes or len(key) != KEY_BYTES:
        _check_key(key)
    if mac is None:
        raise SignatureError(
            MISSING, "the result is not signed: the worker has no signing key or is not Flash's"
        )
    if type(mac) is not str or len(mac) != 64 or not mac.isascii():
        raise SignatureError(MALFORMED, "the result signature is not 64 lowercase hex characters")
    try:
        try:
            canonical = _result_text(result_fields, _no_big)
        except _BigText:
            canonical = _result_text(result_fields, _big_writer(decoded=decoded))
        expected = _result_mac(key, nonce, canonical)
    except ValueError as exc:
        raise SignatureError(MALFORMED, f"the result cannot be hashed: {exc}") from None
    if not hmac.compare_digest(expected, mac):
        if not _is_hex(mac):
            raise SignatureError(
                MALFORMED, "the result signature is not 64 lowercase hex characters"
            )
        raise SignatureError(
            BAD_MAC,
            "the result signature does not match: the result was altered, answers another "
            "request, or was signed with another key",
        )


class ReplayCache:
    """Nonces of accepted requests, each kept until its deadline plus the clock skew.

    Nonces are grouped by when they expire, in buckets of :data:`_BUCKET_S` seconds. A replay
    carries the same signed deadline as the original, so it is looked up in one bucket, and
    expired buckets are dropped whole. Memory is bounded by ``max_entries``: when the cache is
    full it forgets the buckets that expire soonest and from then on refuses every request
    that expires no later than they do (REPLAY_CACHE_FULL), because it could be a replay of a
    forgotten nonce. So a busy worker keeps accepting fresh requests and refuses only those
    closest to their deadline; it never lets through a nonce it has forgotten. One cache per
    worker process; a replay sent to another worker process is caught there only if that
    process saw the nonce. The job each nonce came with is kept too: the same job again (a
    retry, or a rerun after a crash: the platform's job ids are its own) is no replay.
    Thread-safe.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._buckets: dict[int, dict[str, str | None]] = {}  # nonce -> its job
        self._order: list[int] = []  # heap of the bucket numbers in _buckets
        self._size = 0
        # Buckets up to this one were forgotten to make room: their requests are refused.
        self._forgotten_upto = -(1 << 62)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._size

    def check(self, nonce: str, deadline: float, job: str | None = None) -> None:
        """Raise as :meth:`remember` would for a nonce already seen (or that cannot be
        checked), without recording it."""
        with self._lock:
            self._refuse_if_seen(nonce, _bucket(deadline), job)

    def remember(
        self, nonce: str, deadline: float, *, now: float | None = None, job: str | None = None
    ) -> None:
        """Record ``nonce`` (with ``job``, the id of the job it came with); raise
        SignatureError if it was seen with another job, or cannot be checked."""
        current = time.time() if now is None else now
        bucket = _bucket(deadline)
        with self._lock:
            order = self._order
            # The soonest bucket is dropped once all of its nonces have expired.
            if order and (order[0] + 1) * _BUCKET_S <= current:
                self._drop_expired(current)
            entries = self._refuse_if_seen(nonce, bucket, job)
            if entries is not None and nonce in entries:
                return  # the same job again
            if self._size >= self.max_entries:
                self._forget_soonest()
                if bucket <= self._forgotten_upto:
                    raise self._cannot_check()
                entries = self._buckets.get(bucket)
            if entries is None:
                entries = self._buckets[bucket] = {}
                heapq.heappush(order, bucket)
            entries[nonce] = job
            self._size += 1

    def _refuse_if_seen(
        self, nonce: str, bucket: int, job: str | None
    ) -> dict[str, str | None] | None:
        """Under the lock: raise for a nonce seen with another job (or with none), or in a
        bucket that was forgotten; else the nonces of ``bucket``, if it has any."""
        if bucket <= self._forgotten_upto:
            raise self._cannot_check()
        entries = self._buckets.get(bucket)
        if entries is not None and nonce in entries and (job is None or entries[nonce] != job):
            raise SignatureError(
                REPLAYED, "this request was already received (replayed nonce); refused"
            )
        return entries

    def _cannot_check(self) -> SignatureError:
        return SignatureError(
            REPLAY_CACHE_FULL,
            f"the worker tracks at most {self.max_entries} unexpired signed requests and had "
            "to forget those expiring soonest, so it cannot tell whether this one (expiring "
            "as soon) is a replay; send it again",
        )

    def _drop_expired(self, now: float) -> None:
        order = self._order
        while order and (order[0] + 1) * _BUCKET_S <= now:
            self._size -= len(self._buckets.pop(heapq.heappop(order)))

    def _forget_soonest(self) -> None:
        # Make room for about a tenth of the cache, so a full cache does not do this per call.
        order = self._order
        target = self.max_entries - max(1, self.max_entries // 10)
        while order and self._size > target:
            bucket = heapq.heappop(order)
            self._size -= len(self._buckets.pop(bucket))
            self._forgotten_upto = max(self._forgotten_upto, bucket)


def _bucket(deadline: float) -> int:
    """The replay cache's bucket of a nonce signed with ``deadline``."""
    return int((deadline + CLOCK_SKEW_S) // _BUCKET_S)


# Random nonces, made 64 at a time: one os.urandom call costs as much as hashing a request.
_NONCES: list[str] = []


def _new_nonce() -> str:
    """128 random bits as hex; list.pop is atomic, so threads never share one."""
    try:
        return _NONCES.pop()
    except IndexError:
        blob = os.urandom(16 * 64).hex()
        _NONCES.extend([blob[i : i + 32] for i in range(32, len(blob), 32)])
        return blob[:32]


def _check_key(key: Any) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise SigningKeyError(f"a signing key is {KEY_BYTES} bytes")


def _python_version() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def _cloudpickle_version() -> str:
    # Imported lazily: this module must import with the standard library alone.
    try:
        import cloudpickle
    except ImportError:
        return "unknown"
    return str(getattr(cloudpickle, "__version__", "unknown"))


def _parse_block(signature: Any) -> tuple[str, str, str, float, str, str, str]:
    """The block's endpoint, function, digest, deadline, nonce, caller text and MAC."""
    if signature is None:
        raise SignatureError(
            MISSING,
            "the request is not signed; pickled calls need a signature made with the app's "
            f"key ({KEY_ENV_VAR})",
        )
    if not isinstance(signature, dict):
        raise SignatureError(MALFORMED, "'signature' must be a JSON object")
    get: Any = signature.get
    version = get("v")
    if version != SIGNATURE_VERSION or type(version) is not int:
        raise SignatureError(
            UNSUPPORTED,
            f"signature version {_clip(version)!r} is not supported (this worker speaks "
            f"{SIGNATURE_VERSION}); rebuild so caller and worker run the same Flash",
        )
    if get("alg") != ALGORITHM:
        raise SignatureError(
            UNSUPPORTED,
            f"signature algorithm {_clip(get('alg'))!r} is not supported (expected {ALGORITHM})",
        )
    endpoint = get("endpoint")
    function = get("function")
    if not (
        type(endpoint) is str
        and type(function) is str
        and 0 < len(endpoint) <= _MAX_NAME
        and 0 < len(function) <= _MAX_NAME
    ):
        for name, value in (("endpoint", endpoint), ("function", function)):
            if type(value) is not str or not value or len(value) > _MAX_NAME:
                raise SignatureError(MALFORMED, f"signature {name!r} must be a non-empty string")
    digest = get("digest")
    mac = get("mac")
    nonce = get("nonce")
    # One hex check over the three (the usual case); the loop only names the bad one.
    if not (
        type(digest) is str
        and type(mac) is str
        and type(nonce) is str
        and len(digest) == 64
        and len(mac) == 64
        and len(nonce) == 32
        and _is_hex(digest + mac + nonce)
    ):
        for name, value, length in (("digest", digest, 64), ("mac", mac, 64), ("nonce", nonce, 32)):
            if type(value) is not str or len(value) != length or not _is_hex(value):
                raise SignatureError(
                    MALFORMED, f"signature {name!r} must be {length} lowercase hex characters"
                )
    deadline = get("deadline")
    if type(deadline) is not float or deadline - deadline != 0.0:  # not a finite float
        deadline = _seconds(deadline)
    return (
        endpoint,
        function,
        digest,
        deadline,
        nonce,
        _caller_text(get("caller")),
        mac,
    )


# Caller blocks seen and checked, with their MAC text: a worker meets one or two.
_KNOWN_CALLERS: list[tuple[dict[str, str], str]] = []


def _caller_text(caller: Any) -> str:
    """The caller versions as MAC text; SignatureError (MALFORMED) unless short strings."""
    for known, text in _KNOWN_CALLERS:
        if caller == known:  # dict equality: same names, same version texts
            return text
    if (
        not isinstance(caller, dict)
        or len(caller) > _MAX_CALLER_ITEMS
        or not all(
            type(k) is str
            and type(v) is str
            and len(k) <= _MAX_CALLER_TEXT
            and len(v) <= _MAX_CALLER_TEXT
            for k, v in caller.items()
        )
    ):
        raise SignatureError(
            MALFORMED, "signature 'caller' must be an object of short strings (versions)"
        )
    # Each text after its length, so no choice of texts can shift where one ends.
    names = sorted(caller)
    text = f"{len(names)}:" + "".join([f"{len(k)}:{k}{len(caller[k])}:{caller[k]}" for k in names])
    if len(_KNOWN_CALLERS) >= 16:
        _KNOWN_CALLERS.clear()
    _KNOWN_CALLERS.append((dict(caller), text))
    return text


# The head of the request MAC message for each (endpoint, function) signed or checked.
_TARGET_TEXTS: dict[tuple[str, str], str] = {}


def _request_mac(
    key: bytes,
    endpoint: str,
    function: str,
    digest: str,
    deadline: float,
    nonce: str,
    caller_text: str,
) -> str:
    # Free-form names go after their length, so no choice of names can shift where one
    # ends; digest and nonce have fixed lengths, and the caller text frames itself.
    # float.hex() is exact, so the deadline read back from JSON gives the same text.
    target = _TARGET_TEXTS.get((endpoint, function))
    if target is None:
        target = f"{_REQUEST_HEAD}{len(endpoint)}:{endpoint}\n{len(function)}:{function}\n"
        if len(_TARGET_TEXTS) >= 1024:  # a worker serves a few functions: keep it small
            _TARGET_TEXTS.clear()
        _TARGET_TEXTS[endpoint, function] = target
    message = f"{target}{digest}\n{deadline.hex()}\n{nonce}\n{caller_text}"
    return _hmac_sha256(key, message.encode("utf-8", "surrogatepass"))


def _result_text(fields: Mapping[str, Any], big: Callable[[str], str]) -> str:
    """The canonical text of a worker's answer; the usual one (``_success`` in the generic
    handler: success, a short pickled result, the protocol version) is written at once."""
    if type(fields) is dict and len(fields) == 3 and fields.get("success") is True:
        result = fields.get("result")
        version = fields.get("protocol_version")
        if (
            type(version) is int
            and type(result) is str
            and len(result) < BIG_TEXT
            and result.isascii()
            and '"' not in result
            and "\\" not in result
        ):
            return f'{{"protocol_version":{version},"result":"{result}","success":true}}'
    return _canonical(fields, 0, big)


def _result_mac(key: bytes, nonce: str, canonical: str) -> str:
    # One HMAC pass over the result's canonical text (big strings in it are digests).
    message = f"{_RESULT_HEAD}{len(nonce)}:{nonce}\n{canonical}"
    return _hmac_sha256(key, message.encode("utf-8", "surrogatepass"))


_PADS: dict[bytes, tuple[Any, Any]] = {}


def _hmac_sha256(key: bytes, message: bytes) -> str:
    """HMAC-SHA256 (RFC 2104) from hash states keyed once per key: hmac.digest sets up
    the key on every call, which costs more than hashing a short message."""
    pads = _PADS.get(key)
    if pads is None:
        block = key.ljust(64, b"\0")  # keys are 32 bytes, under SHA-256's 64-byte block
        pads = (
            hashlib.sha256(bytes(b ^ 0x36 for b in block)),
            hashlib.sha256(bytes(b ^ 0x5C for b in block)),
        )
        if len(_PADS) >= 16:
            _PADS.clear()
        _PADS[key] = pads
    inner = pads[0].copy()
    inner.update(message)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.hexdigest()


def _canonical(value: Any, depth: int, big: Callable[[str], str]) -> str:
    """The canonical text of ``value`` (see :func:`payload_digest`); ``big`` writes that of
    big strings."""
    kind = type(value)
    if kind is str:
        if len(value) >= BIG_TEXT:
            return big(value)
        if value.isascii() and '"' not in value and "\\" not in value:
            return f'"{value}"'
        return _json_string(value)
    if kind is list or kind is tuple:
        if depth >= _MAX_FIELD_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_FIELD_DEPTH} levels")
        text = _strings_text(value)
        if text is None and len(value) >= _FLOATS_MIN:
            text = _floats_text(value)
        if text is not None:
            return text
        return "[" + ",".join([_canonical(item, depth + 1, big) for item in value]) + "]"
    if kind is dict:
        if not value:
            return "{}"
        if depth >= _MAX_FIELD_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_FIELD_DEPTH} levels")
        items = []
        try:
            names = sorted(value)
        except TypeError:  # keys of mixed types
            names = []
        for name in names:
            name_text = _KEY_TEXTS.get(name)
            if name_text is None:
                if not isinstance(name, str):
                    break
                name_text = _canonical(name, depth, big)
                if type(name) is str and len(name) < 64 and len(_KEY_TEXTS) < 1024:
                    _KEY_TEXTS[name] = name_text
            item = value[name]
            if (
                type(item) is str
                and len(item) < BIG_TEXT
                and item.isascii()
                and '"' not in item
                and "\\" not in item
            ):
                items.append(f'{name_text}:"{item}"')
            elif item is True or item is False:  # "success" in every result
                items.append(f"{name_text}:{'true' if item else 'false'}")
            else:
                items.append(f"{name_text}:{_canonical(item, depth + 1, big)}")
        if len(items) != len(value):
            raise ValueError("object keys must be strings")
        return "{" + ",".join(items) + "}"
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        try:
            return int.__repr__(value)
        except ValueError as exc:  # more digits than int-to-text allows
            raise ValueError(str(exc)) from None
    if kind is float:
        return float.__repr__(value) if math.isfinite(value) else json.dumps(value)
    if isinstance(value, (str, bool, int, float, list, tuple, Mapping)):
        return _canonical(_plain(value), depth, big)
    raise ValueError(f"a value of type {type(value).__name__} cannot appear in a job")


def _strings_text(value: list[Any] | tuple[Any, ...]) -> str | None:
    """The canonical text of a short list of plain strings (args lists), else None."""
    if not value:
        return "[]"
    try:
        # Lengths first, so that a big string is never copied; join raises TypeError unless
        # all items are strings. Joined with '","', plain items leave exactly two quotes per
        # separator; any other quote or a backslash means an item needs escapes.
        if sum(map(len, value)) < BIG_TEXT:
            joined = '","'.join(value)
            if (
                joined.isascii()
                and "\\" not in joined
                and joined.count('"') == 2 * (len(value) - 1)
            ):
                return f'["{joined}"]'
    except TypeError:
        pass
    return None


def _floats_text(value: list[Any] | tuple[Any, ...]) -> str | None:
    """The canonical text of a long list of floats (an embedding, a series): ``%`` and the
    SHA-256 of their little-endian IEEE doubles, else None.

    Writing each float's repr costs a microsecond; packing them, a hundredth of that. JSON
    keeps a float's bits (its repr is exact) but for a NaN's, so a list with a NaN (or with
    both infinities, whose sum is NaN too) is written as text. Every item must be a float
    (a subclass too: JSON writes its value), never an int, so that 1 and 1.0 differ."""
    if not isinstance(value[0], float):  # a list of ints or records: no need to look on
        return None
    if not all(issubclass(kind, float) for kind in set(map(type, value))):
        return None
    packed = array.array("d", value)
    if math.isnan(sum(packed)):
        return None
    if sys.byteorder != "little":
        packed.byteswap()
    return "%" + hashlib.sha256(packed).hexdigest()


# Lists of this many floats or more are hashed packed (see _floats_text); shorter ones
# cost less written out.
_FLOATS_MIN = 32
_json_string = json.encoder.encode_basestring_ascii
# Canonical texts of the dict keys met so far (a few field names, mostly).
_KEY_TEXTS: dict[str, str] = {}


def _after_fork() -> None:
    # A forked child has none of the parent's threads (and maybe a lock held by one of them):
    # it starts its own helper. It must not reuse the parent's unused nonces: both would
    # send them.
    _HELPER.forget_thread()
    _NONCES.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork)


def _plain(value: Any) -> Any:
    """A subclass instance (an str enum, an OrderedDict) as its plain JSON type."""
    if isinstance(value, str):
        return str.__str__(value)  # its text, as json writes it, whatever __str__ says
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return dict(value)


_HEX_DIGITS = b"0123456789abcdef"


def _is_hex(text: str) -> bool:
    # translate() deletes the hex digits: anything left is not lowercase hex.
    return text.isascii() and not text.encode("ascii").translate(None, _HEX_DIGITS)


def signed_nonce(signature: Any) -> tuple[str, float] | None:
    """The nonce and deadline of a well-formed signature block (not checked against any
    key), else None: what a platform keeps so that a request runs once."""
    try:
        _, _, _, deadline, nonce, _, _ = _parse_block(signature)
    except SignatureError:
        return None
    return nonce, deadline


def _seconds(deadline: Any) -> float:
    """A deadline as finite epoch seconds; MALFORMED for anything else (an integer of 400
    digits too: it is no float)."""
    seconds = _finite_seconds(deadline)
    if seconds is None:
        raise SignatureError(MALFORMED, "signature 'deadline' must be epoch seconds")
    return seconds


def _clip(value: Any, limit: int = 80) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 3] + "..."
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "unknown"


def _known(version: str) -> bool:
    return bool(version) and version != "unknown"


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _major(version: str) -> str:
    return version.split(".")[0]
