"""An endpoint's error that holds a secret of its worker (the app's signing key, a RunPod
secret its env names) leaves the worker masked: the secret is in neither the job store, the
job's /status, nor the platform's log, and the error still says what went wrong. A real
project, built and served, called through its ``@remote`` functions."""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import Logs, final_status
from tests.integration.projects import served_files

import flash
from flash.platform.local import LocalPlatform
from flash.runtime.signing import key_to_text

# Filled into the endpoint's env from this process's environment, as RunPod fills a secret.
TOKEN = "tok-" + "6f1d" * 8
SECRET_NAME = "RUNPOD_SECRET_leaky_token"
# A password as people choose them: repr() and JSON write it escaped, not as it is.
ODD = 'P\u00e4ssw\u00f6rd"Quote\\Back-42'
ODD_NAME = "RUNPOD_SECRET_odd_token"

FILES = {
    "pyproject.toml": """
        [project]
        name = "leakyapp"
        version = "0.1.0"
        dependencies = []
    """,
    "leakyapp/__init__.py": "",
    "leakyapp/work.py": """
        import json
        import os

        from flash import CpuLiveServerless, remote

        cpu = CpuLiveServerless(
            name="leaky",
            workersMax=1,
            env={
                "LEAKY_TOKEN": "{{ RUNPOD_SECRET_leaky_token }}",
                "ODD_TOKEN": "{{ RUNPOD_SECRET_odd_token }}",
            },
        )
        # An endpoint with a generator function streams: its failures travel as JSON text.
        streaming = CpuLiveServerless(name="leaky-stream", workersMax=1)


        def key():
            return os.environ["FLASH_SIGNING_KEY"]


        @remote(cpu)
        def raises_key():
            raise RuntimeError(key())


        @remote(cpu)
        def raises_from_key():
            try:
                raise KeyError(key())
            except KeyError as exc:
                raise RuntimeError("could not load the model") from exc


        @remote(cpu)
        def raises_while_handling_key():
            try:
                {}[key()]
            except KeyError:
                raise RuntimeError("lookup failed")


        @remote(cpu)
        def raises_token():
            raise RuntimeError("bad token " + os.environ["LEAKY_TOKEN"])


        @remote(cpu)
        def raises_odd_token_written_as_code():
            odd = os.environ["ODD_TOKEN"]
            print("token:", repr(odd), json.dumps(odd), ascii(odd))
            raise ValueError([odd], json.dumps({"token": odd}))


        @remote(cpu)
        def raises_key_in_an_attribute():
            error = RuntimeError("bad credentials")
            error.detail = key()  # in its pickle, not in its text
            raise error


        @remote(cpu)
        def raises_group():
            raise ExceptionGroup("several", [ValueError(key()), KeyError("other")])


        @remote(streaming)
        def streams_then_raises(n):
            yield from range(n)
            raise RuntimeError("stream broke at " + key())


        @remote(streaming)
        def raises_from_key_streaming():
            try:
                raise KeyError(key())
            except KeyError as exc:
                raise RuntimeError("could not load the model") from exc
    """,
}


class Served:
    def __init__(self, platform: LocalPlatform, work: Any, logs: Logs) -> None:
        self.platform = platform
        self.work = work
        self.logs = logs
        # ODD as itself and as repr(), JSON and ascii() write it.
        odd = [ODD, repr(ODD)[1:-1], json.dumps(ODD)[1:-1], ascii(ODD)[1:-1]]
        odd.append(repr(json.dumps(ODD)[1:-1])[1:-1])  # the repr of a JSON text holding it
        self.secrets = [key_to_text(platform.signing_key), TOKEN, *odd]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = (tmp_path_factory.mktemp("leaky") / "project").resolve()
    logs = Logs()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_NAME, TOKEN)
        patch.setenv(ODD_NAME, ODD)
        with served_files(root, FILES, echo=logs) as platform:
            from leakyapp import work  # type: ignore[import-not-found]

            yield Served(platform, work, logs)


def _raised(call: Any) -> BaseException:
    with pytest.raises(BaseException) as raised:
        asyncio.run(call)
    return raised.value


def _job_of(error: BaseException, endpoint: str) -> str:
    if isinstance(error, flash.RemoteError) and error.job_id:
        return error.job_id
    notes = "\n".join(getattr(error, "__notes__", []))
    return notes.split(f"Remote traceback (endpoint {endpoint}, job ", 1)[1].split("):", 1)[0]


