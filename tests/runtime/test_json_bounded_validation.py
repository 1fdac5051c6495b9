"""Validating a typed JSON call takes time bounded by the size of its input: no hostile value
(an email, a value for a schema's ``pattern``, a key, a format) pins the worker.

The sizes below would take minutes or longer to refuse with a backtracking regex (a quadratic
email check: about 1 s at 20,000 characters; an exponential pattern: doubling per character
from 16 ms at 18), and milliseconds without one. The timeout only turns such a regression into
a failure rather than a hung run.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
import textwrap
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from tests.runtime.test_handler_json import run

from flash.build.manifest import schema_record
from flash.build.schemas import derive_schemas
from flash.runtime.generic_handler import create_handler
from flash.runtime.jsonschema import validate

APP = r"""
from __future__ import annotations

import datetime
import ipaddress
import uuid
from typing import Annotated, Any

from pydantic import AnyUrl, BaseModel, EmailStr, Field

CALLS: list[Any] = []

WORDS = r"^(\w+\s?)*$"  # backtracks exponentially on "aaaa...!" in Python's re


class Person(BaseModel):
    email: EmailStr


def contact(person: Person) -> str:
    CALLS.append(person)
    return person.email


def words(text: Annotated[str, Field(pattern=WORDS)]) -> str:
    CALLS.append(text)
    return text


def stated(code: Annotated[str, Field(json_schema_extra={"pattern": WORDS})]) -> str:
    # A pattern the schema states and pydantic does not check: the validator alone does.
    CALLS.append(code)
    return code


def keyed(counts: dict[Annotated[str, Field(pattern=WORDS)], int]) -> int:
    CALLS.append(counts)
    return len(counts)


def by_int(counts: dict[int, str]) -> int:
    CALLS.append(counts)
    return len(counts)


def formats(
    at: datetime.datetime,
    day: datetime.date,
    clock: datetime.time,
    ident: uuid.UUID,
    v4: ipaddress.IPv4Address,
    v6: ipaddress.IPv6Address,
    link: AnyUrl,
) -> str:
    CALLS.append(at)
    return "ok"
"""
NAMES = ("contact", "words", "stated", "keyed", "by_int", "formats")
App = tuple[ModuleType, Any]

BIG = 1_000_000


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app module and a handler serving its functions as one endpoint."""
    root = tmp_path_factory.mktemp("bounded-app")
    (root / "bounded_app.py").write_text(textwrap.dedent(APP))
    derived = derive_schemas(root, None, [(f"bounded_app.{n}", "bounded_app", n) for n in NAMES])
    entries = []
    for name in NAMES:
        record = schema_record(derived[f"bounded_app.{name}"])
        assert record is not None, derived[f"bounded_app.{name}"].reason
        entries.append(
            {
                "name": name,
                "qualified_name": f"bounded_app.{name}",
                "schema": record.model_dump(mode="json", by_alias=True),
                "pickle_only": None,
            }
        )
    spec = importlib.util.spec_from_file_location("bounded_app", root / "bounded_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bounded_app"] = module
    try:
        spec.loader.exec_module(module)
        handler = create_handler(
            {name: getattr(module, name) for name in NAMES},
            endpoint="api",
            signing_key=None,
            allow_unsigned=False,
            manifest={"resources": {"api": {"functions": entries}}},
        )
        yield module, handler
    finally:
        del sys.modules["bounded_app"]


