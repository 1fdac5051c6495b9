"""Wire encoding of values: cloudpickle, then standard base64, as an ASCII string.

Standard library and cloudpickle only: this module runs inside every worker.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import cloudpickle

from flash.runtime.signing import BIG_TEXT, Digests, encode_and_hash

__all__ = [
    "SerializationError",
    "deserialize",
    "deserialize_args",
    "serialize",
    "serialize_args",
]

_PROTOCOL = pickle.HIGHEST_PROTOCOL

# Exact types whose plain-pickle bytes equal cloudpickle's: cloudpickle only changes how
# functions, classes and modules are reduced. Skipping its Pickler setup halves the cost of
# the small payloads that dominate call overhead.
_PLAIN_TYPES = frozenset({int, float, complex, str, bytes, bool, type(None)})
_PLAIN_CONTAINER_MAX = 64


class SerializationError(ValueError):
    """A value could not be encoded, or a payload could not be decoded."""


def serialize(obj: Any, *, digests: Digests | None = None) -> str:
    """Encode ``obj`` as base64 of its cloudpickle bytes.

    With ``digests`` (the payload is about to be signed), the SHA-256 of a big encoding's
    bytes goes there, hashed while they are encoded: signing needs it, and would otherwise
    get it by decoding the text again (see :data:`flash.runtime.signing.Digests`).
    """
    try:
        raw = (
            pickle.dumps(obj, protocol=_PROTOCOL)
            if _is_plain(obj)
            else cloudpickle.dumps(obj, protocol=_PROTOCOL)
        )
    except Exception as exc:
        raise SerializationError(
            f"cannot pickle a value of type {_type_name(obj)}: {type(exc).__name__}: {exc}"
        ) from exc
    if digests is not None and 4 * -(-len(raw) // 3) >= BIG_TEXT:  # the length of its base64
        encoded, sha256 = encode_and_hash(raw)
        text = encoded.decode("ascii")
        digests[id(text)] = (text, sha256)
        return text
    return base64.b64encode(raw).decode("ascii")


def deserialize(data: str, decoded: dict[int, bytes] | None = None) -> Any:
    """Decode a string made by :func:`serialize`.

    ``decoded`` holds bytes a signature check already decoded, by ``id()`` of their string
    (see :func:`flash.runtime.signing.payload_digest`); those are used, and let go, instead
    of decoding ``data`` again.
    """
    if not isinstance(data, str):
        raise SerializationError(f"expected a base64 string, got {_type_name(data)}")
    raw = decoded.pop(id(data), None) if decoded else None
    if raw is None:
        try:
            raw = base64.b64decode(data, validate=True)
        except ValueError as exc:  # binascii.Error, or non-ASCII characters
            raise SerializationError(f"not valid base64 ({exc})") from exc
    try:
        # cloudpickle.loads is pickle.loads; the pickled bytes carry everything needed
        return pickle.loads(raw)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a payload calling sys.exit() while loading is still bad input
        raise SerializationError(
            f"payload failed to unpickle: {type(exc).__name__}: {exc}"
        ) from exc


def serialize_args(
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    digests: Digests | None = None,
    label: str = "",
) -> tuple[list[str], dict[str, str]]:
    """Encode positional and keyword arguments for a job's ``args``/``kwargs``
    (``digests``: see :func:`serialize`); an error names the argument, after ``label``
    (``"constructor "``)."""
    out_args: list[str] = []
    for i, item in enumerate(args):
        try:
            out_args.append(serialize(item, digests=digests))
        except SerializationError as exc:
            raise SerializationError(f"{label}args[{i}]: {exc}") from exc.__cause__
    out_kwargs: dict[str, str] = {}
    for key, item in kwargs.items():
        try:
            out_kwargs[key] = serialize(item, digests=digests)
        except SerializationError as exc:
            raise SerializationError(f"{label}kwargs[{key!r}]: {exc}") from exc.__cause__
    return out_args, out_kwargs


def deserialize_args(
    args: Sequence[str],
    kwargs: Mapping[str, str],
    *,
    args_field: str = "args",
    kwargs_field: str = "kwargs",
    decoded: dict[int, bytes] | None = None,
) -> tuple[list[Any], dict[str, Any]]:
    """Decode a job's ``args``/``kwargs``; errors name the failing argument.

    ``args_field``/``kwargs_field`` name the job fields in those errors
    (``method_args[0]: not valid base64 ...``); ``decoded``: see :func:`deserialize`.
    """
    out_args: list[Any] = []
    for i, item in enumerate(args):
        try:
            out_args.append(deserialize(item, decoded))
        except SerializationError as exc:
            raise SerializationError(f"{args_field}[{i}]: {exc}") from exc.__cause__
    out_kwargs: dict[str, Any] = {}
    for key, item in kwargs.items():
        try:
            out_kwargs[key] = deserialize(item, decoded)
        except SerializationError as exc:
            raise SerializationError(f"{kwargs_field}[{key!r}]: {exc}") from exc.__cause__
    return out_args, out_kwargs


def _is_plain(obj: Any) -> bool:
    kind = type(obj)
    if kind in _PLAIN_TYPES:
        return True
    if (kind is list or kind is tuple) and len(obj) <= _PLAIN_CONTAINER_MAX:
        return all(type(item) in _PLAIN_TYPES for item in obj)
    if kind is dict and len(obj) <= _PLAIN_CONTAINER_MAX:
        return all(type(k) in _PLAIN_TYPES and type(v) in _PLAIN_TYPES for k, v in obj.items())
    return False


def _type_name(obj: Any) -> str:
    kind = type(obj)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
