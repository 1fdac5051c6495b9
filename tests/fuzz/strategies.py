"""Hypothesis strategies for fuzzing the generic handler and the gateway, and the app they hit.

The fuzzed endpoint serves :data:`APP_SOURCE` (standard library only, so a worker runs it):
typed functions with JSON schemas, an untyped pickle-only one, one that raises, a class and,
in the streaming variant, a generator. Jobs come in both wire formats, mostly well formed
enough to get past the first checks and then broken somewhere: truncated or corrupt base64,
corrupt pickles, hostile pickles that would create a file when unpickled, forged, stale or
misdirected signatures, wrong types, huge strings and deep nesting.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import importlib
import inspect
import json
import operator
import pickle
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
from hypothesis import strategies as st
from tests.helpers import CreatesFile

from flash.build.manifest import schema_record
from flash.build.schemas import derive_schemas
from flash.runtime.signing import sign_request

ENDPOINT = "fuzz"
APP_MODULE = "flash_fuzz_app"

APP_SOURCE = """
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from typing import Optional


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Box:
    width: float
    height: float
    colour: Colour = Colour.RED


def add(a: int, b: int = 0) -> int:
    return a + b


def area(box: Box, scale: int = 1) -> float:
    return box.width * box.height * scale


def tag(words: list[str], prefix: Optional[str] = None) -> list[str]:
    return [(prefix or "#") + w for w in words]


def tree(node: dict[str, list[dict[str, int]]]) -> int:
    return sum(len(v) for v in node.values())


def echo(value):  # untyped: pickle-only
    return value


def fail(message: str) -> str:
    raise ValueError(message)


class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def bump(self, by: int = 1) -> int:
        self.value += by
        return self.value


def count(n: int) -> Iterator[int]:
    # Bounded whatever n is: a fuzzer must not be able to make the worker loop for ever.
    yield from range(max(0, min(n, 5)))
"""

PLAIN_FUNCTIONS = ("add", "area", "tag", "tree", "echo", "fail", "Counter")
STREAM_FUNCTIONS = (*PLAIN_FUNCTIONS, "count")
TYPED_FUNCTIONS = ("add", "area", "tag", "tree", "fail", "count")


# --------------------------------------------------------------------------- the fuzzed app


def write_app_module(directory: Path) -> Path:
    """Write the app module into ``directory`` (created); returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{APP_MODULE}.py"
    path.write_text(APP_SOURCE, encoding="utf-8")
    return path


def import_app(directory: Path) -> Any:
    """The app module, imported from ``directory`` (written there first)."""
    write_app_module(directory)
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    sys.modules.pop(APP_MODULE, None)
    return importlib.import_module(APP_MODULE)


def registry(module: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """FUNCTION_REGISTRY as a generated handler builds it: short and qualified names."""
    found: dict[str, Any] = {}
    for name in names:
        found[name] = getattr(module, name)
        found[f"{APP_MODULE}.{name}"] = getattr(module, name)
    return found


def manifest(directory: Path, names: tuple[str, ...], endpoint: str = ENDPOINT) -> dict[str, Any]:
    """A manifest whose functions carry the JSON schemas ``flash build`` derives for them."""
    write_app_module(directory)
    rows = [(f"{APP_MODULE}.{name}", APP_MODULE, name) for name in names]
    schemas = derive_schemas(directory, None, rows)
    functions = []
    for name in names:
        result = schemas[f"{APP_MODULE}.{name}"]
        entry: dict[str, Any] = {
            "name": name,
            "qualified_name": f"{APP_MODULE}.{name}",
            "module": APP_MODULE,
        }
        entry["schema"], entry["pickle_only"] = _recorded_schema(result), result.reason
        functions.append(entry)
    return {
        "schema_version": 1,
        "project": "fuzz",
        "resources": {endpoint: {"functions": functions}},
    }


HANDLER_SOURCE = f'''
"""Endpoint {ENDPOINT}: as flash build generates it."""

from flash.runtime.generic_handler import create_handler
import {APP_MODULE}

FUNCTION_REGISTRY = {{
    key: getattr({APP_MODULE}, name)
    for name in {PLAIN_FUNCTIONS!r}
    for key in (name, "{APP_MODULE}." + name)
}}

handler = create_handler(FUNCTION_REGISTRY, endpoint={ENDPOINT!r})

if __name__ == "__main__":
    from flash.runtime.worker import start

    start(handler)
'''


def write_served_app(root: Path, config: dict[str, Any] | None = None) -> Path:
    """An app directory (as an extracted build archive) serving the plain functions."""
    from tests.platform.apps import write_app  # the platform tests' layout helper

    settings = {"workersMax": 1, "idleTimeout": 60, "executionTimeoutMs": 20_000, **(config or {})}
    write_app(root, {ENDPOINT: (HANDLER_SOURCE, settings)})
    path = root / "flash_manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["resources"][ENDPOINT]["functions"] = manifest(root, PLAIN_FUNCTIONS)["resources"][
        ENDPOINT
    ]["functions"]
    path.write_text(json.dumps(data), encoding="utf-8")
    return root


