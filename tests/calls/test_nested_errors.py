"""A flash error raised by a nested call, carried up a chain of calls answer by answer
(the worker's handler answering, its caller raising what it answered), in-process."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from flash.runtime import client, generic_handler
from flash.runtime.errors import CallDepthError, RemoteExecutionError, attach_remote_traceback


def _up_the_chain(error: BaseException, hops: int, *, pickled: bool) -> BaseException:
    for hop in range(hops):
        answer = _answer(error, hop, pickled=pickled)
        # Each hop's traceback holds those below it once (a caller that unpickles the
        # exception leaves out what its notes hold): it grows by a hop's, never doubles.
        assert len(answer["traceback"]) < 600 * (hop + 1)
        error = _raised(answer, hop)
    return error


def _answer(error: BaseException, hop: int, *, pickled: bool = True) -> dict[str, Any]:
    """The answer of the worker of hop ``hop`` whose function raised ``error``."""
    try:
        raise error
    except Exception as exc:
        wrapped = generic_handler._UserCodeError(f"'app.fn{hop}'", exc)
        return generic_handler._failure(wrapped, pickle_exception=pickled)


def _raised(answer: dict[str, Any], hop: int) -> BaseException:
    """What the caller of hop ``hop`` raises for its ``answer``."""
    names = {"endpoint": f"ep{hop}", "function": f"app.fn{hop}", "job_id": f"job{hop}"}
    return client._remote_exception(answer["error"], answer, names)


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
    # Pickled, the error carries every hop's traceback as a note; rebuilt from text, one
    # note holds them all. Either way no hop's is lost.
    assert len(notes) == (17 if pickled else 1) and all(
        n.startswith("Remote traceback (endpoint ep") for n in notes
    )
    assert "".join(notes).count("Remote traceback (endpoint ep") == 17
    if not pickled:
        assert error.remote_traceback and error.remote_traceback.rstrip() in notes[0]


def test_an_answer_nobody_vouches_for_names_no_flash_error() -> None:
    # A forged answer must not steer the caller's handling (a retry on a timeout, say).
    try:
        raise CallDepthError("deep", endpoint="ep", function="b")
    except Exception as exc:
        answer = generic_handler._failure(generic_handler._UserCodeError("'app.fn'", exc))
    assert answer["remote_error"]["type"] == "CallDepthError"
    names = {"endpoint": "ep0", "function": "app.fn", "job_id": "job0"}
    error = client._remote_exception(answer["error"], client._without_pickle(answer), names)
    assert type(error) is RemoteExecutionError and error.remote_type == "CallDepthError"


def test_the_tracebacks_of_what_an_error_was_raised_from_are_kept() -> None:
    # A pickle carries the exception's notes, not its cause's: the text keeps both.
    below = KeyError("model.bin")
    attach_remote_traceback(below, "Traceback ...\nKeyError: 'model.bin'", "ep1", "job1")
    try:
        try:
            raise below
        except KeyError as exc:
            raise RuntimeError("load failed") from exc
    except RuntimeError as exc:
        answer = generic_handler._failure(generic_handler._UserCodeError("'app.load'", exc))
    assert "exception" in answer  # pickled, and still:
    assert "Remote traceback (endpoint ep1, job job1):" in answer["traceback"]


def test_an_exception_whose_class_the_caller_lacks_says_why_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "workeronly_quota.py").write_text("class Gone(Exception):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    answer = _answer(importlib.import_module("workeronly_quota").Gone("used up"), 0)
    # The caller: the module is not installed there.
    monkeypatch.delitem(sys.modules, "workeronly_quota")
    sys.path.remove(str(tmp_path))
    first = _raised(answer, 0)
    a_hop_up = _raised(_answer(first, 1), 1)
    for error in (first, a_hop_up):
        assert type(error) is RemoteExecutionError and error.remote_type == "Gone"
        assert str(error) == "'app.fn0' raised Gone: used up [app.fn0 on ep0, job job0]"
        assert error.__notes__[0] == (
            "Gone could not be rebuilt here: "
            "ModuleNotFoundError: No module named 'workeronly_quota'"
        )
        assert error.__notes__[1].startswith("Remote traceback (endpoint ep0, job job0):")
