"""The per-endpoint OpenAPI document describes what the gateway answers."""

from __future__ import annotations

import html
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, TypeAdapter

from flash.build.manifest import schema_record
from flash.build.schemas import derive_schemas
from flash.platform.gateway import openapi_schema
from flash.platform.openapi import docs_page, endpoint_document, example
from flash.runtime.jsoncall import bind_json_call
from flash.runtime.jsonschema import validate

TYPED = {"input": {"type": "object", "properties": {}}, "output": {"type": "integer"}}


def _resource(*functions: dict[str, Any]) -> dict[str, Any]:
    return {"functions": list(functions)}


def _answer(document: dict[str, Any]) -> dict[str, Any]:
    ok = document["paths"]["/runsync"]["post"]["responses"]["200"]
    return dict(ok["content"]["application/json"]["schema"])


def _policy(document: dict[str, Any]) -> dict[str, Any]:
    body = document["paths"]["/run"]["post"]["requestBody"]["content"]["application/json"]
    return dict(body["schema"]["properties"]["policy"]["properties"])


def test_policy_lists_every_field_the_gateway_takes() -> None:
    policy = _policy(endpoint_document("e", _resource(), "http://x"))
    assert set(policy) == {"executionTimeout", "ttl", "lowPriority"}
    assert policy["ttl"]["maximum"] == 7 * 24 * 3600 * 1000


def test_an_endpoint_with_a_generator_answers_with_a_list() -> None:
    plain = {"name": "f", "qualified_name": "m.f", "schema": TYPED}
    generator = {"name": "g", "qualified_name": "m.g", "schema": TYPED, "is_generator": True}
    alone = _answer(endpoint_document("e", _resource(plain), "http://x"))
    assert alone["properties"]["output"]["type"] == "object"
    mixed = endpoint_document("e", _resource(plain, generator), "http://x")
    output = _answer(mixed)["properties"]["output"]
    assert output["type"] == "array" and output["items"]["type"] == "object"
    assert "list of its answers" in mixed["info"]["description"]


NEEDS_X = {
    "input": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
    "output": {"type": "integer"},
}
COUNTER = {  # a class: a constructor with nothing required, a method needing "by"
    "init": {"type": "object", "properties": {"start": {"type": "integer"}}},
    "methods": {
        "inc": {
            "input": {
                "type": "object",
                "properties": {"by": {"type": "integer"}},
                "required": ["by"],
            },
            "output": {"type": "integer"},
        }
    },
}


def _takes(document: dict[str, Any], job_input: Any) -> bool:
    """Whether the published /runsync request schema takes ``{"input": job_input}``."""
    body = document["paths"]["/runsync"]["post"]["requestBody"]["content"]["application/json"]
    root = {**body["schema"], "components": document["components"]}
    return not validate({"input": job_input}, root)


def test_kwargs_are_required_only_where_an_argument_is() -> None:
    free = {"name": "f", "qualified_name": "m.f", "schema": TYPED}
    needs = {"name": "g", "qualified_name": "m.g", "schema": NEEDS_X}
    counter = {"name": "Counter", "qualified_name": "m.Counter", "schema": COUNTER}
    document = endpoint_document("e", _resource(free, needs, counter), "http://x")
    assert _takes(document, {"function": "f"})  # called with no arguments, as the gateway does
    assert not _takes(document, {"function": "g"})
    assert _takes(document, {"function": "g", "kwargs": {"x": 1}})
    assert _takes(document, {"function": "Counter", "method": "inc", "kwargs": {"by": 1}})
    assert not _takes(document, {"function": "Counter", "method": "inc"})
    assert not _takes(document, {"x": 1})  # bare arguments: which function's?


def test_a_short_name_two_functions_share_is_neither_offered_nor_shown() -> None:
    # The handler answers "no function named 'big'" for a short name two functions share:
    # the document, its examples and /docs call each by its qualified name.
    one = {"name": "big", "qualified_name": "m.big", "schema": NEEDS_X}
    other = {"name": "big", "qualified_name": "n.big", "schema": NEEDS_X}
    alone = {"name": "g", "qualified_name": "m.g", "schema": NEEDS_X}
    document = endpoint_document("e", _resource(one, other, alone), "http://x")
    assert not _takes(document, {"function": "big", "kwargs": {"x": 1}})
    assert _takes(document, {"function": "n.big", "kwargs": {"x": 1}})
    assert _takes(document, {"function": "g", "kwargs": {"x": 1}})
    body = document["paths"]["/runsync"]["post"]["requestBody"]["content"]["application/json"]
    called = {e["value"]["input"]["function"] for e in body["examples"].values()}
    assert called == {"m.big", "n.big", "g"}, called
    page = docs_page([("e", _resource(one, other, alone))])
    assert html.escape('"function": "big"') not in page
    assert html.escape('"function": "m.big"') in page and html.escape('"function": "g"') in page


