"""How the Python client turns a call into a typed JSON job, when the types allow it.

The same rule as the build's schema derivation: every parameter and the return value
annotated with types pydantic can express as JSON Schema, no ``*args``/``**kwargs``, not a
generator. Registered with the runtime client when the SDK is imported; a worker without
pydantic simply keeps using signed pickles.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from flash.runtime import client as _client


@dataclass(frozen=True)
class JsonCodec:
    signature: inspect.Signature
    params: dict[str, TypeAdapter[Any]]
    result: TypeAdapter[Any]

    def encode(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = self.signature.bind(*args, **kwargs)
        return {
            name: self.params[name].dump_python(value, mode="json")
            for name, value in bound.arguments.items()
        }

    def decode(self, value: Any) -> Any:
        return self.result.validate_python(value)


@functools.lru_cache(maxsize=1024)
def codec_for(fn: Any) -> JsonCodec | None:
    """A codec for ``fn``, or None when it takes pickled calls only."""
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn) or inspect.isclass(fn):
        return None
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError):
        return None
    params: dict[str, TypeAdapter[Any]] = {}
    try:
        for name, param in signature.parameters.items():
            if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                return None
            if name not in hints:
                return None
            params[name] = TypeAdapter(hints[name])
            params[name].json_schema()
        if "return" not in hints:
            return None
        result = TypeAdapter(hints["return"])
        result.json_schema()
    except Exception:  # pydantic cannot express the type: pickle it
        return None
    return JsonCodec(signature, params, result)


def install() -> None:
    _client.set_json_codec_factory(codec_for)
