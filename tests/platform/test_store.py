"""The job store keeps big payloads in files its rows point to, and finds older layouts."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from flash.platform.dispatch import Dispatcher
from flash.platform.jobs import COMPLETED, Job
from flash.platform.store import JobStore, NonceUsed

BIG = json.dumps({"data": "x" * 100_000})  # past what a row keeps
SMALL = json.dumps({"data": "x"})


def _files(store: JobStore) -> list[str]:
    return sorted(path.name for path in store.payload_dir.iterdir())


def _finished(store: JobStore, job_id: str, output: str | None) -> Job:
    job = Job(id=job_id, endpoint="e", input_json=BIG, status=COMPLETED, output_json=output)
    store.insert(job)
    store.save_with_output(job)
    return job


def test_big_inputs_and_outputs_are_files_that_live_as_long_as_their_job(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    _finished(store, "big", BIG)
    _finished(store, "small", SMALL)
    assert _files(store) == ["big.input.json", "big.output.json", "small.input.json"]
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as db:
        big_row = db.execute("SELECT input, output FROM jobs WHERE id = 'big'").fetchone()
    assert big_row == ("", "")  # the row points to its files; no megabyte goes through SQLite
    assert store.load_input("big") == BIG and store.load_output("big") == BIG
    store.close()

    restarted = JobStore(tmp_path / "jobs.db")
    jobs = {job.id: job for job in restarted.load()}
    assert jobs["big"].output_in_store and jobs["big"].output_json is None  # read when asked
    assert restarted.load_output("big") == BIG and jobs["small"].output_json == SMALL
    restarted.delete(["big"])
    assert _files(restarted) == ["small.input.json"]
    # A job sent back to the queue loses its output: its file goes too.
    queued = Job(id="again", endpoint="e", input_json=SMALL, output_json=BIG)
    restarted.insert(queued)
    restarted.save_with_output(queued)
    assert "again.output.json" in _files(restarted)
    queued.output_json = None
    restarted.save_requeued([queued])
    assert "again.output.json" not in _files(restarted)
    # An output that shrinks to fit the row (a progress report, then the result) loses its
    # file, also when the file was written before a restart.
    shrinking = Job(id="shrinks", endpoint="e", input_json=SMALL, output_json=BIG)
    restarted.insert(shrinking)
    restarted.save_with_output(shrinking)
    restarted.close()
    again = JobStore(tmp_path / "jobs.db")
    again.load()
    shrinking.output_json = SMALL
    again.save_with_output(shrinking)
    assert "shrinks.output.json" not in _files(again)
    assert again.load_output("shrinks") == SMALL


def test_a_file_no_row_points_to_is_removed_at_start_up(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    _finished(store, "kept", BIG)
    # Written just before a crash, before its row was: nothing will ever read it.
    (store.payload_dir / "lost.input.json").write_text(BIG)
    (store.payload_dir / "kept.output.part").write_text(BIG[:10])  # half of a rewrite
    store.close()
    restarted = JobStore(tmp_path / "jobs.db")
    restarted.load()
    assert _files(restarted) == ["kept.input.json", "kept.output.json"]


def test_a_missing_payload_file_fails_its_job_naming_it(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.insert(Job(id="queued", endpoint="e", input_json=BIG))
    _finished(store, "done", BIG)
    store.close()
    (tmp_path / "jobs-payloads" / "queued.input.json").unlink()
    (tmp_path / "jobs-payloads" / "done.output.json").unlink()
    restarted = JobStore(tmp_path / "jobs.db")
    jobs = {job.id: job for job in restarted.load()}
    assert jobs["queued"].status == "FAILED"
    assert "could not be read" in jobs["queued"].error and "input file" in jobs["queued"].error
    with pytest.raises(ValueError, match="stored output of job done could not be read"):
        restarted.load_output("done")
    restarted.close()
    # Asked for its status, the finished job says its result is lost (not a 500 each time),
    # and is stored so.
    dispatcher = Dispatcher(JobStore(tmp_path / "jobs.db"))
    dispatcher.restore()
    completed, failed = dispatcher.completed["e"], dispatcher.failed["e"]
    status = json.loads(dispatcher.status_json(dispatcher.jobs["done"]))
    assert status["status"] == "FAILED" and "result is lost" in status["error"]
    assert "file is gone" in status["error"] and "output" not in status
    assert (dispatcher.completed["e"], dispatcher.failed["e"]) == (completed - 1, failed + 1)
    again = {job.id: job for job in JobStore(tmp_path / "jobs.db").load()}["done"]
    assert again.status == "FAILED" and not again.output_in_store


def test_big_payloads_stored_by_the_previous_version_are_moved_to_files(tmp_path: Path) -> None:
    # It kept them as rows of ``payloads`` and left the job's column empty (NULL).
    store = JobStore(tmp_path / "jobs.db")
    store.insert(Job(id="queued", endpoint="e", input_json=SMALL))
    _finished(store, "done", SMALL)
    store.insert(Job(id="odd id", endpoint="e", input_json=SMALL))  # no file can be named so
    store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as db, db:
        db.execute(
            "CREATE TABLE payloads (job_id TEXT NOT NULL, kind TEXT NOT NULL,"
            " json TEXT NOT NULL, PRIMARY KEY (job_id, kind))"
        )
        db.execute("UPDATE jobs SET input = NULL WHERE id != 'done'")
        db.execute("UPDATE jobs SET output = NULL WHERE id = 'done'")
        db.executemany(
            "INSERT INTO payloads (job_id, kind, json) VALUES (?, ?, ?)",
            [
                ("queued", "input", BIG),
                ("done", "input", '"not read: the row has one"'),
                ("done", "output", BIG),
                ("odd id", "input", BIG),
                ("gone", "input", BIG),  # its job was deleted
            ],
        )
    for _ in range(2):  # moved once; the second start finds them where the first put them
        restarted = JobStore(tmp_path / "jobs.db")
        jobs = {job.id: job for job in restarted.load()}
        # A queued job's big input waits in its file until a worker takes the job.
        assert jobs["queued"].input_json is None and restarted.load_input("queued") == BIG
        assert jobs["odd id"].input_json == BIG
        assert jobs["done"].output_in_store and restarted.load_output("done") == BIG
        assert restarted.load_input("done") == BIG
        assert _files(restarted) == ["done.input.json", "done.output.json", "queued.input.json"]
        restarted.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "payloads" not in tables


def test_an_output_file_unreadable_for_now_is_kept_with_its_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of file handles, say: that status read fails (a 500), and the next one answers.
    store = JobStore(tmp_path / "jobs.db")
    _finished(store, "done", BIG)
    store.close()
    dispatcher = Dispatcher(JobStore(tmp_path / "jobs.db"))
    dispatcher.restore()
    read_bytes = Path.read_bytes

    def out_of_handles(path: Path) -> bytes:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(Path, "read_bytes", out_of_handles)
    with pytest.raises(OSError, match="Too many open files"):
        dispatcher.status_json(dispatcher.jobs["done"])
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    status = json.loads(dispatcher.status_json(dispatcher.jobs["done"]))
    assert status["status"] == "COMPLETED" and status["output"] == json.loads(BIG)


def test_a_nonce_is_claimed_once_until_it_expires(tmp_path: Path) -> None:
    until = time.time() + 600
    store = JobStore(tmp_path / "jobs.db")
    store.insert(Job(id="first", endpoint="e", input_json=SMALL), ("n1", until))
    with pytest.raises(NonceUsed):
        store.insert(Job(id="replay", endpoint="e", input_json=BIG), ("n1", until))
    store.close()
    restarted = JobStore(tmp_path / "jobs.db")
    assert [job.id for job in restarted.load()] == ["first"] and _files(restarted) == []
    with pytest.raises(NonceUsed):  # remembered across a restart
        restarted.insert(Job(id="replay", endpoint="e", input_json=SMALL), ("n1", until))
    restarted.forget_nonces(now=until - 1)
    with pytest.raises(NonceUsed):
        restarted.insert(Job(id="replay", endpoint="e", input_json=SMALL), ("n1", until))
    restarted.forget_nonces(now=until)  # no worker takes the request any more
    restarted.insert(Job(id="late", endpoint="e", input_json=SMALL), ("n1", until + 600))


def test_the_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    # It holds every job's input and output, signed requests among them.
    old = tmp_path / "jobs.db-wal"
    old.write_bytes(b"")
    old.chmod(0o644)  # left by an earlier version
    store = JobStore(tmp_path / "jobs.db")
    _finished(store, "done", BIG)
    paths = [tmp_path / "jobs.db", old, *store.payload_dir.iterdir()]
    assert {oct(path.stat().st_mode & 0o777) for path in paths} == {"0o600"}
    assert oct(store.payload_dir.stat().st_mode & 0o777) == "0o700"
