"""Durable job store: one SQLite database in WAL mode, and a folder of big payloads.

Every accepted job is committed before its id is returned, and every state change is
written through, so a restarted platform finds queued jobs and retained results again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flash.platform.jobs import FAILED, FINAL, RUN_RETENTION_S, Job
from flash.runtime.protocol import MAX_POLICY_MS

_log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    endpoint TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    input TEXT,
    output TEXT
);
CREATE TABLE IF NOT EXISTS nonces (
    nonce TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expires_at);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    chunk TEXT NOT NULL,
    PRIMARY KEY (job_id, n)
);
"""
# A job's input and output up to INLINE_BYTES are kept in its row (one statement writes
# them). Bigger ones, which can be megabytes, are files of the payload folder, each written
# once, and the row holds _IN_FILE (no JSON text is empty) in their place: SQLite rewrites
# a whole row on UPDATE, and writes a megabyte value twice (its log, then the database) in
# 4 KB pages with a checksum each, which costs fifteen times what a file does. Finished
# jobs are loaded without their input (only a retry needs it) and without a big output
# (read when asked for), queued ones without a big input (read when a worker takes them).
# Databases of earlier versions kept big payloads as rows of a ``payloads`` table (moved
# to this layout when opened), every input inside ``request`` before inputs had a column,
# and the output inside ``state``: those are still found there.
INLINE_BYTES = 4096
_IN_FILE = ""
# Job ids are the platform's own (a UUID and a suffix); anything else gets no file name.
_FILE_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,127}")
# Columns later versions added; one platform per state folder, so one migrates at a time.
_ADD_COLUMNS = {
    "input": "ALTER TABLE jobs ADD COLUMN input TEXT",
    "output": "ALTER TABLE jobs ADD COLUMN output TEXT",
}
_INPUT, _OUTPUT = "input", "output"
# Space freed by deleted jobs goes back to the file system (auto_vacuum=INCREMENTAL; a
# database made before needs one VACUUM to switch, done at open when it is cheap: little
# live data, and room for its copy), and the log is cut back to _LOG_KEEP_BYTES after each
# checkpoint: one 50 MB result must not leave a 50 MB log behind for good.
_INCREMENTAL_VACUUM = 2  # SQLite's value of PRAGMA auto_vacuum for INCREMENTAL
_CHEAP_VACUUM_BYTES = 64 * 1024 * 1024
_LOG_KEEP_BYTES = 16 * 1024 * 1024
# Free pages are given back once they are this big, or a quarter of the file; then a few
# megabytes a step (each prune's), so the event loop is never held up for long.
_RECLAIM_BYTES = 16 * 1024 * 1024
_RECLAIM_STEP_BYTES = 8 * 1024 * 1024
_FINAL = tuple(sorted(FINAL))
_LOAD = f"""
SELECT seq, id, endpoint, status, request, created_at, state,
    CASE WHEN status IN ({", ".join("?" * len(_FINAL))}) THEN NULL ELSE input END,
    output, output = '{_IN_FILE}'
FROM jobs ORDER BY seq
"""
# Which jobs have stream chunks; the chunks themselves are read when asked for (load_stream).
_STREAMED = "SELECT DISTINCT job_id FROM chunks"
# :drop_input says whether to drop the input (a job that can never run again).
_SET_STATE = "status = :status, state = :state"
_DROP_INPUT = "input = CASE WHEN :drop_input THEN NULL ELSE input END"
_SAVE = f"UPDATE jobs SET {_SET_STATE}, {_DROP_INPUT} WHERE id = :id"
_SAVE_WITH_OUTPUT = f"UPDATE jobs SET {_SET_STATE}, output = :output, {_DROP_INPUT} WHERE id = :id"

_STATE_FIELDS = (
    "queued_at",
    "retried_at",
    "started_at",
    "finished_at",
    "worker_id",
    "attempts",
    "crashes",
    "error",
    "expires_at",
    "retention_ms",
    "stream_sent",
    "output_is_stream",
    "webhook_pending",
    "webhook_attempts",
    "sync",  # a /runsync answered at a stop becomes a /run (see Dispatcher.end_waits)
)


