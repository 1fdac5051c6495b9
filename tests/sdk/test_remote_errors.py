"""What a failed remote call says about itself."""

from __future__ import annotations

import pickle

import pytest

import flash


@pytest.mark.parametrize(
    ("names", "text"),
    [
        ({"function": "app.f", "endpoint": "cpu", "job_id": "j1"}, "boom [app.f on cpu, job j1]"),
        # No job was made (platform down, refused, out of time): the call is named all the same.
        ({"function": "app.f", "endpoint": "cpu"}, "boom [app.f on cpu]"),
        ({"endpoint": "cpu"}, "boom [endpoint cpu]"),
        ({}, "boom"),
    ],
)
def test_an_error_names_as_much_of_its_call_as_is_known(names: dict[str, str], text: str) -> None:
    error = flash.EndpointUnavailableError("boom", **names)
    assert str(error) == text
    assert str(pickle.loads(pickle.dumps(error))) == text  # also once it has travelled


@pytest.mark.parametrize(
    "error",
    [
        flash.RemoteError("boom", remote_type="ValueError", endpoint="cpu", function="app.f"),
        flash.RemoteExecutionError("boom", remote_type="KeyError", job_id="j1"),
        flash.RemoteTimeoutError("late", endpoint="cpu", function="app.f", job_id="j2"),
        flash.InvalidResultError("bad", function="app.f"),
        flash.RemoteCancelledError("stopped", job_id="j3"),
        flash.EndpointUnavailableError("down", endpoint="cpu"),
        flash.PayloadTooLargeError("big", endpoint="cpu", function="app.f"),
        flash.CallDepthError("deep", function="app.f"),
        flash.MapError([1, ValueError("two")], {1: ValueError("two")}),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_flash_error_survives_pickling(error: Exception) -> None:
    error.__notes__ = ["a note"]
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.__notes__ == error.__notes__
    for name, value in vars(error).items():
        if name not in ("errors", "results"):  # exceptions compare by identity
            assert getattr(back, name) == value, name


def test_a_map_error_keeps_its_results_and_errors_through_pickling() -> None:
    failure = ValueError("odd")
    back = pickle.loads(pickle.dumps(flash.MapError([1, failure], {1: failure})))
    assert back.results[0] == 1
    assert isinstance(back.errors[1], ValueError) and str(back.errors[1]) == "odd"
    assert back.results[1] is back.errors[1]  # the same exception, as before
