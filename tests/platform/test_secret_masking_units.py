"""The pieces that keep a worker's secrets out of a failed job: the masking rule of the
runtime (which secrets, what stands for them), a worker process's own failures and what it
prints, and the platform's defence against a worker that masks nothing."""

from __future__ import annotations

import asyncio
import builtins
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import serve_jobs, worker_env

from flash.platform.dispatch import Dispatcher
from flash.platform.store import JobStore
from flash.runtime.errors import (
    chain_of,
    chained_pickle,
    cut_text,
    mask_secrets,
    masked_failure,
    secret_masks,
)
from flash.runtime.serialization import deserialize, serialize

KEY = "0123456789abcdef" * 4
TOKEN = "tok-" + "7a" * 12

# ------------------------------------------------------------------ the rule


def test_the_secrets_are_the_credentials_and_what_the_endpoints_env_fills_from_secrets() -> None:
    environ = {
        "FLASH_SIGNING_KEY": KEY,
        "RUNPOD_AI_API_KEY": "worker-token-1234",
        "FLASH_API_KEY": "short",  # under 8 characters: it would mask ordinary words
        "RUNPOD_SECRET_db": "db-password-99",
        "HF_TOKEN": TOKEN,
        "MODE": "fast-and-loose",  # a literal in the config: no secret
        "HOME": "/home/someone",
    }
    manifest = {
        "resources": {
            "ep": {"config": {"env": {"HF_TOKEN": "{{ RUNPOD_SECRET_hf }}", "MODE": "fast"}}},
            "broken": {"config": "not an object"},
        }
    }
    masks = secret_masks(environ, manifest)
    assert dict(masks) == {
        KEY: "<env FLASH_SIGNING_KEY>",
        "worker-token-1234": "<env RUNPOD_AI_API_KEY>",
        "db-password-99": "<env RUNPOD_SECRET_db>",
        TOKEN: "<env HF_TOKEN>",
    }
    assert [len(s) for s, _ in masks] == sorted((len(s) for s, _ in masks), reverse=True)
    assert dict(secret_masks(environ, None)).get(TOKEN) is None  # no manifest: not named


def test_a_secret_inside_another_is_masked_after_it() -> None:
    masks = secret_masks({"FLASH_SIGNING_KEY": KEY, "RUNPOD_SECRET_part": KEY[:20]}, None)
    assert mask_secrets(f"{KEY} and {KEY[:20]}", masks) == (
        "<env FLASH_SIGNING_KEY> and <env RUNPOD_SECRET_part>"
    )


def test_a_secret_is_masked_as_code_writes_it_escaped() -> None:
    odd = 'P\u00e4ssw\u00f6rd"Quote\\Back-42'
    masks = secret_masks({"RUNPOD_SECRET_odd": odd}, None)
    shown = "<env RUNPOD_SECRET_odd>"
    for text in (
        odd,
        repr([odd]),
        ascii({"k": odd}),
        json.dumps({"k": odd}),
        json.dumps({"k": odd}, ensure_ascii=False),
        repr(ValueError(json.dumps({"k": odd}))),  # an exception's text: the repr of JSON
        json.dumps([repr(odd)]),
    ):
        masked = mask_secrets(text, masks)
        assert shown in masked and "Quote" not in masked, (text, masked)


def test_an_error_text_is_masked_before_it_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASH_SIGNING_KEY", KEY)
    # The key astride the cut would leave its head in the text's head and its tail in the
    # tail's: masked first, neither is there.
    text = "x" * (32 * 1024 - 30) + KEY + "y" * (40 * 1024)
    cut = cut_text(text)
    assert KEY[:20] not in cut and KEY[-20:] not in cut and "characters cut" in cut
    assert cut_text(f"bad key {KEY}") == "bad key <env FLASH_SIGNING_KEY>"


# ------------------------------------------------------------------ a failure answer


def _mask(text: str) -> str:
    return text.replace(KEY, "****")


def _answer(exception: BaseException, **more: Any) -> dict[str, Any]:
    return {
        "success": False,
        "error": f"'app.f' raised {type(exception).__name__}: {exception}",
        "error_type": type(exception).__name__,
        "traceback": f"Traceback ...\nRuntimeError: {exception}\n",
        "exception": serialize(exception),
        "protocol_version": 1,
        "mac": "ab" * 32,
        **more,
    }


def test_a_pickled_exception_holding_a_secret_is_left_out_with_the_signature() -> None:
    answer = _answer(RuntimeError(f"bad key {KEY}"))
    masked = masked_failure(answer, _mask)
    assert "exception" not in masked and "mac" not in masked
    assert masked["exception_not_sent"] == "it holds a secret of the worker's"
    assert masked["error"] == "'app.f' raised RuntimeError: bad key ****"
    assert masked["traceback"].endswith("RuntimeError: bad key ****\n")
    assert answer["exception"] and answer["mac"]  # the answer itself is left as it is


