"""JSON Schema validation of typed calls: every problem found, named by path, never a crash."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, TypeAdapter
from typing_extensions import TypedDict

from flash.runtime.jsoncall import JsonResultError, to_json_result
from flash.runtime.jsonschema import (
    INVALID_JSON,
    MAX_ISSUES,
    TOO_DEEP,
    TOO_LARGE,
    Issue,
    JsonInputError,
    check_depth,
    parse_json,
    parse_json_member,
    validate,
)


def messages(value: Any, schema: Any, path: str = "") -> dict[str, str]:
    return {i.path: i.message for i in validate(value, schema, path=path)}


# ---------------------------------------------------------------- keywords


@pytest.mark.parametrize(
    ("schema", "good", "bad", "message"),
    [
        ({"type": "integer"}, [1, 2.0, -5], [1.5, "1", True, None], "expected integer"),
        ({"type": "number"}, [1, 1.5], ["1", False], "expected number"),
        ({"type": ["string", "null"]}, ["a", None], [1, []], "expected string or null"),
        ({"type": "boolean"}, [True], [0, "true"], "expected boolean"),
        ({"type": "array"}, [[]], [{}, "[]"], "expected array"),
        ({"type": "object"}, [{}], [[], None], "expected object"),
        ({"const": 3}, [3, 3.0], [4, True, "3"], "must be 3"),
        ({"enum": ["a", 1, None]}, ["a", 1.0, None], ["b", True, 2], "must be one of"),
        ({"enum": [True]}, [True], [1], "must be one of"),
        ({"minLength": 2, "maxLength": 3}, ["ab", "abc", 5], ["a", "abcd"], "characters long"),
        ({"pattern": "^[a-z]+$"}, ["abc"], ["ab1", ""], "must match the pattern"),
        ({"minimum": 0, "maximum": 10}, [0, 10, 5.5], [-1, 10.01], "must be"),
        ({"exclusiveMinimum": 0, "exclusiveMaximum": 1}, [0.5], [0, 1], "must be"),
        ({"minimum": 0, "exclusiveMinimum": True}, [1], [0], "must be > 0"),
        ({"multipleOf": 3}, [0, 9, -3], [4], "multiple of 3"),
        ({"multipleOf": 0.1}, [0.3, 1.2, 7], [0.35], "multiple of 0.1"),
        ({"minItems": 1, "maxItems": 2}, [[1], [1, 2]], [[], [1, 2, 3]], "items"),
        (
            {"uniqueItems": True},
            [[1, "1", True], [[1], [2]]],
            [[1, 1.0], [{"a": 1}, {"a": 1}]],
            "duplicates item",
        ),
        ({"items": {"type": "integer"}}, [[1, 2]], [[1, "x"]], "expected integer"),
        (
            {"prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
            [[1, "a"], [1]],
            [[1, "a", 2]],
            "at most 2 items",
        ),
        (
            {"properties": {"a": {"type": "integer"}}, "required": ["a"]},
            [{"a": 1}, {"a": 1, "b": 2}],
            [{}],
            "field required",
        ),
        (
            {"properties": {"a": {}}, "additionalProperties": False},
            [{"a": 1}],
            [{"b": 1}],
            "unexpected field (allowed: a)",
        ),
        (
            {"additionalProperties": {"type": "number"}},
            [{"x": 1.5}],
            [{"x": "1"}],
            "expected number",
        ),
        (
            {"patternProperties": {"^n_": {"type": "integer"}}, "additionalProperties": False},
            [{"n_a": 1}],
            [{"n_a": "x"}, {"other": 1}],
            "",
        ),
        ({"propertyNames": {"maxLength": 2}}, [{"ab": 1}], [{"abc": 1}], "at most 2 characters"),
        ({"minProperties": 1, "maxProperties": 1}, [{"a": 1}], [{}, {"a": 1, "b": 2}], "fields"),
        ({"allOf": [{"minimum": 0}, {"maximum": 5}]}, [3], [-1, 6], "must be"),
        (
            {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            [1, None],
            ["x"],
            "expected integer or null",
        ),
        ({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, [1, 2.5], [3], "more than one"),
        (True, [1, None, {}], [], ""),
        (False, [], [1, None], "no value is allowed"),
    ],
)
def test_each_keyword(schema: Any, good: list[Any], bad: list[Any], message: str) -> None:
    for value in good:
        assert validate(value, schema) == [], value
    for value in bad:
        issues = validate(value, schema)
        assert issues, value
        assert any(message in i.message for i in issues), (value, issues)


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        (
            "date-time",
            ["2024-05-01T12:00:00Z", "2024-05-01 12:00:00.5+02:00", "2024-05-01"],
            ["2024-13-01T00:00:00", "yesterday", "2024-05-01T25:00", "1714564800"],
        ),
        ("date", ["2024-02-29"], ["2023-02-29", "05/01/2024", "20240229"]),
        ("time", ["12:30", "12:30:59.123Z"], ["24:00", "noon"]),
        ("uuid", ["123e4567-e89b-12d3-a456-426614174000"], ["123e4567", ""]),
        ("email", ["ada@example.com"], ["ada", "a@b"]),
        ("ipv4", ["192.0.2.1"], ["2001:db8::1", "300.1.1.1"]),
        ("ipv6", ["2001:db8::1"], ["192.0.2.1"]),
        ("uri", ["https://example.com/x"], ["not a uri"]),
        ("made-up-format", ["anything"], []),
    ],
)
def test_formats(fmt: str, good: list[str], bad: list[str]) -> None:
    schema = {"type": "string", "format": fmt}
    for value in good:
        assert validate(value, schema) == [], value
    for value in bad:
        (issue,) = validate(value, schema)
        assert f"must be a valid {fmt}" in issue.message


def test_paths_name_each_problem_and_every_problem_is_listed() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "qty": {"minimum": 1}},
                    "required": ["name"],
                },
            },
            "odd key": {"type": "integer"},
        },
    }
    value = {"items": [{"name": "a"}, {"qty": 0}, {"name": 5}], "odd key": "x"}
    assert messages(value, schema, path="kwargs") == {
        "kwargs.items[1].name": "field required",
        "kwargs.items[1].qty": "must be >= 1, got 0",
        "kwargs.items[2].name": "expected string, got integer 5",
        'kwargs["odd key"]': 'expected integer, got string "x"',
    }


def test_issues_are_bounded() -> None:
    issues = validate(["x"] * 1000, {"items": {"type": "integer"}})
    assert len(issues) == MAX_ISSUES
    assert issues[0] == Issue("[0]", 'expected integer, got string "x"')
    assert len(validate(["x"] * 10, {"items": {"type": "integer"}}, max_issues=3)) == 3


def test_long_values_are_previewed_not_dumped() -> None:
    (issue,) = validate("y" * 100_000, {"type": "integer"})
    assert len(issue.message) < 100


# ---------------------------------------------------------------- pydantic's schemas


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Item:
    name: str
    qty: int = 1
    color: Color = Color.RED


class Options(TypedDict):
    fast: bool


class User(BaseModel):
    id: int
    name: Annotated[str, Field(min_length=1, max_length=20)]
    score: float = Field(default=0, ge=0, le=1)


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


@dataclasses.dataclass
class Tree:
    value: int
    children: list[Tree] = dataclasses.field(default_factory=list)


PYDANTIC_CASES: list[tuple[Any, list[Any], dict[str, Any]]] = [
    (
        list[Item],
        [[{"name": "a"}], [{"name": "b", "qty": 2, "color": "blue"}]],
        {"[0].qty": 'expected integer, got string "x"', "[0].name": "field required"},
    ),
    (Item | None, [None, {"name": "a"}], {"color": 'must be one of "red", "blue"'}),
    (dict[str, Options], [{"a": {"fast": True}}], {"a.fast": "expected boolean, got integer 1"}),
    (
        User,
        [{"id": 1, "name": "ada"}, {"id": 2, "name": "bo", "score": 0.5}],
        {"name": "must be at least 1 characters long, got 0", "score": "must be <= 1, got 2"},
    ),
    (tuple[int, str], [[1, "a"]], {"": "must have at most 2 items, got 3"}),
    (set[int], [[1, 2]], {"[1]": "duplicates item 0; items must be unique"}),
    (Literal["a", "b"], ["a"], {"": 'must be one of "a", "b"'}),
    (
        Annotated[Cat | Dog, Field(discriminator="kind")],
        [{"kind": "cat", "lives": 9}, {"kind": "dog", "good": True}],
        {"kind": 'must be one of "cat", "dog", got "cow"'},
    ),
    (
        Tree,
        [{"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]}],
        {"children[0].children[0].value": 'expected integer, got string "3"'},
    ),
]
BAD_VALUES = [
    [{"qty": "x"}],
    {"name": "a", "color": "green"},
    {"a": {"fast": 1}},
    {"id": 1, "name": "", "score": 2},
    [1, "a", 2],
    [1, 1],
    "c",
    {"kind": "cow"},
    {"value": 1, "children": [{"value": 2, "children": [{"value": "3"}]}]},
]


@pytest.mark.parametrize(("case", "bad"), list(zip(PYDANTIC_CASES, BAD_VALUES, strict=True)))
def test_pydantic_schemas(case: tuple[Any, list[Any], dict[str, Any]], bad: Any) -> None:
    annotation, goods, expected = case
    adapter = TypeAdapter(annotation)
    schema = json.loads(json.dumps(adapter.json_schema()))
    for good in goods:
        assert validate(good, schema) == [], good
        adapter.validate_python(good)  # pydantic agrees
        # What pydantic writes back out validates too.
        assert (
            validate(adapter.dump_python(adapter.validate_python(good), mode="json"), schema) == []
        )
    assert messages(bad, schema) == expected
    if annotation != set[int]:  # pydantic folds duplicates; its schema says uniqueItems
        with pytest.raises(ValueError):
            adapter.validate_json(json.dumps(bad), strict=True)


# ---------------------------------------------------------------- depth and hostile schemas


def nested_list(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_deep_values_and_ref_cycles_never_crash() -> None:
    deep = nested_list(5000)
    (issue,) = validate(deep, {"items": {"$ref": "#"}})
    assert "nested too deeply" in issue.message
    assert "nested too deeply" in validate(1, {"$ref": "#"})[0].message
    cycle = {"$defs": {"A": {"anyOf": [{"$ref": "#/$defs/A"}]}}, "$ref": "#/$defs/A"}
    assert validate(1, cycle)
    assert validate(deep, {"uniqueItems": True, "type": "array"}) == []
    assert validate([deep, deep], {"uniqueItems": True})
    assert "cannot resolve" in validate(1, {"$ref": "#/$defs/Nope"})[0].message
    assert validate(1, {"$ref": "http://example.com/schema"})


def test_check_depth_is_iterative_and_names_the_place() -> None:
    check_depth(nested_list(10), 10)
    with pytest.raises(JsonInputError) as info:
        check_depth({"a": [{"b": nested_list(200_000)}]}, 50, path="kwargs")
    assert info.value.reason == TOO_DEEP
    assert str(info.value).startswith("kwargs.a[0].b") and "deeper than 50 levels" in str(
        info.value
    )


@pytest.mark.parametrize("as_bytes", [False, True])
def test_an_integer_too_long_to_read_is_named_where_it_is(as_bytes: bool) -> None:
    # Python reads at most 4300 digits; its own message advises sys.set_int_max_str_digits().
    text = '{"input": {"kwargs": {"a": 1, "b": [2, -' + "9" * 5000 + "]}}}"
    with pytest.raises(JsonInputError) as info:
        parse_json(text.encode() if as_bytes else text, len(text), 64)
    assert info.value.reason == INVALID_JSON and info.value.path == "input.kwargs.b[1]"
    assert str(info.value) == (
        "input.kwargs.b[1]: an integer of 5000 digits, over the 4300 digits a JSON integer "
        "may have here (send it as a string)"
    )
    # Broken elsewhere too: reported as any broken document is.
    with pytest.raises(JsonInputError, match=r"^not valid JSON: "):
        parse_json(text[:-1], len(text), 64)
    deep = '{"a": ' + "9" * 5000 + ', "b": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(JsonInputError):  # not a RecursionError: a 400, never a 500
        parse_json(deep, len(deep), 64)


def test_a_too_deep_value_is_named_in_a_short_message() -> None:
    # As the gateway refuses a worker's report, and a worker a /run input's field.
    for text, place in (
        (json.dumps({"output": nested_list(300)}), "output[0][0]"),
        (json.dumps({"input": {"kwargs": {"x": nested_list(300)}}}), "input.kwargs.x[0]"),
    ):
        with pytest.raises(JsonInputError) as info:
            parse_json(text, len(text), 256)
        message = str(info.value)
        assert len(message) < 200, message
        assert "deeper than 256 levels" in message
        assert message.startswith(place), message
    with pytest.raises(JsonInputError) as info:
        check_depth(nested_list(300), 256, path="kwargs.x")
    assert str(info.value) == (
        "kwargs.x[0][0][0][0][0][0][0][0]... (256 levels): JSON nested deeper than 256 levels"
    )
    # Any error that deep, not only "too deep" ones: a NaN 190 levels down in a result.
    deep: Any = float("nan")
    for _ in range(190):
        deep = [deep]
    with pytest.raises(JsonResultError) as result_info:
        to_json_result(deep)
    assert len(str(result_info.value)) < 200, str(result_info.value)
    assert str(result_info.value).startswith("result[0][0][0][0][0][0][0][0]... (190 levels)")


def test_parse_json_limits() -> None:
    assert parse_json('{"a": [1, 2]}', 100, 5) == {"a": [1, 2]}
    assert parse_json(b"[1.5]", 100, 5) == [1.5]
    cases = {
        "x" * 101: TOO_LARGE,
        '"' + "é" * 60 + '"': TOO_LARGE,  # 120 bytes in UTF-8
        "[" * 10 + "]" * 10: TOO_DEEP,
        "[" * 100_000 + "]" * 100_000: TOO_DEEP,
        '{"a": ': INVALID_JSON,
        "[NaN]": INVALID_JSON,
        "[Infinity]": INVALID_JSON,
        "1" * 5000: INVALID_JSON,
        b"\xff\xfe": INVALID_JSON,
    }
    for text, reason in cases.items():
        limit = 1_000_000 if reason != TOO_LARGE else 100
        with pytest.raises(JsonInputError) as info:
            parse_json(text, limit, 5)
        assert info.value.reason == reason, text[:20]
    with pytest.raises(JsonInputError) as bad:
        parse_json('{"secret": "hunter2", ', 1000, 5)
    assert "hunter2" not in str(bad.value) and "line 1" in str(bad.value)


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.text(max_size=5), _JSON_VALUES, max_size=4),
    st.sampled_from([{}, {"indent": 2}, {"separators": (",", ":")}, {"ensure_ascii": False}]),
    st.booleans(),
)
def test_a_members_text_is_cut_from_the_document_as_sent(
    document: dict[str, Any], style: dict[str, Any], as_bytes: bool
) -> None:
    text = f" {json.dumps(document, **style)}\n"
    value, member_text = parse_json_member(
        text.encode() if as_bytes else text, 10_000_000, 100, "input"
    )
    assert value == json.loads(text)
    if "input" not in document:
        assert member_text is None
        return
    # Given up on exactly when the member's own text is not ASCII: the caller encodes it then.
    assert (member_text is None) == (not json.dumps(document["input"], **style).isascii())
    if member_text is not None:
        assert json.loads(member_text) == document["input"]
        assert member_text in text


@pytest.mark.parametrize(
    "text",
    [
        '{"a": {"input": 1}, "input": 2}',  # a nested key of the same name
        '{"input": 1, "inp\\u0075t": 2}',  # an escaped spelling of the same key, last wins
        '{"\\u0069nput": [1], "input": {"x": "a\\"b"}}',
        '{"input": "\\ud800"}',  # a lone surrogate, escaped: stays ASCII
        '{"input": 1e300, "b": -0}',
        '{"input": {"input": {"input": 3}}}',
    ],
)
def test_adversarial_documents_cut_the_member_json_loads_would_keep(text: str) -> None:
    value, member_text = parse_json_member(text, 10_000, 10, "input")
    assert value == json.loads(text)
    assert member_text is not None and json.loads(member_text) == value["input"]


def test_a_document_that_is_not_json_is_refused_when_a_member_is_kept() -> None:
    documents = ['{"input": 1,}', '{"input" 1}', '{"input": }', '{"input": 1} x', "{", "{'a': 1}"]
    documents += ['{"input": NaN}', '{"a": 1 "input": 2}', '{"input": [1, 2]]', "[1] [2]"]
    documents += ['{"input": 1e400, "b": -0}']  # an infinity, which no JSON value is
    for document in documents:
        with pytest.raises(JsonInputError) as info:
            parse_json_member(document, 1000, 5, "input")
        assert info.value.reason == INVALID_JSON, document
    assert parse_json_member('{"input": 1, "input": [2]}', 1000, 5, "input") == (
        {"input": [2]},
        "[2]",
    )
    assert parse_json_member("[1]", 1000, 5, "input") == ([1], None)
    with pytest.raises(JsonInputError) as deep:
        parse_json_member('{"input": ' + "[" * 10 + "]" * 10 + "}", 1000, 5, "input")
    assert deep.value.reason == TOO_DEEP


def test_flat_documents_are_not_walked_but_still_checked() -> None:
    # Brackets inside strings count toward the cheap bound, so the walk decides.
    assert parse_json(json.dumps(["[[[[[[" * 10]), 10_000, 3) == ["[[[[[[" * 10]
    with pytest.raises(JsonInputError):
        parse_json(json.dumps([[[[1]]]]), 10_000, 3)


# ---------------------------------------------------------------- fuzz

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)
_names = st.sampled_from(["a", "b", "c", "kind"])
_numbers = st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False)
_types = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])


def _schemas(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keyword = st.one_of(
        st.tuples(st.just("type"), _types | st.lists(_types, max_size=3)),
        st.tuples(st.just("const"), _json_values),
        st.tuples(st.just("enum"), st.lists(_json_values, max_size=3)),
        st.tuples(st.just("$ref"), st.sampled_from(["#", "#/$defs/A", "#/$defs/B", "#/nope"])),
        st.tuples(st.sampled_from(["anyOf", "oneOf", "allOf"]), st.lists(inner, max_size=3)),
        st.tuples(st.just("properties"), st.dictionaries(_names, inner, max_size=3)),
        st.tuples(st.just("required"), st.lists(_names, max_size=3)),
        st.tuples(st.just("additionalProperties"), st.booleans() | inner),
        st.tuples(
            st.just("patternProperties"),
            st.dictionaries(st.sampled_from(["^a", "[", "b$"]), inner, max_size=2),
        ),
        st.tuples(st.just("propertyNames"), inner),
        st.tuples(
            st.sampled_from(["items", "additionalItems"]),
            st.booleans() | inner | st.lists(inner, max_size=2),
        ),
        st.tuples(st.just("prefixItems"), st.lists(inner, max_size=3)),
        st.tuples(
            st.sampled_from(
                ["minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"]
            ),
            st.integers(0, 4),
        ),
        st.tuples(st.just("uniqueItems"), st.booleans()),
        st.tuples(st.just("pattern"), st.sampled_from(["^a", "[0-9]+", "(", r"\p{L}"])),
        st.tuples(
            st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]),
            _numbers | st.booleans(),
        ),
        st.tuples(st.just("multipleOf"), _numbers),
        st.tuples(
            st.just("format"),
            st.sampled_from(
                ["date-time", "date", "time", "uuid", "email", "ipv4", "ipv6", "uri", "x"]
            ),
        ),
        st.tuples(
            st.just("discriminator"),
            st.fixed_dictionaries(
                {
                    "propertyName": _names,
                    "mapping": st.dictionaries(
                        st.text(max_size=3), st.sampled_from(["#/$defs/A", "#/x"]), max_size=2
                    ),
                }
            ),
        ),
    )
    return st.booleans() | st.lists(keyword, max_size=4).map(dict)


_schema = st.recursive(st.just({}), _schemas, max_leaves=12)
_root = st.tuples(_schema, st.dictionaries(st.sampled_from(["A", "B"]), _schema, max_size=2)).map(
    lambda pair: {**pair[0], "$defs": pair[1]} if isinstance(pair[0], dict) else pair[0]
)


def test_a_schema_that_would_check_forever_refuses_the_value_quickly() -> None:
    # Each level of this union checks the same value twice more, through 200 levels.
    schema = {
        "$ref": "#/$defs/A",
        "$defs": {"A": {"oneOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/A"}]}},
    }
    issues = validate(1, schema, path="kwargs")
    assert [(i.path, "too complex" in i.message) for i in issues] == [("kwargs", True)]


def test_big_values_get_a_budget_to_match() -> None:
    schema = {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}]}}
    assert validate([0.5] * 200_000, schema) == []
    assert [i.path for i in validate([0.5] * 199_999 + [None], schema)] == ["[199999]"]


@settings(max_examples=1500, deadline=None)
@given(_json_values, _root)
def test_validate_never_raises(value: Any, schema: Any) -> None:
    issues = validate(value, schema, path="kwargs")
    assert len(issues) <= MAX_ISSUES
    assert all(isinstance(i, Issue) and isinstance(i.path, str) for i in issues)
    json.dumps([i._asdict() for i in issues])  # ready to go into an error response


def test_a_null_is_described_once() -> None:
    (issue,) = validate(None, {"type": "integer"}, path="kwargs.x")
    assert issue.message == "expected integer, got null"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"input": {"kwargs": {"b": {"x": {"y": 1e400}}}}}', "input.kwargs.b.x.y"),
        ('{"input": [1, -2E+308, 3]}', "input[1]"),
        ("[" + "9" * 400 + ".5]", "[0]"),
    ],
)
def test_a_number_beyond_a_float_is_refused_wherever_it_is(text: str, path: str) -> None:
    # It would parse to an infinity, which no JSON value is: in an untyped value (Any, dict)
    # the schema does not look at, it would reach the function.
    with pytest.raises(JsonInputError) as info:
        parse_json(text, 1_000_000, 64)
    assert info.value.reason == INVALID_JSON and info.value.path == path
    assert "not a JSON number" in info.value.message
    # Big numbers that are floats, and exponents in text, pass.
    assert parse_json('[1e300, "Ee123", 2.5e-400, 1' + "0" * 400 + "]", 1000, 5)[0] == 1e300