def _recorded_schema(result: Any) -> dict[str, Any] | None:
    """The manifest's ``schema`` for one function, as ``Manifest.with_schemas`` records it."""
    record = schema_record(result)
    return None if record is None else record.model_dump(mode="json", by_alias=True)


# --------------------------------------------------------------------------- hostile pickles


class _RaisesOnLoad:
    """Unpickling this raises: a ValueError, a KeyError, or SystemExit (via ``sys.exit``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.kind == "SystemExit":
            return (sys.exit, ("raised while unpickling",))
        if self.kind == "KeyError":
            return (operator.getitem, ({}, "missing"))
        return (int, ("not a number",))


def raising_pickle(kind: str) -> str:
    """base64 of a pickle whose loading raises ``kind``: ValueError, KeyError or SystemExit."""
    return _b64(pickle.dumps(_RaisesOnLoad(kind)))


def hostile_pickle(marker: Path) -> str:
    """base64 of a pickle whose loading creates ``marker``."""
    return _b64(pickle.dumps(CreatesFile(str(marker))))


# --------------------------------------------------------------------------- JSON values

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)


@functools.cache  # building strategies costs more than drawing from them
def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Small random JSON documents."""
    return st.recursive(
        _SCALARS,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def nested(depth: int, leaf: Any = 0, kind: str = "list") -> Any:
    """``leaf`` wrapped ``depth`` times in lists or single-key objects (built iteratively)."""
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def json_text(value: Any) -> str:
    """``json.dumps(value)``, also for values nested deeper than json.dumps can recurse."""
    try:
        return json.dumps(value)
    except RecursionError:
        pass
    parts: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            parts.append(item.text)
        elif isinstance(item, dict):
            parts.append("{")
            stack.append(_Raw("}"))
            for i, (key, child) in reversed(list(enumerate(item.items()))):
                stack.append(child)
                stack.append(_Raw((", " if i else "") + json.dumps(key) + ": "))
        elif isinstance(item, (list, tuple)):
            parts.append("[")
            stack.append(_Raw("]"))
            for i, child in reversed(list(enumerate(item))):
                stack.append(child)
                if i:
                    stack.append(_Raw(", "))
        else:
            parts.append(json.dumps(item))
    return "".join(parts)


def deep_json_text(depth: int, kind: str = "list") -> str:
    """JSON text nested ``depth`` levels deep (json.dumps itself gives up near 1,000)."""
    if kind == "list":
        return "[" * depth + "0" + "]" * depth
    return '{"k": ' * depth + "0" + "}" * depth


@functools.cache
def deep_values(max_depth: int = 3000) -> st.SearchStrategy[Any]:
    return st.builds(
        nested,
        st.integers(min_value=30, max_value=max_depth),
        st.sampled_from([0, "x", None]),
        st.sampled_from(["list", "dict"]),
    )


@functools.cache
def huge_strings(max_size: int = 2_000_000) -> st.SearchStrategy[str]:
    """Long strings, built by repetition so drawing them stays cheap."""
    return st.builds(
        lambda n, ch: ch * n,
        st.integers(min_value=10_000, max_value=max_size),
        st.sampled_from(["a", "=", "\u00e9", "\\", '"', "\x00", "\ud800"]),
    )


@functools.cache
def hostile_values(max_depth: int = 3000) -> st.SearchStrategy[Any]:
    """Any of: random JSON, deep nesting, a huge string."""
    return st.one_of(json_values(), deep_values(max_depth), huge_strings(200_000))


# --------------------------------------------------------------------------- base64 pickles


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@functools.cache
def _plain_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(min_value=-(10**6), max_value=10**6),
        st.text(max_size=10),
        st.lists(st.text(max_size=5), max_size=4),
        st.floats(allow_nan=False),
        st.none(),
    )


