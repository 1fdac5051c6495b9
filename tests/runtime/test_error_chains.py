"""A remote exception comes back with the exceptions it was raised from (``__cause__``,
``__context__``, and the whole chain in its traceback text), and every error a worker sends
stays within 64 KiB of UTF-8, a custom handler's included."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import serve_jobs, worker_env
from tests.integration.projects import served_files
from tests.runtime.test_generic_handler import fn_job, run

from flash.runtime.errors import cut_text
from flash.runtime.generic_handler import create_handler
from flash.runtime.serialization import SerializationError, deserialize

LIMIT = 64 * 1024
DIRECT_CAUSE = "The above exception was the direct cause of the following exception:"
DURING_HANDLING = "During handling of the above exception, another exception occurred:"

# ---------------------------------------------------------------- user code


def raised_from() -> None:
    raise ValueError("bad row") from KeyError("id")


def raised_while_handling() -> None:
    try:
        {}["id"]
    except KeyError:
        raise ValueError("bad row")  # noqa: B904 - the context is what is tested


def raised_from_unpicklable() -> None:
    raise ValueError("bad row") from KeyError(threading.Lock())


def raised_in_a_cycle() -> None:
    first, second = ValueError("first"), KeyError("second")
    second.__cause__ = first
    raise first from second


def raised_from_a_long_chain() -> None:
    error: Exception = KeyError("start")
    for n in range(40):
        try:
            raise error
        except Exception as exc:
            error = ValueError(f"link {n} " + "x" * 50_000)
            error.__cause__ = exc
    raise error


class KwErr(Exception):
    """Its __init__ does not take its own args: pickle's default form does not unpickle."""

    def __init__(self, *, code: int) -> None:
        super().__init__(f"code {code}")


def raised_from_a_keyword_only_cause() -> None:
    raise ValueError("bad row") from KwErr(code=7)


class ShortDecodeError(UnicodeDecodeError):
    """Its __init__ takes other arguments, and UnicodeDecodeError's sets its fields."""

    def __init__(self, reason: str) -> None:
        super().__init__("utf-8", b"\xff", 0, 1, reason)


def raised_a_short_decode_error() -> None:
    raise ShortDecodeError("bad byte")


class QuotaDefault(Exception):
    """Its __init__ takes its message too, as a user name: the default form loads, wrongly."""

    def __init__(self, user: str, used: int = 0) -> None:
        super().__init__(f"user {user} over quota: {used}")
        self.user, self.used = user, used


def raised_quota_default() -> None:
    raise QuotaDefault("bob", 7)


AUDITED: list[str] = []


