"""Fuzz the generic handler in-process: whatever a job holds, the handler answers it.

For every generated job (both wire formats, broken in every way ``strategies`` knows), with
signing on and off and with a manifest carrying JSON schemas: the handler never raises and
never hangs, always answers a dict with a ``success`` flag (and an ``error_type`` on
failure) that JSON can carry, never unpickles a hostile payload that lacks a valid
signature, and the next valid job still works.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from tests.fuzz import strategies as fz

from flash.runtime.generic_handler import create_handler
from flash.runtime.signing import generate_key

JOB_TIMEOUT_S = 10.0
EXAMPLES = 300
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


class Target:
    """One handler under fuzz, the key it was made with and the marker hostile pickles create."""

    def __init__(
        self,
        handler: Any,
        key: bytes | None,
        marker: Path | None,
        loop: asyncio.AbstractEventLoop,
        *,
        pickles: bool = True,
    ) -> None:
        self.handler = handler
        self.pickles = pickles  # whether this handler takes pickled calls at all
        self.key = key
        self.marker = marker
        self.loop = loop
        self.outcomes: Counter[str] = Counter()  # "success" or error_type, per fuzzed job

    def answers(self, job: Any) -> list[dict[str, Any]]:
        raw = self.loop.run_until_complete(fz.collect(self.handler, job, JOB_TIMEOUT_S))
        # A generator that yields nothing streams nothing; anything else answers.
        assert raw or inspect.isasyncgenfunction(self.handler), "the handler answered nothing"
        return [fz.check_answer(a) for a in raw]

    def check(self, job: Any) -> None:
        answers = self.answers(job)
        self.outcomes.update("success" if a["success"] else a["error_type"] for a in answers)
        if self.marker is not None:
            assert not self.marker.exists(), f"a hostile pickle was unpickled: {fz.clip(job)}"
        payload = job.get("input") if isinstance(job, dict) else None
        if (
            self.key is not None
            and isinstance(payload, dict)
            and isinstance(payload.get("signature"), dict)
            and all(a["success"] for a in answers)
        ):
            # The same signed request again, as another job, is a replay.
            again = self.answers({**job, "id": f"{job.get('id')}-again"})
            assert [a["error_type"] for a in again] == ["SignatureRejected"], again
        self.check_still_serving()

    def check_still_serving(self) -> None:
        answer = self.answers({"id": "ok", "input": fz.good_pickled_input(self.key, 2, 3)})[0]
        if self.pickles:
            assert answer["success"] and fz.unpickle_result(answer) == 5, answer
        else:
            assert answer["error_type"] == "SignatureRejected", answer
        answer = self.answers({"id": "ok", "input": fz.good_json_input(4, 5)})[0]
        assert answer["success"] and answer["result"] == 9, answer


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The app module and the manifests (plain and streaming) flash build would record."""
    directory = tmp_path_factory.mktemp("fuzzapp")
    module = fz.import_app(directory)
    return (
        module,
        fz.manifest(directory / "plain", fz.PLAIN_FUNCTIONS),
        fz.manifest(directory / "stream", fz.STREAM_FUNCTIONS),
    )


def make_target(
    app: tuple[Any, dict[str, Any], dict[str, Any]],
    loop: asyncio.AbstractEventLoop,
    tmp_path: Path,
    *,
    signing: bool,
    streaming: bool,
) -> Target:
    module, plain, stream = app
    names = fz.STREAM_FUNCTIONS if streaming else fz.PLAIN_FUNCTIONS
    key = generate_key() if signing else None
    handler = create_handler(
        fz.registry(module, names),
        endpoint=fz.ENDPOINT,
        signing_key=key,
        # Without a key, unsigned pickles run: hostile ones would too, by design.
        allow_unsigned=not signing,
        manifest=stream if streaming else plain,
    )
    assert asyncio.iscoroutinefunction(handler) != streaming
    marker = tmp_path / "pwned" if signing else None
    return Target(handler, key, marker, loop)


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "streaming"])
@pytest.mark.parametrize("signing", [True, False], ids=["signed", "unsigned"])
def test_handler_answers_every_generated_job(
    app: Any, loop: asyncio.AbstractEventLoop, tmp_path: Path, signing: bool, streaming: bool
) -> None:
    target = make_target(app, loop, tmp_path, signing=signing, streaming=streaming)
    names = fz.STREAM_FUNCTIONS if streaming else fz.PLAIN_FUNCTIONS

    @FUZZ_SETTINGS
    @given(job=fz.jobs(key=target.key, names=names, marker=target.marker))
    def fuzz(job: Any) -> None:
        target.check(job)

    fuzz()
    print(sorted(target.outcomes.items()))
    # The generated jobs reach every stage: a fuzzer stuck at the first check tests little.
    expected = {"success", "InvalidJob", "UnknownFunction", "ArgumentDecodeError", "InvalidInput"}
    if signing:
        expected.add("SignatureRejected")
    assert expected <= set(target.outcomes), target.outcomes