def test_a_secret_in_a_cause_pickled_with_the_exception_is_found() -> None:
    error = RuntimeError("load failed")
    error.__cause__ = KeyError(KEY)
    chain = chain_of(error)
    answer = _answer(error, issues=[{"path": "x", "message": f"not {KEY}"}])
    answer["exception"] = serialize(chained_pickle(chain, error, [serialize(chain[1])]))
    assert type(deserialize(answer["exception"]).__cause__) is KeyError
    masked = masked_failure(answer, _mask)
    assert "exception" not in masked and "mac" not in masked
    assert masked["issues"] == [{"path": "x", "message": "not ****"}]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is new in 3.11")
def test_a_secret_in_a_member_of_a_pickled_exception_group_is_found() -> None:
    group = builtins.ExceptionGroup("g", [ValueError("v"), KeyError(KEY)])
    masked = masked_failure(_answer(group), _mask)
    assert "exception" not in masked and "mac" not in masked


def test_an_answer_holding_no_secret_keeps_its_pickle_and_signature() -> None:
    answer = _answer(RuntimeError("an ordinary failure"))
    masked = masked_failure(answer, _mask)
    assert masked == answer
    assert str(deserialize(masked["exception"])) == "an ordinary failure"


def test_a_streamed_failure_sent_as_json_text_is_masked_inside() -> None:
    text = json.dumps({**_answer(RuntimeError(KEY)), "item": 2})
    masked = json.loads(masked_failure(text, _mask))
    assert masked["item"] == 2 and "exception" not in masked and "mac" not in masked
    assert KEY not in json.dumps(masked)
    assert masked_failure("not json {", _mask) == "not json {"
    assert masked_failure(f'{{"success": broken {KEY}', _mask) == '{"success": broken ****'


# ------------------------------------------------------------------ the platform's defence


def test_the_platform_masks_a_failure_a_worker_left_unmasked(tmp_path: Path) -> None:
    async def scenario() -> tuple[str, str]:
        dispatcher = Dispatcher(JobStore(tmp_path / "jobs.db"))
        dispatcher.mask = _mask
        dispatcher.add_endpoint("e", None)
        dispatcher.register_worker("w1", "e")
        failed = dispatcher.submit("e", '{"x": 1}')
        completed = dispatcher.submit("e", '{"x": 2}')
        assert len(await dispatcher.take("w1", 2, False)) == 2
        answer = _answer(RuntimeError(f"bad key {KEY}"))
        error = answer.pop("error")
        body = {"output": answer, "error": error}
        assert dispatcher.done("w1", failed.id, body, False, json.dumps(answer))
        # A result is the function's, the caller's to have: not masked.
        result = {"output": {"token": KEY}}
        assert dispatcher.done("w1", completed.id, result, False, json.dumps({"token": KEY}))
        return dispatcher.status_json(failed), dispatcher.status_json(completed)

    failed, completed = asyncio.run(scenario())
    assert KEY not in failed
    status = json.loads(failed)
    assert status["error"] == "'app.f' raised RuntimeError: bad key ****"
    assert "exception" not in status["output"] and "mac" not in status["output"]
    assert KEY in completed
    store = JobStore(tmp_path / "jobs.db")
    stored = {job.id: job for job in store.load()}
    assert sum(KEY in (job.output_json or "") + str(job.error) for job in stored.values()) == 1


# ------------------------------------------------------------------ a worker process

WORKER = """
import os, sys
from flash.runtime.worker import start


def handler(job):
    key = os.environ["FLASH_SIGNING_KEY"]
    if job["input"]["kind"] == "plain":
        raise RuntimeError(f"bad key {key}")
    try:
        raise KeyError(key)
    except KeyError as exc:
        raise RuntimeError("could not load") from exc


def streaming(job):
    yield 1
    raise RuntimeError("stream broke at " + os.environ["FLASH_SIGNING_KEY"])


start(streaming if sys.argv[1] == "stream" else handler)
"""


@pytest.mark.parametrize("kind", ["plain", "stream"])
def test_a_workers_own_failure_and_what_it_prints_hold_no_key(
    tmp_path: Path, kind: str, worker_processes: list[subprocess.Popen[Any]]
) -> None:
    (tmp_path / "worker.py").write_text(WORKER)
    inputs = [{"kind": "plain"}, {"kind": "cause"}] if kind == "plain" else [{}]
    jobs = [{"id": f"job{n}", "input": i} for n, i in enumerate(inputs)]
    with serve_jobs(jobs) as (port, queue):
        worker = subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py"), kind],
            env={**worker_env(port), "FLASH_SIGNING_KEY": KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        worker_processes.append(worker)
        assert queue.all_done.wait(30), "jobs never reported"
        worker.terminate()
        out, err = worker.communicate(timeout=30)
    sent = json.dumps(queue.done)
    assert KEY not in sent and KEY not in out and KEY not in err, (sent, err)
    if kind == "plain":
        plain = json.loads(queue.done["job0"]["error"])
        assert plain["error_message"] == "bad key <env FLASH_SIGNING_KEY>", plain
        caused = json.loads(queue.done["job1"]["error"])["error_traceback"]
        assert "KeyError: '<env FLASH_SIGNING_KEY>'" in caused, caused
        assert "RuntimeError: could not load" in caused, caused
    else:
        assert "stream broke at <env FLASH_SIGNING_KEY>" in queue.done["job0"]["error"]
    # What it printed (the platform logs it) still shows the failure.
    assert "<env FLASH_SIGNING_KEY>" in err and "Traceback" in err, err
