"""Job queues and the job state machine: submit, take, finish, cancel, time out, requeue.

Runs on the gateway's event loop (single-threaded, no locks). Every transition is written
through to the ``JobStore`` before anyone can observe it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flash.platform import jobs as js
from flash.platform.jobs import Job
from flash.platform.store import INLINE_BYTES, JobStore, checked_input
from flash.runtime import context as _context
from flash.runtime.errors import masked_failure

# How long a job-take or job-stop long-poll is held before answering "nothing".
POLL_HOLD_S = 20.0
# After a stop signal, how long a worker has to drop the job before it is killed.
STOP_GRACE_S = 3.0
# How stale a heartbeat's job list may be.
_PING_LAG_S = 0.5
# A job handed to a worker that this many heartbeats (sent at least this long after the
# hand-over) leave out was never known to it (a take answer it lost): it is queued again.
_UNSEEN_PINGS = 2
_UNSEEN_AFTER_S = 2.0
# How long after a hand-over the jobs' starts are stored (see _assign).
_NOTE_STARTS_AFTER_S = 0.25
# How long a poll of a worker that was asked to stop waits before it is answered (no job).
_DRAINING_POLL_S = 1.0

# Finished jobs' outputs (with their stream chunks) of this size or more count against a
# memory budget: beyond it, the oldest are read from the store when asked for, so results
# kept for 30 minutes do not fill memory.
_BIG_OUTPUT = 64 * 1024
OUTPUT_MEMORY_BYTES = 256 * 1024 * 1024
# RunPod's documented defaults, for a job whose policy (and endpoint) sets none: it runs for
# at most 10 minutes, and one not finished 24 hours after submission (or a retry) times out.
EXECUTION_TIMEOUT_MS = 10 * 60 * 1000
TTL_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class StreamRead:
    """Chunks handed to one /stream reader."""

    chunks: list[str]  # their JSON texts
    end: int  # the stream position after them
    run: float | None  # the job's ``retried_at`` then: a retry since starts a new stream


# Tries at reading a queued job's stored input before an OSError fails the job.
_INPUT_READS = 3


def _handed(job: Job, worker_id: str) -> bool:
    """Whether the job handed to the worker is still its own (it may have ended since)."""
    return job.status == js.IN_PROGRESS and job.worker_id == worker_id


def _stream_position(job: Job) -> int:
    """Where the next /stream read starts: past the chunks delivered or handed out."""
    return max(job.stream_sent, job.stream_claimed)


@dataclass
class _Taker:
    worker_id: str
    size: int
    future: asyncio.Future[list[Job]]


@dataclass
class _Handed:
    """A job handed to a worker: when its take was answered, and how many heartbeats since
    left it out."""

    at: float
    missed: int = 0


@dataclass
class _WorkerState:
    endpoint: str
    assigned: set[str] = field(default_factory=set)
    takers: list[_Taker] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    stop_waiter: asyncio.Future[None] | None = None
    # Jobs told to stop that the worker has not yet shown it dropped, with when.
    stopping: dict[str, float] = field(default_factory=dict)
    draining: bool = False
    polled: bool = False
    # Stopped jobs a heartbeat showed still running.
    stuck: set[str] = field(default_factory=set)
    # Its heartbeats come from the loop that takes its jobs (Flash's worker loop): while
    # they come, that loop runs.
    lists_taken: bool = False
    # Drained for a stopped job it still runs (see _check_stopped): killed once its other
    # jobs have ended.
    retiring: bool = False
    idle_since: float = field(default_factory=time.monotonic)
    # Its last heartbeat (or its start): see Supervisor's frozen-worker check.
    pinged_at: float = field(default_factory=time.monotonic)
    # Jobs handed to it that no heartbeat has listed yet.
    handed: dict[str, _Handed] = field(default_factory=dict)


def _noop(*_: Any) -> None:
    return None


def _unmasked(text: str) -> str:
    return text


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        *,
        output_memory_bytes: int = OUTPUT_MEMORY_BYTES,
        execution_timeout_ms: int = EXECUTION_TIMEOUT_MS,
        ttl_ms: int = TTL_MS,
    ) -> None:
        self.store = store
        # What a job gets when neither its policy nor its endpoint sets a limit.
        self.default_execution_timeout_ms = execution_timeout_ms
        self.default_ttl_ms = ttl_ms
        # Finished jobs' big outputs and streams kept in memory, oldest first: id -> size.
        self.output_memory_bytes = output_memory_bytes
        self._outputs_in_memory: OrderedDict[str, int] = OrderedDict()
        self._output_bytes = 0
        self.jobs: dict[str, Job] = {}
        self.queues: dict[str, deque[str]] = {}
        # The queued jobs that may start a worker (not low-priority ones), oldest first, for
        # the scaler's oldest_wait: ids of jobs no longer queued are dropped as met.
        self._urgent: dict[str, deque[str]] = {}
        self.takers: dict[str, deque[_Taker]] = {}
        self.workers: dict[str, _WorkerState] = {}
        self.exec_timeout_ms: dict[str, int | None] = {}
        # Endpoints no longer served, with why their jobs fail (see remove_endpoint).
        self.removed: dict[str, str] = {}
        self.queued: Counter[str] = Counter()
        self.queued_low_priority: Counter[str] = Counter()  # of those queued
        self.running: Counter[str] = Counter()
        self.completed: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()
        # (endpoint, caller's idempotency key) -> job id, for as long as the job is kept.
        self._idempotent: dict[tuple[str, str], str] = {}
        self._final_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._stream_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._ttl_timers: dict[str, asyncio.TimerHandle] = {}
        # Set when the platform begins to stop (end_waits): nothing is held any more.
        self.stopping = False
        # Jobs handed to workers whose start is not yet stored (see _note_started).
        self._started: list[Job] = []
        # Hooks the supervisor and the platform fill in. before_submit runs before a new job
        # is queued, when an idle worker could take it at once (the supervisor looks at the
        # key file then: a worker with an old key must not get a job signed with the new one).
        self.before_submit: Callable[[], None] = _noop
        self.on_submit: Callable[[str], None] = _noop
        self.on_final: Callable[[Job], None] = _noop
        self.on_first_poll: Callable[[str], None] = _noop
        self.on_stop_pod: Callable[[str], None] = _noop
        # A drained worker's last job has ended: it should exit now (see Supervisor._drained).
        self.on_drained: Callable[[str], None] = _noop
        self.kill_worker: Callable[[str, str], None] = _noop
        # Drain a worker (it takes no new jobs, and may be replaced) that still runs a job
        # it was told to stop beside others, with why: the dispatcher kills it once those
        # have ended (_check_stopped).
        self.retire_worker: Callable[[str, str], None] = _noop
        # Masks the secrets the platform gives workers in a text (the supervisor's rule, as
        # for what workers print). A worker masks them in its failures itself: this is for
        # one that does not (a runtime of its own, an older one), before the job's error and
        # output are stored or shown.
        self.mask: Callable[[str], str] = _unmasked

    # ------------------------------------------------------------------ setup

    def add_endpoint(self, name: str, execution_timeout_ms: int | None) -> None:
        self.queues.setdefault(name, deque())
        self.takers.setdefault(name, deque())
        self.exec_timeout_ms[name] = execution_timeout_ms
        self.removed.pop(name, None)

    def remove_endpoint(self, name: str, reason: str) -> None:
        """Serve ``name`` no more: its queued jobs fail with ``reason``, and so does any job
        queued there later (one a draining worker of it gives back), as no worker will come."""
        self.removed[name] = reason
        self.fail_queued(name, reason)

    def restore(self) -> int:
        """Load stored jobs; jobs that were running when the platform stopped are requeued."""
        now = time.time()
        expired, requeued = [], []
        for job in self.store.load():
            if job.idempotency_key is not None:
                self._idempotent[(job.endpoint, job.idempotency_key)] = job.id
            if job.final and job.expires_at is not None and job.expires_at <= now:
                expired.append(job.id)
                continue
            if job.retried_at is not None:  # /health counts it as retry() did
                self.retried[job.endpoint] += 1
            if job.final:
                self.jobs[job.id] = job
                self._count_final(job)  # /health counts the jobs kept, as before the stop
                continue
            # IN_PROGRESS is not written through (see _assign): a job with chunks had started
            # too. Either way its attempt died with the platform and runs again from scratch
            # (save_requeued drops its output and chunks).
            if job.status == js.IN_PROGRESS or job.stream_in_store:
                if job.started_at is not None:  # as in worker_exited: the lost run is no delay
                    job.queued_at = now - (job.started_at - job.queued_since)
                self._reset_attempt(job)
                requeued.append(job)
            job.status = js.IN_QUEUE
            self.jobs[job.id] = job
            self.queues.setdefault(job.endpoint, deque())
            self.takers.setdefault(job.endpoint, deque())
            self._count_queued(job, 1)
            self._arm_ttl(job)
            self._enqueue(job)
        self.store.delete(expired)
        self.store.save_requeued(requeued)
        orphans = self._end_orphans()
        self.store.give_back_space()  # what those freed, and what was left to give back
        return len([job for job in requeued if job.id not in orphans])

    def _end_orphans(self) -> set[str]:
        """Fail each unfinished job called by a job that is unfinished too (its input's
        context names that one, see flash.runtime.context): the caller runs again, and makes
        its calls anew; this one's answer has nobody left to read it. The ids of those."""
        unfinished = {job.id: job for job in self.jobs.values() if not job.final}
        orphans: dict[str, str] = {}
        for job in unfinished.values():
            # A big input (a file of the store) is not read for this: such a job runs again.
            parent = self._call_context(job).parent
            if parent is not None and parent in unfinished:
                orphans[job.id] = parent
        for job_id, parent in orphans.items():
            self._finish(
                unfinished[job_id],
                js.FAILED,
                error=f"not run again: the job that called it ({parent}) stopped with the "
                "platform and runs again, making its calls anew",
            )
        return set(orphans)

    @staticmethod
    def _call_context(job: Job) -> _context.CallContext:
        """The call context in the job's input held in memory (flash.runtime.context); an
        empty one for a job with none there (a big input is a file of the store: not read
        for this), or whose input is not JSON."""
        try:
            payload = json.loads(job.input_json) if job.input_json is not None else None
        except ValueError:
            payload = None
        return _context.from_wire(payload.get("context") if isinstance(payload, dict) else None)

    # ------------------------------------------------------------------ client side

    def submit(
        self,
        endpoint: str,
        input_json: str,
        *,
        webhook: str | None = None,
        execution_timeout_ms: int | None = None,
        ttl_ms: int | None = None,
        sync: bool = False,
        idempotency_key: str | None = None,
        low_priority: bool = False,
        nonce: tuple[str, float] | None = None,
    ) -> Job:
        """Queue a job with the input's JSON text; a key seen before on this endpoint returns
        that earlier job instead. A signed request's ``nonce`` (and until when it counts)
        is taken once across restarts and workers: NonceUsed if it was before."""
        if idempotency_key is not None:
            earlier = self.get(endpoint, self._idempotent.get((endpoint, idempotency_key), ""))
            if earlier is not None:  # not one whose result expired (the prune is to come)
                return earlier
        self.before_submit()
        job = Job(
            id=f"{uuid.uuid4()}-u1",
            endpoint=endpoint,
            input_json=input_json,
            webhook=webhook,
            execution_timeout_ms=execution_timeout_ms,
            ttl_ms=ttl_ms,
            sync=sync,
            idempotency_key=idempotency_key,
            low_priority=low_priority,
            created_at=time.time(),
        )
        job.seq = self.store.insert(job, nonce)
        self.jobs[job.id] = job
        if idempotency_key is not None:
            self._idempotent[(endpoint, idempotency_key)] = job.id
        self._count_queued(job, 1)
        self._arm_ttl(job)
        self._enqueue(job)
        self.on_submit(endpoint)
        return job

    def get(self, endpoint: str, job_id: str) -> Job | None:
        """The job, unless its result expired (the next prune removes it)."""
        job = self.jobs.get(job_id)
        if job is None or job.endpoint != endpoint:
            return None
        if job.expires_at is not None and job.expires_at <= time.time():
            return None
        return job

    def keep_result_for(self, job: Job, ttl_ms: int) -> None:
        """``/status?ttl=``: keep the job's result at most ``ttl_ms`` from now (a job still
        running: from its end), never longer than it would be kept anyway. Stored, so a
        restart keeps to it."""
        if job.final:
            soon = time.time() + ttl_ms / 1000
            if job.expires_at is not None and job.expires_at <= soon:
                return  # kept no longer than that anyway: nothing to store
            job.expires_at = soon
        else:
            if job.retention_ms is not None and job.retention_ms <= ttl_ms:
                return
            job.retention_ms = ttl_ms
        self.store.save(job)

    def end_waits(self) -> None:
        """The platform stops (its workers are gone): answer every held request now, a
        /runsync as when its wait runs out (with the job's id to read the result by after
        a restart: kept as long as a /run's, as its caller must now poll), and hold none
        from now on. Held until the server's stop, they would be cancelled into bare 500s."""
        self.stopping = True
        for job_id in list(self._final_waiters):
            job = self.jobs.get(job_id)
            if job is not None and job.sync and not job.final:
                job.sync = False
                self.store.save(job)
            self._wake(self._final_waiters, job_id)
        for job_id in list(self._stream_waiters):
            self._wake(self._stream_waiters, job_id)
        for state in self.workers.values():
            self._answer_polls(state)

    async def wait_final(self, job: Job, timeout: float) -> bool:
        if not job.final and timeout > 0 and not self.stopping:
            await self._wait(self._final_waiters, job.id, timeout)
        return job.final

    def has_unread(self, job: Job) -> bool:
        """Whether /stream answers at once: a chunk is not yet handed out, or the job ended."""
        return job.final or _stream_position(job) < len(job.stream)

    async def wait_stream(self, job: Job, timeout: float) -> None:
        """Wait up to ``timeout`` for a chunk not yet handed out, unless ``has_unread``."""
        if not self.has_unread(job) and timeout > 0 and not self.stopping:
            await self._wait(self._stream_waiters, job.id, timeout)

    def claim_stream(self, job: Job) -> StreamRead:
        """The chunks not yet handed out, now handed to this reader (no other gets them);
        ``mark_streamed`` once its answer was sent."""
        start = _stream_position(job)
        if job.stream_in_store:  # only the chunks not yet handed out are read
            chunks, end = self.store.load_stream(job.id, start)
        else:
            chunks, end = job.stream[start:], len(job.stream)
        job.stream_claimed = end
        return StreamRead(chunks, end, job.retried_at)

    def mark_streamed(self, job: Job, read: StreamRead) -> None:
        """The chunks of ``read`` were delivered: /stream goes on after them, also after a
        restart. A read of a run before a retry says nothing about the new run's chunks."""
        if read.run == job.retried_at and read.end > job.stream_sent:
            job.stream_sent = read.end
            # A restart must not hand these out again: a running job runs again from its
            # start, and /stream goes on past the chunks its readers have.
            self.store.save(job)

    def cancel(self, job: Job) -> Job:
        if not job.final:
            self._finish(job, js.CANCELLED, error=None)
        return job

    def retry(self, job: Job) -> Job:
        if job.status not in js.RETRYABLE:
            raise ValueError(
                f"job {job.id} is {job.status}; only FAILED or TIMED_OUT jobs can be retried"
            )
        if job.input_json is None:
            # Read (and parsed) now: a retry that could not run is refused, not accepted.
            try:
                job.input_json = self._stored_input(job.id)
            except ValueError as err:
                raise ValueError(f"{err}; it cannot be retried") from None
        ended = copy.copy(job)  # the job again if the store cannot take its new run
        self._reset_attempt(job)
        job.stream_sent = job.stream_claimed = 0  # a new run: its stream is read anew
        job.queued_at = job.retried_at = time.time()  # a new run: delay and ttl count from now
        job.finished_at = job.expires_at = job.retention_ms = None  # a new run's, all of them
        job.output_json, job.error = None, None
        job.output_in_store = False
        job.crashes = 0
        job.webhook_pending, job.webhook_attempts = False, 0  # the new run's end owes its own
        job.status = js.IN_QUEUE
        try:
            self.store.save_requeued([job])  # no output, no chunks
        except BaseException:
            vars(job).update(vars(ended))
            raise
        self._forget_output(job.id)
        # /health counts each job once: by its new run's status from now, and as retried
        # however often it is (a count that a restart rebuilds from retried_at).
        self._count_final(ended, -1)
        if ended.retried_at is None:
            self.retried[job.endpoint] += 1
        with contextlib.suppress(ValueError):  # its id, still queued if it ended there
            self.queues[job.endpoint].remove(job.id)
        self._count_queued(job, 1)
        self._arm_ttl(job)
        self._enqueue(job)
        self.on_submit(job.endpoint)
        return job

    def purge(self, endpoint: str) -> int:
        # Cancelled as /cancel does, with no error: RunPod's cancelled jobs carry none, and a
        # client that reads any ``error`` as a failure would misread a purged job.
        return self._end_queued(endpoint, js.CANCELLED, None)

    def fail_queued(self, endpoint: str, error: str) -> int:
        return self._end_queued(endpoint, js.FAILED, error)

    def _end_queued(self, endpoint: str, status: str, error: str | None) -> int:
        """End every job waiting in the endpoint's queue with ``status``; how many."""
        ended = list(self._waiting(endpoint))
        self.queues.get(endpoint, deque()).clear()
        self._urgent.get(endpoint, deque()).clear()
        for job in ended:
            self._finish(job, status, error=error)
        return len(ended)

    def oldest_wait(self, endpoint: str, now: float) -> float:
        """How long the oldest queued job that may start a worker (not a low-priority one)
        has waited."""
        job = self._oldest_urgent(endpoint)
        return 0.0 if job is None else now - job.queued_since

    def oldest_call_chain(self, endpoint: str) -> tuple[Job, tuple[str, ...]] | None:
        """The oldest queued job that may start a worker, and the functions whose calls led
        to it (its input's call context, ending in its own function; none read for a big
        input, kept in a file); None when none waits. Parses the job's input: for an
        occasional look, not every tick."""
        job = self._oldest_urgent(endpoint)
        if job is None:
            return None
        return job, self._call_context(job).chain

    def _oldest_urgent(self, endpoint: str) -> Job | None:
        """The oldest queued job that may start a worker; the ids of jobs taken or ended
        before it are dropped, so the deque holds little more than the queue."""
        urgent = self._urgent.get(endpoint)
        while urgent:
            job = self.jobs.get(urgent[0])
            if job is not None and job.status == js.IN_QUEUE:
                return job
            urgent.popleft()
        return None

    def _enqueue(self, job: Job, *, first: bool = False) -> None:
        """Hand the queued job to a waiting worker, else put it in its endpoint's queue
        (``first``: at the front, as a job that was already running); fail it if its
        endpoint was removed."""
        reason = self.removed.get(job.endpoint)
        if reason is not None:
            self._finish(job, js.FAILED, error=reason)
            return
        # Handed on only when no job waits before it (behind a suspect at the front); the
        # count includes this job.
        if (first or self.queued[job.endpoint] <= 1) and self._hand_to_taker(job):
            return
        queue = self.queues[job.endpoint]
        if job.input_json is not None and len(job.input_json) > INLINE_BYTES:
            job.input_json = None  # a file of the store: read back when a worker takes the job
        if first:
            queue.appendleft(job.id)
        else:
            queue.append(job.id)
        if not job.low_priority:
            # Trimmed here too: a scaler that never asks oldest_wait must not let it grow.
            self._oldest_urgent(job.endpoint)
            # At the back even when first: oldest_wait reads the front, and a job a crashed
            # worker gave back has waited less than those queued before it was requeued.
            self._urgent.setdefault(job.endpoint, deque()).append(job.id)

    def _count_queued(self, job: Job, change: int) -> None:
        self.queued[job.endpoint] += change
        if job.low_priority:
            self.queued_low_priority[job.endpoint] += change

    def _waiting(self, endpoint: str) -> Iterator[Job]:
        """The endpoint's queued jobs, oldest first. A queue keeps the ids of jobs that ended
        while waiting (cancelled, timed out, pruned since): they are skipped here, and
        dropped when taken (_pop_queued)."""
        for job_id in self.queues.get(endpoint, ()):
            job = self.jobs.get(job_id)
            if job is not None and job.status == js.IN_QUEUE:
                yield job

    def status_json(self, job: Job) -> str:
        """What ``GET /status`` answers for ``job``; a big finished output is read from the
        store when it is no longer in memory."""
        if job.output_is_stream or job.output_in_store:
            try:
                return job.body_json(self._stored_output(job))
            except ValueError as err:
                # Its stored output is damaged or gone. (An OSError, a file unreadable for
                # now, is the caller's 500: the job keeps its file.)
                self._lose_output(job, err)
        return job.body_json()

    def _stored_output(self, job: Job) -> str | None:
        """The output of a job that is not in memory: its file's or row's, or for a job
        whose output is its stream, its chunks' texts spliced (every one, or it is lost)."""
        if not job.output_is_stream:
            return self.store.load_output(job.id)
        chunks = self.store.load_stream_output(job.id) if job.stream_in_store else job.stream
        return f"[{', '.join(chunks)}]"

    def _lose_output(self, job: Job, err: ValueError) -> None:
        """Fail a finished job whose stored output is damaged or gone, and store it so."""
        self._count_final(job, -1)
        job.status, job.error = js.FAILED, f"{err}; its result is lost"
        self._count_final(job)
        job.output_in_store = job.output_is_stream = False
        self.store.save_with_output(job)  # the next start agrees

    def prune(self, now: float) -> int:
        expired = [
            j.id for j in self.jobs.values() if j.expires_at is not None and j.expires_at <= now
        ]
        for job_id in expired:
            self._forget_output(job_id)
            job = self.jobs.pop(job_id)
            if job.idempotency_key is not None:
                self._idempotent.pop((job.endpoint, job.idempotency_key), None)
        self.store.delete(expired)
        # Also the space of chunks and inputs dropped since: a step each prune.
        self.store.give_back_space()
        self.store.forget_nonces(now)
        return len(expired)

    # ------------------------------------------------------------------ worker side

    def register_worker(self, worker_id: str, endpoint: str) -> None:
        self.workers[worker_id] = _WorkerState(endpoint=endpoint)

    async def take(self, worker_id: str, size: int, in_progress: bool) -> list[Job]:
        state = self.workers[worker_id]
        if not state.polled:
            state.polled = True
            self.on_first_poll(worker_id)
        if not in_progress:
            # Nothing runs on it any more: every job it was told to stop is gone.
            if state.stopping and not state.assigned:
                state.idle_since = time.monotonic()  # idle from now, not from the stop
            state.stopping.clear()
            state.stuck.clear()
        if state.draining or self.stopping:
            # Asked to stop, it polls again: it ignores SIGTERM for now. Answered at once,
            # it would poll in a tight loop until it is killed.
            await asyncio.sleep(_DRAINING_POLL_S)
            return []
        taken = self._pop_queued(state, size)
        if taken:
            for job in taken:
                self._assign(job, worker_id)
            if taken[-1].crashes:  # a suspect left the front: the workers it held up may take
                self._serve_takers(state.endpoint)
            return await self._with_inputs(worker_id, taken)
        fut: asyncio.Future[list[Job]] = asyncio.get_running_loop().create_future()
        taker = _Taker(worker_id, size, fut)
        self.takers[state.endpoint].append(taker)
        state.takers.append(taker)
        try:
            await asyncio.wait([fut], timeout=POLL_HOLD_S)
        except BaseException:  # the poll was given up (a shutdown): nobody runs its jobs
            if fut.done():
                self._give_back(worker_id, fut.result())
            raise
        finally:
            if not fut.done():
                # Still waiting (or the poll was cancelled): withdraw synchronously, so no
                # job can be handed to it any more.
                self._drop_taker(taker)
        return await self._with_inputs(worker_id, fut.result()) if fut.done() else []

    async def _with_inputs(self, worker_id: str, taken: list[Job]) -> list[Job]:
        """The jobs handed to the worker that are still its own, with the inputs that waited
        in the store read back (see ``_read_input``)."""
        ready = []
        try:
            for job in taken:
                if job.input_json is None and _handed(job, worker_id):
                    await self._read_input(job, worker_id)
                # Between the hand-over and this poll's answer it may have ended (a /cancel,
                # a ttl, a purge): it is not the worker's any more, and not to be ended again.
                if _handed(job, worker_id):
                    ready.append(job)
        except BaseException:  # the poll was given up, or failed: nobody runs them
            self._give_back(worker_id, taken)
            raise
        state = self.workers.get(worker_id)
        if state is not None:  # answered now: from here on its heartbeats should list them
            for job in ready:
                state.handed[job.id] = _Handed(time.monotonic())
        return ready

    def _give_back(self, worker_id: str, taken: list[Job]) -> None:
        """Put the jobs a poll took, and will not answer with, back at the front of the
        queue: the last first, so they keep their order."""
        for job in reversed(taken):
            if _handed(job, worker_id):
                self._unassign(job, worker_id)

    async def _read_input(self, job: Job, worker_id: str) -> None:
        """Read back the input of a job handed to the worker, parsed in a thread so that a
        big one does not hold up the others. One that cannot be read now (an OSError) goes
        back to the queue; one that is damaged or gone fails the job."""
        try:
            text = self._stored_input(job.id, checked=False)
            await asyncio.to_thread(checked_input, job.id, text)
        except OSError as err:
            job.input_misses += 1
            if job.input_misses < _INPUT_READS:
                self._unassign(job, worker_id)
            elif _handed(job, worker_id):  # not a passing error: EACCES, EISDIR
                self._finish(job, js.FAILED, error=f"its stored input cannot be read: {err}")
        except ValueError as err:
            if _handed(job, worker_id):
                self._finish(job, js.FAILED, error=f"{err}; it was not run")
        else:
            if _handed(job, worker_id):  # not one that ended while it was parsed
                job.input_json = text

    def _stored_input(self, job_id: str, *, checked: bool = True) -> str:
        """The job's stored input (see JobStore.load_input); a ValueError if it has none."""
        stored = self.store.load_input(job_id, checked=checked)
        if stored is None:
            raise ValueError(f"job {job_id} has no stored input any more")
        return stored

    def _unassign(self, job: Job, worker_id: str) -> None:
        """Undo ``_assign``: the job waits at the front of the queue again."""
        self._cancel_timer(job.id)
        self.running[job.endpoint] -= 1
        state = self.workers.get(worker_id)
        if state is not None:
            state.assigned.discard(job.id)
            if not state.assigned:
                state.idle_since = time.monotonic()
                self._retire_if_done(worker_id, state)
        job.attempts -= 1
        job.worker_id = job.started_at = None
        job.status = js.IN_QUEUE
        if not any(started is job for started in self._started):
            self.store.save(job)  # its start was stored (_note_started): not any more
        self._count_queued(job, 1)
        self._enqueue(job, first=True)

    async def stop_signals(self, worker_id: str) -> list[str]:
        state = self.workers[worker_id]
        if not state.stops and not state.draining and not self.stopping:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            state.stop_waiter = fut
            await asyncio.wait([fut], timeout=POLL_HOLD_S)
            if state.stop_waiter is fut:
                state.stop_waiter = None
        stops, state.stops = state.stops, []
        return stops

    def ping(self, worker_id: str, job_ids: list[str] | None, *, lists_taken: bool = False) -> None:
        """A heartbeat lists the jobs the worker still runs: evidence for stopped jobs.
        ``lists_taken``: the heartbeat comes from the loop that takes the jobs (Flash's
        worker loop), so a job it leaves out long enough was never taken (see below); the
        runpod SDK's heartbeat comes from elsewhere, and a held loop may still take it."""
        state = self.workers[worker_id]
        now = time.monotonic()
        state.pinged_at = now
        state.lists_taken = lists_taken
        running = set(job_ids or ())
        for job_id, since in list(state.stopping.items()):
            if job_id in running:
                state.stuck.add(job_id)
            elif now - since > _PING_LAG_S:
                # Sent after the stop reached it (allowing for the snapshot to lag).
                del state.stopping[job_id]
                if not self._busy(state):
                    state.idle_since = now
                self._serve_takers(state.endpoint)  # it may run a suspect now
        if not lists_taken:
            state.handed.clear()
        for job_id, handed in list(state.handed.items()):
            if job_id in running or job_id not in state.assigned:
                # Known to it (a later heartbeat without it: its result is on its way), or
                # no longer its job.
                del state.handed[job_id]
            elif now - handed.at > _PING_LAG_S:
                handed.missed += 1
                if handed.missed >= _UNSEEN_PINGS and now - handed.at >= _UNSEEN_AFTER_S:
                    # Never known to it: it did not run, so no attempt (and no crash) counts.
                    del state.handed[job_id]
                    self._unassign(self.jobs[job_id], worker_id)

    def done(
        self,
        worker_id: str,
        job_id: str,
        body: dict[str, Any],
        is_stream: bool,
        output_json: str | None,
    ) -> bool:
        """Record a worker's result (``output_json``: the text of its output, None if it has
        none); False if the job is no longer this worker's to report."""
        job = self._reported(worker_id, job_id)
        if job is None:
            return False
        if body.get("stopPod"):
            # Drained before the job ends, so its freed slot takes no new job; killed a grace
            # after its last job ends, this one or others (on_drained).
            self.on_stop_pod(worker_id)
        if body.get("status") == js.IN_PROGRESS:
            job.output_json = output_json
            self.store.save_with_output(job)
            return True
        error = body.get("error")
        if error:
            masked = masked_failure(error, self.mask) if self.mask is not _unmasked else error
            self._finish(job, js.FAILED, error=masked, output_json=self._masked(output_json))
            return True
        if is_stream and not body.get("output") and job.stream:
            # Its output is its chunks, read from them when asked for: not stored twice.
            job.output_is_stream, output_json = True, None
        self._finish(job, js.COMPLETED, error=None, output_json=output_json)
        return True

    def _masked(self, output_json: str | None) -> str | None:
        """A failed job's output (JSON text) with the secrets of ``mask`` masked in it (see
        masked_failure: a pickled exception holding one is left out)."""
        if output_json is None or self.mask is _unmasked:
            return output_json
        try:
            output = json.loads(output_json)
        except ValueError:  # the gateway takes only JSON: not expected
            return self.mask(output_json)
        masked = masked_failure(output, self.mask)
        return output_json if masked == output else json.dumps(masked)

    def refuse(self, worker_id: str, job_id: str, reason: str) -> None:
        """A result report (or stream item) of the worker's could not be read: the job fails
        with ``reason`` (if it is still this worker's), as it will never be reported again."""
        job = self._reported(worker_id, job_id)
        if job is None:
            return
        self._finish(job, js.FAILED, error=f"the worker's result was refused: {reason}")

    def chunk(self, worker_id: str, job_id: str, output_json: str) -> bool:
        """Record a stream item, the JSON text of its output."""
        job = self._reported(worker_id, job_id)
        if job is None:
            return False
        self.store.add_chunk(job.id, len(job.stream), output_json)
        job.stream_bytes += len(output_json)
        job.stream.append(output_json)
        self._wake(self._stream_waiters, job.id)
        return True

    def _reported(self, worker_id: str, job_id: str) -> Job | None:
        """The job, if it is running on that worker: only then may the worker report it."""
        job = self.jobs.get(job_id)
        if job is None or job.status != js.IN_PROGRESS or job.worker_id != worker_id:
            return None
        return job

    def drain(self, worker_id: str) -> None:
        """Take no new jobs to this worker and answer its pending polls at once."""
        state = self.workers.get(worker_id)
        if state is None:
            return
        state.draining = True
        self._answer_polls(state)

    def log_line(self, worker_id: str, line: str) -> None:
        """Keep a worker's output line with the job(s) it was running."""
        state = self.workers.get(worker_id)
        if state is not None:
            for job_id in state.assigned:
                self.jobs[job_id].logs.append(line)

    def worker_exited(
        self, worker_id: str, reason: str, blame: bool, stderr_tail: list[str] | None = None
    ) -> list[str]:
        """Requeue what the worker held; a job that already lost a worker this way fails.
        Returns what became of each job, for the log.

        The failure names the exit and shows what the job printed, or else the worker's
        last stderr lines.
        """
        state = self.workers.pop(worker_id, None)
        if state is None:
            return []
        self._answer_polls(state)
        outcomes = []
        # Which of several jobs killed the worker is not known: each becomes a suspect and
        # runs alone from now on (_pop_queued), so only a job that crashes a worker on its
        # own fails, not the bystanders of one that does.
        alone = len(state.assigned) == 1 and not state.stopping
        for job_id in sorted(state.assigned, key=lambda i: self.jobs[i].seq, reverse=True):
            job = self.jobs[job_id]
            if blame:
                job.crashes += 1
            if blame and alone and job.crashes >= 2:
                if job.logs:
                    detail = "; its output while running this job:\n" + "\n".join(job.logs)
                elif stderr_tail:
                    detail = "; last stderr lines:\n" + "\n".join(stderr_tail)
                else:
                    detail = ""
                self._finish(job, js.FAILED, error=f"worker {worker_id} {reason}{detail}")
                outcomes.append(f"job {job_id} failed")
                continue
            outcomes.append(f"job {job_id} runs again")
            job.logs.clear()
            self._cancel_timer(job.id)
            self.running[job.endpoint] -= 1
            if job.started_at is not None:  # the dead attempt's run time is no queue time
                job.queued_at = time.time() - (job.started_at - job.queued_since)
            # The caller never hears of this attempt: its /stream goes on from the chunks it
            # has, which the next attempt yields again.
            self._reset_attempt(job)
            job.status = js.IN_QUEUE
            self.store.save_requeued([job])
            self._count_queued(job, 1)
            self._enqueue(job, first=True)
            self.on_submit(job.endpoint)
        self._serve_takers(state.endpoint)
        return outcomes

    def silent_for(self, worker_id: str, now: float) -> float:
        """How long the worker has sent no heartbeat (since it started, if none yet)."""
        state = self.workers.get(worker_id)
        return 0.0 if state is None else now - state.pinged_at

    def active_jobs(self, worker_id: str) -> int:
        """Jobs the worker runs, counting those it was told to stop and may still run (a
        sync function's thread cannot be stopped; a worker that keeps one past the grace
        time is killed): it is not idle, for /health and for the scaler."""
        state = self.workers.get(worker_id)
        if state is None:
            return 0
        # No id is in both (a job goes to no worker still stopping an earlier attempt of
        # it: _still_runs), but counted once if it were.
        return len(state.assigned.union(state.stopping)) if state.stopping else len(state.assigned)

    def time_left_s(self, worker_id: str) -> float:
        """How long the jobs the worker runs may still run, each by the execution limit it
        started with (then it times out); 0 when it runs none."""
        state = self.workers.get(worker_id)
        if state is None:
            return 0.0
        now = asyncio.get_running_loop().time()
        timers = (self._timers.get(job_id) for job_id in state.assigned)
        return max((t.when() - now for t in timers if t is not None), default=0.0)

    # ------------------------------------------------------------------ internals

    def _pop_queued(self, state: _WorkerState, size: int) -> list[Job]:
        """Up to ``size`` jobs from the front of the queue for the worker. A suspect (a job
        that was running when a worker crashed) goes only to a worker with no other job,
        and alone; while it waits at the front, busy workers take nothing, so it is not
        passed over for good. A job the worker may still run an earlier attempt of is
        passed over (see ``_still_runs``)."""
        queue = self.queues.get(state.endpoint)
        taken: list[Job] = []
        if self._runs_suspect(state):
            return taken
        passed: list[str] = []
        while queue and len(taken) < size:
            job = self.jobs.get(queue[0])
            if job is None or job.status != js.IN_QUEUE:
                queue.popleft()
                continue
            if self._still_runs(state, job):
                passed.append(queue.popleft())
                continue
            if job.crashes and (taken or self._busy(state)):
                break
            taken.append(self.jobs[queue.popleft()])
            if job.crashes:
                break
        if queue is not None:  # those passed over where they were, in their order
            queue.extendleft(reversed(passed))
        return taken

    @staticmethod
    def _still_runs(state: _WorkerState, job: Job) -> bool:
        """Whether the worker may still run an earlier attempt of the job, told to stop (a
        sync function's thread cannot be stopped): a worker knows a job by its id alone, as
        RunPod's protocol has it, so the job goes to it only once it has shown that attempt
        gone (ping, take), or to another worker."""
        return job.id in state.stopping

    @staticmethod
    def _busy(state: _WorkerState) -> bool:
        """Whether the worker runs a job: one assigned, or one told to stop that it may still
        be running."""
        return bool(state.assigned or state.stopping)

    def _runs_suspect(self, state: _WorkerState) -> bool:
        running = (self.jobs.get(job_id) for job_id in (*state.assigned, *state.stopping))
        return any(job is not None and job.crashes for job in running)

    def _hand_to_taker(self, job: Job) -> bool:
        """Give a job just queued to the first waiting worker that may run it (a suspect
        only to one that runs nothing)."""
        takers = self.takers.get(job.endpoint)
        if not takers:
            return False
        for taker in list(takers):
            state = self.workers.get(taker.worker_id)
            if state is None:  # its worker is gone
                takers.remove(taker)
                continue
            if taker.future.done():  # answered already
                self._drop_taker(taker, state)
                continue
            if self._runs_suspect(state) or (job.crashes and self._busy(state)):
                continue
            if self._still_runs(state, job):
                continue
            self._drop_taker(taker, state)
            self._assign(job, taker.worker_id)
            taker.future.set_result([job])
            return True
        return False

    def _serve_takers(self, endpoint: str) -> None:
        """Give queued jobs to waiting workers that may now run them: one whose suspect
        ended, or any, once a suspect at the front was taken or ended. Rounds until one
        hands out nothing: a worker passed over may take once a later one took a suspect."""
        takers, queue = self.takers.get(endpoint), self.queues.get(endpoint)
        served = True
        while served and takers and queue:
            served = False
            for taker in list(takers):
                state = self.workers.get(taker.worker_id)
                if state is None or taker.future.done():
                    continue  # withdrawn by its own poll
                taken = self._pop_queued(state, taker.size)
                if taken:
                    self._drop_taker(taker, state)
                    for job in taken:
                        self._assign(job, taker.worker_id)
                    taker.future.set_result(taken)
                    served = True

    def _drop_taker(self, taker: _Taker, state: _WorkerState | None = None) -> None:
        # ``state`` is passed when the worker has already left ``self.workers``.
        state = state or self.workers.get(taker.worker_id)
        if state is not None and taker in state.takers:
            state.takers.remove(taker)
            self.takers[state.endpoint].remove(taker)

    def _assign(self, job: Job, worker_id: str) -> None:
        state = self.workers[worker_id]
        job.status = js.IN_PROGRESS
        job.worker_id = worker_id
        job.started_at = time.time()
        job.attempts += 1
        # A job found IN_QUEUE or IN_PROGRESS at start-up is queued again either way; the
        # start is stored only so that a restart can leave the lost attempt out of the
        # job's delay: a moment later, in one write for all the jobs handed out meanwhile
        # (at once, it doubled the writes a job costs, and each one's p99); a job that ended
        # by then needs none.
        if not self._started:
            asyncio.get_running_loop().call_later(_NOTE_STARTS_AFTER_S, self._note_started)
        self._started.append(job)
        self._count_queued(job, -1)
        self.running[job.endpoint] += 1
        state.assigned.add(job.id)
        limit = job.execution_timeout_ms or self.execution_limit_ms(job.endpoint)
        self._timers[job.id] = asyncio.get_running_loop().call_later(
            limit / 1000, self._on_timeout, job.id, job.attempts, limit
        )

    def _note_started(self) -> None:
        started, self._started = self._started, []
        # One that ended or went back to the queue since was stored then, or needs nothing.
        self.store.save_states([job for job in started if job.status == js.IN_PROGRESS])

    def execution_limit_ms(self, endpoint: str) -> int:
        """How long a job of ``endpoint`` may run unless its policy says: the endpoint's
        ``executionTimeoutMs``, else the platform's default."""
        return self.exec_timeout_ms.get(endpoint) or self.default_execution_timeout_ms

    def _on_timeout(self, job_id: str, attempt: int, limit: int) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.status != js.IN_PROGRESS or job.attempts != attempt:
            return
        self._timers.pop(job_id, None)
        self._finish(job, js.TIMED_OUT, error=f"job exceeded its execution timeout of {limit} ms")

    def _arm_ttl(self, job: Job) -> None:
        # The default is not stored with the job: a restart applies its own.
        ttl = job.ttl_ms or self.default_ttl_ms
        start = job.created_at if job.retried_at is None else job.retried_at
        delay = max(0.0, start + ttl / 1000 - time.time())
        self._ttl_timers[job.id] = asyncio.get_running_loop().call_later(
            delay, self._on_ttl, job.id, ttl
        )

    def _on_ttl(self, job_id: str, ttl: int) -> None:
        self._ttl_timers.pop(job_id, None)
        job = self.jobs.get(job_id)
        if job is not None and not job.final:
            self._finish(job, js.TIMED_OUT, error=f"job exceeded its ttl of {ttl} ms")

    def _cancel_timer(self, job_id: str) -> None:
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    def _reset_attempt(self, job: Job) -> None:
        """Forget what a dead attempt produced; the caller stores that (save_requeued).
        The stream's read position stays: /stream hands out only chunks past those read."""
        job.worker_id = None
        job.started_at = None
        job.output_json = None  # reported while running: the next attempt starts afresh
        job.output_is_stream = False
        job.stream = []
        job.stream_bytes = 0
        job.stream_in_store = False

    def _finish(
        self,
        job: Job,
        status: str,
        *,
        error: Any,
        output_json: str | None = None,
    ) -> None:
        """End the job with ``output_json`` as its output (None: none): what it reported while
        running is progress, never a result, however it ends."""
        previous = job.status
        worker_id = job.worker_id
        job.status = status
        job.finished_at = time.time()
        job.error = error
        retention: float = js.RUNSYNC_RETENTION_S if job.sync else js.RUN_RETENTION_S
        if job.retention_ms is not None:
            retention = min(retention, job.retention_ms / 1000)
        job.expires_at = job.finished_at + retention
        # Owed from this moment, and stored with the end itself (no write of its own): a
        # platform stopped before the receiver answered delivers it at its next start.
        job.webhook_pending = job.webhook is not None
        job.webhook_attempts = 0
        # Only a job that failed or timed out can run again: the input of any other is dead.
        drop_input = status not in js.RETRYABLE
        if output_json is not None or job.output_json is not None:
            job.output_json = output_json
            self.store.save_with_output(job, drop_input=drop_input)
        else:
            self.store.save(job, drop_input=drop_input)
        self._keep_output(job)
        self._cancel_timer(job.id)
        ttl = self._ttl_timers.pop(job.id, None)
        if ttl is not None:
            ttl.cancel()
        if previous == js.IN_QUEUE:
            self._count_queued(job, -1)
        elif previous == js.IN_PROGRESS:
            self.running[job.endpoint] -= 1
            state = self.workers.get(worker_id or "")
            if state is not None:
                state.assigned.discard(job.id)
                if not state.assigned:
                    state.idle_since = time.monotonic()
                if status in (js.CANCELLED, js.TIMED_OUT) and worker_id:
                    self._signal_stop(worker_id, state, job.id)
                if not state.assigned and worker_id:
                    self._retire_if_done(worker_id, state)
        # Its worker may take more now, or other workers may, if it was a suspect.
        self._serve_takers(job.endpoint)
        self._count_final(job)
        job.input_json = None  # stored while a retry may need it (see drop_input above)
        self._wake(self._final_waiters, job.id)
        self._wake(self._stream_waiters, job.id)
        self.on_final(job)

    def _count_final(self, job: Job, change: int = 1) -> None:
        """Count a finished job in /health (``change`` -1: no longer): RunPod's has no
        timed-out counter, so a job that timed out counts as failed; a cancelled one counts
        in neither."""
        if job.status == js.COMPLETED:
            self.completed[job.endpoint] += change
        elif job.status in (js.FAILED, js.TIMED_OUT):
            self.failed[job.endpoint] += change

    def _keep_output(self, job: Job) -> None:
        """Count a finished job's big output and stream chunks against the memory budget;
        the oldest such jobs beyond it have both dropped from memory (they are in the
        store)."""
        size = len(job.output_json or "") + job.stream_bytes
        if size < _BIG_OUTPUT:
            return
        self._outputs_in_memory[job.id] = size
        self._output_bytes += size
        while self._output_bytes > self.output_memory_bytes and self._outputs_in_memory:
            job_id, size = self._outputs_in_memory.popitem(last=False)
            self._output_bytes -= size
            old = self.jobs.get(job_id)
            if old is None or not old.final:
                continue
            if old.output_json is not None:
                old.output_json, old.output_in_store = None, True
            if old.stream:
                old.stream, old.stream_in_store = [], True

    def _forget_output(self, job_id: str) -> None:
        self._output_bytes -= self._outputs_in_memory.pop(job_id, 0)

    def _signal_stop(self, worker_id: str, state: _WorkerState, job_id: str) -> None:
        state.stops.append(job_id)
        state.stopping[job_id] = time.monotonic()
        self._wake_stop(state)
        asyncio.get_running_loop().call_later(STOP_GRACE_S, self._check_stopped, worker_id, job_id)

    def _check_stopped(self, worker_id: str, job_id: str) -> None:
        state = self.workers.get(worker_id)
        if state is None or job_id not in state.stopping:
            return
        silent = time.monotonic() - state.pinged_at
        stuck = job_id in state.stuck
        reason = f"did not stop job {job_id} within {STOP_GRACE_S:g} s of being told to"
        if state.assigned and silent < STOP_GRACE_S and (not stuck or state.lists_taken):
            # Busy with other jobs, and heartbeats come. One that still runs this job (a
            # sync function's thread cannot be stopped; an async one may clean up at length)
            # while its loop runs: the jobs beside it finish there, and it takes no more
            # (another worker may start meanwhile); killed once they end (_retire_if_done).
            # The runpod SDK's heartbeats come from another process: no sign of its loop.
            if stuck and not state.retiring:
                state.retiring = True
                others = len(state.assigned)
                self.retire_worker(
                    worker_id,
                    f"{reason}: it takes no new jobs, and is replaced once its "
                    f"{others} other job{'s have' if others > 1 else ' has'} ended",
                )
            # Look again: its heartbeats may stop (an async function that never awaits).
            asyncio.get_running_loop().call_later(
                STOP_GRACE_S, self._check_stopped, worker_id, job_id
            )
            return
        # Its other jobs are requeued without counting against them. A silent one is held
        # (an async function that never awaits blocks its loop): it would never run them.
        if silent >= STOP_GRACE_S:
            reason += f", and sent no heartbeat for {silent:.0f} s"
        self.kill_worker(worker_id, reason)

    def _retire_if_done(self, worker_id: str, state: _WorkerState) -> None:
        """A retiring worker has no job left but those it was told to stop: killed (soon,
        outside the transition under way) if it still runs one. One that no longer does
        exits by itself (it was drained), as any drained worker with no job left should."""
        if state.retiring:
            asyncio.get_running_loop().call_soon(self._kill_retired, worker_id)
        elif state.draining:
            self.on_drained(worker_id)

    def _kill_retired(self, worker_id: str) -> None:
        state = self.workers.get(worker_id)
        if state is None or state.assigned or not state.stopping:
            return
        stopped = ", ".join(sorted(state.stopping))
        self.kill_worker(
            worker_id,
            f"its other jobs have ended, and it still runs {stopped}, which it was told to stop",
        )

    def _answer_polls(self, state: _WorkerState) -> None:
        """Answer the worker's pending job-take (with no jobs) and job-stop polls now."""
        for taker in list(state.takers):
            self._drop_taker(taker, state)
            if not taker.future.done():
                taker.future.set_result([])
        self._wake_stop(state)

    def _wake_stop(self, state: _WorkerState) -> None:
        if state.stop_waiter is not None and not state.stop_waiter.done():
            state.stop_waiter.set_result(None)
        state.stop_waiter = None

    @staticmethod
    async def _wait(
        waiters: dict[str, list[asyncio.Future[None]]], job_id: str, timeout: float
    ) -> None:
        """Wait up to ``timeout`` for ``_wake(waiters, job_id)``."""
        fut = asyncio.get_running_loop().create_future()
        waiters.setdefault(job_id, []).append(fut)
        try:
            await asyncio.wait([fut], timeout=timeout)
        finally:  # a wait given up (its caller hung up) is no waiter any more either
            pending = waiters.get(job_id)
            if pending and fut in pending:
                pending.remove(fut)

    @staticmethod
    def _wake(waiters: dict[str, list[asyncio.Future[None]]], job_id: str) -> None:
        for fut in waiters.pop(job_id, ()):
            if not fut.done():
                fut.set_result(None)
