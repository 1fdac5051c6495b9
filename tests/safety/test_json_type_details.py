"""Details of typed JSON calls that the schema, the worker and the client must agree on: the
keys of dicts keyed by something other than text, time zones of results, durations and
decimals. Each is checked through the build's schema, the worker's conversion (with pydantic
and without it) and, where it shows, a handler."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import importlib.util
import json
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, NamedTuple

import pytest
from pydantic import BaseModel, Field
from tests.helpers import run_isolated

from flash.build.manifest import schema_record
from flash.build.schemas import SchemaResult, derive_schemas
from flash.platform.openapi import endpoint_document, example
from flash.runtime.generic_handler import create_handler
from flash.runtime.jsoncall import bind_json_call, holds_times, to_json_result
from flash.runtime.jsonschema import KEY_PATTERNS, format_path, validate
from flash.sdk.json_rule import KEY_PATTERNS as RULE_KEY_PATTERNS
from flash.sdk.jsoncodec import codec_for

from .conftest import write_app

APP = """
from __future__ import annotations

import datetime
import decimal
import enum
from typing import Any


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


CALLS: list[Any] = []  # what each function was called with


def by_int(counts: dict[int, float]) -> dict[int, float]:
    CALLS.append(counts)
    return counts


def by_float(weights: dict[float, int]) -> dict[float, int]:
    CALLS.append(weights)
    return weights


def by_bool(flags: dict[bool, int]) -> dict[bool, int]:
    CALLS.append(flags)
    return flags


def by_decimal(prices: dict[decimal.Decimal, int]) -> dict[decimal.Decimal, int]:
    CALLS.append(prices)
    return prices


def by_level(levels: dict[Level, int]) -> dict[Level, int]:
    CALLS.append(levels)
    return levels


def by_day(days: dict[datetime.date, int]) -> dict[datetime.date, int]:
    CALLS.append(days)
    return days


def wait(span: datetime.timedelta) -> float:
    CALLS.append(span)
    return span.total_seconds()


def pay(amt: decimal.Decimal) -> str:
    CALLS.append(amt)
    return str(amt)


def stamp(at: datetime.datetime) -> datetime.datetime:
    CALLS.append(at)
    return at


def utc_now() -> datetime.datetime:
    return datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc)
