"""Typed JSON calls: JSON kwargs in, checked and turned into the annotated types; JSON out.

:func:`bind_json_call` validates a job's kwargs against the function's recorded input schema,
then converts each value to its parameter's annotation. When pydantic is already loaded in
the worker (the user's code imported it) its ``TypeAdapter`` converts, exactly as it would in
the user's own code; otherwise a small converter handles builtins, dataclasses, enums,
TypedDicts, NamedTuples, pydantic-free standard types, and pydantic models through
``model_validate``. :func:`to_json_result` is the way back.

Standard library only (pydantic only when already imported): this module runs inside every
worker.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import decimal
import enum
import functools
import inspect
import math
import pathlib
import re
import sys
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from flash.runtime.jsonschema import (
    MAX_ISSUES,
    MAX_NESTING,
    UNIX_TIME_TEXT,
    Issue,
    format_path,
    is_number,
    validate,
)
from flash.runtime.protocol import unwrap_remote

__all__ = [
    "JsonCallError",
    "JsonResultError",
    "bind_json_call",
    "holds_times",
    "json_fidelity",
    "pydantic_issue",
    "standard_tzinfo",
    "to_json_result",
]

_Path = Any
_Converter = Callable[[Any, _Path], Any]


class JsonCallError(TypeError):
    """The function itself cannot take JSON calls here (its type hints do not resolve)."""


class JsonResultError(TypeError):
    """A return value with no JSON form; ``path`` says where in the result it is."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# Issues gathered for a call: one more than a caller lists, so that it can tell a list cut
# at the limit from one exactly that long.
_LISTED = MAX_ISSUES + 1


def bind_json_call(
    fn: Any, kwargs: Any, schema: Mapping[str, Any], field: str = "kwargs"
) -> tuple[list[Issue], dict[str, Any]]:
    """``(issues, converted kwargs)``: issues empty and kwargs ready to call ``fn(**kwargs)``,
    or the problems (paths like ``kwargs.items[2].name``) and an empty dict.

    ``schema`` is the function's recorded input schema; ``field`` is the job field the
    kwargs came from, which the paths start with (a class's constructor takes ``init``).
    Raises JsonCallError when ``fn``'s annotations cannot be resolved in this process.
    At most ``MAX_ISSUES + 1`` issues: one past the limit says the list was cut.
    """
    issues = validate(kwargs, schema, path=field, max_issues=_LISTED)
    if not isinstance(kwargs, dict):  # the schema let a non-object through: it is not ours
        return issues or [Issue(field, "expected object of named arguments")], {}
    if any(issue.path == field for issue in issues):  # about the whole: nothing to add
        return issues, {}
    # Every argument the schema passed is converted too, so that the problems only the
    # conversion sees (a Decimal of "abc") are listed beside the schema's.
    plan = _plan(unwrap_remote(fn))
    converted: dict[str, Any] = {}
    for name, value in kwargs.items():
        if len(issues) >= _LISTED:
            break
        if issues and _has_issue(issues, format_path((field, name))):
            continue
        convert = plan.get(name)
        if convert is None:
            issues.append(Issue(format_path((field, name)), "unexpected argument"))
            continue
        try:
            converted[name] = convert(value, (field, name))
        except _ConversionError as exc:
            issues.extend(exc.issues)
    if issues:
        return issues[:_LISTED], {}
    return [], converted


def _has_issue(issues: list[Issue], where: str) -> bool:
    """Whether an issue is at the argument path ``where`` or inside its value."""
    return any(
        issue.path == where or (issue.path.startswith(where) and issue.path[len(where)] in ".[")
        for issue in issues
    )


def check_json_arguments(arguments: Mapping[str, Any]) -> None:
    """Raise JsonResultError, its path naming the argument, for a value that JSON data
    cannot hold: a NaN or an infinity (JSON has no such number), an integer too long."""
    for name, value in arguments.items():
        _to_json(value, name, 0)


