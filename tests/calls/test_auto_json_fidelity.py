"""In auto mode the Python client holding the app's key gets what a pickled call gives:
where JSON would change a value (a union's arm, a subclass, a type a
worker without pydantic cannot build) or cannot carry a result (a NaN), the call or its
answer goes as a signed pickle. Plain JSON clients and forced JSON keep the JSON forms."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from tests.calls.support import inputs_sent, runsync
from tests.integration.projects import served_files

from flash.platform import LocalPlatform

FILES = {
    "fidapp/__init__.py": "",
    "fidapp/work.py": """
        import dataclasses
        import datetime as dt
        import ipaddress
        from collections.abc import AsyncIterator, Iterator

        from flash import CpuLiveServerless, remote

        cpu = CpuLiveServerless(name="fid")
        streams = CpuLiveServerless(name="fid-streams")  # generators: a streaming endpoint


        @dataclasses.dataclass
        class Base:
            x: int


        @dataclasses.dataclass
        class Sub(Base):
            y: int = 7


        @remote(resource_config=cpu)
        def unions(a: int | float, b: bytes | str, c: str | dt.date) -> list[str]:
            return [repr(a), repr(b), repr(c)]


        @remote(resource_config=cpu)
        def keys(d: dict[bool, int]) -> str:
            return repr(d)


        @remote(resource_config=cpu)
        def kind(b: Base) -> str:
            return type(b).__name__


        @remote(resource_config=cpu)
        def address(a: ipaddress.IPv4Address) -> str:
            return repr(a)


        @remote(resource_config=cpu)
        def ratio(a: float, b: float) -> float:
            return a / b if b else float("nan")


        @remote(resource_config=cpu)
        def when(index: int) -> str | dt.date:
            return [dt.date(2024, 1, 2), "x"][index]


        @remote(resource_config=cpu)
        def made(n: int) -> Base:
            return Sub(n)


        @remote(resource_config=cpu)
        def twice(n: int) -> list[int]:
            return [n, n]


        @remote(resource_config=streams)
        def days(n: int) -> Iterator[str | dt.date]:
            for i in range(n):
                yield dt.date(2024, 1, 1 + i) if i % 2 == 0 else f"day {i}"


        @remote(resource_config=streams)
        async def ratios(b: float) -> AsyncIterator[float]:
            yield 1.0
            yield 1.0 / b if b else float("nan")
    """,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, Any]]:
    root = (tmp_path_factory.mktemp("fidelity") / "project").resolve()
    with served_files(root, FILES) as platform:
        from fidapp import work  # type: ignore[import-not-found]

        yield platform, work


def _both(fn: Any, *args: Any) -> tuple[Any, Any]:
    """The result in auto mode, and with pickle forced."""
    auto = asyncio.run(fn(*args))
    pickled = asyncio.run(fn.options(serialization="pickle")(*args))
    return auto, pickled


def test_arguments_json_would_change_go_pickled(served: tuple[LocalPlatform, Any]) -> None:
    platform, work = served
    cases = [
        (work.unions, (5.0, "hello", dt.date(2024, 1, 1))),  # JSON: 5, b'hello', '2024-01-01'
        (work.kind, (work.Sub(1),)),  # JSON: a Base
        (work.address, (ipaddress.IPv4Address("10.0.0.1"),)),  # no pydantic on the worker
    ]
    with inputs_sent(platform) as recorded:
        for fn, args in cases:
            auto, pickled = _both(fn, *args)
            assert auto == pickled, fn.__name__
        # Each call went as a pickle both times.
        sent = [json.loads(text) for _, text in recorded]
        assert all("function_name" in job for job in sent), sent
    assert _both(work.unions, 5.0, "hello", dt.date(2024, 1, 1))[0] == [
        "5.0",
        "'hello'",
        "datetime.date(2024, 1, 1)",
    ]
    assert _both(work.kind, work.Sub(1))[0] == "Sub"


def test_values_json_keeps_still_go_as_json(served: tuple[LocalPlatform, Any]) -> None:
    platform, work = served
    with inputs_sent(platform) as recorded:
        assert asyncio.run(work.twice(3)) == [3, 3]
        assert asyncio.run(work.kind(work.Base(2))) == "Base"
        assert asyncio.run(work.when(1)) == "x"
        # Bool keys travel as "true"/"false" and arrive as bools again.
        assert asyncio.run(work.keys({True: 1, False: 0})) == "{True: 1, False: 0}"
    sent = [json.loads(text) for _, text in recorded]
    assert [job.get("function") for job in sent] == [
        "fidapp.work.twice",
        "fidapp.work.kind",
        "fidapp.work.when",
        "fidapp.work.keys",
    ], sent


def test_an_argument_the_worker_would_refuse_goes_as_json_to_be_named(
    served: tuple[LocalPlatform, Any],
) -> None:
    # "3" for an int: pydantic's lax conversion reads it as 3, which counted as JSON
    # changing it, so the call went as an unchecked pickle and twice got the text.
    platform, work = served
    with inputs_sent(platform) as recorded:
        with pytest.raises(Exception) as refused:
            asyncio.run(work.twice("3"))
        sent = [json.loads(text) for _, text in recorded]
    assert 'kwargs.n: expected integer, got string "3"' in str(refused.value), refused.value
    assert [job.get("function") for job in sent] == ["fidapp.work.twice"], sent


def test_results_json_cannot_carry_as_they_are_come_back_pickled(
    served: tuple[LocalPlatform, Any],
) -> None:
    platform, work = served
    auto, pickled = _both(work.ratio, 1.0, 0.0)
    assert math.isnan(auto) and math.isnan(pickled)
    assert _both(work.when, 0) == (dt.date(2024, 1, 2), dt.date(2024, 1, 2))
    assert _both(work.when, 1) == ("x", "x")
    auto, pickled = _both(work.made, 3)
    assert auto == pickled == work.Sub(3) and type(auto) is work.Sub
    # A plain JSON client gets the JSON forms, and so does a call with JSON forced.
    forced = asyncio.run(work.when.options(serialization="json")(0))
    assert forced == "2024-01-02"
    answer = runsync(platform, "fid", {"input": {"function": "when", "kwargs": {"index": 0}}})
    assert answer["output"]["result"] == "2024-01-02", answer
    nan = {"input": {"function": "ratio", "kwargs": {"a": 1.0, "b": 0.0}}}
    failed = runsync(platform, "fid", nan)
    assert failed["status"] == "FAILED" and "nan has no JSON form" in str(failed), failed


async def _collect(items: Any) -> list[Any]:
    return [item async for item in items]


def test_generator_items_json_cannot_carry_come_back_pickled(
    served: tuple[LocalPlatform, Any],
) -> None:
    platform, work = served
    expected_days = [dt.date(2024, 1, 1), "day 1", dt.date(2024, 1, 3)]
    with inputs_sent(platform) as recorded:
        assert _both(work.days, 3) == (expected_days, expected_days)
        assert asyncio.run(_collect(work.days.stream(3))) == expected_days
        auto, pickled = _both(work.ratios, 0.0)
        streamed = asyncio.run(_collect(work.ratios.stream(0.0)))
    for items in (auto, pickled, streamed):
        assert items[0] == 1.0 and math.isnan(items[1]), items
    # The auto calls went as JSON: only the items JSON would change came back pickled.
    sent = [json.loads(text) for _, text in recorded]
    assert [job.get("function", "pickled") for job in sent] == [
        "fidapp.work.days",
        "pickled",
        "fidapp.work.days",
        "fidapp.work.ratios",
        "pickled",
        "fidapp.work.ratios",
    ], sent
    # JSON forced, and a plain JSON client, keep the JSON forms.
    forced = asyncio.run(work.days.options(serialization="json")(2))
    assert forced == ["2024-01-01", "day 1"]
    days = {"input": {"function": "days", "kwargs": {"n": 1}}}
    answer = runsync(platform, "fid-streams", days)
    assert [item["result"] for item in answer["output"]] == ["2024-01-01"], answer
