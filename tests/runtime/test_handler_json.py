"""Typed JSON calls: validated against the build's schema, answered with JSON, no pickle."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from typing import Any

import pytest
from pydantic import TypeAdapter

from flash.runtime.generic_handler import create_handler


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Box:
    width: float
    height: float
    colour: Colour = Colour.RED


def area(box: Box, scale: int = 1) -> dict[str, Any]:
    return {"area": box.width * box.height * scale, "colour": box.colour}


async def tag(words: list[str], prefix: str | None = None) -> list[str]:
    return [f"{prefix or '#'}{w}" for w in words]


def untyped(x):  # type: ignore[no-untyped-def]
    return x


def schema_of(fn: Any) -> dict[str, Any]:
    """What the build records, made the same way (pydantic from the type hints)."""
    import inspect
    import typing

    hints = typing.get_type_hints(fn)
    params = inspect.signature(fn).parameters
    fields = {name: (hints[name], p.default) for name, p in params.items() if name != "self"}
    properties = {}
    defs: dict[str, Any] = {}
    for name, (hint, _default) in fields.items():
        schema = TypeAdapter(hint).json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        properties[name] = schema
    required = [n for n, (_, d) in fields.items() if d is inspect.Parameter.empty]
    input_schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
        "$defs": defs,
    }
    output = TypeAdapter(hints["return"]).json_schema()
    return {"input": input_schema, "output": output, "sha256": "test"}


def manifest(*fns: Any) -> dict[str, Any]:
    functions = [
        {"name": fn.__name__, "qualified_name": f"app.{fn.__name__}", "schema": schema_of(fn)}
        for fn in fns
    ]
    functions.append({"name": "untyped", "qualified_name": "app.untyped", "schema": None})
    return {"resources": {"api": {"functions": functions}}}


def handler_for(*fns: Any) -> Any:
    registry = {fn.__name__: fn for fn in (*fns, untyped)}
    registry.update({f"app.{fn.__name__}": fn for fn in (*fns, untyped)})
    return create_handler(
        registry, endpoint="api", signing_key=None, allow_unsigned=False, manifest=manifest(*fns)
    )


def run(handler: Any, payload: Any) -> dict[str, Any]:
    return asyncio.run(handler({"id": "j", "input": payload}))


def test_named_json_call_converts_arguments_and_answers_json() -> None:
    handler = handler_for(area, tag)
    answer = run(
        handler,
        {"function": "area", "kwargs": {"box": {"width": 2, "height": 3, "colour": "blue"}}},
    )
    assert answer["success"] and answer["encoding"] == "json"
    assert answer["result"] == {"area": 6.0, "colour": "blue"}
    answer = run(handler, {"function": "app.tag", "kwargs": {"words": ["a"], "prefix": "@"}})
    assert answer["result"] == ["@a"]


def test_one_function_endpoint_takes_the_kwargs_directly() -> None:
    handler = handler_for(area)
    answer = run(handler, {"box": {"width": 1, "height": 1}, "scale": 5})
    assert answer["result"] == {"area": 5.0, "colour": "red"}


def test_bad_fields_are_listed_and_the_function_is_not_called() -> None:
    calls: list[Any] = []

    def spy(box: Box, scale: int = 1) -> int:
        calls.append(box)
        return 0

    handler = handler_for(spy)
    answer = run(
        handler,
        {"function": "spy", "kwargs": {"box": {"width": "wide", "colour": "green"}, "x": 1}},
    )
    assert not answer["success"] and answer["error_type"] == "InvalidInput"
    paths = {issue["path"] for issue in answer["issues"]}
    assert {"kwargs.box.width", "kwargs.box.height", "kwargs.box.colour", "kwargs.x"} <= paths
    assert calls == []


def test_untyped_function_is_pickle_only_and_says_so() -> None:
    answer = run(handler_for(area), {"function": "untyped", "kwargs": {"x": 1}})
    assert answer["error_type"] == "NotJsonCallable" and "pickled calls only" in answer["error"]


def test_deeply_nested_json_is_refused_with_a_clear_error() -> None:
    deep: Any = "x"
    for _ in range(500):
        deep = [deep]
    answer = run(handler_for(tag), {"function": "tag", "kwargs": {"words": deep}})
    assert answer["error_type"] == "InvalidInput" and "nested deeper" in answer["error"]


@pytest.mark.parametrize(
    "payload",
    [{"function": "nope", "kwargs": {}}, {"function": 3, "kwargs": {}}],
)
def test_unknown_json_function(payload: dict[str, Any]) -> None:
    assert run(handler_for(area, tag), payload)["error_type"] == "UnknownFunction"


def test_ambiguous_bare_kwargs_on_a_multi_function_endpoint() -> None:
    answer = run(handler_for(area, tag), {"words": ["a"]})
    assert answer["error_type"] == "InvalidJob" and '"function"' in answer["error"]


class Scorer:
    built = 0

    def __init__(self, weights: dict[str, float]) -> None:
        Scorer.built += 1
        self.weights = weights

    def score(self, words: list[str]) -> float:
        return sum(self.weights.get(w, 0.0) for w in words)

    def raw(self, thing):  # type: ignore[no-untyped-def]
        return thing


def class_handler() -> Any:
    init = schema_of(Scorer.__init__)["input"]
    score = schema_of(Scorer.score)
    manifest = {
        "resources": {
            "api": {
                "functions": [
                    {
                        "name": "Scorer",
                        "qualified_name": "app.Scorer",
                        "schema": {
                            "init": init,
                            "methods": {"score": score},
                            "pickle_only_methods": {"raw": "parameter 'thing' has no annotation"},
                        },
                    }
                ]
            }
        }
    }
    return create_handler(
        {"Scorer": Scorer},
        endpoint="api",
        signing_key=None,
        allow_unsigned=False,
        manifest=manifest,
    )


def test_class_methods_take_json_and_keep_one_instance_per_init() -> None:
    handler = class_handler()
    Scorer.built = 0
    call = {"function": "Scorer", "init": {"weights": {"a": 1.5}}, "method": "score"}
    first = run(handler, {**call, "kwargs": {"words": ["a", "b", "a"]}})
    second = run(handler, {**call, "kwargs": {"words": ["a"]}})
    assert (first["result"], second["result"]) == (3.0, 1.5)
    assert Scorer.built == 1
    other = run(handler, {**call, "init": {"weights": {"b": 2}}, "kwargs": {"words": ["b"]}})
    assert other["result"] == 2.0 and Scorer.built == 2


def test_class_json_errors_name_the_problem() -> None:
    handler = class_handler()
    Scorer.built = 0
    bad_init = run(
        handler,
        {"function": "Scorer", "init": {"weights": 1}, "method": "score", "kwargs": {"words": []}},
    )
    assert bad_init["error_type"] == "InvalidInput"
    assert [i["path"] for i in bad_init["issues"]] == ["kwargs.weights"]
    assert Scorer.built == 0
    bad_method = run(
        handler,
        {"function": "Scorer", "init": {"weights": {}}, "method": "score", "kwargs": {"words": 3}},
    )
    assert [i["path"] for i in bad_method["issues"]] == ["kwargs.words"]
    assert Scorer.built == 0  # a bad call never costs a model load
    raw = run(handler, {"function": "Scorer", "init": {"weights": {}}, "method": "raw"})
    assert raw["error_type"] == "NotJsonCallable" and "no annotation" in raw["error"]
    nope = run(handler, {"function": "Scorer", "method": "nope"})
    assert nope["error_type"] == "UnknownMethod" and "score" in nope["error"]


def test_a_json_call_whose_caller_gave_up_does_not_start() -> None:
    import time

    from flash.runtime.context import CallContext

    calls: list[Any] = []

    def spy(x: int) -> int:
        calls.append(x)
        return x

    handler = handler_for(spy)
    late = CallContext(deadline=time.time() - 100, depth=1, chain=("spy",)).to_wire()
    answer = run(handler, {"function": "spy", "kwargs": {"x": 1}, "context": late})
    assert answer["error_type"] == "DeadlineExceeded" and "deadline passed" in answer["error"]
    assert calls == []
    on_time = CallContext(deadline=time.time() + 100, depth=1, chain=("spy",)).to_wire()
    assert run(handler, {"function": "spy", "kwargs": {"x": 2}, "context": on_time})["result"] == 2
