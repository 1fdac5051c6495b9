"""Dispatcher state, driven directly: a crashed worker's pending poll never gets a job."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flash.platform.dispatch import Dispatcher
from flash.platform.store import JobStore


def test_requeued_job_skips_the_dead_workers_pending_poll(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher(JobStore(tmp_path / "jobs.db"))
        dispatcher.add_endpoint("e", None)
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
        dispatcher = Dispatcher(JobStore(tmp_path / "jobs.db"))
        dispatcher.add_endpoint("e", None)
        dispatcher.register_worker("w1", "e")
        job = dispatcher.submit("e", '{"x": 1}')
        assert [j.id for j in await dispatcher.take("w1", 1, False)] == [job.id]
        assert dispatcher.chunk("w1", job.id, "stale-1")
        assert dispatcher.chunk("w1", job.id, "stale-2")
        return job.id  # then the platform is killed: no clean stop

    async def second_life(job_id: str) -> None:
        dispatcher = Dispatcher(JobStore(tmp_path / "jobs.db"))
        dispatcher.add_endpoint("e", None)
        assert dispatcher.restore() == 1  # the started job is run again, from scratch
        job = dispatcher.jobs[job_id]
        assert job.stream == [] and job.status == "IN_QUEUE"
        dispatcher.register_worker("w2", "e")
        assert [j.id for j in await dispatcher.take("w2", 1, False)] == [job_id]
        assert dispatcher.chunk("w2", job_id, "fresh-1")
        assert job.stream == ["fresh-1"]

    job_id = asyncio.run(first_life())
    asyncio.run(second_life(job_id))
