"""How the Python client turns a call into a typed JSON job, when the types allow it.

The build's rule (flash.sdk.json_rule): every parameter and the return value annotated with
types pydantic can express as JSON Schema, no ``*args``/``**kwargs``. A generator's codec
decodes each item it yields (a stream's) with the type its annotation names, and a call not
streamed (the list of them) as a list of that type. Registered with the runtime client when
the SDK is imported; a worker without pydantic simply keeps using signed pickles.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from flash.runtime import client as _client
from flash.runtime.http import BodyNotJson
from flash.runtime.jsoncall import holds_times, json_fidelity, pydantic_issue, standard_tzinfo
from flash.runtime.jsonschema import MAX_ISSUES, issues_text, validate
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
    name: str = "the function"  # for errors
    # A generator: ``result`` is the type of each item; ``items`` that of the list of them.
    stream: bool = False
    items: TypeAdapter[Any] | None = None
    hints: dict[str, Any] = field(default_factory=dict)  # each parameter's type, by name
    # A result that may hold datetimes or times: their time zones are made the standard
    # library's, as a pickled call's result has them (pydantic gives its own TzInfo).
    times: bool = False
    # Each parameter's JSON Schema, as the worker checks its values first.
    param_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    def encode(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        return self._encoded(args, kwargs)[1]

    def encode_exact(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """encode, or None where an argument would arrive changed (json_fidelity), on a
        worker with pydantic or without: "auto" with the key then sends a pickle, which
        keeps it. One not of its annotated type still goes, for the worker to name."""
        values, encoded = self._encoded(args, kwargs)
        for name, value in values.items():
            schema = self.param_schemas.get(name)
            if schema is not None and validate(encoded[name], schema, max_issues=1):
                # The worker refuses it: "3" for an int, which pydantic's lax conversion
                # reads as 3 (changed, so a pickle) would arrive unchecked as text.
                continue
            hint = self.hints.get(name, Any)
            if json_fidelity(value, encoded[name], hint, plain=True) == "changed":
                return None
        return encoded

    def _encoded(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The arguments by parameter name, as given and as JSON data."""
        values = _client.check_arguments(self.signature, self.name, args, kwargs).arguments
        return values, {name: self._dump(name, value) for name, value in values.items()}

    def _dump(self, name: str, value: Any) -> Any:
        adapter = self.params[name]
        try:
            return _as_json(name, adapter, value, "error")
        except PydanticSerializationError:
            # Not of its annotated type (often a tuple for a list): the worker checks it,
            # but not a NaN or an infinity, which JSON would turn into null on the way.
            _refuse_non_finite(self.name, name, adapter, value)
        return _as_json(name, adapter, value, False)

    def decode(self, value: Any) -> Any:
        """The result of a call; a generator's: the list of its items."""
        adapter = self.items if self.items is not None else self.result
        try:
            result = adapter.validate_python(value)
        except ValidationError as exc:
            raise ValueError(
                f"{self.name} returned a value its return annotation does not allow: "
                f"{_issues(exc, 'result')}"
            ) from None
        return standard_tzinfo(result) if self.times else result

    def decode_item(self, value: Any) -> Any:
        """One item a generator yielded (its stream's): of the type its annotation names."""
        if not self.stream:
            return self.decode(value)
        try:
            item = self.result.validate_python(value)
        except ValidationError as exc:
            raise ValueError(
                f"{self.name} yielded an item its return annotation does not allow: "
                f"{_issues(exc, 'result')}"
            ) from None
        return standard_tzinfo(item) if self.times else item


def _as_json(
    name: str, adapter: TypeAdapter[Any], value: Any, warnings: bool | Literal["error"]
) -> Any:
    """``value`` as JSON data; BodyNotJson (the client then pickles the call, or refuses
    it, naming the argument) for bytes that are not UTF-8, which JSON carries as text."""
    try:
        # By alias: the build publishes (and the worker validates) models by their aliases.
        return adapter.dump_python(value, mode="json", by_alias=True, warnings=warnings)
    except UnicodeDecodeError:
        raise BodyNotJson(f"argument {name}: bytes that are not UTF-8 have no JSON form") from None


def _refuse_non_finite(function: str, name: str, adapter: TypeAdapter[Any], value: Any) -> None:
    """Raise ValueError, naming the argument, where a NaN or an infinity stands for a value
    of a type that has none (an int): sent, it would arrive as null."""
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        for error in exc.errors():
            bad = error.get("input")
            if isinstance(bad, float) and not math.isfinite(bad):
                issue = pydantic_issue(name, error)
                raise ValueError(
                    f"{function}: argument {issue.path}: {bad} is not allowed there "
                    f"({issue.message})"
                ) from None


def _issues(exc: ValidationError, root: str) -> str:
    """Each problem (at most MAX_ISSUES, saying so when there are more): where, what, and
    the value (cut short)."""
    issues = []
    for error in exc.errors(include_url=False)[:MAX_ISSUES]:
        issue = pydantic_issue(root, error)
        issues.append(f"{issue.path}: {issue.message} (got {error.get('input')!r:.80})")
    return issues_text(issues, shown=MAX_ISSUES, cut=exc.error_count() > MAX_ISSUES)


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
    loose = any(_is_loose(hint) for hint in (*types.hints.values(), types.returned))
    name = getattr(fn, "__qualname__", repr(fn))
    # A generator's ``returned`` is what each item is (Iterator[T], AsyncGenerator[T, ...]).
    items = TypeAdapter(_LIST[types.returned]) if types.stream else None
    return JsonCodec(
        types.signature,
        types.params,
        types.result,
        loose,
        name,
        types.stream,
        items,
        types.hints,
        holds_times(types.returned),
        types.param_schemas,
    )


def _is_loose(hint: Any) -> bool:
    """Whether ``hint`` pins no JSON type somewhere: Any, object or a type variable, itself
    or inside (``dict[str, Any]``, ``Optional[object]``, ``Annotated[Any, ...]``), where
    the worker takes the JSON value as it is (see flash.runtime.jsoncall)."""
    if hint is Any or hint is object or isinstance(hint, typing.TypeVar):
        return True
    if typing.get_origin(hint) is typing.Literal:
        return False  # its arguments are values, not types
    return any(_is_loose(arg) for arg in typing.get_args(hint))


_LIST: Any = list  # list[T] of a T known only when this runs

_NO_ARGUMENTS = JsonCodec(inspect.Signature(), {}, TypeAdapter(type(None)))


def install() -> None:
    _client.set_json_codec_factory(codec_for, method_codecs_for)