def to_json_result(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses and models to objects, enums to their values,
    tuples and sets to arrays, dates to ISO text. Raises JsonResultError for anything else.
    """
    return _to_json(value, "result", 0)


def json_fidelity(value: Any, data: Any, hint: Any, *, plain: bool = False) -> str:
    """How the JSON ``data`` made of ``value`` converts back under ``hint``: ``"same"``,
    ``value`` itself of the same types throughout; ``"changed"``, another value; or
    ``"invalid"``, refused (``value`` is not of its annotated type: the receiver says so).

    It converts as this process does (pydantic's TypeAdapter when loaded), and with
    ``plain`` as a worker without pydantic does too, where anything but the same value is
    ``"changed"``. Changed is what JSON cannot tell apart: a union's arm (``5.0`` for
    ``int | float`` arrives as ``5``), a dict's date or bool keys, a subclass of the
    annotated class; a caller that may send or answer with a signed pickle instead does so
    then, as the pickle keeps them."""
    if type(value) is hint and hint in _EXACT_SCALARS:
        return "same"
    if type(value) is list and type(data) is list and typing.get_origin(hint) is list:
        item = typing.get_args(hint)[0] if typing.get_args(hint) else None
        if item in _EXACT_SCALARS and set(map(type, value)) <= {item}:
            return "same" if value == data else "changed"  # an embedding: no walk over it
    for index, convert in enumerate(_round_trip_converters(hint, plain, "pydantic" in sys.modules)):
        first = index == 0
        if convert is None:  # a type this converter cannot build
            return "invalid" if first else "changed"
        try:
            back = convert(data, "value")
        except Exception:  # _ConversionError, or a user type's own error
            return "invalid" if first else "changed"
        if not _same(value, back, 0):
            return "changed"
    return "same"


def _round_trip_converters(hint: Any, plain: bool, has_pydantic: bool) -> list[_Converter | None]:
    try:
        return _cached_round_trip_converters(hint, plain, has_pydantic)
    except TypeError:  # an unhashable hint (Annotated metadata): made each time
        return _cached_round_trip_converters.__wrapped__(hint, plain, has_pydantic)


@functools.lru_cache(maxsize=512)
def _cached_round_trip_converters(
    hint: Any, plain: bool, has_pydantic: bool
) -> list[_Converter | None]:
    """How a worker may convert a value of ``hint``: pydantic's way (a TypeAdapter costs
    far more to make than to use) and, with ``plain`` or without pydantic, the plain way."""
    converters: list[_Converter | None] = []
    if has_pydantic:
        converters.append(_pydantic_converter(sys.modules["pydantic"], hint))
    if plain or not has_pydantic:
        converters.append(_converter(hint, {}))
    return converters


# Types whose values JSON carries as themselves, under their own annotation.
_EXACT_SCALARS = frozenset({int, float, str, bool})


def _same(a: Any, b: Any, depth: int) -> bool:
    """``a == b`` with the same types at every level (``5 == 5.0`` is not enough here)."""
    if type(a) is not type(b) or depth > MAX_NESTING:
        return False
    if isinstance(a, (list, tuple)):
        if len(a) != len(b) or list(map(type, a)) != list(map(type, b)):
            return False
        if _flat_list(a) is not None:
            return bool(a == b)
        return all(_same(x, y, depth + 1) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            _same(ka, kb, depth + 1) and _same(va, vb, depth + 1)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, (set, frozenset)):
        return {(type(x), x) for x in a} == {(type(x), x) for x in b}
    if isinstance(a, enum.Enum):
        return a is b
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return all(
            _same(getattr(a, f.name), getattr(b, f.name), depth + 1) for f in dataclasses.fields(a)
        )
    if isinstance(a, datetime.datetime):
        # The same instant in another offset is another value; the zone's class is not.
        return a == b and a.utcoffset() == b.utcoffset()
    fields = getattr(a, "__dict__", None)
    if isinstance(fields, dict) and not isinstance(a, type):
        return _same(fields, getattr(b, "__dict__", None), depth + 1)
    try:
        return bool(a == b)
    except Exception:
        return False


class _ConversionError(Exception):
    def __init__(self, issues: list[Issue]) -> None:
        super().__init__(issues[0].message if issues else "")
        self.issues = issues


def _fail(path: _Path, message: str) -> _ConversionError:
    return _ConversionError([Issue(format_path(path), message)])


@functools.lru_cache(maxsize=512)
def _plan(fn: Any) -> dict[str, _Converter]:
    """Per parameter, the function turning its JSON value into the annotated type."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise JsonCallError(
            f"cannot resolve the type hints of {getattr(fn, '__qualname__', fn)!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    pydantic = sys.modules.get("pydantic")
    memo: dict[Any, _Converter] = {}
    plan: dict[str, _Converter] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            continue  # no JSON name can reach these
        hint = hints.get(name, Any)
        converter = _pydantic_converter(pydantic, hint) if pydantic is not None else None
        plan[name] = converter or _converter(hint, memo)
    return plan