def _traceback(status: dict[str, Any]) -> str:
    """The worker's traceback in a failed job's /status: in its output (the failure answer),
    or in its error, the answer as JSON text (a streaming endpoint's)."""
    output = status.get("output")
    if isinstance(output, dict):
        return str(output["traceback"])
    return str(json.loads(status["error"])["traceback"])


def _decoded(value: Any) -> Iterator[str]:
    """The strings in a JSON value, and what base64 ones decode to (a pickled exception)."""
    if isinstance(value, str):
        yield value
        with contextlib.suppress(binascii.Error, ValueError):
            yield base64.b64decode(value, validate=True).decode("latin-1")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _decoded(key)
            yield from _decoded(item)
    elif isinstance(value, list):
        for item in value:
            yield from _decoded(item)


def _assert_no_secret(served: Served, text: str, where: str) -> None:
    for secret in served.secrets:
        assert secret not in text, f"a secret is in {where}: {text[:3000]}"


def _everything_said_about(error: BaseException) -> str:
    """The error as its caller sees it: its text, notes and the exceptions of its chain."""
    parts = []
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        parts += [repr(current), str(current), *getattr(current, "__notes__", [])]
        parts += [repr(a) for a in current.args]
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        todo += list(getattr(current, "exceptions", ()))
    return "\n".join(parts)


def _check_stored_and_served(served: Served, endpoint: str, job_id: str) -> dict[str, Any]:
    """The job's /status, after checking that neither it nor the store holds a secret."""
    platform = served.platform
    status = final_status(platform.url, endpoint, job_id, api_key=platform.api_key)
    raw = httpx.get(
        f"{platform.url}/v2/{endpoint}/status/{job_id}",
        headers={"Authorization": f"Bearer {platform.api_key}"} if platform.api_key else {},
    ).text
    _assert_no_secret(served, raw, "the /status answer")
    _assert_no_secret(served, "\n".join(_decoded(status)), "the /status answer, decoded")
    database = platform.state_dir / "jobs.db"
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT state, output, input FROM jobs WHERE id = ?", (job_id,)
        ).fetchall()
        chunks = db.execute("SELECT chunk FROM chunks WHERE job_id = ?", (job_id,)).fetchall()
    assert rows, f"job {job_id} is not in {database}"
    for column in (*rows[0], *(c[0] for c in chunks)):
        if column:
            _assert_no_secret(served, column, "the job's row of jobs.db")
            _assert_no_secret(served, "\n".join(_decoded(json.loads(column))), "jobs.db, decoded")
    payloads = database.with_name("jobs-payloads")
    for path in payloads.rglob("*") if payloads.is_dir() else ():
        if path.is_file():
            _assert_no_secret(served, path.read_text("utf-8", "replace"), str(path))
    return status


def _check_logs(served: Served) -> None:
    _assert_no_secret(served, served.logs.text(), "the platform's log")


def _check_error(
    served: Served, error: BaseException, shown: str, endpoint: str = "leaky"
) -> dict[str, Any]:
    said = _everything_said_about(error)
    _assert_no_secret(served, said, "the error the caller got")
    assert shown in said, said[:3000]  # still says what went wrong
    status = _check_stored_and_served(served, endpoint, _job_of(error, endpoint))
    _check_logs(served)
    assert status["status"] == "FAILED", status
    return status


def _is(error: BaseException, kind: type[BaseException]) -> bool:
    """The error is ``kind`` raised again, or Flash's error naming it (the worker's answer
    lost its pickled exception, which held the secret)."""
    if isinstance(error, kind):
        return True
    return isinstance(error, flash.RemoteError) and error.remote_type == kind.__name__


def test_a_message_holding_the_signing_key_is_masked(served: Served) -> None:
    error = _raised(served.work.raises_key())
    assert isinstance(error, RuntimeError), repr(error)  # masked, it still pickles
    status = _check_error(served, error, "<env FLASH_SIGNING_KEY>")
    assert "<env FLASH_SIGNING_KEY>" in status["error"], status


