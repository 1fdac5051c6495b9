"""Typed JSON calls end to end: schema from the build, conversion to the annotated types,
the function called, its result back to JSON; with pydantic loaded and without it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import inspect
import json
import math
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest
from pydantic import BaseModel
from tests.helpers import run_isolated

from flash.build.schemas import SchemaResult
from flash.runtime.jsoncall import (
    JsonCallError,
    JsonResultError,
    bind_json_call,
    to_json_result,
)
from flash.runtime.jsonschema import validate
from flash.sdk.jsoncodec import codec_for

UUID = "123e4567-e89b-12d3-a456-426614174000"

# (function, kwargs, expected JSON result or {"issues": {path: message fragment}})
CASES: list[tuple[str, dict[str, Any], Any]] = [
    (
        "total",
        {
            "items": [
                {"name": "a", "price": 2.5, "qty": 2.0, "color": "blue"},
                {"name": "b", "price": 1},
            ],
            "options": {"fast": True, "label": "x"},
            "discount": 0.5,
        },
        {"amount": 3.0, "colors": ["blue", "red"], "fast": True, "label": "x"},
    ),
    ("tree_sum", {"root": {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]}}, 6),
    (
        "shapes",
        {
            "pair": [1, "a"],
            "tags": ["y", "x"],
            "weights": {"1": 0.5, "2": 1},
            "level": 2,
            "point": [3, 4],
        },
        [8, ["x", "y"], "a", 4],
    ),
    (
        "when",
        {"at": "2024-05-01T12:00:00Z", "ident": UUID},
        {"date": "2024-05-01", "hex": UUID.replace("-", ""), "tz": "UTC"},
    ),
    (
        "make_items",
        {"n": 2},
        [
            {"name": "i0", "price": 0.0, "qty": 1, "color": "blue"},
            {"name": "i1", "price": 0.5, "qty": 1, "color": "blue"},
        ],
    ),
    (
        "total",
        {"items": [{"name": 1, "price": "x"}], "options": {"fast": "yes"}, "bogus": 1},
        {
            "issues": {
                "kwargs.items[0].name": "expected string",
                "kwargs.items[0].price": "expected number",
                "kwargs.options.fast": "expected boolean",
                "kwargs.bogus": "unexpected field",
            }
        },
    ),
    (
        "shapes",
        {"pair": [1], "tags": [], "weights": {}, "level": 3, "point": [1, 2]},
        {"issues": {"kwargs.pair": "at least 2 items", "kwargs.level": "must be one of 1, 2"}},
    ),
    ("tree_sum", {}, {"issues": {"kwargs.root": "field required"}}),
    # Required/NotRequired TypedDict keys convert like any other.
    (
        "span",
        {"stamps": {"first": {"when": "2024-01-02"}, "last": {"when": "2024-01-05"}}},
        ["Stamp 2024-01-02", "Stamp 2024-01-05"],
    ),
    ("span", {"stamps": {"last": {"when": "2024-01-05"}}}, {"issues": {"kwargs.stamps.first": ""}}),
    # JSON object keys are text: an IntEnum key arrives as "1" and reaches the function a Level.
    ("by_level", {"weights": {"1": 0.5, "2": 2}}, [["Level", 1, 0.5], ["Level", 2, 2.0]]),
    (
        "by_level",
        {"weights": {"3": 1, "low": 2}},
        {
            "issues": {
                'kwargs.weights["3"]': "must be one of 1, 2",
                "kwargs.weights.low": "expected integer",
            }
        },
    ),
]


def _outcome(issues: list[Any], result: Any) -> Any:
    if issues:
        return {"issues": {path: message for path, message in issues}}
    return result


def _matches(outcome: Any, expected: Any) -> bool:
    if isinstance(expected, dict) and set(expected) == {"issues"}:
        got = outcome.get("issues") if isinstance(outcome, dict) else None
        return (
            got is not None
            and set(got) == set(expected["issues"])
            and all(frag in got[path] for path, frag in expected["issues"].items())
        )
    return bool(outcome == expected)


def _run(fn: Any, kwargs: dict[str, Any], schema: Any) -> Any:
    issues, bound = bind_json_call(fn, kwargs, schema)
    if issues:
        return _outcome(issues, None)
    result = fn.__wrapped__(**bound)
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    return json.loads(json.dumps(to_json_result(result)))


@pytest.mark.parametrize(("name", "kwargs", "expected"), CASES)
def test_json_calls_with_pydantic_loaded(
    derived: dict[str, SchemaResult],
    apps: dict[str, ModuleType],
    name: str,
    kwargs: dict[str, Any],
    expected: Any,
) -> None:
    assert "pydantic" in sys.modules
    schema = derived[f"typed_app.{name}"].input
    outcome = _run(getattr(apps["typed_app"], name), kwargs, schema)
    assert _matches(outcome, expected), outcome


WORKER = """
import asyncio, inspect, json, sys
sys.modules["pydantic"] = None  # a worker without pydantic: importing it fails
sys.path[:0] = [sys.argv[1]]
from flash.runtime.jsoncall import bind_json_call, to_json_result
import typed_app