def _pydantic_converter(pydantic: Any, hint: Any) -> _Converter | None:
    try:
        adapter = pydantic.TypeAdapter(hint)
    except Exception:  # a type pydantic cannot handle: the plain converter may
        return None
    validation_error = pydantic.ValidationError
    times = holds_times(hint)

    def convert(value: Any, path: _Path) -> Any:
        try:
            converted = adapter.validate_python(value)
        except validation_error as exc:
            raise _ConversionError(_pydantic_issues(exc, path)) from None
        return standard_tzinfo(converted) if times else converted

    return convert


def _pydantic_issues(exc: Any, path: _Path) -> list[Issue]:
    errors = exc.errors(include_url=False)[:_LISTED]
    return [pydantic_issue(path, error) for error in errors] or [
        Issue(format_path(path), "invalid value")
    ]


def pydantic_issue(path: _Path, error: Any) -> Issue:
    """One of a pydantic ValidationError's ``errors()`` under ``path``, as an Issue: its
    location is a path, but for pydantic's mark of a dict's key (``[key]``), which the
    message says instead."""
    where = path
    loc = tuple(error.get("loc", ()))
    message = str(error.get("msg", "invalid value"))
    if loc[-1:] == ("[key]",):
        loc, message = loc[:-1], f"key: {message}"
    for part in loc:
        where = (where, part)
    return Issue(format_path(where), message)


def standard_tzinfo(value: Any) -> Any:
    """``value`` with the time zones pydantic gives the datetimes and times it reads from
    JSON (its own ``TzInfo``) made the standard library's: ``timezone.utc``, or a
    ``timezone`` of the offset, as the sender's were. The instant is the same either way,
    but a pickled call gives these, and the two differ in ``repr`` and in a ``tzinfo is
    timezone.utc`` test. Containers are rebuilt or updated in place (pydantic made them);
    other values are returned as they are. A walk over the whole value: only for types
    that :func:`holds_times`."""
    return _standard_tz(value, 0)


def holds_times(hint: Any) -> bool:
    """Whether a value pydantic builds for ``hint`` may hold a datetime or a time; True
    where that cannot be told (a class of the user's own that pydantic builds somehow)."""
    try:
        return _cached_holds_times(hint)
    except TypeError:  # an unhashable hint (Annotated metadata)
        return _holds_times(hint, set())


@functools.lru_cache(maxsize=512)
def _cached_holds_times(hint: Any) -> bool:
    return _holds_times(hint, set())


# Types whose values hold no datetime or time (datetime.date is checked after datetime).
_TIMELESS = (
    int, float, complex, str, bytes, bytearray, type(None), datetime.date, datetime.timedelta,
    decimal.Decimal, uuid.UUID, pathlib.PurePath, enum.Enum,
)  # fmt: skip


_CONTAINER_MODULES = frozenset({"builtins", "typing", "collections", "collections.abc", "types"})


