"""Wire encoding of values: cloudpickle, then standard base64, as an ASCII string.

A script that is a module of a built project (``python main.py``: ``__main__`` is the file
the workers import as ``main``) sends its classes by reference to that module, as the
workers know them, not by value; and what comes back naming that module is read as the
script's own ``__main__``, rather than importing the script a second time. Which module the
script is comes from :func:`set_main_module_resolver` (the client sets it).

Standard library and cloudpickle only: this module runs inside every worker.
"""

from __future__ import annotations

import ast
import base64
import copyreg
import importlib
import io
import operator
import pickle
import sys
from collections.abc import Callable, Mapping, Sequence
from types import FunctionType, ModuleType
from typing import Any

import cloudpickle

from flash.runtime.signing import BIG_TEXT, Digests, encode_and_hash

__all__ = [
    "SerializationError",
    "deserialize",
    "deserialize_args",
    "serialize",
    "serialize_args",
    "set_main_module_resolver",
    "unpickle",
]

_PROTOCOL = pickle.HIGHEST_PROTOCOL

# Exact types whose plain-pickle bytes equal cloudpickle's: cloudpickle only changes how
# functions, classes and modules are reduced. Skipping its Pickler setup halves the cost of
# the small payloads that dominate call overhead.
_PLAIN_TYPES = frozenset({int, float, complex, str, bytes, bool, type(None)})
_PLAIN_CONTAINER_MAX = 64


class SerializationError(ValueError):
    """A value could not be encoded, or a payload could not be decoded."""


def serialize(
    obj: Any, *, digests: Digests | None = None, errors_without_init: bool = False
) -> str:
    """Encode ``obj`` as base64 of its cloudpickle bytes.

    With ``digests`` (the payload is about to be signed), the SHA-256 of a big encoding's
    bytes goes there, hashed while they are encoded: signing needs it, and would otherwise
    get it by decoding the text again (see :data:`flash.runtime.signing.Digests`).

    With ``errors_without_init``, an exception in ``obj`` whose class has an ``__init__`` of
    its own goes in the form that calls none when loaded (see :func:`_reduced_without_init`).
    """
    try:
        if _is_plain(obj):
            raw = pickle.dumps(obj, protocol=_PROTOCOL)
        elif (main := _main_module()) is not None or errors_without_init:
            with io.BytesIO() as file:
                _Pickler(file, main, errors_without_init).dump(obj)
                raw = file.getvalue()
        else:
            raw = cloudpickle.dumps(obj, protocol=_PROTOCOL)
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
        return unpickle(raw)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a payload calling sys.exit() while loading is still bad input
        raise SerializationError(
            f"payload failed to unpickle: {type(exc).__name__}: {exc}"
        ) from exc


def unpickle(raw: bytes) -> Any:
    """``pickle.loads(raw)`` (cloudpickle.loads is pickle.loads: the bytes carry everything
    needed), where the script's module (see the module's doc) is read as ``__main__``."""
    main = _main_module()
    if main is not None and any(name in raw for name in main.encoded):
        with io.BytesIO(raw) as file:
            return _MainUnpickler(file, main.names).load()
    return pickle.loads(raw)


def set_main_module_resolver(resolver: Callable[[ModuleType], Sequence[str]] | None) -> None:
    """Use ``resolver(module)`` to tell the names a project's workers import the file of this
    process's ``__main__`` by, the one to send its classes by first; none where they do not
    import it (see the module's doc). Asked once for each ``__main__``."""
    global _RESOLVER, _MAIN
    _RESOLVER = resolver
    _MAIN = None


class _Main:
    """This process's ``__main__`` as a module of a built project: ``names`` (the first
    to send by), as bytes to look for in a payload, and the names its ``if __name__ ==
    "__main__":`` blocks bind (None: not known), which no worker has."""

    def __init__(self, module: ModuleType, names: tuple[str, ...], guarded: frozenset[str] | None):
        self.module = module
        self.names = names
        self.encoded = tuple(name.encode() for name in names)
        self.guarded = guarded


_RESOLVER: Callable[[ModuleType], Sequence[str]] | None = None
# The __main__ module asked about, and what the resolver answered for it (None: no names).
_MAIN: tuple[ModuleType | None, _Main | None] | None = None


def _main_module() -> _Main | None:
    global _MAIN
    main = sys.modules.get("__main__")
    known = _MAIN
    if known is not None and known[0] is main:
        return known[1]
    resolver = _RESOLVER
    found = None
    if main is not None and resolver is not None:
        try:
            names = tuple(name for name in resolver(main) if name and name != "__main__")
        except Exception:  # not known: as any other script
            names = ()
        if names:
            found = _Main(main, names, _guarded_names(main))
    _MAIN = (main, found)
    return found