def _call(app: App, function: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    app[0].CALLS.clear()
    return run(app[1], {"function": function, "kwargs": kwargs})


def _refused(app: App, answer: dict[str, Any], *paths: str) -> dict[str, str]:
    """The issues of a call refused as invalid input at exactly ``paths``, uncalled."""
    assert answer.get("error_type") == "InvalidInput", answer
    issues = {issue["path"]: issue["message"] for issue in answer["issues"]}
    assert sorted(issues) == sorted(paths), issues
    assert app[0].CALLS == []
    return issues


@pytest.mark.timeout(60)
def test_a_hostile_email_is_refused_in_linear_time(app: App) -> None:
    for email in ("a@" + "." * BIG + "@", "a@" + "." * BIG, "a" * BIG + "@b", "@" * BIG):
        answer = _call(app, "contact", {"person": {"email": email}})
        issues = _refused(app, answer, "kwargs.person.email")
        assert "valid email" in issues["kwargs.person.email"]
    for bad in ("ada", "a@b", "a@b.", "a@.b", "@b.c", "a b@c.d", "a@b@c.d", "a@b.c\n"):
        answer = _call(app, "contact", {"person": {"email": bad}})
        _refused(app, answer, "kwargs.person.email")
    answer = _call(app, "contact", {"person": {"email": "ada@example.com"}})
    assert answer["success"] and answer["result"] == "ada@example.com", answer


@pytest.mark.timeout(60)
def test_a_value_a_pattern_would_backtrack_on_is_refused_in_linear_time(app: App) -> None:
    hostile = "a" * 60 + "!"  # 2**60 steps for a backtracking engine
    for function, name in (("words", "text"), ("stated", "code")):
        for value in (hostile, "a" * BIG + "!", "no!"):
            issues = _refused(app, _call(app, function, {name: value}), f"kwargs.{name}")
            assert "must match the pattern" in issues[f"kwargs.{name}"]
        answer = _call(app, function, {name: "two words"})
        assert answer["success"] and answer["result"] == "two words", answer
        assert app[0].CALLS == ["two words"]


@pytest.mark.timeout(60)
def test_a_key_a_pattern_would_backtrack_on_is_refused_in_linear_time(app: App) -> None:
    hostile = {"a" * 60 + "!": 1, "a" * BIG + "!": 2}
    answer = _call(app, "keyed", {"counts": hostile})
    assert answer.get("error_type") == "InvalidInput", answer
    assert len(answer["issues"]) == 2, answer
    assert all(issue["path"].startswith("kwargs.counts[") for issue in answer["issues"]), answer
    assert app[0].CALLS == []
    answer = _call(app, "keyed", {"counts": {"two words": 1, "x": 2}})
    assert answer["success"] and answer["result"] == 2, answer
    # A dict keyed by integers: keys of digits, checked against the build's own patterns.
    numeric = {"1" * BIG + "x": "a", "1" * BIG + "\n": "b"}
    answer = _call(app, "by_int", {"counts": numeric})
    assert answer.get("error_type") == "InvalidInput", answer
    assert app[0].CALLS == []
    assert _call(app, "by_int", {"counts": {"12": "a"}})["result"] == 1


@pytest.mark.timeout(60)
def test_hostile_values_of_every_checked_format_are_refused_in_linear_time(app: App) -> None:
    kwargs = {
        "at": "2024-01-01T" + "1" * BIG,
        "day": "1" * BIG + "x",
        "clock": "11:11" + "1" * BIG,
        "ident": "-" * BIG,
        "v4": "1." * BIG,
        "v6": "1:" * BIG,
        "link": "a" + "+" * BIG + ":x y",
    }
    answer = _call(app, "formats", kwargs)
    _refused(app, answer, *(f"kwargs.{name}" for name in kwargs))
    good = {
        "at": "2024-01-01T00:00:00Z",
        "day": "2024-01-01",
        "clock": "12:00:00",
        "ident": "123e4567-e89b-12d3-a456-426614174000",
        "v4": "192.0.2.1",
        "v6": "2001:db8::1",
        "link": "https://example.com/path",
    }
    assert _call(app, "formats", good)["result"] == "ok"


def test_the_email_check_keeps_its_rule() -> None:
    # The regex it replaced, which backtracks quadratically: run here on short texts only,
    # every text of up to 5 of these characters (an em space and a file separator are
    # whitespace to Python too), it must agree on every one.
    rule = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
    schema = {"type": "string", "format": "email"}
    for size in range(6):
        for letters in itertools.product("a@. \n\u2003\x1c", repeat=size):
            text = "".join(letters)
            assert (not validate(text, schema)) == bool(rule.fullmatch(text)), repr(text)
