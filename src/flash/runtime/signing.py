"""Signed pickles: only callers holding the app's key can make a worker unpickle anything.

A pickled call carries a signature block under ``input["signature"]``::

    {"v": 1, "alg": "HMAC-SHA256", "endpoint": ..., "function": ..., "digest": ...,
     "deadline": <epoch seconds>, "nonce": <128-bit hex>,
     "caller": {"python": "3.11", "cloudpickle": "3.1.3"}, "mac": ...}

``digest`` is SHA-256 over the fields that carry pickles (:data:`SIGNED_FIELDS`); ``mac`` is
HMAC-SHA256 over everything else in the block. The worker checks the block, then the digest,
and only then decodes anything; results come back with a MAC bound to the request's nonce.

Standard library only: this module runs inside every worker.
"""

from __future__ import annotations

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
from collections.abc import Mapping
from typing import Any, TypeGuard

__all__ = [
    "ALGORITHM",
    "BAD_MAC",
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
    "ReplayCache",
    "SignatureError",
    "SigningKeyError",
    "check_versions",
    "generate_key",
    "key_from_text",
    "key_to_text",
    "load_signing_key",
    "local_versions",
    "payload_digest",
    "sign_request",
    "sign_result",
    "verify_request",
    "verify_result",
]

SIGNATURE_VERSION = 1
ALGORITHM = "HMAC-SHA256"
KEY_ENV_VAR = "FLASH_SIGNING_KEY"
KEY_BYTES = 32
# Clocks of caller and worker disagree a little; a deadline counts as passed only this much later.
CLOCK_SKEW_S = 30.0
DEFAULT_TTL_S = 15 * 60.0
# A deadline further ahead than this is refused: every accepted nonce is remembered until its
# deadline, so a far deadline would pin memory for that long.
MAX_TTL_S = 24 * 3600.0
# The request fields whose content decides what gets unpickled and run.
SIGNED_FIELDS = (
    "args",
    "kwargs",
    "method_args",
    "method_kwargs",
    "method_name",
    "execution_type",
    "function_name",
    "items",
)

_SIGNED_SORTED = tuple(sorted(SIGNED_FIELDS))
_FIELD_PREFIX = {name: f'"{name}":' for name in SIGNED_FIELDS}
_FIELD_PREFIX_COMMA = {name: f',"{name}":' for name in SIGNED_FIELDS}

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
_REQUEST_DOMAIN = "flash-request"
_VERSION_TEXT = str(SIGNATURE_VERSION)
_RESULT_DOMAIN = "flash-result"
_MAX_NAME = 1024  # endpoint and function names; anything longer is not ours
_MAX_CALLER_ITEMS = 8
_MAX_CALLER_TEXT = 64
_MAX_FIELD_DEPTH = 32
# Strings at least this long are hashed in place instead of being joined into the buffer.
_BIG_STRING = 1 << 14


class SignatureError(Exception):
    """A signature that does not let the request (or result) through; ``reason`` is in REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SigningKeyError(ValueError):
    """``FLASH_SIGNING_KEY`` (or another key text) is not a valid key. Never holds the key."""


def generate_key() -> bytes:
    """A fresh random key."""
    return secrets.token_bytes(KEY_BYTES)


def key_to_text(key: bytes) -> str:
    """The text form of a key: lowercase hex."""
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

    The canonical form is compact sorted-key JSON, except that a string holding no ``"``,
    ``\\`` or non-ASCII character is written verbatim between quotes: base64 text is then
    hashed as it is, never re-encoded. Other strings get JSON escapes, which always contain
    a backslash, so the encoding stays unambiguous. Raises ValueError for values no JSON job
    can hold (or nested absurdly deep).
    """
    # The object {field: value} written out directly: the field names are fixed and plain.
    hasher = hashlib.sha256()
    buffer = ["{"]
    for name in _SIGNED_SORTED:
        value = fields.get(name)
        if value is None:
            continue
        buffer.append(_FIELD_PREFIX[name] if len(buffer) == 1 else _FIELD_PREFIX_COMMA[name])
        if type(value) is str:
            _encode_string(value, buffer, hasher)
        else:
            _encode(value, buffer, hasher, 1)
    buffer.append("}")
    hasher.update("".join(buffer).encode("utf-8"))
    return hasher.hexdigest()