def test_a_cause_holding_the_signing_key_is_masked(served: Served) -> None:
    error = _raised(served.work.raises_from_key())
    assert isinstance(error, RuntimeError), repr(error)  # masked, it still pickles
    status = _check_error(served, error, "could not load the model")
    traceback = _traceback(status)
    assert "KeyError: '<env FLASH_SIGNING_KEY>'" in traceback, traceback
    assert "The above exception was the direct cause" in traceback, traceback


def test_a_cause_holding_the_signing_key_on_a_streaming_endpoint_is_masked(
    served: Served,
) -> None:
    error = _raised(served.work.raises_from_key_streaming())
    assert isinstance(error, RuntimeError), repr(error)  # masked, it still pickles
    status = _check_error(served, error, "could not load the model", "leaky-stream")
    assert "KeyError: '<env FLASH_SIGNING_KEY>'" in _traceback(status), status


def test_a_context_holding_the_signing_key_is_masked(served: Served) -> None:
    error = _raised(served.work.raises_while_handling_key())
    assert isinstance(error, RuntimeError), repr(error)  # masked, it still pickles
    status = _check_error(served, error, "lookup failed")
    assert "KeyError: '<env FLASH_SIGNING_KEY>'" in _traceback(status), status


def test_a_secret_the_endpoints_env_names_is_masked(served: Served) -> None:
    error = _raised(served.work.raises_token())
    assert isinstance(error, RuntimeError), repr(error)  # masked, it still pickles
    _check_error(served, error, "bad token <env LEAKY_TOKEN>")


def test_a_secret_written_escaped_is_masked(served: Served) -> None:
    # repr() (a list's items, a KeyError's message) and JSON escape quotes, backslashes and
    # non-ASCII letters: masking only the secret as it is let those forms through.
    error = _raised(served.work.raises_odd_token_written_as_code())
    # A list in its arguments holds the secret: it goes as its text alone, masked.
    assert _is(error, ValueError), repr(error)
    status = _check_error(served, error, "<env ODD_TOKEN>")
    assert "<env ODD_TOKEN>" in status["error"], status
    assert "token: '<env ODD_TOKEN>' \"<env ODD_TOKEN>\" '<env ODD_TOKEN>'" in served.logs.text()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is new in 3.11")
def test_an_exception_group_holding_the_signing_key_is_masked(served: Served) -> None:
    error = _raised(served.work.raises_group())
    assert isinstance(error, builtins.ExceptionGroup), repr(error)  # its members masked too
    assert [type(e) for e in error.exceptions] == [ValueError, KeyError], repr(error)
    status = _check_error(served, error, "several")
    assert "ValueError: <env FLASH_SIGNING_KEY>" in _traceback(status), status


def test_a_stream_that_fails_with_the_signing_key_is_masked(served: Served) -> None:
    async def consume() -> list[int]:
        return [item async for item in served.work.streams_then_raises.stream(3)]

    error = _raised(consume())
    assert isinstance(error, RuntimeError), repr(error)  # masked, it still pickles
    _check_error(served, error, "stream broke at <env FLASH_SIGNING_KEY>", "leaky-stream")


def test_the_platform_masks_what_a_worker_of_the_sdk_loop_leaves(tmp_path: Path) -> None:
    # RunPod's own worker loop sends the generic handler's answer as it is: its texts are
    # masked (the handler cuts them with cut_text), its pickled exception is not. The
    # platform masks the secrets it gave its workers in what they report, as it does in
    # what they print.
    root = (tmp_path / "project").resolve()
    logs = Logs()
    with served_files(root, FILES, echo=logs, worker_loop="runpod") as platform:
        from leakyapp import work  # type: ignore[import-not-found]

        served = Served(platform, work, logs)
        error = _raised(work.raises_key())
        assert isinstance(error, RuntimeError), repr(error)  # masked, it still pickles
        _check_error(served, error, "<env FLASH_SIGNING_KEY>")
        # A secret the handler cannot mask (an attribute): the platform leaves its pickle out.
        error = _raised(work.raises_key_in_an_attribute())
        assert _is(error, RuntimeError), repr(error)
        _check_error(served, error, "bad credentials")


def test_a_secret_held_where_no_text_shows_it_leaves_the_pickle_behind(served: Served) -> None:
    error = _raised(served.work.raises_key_in_an_attribute())
    assert _is(error, RuntimeError) and not hasattr(error, "detail"), repr(error)
    _check_error(served, error, "bad credentials")