@functools.cache
def valid_pickles() -> st.SearchStrategy[str]:
    return _plain_values().map(lambda v: _b64(cloudpickle.dumps(v)))


def _truncate(encoded: str, cut: int) -> str:
    return encoded[: max(0, len(encoded) - 1 - cut % max(1, len(encoded)))]


def _flip(raw: bytes, index: int, bit: int) -> bytes:
    if not raw:
        return raw
    data = bytearray(raw)
    data[index % len(data)] ^= 1 << (bit % 8)
    return bytes(data)


@functools.cache
def broken_pickles() -> st.SearchStrategy[str]:
    """base64 text that decodes to nothing loadable, or is not base64 at all."""
    valid_raw = _plain_values().map(lambda v: pickle.dumps(v, protocol=5))
    return st.one_of(
        # truncated base64 text (bad padding, or a cut pickle)
        st.builds(_truncate, valid_pickles(), st.integers(min_value=0)),
        # a valid base64 of a pickle cut short
        st.builds(lambda r, n: _b64(r[: n % max(1, len(r))]), valid_raw, st.integers(0)),
        # one bit flipped somewhere in the pickle
        st.builds(lambda r, i, b: _b64(_flip(r, i, b)), valid_raw, st.integers(0), st.integers(0)),
        # random bytes
        st.binary(max_size=64).map(_b64),
        # random text: not base64, non-ASCII, whitespace, padding only
        st.text(max_size=40),
        st.sampled_from(["", "=", "====", "A", "AA==\n", " AAAA", "\u00e9\u00e9\u00e9\u00e9"]),
        # a pickle that raises while loading
        st.sampled_from(["ValueError", "KeyError", "SystemExit"]).map(raising_pickle),
    )


@functools.cache
def pickled_arguments(marker: Path | None) -> st.SearchStrategy[str]:
    """One ``args`` item: valid, broken or (when ``marker`` is given) hostile."""
    choices = [valid_pickles(), valid_pickles(), broken_pickles()]
    if marker is not None:
        choices.append(st.just(hostile_pickle(marker)))
    return st.one_of(choices)


@functools.cache
def _wrong_type() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(), st.booleans(), st.none(), st.floats(), json_values(4), st.text(max_size=5)
    )


# --------------------------------------------------------------------------- pickled jobs

SIGNATURE_MODES = (
    "valid",
    "valid",
    "valid",
    "none",
    "forged",
    "wrong_key",
    "expired",
    "tampered",
    "wrong_target",
    "garbage",
)


def _pickled(value: Any) -> str:
    return _b64(cloudpickle.dumps(value))