"""
NAMES = (
    "by_int",
    "by_float",
    "by_bool",
    "by_decimal",
    "by_level",
    "by_day",
    "wait",
    "pay",
    "stamp",
    "utc_now",
)
App = tuple[ModuleType, dict[str, SchemaResult]]


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_app(tmp_path_factory.mktemp("details"), {"detail_app": APP})


@pytest.fixture(scope="module")
def app(app_dir: Path) -> Iterator[App]:
    """The app imported here (under the installed flash) and its schemas, by name."""
    derived = derive_schemas(app_dir, None, [(f"detail_app.{n}", "detail_app", n) for n in NAMES])
    schemas = {name: derived[f"detail_app.{name}"] for name in NAMES}
    spec = importlib.util.spec_from_file_location("detail_app", app_dir / "detail_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["detail_app"] = module
    try:
        spec.loader.exec_module(module)
        yield module, schemas
    finally:
        del sys.modules["detail_app"]


def _input(app: App, name: str) -> dict[str, Any]:
    schema = app[1][name].input
    assert schema is not None, app[1][name].reason
    return schema


def _handler(app: App, *names: str) -> Any:
    module, schemas = app
    module.CALLS.clear()
    functions = []
    for name in names:
        record = schema_record(schemas[name])
        assert record is not None
        functions.append(
            {
                "name": name,
                "qualified_name": f"detail_app.{name}",
                "schema": record.model_dump(mode="json", by_alias=True),
            }
        )
    registry = {name: getattr(module, name) for name in names}
    manifest = {"resources": {"api": {"functions": functions}}}
    return create_handler(
        registry, endpoint="api", signing_key=None, allow_unsigned=False, manifest=manifest
    )


def _call(handler: Any, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    job = {"id": "j", "input": {"function": name, "kwargs": kwargs}}
    answer: dict[str, Any] = asyncio.run(handler(job))
    return answer


def _issues(answer: dict[str, Any]) -> dict[str, str]:
    assert answer["error_type"] == "InvalidInput", answer
    return {issue["path"]: issue["message"] for issue in answer["issues"]}


# ---------------------------------------------------------------- dicts keyed by non-text

KEYS = [
    # (function, parameter, keys taken, keys refused, what the refusal says)
    ("by_int", "counts", ["1", "-2", "+3", "007"], ["abc", "1.5", "1e3", " 1"], "an integer"),
    (
        "by_float",
        "weights",
        ["1.5", "-2", "1e+20", ".5", "3.", "inf", "-inf", "nan", "Infinity"],
        ["abc", "1,5", "0x10", "1.5 "],
        "a number",
    ),
    ("by_bool", "flags", ["true", "false"], ["yes", "1", "True"], 'one of "true", "false"'),
    (
        "by_decimal",
        "prices",
        ["1.5", "-0.00", "1E+3", "12"],
        ["abc", "NaN", "Infinity", "1/2"],
        "a decimal number",
    ),
    ("by_level", "levels", ["1", "2"], ["3", "-1"], "one of 1, 2"),
]


@pytest.mark.parametrize(("name", "param", "good", "bad", "said"), KEYS)
def test_the_schema_says_which_keys_a_dict_takes(
    app: App, name: str, param: str, good: list[str], bad: list[str], said: str
) -> None:
    schema = _input(app, name)
    assert "propertyNames" in schema["properties"][param]
    output = app[1][name].output
    assert output is not None and "propertyNames" in output  # results are described alike
    for key in good:
        assert validate({param: {key: 1}}, schema, path="kwargs") == [], key
    for key in bad:
        issues = validate({param: {key: 1}}, schema, path="kwargs")
        # The key is named, and the message says it is the key that is wrong, and how.
        assert [i.path for i in issues] == [format_path((("kwargs", param), key))], issues
        assert issues[0].message.startswith("key must be " + said), issues[0].message


@pytest.mark.parametrize(("name", "param", "good", "bad", "said"), KEYS)
def test_a_bad_key_is_refused_and_a_good_one_converted_through_the_handler(
    app: App, name: str, param: str, good: list[str], bad: list[str], said: str
) -> None:
    handler = _handler(app, name)
    issues = _issues(_call(handler, name, {param: {bad[0]: 1}}))
    where = format_path((("kwargs", param), bad[0]))
    assert list(issues) == [where] and issues[where].startswith("key must be " + said)
    assert app[0].CALLS == []
    answer = _call(handler, name, {param: {good[0]: 1}})
    assert answer["success"], answer
    (converted,) = app[0].CALLS
    (key,) = converted
    assert not isinstance(key, str), converted  # the function gets the key type it asked for


def test_the_key_patterns_of_the_build_are_those_the_worker_names() -> None:
    # Written twice: the build's schema child loads json_rule without the runtime.
    assert set(RULE_KEY_PATTERNS.values()) == set(KEY_PATTERNS)


@pytest.mark.parametrize("name", [k[0] for k in KEYS])
def test_the_example_the_openapi_document_shows_is_taken(app: App, name: str) -> None:
    module, schemas = app
    record = schema_record(schemas[name])
    assert record is not None
    fn = {
        "name": name,
        "qualified_name": f"detail_app.{name}",
        "schema": record.model_dump(mode="json", by_alias=True),
    }
    document = endpoint_document("e", {"functions": [fn]}, "http://x")
    media = document["paths"]["/runsync"]["post"]["requestBody"]["content"]["application/json"]
    (shown,) = media["examples"].values()
    kwargs = shown["value"]["input"]["kwargs"]
    assert kwargs == example(fn["schema"]["input"])
    (param,) = kwargs
    assert kwargs[param], kwargs  # a dict with a key, to show what one looks like
    assert validate(kwargs, fn["schema"]["input"], path="kwargs") == []
    issues, bound = bind_json_call(getattr(module, name), kwargs, fn["schema"]["input"])
    assert issues == [] and getattr(module, name)(**bound) == bound[param]


def _nonnegative_keys(d: dict[Annotated[int, Field(ge=0)], int]) -> int:
    return len(d)


def test_a_key_pydantic_refuses_is_named_as_the_key() -> None:
    # The pattern takes "-1"; pydantic's check of the key (ge=0) refuses it, marked "[key]".
    issues, _ = bind_json_call(_nonnegative_keys, {"d": {"-1": 1}}, {"type": "object"})
    assert [(i.path, i.message.split(":")[0]) for i in issues] == [('kwargs.d["-1"]', "key")]


# ---------------------------------------------------------------- time zones of results

UTC = datetime.timezone.utc
PLUS2 = datetime.timezone(datetime.timedelta(hours=2))
AT = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Slot:
    at: datetime.datetime
    starts: datetime.time


class Meeting(BaseModel):
    at: datetime.datetime
    slots: list[Slot]


class Span(NamedTuple):
    first: datetime.datetime
    last: datetime.datetime | None


class Pair(NamedTuple):
    name: str
    day: datetime.date


def at_utc() -> datetime.datetime:
    return AT


def at_plus2() -> datetime.datetime:
    return AT.astimezone(PLUS2)


def nested() -> dict[str, list[Slot]]:
    return {"a": [Slot(AT, datetime.time(9, tzinfo=UTC)), Slot(AT, datetime.time(9))]}


def meeting() -> Meeting:
    return Meeting(at=AT, slots=[Slot(AT.astimezone(PLUS2), datetime.time(9, tzinfo=PLUS2))])


def span() -> Span:
    return Span(AT, AT.astimezone(PLUS2))


def grouped() -> dict[str, frozenset[datetime.datetime]]:
    return {"a": frozenset({AT.astimezone(PLUS2)})}


def naive() -> tuple[datetime.datetime, datetime.time]:
    return AT.replace(tzinfo=None), datetime.time(9)


def ticks(n: int) -> Iterator[datetime.datetime]:
    yield AT


@pytest.mark.parametrize(
    ("hint", "holds"),
    [
        (list[float], False),
        (dict[str, list[int]], False),
        (int | None, False),
        (Any, False),
        (datetime.date, False),
        (Pair, False),
        (datetime.datetime, True),
        (datetime.datetime | None, True),
        (dict[str, list[Slot]], True),
        (Meeting, True),
        (Span, True),
    ],
)
def test_only_the_types_that_may_hold_times_are_walked(hint: Any, holds: bool) -> None:
    # The walk costs about what pydantic's own conversion does: spared where it finds nothing.
    assert holds_times(hint) is holds


def _pickled(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))


@pytest.mark.parametrize("fn", [at_utc, at_plus2, nested, meeting, span, grouped, naive])
def test_a_result_read_back_from_json_has_the_standard_librarys_time_zones(fn: Any) -> None:
    value = fn()
    codec = codec_for(fn)
    assert codec is not None
    back = codec.decode(json.loads(json.dumps(to_json_result(value))))
    # What a pickled call gives: equal, and shown alike (no pydantic TzInfo(0) in it).
    assert back == _pickled(value) and repr(back) == repr(_pickled(value))


def test_a_streamed_item_has_the_standard_librarys_utc() -> None:
    codec = codec_for(ticks)
    assert codec is not None
    item = codec.decode_item(to_json_result(AT))
    assert item.tzinfo is UTC
    (listed,) = codec.decode([to_json_result(AT)])
    assert listed.tzinfo is UTC


def test_a_utc_result_through_the_handler_equals_the_pickled_one(app: App) -> None:
    module, _ = app
    answer = _call(_handler(app, "utc_now"), "utc_now", {})
    assert answer["success"], answer
    codec = codec_for(module.utc_now)
    assert codec is not None
    back = codec.decode(answer["result"])
    expected = _pickled(module.utc_now())
    assert back.tzinfo is UTC and back == expected and repr(back) == repr(expected)


@pytest.mark.parametrize(
    ("text", "zone"),
    [("2024-05-01T12:30:00Z", UTC), ("2024-05-01T14:30:00+02:00", PLUS2)],
)
def test_a_json_argument_reaches_the_function_with_the_standard_librarys_zone(
    app: App, text: str, zone: datetime.timezone
) -> None:
    module, _ = app
    assert _call(_handler(app, "stamp"), "stamp", {"at": text})["success"]
    (at,) = module.CALLS
    assert at == AT and at.tzinfo == zone and type(at.tzinfo) is datetime.timezone
    assert repr(at) == repr(AT.astimezone(zone))


# ---------------------------------------------------------------- durations and decimals


def test_a_number_for_a_duration_is_refused_by_the_schema_with_what_it_takes(app: App) -> None:
    schema = _input(app, "wait")
    assert schema["properties"]["span"].get("type") == "string"  # as pydantic says: text
    (issue,) = validate({"span": 90}, schema, path="kwargs")
    assert issue.path == "kwargs.span"
    assert "PT1S" in issue.message and "seconds" not in issue.message, issue


@pytest.mark.parametrize("value", [90, 1.5, "abc", "P", "P1X"])
def test_a_bad_duration_through_the_handler_is_refused_without_offering_numbers(
    app: App, value: Any
) -> None:
    handler = _handler(app, "wait")
    issues = _issues(_call(handler, "wait", {"span": value}))
    assert list(issues) == ["kwargs.span"]
    assert "seconds" not in issues["kwargs.span"], issues
    assert app[0].CALLS == []
    assert _call(handler, "wait", {"span": "PT1H30M"})["result"] == 5400.0


def test_a_bad_decimal_through_the_handler_names_the_field(app: App) -> None:
    handler = _handler(app, "pay")
    issues = _issues(_call(handler, "pay", {"amt": "abc"}))
    assert list(issues) == ["kwargs.amt"] and "decimal" in issues["kwargs.amt"]
    assert "ConversionSyntax" not in issues["kwargs.amt"]
    assert _call(handler, "pay", {"amt": "1.50"})["result"] == "1.50"
    assert _call(handler, "pay", {"amt": 2.5})["result"] == "2.5"


# A worker without pydantic: the standard library's conversion. With the build's schema, and
# with one that lets anything through, so that the conversion itself is seen to agree.
PLAIN_WORKER = """
import json, sys
sys.modules["pydantic"] = None  # importing it fails, as on a worker without it
sys.path[:0] = [sys.argv[1]]
from flash.runtime.jsoncall import bind_json_call, holds_times, to_json_result
import detail_app