out = []
for name, kwargs, schema in json.load(open(sys.argv[2])):
    fn = getattr(typed_app, name)
    issues, bound = bind_json_call(fn, kwargs, schema)
    if issues:
        out.append({"issues": {path: message for path, message in issues}})
        continue
    result = fn.__wrapped__(**bound)
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    out.append(to_json_result(result))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core"))
print(json.dumps({"out": out, "loaded": loaded, "flash": sys.modules["flash"].__file__}))
"""


def test_json_calls_in_a_worker_without_pydantic(
    tmp_path: Path, app_dir: Path, derived: dict[str, SchemaResult]
) -> None:
    cases = [(n, kw, derived[f"typed_app.{n}"].input) for n, kw, _ in CASES]
    answer = run_isolated(WORKER, app_dir, cases, tmp_path)
    assert answer["loaded"] == ["pydantic"]  # only the blocked entry: nothing imported it
    assert answer["flash"].startswith(str(app_dir))
    for (name, _, expected), outcome in zip(CASES, answer["out"], strict=True):
        assert _matches(outcome, expected), (name, outcome)


def test_pydantic_models_convert_and_validate(
    derived: dict[str, SchemaResult], apps: dict[str, ModuleType]
) -> None:
    schema = derived["models_app.rename"].input
    rename = apps["models_app"].rename
    outcome = _run(rename, {"user": {"id": 1, "name": "a"}, "name": "bo", "times": 2}, schema)
    assert outcome == {"id": 1, "name": "bobo", "tags": []}
    issues, bound = bind_json_call(rename, {"user": {"id": 1, "name": ""}, "name": "x"}, schema)
    assert [i.path for i in issues] == ["kwargs.user.name"] and bound == {}


def test_models_with_aliases_travel_by_their_aliases_both_ways(
    derived: dict[str, SchemaResult], apps: dict[str, ModuleType]
) -> None:
    # The Python client's codec, the build's schemas and the worker's conversion together.
    greet = apps["models_app"].greet
    schemas = derived["models_app.greet"]
    codec = codec_for(greet.__wrapped__)
    assert codec is not None and schemas.input is not None and schemas.output is not None
    kwargs = codec.encode((apps["models_app"].Person(fullName="Ada"),), {})
    assert kwargs == {"person": {"fullName": "Ada"}}
    issues, bound = bind_json_call(greet, kwargs, schemas.input)
    assert issues == []
    answer = to_json_result(greet.__wrapped__(**bound))
    assert answer == {"fullName": "Dr Ada"}
    assert validate(answer, schemas.output) == []  # what the published schema promises
    assert codec.decode(answer).full_name == "Dr Ada"


def test_unresolvable_hints_are_the_functions_fault(apps: dict[str, ModuleType]) -> None:
    with pytest.raises(JsonCallError, match="NameError"):
        bind_json_call(apps["typed_app"].unresolved, {"x": 1}, {"type": "object"})


def test_kwargs_must_be_an_object(
    derived: dict[str, SchemaResult], apps: dict[str, ModuleType]
) -> None:
    schema = derived["typed_app.make_items"].input
    issues, _ = bind_json_call(apps["typed_app"].make_items, [1], schema)
    assert issues and issues[0].path == "kwargs" and "expected object" in issues[0].message


# ---------------------------------------------------------------- results


class Shade(enum.Enum):
    DARK = "dark"


class Pair(NamedTuple):
    a: int
    b: float


@dataclasses.dataclass
class Box:
    shade: Shade
    sizes: tuple[int, ...]
    labels: frozenset[str]


class Account(BaseModel):
    id: int
    created: datetime.date


def test_to_json_result_converts_the_usual_types() -> None:
    value = {
        "box": Box(Shade.DARK, (1, 2), frozenset({"x"})),
        "pair": Pair(1, 2.5),
        "account": Account(id=3, created=datetime.date(2024, 1, 2)),
        Shade.DARK: [datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.time(1, 2)],
        1: decimal.Decimal("1.50"),
        "id": uuid.UUID(UUID),
        "path": Path("/tmp/x"),
        "text": b"caf\xc3\xa9",
        "wait": datetime.timedelta(days=1, hours=2, seconds=3.5),
        "floats": (0.5, 1, None, "s"),
    }
    assert to_json_result(value) == {
        "box": {"shade": "dark", "sizes": [1, 2], "labels": ["x"]},
        "pair": [1, 2.5],
        "account": {"id": 3, "created": "2024-01-02"},
        "dark": ["2024-01-02T03:04:05", "01:02:00"],
        "1": "1.50",
        "id": UUID,
        "path": "/tmp/x",
        "text": "café",
        "wait": "P1DT2H3.5S",
        "floats": [0.5, 1, None, "s"],
    }


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        (object(), "result", "builtins.object has no JSON form"),
        ({"a": [1, [2, object()]]}, "result.a[1][1]", "has no JSON form"),
        ([1.0, math.nan], "result[1]", "nan has no JSON form"),
        ({"x": math.inf}, "result.x", "inf has no JSON form"),
        (b"\xff", "result", "not UTF-8"),
        ({(1, 2): 3}, "result", "a key of type tuple"),
    ],
)
def test_values_without_json_form_are_clear_errors(value: Any, path: str, fragment: str) -> None:
    with pytest.raises(JsonResultError) as info:
        to_json_result(value)
    assert info.value.path == path and fragment in str(info.value)


def test_deep_results_are_refused_not_a_crash() -> None:
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep, {"k": 1}]
    with pytest.raises(JsonResultError, match="nested deeper"):
        to_json_result(deep)


def test_big_flat_lists_pass_through() -> None:
    values = [i / 3 for i in range(200_000)]
    assert to_json_result(values) is values
    assert to_json_result([10**400, 1.5]) == [10**400, 1.5]


def test_runtime_modules_import_with_the_standard_library_alone(tmp_path: Path) -> None:
    runtime = tmp_path / "flash" / "runtime"
    runtime.mkdir(parents=True)
    (tmp_path / "flash" / "__init__.py").write_text("")
    (runtime / "__init__.py").write_text("")
    source = Path(__file__).resolve().parents[2] / "src" / "flash" / "runtime"
    for name in ("signing.py", "context.py", "jsonschema.py", "jsoncall.py", "protocol.py"):
        (runtime / name).write_text((source / name).read_text())
    # With site-packages on the path: pydantic and cloudpickle are importable, so any import
    # of them, guarded or not, would show among the loaded modules.
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import pydantic, cloudpickle\n"
        "del sys.modules['pydantic'], sys.modules['cloudpickle']; before = set(sys.modules)\n"
        "import flash.runtime.signing, flash.runtime.jsonschema, flash.runtime.jsoncall\n"
        "import flash.runtime.protocol\n"
        "print(sys.version_info[0], sorted(set(sys.modules) - before))"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.split(" ", 1)[1]
    assert "pydantic" not in loaded and "cloudpickle" not in loaded


def test_numbers_json_cannot_hold_are_refused_wherever_they_are() -> None:
    floats = {"type": "array", "items": {"type": "number"}}
    big = [i / 3 for i in range(100_000)]
    assert validate(big, floats, path="kwargs.xs") == []
    assert validate([1e308, 1e308, -1e308], floats) == []  # finite, though their sum is not
    for bad in (math.inf, -math.inf, math.nan):
        (issue,) = validate([*big, bad], floats, path="kwargs.xs")
        assert issue.path == "kwargs.xs[100000]" and "not a JSON number" in issue.message
    nested = {"type": "object", "additionalProperties": {"type": "number"}}
    (issue,) = validate({"a": 1.5, "b": json.loads("1e400")}, nested, path="kwargs.m")
    assert issue.path == "kwargs.m.b" and "1e400" in issue.message
    (issue,) = validate(json.loads("-1e400"), {}, path="kwargs.anything")
    assert issue.path == "kwargs.anything" and "-Infinity" in issue.message


@pytest.mark.parametrize(
    "delta",
    [
        datetime.timedelta(microseconds=5),  # "PT5e-06S" before, which no reader takes
        datetime.timedelta(seconds=59.999999),  # "PT60S" before: a whole minute
        datetime.timedelta(seconds=12.345678),
        -datetime.timedelta(days=2, seconds=1.5),
    ],
)
def test_a_duration_result_reads_back_as_itself(delta: datetime.timedelta) -> None:
    from pydantic import TypeAdapter

    text = to_json_result(delta)
    assert TypeAdapter(datetime.timedelta).validate_python(text) == delta, text