def _holds_times(hint: Any, seen: set[Any]) -> bool:
    if hint is Any or hint is object or isinstance(hint, typing.TypeVar):
        return False  # pydantic keeps such a JSON value as it is: text stays text
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return False
    if origin is typing.Annotated:
        return _holds_times(typing.get_args(hint)[0], seen)
    if origin is not None:  # a union, a container, or a generic class of the user's
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        own = isinstance(origin, type) and _holds_times(origin, seen)
        return own or any(_holds_times(a, seen) for a in args)
    supertype = getattr(hint, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return _holds_times(supertype, seen)
    if not isinstance(hint, type):
        return True  # a forward reference, or something else pydantic reads its own way
    if issubclass(hint, (datetime.datetime, datetime.time)):
        return True
    if issubclass(hint, _TIMELESS) or hint in seen or hint.__module__ in _CONTAINER_MODULES:
        return False  # a container's arguments say; without them, it holds JSON values
    seen.add(hint)  # a class that contains itself: its fields are being looked at
    fields = _fields_of(hint)
    return fields is None or any(_holds_times(f, seen) for f in fields)


def _fields_of(cls: type) -> list[Any] | None:
    """The field types of a dataclass, TypedDict, NamedTuple or pydantic model; None for
    another class, or one whose hints do not resolve."""
    model_fields = getattr(cls, "model_fields", None)
    if isinstance(model_fields, dict):
        return [getattr(f, "annotation", Any) for f in model_fields.values()]
    plain = (
        dataclasses.is_dataclass(cls)
        or _is_typeddict(cls)
        or (issubclass(cls, tuple) and hasattr(cls, "_fields"))
    )
    if not plain:
        return None
    try:
        return list(typing.get_type_hints(cls, include_extras=True).values())
    except Exception:
        return None


def _standard_tz(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind in _PLAIN_SCALARS or depth > MAX_NESTING:
        return value
    if isinstance(value, (datetime.datetime, datetime.time)):
        zone = _standard_zone(value.tzinfo)
        return value if zone is value.tzinfo else value.replace(tzinfo=zone)
    if isinstance(value, list):
        if not _PLAIN_SCALARS.issuperset(map(type, value)):  # at C speed: spares an embedding
            value[:] = [_standard_tz(item, depth + 1) for item in value]
        return value
    if isinstance(value, dict):
        return _standard_tz_dict(value, depth)
    if isinstance(value, (tuple, set, frozenset)):
        return _standard_tz_collection(value, depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _standard_tz_attribute(value, f.name, depth)
        return value
    fields = getattr(type(value), "model_fields", None)  # a pydantic model
    if isinstance(fields, dict):
        for name in fields:
            _standard_tz_attribute(value, name, depth)
    return value


_PLAIN_SCALARS = frozenset({type(None), bool, int, float, str})


def _standard_zone(zone: Any) -> Any:
    if zone is None or type(zone).__name__ != "TzInfo":
        return zone  # the standard library's, or a zone the user's own code chose
    offset = zone.utcoffset(None)
    return datetime.timezone.utc if not offset else datetime.timezone(offset)


def _standard_tz_dict(value: dict[Any, Any], depth: int) -> dict[Any, Any]:
    plain = _PLAIN_SCALARS.issuperset
    if plain(map(type, value.values())) and plain(map(type, value)):
        return value
    items = [(_standard_tz(k, depth + 1), _standard_tz(v, depth + 1)) for k, v in value.items()]
    value.clear()  # in place: the dict may be a subclass, or a TypedDict's
    value.update(items)
    return value


def _standard_tz_collection(value: Any, depth: int) -> Any:
    items = [_standard_tz(item, depth + 1) for item in value]
    if all(new is old for new, old in zip(items, value, strict=True)):
        return value
    if isinstance(value, set):
        value.clear()
        value.update(items)
        return value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        return type(value)(*items)
    return type(value)(items)


def _standard_tz_attribute(obj: Any, name: str, depth: int) -> None:
    old = getattr(obj, name, None)
    new = _standard_tz(old, depth + 1)
    if new is not old:
        # object.__setattr__: a frozen dataclass or model is still pydantic's fresh copy.
        object.__setattr__(obj, name, new)


def _identity(value: Any, path: _Path) -> Any:
    return value


def _converter(hint: Any, memo: dict[Any, _Converter]) -> _Converter:
    """Build the converter for ``hint`` once; classes go through ``memo`` (they may recurse)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or hint is object or isinstance(hint, (typing.TypeVar, str)):
        return _identity
    if origin is typing.Annotated or _is_qualifier(origin):
        return _converter(args[0], memo)
    supertype = getattr(hint, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return _converter(supertype, memo)
    if origin is typing.Literal or hint is None or hint is type(None):
        return _identity  # the schema already pinned the value
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return _union(args, memo)
    if origin is not None:
        return _generic(origin, args, memo)
    if not isinstance(hint, type):
        return _identity
    simple = _SIMPLE.get(hint)
    if simple is not None:
        return simple
    if issubclass(hint, enum.Enum):
        return _enum(hint)
    if hint in memo:
        return memo[hint]
    return _class(hint, memo)


def _is_qualifier(origin: Any) -> bool:
    """Whether ``origin`` is a TypedDict key qualifier (``Required[T]``, ``NotRequired[T]``,
    ``ReadOnly[T]``): its value converts as ``T``. From typing, or from typing_extensions
    when the user's code loaded it (older Pythons, ReadOnly before 3.13)."""
    if origin is None:
        return False
    modules = (typing, sys.modules.get("typing_extensions"))
    return any(
        origin is getattr(module, name, None)
        for module in modules
        if module is not None
        for name in ("Required", "NotRequired", "ReadOnly")
    )


def _union(args: tuple[Any, ...], memo: dict[Any, _Converter]) -> _Converter:
    arms = [_converter(a, memo) for a in args if a is not type(None)]
    nullable = type(None) in args

    def convert(value: Any, path: _Path) -> Any:
        if value is None and nullable:
            return None
        error: _ConversionError | None = None
        for arm in arms:  # in declaration order, like pydantic's left-to-right fallback
            try:
                return arm(value, path)
            except _ConversionError as exc:
                error = error or exc
        raise error or _fail(path, "matches none of the allowed types")

    return convert


def _generic(origin: Any, args: tuple[Any, ...], memo: dict[Any, _Converter]) -> _Converter:
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
        return _sequence(list, _converter(args[0], memo) if args else _identity)
    if origin in (set, frozenset, collections.abc.Set, collections.abc.MutableSet):
        return _sequence(frozenset if origin is frozenset else set, _item(args, memo))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _sequence(tuple, _converter(args[0], memo))
        if args == ((),):  # tuple[()]
            return _sequence(tuple, _identity)
        return _fixed_tuple(tuple, [_converter(a, memo) for a in args])
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        keys = _key_converter(args[0]) if args else _identity
        values = _converter(args[1], memo) if len(args) > 1 else _identity
        return _mapping(keys, values)
    if isinstance(origin, type):  # a user generic class: its plain form
        return _converter(origin, memo)
    return _identity


def _item(args: tuple[Any, ...], memo: dict[Any, _Converter]) -> _Converter:
    return _converter(args[0], memo) if args else _identity


def _sequence(kind: Callable[[Any], Any], item: _Converter) -> _Converter:
    def convert(value: Any, path: _Path) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _fail(path, f"expected array, got {_json_name(value)}")
        try:
            if item is _identity:
                return kind(value)
            return kind([item(v, (path, i)) for i, v in enumerate(value)])
        except TypeError as exc:  # unhashable items for a set
            raise _fail(path, f"cannot hold these items: {exc}") from None

    return convert


def _fixed_tuple(kind: Callable[..., Any], items: list[_Converter]) -> _Converter:
    def convert(value: Any, path: _Path) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise _fail(path, f"expected array of {len(items)} items")
        return kind([c(v, (path, i)) for i, (c, v) in enumerate(zip(items, value, strict=False))])

    return convert


def _mapping(keys: _Converter, values: _Converter) -> _Converter:
    def convert(value: Any, path: _Path) -> Any:
        if not isinstance(value, dict):
            raise _fail(path, f"expected object, got {_json_name(value)}")
        return {keys(k, (path, k)): values(v, (path, k)) for k, v in value.items()}

    return convert


def _key_converter(hint: Any) -> _Converter:
    """JSON object keys are text; int, float, enum and other simple keys are parsed from it."""
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if hint is int or hint is float or hint is decimal.Decimal or hint is uuid.UUID:
        parse: Callable[[Any], Any] = hint

        def convert(key: Any, path: _Path) -> Any:
            try:
                return parse(key)
            except (ValueError, TypeError, ArithmeticError):
                raise _fail(path, f"key is not a valid {parse.__name__}") from None

        return convert
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(hint)
    if hint is bool:
        return _bool_key
    if hint in _TEXT_KEYS:
        return _SIMPLE[hint]  # dates, times, durations, paths: parsed from their text
    return _identity


# Key types whose JSON form is the text their values have.
_TEXT_KEYS = frozenset(
    {datetime.datetime, datetime.date, datetime.time, datetime.timedelta, pathlib.Path}
)


def _bool_key(key: Any, path: _Path) -> bool:
    # As JSON and the schema (propertyNames) write them.
    if key == "true" or key == "false":
        return key == "true"
    raise _fail(path, 'key must be "true" or "false"')


def _enum(cls: type[enum.Enum]) -> _Converter:
    def convert(value: Any, path: _Path) -> Any:
        try:
            return cls(value)
        except ValueError:
            # An int-valued enum may arrive as an object key, that is as text.
            for member in cls:
                if str(member.value) == value:
                    return member
            allowed = ", ".join(repr(m.value) for m in cls)
            raise _fail(path, f"must be one of {allowed}") from None

    return convert


def _class(cls: type, memo: dict[Any, _Converter]) -> _Converter:
    # Registered before the fields are built, so a class that contains itself terminates.
    cell: list[_Converter] = []
    memo[cls] = lambda value, path: cell[0](value, path)
    if dataclasses.is_dataclass(cls):
        converter = _dataclass(cls, memo)
    elif _is_typeddict(cls):
        converter = _typeddict(cls, memo)
    elif issubclass(cls, tuple) and hasattr(cls, "_fields"):
        converter = _namedtuple(cls, memo)
    elif callable(getattr(cls, "model_validate", None)):
        converter = _model(cls)
    else:
        converter = _opaque(cls)
    cell.append(converter)
    memo[cls] = converter
    return converter


def _field_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # unresolvable names: convert those fields as plain JSON
        return dict(getattr(cls, "__annotations__", {}))


def _dataclass(cls: type, memo: dict[Any, _Converter]) -> _Converter:
    hints = _field_hints(cls)
    fields = {
        f.name: _converter(hints.get(f.name, Any), memo) for f in dataclasses.fields(cls) if f.init
    }

    def convert(value: Any, path: _Path) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise _fail(path, f"expected object, got {_json_name(value)}")
        args = {name: fields[name](v, (path, name)) for name, v in value.items() if name in fields}
        try:
            return cls(**args)
        except (TypeError, ValueError) as exc:  # __post_init__ checks, missing fields
            raise _fail(path, f"{type(exc).__name__}: {exc}") from None

    return convert


def _typeddict(cls: type, memo: dict[Any, _Converter]) -> _Converter:
    fields = {name: _converter(hint, memo) for name, hint in _field_hints(cls).items()}

    def convert(value: Any, path: _Path) -> Any:
        if not isinstance(value, dict):
            raise _fail(path, f"expected object, got {_json_name(value)}")
        return {k: fields[k](v, (path, k)) if k in fields else v for k, v in value.items()}

    return convert


def _namedtuple(cls: type, memo: dict[Any, _Converter]) -> _Converter:
    hints = _field_hints(cls)
    items = [_converter(hints.get(name, Any), memo) for name in cls._fields]  # type: ignore[attr-defined]
    build = _fixed_tuple(lambda values: cls(*values), items)

    def convert(value: Any, path: _Path) -> Any:
        if isinstance(value, list) and len(value) < len(items):  # trailing defaults
            return cls(
                *[c(v, (path, i)) for i, (c, v) in enumerate(zip(items, value, strict=False))]
            )
        return build(value, path)

    return convert


def _model(cls: Any) -> _Converter:
    times = holds_times(cls)

    def convert(value: Any, path: _Path) -> Any:
        try:
            model = cls.model_validate(value)
            return standard_tzinfo(model) if times else model
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            if hasattr(exc, "errors"):
                raise _ConversionError(_pydantic_issues(exc, path)) from None
            raise _fail(path, str(exc)) from None

    return convert


def _opaque(cls: type) -> _Converter:
    def convert(value: Any, path: _Path) -> Any:
        if isinstance(value, cls):
            return value
        raise _fail(
            path,
            f"cannot build a {cls.__qualname__} from JSON in this worker "
            "(add pydantic to the endpoint's dependencies, or call with pickle)",
        )

    return convert


def _is_typeddict(cls: type) -> bool:
    return issubclass(cls, dict) and hasattr(cls, "__required_keys__")


def _strict(kind: str, accept: Callable[[Any], bool], make: Callable[[Any], Any]) -> _Converter:
    def convert(value: Any, path: _Path) -> Any:
        if not accept(value):
            raise _fail(path, f"expected {kind}, got {_json_name(value)}")
        try:
            return make(value)
        except (ValueError, TypeError, ArithmeticError, OverflowError) as exc:
            raise _fail(path, f"not a valid {kind}: {exc}") from None

    return convert


def _parse_datetime(value: Any) -> datetime.datetime:
    if is_number(value):
        return datetime.datetime.fromtimestamp(float(value), tz=datetime.timezone.utc)
    if UNIX_TIME_TEXT.fullmatch(value):  # RFC 3339 has no such form: not read as Unix time
        raise ValueError("digits alone are not a date-time; send RFC 3339 text")
    text = value[:-1] + "+00:00" if value[-1:] in "Zz" and value else value
    if len(text) == 10:
        return datetime.datetime.combine(datetime.date.fromisoformat(text), datetime.time())
    return datetime.datetime.fromisoformat(text)


def _parse_date(value: str) -> datetime.date:
    if UNIX_TIME_TEXT.fullmatch(value):  # "20240102" is ISO 8601's basic form, not RFC 3339
        raise ValueError("digits alone are not a date; send RFC 3339 text such as 2024-05-01")
    return datetime.date.fromisoformat(value)


def _parse_time(value: str) -> datetime.time:
    text = value[:-1] + "+00:00" if value[-1:] in "Zz" and value else value
    return datetime.time.fromisoformat(text)


_DURATION = re.compile(
    r"([+-])?P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?"
)


def _duration(value: Any, path: _Path) -> datetime.timedelta:
    # Text only, as the schema says (pydantic's, {"type": "string", "format": "duration"}):
    # a number, which pydantic itself would read as seconds, is refused by both.
    delta = _parse_duration(value) if isinstance(value, str) else None
    if delta is None:
        raise _fail(path, f"expected an ISO 8601 duration such as P1DT2H, got {_shown(value)}")
    return delta


def _parse_duration(text: str) -> datetime.timedelta | None:
    match = _DURATION.fullmatch(text)
    if match is None or text.endswith(("P", "T")):
        return None
    weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups()[1:])
    try:
        delta = datetime.timedelta(
            weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds
        )
    except OverflowError:
        return None
    return -delta if match[1] == "-" else delta


def _decimal(value: Any, path: _Path) -> decimal.Decimal:
    # A number or its text (the schema takes both); not NaN or Infinity, which pydantic
    # refuses too. Decimal's own error names its signal class, not the value.
    number = _parse_decimal(value)
    if number is None or not number.is_finite():
        raise _fail(path, f"expected a decimal number, got {_shown(value)}")
    return number


def _parse_decimal(value: Any) -> decimal.Decimal | None:
    if not (is_number(value) or isinstance(value, str)):
        return None
    try:
        return decimal.Decimal(str(value))
    except (ArithmeticError, ValueError):  # an int too long to write is a ValueError
        return None


def _shown(value: Any) -> str:
    """A JSON value for a message: text quoted and cut short, else its JSON type."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return _json_name(value)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


_SIMPLE: dict[Any, _Converter] = {
    bool: _strict("boolean", lambda v: isinstance(v, bool), lambda v: v),
    int: _strict(
        "integer",
        lambda v: is_number(v) and (isinstance(v, int) or float(v).is_integer()),
        int,
    ),
    float: _strict("number", is_number, float),
    str: _strict("string", _is_str, lambda v: v),
    bytes: _strict("string", _is_str, lambda v: v.encode("utf-8")),
    bytearray: _strict("string", _is_str, lambda v: bytearray(v.encode("utf-8"))),
    datetime.datetime: _strict("date-time", lambda v: _is_str(v) or is_number(v), _parse_datetime),
    datetime.date: _strict("date", _is_str, _parse_date),
    datetime.time: _strict("time", _is_str, _parse_time),
    datetime.timedelta: _duration,
    uuid.UUID: _strict("uuid", _is_str, uuid.UUID),
    decimal.Decimal: _decimal,
    pathlib.Path: _strict("path", _is_str, pathlib.Path),
    pathlib.PurePath: _strict("path", _is_str, pathlib.PurePath),
    list: _sequence(list, _identity),
    tuple: _sequence(tuple, _identity),
    set: _sequence(set, _identity),
    frozenset: _sequence(frozenset, _identity),
    dict: _mapping(_identity, _identity),
}


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# -- results -------------------------------------------------------------------------------

_PASS_THROUGH = frozenset({type(None), bool, str})
# json.dumps refuses ints longer than Python prints (4,300 digits by default): such a result
# must be refused here, not later when the worker can no longer answer the job. Ints of up
# to this many bits have fewer digits; a longer one is tried as json.dumps would write it, so
# that this refuses exactly what json.dumps refuses (a caller's encoding decides as it does).
_SHORT_INT_BITS = 14_000


def _too_long(value: int) -> bool:
    if value.bit_length() <= _SHORT_INT_BITS:
        return False
    try:
        int.__repr__(value)
    except ValueError:
        return True
    return False


def _to_json(value: Any, path: _Path, depth: int) -> Any:
    if depth > MAX_NESTING:
        raise JsonResultError(format_path(path), f"nested deeper than {MAX_NESTING} levels")
    kind = type(value)
    if kind in _PASS_THROUGH:
        return value
    if kind is int:
        if _too_long(value):
            raise JsonResultError(format_path(path), "an integer too long to write as JSON")
        return value
    if kind is float:
        if not math.isfinite(value):
            raise JsonResultError(format_path(path), f"{value} has no JSON form")
        return value
    if kind is list or kind is tuple:
        flat = _flat_list(value)
        if flat is not None:
            return flat
        return [_to_json(item, (path, i), depth + 1) for i, item in enumerate(value)]
    if kind is dict:
        return _to_json_dict(value, path, depth)
    if isinstance(value, enum.Enum):
        return _to_json(value.value, path, depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _to_json(getattr(value, f.name), (path, f.name), depth + 1)
            for f in dataclasses.fields(value)
        }
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        # By alias, as the build's published output schema names the fields.
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, (bool, str)):  # subclasses
        return value
    if isinstance(value, int):
        return _to_json(int(value), path, depth)
    if isinstance(value, float):
        return _to_json(float(value), path, depth)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return _duration_text(value)
    if isinstance(value, (uuid.UUID, decimal.Decimal, pathlib.PurePath)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonResultError(
                format_path(path),
                "bytes that are not UTF-8 text have no JSON form; return base64 text, "
                "or call with serialization='pickle'",
            ) from None
    if isinstance(value, Mapping):
        return _to_json_dict(dict(value), path, depth)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_to_json(item, (path, i), depth + 1) for i, item in enumerate(value)]
    if pydantic is not None:
        try:
            import pydantic_core

            return pydantic_core.to_jsonable_python(value)
        except Exception:
            pass
    raise JsonResultError(
        format_path(path),
        f"a {type(value).__module__}.{type(value).__qualname__} has no JSON form; return "
        "dicts, lists, numbers, text, dataclasses, enums or pydantic models, "
        "or call with serialization='pickle'",
    )


def _flat_list(value: list[Any] | tuple[Any, ...]) -> list[Any] | None:
    """The list itself when it holds only plain scalars (checked at C speed), else None."""
    kinds = set(map(type, value))
    if int in kinds and max(x.bit_length() for x in value if type(x) is int) > _SHORT_INT_BITS:
        return None  # the slow way names the item
    if kinds <= _PASS_THROUGH | {int}:
        return value if type(value) is list else list(value)
    if not kinds <= _PASS_THROUGH | {int, float}:
        return None
    # A finite sum proves every float finite (NaN and inf survive addition); anything else,
    # an overflow included, goes the slow way, which names the offending item.
    floats = value if kinds <= {int, float, bool} else [x for x in value if type(x) is float]
    try:
        if not math.isfinite(sum(floats)):
            return None
    except OverflowError:
        return None
    return value if type(value) is list else list(value)


def _to_json_dict(value: dict[Any, Any], path: _Path, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(key, enum.Enum):
            key = key.value
        if isinstance(key, bool):
            text = "true" if key else "false"
        elif isinstance(key, (str, int, float, uuid.UUID, decimal.Decimal, pathlib.PurePath)):
            text = str(key)
        elif isinstance(key, (datetime.datetime, datetime.date, datetime.time)):
            text = key.isoformat()  # as a value of theirs is written
        elif isinstance(key, datetime.timedelta):
            text = _duration_text(key)
        elif key is None:
            text = "null"
        else:
            raise JsonResultError(
                format_path(path),
                f"a key of type {type(key).__qualname__} has no JSON form (keys must be text)",
            )
        out[text] = _to_json(item, (path, text), depth + 1)
    return out


def _duration_text(delta: datetime.timedelta) -> str:
    """ISO 8601, as pydantic writes it: P1DT2H3M4.5S."""
    sign = "-" if delta < datetime.timedelta(0) else ""
    delta = abs(delta)
    # Whole numbers, then the microseconds as digits: a float's text would round 59.999999
    # up to 60 and write 5 µs as 5e-06, which no reader takes.
    hours, rest = divmod(delta.seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}P{delta.days}DT" if delta.days else f"{sign}PT"
    if hours:
        text += f"{hours}H"
    if minutes:
        text += f"{minutes}M"
    fraction = f".{delta.microseconds:06d}".rstrip("0") if delta.microseconds else ""
    text += f"{secs}{fraction}S"
    return text