out = []
for name, kwargs, schema in json.load(open(sys.argv[2])):
    issues, bound = bind_json_call(getattr(detail_app, name), kwargs, schema)
    if issues:
        out.append({"issues": {path: message for path, message in issues}})
    else:
        result = getattr(detail_app, name)(**bound)
        called = repr(detail_app.CALLS.pop()) if detail_app.CALLS else None
        out.append({"result": to_json_result(result), "called": called})
print(json.dumps(out))
"""


def _run_plain_worker(app_dir: Path, tmp_path: Path, cases: list[Any]) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = run_isolated(PLAIN_WORKER, app_dir, cases, tmp_path)
    return answers


ANYTHING = {"type": "object"}
PLAIN_CASES: list[tuple[str, dict[str, Any], bool, Any]] = [
    # (function, kwargs, with the build's schema (else ANYTHING), expected)
    ("pay", {"amt": "abc"}, True, {"kwargs.amt": "expected a decimal number, got 'abc'"}),
    ("pay", {"amt": "NaN"}, True, {"kwargs.amt": "expected a decimal number, got 'NaN'"}),
    ("pay", {"amt": [1]}, False, {"kwargs.amt": "expected a decimal number, got array"}),
    ("pay", {"amt": "1.50"}, True, "1.50"),
    ("pay", {"amt": 2.5}, True, "2.5"),
    ("wait", {"span": "abc"}, True, {"kwargs.span": "expected an ISO 8601 duration"}),
    ("wait", {"span": 90}, True, {"kwargs.span": "PT1S"}),  # the schema's message
    ("wait", {"span": 90}, False, {"kwargs.span": "expected an ISO 8601 duration"}),
    ("wait", {"span": "PT1M30S"}, True, 90.0),
    ("by_int", {"counts": {"abc": 1}}, True, {"kwargs.counts.abc": "key must be an integer"}),
]


def test_a_worker_without_pydantic_agrees_with_the_schema(
    app: App, app_dir: Path, tmp_path: Path
) -> None:
    cases = [(n, kw, _input(app, n) if own else ANYTHING) for n, kw, own, _ in PLAIN_CASES]
    answers = _run_plain_worker(app_dir, tmp_path, cases)
    for (name, kwargs, _, expected), got in zip(PLAIN_CASES, answers, strict=True):
        if isinstance(expected, dict):
            issues = got.get("issues") or {}
            assert list(issues) == list(expected), (name, kwargs, got)
            for path, fragment in expected.items():
                assert fragment in issues[path], (name, kwargs, got)
                assert "ConversionSyntax" not in issues[path]
                assert "number of seconds" not in issues[path]
        else:
            assert got.get("result") == expected, (name, kwargs, got)


KEYED_CASES = [
    # (function, kwargs: the keys as JSON writes them, what the function got)
    ("by_bool", {"flags": {"true": 1, "false": 0}}, "{True: 1, False: 0}"),
    ("by_day", {"days": {"2024-01-02": 3}}, "{datetime.date(2024, 1, 2): 3}"),
    ("by_int", {"counts": {"7": 1.5}}, "{7: 1.5}"),
]


def test_a_worker_without_pydantic_gives_keys_their_types_and_writes_them_back(
    app: App, app_dir: Path, tmp_path: Path
) -> None:
    cases = [(name, kwargs, _input(app, name)) for name, kwargs, _ in KEYED_CASES]
    answers = _run_plain_worker(app_dir, tmp_path, cases)
    for (name, kwargs, called), got in zip(KEYED_CASES, answers, strict=True):
        assert got.get("called") == called, (name, got)
        # Written back as they came: the key's JSON form.
        assert got.get("result") == next(iter(kwargs.values())), (name, got)


def test_a_result_keyed_by_dates_has_a_json_form_through_the_handler(app: App) -> None:
    handler = _handler(app, "by_day")
    answer = _call(handler, "by_day", {"days": {"2024-01-02": 3}})
    assert answer["success"] and answer["result"] == {"2024-01-02": 3}, answer
    assert [{datetime.date(2024, 1, 2): 3}] == app[0].CALLS
