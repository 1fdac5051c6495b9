"""Typed JSON calls: validated against the build's schema, answered with JSON, no pickle."""

from __future__ import annotations

import asyncio
import datetime
import importlib.util
import inspect
import json
import sys
import textwrap
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from flash.build.manifest import schema_record
from flash.build.schemas import derive_schemas
from flash.runtime import signing
from flash.runtime.context import CallContext
from flash.runtime.generic_handler import create_handler
from flash.runtime.signing import generate_key, sign_request, verify_result

# The endpoint's code. Its schemas come from the build's own derivation (a child interpreter
# reading this source), and the handler runs the same source imported here.
APP = """
from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
from collections.abc import Iterator
from typing import Any


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Box:
    width: float
    height: float
    colour: Colour = Colour.RED


CALLS: list[Any] = []  # what the spies were called with


def area(box: Box, scale: int = 1) -> dict[str, Any]:
    return {"area": box.width * box.height * scale, "colour": box.colour}


async def tag(words: list[str], prefix: str | None = None) -> list[str]:
    return [f"{prefix or '#'}{w}" for w in words]


def untyped(x):
    return x


def box_spy(box: Box, scale: int = 1) -> int:
    CALLS.append(box)
    return 0


def int_spy(x: int) -> int:
    CALLS.append(x)
    return x


def repeat(function: str, times: int = 1) -> str:  # an argument named like the job's field
    return function * times


class Scorer:
    built = 0

    def __init__(self, weights: dict[str, float]) -> None:
        Scorer.built += 1
        self.weights = weights

    def score(self, words: list[str]) -> float:
        return sum(self.weights.get(w, 0.0) for w in words)

    def raw(self, thing):
        return thing

    def label(self) -> int:
        return "not an int"

    def upto(self, n: int) -> Iterator[int]:
        yield from range(n)


def float_spy(x: float, xs: list[float] | None = None) -> float:
    CALLS.append((x, xs))
    return 0.0


def bad_return(x: int) -> int:
    return "not an int"


def bad_items(n: int) -> list[Box]:
    return [Box(1, 2), {"width": "wide", "height": 1}]


def when(at: datetime.datetime | None = None, day: datetime.date | None = None) -> str:
    CALLS.append((at, day))
    return "ok"


def pay(amt: decimal.Decimal, n: int) -> str:
    CALLS.append(amt)
    return str(amt * n)


def keys(d: dict[int, str]) -> int:
    CALLS.append(d)
    return len(d)
"""
NAMES = (
    "area",
    "tag",
    "untyped",
    "box_spy",
    "int_spy",
    "repeat",
    "Scorer",
    "float_spy",
    "bad_return",
    "bad_items",
    "when",
    "pay",
    "keys",
)
App = tuple[ModuleType, dict[str, Any]]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app module and, by name, the manifest entry the build records for each function."""
    root = tmp_path_factory.mktemp("json-app")
    (root / "app.py").write_text(textwrap.dedent(APP))
    derived = derive_schemas(root, None, [(f"app.{name}", "app", name) for name in NAMES])
    entries = {}
    for name in NAMES:
        record = schema_record(derived[f"app.{name}"])
        entries[name] = {
            "name": name,
            "qualified_name": f"app.{name}",
            "schema": None if record is None else record.model_dump(mode="json", by_alias=True),
            "pickle_only": derived[f"app.{name}"].reason,
        }
    spec = importlib.util.spec_from_file_location("app", root / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module, entries
    finally:
        del sys.modules["app"]


@pytest.fixture
def handler_for(app: App) -> Any:
    """A handler serving the named functions, and ``untyped``, as one endpoint."""
    module, entries = app
    module.CALLS.clear()

    def make(*names: str, signing_key: bytes | None = None, streaming: bool = False) -> Any:
        served = (*names, "untyped")
        registry = {key: getattr(module, n) for n in served for key in (n, f"app.{n}")}
        if streaming:  # a generator on the endpoint: its handler streams every answer
            registry["ticks"] = _ticks
        manifest = {"resources": {"api": {"functions": [entries[n] for n in served]}}}
        return create_handler(
            registry,
            endpoint="api",
            signing_key=signing_key,
            allow_unsigned=False,
            manifest=manifest,
        )

    return make


def _ticks(n: int) -> Iterator[int]:
    yield from range(n)


def run(handler: Any, payload: Any) -> dict[str, Any]:
    """The answer to a job that answers once. An endpoint with a generator (a class's
    generator method too) has a streaming handler: its one answer, a failure read back from
    the JSON text it streams it as."""
    if inspect.isasyncgenfunction(handler):
        (answer,) = run_streaming(handler, payload)
        if set(answer) == {"error"}:
            answer = json.loads(answer["error"])
            answer.pop("item")
        return answer
    return asyncio.run(handler({"id": "j", "input": payload}))


def run_streaming(handler: Any, payload: Any) -> list[dict[str, Any]]:
    async def items() -> list[dict[str, Any]]:
        return [item async for item in handler({"id": "j", "input": payload})]

    return asyncio.run(items())


def test_named_json_call_converts_arguments_and_answers_json(handler_for: Any) -> None:
    handler = handler_for("area", "tag")
    answer = run(
        handler,
        {"function": "area", "kwargs": {"box": {"width": 2, "height": 3, "colour": "blue"}}},
    )
    assert answer["success"] and answer["encoding"] == "json"
    assert answer["result"] == {"area": 6.0, "colour": "blue"}
    answer = run(handler, {"function": "app.tag", "kwargs": {"words": ["a"], "prefix": "@"}})
    assert answer["result"] == ["@a"]


def test_one_function_endpoint_takes_the_kwargs_directly(handler_for: Any) -> None:
    handler = handler_for("area")
    answer = run(handler, {"box": {"width": 1, "height": 1}, "scale": 5})
    assert answer["result"] == {"area": 5.0, "colour": "red"}


def test_a_named_call_with_a_mistake_is_told_about_that_mistake(handler_for: Any) -> None:
    # On a one-function endpoint too: not read as bare kwargs named function/kwargs/extra.
    box = {"box": {"width": 1, "height": 1}}
    for names in (("area",), ("area", "tag")):
        handler = handler_for(*names)
        extra = run(handler, {"function": "area", "kwargs": box, "extra": 1})
        assert extra["error_type"] == "InvalidJob" and "'extra'" in extra["error"], extra
        bare = run(handler, {"function": "area"})  # no kwargs: called with none
        assert [i["path"] for i in bare["issues"]] == ["kwargs.box"], bare
    for absent in ({"function": "tag"}, {"function": "tag", "kwargs": None}):
        # null is no kwargs, as a signature sees it: both are told of the missing argument.
        assert run(handler_for("area", "tag"), absent)["issues"][0]["path"] == "kwargs.words"


def test_a_function_taking_an_argument_named_function_takes_bare_kwargs(
    handler_for: Any,
) -> None:
    handler = handler_for("repeat")
    assert run(handler, {"function": "ab", "times": 2})["result"] == "abab"
    assert run(handler, {"function": "ab"})["result"] == "ab"
    named = {"function": "repeat", "kwargs": {"function": "x", "times": 3}}
    assert run(handler, named)["result"] == "xxx"


def test_bad_fields_are_listed_and_the_function_is_not_called(handler_for: Any, app: App) -> None:
    answer = run(
        handler_for("box_spy"),
        {"function": "box_spy", "kwargs": {"box": {"width": "wide", "colour": "green"}, "x": 1}},
    )
    assert not answer["success"] and answer["error_type"] == "InvalidInput"
    paths = {issue["path"] for issue in answer["issues"]}
    assert {"kwargs.box.width", "kwargs.box.height", "kwargs.box.colour", "kwargs.x"} <= paths
    assert app[0].CALLS == []


def test_untyped_function_is_pickle_only_and_says_so(handler_for: Any) -> None:
    answer = run(handler_for("area"), {"function": "untyped", "kwargs": {"x": 1}})
    assert answer["error_type"] == "NotJsonCallable" and "pickled calls only" in answer["error"]


def test_deeply_nested_json_is_refused_with_a_clear_error(handler_for: Any) -> None:
    deep: Any = "x"
    for _ in range(500):
        deep = [deep]
    answer = run(handler_for("tag"), {"function": "tag", "kwargs": {"words": deep}})
    assert answer["error_type"] == "InvalidInput" and "nested deeper" in answer["error"]
    # Like every InvalidInput, it lists the issue: where the JSON got too deep.
    (issue,) = answer["issues"]
    assert issue["path"].startswith("kwargs.words[0][0]") and "(64 levels)" in issue["path"]
    assert "nested deeper than 64 levels" in issue["message"]
    deep_init = run(
        handler_for("Scorer"),
        {"function": "Scorer", "init": {"weights": {"a": deep}}, "method": "score"},
    )
    assert deep_init["issues"][0]["path"].startswith("init.weights.a[0]"), deep_init


@pytest.mark.parametrize(
    "payload",
    [{"function": "nope", "kwargs": {}}, {"function": 3, "kwargs": {}}],
)
def test_unknown_json_function(handler_for: Any, payload: dict[str, Any]) -> None:
    assert run(handler_for("area", "tag"), payload)["error_type"] == "UnknownFunction"


def test_ambiguous_bare_kwargs_on_a_multi_function_endpoint(handler_for: Any) -> None:
    answer = run(handler_for("area", "tag"), {"words": ["a"]})
    assert answer["error_type"] == "InvalidJob" and '"function"' in answer["error"]


def test_class_methods_take_json_and_keep_one_instance_per_init(handler_for: Any, app: App) -> None:
    handler = handler_for("Scorer")
    Scorer = app[0].Scorer
    Scorer.built = 0
    call = {"function": "Scorer", "init": {"weights": {"a": 1.5}}, "method": "score"}
    first = run(handler, {**call, "kwargs": {"words": ["a", "b", "a"]}})
    second = run(handler, {**call, "kwargs": {"words": ["a"]}})
    assert (first["result"], second["result"]) == (3.0, 1.5)
    assert Scorer.built == 1
    other = run(handler, {**call, "init": {"weights": {"b": 2}}, "kwargs": {"words": ["b"]}})
    assert other["result"] == 2.0 and Scorer.built == 2


def test_class_json_errors_name_the_problem(handler_for: Any, app: App) -> None:
    handler = handler_for("Scorer")
    Scorer = app[0].Scorer
    Scorer.built = 0
    bad_init = run(
        handler,
        {"function": "Scorer", "init": {"weights": 1}, "method": "score", "kwargs": {"words": []}},
    )
    assert bad_init["error_type"] == "InvalidInput"
    assert [i["path"] for i in bad_init["issues"]] == ["init.weights"]
    assert Scorer.built == 0
    bad_method = run(
        handler,
        {"function": "Scorer", "init": {"weights": {}}, "method": "score", "kwargs": {"words": 3}},
    )
    assert [i["path"] for i in bad_method["issues"]] == ["kwargs.words"]
    assert Scorer.built == 0  # a bad call never costs a model load
    raw = run(handler, {"function": "Scorer", "init": {"weights": {}}, "method": "raw"})
    assert raw["error_type"] == "NotJsonCallable" and "no type annotation" in raw["error"]
    nope = run(handler, {"function": "Scorer", "method": "nope"})
    assert nope["error_type"] == "UnknownMethod" and "score" in nope["error"]


def test_a_class_call_missing_function_or_method_says_which(handler_for: Any, app: App) -> None:
    handler = handler_for("Scorer")
    app[0].Scorer.built = 0
    no_class = run(handler, {"method": "score", "kwargs": {"words": ["a"]}})
    assert no_class["error_type"] == "InvalidJob", no_class
    assert "missing 'function'" in no_class["error"] and "Scorer" in no_class["error"]
    init = {"weights": {"a": 1}}
    for no_method in ({"function": "Scorer", "init": init}, {"function": "Scorer"}):
        answer = run(handler, no_method)
        assert answer["error_type"] == "InvalidJob", answer
        assert "'method'" in answer["error"] and "score" in answer["error"], answer
    extra = run(handler, {"function": "Scorer", "method": "score", "init": init, "x": 1})
    assert "'x'" in extra["error"] and "'method'" not in extra["error"], extra
    # Bare arguments of a one-function endpoint may hold a "method": they are not a class call.
    bare = run(handler_for("repeat"), {"function": "ab", "method": "x"})
    assert [i["path"] for i in bare["issues"]] == ["kwargs.method"], bare
    assert app[0].Scorer.built == 0


def test_a_json_call_whose_caller_gave_up_does_not_start(handler_for: Any, app: App) -> None:
    handler = handler_for("int_spy")
    late = CallContext(deadline=time.time() - 100, depth=1, chain=("int_spy",)).to_wire()
    answer = run(handler, {"function": "int_spy", "kwargs": {"x": 1}, "context": late})
    assert answer["error_type"] == "DeadlineExceeded" and "deadline passed" in answer["error"]
    assert app[0].CALLS == []
    on_time = CallContext(deadline=time.time() + 100, depth=1, chain=("int_spy",)).to_wire()
    answer = run(handler, {"function": "int_spy", "kwargs": {"x": 2}, "context": on_time})
    assert answer["result"] == 2


def test_a_signed_json_call_is_checked_and_answered_signed(
    handler_for: Any, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Python client holding the app's key signs JSON calls, so that their answers (and
    # the pickled exceptions in them) come back signed; a bad signature is refused.
    key = generate_key()
    handler = handler_for("int_spy", signing_key=key)

    def signed(kwargs: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"function": "int_spy", "kwargs": kwargs}
        payload["signature"] = sign_request(
            key, endpoint="api", function="int_spy", fields=payload, deadline=time.time() + 60
        )
        return payload

    # A result is data, and the caller checks only a failure's signature (only a failure
    # carries a pickle): a success goes unsigned, so a big result costs no walk over it.
    payload = signed({"x": 4})
    answer = run(handler, payload)
    assert answer["success"] and answer["result"] == 4 and "mac" not in answer
    failing = signed({"x": "four"})
    failure = run(handler, failing)
    assert failure["error_type"] == "InvalidInput" and failure["issues"]
    mac = failure.pop("mac")
    verify_result(key, mac, nonce=failing["signature"]["nonce"], result_fields=failure)

    altered = signed({"x": 4})
    altered["kwargs"] = {"x": 5}
    refused = run(handler, altered)
    assert refused["error_type"] == "SignatureRejected" and "altered" in refused["error"]
    assert app[0].CALLS == [4]  # the altered call never ran

    # On a one-function endpoint, bare arguments are a JSON job too; a signed job must name
    # its function, or arguments could be swapped under a signature that covers "kwargs".
    bare = run(handler_for("int_spy", signing_key=key), {"x": 4, "signature": signed({})})
    assert bare["error_type"] == "InvalidJob" and "names its function" in bare["error"]

    # A caller on another Python talks JSON to this worker: no version mismatch here.
    with monkeypatch.context() as other_python:
        other_python.setattr(signing, "_LOCAL_VERSIONS", {"python": "3.9", "cloudpickle": "2.2"})
        from_other_python = signed({"x": 6})
    assert run(handler, from_other_python)["result"] == 6

    # A streaming endpoint answers with items, signed under their position: a JSON success
    # goes unsigned there too, a failure signed.
    streaming = handler_for("int_spy", signing_key=key, streaming=True)
    (item,) = run_streaming(streaming, signed({"x": 7}))
    assert item["result"] == 7 and "mac" not in item
    failing = signed({"x": "seven"})
    (item,) = run_streaming(streaming, failing)
    failure = json.loads(item["error"])
    assert failure["error_type"] == "InvalidInput"
    mac = failure.pop("mac")
    nonce = f"{failing['signature']['nonce']}:0"
    verify_result(key, mac, nonce=nonce, result_fields=failure)


def test_numbers_beyond_float_range_are_refused_before_the_call(handler_for: Any, app: App) -> None:
    # 1e400 is valid JSON text, but Python reads it as inf: JSON has no such number.
    handler = handler_for("float_spy")
    for text, path in (
        ('{"x": 1e400}', "kwargs.x"),
        ('{"x": -1e400}', "kwargs.x"),
        ('{"x": 1, "xs": [0.5, 2, 1e400, 3.5]}', "kwargs.xs[2]"),
    ):
        answer = run(handler, {"function": "float_spy", "kwargs": json.loads(text)})
        assert answer["error_type"] == "InvalidInput", answer
        assert [i["path"] for i in answer["issues"]] == [path], answer
        assert "not a JSON number" in answer["issues"][0]["message"]
    assert app[0].CALLS == []
    ok = run(handler, {"function": "float_spy", "kwargs": {"x": 1e308, "xs": [1e308, 1e308]}})
    assert ok["success"] and app[0].CALLS == [(1e308, [1e308, 1e308])]


def test_a_result_goes_as_its_function_returned_it(handler_for: Any) -> None:
    # The worker does not check a result against its annotation (see _json_success): the
    # Python client checks what it decodes, and raises InvalidResultError.
    handler = handler_for("bad_return", "bad_items", "Scorer")
    answer = run(handler, {"function": "bad_return", "kwargs": {"x": 1}})
    assert answer["success"] and answer["result"] == "not an int", answer
    # A generator method's job answers with each of its items.
    upto = run_streaming(
        handler,
        {"function": "Scorer", "init": {"weights": {}}, "method": "upto", "kwargs": {"n": 3}},
    )
    assert [item["result"] for item in upto if item["success"]] == [0, 1, 2], upto


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"at": "20240102"}, "kwargs.at"),
        ({"at": "86400"}, "kwargs.at"),
        ({"day": "20240102"}, "kwargs.day"),
        ({"day": "86400"}, "kwargs.day"),
    ],
)
def test_digits_are_not_read_as_unix_time_for_dates(
    handler_for: Any, app: App, kwargs: dict[str, Any], path: str
) -> None:
    answer = run(handler_for("when"), {"function": "when", "kwargs": kwargs})
    assert answer["error_type"] == "InvalidInput", answer
    (issue,) = answer["issues"]
    assert issue["path"] == path and "digits alone" in issue["message"], issue
    assert app[0].CALLS == []
    good = {"at": "2024-01-02T03:04:05Z", "day": "2024-01-02"}
    assert run(handler_for("when"), {"function": "when", "kwargs": good})["success"]
    at = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    calls = app[0].CALLS
    assert calls == [(at, datetime.date(2024, 1, 2))]


def test_every_bad_field_is_listed(handler_for: Any, app: App) -> None:
    # "abc" passes the schema of a Decimal (text or a number); only the conversion refuses it.
    answer = run(handler_for("pay"), {"function": "pay", "kwargs": {"amt": "abc", "n": "x"}})
    assert answer["error_type"] == "InvalidInput"
    assert sorted(i["path"] for i in answer["issues"]) == ["kwargs.amt", "kwargs.n"], answer
    assert app[0].CALLS == []


@pytest.mark.parametrize("count", [7, 50])  # 50: as many as are listed, none left out
def test_a_few_bad_fields_are_counted_exactly(handler_for: Any, app: App, count: int) -> None:
    bad = {f"k{i}": "v" for i in range(count)}
    answer = run(handler_for("keys"), {"function": "keys", "kwargs": {"d": bad}})
    assert answer["error_type"] == "InvalidInput"
    assert len(answer["issues"]) == count and "issues_truncated" not in answer, answer
    assert answer["error"].endswith(f"(and {count - 5} more)"), answer["error"]
    assert app[0].CALLS == []


@pytest.mark.parametrize("count", [100, 300_000])
def test_a_list_of_bad_fields_cut_at_the_limit_says_so(
    handler_for: Any, app: App, count: int
) -> None:
    bad = {f"k{i}": "v" for i in range(count)}
    answer = run(handler_for("keys"), {"function": "keys", "kwargs": {"d": bad}})
    assert answer["error_type"] == "InvalidInput"
    assert len(answer["issues"]) == 50 and answer["issues_truncated"] is True
    # Not "(and 45 more)": validation stopped at 50, so the total is not known.
    assert "(and 45 more)" not in answer["error"], answer["error"]
    assert "45 more listed" in answer["error"] and "stops at 50 problems" in answer["error"]
    assert app[0].CALLS == []


def test_a_class_call_lists_its_constructors_problems_beside_its_methods(
    handler_for: Any, app: App
) -> None:
    Scorer = app[0].Scorer
    Scorer.built = 0
    both = run(
        handler_for("Scorer"),
        {"function": "Scorer", "init": {"weights": 1}, "method": "score", "kwargs": {"words": 3}},
    )
    assert both["error_type"] == "InvalidInput"
    assert [i["path"] for i in both["issues"]] == ["kwargs.words", "init.weights"], both
    assert "init.weights" in both["error"] and Scorer.built == 0