class NonceUsed(Exception):
    """A signed request's nonce was claimed by an earlier job: the request is a replay."""


class JobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.payload_dir = path.with_name(f"{path.stem}-payloads")
        self.payload_dir.mkdir(exist_ok=True)
        _owner_only(path, self.payload_dir)
        # Autocommit: each statement is its own durable transaction.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._giving_back = False  # free pages are being returned, a step at a time
        # Before any table exists: a new database has it from the start.
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(f"PRAGMA journal_size_limit={_LOG_KEEP_BYTES}")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for column, add_column in _ADD_COLUMNS.items():
            if column not in columns:
                self._db.execute(add_column)
        self._move_payload_rows()
        self._switch_to_incremental_vacuum()

    def _pragma(self, name: str) -> int:
        return int(self._db.execute(f"PRAGMA {name}").fetchone()[0])

    def _switch_to_incremental_vacuum(self) -> None:
        """Rebuild a database made without auto_vacuum once, when that is cheap; a big one,
        or one on a disk without room for its copy, keeps its layout (and its size)."""
        if self._pragma("auto_vacuum") == _INCREMENTAL_VACUUM:
            return
        pages, free = self._pragma("page_count"), self._pragma("freelist_count")
        live_bytes = (pages - free) * self._pragma("page_size")
        # VACUUM writes the live data twice: a temporary copy, then the log.
        if live_bytes > _CHEAP_VACUUM_BYTES or not _has_room(self.path.parent, 2 * live_bytes):
            return
        try:
            self._db.execute("VACUUM")
        except sqlite3.OperationalError as err:  # rolled back: the old layout serves on
            _log.warning("job store %s keeps its layout: VACUUM failed (%s)", self.path, err)
        # Also after a failure: the log it grew would keep the disk full.
        self._truncate_log()

    def _truncate_log(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def give_back_space(self) -> None:
        """Return some of the pages that deleted jobs freed to the file system (at most
        _RECLAIM_STEP_BYTES a call, once they are worth it: _RECLAIM_BYTES), and empty the
        log once all are back. Best effort: moving pages writes to the log, which a full disk
        refuses, and that must stop neither a start nor the prunes."""
        try:
            self._give_back_step()
        except sqlite3.Error as err:
            self._giving_back = False
            _log.warning("job store %s: could not give space back (%s)", self.path, err)

    def _give_back_step(self) -> None:
        if self._pragma("auto_vacuum") != _INCREMENTAL_VACUUM:
            return  # an older database that was not switched frees no page this way
        page_size = self._pragma("page_size")
        free = self._pragma("freelist_count")
        if not self._giving_back:
            if free * page_size < _RECLAIM_BYTES and free * 4 < self._pragma("page_count"):
                return
            self._giving_back = True
        # executescript steps the pragma to its end; execute (even with fetchall) frees one
        # page. Autocommit: there is no open transaction for it to commit.
        step_pages = _RECLAIM_STEP_BYTES // page_size
        self._db.executescript(f"PRAGMA incremental_vacuum({step_pages})")
        if self._pragma("freelist_count") == 0:
            self._giving_back = False
            self._truncate_log()

    def _move_payload_rows(self) -> None:
        """Move the big payloads an earlier version kept as rows of ``payloads`` to files (or
        to the job's row, for an id no file can be named after), once, then drop the table.
        A payload in the job's own column was read first, so that one stays. A crash before
        the commit leaves the table as it was, and files no row points to (removed at load)."""
        tables = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'payloads'"
        ).fetchone()
        if tables is None:
            return
        with self._transaction():
            for job_id, kind, text in self._db.execute(
                "SELECT payloads.job_id, payloads.kind, payloads.json FROM payloads"
                " JOIN jobs ON jobs.id = payloads.job_id"
                " WHERE payloads.kind = 'input' AND jobs.input IS NULL"
                " OR payloads.kind = 'output' AND jobs.output IS NULL"
            ).fetchall():
                stored = text
                if _FILE_SAFE_ID.fullmatch(job_id):
                    self._write_payload(job_id, kind, text)
                    stored = _IN_FILE
                self._db.execute(f"UPDATE jobs SET {kind} = ? WHERE id = ?", (stored, job_id))
            self._db.execute("DROP TABLE payloads")

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, rolled back if a statement fails: an autocommit connection left
        inside a transaction would make every later write join it and never be committed."""
        self._db.execute("BEGIN")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def insert(self, job: Job, nonce: tuple[str, float] | None = None) -> int:
        """Store a new job with its input; its ``seq``.

        ``nonce`` (the nonce of a signed request, and until when to remember it) is claimed
        with the job: :class:`NonceUsed` if a job claimed it before, and nothing is stored.
        """
        input_json = job.input_json if job.input_json is not None else "null"
        big = len(input_json) > INLINE_BYTES
        if nonce is None and not big:
            return self._insert_row(job, input_json)
        with self._transaction():  # the row first: a taken id writes no file
            if nonce is not None:
                claimed = self._db.execute(
                    "INSERT OR IGNORE INTO nonces (nonce, expires_at) VALUES (?, ?)", nonce
                )
                if claimed.rowcount != 1:
                    raise NonceUsed(nonce[0])
            seq = self._insert_row(job, _IN_FILE if big else input_json)
            if big:
                self._write_payload(job.id, _INPUT, input_json)
        return seq

    def forget_nonces(self, now: float) -> None:
        """Forget the nonces of signed requests whose deadline has passed (no worker takes
        those requests any more)."""
        self._db.execute("DELETE FROM nonces WHERE expires_at <= ?", (now,))

    def _insert_row(self, job: Job, inline_input: str | None) -> int:
        cur = self._db.execute(
            "INSERT INTO jobs (id, endpoint, status, request, created_at, state, input)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                job.id,
                job.endpoint,
                job.status,
                _request(job),
                job.created_at,
                _state(job),
                inline_input,
            ),
        )
        return int(cur.lastrowid or 0)

    def save(self, job: Job, *, drop_input: bool = False) -> None:
        """Write the job's state, not its output (see ``save_with_output``); ``drop_input``:
        and forget its input (it never runs again)."""
        self._db.execute(_SAVE, _saved(job, drop_input=drop_input))
        self._remove_dropped_input(job.id, drop_input)

    def save_with_output(self, job: Job, *, drop_input: bool = False) -> None:
        """Write the job's state and its output (or that it has none); ``drop_input`` as
        for ``save``."""
        output = job.output_json
        if output is not None and len(output) > INLINE_BYTES:
            with self._transaction():
                values = _saved(job, drop_input=drop_input, output=_IN_FILE)
                self._db.execute(_SAVE_WITH_OUTPUT, values)
                self._write_payload(job.id, _OUTPUT, output)
        else:
            values = _saved(job, drop_input=drop_input, output=output)
            self._db.execute(_SAVE_WITH_OUTPUT, values)
            self._remove_payloads([job.id], (_OUTPUT,))  # none now, or one that fits the row
        self._remove_dropped_input(job.id, drop_input)

    def _remove_dropped_input(self, job_id: str, dropped: bool) -> None:
        # After the row: a crash in between leaves a file no row points to (removed at load).
        if dropped:
            self._remove_payloads([job_id], (_INPUT,))

    def save_states(self, jobs: list[Job]) -> None:
        """``save`` for several jobs, in one transaction."""
        if jobs:
            with self._transaction():
                self._db.executemany(_SAVE, [_saved(job) for job in jobs])

    def save_requeued(self, jobs: list[Job]) -> None:
        """Write the state of jobs sent back to the queue, and that they have no output or
        stream chunks, in one transaction (start-up re-queues every job that was running)."""
        if not jobs:
            return
        with self._transaction():
            self._db.executemany(_SAVE_WITH_OUTPUT, [_saved(job, output=None) for job in jobs])
            self._db.executemany("DELETE FROM chunks WHERE job_id = ?", [(j.id,) for j in jobs])
        self._remove_payloads([job.id for job in jobs], (_OUTPUT,))

    def load_output(self, job_id: str) -> str | None:
        """The stored output's JSON text (None: it has none); ValueError if unreadable."""
        row = self._stored(_OUTPUT, job_id)
        if row is None or row[1] is None:
            return None
        with _unreadable(job_id, _OUTPUT):
            return _checked(self._text(job_id, _OUTPUT, row[1]) or "")

    def load_input(self, job_id: str, *, checked: bool = True) -> str | None:
        """The stored input's JSON text (None: it has none, or it was dropped); a ValueError
        says if it cannot be read. ``checked=False``: not parsed to see that it is JSON."""
        row = self._stored(_INPUT, job_id)
        if row is None:
            return None
        with _unreadable(job_id, _INPUT):
            return _input_json(row[0], self._text(job_id, _INPUT, row[1]), checked=checked)

    def _stored(self, kind: str, job_id: str) -> tuple[str, str | None] | None:
        """The job's request and its ``kind`` text (or its file's mark)."""
        row: tuple[str, str | None] | None = self._db.execute(
            f"SELECT request, {kind} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return row

    def add_chunk(self, job_id: str, n: int, chunk_json: str) -> None:
        """Store chunk ``n`` of the job's stream, as the JSON text it came as."""
        self._db.execute(
            "INSERT OR REPLACE INTO chunks (job_id, n, chunk) VALUES (?, ?, ?)",
            (job_id, n, chunk_json),
        )

    def load_stream(self, job_id: str, start: int = 0) -> tuple[list[str], int]:
        """The JSON texts of the job's stored stream chunks from number ``start`` on, in order
        (a damaged one is left out), and the number after the last one read."""
        rows = self._chunk_rows(job_id, start)
        return _readable_chunks([row[1] for row in rows]), rows[-1][0] + 1 if rows else start

    def load_stream_output(self, job_id: str) -> list[str]:
        """The JSON texts of all the job's stream chunks, which are its output: a ValueError
        if one is damaged or missing (the output is lost)."""
        rows = self._chunk_rows(job_id, 0)
        if not rows or rows[-1][0] != len(rows) - 1:
            raise ValueError(f"stream chunks of job {job_id} are gone")
        with _unreadable(job_id, "stream"):
            return [_checked(text) for _, text in rows]

    def _chunk_rows(self, job_id: str, start: int) -> list[tuple[int, str]]:
        """An OSError if the database cannot be read now: what readers of a file expect."""
        try:
            return self._db.execute(
                "SELECT n, chunk FROM chunks WHERE job_id = ? AND n >= ? ORDER BY n",
                (job_id, start),
            ).fetchall()
        except sqlite3.Error as err:
            raise OSError(f"the stream of job {job_id} could not be read now ({err})") from err

    def delete(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        with self._transaction():
            ids = [(i,) for i in job_ids]
            self._db.executemany("DELETE FROM jobs WHERE id = ?", ids)
            self._db.executemany("DELETE FROM chunks WHERE job_id = ?", ids)
        self._remove_payloads(job_ids, (_INPUT, _OUTPUT))

    def load(self) -> list[Job]:
        """Every stored job in submission order; finished jobs without their input (only a
        retry needs it: ``load_input``); no job with its stream chunks, only whether it has
        any (``stream_in_store``; read when asked for: ``load_stream``).

        A job whose stored record cannot be read is returned FAILED with an error that says
        so, and stored that way: one damaged row does not keep the others from running.
        """
        self._remove_stray_payloads()
        self.forget_nonces(time.time())
        streamed = {row[0] for row in self._db.execute(_STREAMED)}
        jobs = []
        for row in self._db.execute(_LOAD, _FINAL).fetchall():
            try:
                job = _job(row, self._text)
                if not job.final and job.input_json is None:  # read when a worker takes it
                    self._check_file(job.id, _INPUT)
                job.stream_in_store = job.id in streamed
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                job = _unreadable_job(row, err)
                self._rewrite(job)
            jobs.append(job)
        return jobs

    def _rewrite(self, job: Job) -> None:
        """Store all of the job's record again but its input (a retry tries that one)."""
        with self._transaction():
            self._db.execute(
                "UPDATE jobs SET status = ?, request = ?, state = ?, output = NULL WHERE id = ?",
                (job.status, _request(job), _state(job), job.id),
            )
            self._db.execute("DELETE FROM chunks WHERE job_id = ?", (job.id,))
        self._remove_payloads([job.id], (_OUTPUT,))

    # ------------------------------------------------------------------ payload files

    def _payload_path(self, job_id: str, kind: str) -> Path:
        if not _FILE_SAFE_ID.fullmatch(job_id):
            raise ValueError(f"job id {job_id!r} cannot name a file")
        return self.payload_dir / f"{job_id}.{kind}.json"

    def _write_payload(self, job_id: str, kind: str, text: str) -> None:
        """Write a big payload's file whole, or leave the one before it: a file is renamed
        into place, so a crash never leaves half of one."""
        path = self._payload_path(job_id, kind)
        partial = path.with_suffix(".part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8", "surrogatepass"))
        os.replace(partial, path)

    def _check_file(self, job_id: str, kind: str) -> None:
        """A ValueError if the job's ``kind`` file is gone (it is lost)."""
        if not self._payload_path(job_id, kind).exists():
            raise ValueError(f"its {kind} file is gone")

    def _text(self, job_id: str, kind: str, stored: str | None) -> str | None:
        """The payload ``stored`` in a row, or in its file when the row holds _IN_FILE; a
        ValueError if that file is gone (it is lost), an OSError if it cannot be read now
        (out of file handles, say: the job keeps it)."""
        if stored != _IN_FILE:
            return stored
        try:
            return self._payload_path(job_id, kind).read_bytes().decode("utf-8", "surrogatepass")
        except FileNotFoundError:
            raise ValueError(f"its {kind} file is gone") from None

    def _remove_payloads(self, job_ids: list[str], kinds: tuple[str, ...]) -> None:
        for job_id in job_ids:
            for kind in kinds:
                with contextlib.suppress(OSError, ValueError):
                    self._payload_path(job_id, kind).unlink(missing_ok=True)

    def _remove_stray_payloads(self) -> None:
        """Remove the files no row points to: written just before a crash, or left by one."""
        kept = {
            f"{job_id}.{kind}.json"
            for job_id, big_input, big_output in self._db.execute(
                f"SELECT id, input = '{_IN_FILE}', output = '{_IN_FILE}' FROM jobs"
                f" WHERE input = '{_IN_FILE}' OR output = '{_IN_FILE}'"
            )
            for kind, big in ((_INPUT, big_input), (_OUTPUT, big_output))
            if big
        }
        for entry in os.scandir(self.payload_dir):
            if entry.name not in kept:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _owner_only(database: Path, payload_dir: Path) -> None:
    """Make the store readable by its owner only: it holds every job's input and output
    (and signed requests, which anyone who could read them would try to send again).
    SQLite gives its log files the database's mode; stores of earlier versions get
    theirs here too."""
    os.chmod(payload_dir, 0o700)
    os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in (database.name, f"{database.name}-wal", f"{database.name}-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(database.with_name(name), 0o600)


def _job(row: tuple[Any, ...], text: Callable[[str, str, str | None], str | None]) -> Job:
    """The job of a row of _LOAD; ``text(job_id, kind, stored)`` reads a payload's file."""
    seq, job_id, endpoint, status, request, created_at, state, stored_input, output = row[:9]
    req = json.loads(request)
    # A queued job's big input stays in its file until a worker takes the job.
    in_memory = status not in FINAL and stored_input != _IN_FILE
    job = Job(
        id=job_id,
        endpoint=endpoint,
        input_json=_input_json(request, stored_input) if in_memory else None,
        status=status,
        seq=seq,
        webhook=req["webhook"],
        execution_timeout_ms=_capped(req["execution_timeout_ms"]),
        ttl_ms=_capped(req["ttl_ms"]),
        sync=req["sync"],
        idempotency_key=req.get("idempotency_key"),
        low_priority=req.get("low_priority", False) is True,
        created_at=created_at,
    )
    fields = json.loads(state)
    # Databases of earlier versions kept the output inside the state.
    if fields.pop("has_output", False):
        job.output_json = json.dumps(fields.get("output"))
    fields.pop("output", None)
    for name, value in fields.items():
        setattr(job, name, value)
    # A finished job's big output stays in the store until asked for (load_output).
    job.output_in_store = bool(row[9]) and status in FINAL
    if output is not None and not job.output_in_store:
        job.output_json = _checked(text(job_id, _OUTPUT, output) or "")
    return job


def _has_room(folder: Path, needed: int) -> bool:
    """Whether ``folder`` and the temporary folder (SQLite's, by default) have ``needed``
    bytes free."""
    return all(shutil.disk_usage(d).free >= needed for d in (folder, tempfile.gettempdir()))


def _capped(limit_ms: int | None) -> int | None:
    """A stored ttl or timeout within MAX_POLICY_MS (an older version stored any)."""
    return None if limit_ms is None else min(limit_ms, MAX_POLICY_MS)


def _readable_chunks(texts: list[str]) -> list[str]:
    """The stream chunks that can be read; a damaged one is dropped, not the job with it."""
    chunks = []
    for text in texts:
        try:
            chunks.append(_checked(text))
        except ValueError:
            continue
    return chunks


def _unreadable_job(row: tuple[Any, ...], err: Exception) -> Job:
    seq, job_id, endpoint, status, _, created_at = row[:6]
    outcome = "its result is lost" if status in FINAL else "it was not run"
    now = time.time()
    return Job(
        id=job_id,
        endpoint=endpoint,
        input_json=None,
        status=FAILED,
        seq=seq,
        created_at=created_at if isinstance(created_at, (int, float)) else now,
        finished_at=now,
        expires_at=now + RUN_RETENTION_S,
        error=f"the stored record of job {job_id} could not be read"
        f" ({type(err).__name__}: {err}); {outcome}",
    )


def _input_json(request: str, stored_input: str | None, *, checked: bool = True) -> str | None:
    if stored_input is None:  # dropped, or written before inputs had their own column
        fields = json.loads(request)
        return json.dumps(fields["input"]) if "input" in fields else None
    return _checked(stored_input) if checked else stored_input


@contextlib.contextmanager
def _unreadable(job_id: str, kind: str) -> Iterator[None]:
    """A ValueError from reading the job's stored ``kind`` says which job and what."""
    try:
        yield
    except ValueError as err:
        raise ValueError(f"the stored {kind} of job {job_id} could not be read ({err})") from None


def checked_input(job_id: str, text: str) -> str:
    """``text``, read as the job's stored input, if it is JSON; a ValueError that says which
    job's input could not be read if not."""
    with _unreadable(job_id, _INPUT):
        return _checked(text)


def _checked(text: str) -> str:
    """``text`` if it is JSON (a ValueError if not): stored text is sent on as it is."""
    json.loads(text)
    return text


def _request(job: Job) -> str:
    return json.dumps(
        {
            "webhook": job.webhook,
            "execution_timeout_ms": job.execution_timeout_ms,
            "ttl_ms": job.ttl_ms,
            "sync": job.sync,
            "idempotency_key": job.idempotency_key,
            "low_priority": job.low_priority,
        }
    )


def _saved(job: Job, *, drop_input: bool = False, **columns: Any) -> dict[str, Any]:
    """The parameters of _SAVE (or, with ``output``, of _SAVE_WITH_OUTPUT) for ``job``."""
    state = {"status": job.status, "state": _state(job), "id": job.id}
    return {**state, "drop_input": drop_input, **columns}


def _state(job: Job) -> str:
    return json.dumps({name: getattr(job, name) for name in _STATE_FIELDS})
