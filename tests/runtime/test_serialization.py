"""The wire encoding: base64 of cloudpickle, with clear errors for bad payloads."""

from __future__ import annotations

import base64
import pickle
import threading
from dataclasses import dataclass
from typing import Any

import cloudpickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flash.runtime.serialization import (
    SerializationError,
    deserialize,
    deserialize_args,
    serialize,
    serialize_args,
)


@dataclass
class Point:
    x: float
    y: float


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@settings(deadline=None)  # a busy CI machine can stall one example past 200 ms
@given(json_values)
def test_json_like_values_round_trip(value: Any) -> None:
    assert deserialize(serialize(value)) == value


@settings(deadline=None)
@given(
    st.one_of(
        st.integers(),
        st.text(),
        st.binary(),
        st.lists(st.integers(), max_size=100),
        st.tuples(st.text(), st.floats(allow_nan=False)),
        st.dictionaries(st.text(), st.integers(), max_size=100),
    )
)
def test_plain_values_encode_exactly_like_cloudpickle(value: Any) -> None:
    # A worker and a caller on different code paths must still agree byte for byte.
    expected = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    assert base64.b64decode(serialize(value)) == expected


def test_output_is_ascii_standard_base64_of_a_highest_protocol_pickle() -> None:
    encoded = serialize({"text": "héllo", "blob": b"\xff\xfe" * 50})
    assert isinstance(encoded, str)
    assert encoded.isascii()
    raw = base64.b64decode(encoded, validate=True)  # standard alphabet, padded
    assert raw[0] == pickle.PROTO[0] and raw[1] == pickle.HIGHEST_PROTOCOL
    assert pickle.loads(raw) == {"text": "héllo", "blob": b"\xff\xfe" * 50}


def test_custom_class_instances_round_trip() -> None:
    assert deserialize(serialize([Point(1.0, 2.5), Point(-3, 0)])) == [
        Point(1.0, 2.5),
        Point(-3, 0),
    ]


def test_lambdas_closures_and_local_classes_travel_by_value() -> None:
    offset = 10

    def add_offset(v: int) -> int:
        return v + offset

    class Local:
        def __init__(self, v: int) -> None:
            self.v = v

    square = deserialize(serialize(lambda v: v * v))
    closure = deserialize(serialize(add_offset))
    local = deserialize(serialize(Local(7)))
    assert square(4) == 16
    assert closure(5) == 15
    assert local.v == 7


def test_unpicklable_value_names_its_type() -> None:
    with pytest.raises(SerializationError, match=r"cannot pickle a value of type .*lock") as info:
        serialize(threading.Lock())
    assert info.value.__cause__ is not None


def test_an_unpicklable_argument_is_named() -> None:
    # Which of a call's (or a class's constructor's) arguments would not go.
    with pytest.raises(SerializationError, match=r"^args\[1\]: cannot pickle .*lock"):
        serialize_args([1, threading.Lock()], {})
    with pytest.raises(SerializationError, match=r"^constructor kwargs\['lock'\]: cannot"):
        serialize_args([], {"ok": 1, "lock": threading.Lock()}, label="constructor ")


def test_unpicklable_value_inside_a_container_is_reported() -> None:
    with pytest.raises(SerializationError, match="type list"):
        serialize([1, (x for x in range(3))])


@pytest.mark.parametrize("data", [b"gAU=", 42, None, ["gAU="]])
def test_deserialize_rejects_non_strings(data: Any) -> None:
    with pytest.raises(
        SerializationError, match=f"expected a base64 string, got {type(data).__name__}"
    ):
        deserialize(data)


@pytest.mark.parametrize("data", ["not base64!", "abc", "gAU=\n=", "é"])
def test_deserialize_rejects_bad_base64(data: str) -> None:
    with pytest.raises(SerializationError, match="not valid base64") as info:
        deserialize(data)
    assert isinstance(info.value.__cause__, ValueError)


def test_urlsafe_alphabet_is_rejected_not_silently_misread() -> None:
    urlsafe = base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode()
    assert "-" in urlsafe or "_" in urlsafe
    with pytest.raises(SerializationError, match="not valid base64"):
        deserialize(urlsafe)


def test_unpickle_failure_says_what_failed_and_keeps_the_cause() -> None:
    with pytest.raises(SerializationError, match="failed to unpickle: UnpicklingError") as info:
        deserialize(base64.b64encode(b"definitely not a pickle").decode())
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)


def test_payload_referring_to_a_missing_module_names_the_module() -> None:
    # protocol 0 GLOBAL opcode: what a pickled object of an uninstalled package looks like
    payload = base64.b64encode(b"cno_such_module_for_flash\nThing\n.").decode()
    with pytest.raises(SerializationError, match="no_such_module_for_flash") as info:
        deserialize(payload)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_serialization_error_is_a_value_error() -> None:
    assert issubclass(SerializationError, ValueError)


def test_args_round_trip() -> None:
    args, kwargs = serialize_args((1, Point(0, 1)), {"name": "x", "scale": 2.0})
    assert all(isinstance(a, str) for a in args)
    assert set(kwargs) == {"name", "scale"}
    assert deserialize_args(args, kwargs) == ([1, Point(0, 1)], {"name": "x", "scale": 2.0})


def test_deserialize_args_names_the_failing_argument() -> None:
    good = serialize(1)
    with pytest.raises(SerializationError, match=r"^args\[1\]: not valid base64"):
        deserialize_args([good, "%%%"], {})
    with pytest.raises(SerializationError, match=r"^kwargs\['scale'\]: expected a base64 string"):
        deserialize_args([good], {"scale": 3})  # type: ignore[dict-item]
    with pytest.raises(SerializationError, match=r"^method_args\[0\]: payload failed"):
        deserialize_args(["AAAA"], {}, args_field="method_args")