class Audited(Exception):
    """Its __init__ has an effect (an audit line): made once when raised, never again."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        AUDITED.append(message)


def raised_audited() -> None:
    raise Audited("disk full")


def raised_with_a_huge_link() -> None:
    try:
        {}["id"]
    except KeyError:
        raise ValueError("bad row") from OSError(b"\0" * 10_000_000)  # bytes: no cutting them


class CountedError(Exception):
    pickled = 0

    def __reduce__(self) -> Any:
        type(self).pickled += 1
        return super().__reduce__()


def raised_long_from_a_counted_cause() -> None:
    raise ValueError("x" * 100_000) from CountedError("cause")


def raised_wide_characters() -> None:
    raise ValueError("start-" + "\N{GRINNING FACE}" * 100_000 + "-end")


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _unsigned_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    # The wire format, not signing (which has its own tests).
    monkeypatch.delenv("FLASH_SIGNING_KEY", raising=False)
    monkeypatch.setenv("FLASH_ALLOW_UNSIGNED", "1")


def _answer(fn: Any) -> dict[str, Any]:
    handler = create_handler({fn.__name__: fn})
    answer = run(handler, fn_job(fn.__name__))
    assert answer["success"] is False, answer
    return answer


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------- chains, in the handler


def test_a_cause_comes_back_set_on_the_exception_and_in_its_traceback() -> None:
    answer = _answer(raised_from)
    error = deserialize(answer["exception"])
    assert type(error) is ValueError and error.args == ("bad row",)
    assert type(error.__cause__) is KeyError and error.__cause__.args == ("id",)
    assert error.__suppress_context__ is True
    traceback = answer["traceback"]
    assert traceback.index("KeyError: 'id'") < traceback.index(DIRECT_CAUSE)
    assert traceback.rstrip().endswith("ValueError: bad row")


def test_an_exception_raised_while_handling_another_keeps_it_as_context() -> None:
    answer = _answer(raised_while_handling)
    error = deserialize(answer["exception"])
    assert error.__cause__ is None
    assert type(error.__context__) is KeyError and error.__context__.args == ("id",)
    assert error.__suppress_context__ is False
    assert DURING_HANDLING in answer["traceback"]
    assert "generic_handler.py" not in answer["traceback"]  # Flash's frames stay out


def test_a_cause_that_does_not_pickle_leaves_the_exception_and_the_text() -> None:
    answer = _answer(raised_from_unpicklable)
    error = deserialize(answer["exception"])
    assert type(error) is ValueError and error.args == ("bad row",)
    assert error.__cause__ is None
    assert DIRECT_CAUSE in answer["traceback"] and "KeyError: <unlocked" in answer["traceback"]


def test_a_cycle_in_a_chain_comes_back_as_the_cycle() -> None:
    answer = _answer(raised_in_a_cycle)
    error = deserialize(answer["exception"])
    assert error.args == ("first",) and error.__cause__.args == ("second",)
    assert error.__cause__.__cause__ is error
    assert DIRECT_CAUSE in answer["traceback"]


def test_a_long_chain_of_long_messages_stays_within_the_cap() -> None:
    answer = _answer(raised_from_a_long_chain)
    assert len(answer["exception"]) <= LIMIT
    assert _size(answer["traceback"]) <= LIMIT and _size(answer["error"]) <= LIMIT
    error = deserialize(answer["exception"])
    assert type(error) is ValueError and str(error).startswith("link 39 ")
    assert "characters cut" in answer["traceback"]
    assert answer["traceback"].rstrip().endswith("x")  # the exception raised, at the end
    assert type(error.__cause__) is ValueError and str(error.__cause__).startswith("link 38 ")
    links = 0
    while error is not None:  # at most 16 of the 41 travel
        links, error = links + 1, error.__cause__
    assert links == 16


def test_a_cause_whose_init_takes_other_arguments_comes_back_as_itself() -> None:
    answer = _answer(raised_from_a_keyword_only_cause)
    error = deserialize(answer["exception"])
    assert type(error) is ValueError and error.args == ("bad row",)
    assert type(error.__cause__) is KwErr and str(error.__cause__) == "code 7"
    assert error.__suppress_context__ is True
    assert DIRECT_CAUSE in answer["traceback"] and "KwErr: code 7" in answer["traceback"]


def test_an_exception_whose_init_also_takes_its_message_comes_back_as_itself() -> None:
    error = deserialize(_answer(raised_quota_default)["exception"])
    assert type(error) is QuotaDefault and str(error) == "user bob over quota: 7"
    assert (error.args, error.user, error.used) == (("user bob over quota: 7",), "bob", 7)


def test_sending_an_exception_does_not_run_its_init_again_on_the_worker() -> None:
    AUDITED.clear()
    answer = _answer(raised_audited)
    assert AUDITED == ["disk full"]  # the raise's own
    error = deserialize(answer["exception"])  # the caller's load runs no __init__ either
    assert type(error) is Audited and str(error) == "disk full" and AUDITED == ["disk full"]


class JobExit(SystemExit):
    """A C base's field (SystemExit.code) set by its __init__."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(status)
        self.why = why


def test_an_exception_whose_c_base_fields_its_init_sets_is_never_rebuilt_without_them() -> None:
    # Rebuilt without __init__, JobExit(3, ...) read the same (args, text) but had code None:
    # re-raised by a caller, its process exited 0. It goes in pickle's usual form, which a
    # caller cannot load, and then says why (client._remote_exception's first note).
    from flash.runtime.serialization import serialize

    with pytest.raises(SerializationError, match=r"JobExit.__init__\(\) missing"):
        deserialize(serialize(JobExit(3, "done"), errors_without_init=True))