@functools.cache
def _valid_call(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """A well-formed pickled call of ``name`` (its arguments may still be of the wrong type)."""
    ints = st.integers(min_value=-(10**6), max_value=10**6).map(_pickled)
    words = st.lists(st.text(max_size=5), max_size=3).map(_pickled)
    if name == "Counter":
        return st.fixed_dictionaries(
            {"execution_type": st.just("class"), "method_name": st.just("bump")},
            optional={
                "args": st.lists(ints, max_size=1),
                "method_kwargs": st.dictionaries(st.just("by"), ints, max_size=1),
            },
        )
    by_name: dict[str, st.SearchStrategy[dict[str, Any]]] = {
        "add": st.fixed_dictionaries({"args": st.lists(ints, min_size=1, max_size=2)}),
        "tag": st.fixed_dictionaries({"kwargs": st.fixed_dictionaries({"words": words})}),
        "echo": st.fixed_dictionaries({"args": st.lists(valid_pickles(), min_size=1, max_size=1)}),
        "fail": st.fixed_dictionaries({"args": st.lists(valid_pickles(), min_size=1, max_size=1)}),
        "count": st.fixed_dictionaries({"args": st.lists(ints, min_size=1, max_size=1)}),
    }
    arguments = by_name.get(
        name, st.fixed_dictionaries({"args": st.lists(valid_pickles(), max_size=2)})
    )
    return arguments.map(lambda d: {"execution_type": "function", **d})


@functools.cache
def _field_damage(marker: Path | None) -> dict[str, st.SearchStrategy[Any]]:
    """Per field of the pickled format: values that break it."""
    argument = pickled_arguments(marker)
    broken_list = st.one_of(
        st.lists(argument, min_size=1, max_size=3),
        _wrong_type(),
        st.lists(_wrong_type(), max_size=2),
    )
    broken_dict = st.one_of(
        st.dictionaries(st.sampled_from(["a", "b", "by", "value", "x"]), argument, max_size=3),
        _wrong_type(),
        st.dictionaries(st.text(max_size=3), _wrong_type(), max_size=2),
    )
    return {
        "args": broken_list,
        "kwargs": broken_dict,
        "method_args": broken_list,
        "method_kwargs": broken_dict,
        "method_name": st.one_of(
            st.sampled_from(["__call__", "__init__", "_private", "missing", "", "bump"]),
            _wrong_type(),
        ),
        "execution_type": st.one_of(
            st.sampled_from(["function", "class", "map", ""]), _wrong_type()
        ),
        "items": st.one_of(
            st.lists(
                st.fixed_dictionaries({}, optional={"args": st.lists(argument, max_size=2)})
                | _wrong_type(),
                max_size=4,
            ),
            _wrong_type(),
        ),
        "protocol_version": st.one_of(st.integers(-2, 3), _wrong_type()),
        "context": st.one_of(
            _wrong_type(),
            st.fixed_dictionaries(
                {}, optional={"deadline": st.one_of(_wrong_type(), st.floats(0, 4e9))}
            ),
        ),
        "function_name": st.one_of(st.text(max_size=12), _wrong_type()),
        "signature": st.one_of(_wrong_type(), huge_strings(100_000)),
        "extra": json_values(4),
    }


@st.composite
def pickled_inputs(
    draw: st.DrawFn,
    *,
    key: bytes | None,
    names: tuple[str, ...] = PLAIN_FUNCTIONS,
    marker: Path | None = None,
    endpoint: str = ENDPOINT,
) -> dict[str, Any]:
    """A job ``input`` in the pickled wire format: a valid call, then up to three fields
    broken, then signed with ``key`` (validly, mostly) or with a broken signature.

    A hostile pickle (creating ``marker``) never travels under a valid signature: a signed
    request is trusted code by design.
    """
    name = draw(st.sampled_from(names))
    payload: dict[str, Any] = {"function_name": name, **draw(_valid_call(name))}
    if draw(st.booleans()):
        payload["function_name"] = f"{APP_MODULE}.{name}"
    if draw(st.booleans()):
        payload["protocol_version"] = 1
    if draw(st.booleans()):  # one argument payload broken, the job otherwise fine
        spoilt = broken_pickles()
        if marker is not None:
            spoilt = st.one_of(spoilt, st.just(hostile_pickle(marker)))
        _spoil_argument(draw, payload, spoilt)
    damage = _field_damage(marker)
    for field in draw(st.lists(st.sampled_from(sorted(damage)), max_size=3, unique=True)):
        payload[field] = draw(damage[field])
    if draw(st.integers(0, 19)) == 0:  # a huge or deep value in a field the signature covers
        payload[draw(st.sampled_from(["args", "kwargs", "items", "method_args"]))] = draw(
            hostile_values()
        )
    mode = draw(st.sampled_from(SIGNATURE_MODES))
    if "signature" in payload and mode == "valid":
        return payload  # the damage was to the signature itself
    hostile = marker is not None and hostile_pickle(marker) in json_text(payload)
    if mode == "valid" and (key is None or hostile):
        mode = "forged"
    _sign(draw, payload, mode, key, payload.get("function_name"), endpoint)
    return payload


def _spoil_argument(
    draw: st.DrawFn, payload: dict[str, Any], spoilt: st.SearchStrategy[str]
) -> None:
    for field in ("args", "method_args"):
        if isinstance(payload.get(field), list) and payload[field]:
            index = draw(st.integers(0, len(payload[field]) - 1))
            payload[field] = [*payload[field][:index], draw(spoilt), *payload[field][index + 1 :]]
            return
    for field in ("kwargs", "method_kwargs"):
        if isinstance(payload.get(field), dict) and payload[field]:
            name = draw(st.sampled_from(sorted(payload[field])))
            payload[field] = {**payload[field], name: draw(spoilt)}
            return
    payload["args"] = [draw(spoilt)]


def _sign(
    draw: st.DrawFn, payload: dict[str, Any], mode: str, key: bytes | None, name: Any, endpoint: str
) -> None:
    if mode == "none":
        return
    if mode == "garbage":
        payload["signature"] = draw(
            _wrong_type() | st.dictionaries(st.text(max_size=6), _wrong_type(), max_size=6)
        )
        return
    signer = key if key is not None and mode != "wrong_key" else bytes(32)
    function = name if isinstance(name, str) and 0 < len(name) <= 1024 else "add"
    target = endpoint if mode != "wrong_target" else endpoint + "-other"
    nonce = secrets.token_hex(16)  # drawn nonces repeat, and a repeat is only a replay
    now = time.time()
    signed_at, deadline = (now - 3600, now - 3000) if mode == "expired" else (now, now + 60)
    try:
        signature = sign_request(
            signer,
            endpoint=target,
            function=function,
            fields=payload,
            deadline=deadline,
            nonce=nonce,
            now=signed_at,
        )
    except ValueError:  # a payload that cannot be hashed cannot be signed either
        payload["signature"] = {"v": 1, "alg": "HMAC-SHA256", "nonce": nonce}
        return
    if mode == "forged":
        signature["mac"] = draw(st.binary(min_size=32, max_size=32)).hex()
    payload["signature"] = signature
    if mode == "tampered":
        payload["args"] = [_pickled("tampered")]


# --------------------------------------------------------------------------- JSON jobs


@functools.cache
def _typed_kwargs(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid arguments for ``name``'s parameters."""
    shapes: dict[str, st.SearchStrategy[dict[str, Any]]] = {
        "add": st.fixed_dictionaries({"a": st.integers()}, optional={"b": st.integers()}),
        "area": st.fixed_dictionaries(
            {
                "box": st.fixed_dictionaries(
                    {"width": st.floats(-1e6, 1e6), "height": st.integers(-100, 100)},
                    optional={"colour": st.sampled_from(["red", "blue"])},
                )
            },
            optional={"scale": st.integers(-1000, 1000)},
        ),
        "tag": st.fixed_dictionaries(
            {"words": st.lists(st.text(max_size=5), max_size=4)},
            optional={"prefix": st.none() | st.text(max_size=3)},
        ),
        "tree": st.fixed_dictionaries(
            {
                "node": st.dictionaries(
                    st.text(max_size=3),
                    st.lists(st.dictionaries(st.text(max_size=3), st.integers()), max_size=2),
                    max_size=3,
                )
            }
        ),
        "fail": st.fixed_dictionaries({"message": st.text(max_size=10)}),
        "count": st.fixed_dictionaries({"n": st.integers()}),
    }
    return shapes.get(name, st.fixed_dictionaries({"x": json_values(4)}))


@st.composite
def _damaged(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one part (or the whole) replaced by a wrong, deep or huge value."""
    if not isinstance(value, dict) or not value or draw(st.integers(0, 4)) == 0:
        return draw(st.one_of(json_values(), deep_values(), huge_strings(200_000)))
    field = draw(st.sampled_from(sorted(value)))
    return {**value, field: draw(_damaged(value[field]))}


@st.composite
def json_inputs(draw: st.DrawFn, *, names: tuple[str, ...] = TYPED_FUNCTIONS) -> Any:
    """A job ``input`` in the typed JSON format: valid, or broken in one place."""
    name = draw(st.sampled_from(names))
    kwargs = draw(_typed_kwargs(name))
    roll = draw(st.integers(0, 9))
    if roll >= 5:
        kwargs = draw(_damaged(kwargs))
    elif roll == 4:
        kwargs = {**kwargs, draw(st.text(max_size=4)): draw(json_values(3))}
    function: Any = draw(st.sampled_from([name, f"{APP_MODULE}.{name}"]))
    if draw(st.integers(0, 9)) == 0:
        function = draw(st.sampled_from(["echo", "Counter", "missing", ""]) | _wrong_type())
    form = draw(st.integers(0, 9))
    if form == 0:
        payload: Any = kwargs  # the one-function form: refused on a many-function endpoint
    elif form == 1:
        payload = {"function": function, "kwargs": kwargs, "extra": draw(json_values(3))}
    else:
        payload = {"function": function, "kwargs": kwargs}
    if isinstance(payload, dict) and draw(st.integers(0, 4)) == 0:
        payload = {**payload, "protocol_version": draw(st.just(1) | _wrong_type())}
    if isinstance(payload, dict) and draw(st.integers(0, 4)) == 0:
        payload = {**payload, "context": draw(_wrong_type())}
    return payload


# --------------------------------------------------------------------------- whole jobs


@st.composite
def job_inputs(
    draw: st.DrawFn,
    *,
    key: bytes | None,
    names: tuple[str, ...] = PLAIN_FUNCTIONS,
    marker: Path | None = None,
) -> Any:
    """A job's ``input``: pickled (half), typed JSON (a third), else random, deep or huge."""
    roll = draw(st.integers(0, 11))
    if roll < 6:
        return draw(pickled_inputs(key=key, names=names, marker=marker))
    if roll < 10:
        return draw(json_inputs(names=tuple(n for n in names if n in TYPED_FUNCTIONS)))
    return draw(json_values() if roll == 10 else hostile_values())


@st.composite
def jobs(
    draw: st.DrawFn,
    *,
    key: bytes | None,
    names: tuple[str, ...] = PLAIN_FUNCTIONS,
    marker: Path | None = None,
) -> Any:
    """A whole job as the worker loop hands it to the handler: mostly ``{"id", "input"}``."""
    roll = draw(st.integers(0, 19))
    if roll == 0:
        return draw(json_values())
    if roll == 1:
        return {"id": draw(_wrong_type()), "input": draw(_wrong_type())}
    return {
        "id": draw(st.text(max_size=8)),
        "input": draw(job_inputs(key=key, names=names, marker=marker)),
    }


# --------------------------------------------------------------------------- a known-good job


def good_pickled_input(
    key: bytes | None, a: int, b: int, endpoint: str = ENDPOINT
) -> dict[str, Any]:
    """``add(a, b)`` as a (signed, when ``key`` is given) pickled job input."""
    payload: dict[str, Any] = {
        "function_name": "add",
        "execution_type": "function",
        "args": [_b64(pickle.dumps(a))],
        "kwargs": {"b": _b64(pickle.dumps(b))},
    }
    if key is not None:
        payload["signature"] = sign_request(
            key, endpoint=endpoint, function="add", fields=payload, deadline=time.time() + 60
        )
    return payload


def good_json_input(a: int, b: int) -> dict[str, Any]:
    return {"function": "add", "kwargs": {"a": a, "b": b}}


def unpickle_result(answer: dict[str, Any]) -> Any:
    return pickle.loads(base64.b64decode(answer["result"]))


# --------------------------------------------------------------------------- checks


def check_answer(answer: Any) -> dict[str, Any]:
    """Assert ``answer`` is a well-formed handler answer that JSON can carry; returns it.

    A streamed failure arrives as ``{"error": "<the answer as JSON text>"}`` and is unpacked.
    """
    assert isinstance(answer, dict), f"the answer is a {type(answer).__name__}, not a dict"
    if set(answer) == {"error"} and isinstance(answer["error"], str):
        answer = json.loads(answer["error"])
        assert isinstance(answer, dict)
    json.dumps(answer, allow_nan=True)  # the worker loop posts it as JSON
    assert isinstance(answer.get("success"), bool), f"no success flag: {clip(answer)}"
    if not answer["success"]:
        assert isinstance(answer.get("error_type"), str) and answer["error_type"], clip(answer)
        assert isinstance(answer.get("error"), str), clip(answer)
    return answer


async def collect(handler: Any, job: Any, timeout: float) -> list[dict[str, Any]]:
    """Every answer of one job (one, or one per streamed item), within ``timeout`` seconds."""

    async def run() -> list[Any]:
        if inspect.isasyncgenfunction(handler):
            return [item async for item in handler(job)]
        return [await handler(job)]

    return await asyncio.wait_for(run(), timeout)


def clip(value: Any, limit: int = 300) -> str:
    """``repr(value)``, cut to ``limit`` characters for messages."""
    try:
        text = repr(value)
    except RecursionError:  # deep inputs are a good part of what is generated
        text = f"<{type(value).__name__} nested too deep to repr>"
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- HTTP requests

CLIENT_ROUTES = (
    "run",
    "runsync",
    "status",
    "stream",
    "cancel",
    "retry",
    "purge-queue",
    "health",
    "openapi.json",
)
WORKER_ROUTES = ("job-take", "job-take-batch", "job-stop", "job-done", "job-stream", "ping")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
CONTENT_TYPES = (
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    "",
    "\u00e9/\u00e9",
)


@functools.cache
def _ascii_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=max_size)


@st.composite
def request_bodies(draw: st.DrawFn, *, key: bytes | None, marker: Path | None = None) -> bytes:
    """A body for /run or /runsync: a job (in either format) wrapped as RunPod wants, or not."""
    roll = draw(st.integers(0, 19))
    if roll < 15:
        body: Any = {"input": draw(job_inputs(key=key, marker=marker))}
        if draw(st.integers(0, 4)) == 0:
            body["policy"] = draw(
                _wrong_type()
                | st.fixed_dictionaries(
                    {}, optional={"executionTimeout": _wrong_type(), "ttl": _wrong_type()}
                )
            )
        if draw(st.integers(0, 9)) == 0:
            body["webhook"] = draw(_wrong_type() | st.sampled_from(["ftp://x", "http://"]))
        text = json_text(body)
    elif roll == 15:
        text = json.dumps(draw(json_values()))
    elif roll == 16:
        depth = draw(st.integers(min_value=30, max_value=200_000))
        text = '{"input": ' + deep_json_text(depth, draw(st.sampled_from(["list", "dict"]))) + "}"
    elif roll == 17:
        text = draw(st.text(max_size=40))  # not JSON, or JSON by accident
    elif roll == 18:
        text = json.dumps({"input": draw(huge_strings(2_000_000))})
    else:
        raw = json.dumps({"input": draw(json_values())}).encode()
        cut = draw(st.integers(0, max(0, len(raw) - 1)))
        return raw[:cut] + draw(st.binary(max_size=8))  # truncated, maybe not UTF-8
    return text.encode("utf-8", "surrogatepass")


@st.composite
def http_requests(
    draw: st.DrawFn, *, key: bytes | None, marker: Path | None = None, endpoint: str = ENDPOINT
) -> dict[str, Any]:
    """One HTTP request spec: ``method``, ``path``, ``headers``, ``body``; ``job`` and
    ``worker`` are indexes the sender replaces with a real job or worker id (or leaves
    random), ``auth`` says which credential to send."""
    kind = draw(st.sampled_from(["client"] * 7 + ["worker"] * 2 + ["other"]))
    target = endpoint if draw(st.integers(0, 19)) else draw(st.sampled_from(["", "nope", "x y"]))
    spec: dict[str, Any] = {
        "job": draw(st.none() | st.integers(0, 50)),
        "worker": draw(st.none() | st.integers(0, 3)),
        "auth": draw(st.sampled_from(["none", "worker", "worker", "garbage"])),
        "query": draw(
            st.dictionaries(
                st.sampled_from(["wait", "batch_size", "job_in_progress", "isStream", "job_id"]),
                st.sampled_from(["0", "1", "50", "-1", "abc", "true", "1e3", ""]),
                max_size=2,
            )
        ),
    }
    if kind == "client":
        route = draw(st.sampled_from(("run",) * 6 + ("runsync",) * 3 + CLIENT_ROUTES))
        spec["path"] = f"/v2/{target}/{route}" + ("/{job}" if route in _JOB_ROUTES else "")
        spec["method"] = _ROUTE_METHODS[route]
        if draw(st.integers(0, 9)) == 0:
            spec["method"] = draw(st.sampled_from(METHODS))
        if route in ("run", "runsync"):
            spec["body"] = draw(request_bodies(key=key, marker=marker))
            if route == "runsync":
                # A short wait: jobs are quick, and a long default hold would stall the run.
                spec["query"]["wait"] = draw(st.sampled_from(["0", "50", "2000", "abc", "-5"]))
    elif kind == "worker":
        route = draw(st.sampled_from(WORKER_ROUTES))
        spec["path"] = f"/v2/{target}/{route}/{{worker}}" + (
            "/{job}" if route in ("job-done", "job-stream") else ""
        )
        spec["method"] = _ROUTE_METHODS[route]
        if draw(st.integers(0, 9)) == 0:
            spec["method"] = draw(st.sampled_from(METHODS))
        if route in ("job-take", "job-stop"):
            # A real worker's long poll would hold the run (and could take a real job).
            spec["worker"] = None
        if route == "job-take-batch" and spec["worker"] is not None:
            spec["query"]["batch_size"] = draw(st.sampled_from(["abc", "", "1.5"]))
        spec["body"] = draw(
            st.one_of(
                st.just(b""),
                json_values().map(lambda v: json.dumps(v).encode()),
                st.fixed_dictionaries(
                    {},
                    optional={
                        "output": json_values(),
                        "error": _wrong_type(),
                        "status": st.sampled_from(["IN_PROGRESS", "COMPLETED", "x"]),
                        "stopPod": st.booleans(),
                    },
                ).map(lambda v: json.dumps(v).encode()),
                st.binary(max_size=20),
            )
        )
    else:
        spec["path"] = draw(
            st.sampled_from(
                [
                    "/",
                    "/v2",
                    "/v2/",
                    f"/v2/{endpoint}",
                    f"/v2/{endpoint}/",
                    f"/v2/{endpoint}/run/extra",
                    "/v2//run",
                    f"/v2/{endpoint}/status/",
                    f"/v2/{endpoint}/status//",
                    "/openapi.json",
                    "/docs",
                    "/v3/x",
                    f"/v2/{endpoint}/%2e%2e/run",
                ]
            )
            | _ascii_text(30).map(lambda t: "/" + t.replace("?", "").replace("#", ""))
        )
        spec["method"] = draw(st.sampled_from(METHODS))
        spec["body"] = draw(st.binary(max_size=30))
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["content-type"] = draw(st.sampled_from(CONTENT_TYPES))
    if draw(st.integers(0, 4)) == 0:
        headers["idempotency-key"] = draw(_ascii_text(10)).strip()  # the client refuses edge spaces
    if draw(st.integers(0, 9)) == 0:
        headers[draw(st.sampled_from(["x-request-id", "accept", "accept-encoding", "expect"]))] = (
            draw(_ascii_text(20)).strip()
        )
    spec["headers"] = headers
    return spec


_JOB_ROUTES = ("status", "stream", "cancel", "retry")
_ROUTE_METHODS = {
    "run": "POST",
    "runsync": "POST",
    "status": "GET",
    "stream": "POST",
    "cancel": "POST",
    "retry": "POST",
    "purge-queue": "POST",
    "health": "GET",
    "openapi.json": "GET",
    "job-take": "GET",
    "job-take-batch": "GET",
    "job-stop": "GET",
    "job-done": "POST",
    "job-stream": "POST",
    "ping": "GET",
}
