"""How the Python client turns a call into a typed JSON job, when the types allow it.

The build's rule (flash.sdk.json_rule): every parameter and the return value annotated with
types pydantic can express as JSON Schema, no ``*args``/``**kwargs``; and, since calls from
Python do not stream, not a generator. Registered with the runtime client when the SDK is
imported; a worker without pydantic simply keeps using signed pickles.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from flash.runtime import client as _client
from flash.sdk.json_rule import (
    NotJsonCallable,
    has_own_constructor,
    is_json_method,
    json_call_types,
    takes_self,
)


@dataclass(frozen=True)
class JsonCodec:
    signature: inspect.Signature
    params: dict[str, TypeAdapter[Any]]
    result: TypeAdapter[Any]
    # A parameter annotated Any or object: JSON would turn its tuples, sets, dates and bytes
    # into lists and text (and refuse other objects), so "auto" pickles such a call.
    loose: bool = False

    def encode(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = self.signature.bind(*args, **kwargs)
        # By alias: the build publishes (and the worker validates) models by their aliases.
        return {
            name: self.params[name].dump_python(value, mode="json", by_alias=True)
            for name, value in bound.arguments.items()
        }

    def decode(self, value: Any) -> Any:
        return self.result.validate_python(value)


@functools.lru_cache(maxsize=1024)
def codec_for(fn: Any) -> JsonCodec | None:
    """A codec for ``fn``, or None when it takes pickled calls only."""
    if inspect.isclass(fn):
        return None
    return _codec(fn, method=False)


@functools.lru_cache(maxsize=1024)
def method_codecs_for(cls: type, name: str) -> tuple[JsonCodec, JsonCodec] | None:
    """Codecs for the constructor of ``cls`` and its method ``name``, or None when the call
    must be pickled. Public methods only, as the build publishes schemas for those alone."""
    if not is_json_method(cls, name):
        return None
    init = inspect.getattr_static(cls, "__init__")
    init_codec = _codec(init, method=True) if has_own_constructor(cls) else _NO_ARGUMENTS
    method_codec = _codec(getattr(cls, name), method=takes_self(cls, name))
    if init_codec is None or method_codec is None:
        return None
    return init_codec, method_codec


def _codec(fn: Any, *, method: bool) -> JsonCodec | None:
    try:
        types = json_call_types(fn, method=method)
    except NotJsonCallable:
        return None
    if types.stream:  # generators stream, which typed JSON calls from Python do not (yet)
        return None
    loose = any(_is_loose(hint) for hint in (*types.hints.values(), types.returned))
    return JsonCodec(types.signature, types.params, types.result, loose)


def _is_loose(hint: Any) -> bool:
    """Whether ``hint`` pins no JSON type somewhere: Any, object or a type variable, itself
    or inside (``dict[str, Any]``, ``Optional[object]``, ``Annotated[Any, ...]``), where
    the worker takes the JSON value as it is (see flash.runtime.jsoncall)."""
    if hint is Any or hint is object or isinstance(hint, typing.TypeVar):
        return True
    if typing.get_origin(hint) is typing.Literal:
        return False  # its arguments are values, not types
    return any(_is_loose(arg) for arg in typing.get_args(hint))


_NO_ARGUMENTS = JsonCodec(inspect.Signature(), {}, TypeAdapter(type(None)))


def install() -> None:
    _client.set_json_codec_factory(codec_for, method_codecs_for)
