"""Big payloads cost their space once, and only while they can still be used: freed pages go
back to the file system, a stream's output is its chunks, dead inputs are dropped, and queued
inputs wait in the store rather than in memory."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flash.platform import store
from flash.platform.dispatch import Dispatcher
from flash.platform.jobs import Job
from flash.platform.store import JobStore

BIG = json.dumps("x" * 50_000)  # past what a row keeps: a file of the store


def _dispatcher(tmp_path: Path, **options: Any) -> Dispatcher:
    dispatcher = Dispatcher(JobStore(tmp_path / "jobs.db"), **options)
    dispatcher.add_endpoint("e", None)
    dispatcher.register_worker("w1", "e")
    return dispatcher


async def _taken(dispatcher: Dispatcher, input_json: str = "1") -> Job:
    job = dispatcher.submit("e", input_json)
    assert [j.id for j in await dispatcher.take("w1", 1, False)] == [job.id]
    return job


def _pragma(path: Path, name: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(f"PRAGMA {name}").fetchone()[0])


def _payload_files(tmp_path: Path) -> set[str]:
    return {path.name for path in (tmp_path / "jobs-payloads").iterdir()}


def test_the_space_of_expired_streams_goes_back_to_the_file_system(tmp_path: Path) -> None:
    database, log = tmp_path / "jobs.db", tmp_path / "jobs.db-wal"

    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        job = await _taken(dispatcher)
        for _ in range(40):  # 4 MB of chunks, rows of the database
            assert dispatcher.chunk("w1", job.id, json.dumps("c" * 100_000))
        assert dispatcher.done("w1", job.id, {}, True, None)
        full = database.stat().st_size + log.stat().st_size
        assert full > 4_000_000
        assert dispatcher.prune(time.time() + 3600) == 1
        assert database.stat().st_size + log.stat().st_size < full / 10
        assert log.stat().st_size == 0 and _pragma(database, "freelist_count") == 0

    asyncio.run(scenario())


def test_a_database_made_without_auto_vacuum_is_rebuilt_with_it_at_open(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute("CREATE TABLE bloat (x TEXT)")
        db.executemany("INSERT INTO bloat VALUES (?)", [("b" * 100_000,)] * 20)
        db.execute("DELETE FROM bloat")
    bloated = database.stat().st_size
    assert _pragma(database, "auto_vacuum") == 0 and bloated > 2_000_000
    JobStore(database).close()
    assert _pragma(database, "auto_vacuum") == 2  # incremental from now on
    assert database.stat().st_size < bloated / 10


def test_the_input_of_a_job_that_cannot_run_again_is_dropped_when_it_ends(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        completed = await _taken(dispatcher, BIG)
        dispatcher.done("w1", completed.id, {"output": 1}, False, "1")
        failed = await _taken(dispatcher, BIG)
        dispatcher.done("w1", failed.id, {"error": "boom"}, False, None)
        cancelled = dispatcher.submit("e", BIG)
        dispatcher.cancel(cancelled)
        # Only a failed (or timed-out) job can be retried: only its input is kept.
        assert _payload_files(tmp_path) == {f"{failed.id}.input.json"}
        for job in (completed, cancelled):
            assert dispatcher.store.load_input(job.id) is None
        dispatcher.retry(failed)
        assert (await dispatcher.take("w1", 1, False))[0].input_json == BIG

    asyncio.run(scenario())


def test_a_streamed_output_is_stored_once_as_its_chunks(tmp_path: Path) -> None:
    chunks = [json.dumps(f"{n}" * 40_000) for n in range(3)]
    expected = [json.loads(chunk) for chunk in chunks]

    async def scenario() -> str:
        # Room for the chunks once, not twice: the job keeps them in memory.
        dispatcher = _dispatcher(tmp_path, output_memory_bytes=150_000)
        job = await _taken(dispatcher)
        for chunk in chunks:
            assert dispatcher.chunk("w1", job.id, chunk)
        assert dispatcher.done("w1", job.id, {}, True, None)
        assert job.stream == chunks
        assert json.loads(dispatcher.status_json(job))["output"] == expected
        return job.id

    job_id = asyncio.run(scenario())
    assert _payload_files(tmp_path) == set()  # no output file beside the chunks
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as db:
        assert db.execute("SELECT output FROM jobs").fetchall() == [(None,)]
    restarted = Dispatcher(JobStore(tmp_path / "jobs.db"))
    restarted.restore()
    status = json.loads(restarted.status_json(restarted.jobs[job_id]))
    assert status["status"] == "COMPLETED" and status["output"] == expected


def test_a_queued_big_input_waits_in_the_store_until_a_worker_takes_it(tmp_path: Path) -> None:
    async def first_life() -> str:
        dispatcher = _dispatcher(tmp_path)
        queued = dispatcher.submit("e", BIG)
        assert queued.input_json is None  # not in memory while it waits
        assert dispatcher.submit("e", "2").input_json == "2"  # a small one stays
        assert [j.input_json for j in await dispatcher.take("w1", 2, False)] == [BIG, "2"]
        # A job handed straight to a waiting worker gets its input too.
        waiting = asyncio.ensure_future(dispatcher.take("w1", 1, True))
        await asyncio.sleep(0)  # one loop turn: the poll is now registered
        handed = dispatcher.submit("e", BIG)
        assert [j.input_json for j in await waiting] == [BIG]
        return handed.id

    async def second_life(job_id: str) -> None:
        restarted = _dispatcher(tmp_path)
        restarted.restore()
        assert restarted.jobs[job_id].input_json is None  # the run before took it: queued
        assert [j.input_json for j in await restarted.take("w1", 3, False)] == [BIG, "2", BIG]

    asyncio.run(second_life(asyncio.run(first_life())))


def test_a_queued_job_whose_input_file_is_gone_fails_when_taken(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        job = dispatcher.submit("e", BIG)
        (tmp_path / "jobs-payloads" / f"{job.id}.input.json").unlink()
        assert await dispatcher.take("w1", 1, False) == []
        assert job.status == "FAILED" and "input file is gone" in job.error
        assert dispatcher.running["e"] == 0 and dispatcher.failed["e"] == 1

    asyncio.run(scenario())


def _old_layout_database(database: Path, live: int, freed: int) -> None:
    """A database made without auto_vacuum: ``live`` rows of 100 KB, and ``freed`` more
    deleted (free pages)."""
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute("CREATE TABLE keep (x TEXT)")
        db.execute("CREATE TABLE bloat (x TEXT)")
        db.executemany("INSERT INTO keep VALUES (?)", [("k" * 100_000,)] * live)
        db.executemany("INSERT INTO bloat VALUES (?)", [("b" * 100_000,)] * freed)
        db.execute("DELETE FROM bloat")
    assert _pragma(database, "auto_vacuum") == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 20 MB file system of its own (skipped where one cannot be mounted)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # even if a file is open


def test_a_database_on_a_disk_without_room_for_its_rebuild_opens_as_it_is(
    small_disk: Path,
) -> None:
    database = small_disk / "jobs.db"
    _old_layout_database(database, live=30, freed=90)  # 3 MB live in a 12 MB file
    filler = small_disk / "filler"  # leaves 1.5 MB: too little for the rebuild's log
    filler.write_bytes(b"f" * (20 * 1024 * 1024 - database.stat().st_size - 1536 * 1024))
    for _ in range(2):  # and again at the next start
        JobStore(database).close()
        assert _pragma(database, "auto_vacuum") == 0
    filler.unlink()  # room again: the next start switches
    JobStore(database).close()
    assert _pragma(database, "auto_vacuum") == 2


def test_a_database_with_much_live_data_is_not_rebuilt_at_open_however_much_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "_CHEAP_VACUUM_BYTES", 1_000_000)
    database = tmp_path / "jobs.db"
    _old_layout_database(database, live=20, freed=60)  # 2 MB live, 6 MB free
    JobStore(database).close()
    assert _pragma(database, "auto_vacuum") == 0


def test_freed_space_goes_back_a_bounded_step_each_prune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = 1024 * 1024
    monkeypatch.setattr(store, "_RECLAIM_STEP_BYTES", step)
    database, log = tmp_path / "jobs.db", tmp_path / "jobs.db-wal"

    async def scenario() -> None:
        dispatcher = _dispatcher(tmp_path)
        job = await _taken(dispatcher)
        for _ in range(40):  # 4 MB of chunks
            assert dispatcher.chunk("w1", job.id, json.dumps("c" * 100_000))
        assert dispatcher.done("w1", job.id, {}, True, None)
        now = time.time() + 3600
        dispatcher.prune(now)
        page = _pragma(database, "page_size")
        free = [_pragma(database, "freelist_count")]
        while free[-1]:
            assert len(free) < 10
            dispatcher.prune(now)
            free.append(_pragma(database, "freelist_count"))
        assert free[0] * page > 2 * step  # more than one step was left after the first
        assert all(0 < a - b <= step // page for a, b in itertools.pairwise(free))
        assert log.stat().st_size == 0  # emptied once all was back

    asyncio.run(scenario())


def test_space_freed_before_a_restart_is_given_back_at_start(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"

    async def first_life() -> None:
        dispatcher = _dispatcher(tmp_path)
        job = await _taken(dispatcher)
        for _ in range(40):  # 4 MB of chunks
            assert dispatcher.chunk("w1", job.id, json.dumps("c" * 100_000))
        # Then the platform is killed: the restart runs the job again, its chunks dropped.

    async def second_life() -> None:
        assert Dispatcher(JobStore(database)).restore() == 1

    asyncio.run(first_life())
    asyncio.run(second_life())
    assert _pragma(database, "freelist_count") == 0
    assert database.stat().st_size < 1_000_000


def _stored_stream_job(tmp_path: Path) -> str:
    """A job completed with two stream chunks and no output of its own: they are its output."""

    dispatcher = _dispatcher(tmp_path)

    async def run() -> str:
        job = await _taken(dispatcher)
        assert dispatcher.chunk("w1", job.id, '"a"') and dispatcher.chunk("w1", job.id, '"b"')
        assert dispatcher.done("w1", job.id, {}, True, None)
        return job.id

    return asyncio.run(run())


def _restarted(tmp_path: Path) -> Dispatcher:
    dispatcher = Dispatcher(JobStore(tmp_path / "jobs.db"))
    dispatcher.restore()
    return dispatcher


def test_a_damaged_chunk_of_a_streamed_output_loses_the_output(tmp_path: Path) -> None:
    job_id = _stored_stream_job(tmp_path)
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as db, db:
        db.execute("UPDATE chunks SET chunk = '{bad' WHERE job_id = ? AND n = 1", (job_id,))
    dispatcher = _restarted(tmp_path)
    status = json.loads(dispatcher.status_json(dispatcher.jobs[job_id]))
    assert status["status"] == "FAILED" and "its result is lost" in status["error"]
    assert "output" not in status
    again = _restarted(tmp_path)  # stored so
    assert json.loads(again.status_json(again.jobs[job_id]))["status"] == "FAILED"


def test_a_stream_that_cannot_be_read_now_is_an_os_error_not_a_lost_output(
    tmp_path: Path,
) -> None:
    job_id = _stored_stream_job(tmp_path)
    dispatcher = _restarted(tmp_path)
    job = dispatcher.jobs[job_id]
    dispatcher.store.close()  # the database cannot be read: what a caller of a file expects
    with pytest.raises(OSError):
        dispatcher.status_json(job)
    assert job.status == "COMPLETED"


def test_a_full_disk_stops_neither_a_start_nor_the_prunes(small_disk: Path) -> None:
    database = small_disk / "jobs.db"

    async def first_life() -> None:
        dispatcher = _dispatcher(small_disk)
        job = await _taken(dispatcher)
        for _ in range(40):  # 4 MB of chunks, dropped when the restart runs the job again
            assert dispatcher.chunk("w1", job.id, json.dumps("c" * 100_000))
        dispatcher.store.close()

    async def second_life() -> None:
        # Giving the freed pages back moves pages through the log, which a full disk
        # refuses: a warning, not a platform that cannot start or prune.
        dispatcher = Dispatcher(JobStore(database))
        assert dispatcher.restore() == 1
        dispatcher.prune(time.time() + 3600)

    asyncio.run(first_life())
    used = sum(f.stat().st_size for f in small_disk.iterdir())
    # 4 MB left: what the restart's own writes need (dropping the chunks), not the rebuild.
    (small_disk / "filler").write_bytes(b"f" * (20 * 1024 * 1024 - used - 4096 * 1024))
    asyncio.run(second_life())
    assert _pragma(database, "freelist_count") > 0  # kept, for when there is room