def test_handler_refuses_every_pickle_without_a_key(
    app: Any, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    """No key and unsigned calls not allowed: no pickle is ever loaded, signed or not."""
    module, plain, _ = app
    marker = tmp_path / "pwned"
    handler = create_handler(
        fz.registry(module, fz.PLAIN_FUNCTIONS),
        endpoint=fz.ENDPOINT,
        signing_key=None,
        allow_unsigned=False,
        manifest=plain,
    )
    target = Target(handler, None, marker, loop, pickles=False)

    @FUZZ_SETTINGS
    @given(job=fz.jobs(key=generate_key(), marker=marker))
    def fuzz(job: Any) -> None:
        target.check(job)

    fuzz()
    # Pickled calls get as far as the signature check, and no further.
    assert target.outcomes["SignatureRejected"] >= EXAMPLES // 10, target.outcomes
    assert "ArgumentDecodeError" not in target.outcomes, target.outcomes


@pytest.mark.parametrize("signing", [True, False], ids=["signed", "unsigned"])
def test_handler_survives_deep_and_huge_inputs(
    app: Any, loop: asyncio.AbstractEventLoop, tmp_path: Path, signing: bool
) -> None:
    """The extremes hypothesis draws rarely, every time: far deeper than the recursion limit."""
    target = make_target(app, loop, tmp_path, signing=signing, streaming=False)
    deep = fz.nested(50_000)
    deep_dict = fz.nested(50_000, kind="dict")
    huge = "A" * 5_000_000
    inputs: list[Any] = [
        deep,
        {"function": "tree", "kwargs": {"node": deep_dict}},
        {"function": "add", "kwargs": deep_dict},
        deep_dict,
        {"function_name": "add", "args": deep},
        {"function_name": "add", "kwargs": deep_dict},
        {"function_name": "add", "items": deep, "execution_type": "map"},
        {"function_name": "add", "signature": deep_dict},
        {"function_name": "add", "context": deep_dict},
        {"function_name": deep},
        {"function_name": "add", "args": [huge]},
        {"function_name": huge},
        {"function": "tag", "kwargs": {"words": [huge]}},
        {"function": huge, "kwargs": {}},
        {"function": "add", "kwargs": {"a": 10**4000 - 1}},
        {"function_name": "add", "protocol_version": 10**5000},
    ]
    for job_input in inputs:
        target.check({"id": "x", "input": job_input})
    for job in (deep, deep_dict, {"id": deep, "input": {}}):
        target.check(job)


def test_a_pickle_that_exits_while_loading_is_an_argument_decode_error(
    app: Any, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    target = make_target(app, loop, tmp_path, signing=False, streaming=False)
    exits = fz.raising_pickle("SystemExit")
    answer = target.answers({"id": "j", "input": {"function_name": "echo", "args": [exits]}})[0]
    assert answer["error_type"] == "ArgumentDecodeError", answer


def test_a_json_result_too_long_to_write_is_refused_in_the_answer(
    app: Any, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    target = make_target(app, loop, tmp_path, signing=False, streaming=False)
    big = int("9" * 4300)  # the most digits JSON input may carry; the sum has one more
    job = {"id": "j", "input": {"function": "add", "kwargs": {"a": big, "b": big}}}
    answer = target.answers(job)[0]  # check_answer json.dumps it, as the worker loop does
    assert answer["error_type"] == "ResultNotJson", answer
