"""Which calls the Python client sends as typed JSON: the build's rule, seen from the client."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, TypeVar

import pytest
from pydantic import AfterValidator

from flash.runtime.jsonschema import MAX_ISSUES
from flash.sdk.jsoncodec import codec_for, method_codecs_for


@dataclass
class Point:
    x: float
    y: float


class Model:
    def __init__(self, name: str, scale: float = 1.0) -> None:
        self.name = name
        self.scale = scale

    def predict(self, point: Point) -> list[float]:
        return [point.x * self.scale, point.y * self.scale]

    def untyped(self, x):  # type: ignore[no-untyped-def]
        return x

    def tokens(self, text: str) -> Iterator[str]:
        yield from text.split()

    def _private(self, x: int) -> int:
        return x


class NoConstructor:
    def ping(self) -> str:
        return "pong"


class UntypedConstructor:
    def __init__(self, path):  # type: ignore[no-untyped-def]
        self.path = path

    def size(self) -> int:
        return 0


def test_a_typed_method_gets_json_codecs_for_constructor_and_call() -> None:
    codecs = method_codecs_for(Model, "predict")
    assert codecs is not None
    init, call = codecs
    assert init.encode(("m",), {"scale": 2}) == {"name": "m", "scale": 2}
    assert call.encode((Point(1, 2),), {}) == {"point": {"x": 1.0, "y": 2.0}}
    assert call.decode([2, 4.5]) == [2.0, 4.5]


def test_a_class_without_a_constructor_takes_no_init_arguments() -> None:
    codecs = method_codecs_for(NoConstructor, "ping")
    assert codecs is not None
    assert codecs[0].encode((), {}) == {}
    with pytest.raises(TypeError):
        codecs[0].encode((1,), {})


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (Model, "untyped"),  # no hints
        (Model, "_private"),  # the build publishes public methods only
        (Model, "missing"),
        (UntypedConstructor, "size"),  # the constructor cannot be sent as JSON
    ],
)
def test_methods_json_cannot_express_stay_pickled(cls: type, name: str) -> None:
    assert method_codecs_for(cls, name) is None


def test_hints_are_read_as_the_build_reads_them() -> None:
    def shout(text: str) -> Annotated[str, AfterValidator(str.upper)]:
        return text

    def broken(x: os.nope) -> int:  # type: ignore[name-defined]
        return 0

    codec = codec_for(shout)
    assert codec is not None and codec.decode("hi") == "HI"  # the validator applies
    assert codec_for(broken) is None  # an unresolvable hint means pickle, not a crash


def test_functions_and_classes_as_before() -> None:
    def typed(a: int, *, b: str = "x") -> dict[str, int]:
        return {b: a}

    def no_return(a: int):  # type: ignore[no-untyped-def]
        return a

    assert codec_for(typed) is not None
    assert codec_for(no_return) is None
    assert codec_for(Model) is None


T = TypeVar("T")


def _pinned(x: dict[str, list[int]], y: Literal["a", "b"] = "a") -> tuple[int, ...]:
    return (1,)


def _any_inside(x: dict[str, Any]) -> int:
    return 1


def _object_in_optional(x: Optional[object] = None) -> int:  # noqa: UP045
    return 1


def _annotated_any(x: Annotated[Any, "meta"]) -> int:
    return 1


def _any_returned(x: int) -> list[Any]:
    return [x]


def _type_variable(x: list[T]) -> int:
    return 1


@pytest.mark.parametrize(
    ("fn", "loose"),
    [
        (_pinned, False),
        (_any_inside, True),
        (_object_in_optional, True),
        (_annotated_any, True),
        (_any_returned, True),
        (_type_variable, True),
    ],
)
def test_a_codec_is_loose_wherever_a_type_pins_no_json_type(fn: object, loose: bool) -> None:
    # JSON would bring back such a value changed (a tuple as a list): "auto" pickles these.
    codec = codec_for(fn)
    assert codec is not None and codec.loose is loose


def _count(n: int, xs: list[int], ratio: float = 1.0) -> int:
    return n


def _join(names: list[str]) -> str:
    return ",".join(names)


def test_a_value_json_takes_as_its_type_encodes_without_warnings() -> None:
    # A tuple for a list[str] arrives as the list it is in JSON: nothing to warn about.
    codec = codec_for(_join)
    assert codec is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert codec.encode((("a", "b"),), {}) == {"names": ["a", "b"]}


def test_a_nan_where_an_int_goes_is_refused_naming_the_argument() -> None:
    # JSON would carry it as null, which the worker refuses as "expected integer, got null".
    codec = codec_for(_count)
    assert codec is not None
    with pytest.raises(
        ValueError,
        match=r"^_count: argument n: nan is not allowed there \(Input should be a finite number\)",
    ):
        codec.encode((float("nan"), []), {})
    with pytest.raises(ValueError, match=r"^_count: argument xs\[1\]: inf is not allowed there"):
        codec.encode((1, [1, float("inf")]), {})
    # A float may be NaN; JSON has no form for it, which the client deals with when sending.
    assert math.isnan(codec.encode((1, [], float("nan")), {})["ratio"])


def test_wrong_arguments_and_results_name_the_function() -> None:
    codec = codec_for(_count)
    assert codec is not None
    with pytest.raises(TypeError, match=r"^wrong arguments for _count: missing a required argu"):
        codec.encode((1,), {})
    with pytest.raises(ValueError) as info:
        codec.decode("abc")
    assert str(info.value).startswith(
        "_count returned a value its return annotation does not allow: "
        "result: Input should be a valid integer"
    )


def _many(n: int) -> dict[str, list[int]]:
    return {}


def test_a_bad_result_lists_its_first_problems_at_paths_the_worker_writes() -> None:
    codec = codec_for(_many)
    assert codec is not None
    with pytest.raises(ValueError) as info:
        codec.decode({"odd key": ["x"] * 500})
    problems = str(info.value).split(": ", 1)[1].split("; ")
    assert len(problems) == MAX_ISSUES  # not 500: the message stays readable
    assert problems[0].startswith('result["odd key"][0]: Input should be a valid integer')
    # ... and it says the list is cut, as the worker's InvalidInput does.
    assert problems[-1].endswith(f"(listing stops at {MAX_ISSUES} problems: there may be others)")
    with pytest.raises(ValueError) as few:
        codec.decode({"odd key": ["x"] * 3})
    assert "listing stops" not in str(few.value) and str(few.value).count("; ") == 2


def _keyed(n: int) -> dict[int, str]:
    return {}


def test_a_bad_key_in_a_result_is_named_as_the_key_as_the_worker_names_it() -> None:
    codec = codec_for(_keyed)
    assert codec is not None
    with pytest.raises(ValueError) as info:
        codec.decode({"seven": "x"})
    # Not pydantic's 'result.seven["[key]"]': the path of the entry, and what is wrong.
    problem = str(info.value).split(": ", 1)[1]
    assert problem.startswith("result.seven: key: Input should be a valid integer")


def test_a_generators_codec_decodes_each_item_and_the_list_of_them() -> None:
    def numbers(n: int) -> Iterator[float]:
        yield from range(n)

    async def anumbers(n: int) -> AsyncIterator[float]:
        yield 1.0

    for fn in (numbers, anumbers):
        codec = codec_for(fn)
        assert codec is not None and codec.stream
        item = codec.decode_item(1)
        assert item == 1.0 and type(item) is float  # each item as annotated
        assert codec.decode([1, 2]) == [1.0, 2.0]  # a call not streamed: the list of them
        with pytest.raises(ValueError, match="yielded an item"):
            codec.decode_item("one")
    codecs = method_codecs_for(Model, "tokens")
    assert codecs is not None and codecs[1].decode_item("a") == "a"
