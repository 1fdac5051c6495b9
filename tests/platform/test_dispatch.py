"""Dispatcher state, driven directly: a crashed worker's pending poll never gets a job."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flash.platform import dispatch as dispatch_module
from flash.platform.dispatch import Dispatcher
from flash.platform.jobs import Job
from flash.platform.store import JobStore


def test_requeued_job_skips_the_dead_workers_pending_poll(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        dispatcher.register_worker("w2", "e")
        job = dispatcher.submit("e", '{"x": 1}')
        assert [j.id for j in await dispatcher.take("w1", 1, False)] == [job.id]
        # w1 runs several jobs at once, so it asks for more while running this one...
        more = asyncio.ensure_future(dispatcher.take("w1", 1, True))
        await asyncio.sleep(0)  # one loop turn: the poll is now registered
        # ...and dies: its job goes back to the queue, its poll is answered empty.
        dispatcher.worker_exited("w1", "exited with code 3", blame=True)
        assert await more == []
        assert [j.id for j in await dispatcher.take("w2", 1, False)] == [job.id]

    asyncio.run(scenario())


def test_a_platform_killed_mid_stream_does_not_replay_the_dead_attempts_chunks(
    tmp_path: Path,
) -> None:
    async def first_life() -> str:
        dispatcher, job = await _running_on_w1(tmp_path)
        assert _chunk(dispatcher, "w1", job.id, "stale-1")
        assert _chunk(dispatcher, "w1", job.id, "stale-2")
        return job.id  # then the platform is killed: no clean stop

    async def second_life(job_id: str) -> None:
        dispatcher = _dispatcher(tmp_path)
        assert dispatcher.restore() == 1  # the started job is run again, from scratch
        job = dispatcher.jobs[job_id]
        assert job.stream == [] and job.status == "IN_QUEUE"
        dispatcher.register_worker("w2", "e")
        assert [j.id for j in await dispatcher.take("w2", 1, False)] == [job_id]
        assert _chunk(dispatcher, "w2", job_id, "fresh-1")
        assert job.stream == [json.dumps("fresh-1")]

    job_id = asyncio.run(first_life())
    asyncio.run(second_life(job_id))


def test_a_crash_among_several_jobs_fails_only_the_job_that_crashes_alone(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        a, b, c = (dispatcher.submit("e", f'{{"n": {n}}}') for n in range(3))
        assert [j.id for j in await dispatcher.take("w1", 3, False)] == [a.id, b.id, c.id]
        # Which of the three killed w1 is not known: none fails, each runs again alone.
        outcomes = dispatcher.worker_exited("w1", "exited with code 9", blame=True)
        assert sorted(outcomes) == sorted(f"job {j.id} runs again" for j in (a, b, c))
        dispatcher.register_worker("w2", "e")
        assert [j.id for j in await dispatcher.take("w2", 3, False)] == [a.id]
        w2_more = asyncio.ensure_future(dispatcher.take("w2", 2, True))
        dispatcher.register_worker("w3", "e")
        assert [j.id for j in await dispatcher.take("w3", 3, False)] == [b.id]
        w3_more = asyncio.ensure_future(dispatcher.take("w3", 2, True))
        await asyncio.sleep(0)  # both polls are registered now; neither gets c
        assert not w2_more.done() and not w3_more.done()
        # a crashes w2 on its own: that is a job that kills its worker, and it fails.
        assert dispatcher.worker_exited("w2", "exited with code 9", blame=True) == [
            f"job {a.id} failed"
        ]
        assert a.status == "FAILED" and "exited with code 9" in a.error
        assert await w2_more == []
        # b ends well, so w3 may take the next suspect.
        assert dispatcher.done("w3", b.id, {"output": 1}, False, "1")
        assert [j.id for j in await w3_more] == [c.id]
        assert dispatcher.done("w3", c.id, {"output": 2}, False, "2")
        assert (b.status, c.status) == ("COMPLETED", "COMPLETED")

    asyncio.run(scenario())


def test_a_suspect_at_the_front_of_the_queue_is_not_passed_over(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        suspects = [dispatcher.submit("e", f'{{"n": {n}}}') for n in range(2)]
        await dispatcher.take("w1", 2, False)
        dispatcher.worker_exited("w1", "exited with code 9", blame=True)
        busy = dispatcher.submit("e", '{"n": "busy"}')
        dispatcher.register_worker("w2", "e")
        # A worker running a job of its own cannot take a suspect, nor pass over it.
        assert [j.id for j in await dispatcher.take("w2", 1, False)] == [suspects[0].id]
        assert dispatcher.done("w2", suspects[0].id, {"output": 1}, False, "1")
        assert [j.id for j in await dispatcher.take("w2", 1, True)] == [suspects[1].id]
        assert dispatcher.done("w2", suspects[1].id, {"output": 1}, False, "1")
        assert [j.id for j in await dispatcher.take("w2", 1, False)] == [busy.id]
        suspect = dispatcher.submit("e", '{"n": "suspect"}')
        suspect.crashes = 1  # as one requeued by a crash
        later = dispatcher.submit("e", '{"n": "later"}')
        more = asyncio.ensure_future(dispatcher.take("w2", 3, True))
        await asyncio.sleep(0)
        assert not more.done()  # the suspect at the front waits for w2 to be free...
        newest = dispatcher.submit("e", '{"n": "newest"}')
        await asyncio.sleep(0)
        assert not more.done()  # ...and a new job does not jump the queue
        assert dispatcher.done("w2", busy.id, {"output": 1}, False, "1")
        assert [j.id for j in await more] == [suspect.id]  # alone
        assert dispatcher.done("w2", suspect.id, {"output": 1}, False, "1")
        taken = await dispatcher.take("w2", 3, False)
        assert [j.id for j in taken] == [later.id, newest.id]

    asyncio.run(scenario())


def test_a_worker_held_up_by_a_suspect_takes_work_once_another_took_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        dispatcher, running = await _running_on_w1(tmp_path)
        suspect = dispatcher.submit("e", '{"n": "suspect"}')
        suspect.crashes = 1  # as one requeued by a crash
        later = dispatcher.submit("e", '{"n": "later"}')
        more = asyncio.ensure_future(dispatcher.take("w1", 3, True))
        await asyncio.sleep(0)
        assert not more.done()  # w1 runs a job: it may not take the suspect, nor pass it
        dispatcher.register_worker("w2", "e")
        assert [j.id for j in await dispatcher.take("w2", 3, False)] == [suspect.id]
        # The front is free now: w1 takes the next job without waiting out its poll.
        assert [j.id for j in await asyncio.wait_for(more, 5)] == [later.id]
        assert running.status == "IN_PROGRESS"

    asyncio.run(scenario())


def test_a_suspect_does_not_go_to_a_worker_still_running_a_job_it_was_told_to_stop(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w0", "e")
        culprit, bystander = (dispatcher.submit("e", f'{{"n": {n}}}') for n in range(2))
        await dispatcher.take("w0", 2, False)
        dispatcher.worker_exited("w0", "exited with code 9", blame=True)
        dispatcher.register_worker("w1", "e")
        assert [j.id for j in await dispatcher.take("w1", 2, False)] == [culprit.id]
        dispatcher.cancel(culprit)  # told to stop; its code may still run on w1
        more = asyncio.ensure_future(dispatcher.take("w1", 2, True))
        await asyncio.sleep(0)
        assert not more.done()
        # Were it to crash w1 now, the bystander is not beside it to be blamed. Once a
        # heartbeat shows the stopped job gone, w1 is free for the bystander.
        dispatcher.workers["w1"].stopping[culprit.id] -= 60  # the stop was sent long ago
        dispatcher.ping("w1", [])
        assert [j.id for j in await asyncio.wait_for(more, 5)] == [bystander.id]

    asyncio.run(scenario())


@pytest.mark.parametrize("handed_at", ["retry", "poll"])
def test_a_retried_job_waits_for_a_worker_still_running_its_stopped_attempt(
    tmp_path: Path, handed_at: str
) -> None:
    # A worker knows a job by its id alone (as RunPod's protocol has it): a retry handed to
    # the worker whose thread still runs the timed-out attempt would be mistaken for it.
    async def scenario() -> None:
        dispatcher, job = await _running_on_w1(tmp_path)
        dispatcher._on_timeout(job.id, job.attempts, 1)
        assert job.status == "TIMED_OUT"
        dispatcher.ping("w1", [job.id])  # it still runs the stopped attempt
        if handed_at == "poll":
            dispatcher.retry(job)
        more = asyncio.ensure_future(dispatcher.take("w1", 2, True))
        await asyncio.sleep(0)
        if handed_at == "retry":
            dispatcher.retry(job)  # queued while w1 waits for work
        await asyncio.sleep(0)
        assert not more.done()
        assert job.status == "IN_QUEUE"
        # Once a heartbeat shows the stopped attempt gone, w1 takes the retry.
        dispatcher.workers["w1"].stopping[job.id] -= 60  # the stop was sent long ago
        dispatcher.ping("w1", [])
        assert [j.id for j in await asyncio.wait_for(more, 5)] == [job.id]
        assert (job.status, job.attempts) == ("IN_PROGRESS", 2)

    asyncio.run(scenario())


def test_a_retried_job_goes_to_another_worker_while_its_stopped_attempt_runs_on(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        dispatcher, job = await _running_on_w1(tmp_path)
        dispatcher._on_timeout(job.id, job.attempts, 1)
        dispatcher.ping("w1", [job.id])  # it still runs the stopped attempt
        dispatcher.retry(job)
        later = dispatcher.submit("e", '{"x": 2}')
        # w1 takes the job queued after it; another worker takes the retry.
        assert [j.id for j in await dispatcher.take("w1", 2, True)] == [later.id]
        dispatcher.register_worker("w2", "e")
        assert [j.id for j in await dispatcher.take("w2", 2, False)] == [job.id]

    asyncio.run(scenario())


def test_a_retried_job_whose_id_is_still_queued_is_taken_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        job = dispatcher.submit("e", '{"x": 1}')
        dispatcher._on_ttl(job.id, 1)  # timed out while queued: its id stays in the queue
        assert job.status == "TIMED_OUT"
        dispatcher.retry(job)
        dispatcher.register_worker("w1", "e")
        assert [j.id for j in await dispatcher.take("w1", 4, False)] == [job.id]
        assert (dispatcher.running["e"], dispatcher.queued["e"]) == (1, 0)

    asyncio.run(scenario())


def _dispatcher(tmp_path: Path, **options: Any) -> Dispatcher:
    """A dispatcher on the store in ``tmp_path``, serving endpoint "e"."""
    dispatcher = Dispatcher(JobStore(tmp_path / "jobs.db"), **options)
    dispatcher.add_endpoint("e", None)
    return dispatcher


async def _running_on_w1(tmp_path: Path) -> tuple[Dispatcher, Job]:
    """A dispatcher on the store in ``tmp_path`` whose worker w1 runs one new job."""
    dispatcher = _dispatcher(tmp_path)
    dispatcher.register_worker("w1", "e")
    return dispatcher, await _start_on_w1(dispatcher)


async def _start_on_w1(dispatcher: Dispatcher) -> Job:
    """A new job, taken by worker w1."""
    job = dispatcher.submit("e", '{"x": 1}')
    assert [j.id for j in await dispatcher.take("w1", 1, False)] == [job.id]
    return job


def _status(dispatcher: Dispatcher, job_id: str) -> dict[str, Any]:
    return dict(json.loads(dispatcher.status_json(dispatcher.jobs[job_id])))


def test_output_a_dead_attempt_reported_is_not_the_jobs_output(tmp_path: Path) -> None:
    async def first_life() -> str:
        dispatcher, job = await _running_on_w1(tmp_path)
        # Progress output, then the worker dies: the job runs again from scratch.
        assert dispatcher.done("w1", job.id, {"status": "IN_PROGRESS"}, False, '"half"')
        dispatcher.worker_exited("w1", "exited with code 3", blame=False)
        assert _status(dispatcher, job.id)["status"] == "IN_QUEUE"
        assert "output" not in _status(dispatcher, job.id)
        dispatcher.register_worker("w2", "e")
        await dispatcher.take("w2", 1, False)
        assert dispatcher.done("w2", job.id, {"status": "IN_PROGRESS"}, False, '"again"')
        return job.id  # then the platform is killed

    async def second_life(job_id: str) -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.restore()
        assert "output" not in _status(dispatcher, job_id)
        dispatcher.register_worker("w3", "e")
        await dispatcher.take("w3", 1, False)
        assert dispatcher.done("w3", job_id, {"error": "boom"}, False, None)
        assert _status(dispatcher, job_id)["error"] == "boom"
        assert "output" not in _status(dispatcher, job_id)

    job_id = asyncio.run(first_life())
    asyncio.run(second_life(job_id))
    third = _dispatcher(tmp_path)
    third.restore()
    assert "output" not in _status(third, job_id)  # nor after another restart


def test_a_damaged_stream_chunk_costs_that_chunk_not_the_result(tmp_path: Path) -> None:
    async def first_life() -> str:
        dispatcher, job = await _running_on_w1(tmp_path)
        assert _chunk(dispatcher, "w1", job.id, "a") and _chunk(dispatcher, "w1", job.id, "b")
        result = '{"big": "result"}'
        assert dispatcher.done("w1", job.id, {"output": json.loads(result)}, True, result)
        return job.id

    job_id = asyncio.run(first_life())
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as db, db:
        db.execute("UPDATE chunks SET chunk = '{bad' WHERE job_id = ? AND n = 0", (job_id,))
    dispatcher = _dispatcher(tmp_path)
    dispatcher.restore()
    status = _status(dispatcher, job_id)
    assert status["status"] == "COMPLETED", status
    assert status["output"] == {"big": "result"}
    job = dispatcher.jobs[job_id]
    assert _read(dispatcher, job) == ["b"]


def test_a_low_priority_job_stays_one_across_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:  # on an event loop, as the platform runs it (ttl timers)
        dispatcher = _dispatcher(tmp_path)
        now = time.time()
        with monkeypatch.context() as earlier:  # submitted 5 s before the other, on any clock
            earlier.setattr(time, "time", lambda: now - 5)
            low = dispatcher.submit("e", '{"x": 1}', low_priority=True)
        urgent = dispatcher.submit("e", '{"x": 2}')
        assert dispatcher.queued["e"] == 2 and dispatcher.queued_low_priority["e"] == 1
        # The scaler's wait counts from the oldest job that may start a worker.
        later = urgent.created_at + 1
        assert dispatcher.oldest_wait("e", later) == pytest.approx(1)
        restarted = _dispatcher(tmp_path)
        restarted.restore()
        assert restarted.jobs[low.id].low_priority
        assert restarted.queued["e"] == 2 and restarted.queued_low_priority["e"] == 1
        assert restarted.oldest_wait("e", later) == pytest.approx(1)
        restarted.purge("e")
        assert restarted.queued["e"] == 0 and restarted.queued_low_priority["e"] == 0

    asyncio.run(scenario())


def test_a_write_that_fails_half_way_does_not_hold_back_later_ones(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    big = json.dumps("x" * 10_000)  # stored in two statements, in one transaction
    store.insert(Job(id="a", endpoint="e", input_json=big))
    with pytest.raises(sqlite3.IntegrityError):
        store.insert(Job(id="a", endpoint="e", input_json=big))  # the id is taken
    store.insert(Job(id="b", endpoint="e", input_json=big))
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as other:
        assert sorted(row[0] for row in other.execute("SELECT id FROM jobs")) == ["a", "b"]


def test_big_results_beyond_the_memory_budget_are_served_from_the_store(tmp_path: Path) -> None:
    outputs = {f"r{i}": json.dumps(f"{i}" * 80_000) for i in range(3)}  # 80 KB each

    async def first_life() -> dict[str, str]:
        dispatcher = _dispatcher(tmp_path, output_memory_bytes=200_000)
        dispatcher.register_worker("w1", "e")
        ids = {}
        for name, output in outputs.items():
            job = await _start_on_w1(dispatcher)
            assert dispatcher.done("w1", job.id, {"output": "..."}, False, output)
            ids[name] = job.id
        # Only the newest two fit in the budget; every result is still answered in full.
        in_memory = {n for n, i in ids.items() if dispatcher.jobs[i].output_json is not None}
        assert in_memory == {"r1", "r2"}
        for name, job_id in ids.items():
            assert _status(dispatcher, job_id)["output"] == json.loads(outputs[name])
        return ids

    ids = asyncio.run(first_life())
    restarted = _dispatcher(tmp_path)
    restarted.restore()
    for name, job_id in ids.items():
        assert restarted.jobs[job_id].output_json is None  # not loaded until asked for
        assert _status(restarted, job_id)["output"] == json.loads(outputs[name])


def test_big_streams_beyond_the_memory_budget_are_served_from_the_store(tmp_path: Path) -> None:
    # Three streaming jobs of two 40 KB chunks each, with a small final output.
    chunks = {f"s{i}": [f"{i}a" * 20_000, f"{i}b" * 20_000] for i in range(3)}

    async def first_life() -> dict[str, str]:
        dispatcher = _dispatcher(tmp_path, output_memory_bytes=200_000)
        dispatcher.register_worker("w1", "e")
        ids = {}
        for name, items in chunks.items():
            job = await _start_on_w1(dispatcher)
            assert _chunk(dispatcher, "w1", job.id, items[0])
            if name == "s0":  # a client reads the first chunk while it runs
                assert _read(dispatcher, job) == items[:1]
            assert _chunk(dispatcher, "w1", job.id, items[1])
            assert dispatcher.done("w1", job.id, {"output": 2}, True, "2")
            ids[name] = job.id
        # Only the newest two streams fit in the budget...
        in_memory = {n for n, i in ids.items() if dispatcher.jobs[i].stream}
        assert in_memory == {"s1", "s2"}
        # ...yet /stream answers every chunk not yet returned, in order, and /status the rest.
        for name, job_id in ids.items():
            job = dispatcher.jobs[job_id]
            assert _read(dispatcher, job) == chunks[name][1 if name == "s0" else 0 :]
            assert _read(dispatcher, job) == []
            assert _status(dispatcher, job_id)["output"] == 2
        return ids

    ids = asyncio.run(first_life())

    async def second_life() -> None:
        restarted = _dispatcher(tmp_path)
        restarted.restore()
        for job_id in ids.values():
            job = restarted.jobs[job_id]
            assert job.stream == []  # not loaded until asked for
            # What /stream returned before the restart is not handed out again.
            assert _read(restarted, job) == []
            assert _status(restarted, job_id)["status"] == "COMPLETED"

    asyncio.run(second_life())


def test_a_restart_hands_out_only_the_stream_chunks_not_yet_read(tmp_path: Path) -> None:
    async def first_life() -> tuple[str, str]:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        read = await _start_on_w1(dispatcher)  # read in full once it finished
        assert _chunk(dispatcher, "w1", read.id, "a")
        assert dispatcher.done("w1", read.id, {"output": 1}, True, "1")
        assert _read(dispatcher, read) == ["a"]
        part = await _start_on_w1(dispatcher)  # read in part while it ran
        assert _chunk(dispatcher, "w1", part.id, "b")
        assert _read(dispatcher, part) == ["b"]
        assert _chunk(dispatcher, "w1", part.id, "c")
        assert dispatcher.done("w1", part.id, {"output": 2}, True, "2")
        return read.id, part.id

    read_id, part_id = asyncio.run(first_life())

    async def second_life() -> None:
        restarted = _dispatcher(tmp_path)
        restarted.restore()
        assert _read(restarted, restarted.jobs[read_id]) == []
        assert _read(restarted, restarted.jobs[part_id]) == ["c"]
        assert _read(restarted, restarted.jobs[part_id]) == []

    asyncio.run(second_life())


def test_a_huge_ttl_or_timeout_stored_by_an_older_version_does_not_break_start_up(
    tmp_path: Path,
) -> None:
    # Older gateways took any positive integer: a float cannot hold 10**400 ms.
    store = JobStore(tmp_path / "jobs.db")
    huge = 10**400
    now = time.time()
    store.insert(Job(id="a", endpoint="e", input_json="1", ttl_ms=huge, created_at=now))
    store.insert(
        Job(id="b", endpoint="e", input_json="2", execution_timeout_ms=huge, created_at=now)
    )
    store.close()

    async def restarted() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.restore()
        dispatcher.register_worker("w1", "e")
        assert [j.id for j in await dispatcher.take("w1", 2, False)] == ["a", "b"]
        for job_id in ("a", "b"):
            assert dispatcher.done("w1", job_id, {"output": 1}, False, "1")
            assert _status(dispatcher, job_id)["status"] == "COMPLETED"

    asyncio.run(restarted())


def test_a_cancelled_queued_job_leaves_the_queue(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        cancelled = dispatcher.submit("e", '{"x": 1}', sync=True)
        waiting = dispatcher.submit("e", '{"x": 2}')
        dispatcher.cancel(cancelled)
        dispatcher.prune(time.time() + 61)  # the cancelled /runsync result expires
        assert dispatcher.oldest_wait("e", waiting.created_at + 1) == pytest.approx(1)
        assert dispatcher.purge("e") == 1 and waiting.status == "CANCELLED"

    asyncio.run(scenario())


def test_a_final_report_without_output_leaves_no_progress_output_behind(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        jobs = [dispatcher.submit("e", "{}") for _ in range(4)]
        raised, empty, refused, cancelled = jobs
        await dispatcher.take("w1", 4, False)
        for job in jobs:
            assert dispatcher.done("w1", job.id, {"status": "IN_PROGRESS"}, False, '"step 1"')
            assert _status(dispatcher, job.id)["output"] == "step 1"
        assert dispatcher.done("w1", raised.id, {"error": "boom"}, False, None)
        assert dispatcher.done("w1", empty.id, {}, False, None)  # the handler returned {}
        dispatcher.refuse("w1", refused.id, "nested too deep")  # however a job ends
        dispatcher.cancel(cancelled)
        for job in jobs:
            assert "output" not in _status(dispatcher, job.id)
        return [job.id for job in jobs]

    ids = asyncio.run(scenario())
    restarted = _dispatcher(tmp_path)
    restarted.restore()
    statuses = [_status(restarted, i)["status"] for i in ids]
    assert statuses == ["FAILED", "COMPLETED", "FAILED", "CANCELLED"]
    assert not any("output" in _status(restarted, i) for i in ids)  # nor once stored


def test_a_removed_endpoint_fails_its_queue_and_any_job_given_back_later(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher, running = await _running_on_w1(tmp_path)
        waiting = dispatcher.submit("e", "{}")
        dispatcher.remove_endpoint("e", "endpoint e was removed")
        assert waiting.status == "FAILED" and waiting.error == "endpoint e was removed"
        # Its draining worker dies: the job it gave back fails at once instead of waiting.
        dispatcher.worker_exited("w1", "exited", blame=False)
        assert running.status == "FAILED" and running.error == "endpoint e was removed"
        assert dispatcher.queued["e"] == 0
        dispatcher.add_endpoint("e", None)  # served again: jobs queue as before
        assert dispatcher.submit("e", "{}").status == "IN_QUEUE"

    asyncio.run(scenario())


def test_jobs_taken_without_the_scaler_asking_leave_no_trace_in_its_wait_queue(
    tmp_path: Path,
) -> None:
    # oldest_wait is asked only by the queue-delay scaler: with the other, its queue of
    # urgent ids must still stay as short as the job queue.
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        for _ in range(200):
            job = await _start_on_w1(dispatcher)
            assert dispatcher.done("w1", job.id, {"output": 1}, False, "1")
        assert len(dispatcher._urgent["e"]) <= 1 and dispatcher.queued["e"] == 0

    asyncio.run(scenario())


def test_a_retried_job_starts_without_the_output_and_chunks_of_its_failure(
    tmp_path: Path,
) -> None:
    big = json.dumps("x" * 10_000)  # kept in a file beside the database

    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        job = await _start_on_w1(dispatcher)
        assert _chunk(dispatcher, "w1", job.id, "partial")
        assert dispatcher.done("w1", job.id, {"error": "boom"}, False, big)
        assert job.status == "FAILED"
        assert [p.name for p in dispatcher.store.payload_dir.iterdir()] == [f"{job.id}.output.json"]
        dispatcher.retry(job)
        assert job.status == "IN_QUEUE" and job.output_json is None
        assert list(dispatcher.store.payload_dir.iterdir()) == []
        assert dispatcher.store.load_stream(job.id) == ([], 0)
        assert dispatcher.store.load_output(job.id) is None

    asyncio.run(scenario())


def test_a_dead_workers_stream_chunks_are_not_handed_out_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher, job = await _running_on_w1(tmp_path)
        assert _chunk(dispatcher, "w1", job.id, 0) and _chunk(dispatcher, "w1", job.id, 1)
        assert _read(dispatcher, job) == [0, 1]
        outcome = dispatcher.worker_exited("w1", "exited with code 3", blame=False)
        assert outcome == [f"job {job.id} runs again"]  # for the log line of the exit
        dispatcher.register_worker("w2", "e")
        assert [j.id for j in await dispatcher.take("w2", 1, False)] == [job.id]
        # The new attempt yields from the start again; the reader gets only what is new.
        assert _chunk(dispatcher, "w2", job.id, 0)
        assert _read(dispatcher, job) == []
        assert _chunk(dispatcher, "w2", job.id, 1) and _chunk(dispatcher, "w2", job.id, 2)
        assert _read(dispatcher, job) == [2]

    asyncio.run(scenario())


def test_delay_time_counts_only_time_spent_queued(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher, job = await _running_on_w1(tmp_path)
        # It waited 60 s for w1, which ran it for 40 s and died: 60 s queued so far.
        job.created_at -= 100
        job.started_at = job.created_at + 60
        dispatcher.worker_exited("w1", "exited with code 3", blame=False)
        dispatcher.register_worker("w2", "e")
        await dispatcher.take("w2", 1, False)
        assert 60_000 <= _status(dispatcher, job.id)["delayTime"] < 61_000
        # A retry is a new run: its delay counts from the retry.
        assert dispatcher.done("w2", job.id, {"error": "boom"}, False, None)
        dispatcher.retry(job)
        await dispatcher.take("w2", 1, False)
        assert _status(dispatcher, job.id)["delayTime"] < 1_000

    asyncio.run(scenario())


def test_a_requeued_job_does_not_hide_how_long_the_queue_has_waited(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher, crashed = await _running_on_w1(tmp_path)
        waiting = dispatcher.submit("e", '{"x": 2}')
        waiting.created_at -= 3  # queued 3 s ago
        now = time.time()
        assert 3 <= dispatcher.oldest_wait("e", now) < 4
        dispatcher.worker_exited("w1", "exited with code 3", blame=True)
        assert 3 <= dispatcher.oldest_wait("e", now) < 4  # the scaler still sees it
        dispatcher.register_worker("w2", "e")
        # The requeued job still runs first.
        assert [j.id for j in await dispatcher.take("w2", 1, False)] == [crashed.id]

    asyncio.run(scenario())


def test_a_platform_killed_while_a_reader_streams_hands_out_no_chunk_twice(
    tmp_path: Path,
) -> None:
    async def first_life() -> str:
        dispatcher, job = await _running_on_w1(tmp_path)
        for n in range(3):
            assert _chunk(dispatcher, "w1", job.id, n)
        assert _read(dispatcher, job) == [0, 1, 2]
        return job.id  # then the platform is killed

    async def second_life(job_id: str) -> None:
        dispatcher = _dispatcher(tmp_path)
        assert dispatcher.restore() == 1
        dispatcher.register_worker("w2", "e")
        job = dispatcher.jobs[job_id]
        assert [j.id for j in await dispatcher.take("w2", 1, False)] == [job_id]
        for n in range(5):  # the new attempt yields from the start again
            assert _chunk(dispatcher, "w2", job_id, n)
        assert _read(dispatcher, job) == [3, 4]

    asyncio.run(second_life(asyncio.run(first_life())))


def test_a_retried_job_gets_its_ttl_again_from_the_retry(tmp_path: Path) -> None:
    async def first_life() -> str:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        job = dispatcher.submit("e", '{"x": 1}', ttl_ms=400)
        job.created_at -= 60  # long past its ttl counted from submission
        assert [j.id for j in await dispatcher.take("w1", 1, False)] == [job.id]
        assert dispatcher.done("w1", job.id, {"error": "boom"}, False, None)
        dispatcher.retry(job)
        assert job.status == "IN_QUEUE"  # a new run, with a whole ttl of its own
        deadline = time.monotonic() + 20
        while job.status == "IN_QUEUE" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # polling: the ttl timer ends it
        assert job.status == "TIMED_OUT" and "ttl of 400 ms" in job.error
        dispatcher.retry(job)
        return job.id

    async def second_life(job_id: str) -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.restore()
        assert dispatcher.jobs[job_id].status == "IN_QUEUE"  # counted from the retry still

    asyncio.run(second_life(asyncio.run(first_life())))


def test_a_worker_asked_to_stop_that_polls_again_is_not_answered_at_once(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        dispatcher.drain("w1")
        # It ignores SIGTERM and polls again: answered at once, it would spin until killed.
        poll = asyncio.ensure_future(dispatcher.take("w1", 1, False))
        await asyncio.sleep(0.1)
        assert not poll.done()
        assert await poll == []

    asyncio.run(scenario())


def _chunk(dispatcher: Dispatcher, worker_id: str, job_id: str, item: Any) -> bool:
    return dispatcher.chunk(worker_id, job_id, json.dumps(item))


def _read(dispatcher: Dispatcher, job: Job) -> list[Any]:
    """The chunks a /stream poll answered (and delivered) now returns."""
    read = dispatcher.claim_stream(job)
    dispatcher.mark_streamed(job, read)
    return [json.loads(chunk) for chunk in read.chunks]


BIG_INPUT = json.dumps("x" * 50_000)  # kept in a file while queued


@pytest.mark.parametrize("job_input", ['{"x": 1}', BIG_INPUT])
def test_a_job_cancelled_while_handed_to_a_worker_is_ended_once_and_not_run(
    tmp_path: Path, job_input: str
) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        ended: list[str] = []
        dispatcher.on_final = lambda job: ended.append(job.status)
        dispatcher.register_worker("w1", "e")
        poll = asyncio.ensure_future(dispatcher.take("w1", 1, False))
        await asyncio.sleep(0)  # one loop turn: the poll is now registered
        job = dispatcher.submit("e", job_input)  # handed to the waiting poll...
        dispatcher.cancel(job)  # ...and cancelled before the poll answers
        assert await poll == []
        assert (job.status, job.error, ended) == ("CANCELLED", None, ["CANCELLED"])
        assert dispatcher.failed["e"] == 0

    asyncio.run(scenario())


def test_a_queued_input_that_cannot_be_read_now_waits_for_the_next_take(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        job = dispatcher.submit("e", BIG_INPUT)
        input_file = next((tmp_path / "jobs-payloads").iterdir())
        saved = input_file.read_bytes()
        input_file.unlink()
        input_file.mkdir()  # unreadable for now: an OSError, not a lost input
        assert await dispatcher.take("w1", 1, False) == []
        assert (job.status, job.attempts, dispatcher.running["e"]) == ("IN_QUEUE", 0, 0)
        input_file.rmdir()
        input_file.write_bytes(saved)
        assert [j.input_json for j in await dispatcher.take("w1", 1, False)] == [BIG_INPUT]

    asyncio.run(scenario())


def test_a_queued_input_that_stays_unreadable_fails_its_job_and_holds_up_no_other(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        job = dispatcher.submit("e", BIG_INPUT)
        input_file = next((tmp_path / "jobs-payloads").iterdir())
        input_file.unlink()
        input_file.mkdir()  # and so it stays: a worker polling again would spin on it
        other = dispatcher.submit("e", '{"x": 1}')
        for _ in range(3):  # a few tries: a passing error would clear
            assert await dispatcher.take("w1", 1, False) == []
        assert job.status == "FAILED" and "stored input cannot be read" in (job.error or "")
        assert [j.id for j in await dispatcher.take("w1", 1, False)] == [other.id]
        assert (dispatcher.running["e"], dispatcher.queued["e"]) == (1, 0)

    asyncio.run(scenario())


def test_a_take_that_fails_mid_batch_puts_its_jobs_back_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        jobs = [dispatcher.submit("e", BIG_INPUT) for _ in range(3)]
        dispatcher.store.close()  # reading their inputs back now raises
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            await dispatcher.take("w1", 3, False)
        assert [j.status for j in jobs] == ["IN_QUEUE"] * 3
        assert (dispatcher.running["e"], dispatcher.queued["e"]) == (0, 3)
        assert list(dispatcher.queues["e"])[:3] == [j.id for j in jobs]

    asyncio.run(scenario())


def test_a_queued_input_damaged_in_its_file_fails_the_job(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        job = dispatcher.submit("e", BIG_INPUT)
        next((tmp_path / "jobs-payloads").iterdir()).write_text('{"damaged')
        assert await dispatcher.take("w1", 1, False) == []
        assert job.status == "FAILED" and "could not be read" in (job.error or "")
        assert dispatcher.running["e"] == 0

    asyncio.run(scenario())


def test_a_poll_given_up_while_its_input_is_read_leaves_the_job_queued(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        job = dispatcher.submit("e", BIG_INPUT)
        poll = asyncio.ensure_future(dispatcher.take("w1", 1, False))
        await asyncio.sleep(0)  # one loop turn: it took the job and reads its input
        assert job.status == "IN_PROGRESS"
        poll.cancel()  # its worker hung up
        with pytest.raises(asyncio.CancelledError):
            await poll
        assert (job.status, dispatcher.running["e"]) == ("IN_QUEUE", 0)
        assert [j.input_json for j in await dispatcher.take("w1", 1, False)] == [BIG_INPUT]

    asyncio.run(scenario())


def test_a_worker_still_stopping_a_cancelled_job_counts_as_running_not_idle(
    tmp_path: Path,
) -> None:
    """What /health and the scaler see: a cancelled sync job may run on in its thread."""

    async def scenario() -> None:
        dispatcher, job = await _running_on_w1(tmp_path)
        dispatcher.cancel(job)
        assert job.status == "CANCELLED"
        dispatcher.ping("w1", [job.id])  # a heartbeat: it still runs the job
        assert dispatcher.active_jobs("w1") == 1
        later = dispatcher.submit("e", '{"x": 2}')
        # Polling with nothing in progress, it shows it dropped the cancelled job.
        assert [j.id for j in await dispatcher.take("w1", 1, False)] == [later.id]
        assert dispatcher.active_jobs("w1") == 1  # the new job alone

    asyncio.run(scenario())


def test_a_poll_given_up_just_after_a_job_was_handed_to_it_leaves_the_job_queued(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        poll = asyncio.ensure_future(dispatcher.take("w1", 1, False))
        await asyncio.sleep(0)  # one loop turn: the poll waits for work
        job = dispatcher.submit("e", '{"n": 1}')  # handed to the waiting poll at once
        assert job.status == "IN_PROGRESS"
        poll.cancel()  # given up before the poll saw it (a shutdown, say)
        with pytest.raises(asyncio.CancelledError):
            await poll
        assert (job.status, dispatcher.running["e"]) == ("IN_QUEUE", 0)
        assert [j.id for j in await dispatcher.take("w1", 1, False)] == [job.id]

    asyncio.run(scenario())


def test_a_job_given_back_after_its_start_was_stored_is_stored_as_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch_module, "_NOTE_STARTS_AFTER_S", 0)
    reading = threading.Event()  # the input is read back until the test lets it go
    check = dispatch_module.checked_input
    monkeypatch.setattr(dispatch_module, "checked_input", lambda *a: reading.wait(30) and check(*a))

    async def scenario() -> str:
        dispatcher = _dispatcher(tmp_path)
        dispatcher.register_worker("w1", "e")
        job = dispatcher.submit("e", BIG_INPUT)  # queued: its input waits in its file
        poll = asyncio.ensure_future(dispatcher.take("w1", 1, False))  # reads it back
        await asyncio.sleep(0)
        while dispatcher._started:  # loop turns until the start is stored
            await asyncio.sleep(0)
        poll.cancel()
        reading.set()
        with pytest.raises(asyncio.CancelledError):
            await poll
        assert job.status == "IN_QUEUE"
        dispatcher.store.close()
        return job.id

    async def restart() -> int:  # as after a crash: what the store says
        restored = _dispatcher(tmp_path)
        restored.restore()
        return restored.jobs[job_id].attempts

    job_id = asyncio.run(scenario())
    assert asyncio.run(restart()) == 0


def test_two_stream_readers_never_get_the_same_chunk(tmp_path: Path) -> None:
    async def reader(dispatcher: Dispatcher, job: Job) -> list[str]:
        await dispatcher.wait_stream(job, 5.0)
        read = dispatcher.claim_stream(job)
        await asyncio.sleep(0)  # its answer being sent
        dispatcher.mark_streamed(job, read)
        return read.chunks

    async def scenario() -> None:
        dispatcher, job = await _running_on_w1(tmp_path)
        readers = [asyncio.ensure_future(reader(dispatcher, job)) for _ in range(2)]
        await asyncio.sleep(0)  # both wait now
        assert _chunk(dispatcher, "w1", job.id, "c0")
        assert sorted(await asyncio.gather(*readers)) == [[], ['"c0"']]
        assert job.stream_sent == 1

    asyncio.run(scenario())


def test_a_stream_answer_sent_across_a_retry_does_not_skip_the_new_runs_chunks(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        dispatcher, job = await _running_on_w1(tmp_path)
        assert _chunk(dispatcher, "w1", job.id, "a") and _chunk(dispatcher, "w1", job.id, "b")
        assert dispatcher.done("w1", job.id, {"error": "boom"}, True, None)
        old_read = dispatcher.claim_stream(job)  # an answer on its way...
        dispatcher.retry(job)  # ...while a retry starts a new run
        dispatcher.mark_streamed(job, old_read)
        await dispatcher.take("w1", 1, False)
        assert _chunk(dispatcher, "w1", job.id, "A") and _chunk(dispatcher, "w1", job.id, "B")
        assert _read(dispatcher, job) == ["A", "B"]

    asyncio.run(scenario())


def test_a_platform_killed_mid_job_does_not_count_the_lost_attempt_as_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch_module, "_NOTE_STARTS_AFTER_S", 0)

    async def first_life() -> str:
        dispatcher, job = await _running_on_w1(tmp_path)
        while dispatcher._started:  # loop turns until the start is noted in the store
            await asyncio.sleep(0)
        return job.id  # then the platform is killed: no clean stop

    job_id = asyncio.run(first_life())
    # As if it had waited 60 s for w1, which ran it for 40 s until the kill.
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as db, db:
        (state,) = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        started = json.loads(state)
        assert started["started_at"] is not None  # the start was noted: it can be allowed for
        started["started_at"] -= 40
        db.execute(
            "UPDATE jobs SET created_at = ?, state = ? WHERE id = ?",
            (started["started_at"] - 60, json.dumps(started), job_id),
        )

    async def second_life() -> None:
        dispatcher = _dispatcher(tmp_path)
        assert dispatcher.restore() == 1
        dispatcher.register_worker("w2", "e")
        assert [j.id for j in await dispatcher.take("w2", 1, False)] == [job_id]
        # Queued 60 s before the lost attempt, a moment after the restart: not its 40 s.
        assert 60_000 <= _status(dispatcher, job_id)["delayTime"] < 61_000

    asyncio.run(second_life())


def test_a_retry_the_store_cannot_write_leaves_the_job_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(jobs: list[Job]) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    async def scenario() -> None:
        dispatcher, job = await _running_on_w1(tmp_path)
        assert dispatcher.done("w1", job.id, {"error": "boom"}, False, json.dumps("partial"))
        monkeypatch.setattr(dispatcher.store, "save_requeued", disk_full)
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            dispatcher.retry(job)
        assert (job.status, job.error, job.retried_at) == ("FAILED", "boom", None)
        assert _status(dispatcher, job.id)["output"] == "partial"
        counts = (dispatcher.failed["e"], dispatcher.retried["e"], dispatcher.queued["e"])
        assert counts == (1, 0, 0)
        monkeypatch.undo()  # the disk has room again: the retry goes through
        dispatcher.retry(job)
        assert (job.status, dispatcher.retried["e"], dispatcher.queued["e"]) == ("IN_QUEUE", 1, 1)

    asyncio.run(scenario())
