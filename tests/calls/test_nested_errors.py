"""A flash error raised by a nested call, carried up a chain of calls answer by answer
(the worker's handler answering, its caller raising what it answered), in-process."""

from __future__ import annotations

import pytest

from flash.runtime import client, generic_handler
from flash.runtime.errors import CallDepthError


def _up_the_chain(error: BaseException, hops: int, *, pickled: bool) -> BaseException:
    for hop in range(hops):
        try:
            raise error
        except Exception as exc:
            wrapped = generic_handler._UserCodeError(f"'app.fn{hop}'", exc)
            answer = generic_handler._failure(wrapped, pickle_exception=pickled)
        assert len(answer["traceback"]) < 2000  # no hop holds those below it again
        names = {"endpoint": f"ep{hop}", "function": f"app.fn{hop}", "job_id": f"job{hop}"}
        error = client._remote_exception(answer["error"], answer, names)
    return error


@pytest.mark.parametrize("pickled", [True, False])
def test_a_call_depth_error_crosses_every_hop_as_itself(pickled: bool) -> None:
    deepest = CallDepthError(
        "remote calls nested more than 16 deep (a -> b); a loop", endpoint="ep", function="b"
    )
    error = _up_the_chain(deepest, 17, pickled=pickled)
    assert type(error) is CallDepthError
    assert str(error) == "remote calls nested more than 16 deep (a -> b); a loop [b on ep]"
    assert error.remote_type is None
    notes = getattr(error, "__notes__", [])
    # Pickled, the error carries every hop's traceback; rebuilt from text, the last one.
    assert len(notes) == (17 if pickled else 1) and all(
        n.startswith("Remote traceback (endpoint ep") for n in notes
    )
