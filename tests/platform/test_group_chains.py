"""An exception group raised on an endpoint comes back to its caller with the exceptions its
members were raised from or while handling (``__cause__``, ``__context__``), as the group
raised in the worker had them: in the handler's answer, and through a served project."""

from __future__ import annotations

import asyncio
import builtins
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.integration.projects import served_files
from tests.runtime.test_generic_handler import fn_job, run

from flash.runtime import errors
from flash.runtime.generic_handler import create_handler
from flash.runtime.serialization import deserialize, serialize

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is new in 3.11")


def _group(message: str, members: list[Exception]) -> Exception:
    group: Exception = builtins.ExceptionGroup(message, members)
    return group


def _caused() -> Exception:
    try:
        raise KeyError("id")
    except KeyError as exc:
        try:
            raise ValueError("bad row") from exc
        except ValueError as error:
            return error


def _while_handling() -> Exception:
    try:
        raise OSError("disk")
    except OSError:
        try:
            raise TypeError("no fallback")
        except TypeError as error:
            return error


def raises_group_of_chained_members() -> None:
    raise _group("several", [_caused(), _while_handling(), RuntimeError("alone")])


def raises_nested_group() -> None:
    raise _group("outer", [_group("inner", [_caused()]), _while_handling()])


def raises_group_from_a_cause() -> None:
    raise _group("several", [_caused()]) from LookupError("the batch")


def raises_plain_group() -> None:
    raise _group("several", [ValueError("one"), KeyError("two")])


@pytest.fixture(autouse=True)
def _unsigned_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLASH_SIGNING_KEY", raising=False)
    monkeypatch.setenv("FLASH_ALLOW_UNSIGNED", "1")


def _answered(fn: Any) -> Any:
    answer = run(create_handler({fn.__name__: fn}), fn_job(fn.__name__))
    assert answer["success"] is False, answer
    return deserialize(answer["exception"])


def _check_caused(error: BaseException) -> None:
    assert type(error) is ValueError and error.args == ("bad row",)
    assert type(error.__cause__) is KeyError and error.__cause__.args == ("id",)
    assert error.__suppress_context__ is True


def _check_while_handling(error: BaseException) -> None:
    assert type(error) is TypeError and error.args == ("no fallback",)
    assert error.__cause__ is None and error.__suppress_context__ is False
    assert type(error.__context__) is OSError and error.__context__.args == ("disk",)


def test_the_members_of_a_group_come_back_with_their_causes_and_contexts() -> None:
    group = _answered(raises_group_of_chained_members)
    assert type(group).__name__ == "ExceptionGroup" and group.message == "several"
    caused, handling, alone = group.exceptions
    _check_caused(caused)
    _check_while_handling(handling)
    assert alone.__cause__ is None and alone.__context__ is None


def test_the_members_of_a_nested_group_come_back_with_theirs() -> None:
    outer = _answered(raises_nested_group)
    inner, handling = outer.exceptions
    assert inner.message == "inner"
    _check_caused(inner.exceptions[0])
    _check_while_handling(handling)


def test_a_group_keeps_its_own_cause_with_its_members() -> None:
    group = _answered(raises_group_from_a_cause)
    assert type(group.__cause__) is LookupError and group.__cause__.args == ("the batch",)
    _check_caused(group.exceptions[0])


def test_a_group_whose_members_have_no_chain_reads_as_an_older_caller_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing for an older caller's _rechained(error, pickled, links) to miss: the answer
    # is what it was, one it can read.
    answer = run(create_handler({"f": raises_plain_group}), fn_job("f"))
    monkeypatch.setattr(errors, "_rechained", lambda error, pickled, links: error)
    group = deserialize(answer["exception"])
    assert [type(e) for e in group.exceptions] == [ValueError, KeyError]


def test_a_chain_survives_a_plain_pickle_round_trip() -> None:
    error = _group("several", [_caused()])
    chain = errors.chain_of(error)
    sent = errors.chained_pickle(chain, error, [serialize(e) for e in chain[1:]])
    group = pickle.loads(pickle.dumps(sent))
    _check_caused(group.exceptions[0])


FILES = {
    "pyproject.toml": """
        [project]
        name = "groupapp"
        version = "0.1.0"
        dependencies = []
    """,
    "groupapp/__init__.py": "",
    "groupapp/work.py": """
        from flash import CpuLiveServerless, remote

        cpu = CpuLiveServerless(name="grouped", workersMax=1)


        def load(row):
            try:
                return row["id"]
            except KeyError as exc:
                raise ValueError("bad row") from exc


        @remote(cpu)
        def load_all(rows):
            failures = []
            for row in rows:
                try:
                    load(row)
                except ValueError as exc:
                    failures.append(exc)
            raise ExceptionGroup("some rows failed", failures)
    """,
}


def test_a_caller_catches_the_group_with_its_members_causes(tmp_path: Path) -> None:
    root = (tmp_path / "project").resolve()
    with served_files(root, FILES):
        from groupapp import work  # type: ignore[import-not-found]

        with pytest.raises(builtins.ExceptionGroup) as raised:
            asyncio.run(work.load_all([{}, {"id": 1}, {}]))
    group = raised.value
    assert group.message == "some rows failed" and len(group.exceptions) == 2
    for member in group.exceptions:
        assert type(member) is ValueError and member.args == ("bad row",)
        assert type(member.__cause__) is KeyError and member.__cause__.args == ("id",)
        assert member.__suppress_context__ is True