def _guarded_names(module: ModuleType) -> frozenset[str] | None:
    """The names bound anywhere inside the ``if __name__ == "__main__":`` blocks of
    ``module``'s file (more than that, never fewer); None where it cannot be read."""
    try:
        with open(module.__file__ or "", "rb") as file:
            tree = ast.parse(file.read())
    except (OSError, TypeError, ValueError, SyntaxError):
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.If) and _is_main_test(node.test)):
            continue
        for inner in (sub for statement in node.body for sub in ast.walk(statement)):
            if isinstance(inner, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(inner.name)
            elif isinstance(inner, ast.Name) and not isinstance(inner.ctx, ast.Load):
                names.add(inner.id)
            elif isinstance(inner, ast.alias):
                names.add((inner.asname or inner.name).split(".")[0])
            elif isinstance(inner, (ast.Global, ast.Nonlocal)):
                names.update(inner.names)
    return frozenset(names)


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    sides = [test.left, test.comparators[0]]
    return isinstance(test.ops[0], ast.Eq) and any(
        isinstance(a, ast.Name)
        and a.id == "__name__"
        and isinstance(b, ast.Constant)
        and b.value == "__main__"
        for a, b in (sides, sides[::-1])
    )


class _ModuleNamed:
    """Pickles as the import of the module ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (importlib.import_module, (self.name,))


class _Pickler(cloudpickle.Pickler):
    """cloudpickle's, sending a class of the script (``main``) by reference to the module
    its file is to the workers (``main.Res``), where they have it: not one a ``__main__``
    block binds nor one its module's name does not reach (defined in a function). With
    ``errors_without_init``: see :func:`serialize`."""

    def __init__(self, file: io.BytesIO, main: _Main | None, errors_without_init: bool) -> None:
        super().__init__(file, protocol=_PROTOCOL)
        self._main = main
        self._errors_without_init = errors_without_init

    def reducer_override(self, obj: Any) -> Any:
        if self._errors_without_init and isinstance(obj, BaseException):
            reduced = _reduced_without_init(obj)
            if reduced is not None:
                return reduced
        main = self._main
        if main is not None and isinstance(obj, type) and obj.__module__ == "__main__":
            qualname = getattr(obj, "__qualname__", "")
            if (
                main.guarded is not None
                and isinstance(qualname, str)
                and qualname.split(".", 1)[0] not in main.guarded
                and _lookup_qualname(main.module, qualname) is obj
            ):
                return (operator.attrgetter(qualname), (_ModuleNamed(main.names[0]),))
        return super().reducer_override(obj)


def _reduced_without_init(error: BaseException) -> tuple[Any, ...] | None:
    """``error`` in pickle's own form that calls no ``__init__`` (``copyreg.__newobj__``):
    loaded, ``BaseException.__new__`` sets its args and its state its attributes (notes
    among them), and the caller needs nothing but its class. For a class with an
    ``__init__`` of its own in Python, which pickle's default form, ``cls(*args)``, would
    call with its message (``QuotaError(user, used)`` fails; ``__init__(user, used=0)``
    makes another error; either may have effects): its __init__ ran when it was raised.
    None where the class reduces it its own way, has no such ``__init__``, or needs it (a
    subclass of a C exception with fields, UnicodeDecodeError's: it would not read as
    ``error`` does)."""
    cls = type(error)
    if cls.__reduce__ is not BaseException.__reduce__:
        return None
    if not isinstance(cls.__init__, FunctionType) or not _fields_in_dict(cls):
        return None
    try:
        reduced = error.__reduce__()
        if not (isinstance(reduced, tuple) and len(reduced) >= 2 and reduced[0] is cls):
            return None
        args, state = tuple(reduced[1]), (reduced[2] if len(reduced) > 2 else None)
        rebuilt = cls.__new__(cls, *args)  # what loading the form does
        if state is not None:
            rebuilt.__setstate__(state)
        if rebuilt.args != error.args or str(rebuilt) != str(error):
            return None
    except Exception:  # the default form, then
        return None
    return (copyreg.__newobj__, (cls, *args), *reduced[2:])  # type: ignore[attr-defined]


def _fields_in_dict(cls: type) -> bool:
    """Whether an exception class keeps all its own fields in its ``__dict__`` (its
    pickled state): no slots, and no built-in base but Exception's that an ``__init__``
    fills (SystemExit.code, StopIteration.value, OSError.errno)."""
    for klass in cls.__mro__:
        if klass.__dict__.get("__slots__"):
            return False
        if klass.__module__ == "builtins" and klass not in (Exception, BaseException, object):
            return False
    return True


def _lookup_qualname(root: Any, qualname: str) -> Any:
    """What the dotted ``qualname`` names in ``root`` (a module): None where a name along
    it is not bound (an attribute that raises otherwise raises here)."""
    found = root
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


class _MainUnpickler(pickle.Unpickler):
    """Reads a global of the script's module (``main.Res``) as the script's (``__main__``)
    one, where the script has it."""

    def __init__(self, file: io.BytesIO, names: tuple[str, ...]) -> None:
        super().__init__(file)
        self._names = names

    def find_class(self, module: str, name: str) -> Any:
        if module in self._names:
            try:
                return super().find_class("__main__", name)
            except AttributeError:  # not in this copy of the file: the module's own
                pass
        return super().find_class(module, name)


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
