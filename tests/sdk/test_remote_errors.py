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
