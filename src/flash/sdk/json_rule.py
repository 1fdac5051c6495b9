"""The one rule for "can this function be called with JSON", for the client and the build.

Every parameter positional-or-keyword or keyword-only, every parameter and the return value
annotated (a constructor's return may not be), the hints resolvable, and pydantic able to
give each type a JSON Schema. A generator's return type names what it yields: the build
publishes a stream of those, which the Python client reads item by item.

The build's schema child loads this file by path, since there ``flash`` is the archive's
stand-in without this module: it imports nothing from flash, only the standard library and
pydantic.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue

__all__ = [
    "KEY_PATTERNS",
    "FlashJsonSchema",
    "JsonCallTypes",
    "NotJsonCallable",
    "has_own_constructor",
    "is_json_method",
    "json_call_types",
    "json_schema",
    "summary",
    "takes_self",
    "type_text",
]

# The keys of a dict keyed by integers, floats or decimals, by the core schema type of its
# keys: JSON keys are text, and pydantic's schema leaves unsaid which texts. The worker's
# validator names these patterns (flash.runtime.jsonschema.KEY_PATTERNS: the same ones,
# written again since this file imports nothing from flash).
_DIGITS = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
KEY_PATTERNS = {
    "int": r"^[+-]?[0-9]+$",
    "float": rf"^[+-]?(?:{_DIGITS}|inf|Infinity|nan|NaN)$",
    "decimal": rf"^[+-]?{_DIGITS}$",
}


class FlashJsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, with ``propertyNames`` for the keys of a dict keyed by numbers
    or bools: without it, a client (or the docs' example) would send keys the call refuses."""

    def dict_schema(self, schema: Any) -> JsonSchemaValue:
        json_schema = super().dict_schema(schema)
        if "propertyNames" not in json_schema and "patternProperties" not in json_schema:
            names = _key_names(schema.get("keys_schema"))
            if names is not None:
                json_schema["propertyNames"] = names
        return json_schema


def _key_names(keys: Any) -> dict[str, Any] | None:
    """The ``propertyNames`` of keys of this core schema; None where pydantic's own will do."""
    while keys is not None and keys["type"] == "function-after":
        keys = keys["schema"]  # read as that type first, then checked further
    kind = None if keys is None else keys["type"]
    if kind == "bool":
        return {"enum": ["true", "false"]}  # as JSON writes them; pydantic writes keys so
    pattern = KEY_PATTERNS.get(str(kind))
    return None if pattern is None else {"pattern": pattern}


def json_schema(adapter: TypeAdapter[Any], mode: JsonSchemaMode) -> dict[str, Any]:
    """The JSON Schema of ``adapter``'s type that a typed function's call is checked against."""
    return adapter.json_schema(mode=mode, schema_generator=FlashJsonSchema)


class NotJsonCallable(Exception):
    """The function takes pickled calls only; the message says why."""


@dataclass(frozen=True)
class JsonCallTypes:
    """What a JSON call of a function binds and returns."""

    signature: inspect.Signature  # without ``self`` for a method
    params: dict[str, TypeAdapter[Any]]  # by parameter name
    param_schemas: dict[str, dict[str, Any]]  # their JSON Schemas, as the worker checks them
    hints: dict[str, Any]  # each parameter's type, by name
    returned: Any  # the return type, or that of each item a generator yields
    result: TypeAdapter[Any]  # of ``returned``
    result_schema: dict[str, Any]  # its JSON Schema, as the worker serialises it
    stream: bool  # a generator


def json_call_types(fn: Any, *, method: bool = False) -> JsonCallTypes:
    """The types of a JSON call of ``fn`` (``method``: its first parameter is ``self``).

    Raises NotJsonCallable, saying why, when a call must be pickled.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise NotJsonCallable(f"it has no signature ({summary(exc)})") from None
    params = list(signature.parameters.values())
    if method:
        if not params:
            raise NotJsonCallable("a method without a self parameter")
        params = params[1:]
        signature = signature.replace(parameters=params)
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            raise NotJsonCallable(f"*{p.name}: JSON arguments are passed by name")
        if p.kind is p.VAR_KEYWORD:
            raise NotJsonCallable(f"**{p.name}: a schema needs fixed argument names")
        if p.kind is p.POSITIONAL_ONLY:
            raise NotJsonCallable(
                f"parameter {p.name!r} is positional-only: JSON passes arguments by name"
            )
    try:
        # Annotated metadata (validators, constraints) included: it is part of the schema.
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # NameError, AttributeError, ...
        raise NotJsonCallable(f"its type hints do not resolve ({summary(exc)})") from None
    for p in params:
        if p.name not in hints:
            raise NotJsonCallable(f"parameter {p.name!r} has no type annotation")
    constructor = method and getattr(fn, "__name__", "") == "__init__"
    if "return" not in hints and not constructor:
        raise NotJsonCallable("the return value has no type annotation")
    returned = hints.get("return", type(None))
    stream = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
    if stream:
        # Iterator[T], AsyncIterator[T], Generator[T, ...] and friends: each item is a T.
        item_args = typing.get_args(returned)
        if not item_args:
            raise NotJsonCallable("a generator: annotate what it yields, e.g. -> Iterator[str]")
        returned = item_args[0]

    adapters = {}
    param_schemas = {}
    for p in params:
        try:
            adapters[p.name] = TypeAdapter(hints[p.name])
            param_schemas[p.name] = json_schema(adapters[p.name], "validation")
        except Exception as exc:
            raise NotJsonCallable(
                f"parameter {p.name!r}: {type_text(hints[p.name])} has no JSON Schema "
                f"({summary(exc)})"
            ) from None
    try:
        result = TypeAdapter(returned)
        result_schema = json_schema(result, "serialization")
    except Exception as exc:
        raise NotJsonCallable(
            f"the return type {type_text(returned)} has no JSON Schema ({summary(exc)})"
        ) from None
    return JsonCallTypes(
        signature=signature,
        params=adapters,
        param_schemas=param_schemas,
        hints={p.name: hints[p.name] for p in params},
        returned=returned,
        result=result,
        result_schema=result_schema,
        stream=stream,
    )


def is_json_method(cls: type, name: str) -> bool:
    """Whether ``cls.name`` is a method JSON calls may reach: public (or ``__call__``) and a
    function of the class, a static or class method included (a property is not)."""
    public = not name.startswith("_") or name == "__call__"
    if not public:
        return False
    if isinstance(inspect.getattr_static(cls, name, None), classmethod):
        return inspect.ismethod(getattr(cls, name, None))  # bound to the class already
    return inspect.isfunction(getattr(cls, name, None))


def has_own_constructor(cls: type) -> bool:
    """Whether constructing ``cls`` takes arguments of its own (``object.__init__`` takes none)."""
    return inspect.getattr_static(cls, "__init__") is not object.__init__


def takes_self(cls: type, name: str) -> bool:
    """Whether method ``name`` of ``cls``, as ``getattr(cls, name)`` gives it, takes the
    instance first (a staticmethod does not, nor a classmethod: its class is bound)."""
    return not isinstance(inspect.getattr_static(cls, name, None), staticmethod | classmethod)


def summary(exc: BaseException) -> str:
    """An exception in one short line, for a reason."""
    text = (str(exc).strip().splitlines() or [""])[0]
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def type_text(hint: Any) -> str:
    """A type as a user wrote it: module-qualified unless built in."""
    if isinstance(hint, type) and hint.__module__ != "builtins":
        return f"{hint.__module__}.{hint.__qualname__}"
    if isinstance(hint, type):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")