def sign_request(
    key: bytes,
    *,
    endpoint: str,
    function: str,
    fields: Mapping[str, Any],
    deadline: float,
    nonce: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The signature block to put in the job input under ``"signature"``.

    ``deadline`` (epoch seconds) is when the worker must have started the job; keep it within
    :data:`MAX_TTL_S` of ``now``. ``nonce`` defaults to 128 random bits.
    """
    _check_key(key)
    current = time.time() if now is None else now
    if not _is_number(deadline) or not math.isfinite(deadline):
        raise ValueError(f"deadline must be a finite number of epoch seconds, got {deadline!r}")
    deadline = float(deadline)
    if deadline <= current:
        raise ValueError("deadline has already passed")
    if deadline - current > MAX_TTL_S:
        raise ValueError(f"deadline is more than {MAX_TTL_S:.0f} s ahead; workers would refuse it")
    if nonce is None:
        nonce = secrets.token_hex(16)
    elif not isinstance(nonce, str) or len(nonce) != 32 or not _is_hex(nonce):
        raise ValueError("nonce must be 32 lowercase hexadecimal characters")
    for label, name in (("endpoint", endpoint), ("function", function)):
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
            raise ValueError(
                f"{label} must be a non-empty string of at most {_MAX_NAME} characters"
            )
    caller = local_versions()
    digest = payload_digest(fields)
    return {
        "v": SIGNATURE_VERSION,
        "alg": ALGORITHM,
        "endpoint": endpoint,
        "function": function,
        "digest": digest,
        "deadline": deadline,
        "nonce": nonce,
        "caller": caller,
        "mac": _request_mac(key, endpoint, function, digest, deadline, nonce, caller),
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
) -> None:
    """Let a signed request through, or raise :class:`SignatureError`.

    Checks, in order: the block's shape, version and algorithm, that it was made for this
    endpoint and function, the MAC (the key), the deadline, the payload digest (tampering),
    and last the nonce, which is remembered only once everything else passed. The payload
    strings are hashed, never decoded.
    """
    _check_key(key)
    current = time.time() if now is None else now
    block = _parse_block(signature)
    if block["endpoint"] != endpoint:
        raise SignatureError(
            WRONG_TARGET,
            f"the request was signed for endpoint {_clip(block['endpoint'])!r}, "
            f"not {_clip(endpoint)!r}",
        )
    if block["function"] != function:
        raise SignatureError(
            WRONG_TARGET,
            f"the request was signed for function {_clip(block['function'])!r}, "
            f"not {_clip(function)!r}",
        )
    expected = _request_mac(
        key,
        block["endpoint"],
        block["function"],
        block["digest"],
        block["deadline"],
        block["nonce"],
        block["caller"],
    )
    if not hmac.compare_digest(expected, block["mac"]):
        raise SignatureError(
            BAD_MAC,
            "the request signature does not match: it was signed with another key "
            f"(check {KEY_ENV_VAR} on caller and worker) or the signature block was altered",
        )
    deadline = block["deadline"]
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
        actual = payload_digest(fields)
    except ValueError as exc:
        raise SignatureError(MALFORMED, f"the request payload cannot be hashed: {exc}") from None
    if not hmac.compare_digest(actual, block["digest"]):
        raise SignatureError(
            TAMPERED, "the request payload does not match its signature: it was altered in transit"
        )
    replay.remember(block["nonce"], deadline, now=current)


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


def sign_result(key: bytes, *, nonce: str, result_fields: Mapping[str, Any]) -> str:
    """MAC (hex) binding ``result_fields`` (all of them) to the request's nonce."""
    _check_key(key)
    return _result_mac(key, nonce, _digest(result_fields))


def verify_result(key: bytes, mac: Any, *, nonce: str, result_fields: Mapping[str, Any]) -> None:
    """Raise :class:`SignatureError` unless ``mac`` is :func:`sign_result`'s for these fields."""
    _check_key(key)
    if mac is None:
        raise SignatureError(
            MISSING, "the result is not signed: the worker has no signing key or is not Flash's"
        )
    if not isinstance(mac, str) or len(mac) != 64 or not _is_hex(mac):
        raise SignatureError(MALFORMED, "the result signature is not 64 lowercase hex characters")
    try:
        digest = _digest(result_fields)
    except ValueError as exc:
        raise SignatureError(MALFORMED, f"the result cannot be hashed: {exc}") from None
    if not hmac.compare_digest(_result_mac(key, nonce, digest), mac):
        raise SignatureError(
            BAD_MAC,
            "the result signature does not match: the result was altered, answers another "
            "request, or was signed with another key",
        )


class ReplayCache:
    """Nonces of accepted requests, each kept until its deadline plus the clock skew.

    Memory is bounded by ``max_entries``. Expired nonces are dropped first; when the cache
    is still full, new requests are refused (REPLAY_CACHE_FULL) rather than forgetting a
    nonce that could still be replayed: a full cache costs availability, never safety.
    One cache per worker process; a replay sent to another worker process is caught there
    only if that process saw the nonce. Thread-safe.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def remember(self, nonce: str, deadline: float, *, now: float | None = None) -> None:
        """Record ``nonce``; raise SignatureError if it was seen or there is no room."""
        current = time.time() if now is None else now
        expires = deadline + CLOCK_SKEW_S
        with self._lock:
            self._evict(current)
            if nonce in self._expiry:
                raise SignatureError(
                    REPLAYED, "this request was already received (replayed nonce); refused"
                )
            if len(self._expiry) >= self.max_entries:
                raise SignatureError(
                    REPLAY_CACHE_FULL,
                    f"the worker is tracking {self.max_entries} unexpired signed requests "
                    "and refuses more until some expire; retry later or use shorter deadlines",
                )
            self._expiry[nonce] = expires
            heapq.heappush(self._heap, (expires, nonce))

    def _evict(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] < now:
            _, nonce = heapq.heappop(heap)
            self._expiry.pop(nonce, None)


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


def _parse_block(signature: Any) -> dict[str, Any]:
    if signature is None:
        raise SignatureError(
            MISSING,
            "the request is not signed; pickled calls need a signature made with the app's "
            f"key ({KEY_ENV_VAR})",
        )
    if not isinstance(signature, dict):
        raise SignatureError(MALFORMED, "'signature' must be a JSON object")
    version = signature.get("v")
    if version != SIGNATURE_VERSION or type(version) is not int:
        raise SignatureError(
            UNSUPPORTED,
            f"signature version {_clip(version)!r} is not supported (this worker speaks "
            f"{SIGNATURE_VERSION}); rebuild so caller and worker run the same Flash",
        )
    if signature.get("alg") != ALGORITHM:
        raise SignatureError(
            UNSUPPORTED,
            f"signature algorithm {_clip(signature.get('alg'))!r} is not supported "
            f"(expected {ALGORITHM})",
        )
    for name in ("endpoint", "function"):
        value = signature.get(name)
        if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
            raise SignatureError(MALFORMED, f"signature {name!r} must be a non-empty string")
    for name, length in (("digest", 64), ("mac", 64), ("nonce", 32)):
        value = signature.get(name)
        if type(value) is not str or len(value) != length or not _is_hex(value):
            raise SignatureError(
                MALFORMED, f"signature {name!r} must be {length} lowercase hex characters"
            )
    deadline = signature.get("deadline")
    if not _is_number(deadline) or not math.isfinite(deadline):
        raise SignatureError(MALFORMED, "signature 'deadline' must be epoch seconds")
    caller = signature.get("caller")
    if (
        not isinstance(caller, dict)
        or len(caller) > _MAX_CALLER_ITEMS
        or not all(
            isinstance(k, str)
            and isinstance(v, str)
            and len(k) <= _MAX_CALLER_TEXT
            and len(v) <= _MAX_CALLER_TEXT
            for k, v in caller.items()
        )
    ):
        raise SignatureError(
            MALFORMED, "signature 'caller' must be an object of short strings (versions)"
        )
    return {**signature, "deadline": float(deadline)}


def _request_mac(
    key: bytes,
    endpoint: str,
    function: str,
    digest: str,
    deadline: float,
    nonce: str,
    caller: Mapping[str, str],
) -> str:
    # Free-form texts go after their length, so no choice of texts can shift where one
    # ends; digest and nonce have fixed lengths. repr() of a float round-trips, so the
    # deadline read back from the job's JSON gives the same text.
    versions = _versions_text(caller)
    message = (
        f"{_REQUEST_DOMAIN}\n{_VERSION_TEXT}\n{ALGORITHM}\n{len(endpoint)}:{endpoint}\n"
        f"{len(function)}:{function}\n{digest}\n{float(deadline)!r}\n{nonce}\n"
        f"{len(caller)}:{versions}"
    )
    return _hmac_sha256(key, message.encode("utf-8"))


_VERSION_TEXTS: dict[tuple[str, ...], str] = {}


def _versions_text(caller: Mapping[str, str]) -> str:
    names = sorted(caller)
    if len(names) > _MAX_CALLER_ITEMS:  # signed blocks are checked for this already
        raise ValueError("too many caller entries")
    cache_key = (*names, *[caller[k] for k in names])
    text = _VERSION_TEXTS.get(cache_key)
    if text is None:
        text = "".join([f"{len(k)}:{k}{len(caller[k])}:{caller[k]}" for k in names])
        if len(_VERSION_TEXTS) >= 64:  # callers of a few versions at most: keep it small
            _VERSION_TEXTS.clear()
        _VERSION_TEXTS[cache_key] = text
    return text


def _result_mac(key: bytes, nonce: str, digest: str) -> str:
    message = f"{_RESULT_DOMAIN}\n{_VERSION_TEXT}\n{ALGORITHM}\n{len(nonce)}:{nonce}\n{digest}"
    return _hmac_sha256(key, message.encode("utf-8"))


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


def _framed(parts: list[str]) -> bytes:
    # Each part after its length: no choice of texts can shift where one part ends.
    return "".join([f"{len(part)}:{part}" for part in parts]).encode("utf-8")


def _digest(value: Any) -> str:
    hasher = hashlib.sha256()
    buffer: list[str] = []
    _encode(value, buffer, hasher, 0)
    hasher.update("".join(buffer).encode("utf-8"))
    return hasher.hexdigest()


def _encode_string(value: str, buffer: list[str], hasher: Any) -> None:
    if value.isascii() and '"' not in value and "\\" not in value:
        if len(value) < _BIG_STRING:
            buffer.append(f'"{value}"')
            return
        buffer.append('"')
        hasher.update("".join(buffer).encode("utf-8"))
        buffer.clear()
        hasher.update(value.encode("ascii"))
        buffer.append('"')
    else:
        buffer.append(json.dumps(value))


def _encode(value: Any, buffer: list[str], hasher: Any, depth: int) -> None:
    """Append the canonical form of ``value``; big plain strings go straight to ``hasher``."""
    kind = type(value)
    if kind is str:
        _encode_string(value, buffer, hasher)
    elif kind is list or kind is tuple:
        if depth >= _MAX_FIELD_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_FIELD_DEPTH} levels")
        joined = _joined_plain(value)
        if joined is not None:
            buffer.append(joined)
            return
        buffer.append("[")
        for i, item in enumerate(value):
            if i:
                buffer.append(",")
            if type(item) is str:
                _encode_string(item, buffer, hasher)
            else:
                _encode(item, buffer, hasher, depth + 1)
        buffer.append("]")
    elif kind is dict:
        if not value:
            buffer.append("{}")
            return
        if depth >= _MAX_FIELD_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_FIELD_DEPTH} levels")
        keys = list(value)
        if not all(type(k) is str for k in keys):
            raise ValueError("object keys must be strings")
        buffer.append("{")
        for i, name in enumerate(sorted(keys)):
            if i:
                buffer.append(",")
            _encode_string(name, buffer, hasher)
            buffer.append(":")
            item = value[name]
            if type(item) is str:
                _encode_string(item, buffer, hasher)
            else:
                _encode(item, buffer, hasher, depth + 1)
        buffer.append("}")
    elif value is None:
        buffer.append("null")
    elif kind is bool:
        buffer.append("true" if value else "false")
    elif kind is int:
        try:
            buffer.append(int.__repr__(value))
        except ValueError as exc:  # more digits than int-to-text allows
            raise ValueError(str(exc)) from None
    elif kind is float:
        buffer.append(json.dumps(value))  # JSON's spelling of inf and NaN too
    elif isinstance(value, (str, bool, int, float, list, tuple, dict, Mapping)):
        _encode(_plain(value), buffer, hasher, depth)
    else:
        raise ValueError(f"a value of type {type(value).__name__} cannot appear in a job")


def _joined_plain(items: list[Any] | tuple[Any, ...]) -> str | None:
    """``items`` encoded at once when they are all short plain strings (args lists), else None.

    Joined with '","', plain items leave exactly two quotes per separator; any other quote
    or a backslash means an item needs escapes.
    """
    if not items or set(map(type, items)) != {str}:
        return None
    joined = '","'.join(items)
    if (
        len(joined) >= _BIG_STRING
        or not joined.isascii()
        or "\\" in joined
        or joined.count('"') != 2 * (len(items) - 1)
    ):
        return None
    return f'["{joined}"]'


def _plain(value: Any) -> Any:
    """A subclass instance (an str enum, an OrderedDict) as its plain JSON type."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return dict(value)


def _is_hex(text: str) -> bool:
    # strip() eats hex digits from both ends: anything left is not lowercase hex.
    return text.isascii() and not text.strip("0123456789abcdef")


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