def test_the_one_function_of_an_endpoint_takes_its_arguments_alone() -> None:
    needs = {"name": "g", "qualified_name": "m.g", "schema": NEEDS_X}
    document = endpoint_document("e", _resource(needs), "http://x")
    assert _takes(document, {"x": 1})
    assert _takes(document, {"function": "g", "kwargs": {"x": 1}})
    assert not _takes(document, {"x": "one"})


def test_run_answers_with_the_id_and_status_only() -> None:
    document = endpoint_document("e", _resource(), "http://x")
    ok = document["paths"]["/run"]["post"]["responses"]["200"]
    queued = ok["content"]["application/json"]["schema"]
    assert set(queued["properties"]) == {"id", "status"}
    assert queued["properties"]["status"] == {"const": "IN_QUEUE"}
    assert "output" in _answer(document)["properties"]  # /runsync answers with the output


def _item(field: str) -> dict[str, Any]:
    return {"type": "object", "properties": {field: {"type": "integer"}}, "required": [field]}


# convert(x: list[ma.Item]) -> list[mb.Item]: two classes named Item, one in, one out.
CONVERT = {
    "input": {
        "type": "object",
        "properties": {"x": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
        "required": ["x"],
        "$defs": {"Item": _item("a")},
    },
    "output": {
        "type": "array",
        "items": {"$ref": "#/$defs/Item"},
        "$defs": {"Item": _item("b")},
    },
}


def _gives(document: dict[str, Any], output: Any) -> bool:
    """Whether the published /runsync answer schema takes ``output``."""
    root = {**_answer(document), "components": document["components"]}
    return not validate({"status": "COMPLETED", "output": output}, root)


def test_parameter_and_result_classes_of_one_name_keep_their_own_schemas() -> None:
    convert = {"name": "convert", "qualified_name": "m.convert", "schema": CONVERT}
    counter = {  # the same for a class's constructor, method arguments and method result
        "name": "Conv",
        "qualified_name": "m.Conv",
        "schema": {
            "init": {**CONVERT["input"], "required": []},
            "methods": {"run": {"input": CONVERT["input"], "output": CONVERT["output"]}},
        },
    }
    document = endpoint_document("e", _resource(convert, counter), "http://x")
    a, b = [{"a": 1}], [{"b": 1}]
    assert _takes(document, {"function": "convert", "kwargs": {"x": a}})
    assert not _takes(document, {"function": "convert", "kwargs": {"x": b}})
    assert _takes(
        document, {"function": "Conv", "init": {"x": a}, "method": "run", "kwargs": {"x": a}}
    )
    assert not _takes(document, {"function": "Conv", "method": "run", "kwargs": {"x": b}})
    assert not _takes(
        document, {"function": "Conv", "init": {"x": b}, "method": "run", "kwargs": {"x": a}}
    )
    components = document["components"]["schemas"]
    assert (
        validate(b, components["m.convert.result"] | {"components": document["components"]}) == []
    )
    assert validate(a, components["m.convert.result"] | {"components": document["components"]})
    assert (
        validate(b, components["m.Conv.run.result"] | {"components": document["components"]}) == []
    )


def test_answers_of_functions_sharing_a_result_type_or_returning_any_are_valid() -> None:
    one = {"name": "f", "qualified_name": "m.f", "schema": TYPED}
    same = {"name": "g", "qualified_name": "m.g", "schema": TYPED}
    anything = {"name": "h", "qualified_name": "m.h", "schema": {**TYPED, "output": {}}}
    for functions in ((one, same), (one, anything)):
        document = endpoint_document("e", _resource(*functions), "http://x")
        assert _gives(document, {"success": True, "result": 3, "encoding": "json"})
    document = endpoint_document("e", _resource(one, same), "http://x")
    assert not _gives(document, {"success": True, "result": "three", "encoding": "json"})


DOCS_APP = """
import dataclasses
import datetime
import enum
import typing
import uuid


class Color(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


def kinds(
    day: datetime.date,
    when: datetime.datetime,
    span: datetime.timedelta,
    key: uuid.UUID,
    color: Color,
    pair: tuple[int, str],
    points: list[Point],
    weights: dict[str, float],
    mode: typing.Literal["fast", "slow"],
    limit: int | None,
    note: str = "",
) -> int:
    return len(points)


class Counter:
    def __init__(self, start: int, label: str = "c") -> None:
        self.n = start

    def incr(self, by: int) -> int:
        self.n += by
        return self.n

    def reset(self) -> None:
        self.n = 0
"""


def test_docs_show_every_method_with_a_request_that_calls_it(tmp_path: Path) -> None:
    # /docs once listed a class's method names alone, and every example sent empty
    # arguments, which the gateway refuses as soon as one is required.
    (tmp_path / "docsapp.py").write_text(DOCS_APP)
    names = ("kinds", "Counter")
    derived = derive_schemas(tmp_path, None, [(f"docsapp.{n}", "docsapp", n) for n in names])
    functions = []
    for name in names:
        record = schema_record(derived[f"docsapp.{name}"])
        assert record is not None, derived[f"docsapp.{name}"].reason
        schema = record.model_dump(mode="json", by_alias=True)
        functions.append({"name": name, "qualified_name": f"docsapp.{name}", "schema": schema})
    page = docs_page([("e", {"functions": functions})])
    bodies = [
        json.loads(html.unescape(code))["input"]
        for code in re.findall("runsync <code>(.*?)</code>", page)
    ]
    assert [(b["function"], b.get("method")) for b in bodies] == [
        ("kinds", None),
        ("Counter", "incr"),
        ("Counter", "reset"),
    ]
    assert "docsapp.Counter.incr</h4>" in page and "docsapp.Counter.reset</h4>" in page
    # The OpenAPI document offers the same requests as examples (Swagger UI fills them in).
    document = endpoint_document("e", {"functions": functions}, "http://x")
    media = document["paths"]["/runsync"]["post"]["requestBody"]["content"]["application/json"]
    assert [e["value"]["input"] for e in media["examples"].values()] == bodies
    # Each example passes the checks the gateway and the worker make: the function runs.
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("docsapp")
        kinds, counter, reset = bodies
        issues, bound = bind_json_call(
            module.kinds, kinds["kwargs"], functions[0]["schema"]["input"]
        )
        assert issues == [] and module.kinds(**bound) == 1
        schema = functions[1]["schema"]
        assert counter["init"] == {"start": 0} and counter["kwargs"] == {"by": 0}
        for body, answer in ((counter, 0), (reset, None)):
            init_issues, init = bind_json_call(module.Counter, body["init"], schema["init"], "init")
            method = getattr(module.Counter, body["method"])
            issues, bound = bind_json_call(
                method, body["kwargs"], schema["methods"][body["method"]]["input"]
            )
            assert init_issues == [] and issues == []
            assert method(module.Counter(**init), **bound) == answer
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("docsapp", None)


@pytest.mark.parametrize(
    "annotation",
    [
        Annotated[float, Field(gt=0, lt=1)],  # a probability: 0 is not one
        Annotated[str, Field(max_length=3)],
        Annotated[str, Field(min_length=10)],
        Annotated[list[int], Field(max_length=0)],
        Annotated[int, Field(multiple_of=7, ge=1)],
        Annotated[set[str], Field(min_length=2)],
        Annotated[int, Field(gt=10, lt=20)],
        Annotated[float, Field(lt=0)],
    ],
)
def test_an_example_keeps_within_the_bounds_of_its_schema(annotation: Any) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    adapter.validate_python(example(adapter.json_schema()))


class Tree(BaseModel):
    children: Annotated[list[Tree], Field(min_length=8)]


def test_a_model_that_requires_itself_gives_an_example_of_bounded_size() -> None:
    assert len(json.dumps(example(TypeAdapter(Tree).json_schema()))) < 100_000


def test_the_platform_document_declares_every_path_parameter_and_option() -> None:
    # OpenAPI requires each {name} of a path to be a declared, required path parameter.
    document = openapi_schema()
    for path, item in document["paths"].items():
        wanted = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            if method == "parameters":
                continue
            declared = {
                p["name"]: p
                for p in [*item.get("parameters", []), *operation.get("parameters", [])]
            }
            paths = {n for n, p in declared.items() if p["in"] == "path" and p["required"]}
            assert paths == wanted, (path, method, declared)
    paths = document["paths"]
    runsync = paths["/v2/{endpoint_id}/runsync"]["post"]
    assert [p["name"] for p in runsync["parameters"]] == ["wait"]
    assert [p["name"] for p in paths["/v2/{endpoint_id}/status/{job_id}"]["get"]["parameters"]] == [
        "ttl"
    ]
    body = runsync["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["input"]
    # The same job options as each endpoint's own document.
    assert set(body["properties"]["policy"]["properties"]) == set(
        _policy(endpoint_document("e", _resource(), "http://x"))
    )