def test_an_exception_that_needs_its_init_goes_in_the_default_form() -> None:
    # Rebuilt without its __init__ it would have no fields: it goes as pickle makes it, and
    # a caller that cannot load it says why (client._remote_exception's first note).
    answer = _answer(raised_a_short_decode_error)
    with pytest.raises(SerializationError, match=r"ShortDecodeError.__init__\(\)"):
        deserialize(answer["exception"])
    assert answer["error"].endswith(
        "raised ShortDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: bad byte"
    )


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is new in 3.11")
def test_a_group_member_whose_init_takes_other_arguments_comes_back_as_itself() -> None:
    def raised_in_a_group() -> None:
        members = [KwErr(code=7), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad byte")]
        raise ExceptionGroup("several", members)  # noqa: F821 - 3.11+

    error = deserialize(_answer(raised_in_a_group)["exception"])
    assert type(error).__name__ == "ExceptionGroup" and error.message == "several"
    quota, decode = error.exceptions
    assert type(quota) is KwErr and quota.args == ("code 7",)
    # A C exception is rebuilt by its own __init__, which sets its fields.
    assert type(decode) is UnicodeDecodeError and (decode.start, decode.reason) == (0, "bad byte")


def test_a_cause_whose_class_only_the_worker_has_leaves_the_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "workeronly_errors.py"
    module.write_text("class DbError(Exception):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    db_error = importlib.import_module("workeronly_errors").DbError

    def raised_from_a_worker_only_class() -> None:
        raise ValueError("bad row") from db_error("no connection")

    answer = _answer(raised_from_a_worker_only_class)
    # The caller: the module is not installed there.
    monkeypatch.delitem(sys.modules, "workeronly_errors")
    sys.path.remove(str(tmp_path))
    module.unlink()
    importlib.invalidate_caches()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("workeronly_errors")
    error = deserialize(answer["exception"])
    assert type(error) is ValueError and error.args == ("bad row",)
    assert error.__cause__ is None
    assert "DbError: no connection" in answer["traceback"]


def test_a_link_too_big_to_go_is_left_out_and_the_rest_of_the_chain_goes() -> None:
    answer = _answer(raised_with_a_huge_link)
    assert len(answer["exception"]) <= LIMIT
    error = deserialize(answer["exception"])
    assert type(error) is ValueError and error.args == ("bad row",)
    assert error.__cause__ is None and error.__suppress_context__ is True
    assert type(error.__context__) is KeyError and error.__context__.args == ("id",)


def test_each_link_is_pickled_once_when_the_exception_is_cut() -> None:
    CountedError.pickled = 0
    answer = _answer(raised_long_from_a_counted_cause)
    assert CountedError.pickled == 1
    error = deserialize(answer["exception"])
    assert "characters cut" in str(error) and error.__cause__.args == ("cause",)


# ---------------------------------------------------------------- the cap counts bytes


def test_wide_characters_are_cut_to_the_cap_in_bytes_between_characters() -> None:
    answer = _answer(raised_wide_characters)
    for field in ("error", "traceback"):
        text = answer[field]
        assert _size(text) <= LIMIT, (field, _size(text))
        assert "characters cut" in text and "-end" in text
        assert "\ufffd" not in text
    message = str(deserialize(answer["exception"]))
    assert message.startswith("start-\N{GRINNING FACE}") and message.endswith("-end")
    assert "characters cut" in message


@pytest.mark.parametrize("limit", [120, 121, 200, 1000])
@pytest.mark.parametrize("text", ["x" * 5000, "\N{GRINNING FACE}" * 5000, "é" * 5000])
def test_a_cut_text_is_within_its_limit(limit: int, text: str) -> None:
    cut = cut_text(text, limit)
    assert _size(cut) <= limit and "characters cut" in cut


@pytest.mark.parametrize("limit", [-1, 0, 59, 119])
def test_a_limit_too_small_for_the_note_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        cut_text("short", limit)


# ---------------------------------------------------------------- a custom handler's errors

CUSTOM_WORKER = """
from flash.runtime.worker import start


def handler(job):
    raise ValueError("head-" + "x" * 50_000_000 + "-tail")


def wide(job):
    raise ValueError("head-" + "\N{GRINNING FACE}" * 1_000_000 + "-tail")


def streams(job):
    yield 1
    raise ValueError("head-" + "x" * 50_000_000 + "-tail")


start({"stream": streams, "wide": wide}.get(job_kind, handler))
"""


@pytest.mark.parametrize("kind", ["plain", "stream", "wide"])
def test_a_custom_handlers_huge_error_is_cut_before_it_is_sent(
    tmp_path: Path, kind: str, worker_processes: list[subprocess.Popen[Any]]
) -> None:
    (tmp_path / "worker.py").write_text(f"job_kind = {kind!r}\n{CUSTOM_WORKER}")
    with serve_jobs([{"id": "big-1", "input": {}}]) as (port, queue):
        base = f"http://127.0.0.1:{port}"
        worker = subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py")],
            env=worker_env(port, RUNPOD_WEBHOOK_POST_STREAM=f"{base}/job-stream/w1/$ID?gpu=none"),
            stderr=subprocess.DEVNULL,
        )
        worker_processes.append(worker)
        assert queue.all_done.wait(60), "the job was never reported"
    (body,) = queue.bodies.values()
    assert len(body) < 3 * LIMIT, len(body)
    error = json.loads(body)["error"]
    if kind != "stream":
        error = json.loads(error)["error_message"]
    head = ("head-\N{GRINNING FACE}",) if kind == "wide" else ("head-xxx", "handler: head-xxx")
    assert error.startswith(head) and "characters cut" in error
    assert "-tail" in error


# ---------------------------------------------------------------- end to end

FILES = {
    "pyproject.toml": """
        [project]
        name = "chainapp"
        version = "0.1.0"
        dependencies = []
    """,
    "chainapp/__init__.py": "",
    "chainapp/work.py": """
        from flash import CpuLiveServerless, remote

        cpu = CpuLiveServerless(name="chained", workersMax=1)


        def lookup(row):
            return row["id"]


        @remote(cpu)
        def load(row):
            try:
                return lookup(row)
            except KeyError as exc:
                raise ValueError("bad row") from exc


        @remote(cpu)
        def load_quietly(row):
            try:
                return lookup(row)
            except KeyError:
                raise ValueError("no row")
    """,
}


def test_a_caller_catches_the_remote_exception_with_its_cause(tmp_path: Path) -> None:
    root = (tmp_path / "project").resolve()
    with served_files(root, FILES):
        from chainapp import work  # type: ignore[import-not-found]

        with pytest.raises(ValueError, match="bad row") as raised:
            asyncio.run(work.load({}))
        with pytest.raises(ValueError, match="no row") as quietly:
            asyncio.run(work.load_quietly({}))
        # .call() from synchronous code gives the same chain (it once added its own
        # "no running event loop" as the context).
        with pytest.raises(ValueError, match="no row") as called:
            work.load_quietly.call({})
    assert type(called.value.__context__) is KeyError, repr(called.value.__context__)
    context = quietly.value  # raised while handling, with no ``from``
    assert context.__cause__ is None and context.__suppress_context__ is False
    assert type(context.__context__) is KeyError and context.__context__.args == ("id",)
    assert DURING_HANDLING in "\n".join(getattr(context, "__notes__", []))
    error = raised.value
    assert type(error.__cause__) is KeyError and error.__cause__.args == ("id",)
    notes = "\n".join(getattr(error, "__notes__", []))
    source = str(root / "chainapp" / "work.py")
    assert f'File "{source}", line 7, in lookup' in notes, notes  # the cause's own frames
    assert notes.index("KeyError: 'id'") < notes.index(DIRECT_CAUSE), notes
    assert notes.rstrip().endswith("ValueError: bad row"), notes
