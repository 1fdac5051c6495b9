"""Worker processes: start, watch, scale, drain, kill and replace them.

Each worker is ``python <handler_file>`` in the app directory, in its own session so the
whole process tree (the SDK forks a heartbeat process) can be signalled at once. Processes
that left that session are found through /proc (``flash.platform.processes``): as in a
container, nothing a worker started outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import queue
import secrets
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flash.platform import processes
from flash.platform.dispatch import Dispatcher
from flash.platform.manifest import EndpointSpec
from flash.runtime.errors import mask_secrets, masks_for
from flash.runtime.protocol import SOURCE_DIR_ENV_VAR, WORKER_CONCURRENCY_ENV_VAR
from flash.runtime.signing import ALLOW_UNSIGNED_ENV_VAR, KEY_ENV_VAR, SigningKeyError
from flash.sdk.keys import key_to_text, read_signing_key
from flash.sdk.resources import MASKED_MIN_LENGTH, fill_secret_references

_TICK_S = 0.1
# A worker's output line is shown up to this many bytes, then cut with a note: megabytes
# on one line are no use in a console, nor in a crashed job's error.
_MAX_LINE = 64 * 1024
_TAIL_LINES = 20
# Workers that die before taking a job: after this many in a row the endpoint's queued
# jobs fail with the reason, and starting is paused a while (no crash loop).
_START_ATTEMPTS = 3
_START_BACKOFF_S = 5.0
_T = TypeVar("_T")
# A worker with jobs that has sent no heartbeat for this long while its process is stopped
# (SIGSTOP, a debugger) is killed, and its jobs run again. Heartbeats come every second
# (RUNPOD_PING_INTERVAL below): 60 of them missed is far beyond a loaded machine's delays,
# and a worker stopped for a moment (a look in a debugger) is spared, yet a frozen job is
# noticed long before its execution timeout (10 minutes by default).
HEARTBEAT_TIMEOUT_S = 60.0
# How long a worker drained for a new build (or key) has past its jobs' limits to exit.
DRAIN_GRACE_S = 5.0
# How many of the latest workers ``Supervisor.history`` keeps.
HISTORY_WORKERS = 100
# At the machine-wide cap, an endpoint whose workers all hold jobs that started at least
# this long ago, while jobs wait for it, gets one more worker (up to its workersMax) if no
# idle worker elsewhere can make room: its workers may be waiting on these very jobs (a
# call from A to B that calls A again). Workers that keep taking jobs are working through
# the queue: those wait for the cap as before.
BLOCKED_AFTER_S = 1.0
# How long the oldest job of an endpoint at its workersMax waits, called from a job of that
# endpoint, before the platform says it may be deadlocked (_say_if_waiting_on_itself).
WAITING_ON_ITSELF_S = 5.0
# How often the key file workers are given the key of is looked at (a stat) for a new key;
# also whenever a worker starts.
KEY_FILE_CHECK_S = 0.5
# What a key file's stat is compared by: a file written again (deleted, made anew) differs.
_FileStamp = tuple[int, int, int, int]


@dataclass
class Worker:
    id: str
    endpoint: str
    generation: int
    proc: asyncio.subprocess.Process
    spawned_at: float
    app_dir: Path
    ready_at: float | None = None
    draining: bool = False
    expected_exit: bool = False
    kill_reason: str | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    # Its descendants seen while it lived (the platform about to signal it), killed when it
    # exits: those that cleared their environment carry no tag to be found by then.
    descendants: set[processes.Process] = field(default_factory=set)
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def cold_start_ms(self) -> float | None:
        return None if self.ready_at is None else (self.ready_at - self.spawned_at) * 1000


@dataclass
class _Deployment:
    spec: EndpointSpec
    app_dir: Path
    generation: int


class Supervisor:
    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        base_url: str,
        worker_token: str,
        max_workers: int,
        echo: Callable[[str], None] | None = None,
        worker_loop: str | None = None,
        api_key: str | None = None,
        extra_env: dict[str, str] | None = None,
        heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S,
        key_file: Path | None = None,
    ) -> None:
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.api_key = api_key
        # Updated in place when the key file holds a new key (the caller's dict: it sees it).
        self.extra_env = extra_env if extra_env is not None else {}
        # The file the key in extra_env was read from, followed: a new key written there
        # (another build made one) is given to the workers started from then on.
        self.key_file = key_file
        self._key_file_stamp: _FileStamp | None = None  # as last read; None: not yet, or gone
        self._key_file_checked = -math.inf  # monotonic time of the last look
        self._key_file_problem: tuple[_FileStamp, str] | None = None  # a file holding no key
        self.dispatcher = dispatcher
        self.base_url = base_url
        self.worker_token = worker_token
        self.max_workers = max(1, max_workers)
        self.echo = echo
        self.worker_loop = worker_loop
        # Tags the processes of this platform's workers (processes.TAG_ENV_VAR): another
        # platform's, or the user's own, never carry it.
        self._tag_prefix = secrets.token_hex(8)
        self.deployments: dict[str, _Deployment] = {}
        self.workers: dict[str, Worker] = {}
        # The latest workers started (LocalPlatform.workers()), not all: a long-lived
        # platform replaces idle workers all day.
        self.history: deque[Worker] = deque(maxlen=HISTORY_WORKERS)
        self._generation = 0
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeps: set[asyncio.Future[set[int]]] = set()  # see _kill_leftovers
        self._sweeper = _Sweeper()
        self._stopping = False
        self._starting: Counter[str] = Counter()
        # Worker id -> app directory, while its process is being started.
        self._starting_in: dict[str, Path] = {}
        # Worker id -> when it first polled, for a worker that polled while its process was
        # still being started (before ``self.workers`` held it): applied as it is added.
        self._polled_early: dict[str, float] = {}
        self._start_failures: Counter[str] = Counter()
        self._paused_until: dict[str, float] = {}
        # The last error scaling each endpoint raised, while it keeps raising it.
        self._scale_errors: dict[str, str] = {}
        # Endpoints said to wait on calls to themselves (see _say_if_waiting_on_itself), and
        # the job whose call chain was last read for each.
        self._said_waiting_on_itself: set[str] = set()
        self._chain_looked_at: dict[str, str] = {}
        # (endpoint, variable) whose secret this machine lacks, said once each.
        self._missing_secrets: set[tuple[str, str]] = set()
        # (endpoint, variable) whose secret is too short to mask, said once each.
        self._short: set[tuple[str, str]] = set()
        # Values masked in what workers print (_masked), each with what stands for it: the
        # keys the platform hands its workers and the secrets it fills in for them, shown as
        # the variable holding it (``<env NAME>``), as a worker masks its own errors.
        self._secrets: dict[str, str] = {}
        self._masks: list[tuple[str, str]] = []  # longest first: see mask_secrets
        for name, value in (
            ("FLASH_API_KEY", api_key),
            ("RUNPOD_AI_API_KEY", worker_token),
            (KEY_ENV_VAR, self.extra_env.get(KEY_ENV_VAR)),
        ):
            self._add_secret(value, name)
        dispatcher.before_submit = self._look_at_key_file
        dispatcher.on_submit = self.poke
        dispatcher.on_first_poll = self._ready
        dispatcher.on_stop_pod = self._stop_pod
        dispatcher.on_drained = self._drained
        dispatcher.kill_worker = self.kill
        dispatcher.retire_worker = self._retire
        # A worker masks its failures itself; this covers one that does not (RunPod's loop
        # sends a pickled exception as it is).
        dispatcher.mask = self._masked

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    def deploy(self, spec: EndpointSpec, app_dir: Path) -> None:
        """Serve ``spec`` from ``app_dir``; workers of an earlier deployment drain."""
        self._generation += 1
        self.deployments[spec.name] = _Deployment(spec, app_dir, self._generation)
        self._start_failures[spec.name] = 0
        self._paused_until.pop(spec.name, None)
        self.dispatcher.add_endpoint(spec.name, spec.execution_timeout_ms)
        for worker in list(self.workers.values()):
            if worker.endpoint == spec.name and not worker.draining:
                self.drain(worker, math.inf)  # its jobs end by their limits: see _drained
        self._scale(spec.name)

    def undeploy(self, name: str) -> None:
        """Stop serving ``name``: running jobs finish on its draining workers, queued ones
        fail (no worker will ever take them)."""
        self.deployments.pop(name, None)
        for worker in list(self.workers.values()):
            if worker.endpoint == name and not worker.draining:
                self.drain(worker, math.inf)  # its jobs end by their limits: see _drained
        self.dispatcher.remove_endpoint(name, _removed(name))

    def app_dirs(self) -> set[Path]:
        """The app directories a deployment or a live or starting worker still uses."""
        return (
            {dep.app_dir for dep in self.deployments.values()}
            | {worker.app_dir for worker in self.workers.values()}
            | set(self._starting_in.values())
        )

    def follow_key_file(self, *, now: bool = False) -> bool:
        """Look at the key file (at most every KEY_FILE_CHECK_S unless ``now``): when it
        holds a new key, workers get that one from now on, those running (which have the
        old one) drain, and that is said once. A file deleted is no change: the key served
        stays until a new one is written. True if the key changed."""
        if self.key_file is None or self._stopping:
            return False
        at = time.monotonic()
        if not now and at - self._key_file_checked < KEY_FILE_CHECK_S:
            return False
        self._key_file_checked = at
        try:
            st = os.stat(self.key_file)
        except OSError:
            self._key_file_stamp = None  # deleted: whatever is written next is read then
            return False
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stamp == self._key_file_stamp:
            return False
        try:
            text = key_to_text(read_signing_key(self.key_file))
        except (SigningKeyError, OSError) as exc:
            # Maybe caught half written: said only if it stays so until the next look.
            if self._key_file_problem is not None and self._key_file_problem[0] == stamp:
                self._key_file_stamp = stamp
                if self.echo is not None:
                    self.echo(f"[platform] {exc}; workers are still given the key read before")
            self._key_file_problem = (stamp, str(exc))
            return False
        self._key_file_stamp, self._key_file_problem = stamp, None
        if text == self.extra_env.get(KEY_ENV_VAR):
            return False
        self._use_key(text)
        return True

    def _use_key(self, text: str) -> None:
        """Give workers the key ``text`` from now on: each deployment starts again (a new
        generation), its running workers draining once their jobs are done."""
        self.extra_env[KEY_ENV_VAR] = text
        self._add_secret(text, KEY_ENV_VAR)  # the old one stays masked: its workers may run on
        for name, dep in list(self.deployments.items()):
            self._generation += 1
            self.deployments[name] = _Deployment(dep.spec, dep.app_dir, self._generation)
            for worker in list(self.workers.values()):
                if worker.endpoint == name and not worker.draining:
                    self.drain(worker, math.inf)  # its jobs end by their limits: see _drained
        if self.echo is not None:
            self.echo(
                f"[platform] {self.key_file} holds a new signing key: workers check pickled "
                "calls with it from now on (those running with the old one stop once their "
                "jobs are done)"
            )

    def _look_at_key_file(self) -> None:
        """follow_key_file before a job is queued (a stat of the file): a script signs with
        the key it has just read there, which the workers that take its job must have."""
        try:
            self.follow_key_file(now=True)
        except Exception as exc:  # a job is never refused for this: the ticker looks again
            if self.echo is not None:
                self.echo(f"[platform] looking at {self.key_file} failed: {exc!r}")

    def poke(self, endpoint: str) -> None:
        if not self._stopping and endpoint in self.deployments:
            self._scale_safely(endpoint)

    def drain(self, worker: Worker, limit_s: float, *, note_descendants: bool = True) -> None:
        """Let the worker finish its jobs and exit; kill it if still there after ``limit_s``
        (never, for an infinite one)."""
        if worker.draining:
            return
        worker.draining = True
        worker.expected_exit = True
        self.dispatcher.drain(worker.id)
        if note_descendants:
            _note_descendants([worker])
        _signal(worker, signal.SIGTERM, group=False)
        if math.isfinite(limit_s):
            asyncio.get_running_loop().call_later(limit_s, self._kill_if_alive, worker.id)

    def kill(self, worker_id: str, reason: str) -> None:
        worker = self.workers.get(worker_id)
        if worker is None:
            return
        worker.kill_reason = reason
        _kill_trees([worker])  # first: nothing after may keep it alive
        self.dispatcher.drain(worker.id)
        self._log(worker, f"killed worker: {reason}")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Drain every worker, wait ``grace_s`` for them to exit, then kill what is left."""
        self._stopping = True
        if self._ticker is not None:
            self._ticker.cancel()
        # One pass over /proc for all of them: one per worker would hold the loop for
        # seconds on a busy machine.
        draining = list(self.workers.values())
        _note_descendants(draining)
        for worker in draining:
            self.drain(worker, math.inf, note_descendants=False)  # killed below if need be
        pending = [w.exited.wait() for w in self.workers.values()]
        if pending:
            await asyncio.wait([asyncio.ensure_future(p) for p in pending], timeout=grace_s)
        _kill_trees(list(self.workers.values()))
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        # Workers that exited during the stop left their sweeps to this one, which finds
        # what any worker of this platform started (their tags share the prefix).
        sweep = self._sweeper.submit(lambda: processes.kill_tagged(f"{self._tag_prefix}-"))
        await asyncio.wait([sweep, *self._sweeps], timeout=5)
        self._sweeper.close()
        failed = sweep.exception() if sweep.done() and not sweep.cancelled() else None
        if failed is not None and self.echo is not None:
            self.echo(f"[platform] could not look for processes workers started: {failed!r}")

    def counts(self, endpoint: str) -> dict[str, int]:
        idle = running = initializing = draining = 0
        for w in self.workers.values():
            if w.endpoint != endpoint:
                continue
            if w.draining:
                draining += 1
            elif w.ready_at is None:
                initializing += 1
            elif self.dispatcher.active_jobs(w.id):
                running += 1
            else:
                idle += 1
        return {
            "idle": idle,
            "running": running,
            "initializing": initializing,
            "draining": draining,
            "ready": idle + running,
            "throttled": 0,
            "unhealthy": 0,
        }

    # ------------------------------------------------------------------ scaling

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            try:
                self._kill_frozen()
            except Exception as exc:  # it must not end scaling for good (the ticker's task)
                if self.echo is not None:
                    self.echo(f"[platform] looking for frozen workers failed: {exc!r}")
            try:
                self.follow_key_file()
            except Exception as exc:  # nor this
                if self.echo is not None:
                    self.echo(f"[platform] looking at {self.key_file} failed: {exc!r}")
            for name in list(self.deployments):
                self._scale_safely(name)

    def _kill_frozen(self) -> None:
        """Kill each worker that holds jobs but has been frozen for ``heartbeat_timeout_s``:
        its jobs run again, as after a crash not of their making. Silence alone is no proof:
        a sync function of a one-job worker runs on the loop that sends the heartbeats, so
        a long job is silent too; only a stopped process is known not to be working."""
        now = time.monotonic()
        for worker in list(self.workers.values()):
            silent = self.dispatcher.silent_for(worker.id, now)
            if (
                worker.kill_reason is None
                and silent >= self.heartbeat_timeout_s
                and self.dispatcher.active_jobs(worker.id)
                and processes.stopped(worker.proc.pid)
            ):
                self.kill(worker.id, f"stopped, it sent no heartbeat for {silent:.0f} s")

    def _scale_safely(self, name: str) -> None:
        """``_scale``, logging what it raises: one bad decision must not end scaling and idle
        reaping for good (the ticker's task) or fail a /run whose job is already stored."""
        try:
            self._scale(name)
        except Exception as exc:
            message = f"scaling endpoint {name} failed: {type(exc).__name__}: {exc}"
            if self._scale_errors.get(name) != message and self.echo is not None:
                # Once, not ten times a second.
                self.echo(f"[platform] {message}\n{traceback.format_exc().rstrip()}")
            self._scale_errors[name] = message
        else:
            self._scale_errors.pop(name, None)

    def _scale(self, name: str) -> None:
        dep = self.deployments[name]
        spec = dep.spec
        mine = [w for w in self.workers.values() if w.endpoint == name and not w.draining]
        count = len(mine) + self._starting[name]
        queued = self.dispatcher.queued[name]
        # Low-priority jobs (policy.lowPriority) start no worker, as on RunPod: they run on
        # the workers other jobs started.
        urgent = queued - self.dispatcher.queued_low_priority[name]
        running = self.dispatcher.running[name]
        idle = [w for w in mine if w.ready_at is not None and not self.dispatcher.active_jobs(w.id)]
        if spec.scaler_type == "REQUEST_COUNT":
            want = math.ceil((urgent + running) / spec.scaler_value)
        else:
            # QUEUE_DELAY: every worker stays while jobs wait; otherwise the busy ones (and
            # those starting) do, and idle ones past idleTimeout stop, as on RunPod.
            want = count if queued else count - len(idle)
            starting = self._starting[name] or any(w.ready_at is None for w in mine)
            if urgent and (
                count == 0
                or (
                    not starting
                    and self.dispatcher.oldest_wait(name, time.time()) > spec.scaler_value
                )
            ):
                want = count + 1
        want = min(max(want, spec.workers_min), spec.workers_max)
        if time.monotonic() < self._paused_until.get(name, 0.0):
            want = count  # its workers keep failing to start: wait before trying again
        while count < want:
            if self._total() >= self.max_workers:
                blocked = self._blocked(name, mine)
                if (blocked and self._free_a_slot(name)) or not (blocked and urgent):
                    break  # a slot is being freed (a later tick uses it), or it can wait
            # Under the cap, or jobs wait here that none of its workers can take (it has
            # none, or each is busy and has been for a while) and no idle one elsewhere can
            # make room: the busy ones may be waiting for these jobs (calls to this
            # endpoint, also from its own workers through another endpoint), so it gets
            # one more worker anyway, one at a time and up to its workersMax.
            self._spawn(dep)
            count += 1
        if count >= spec.workers_max and urgent:
            self._say_if_waiting_on_itself(name, spec, mine)
        else:
            self._said_waiting_on_itself.discard(name)
        keep = max(want, spec.workers_min)
        now = time.monotonic()
        idle.sort(key=lambda w: self.dispatcher.workers[w.id].idle_since)
        for worker in idle:
            if count <= keep:
                break
            if now - self.dispatcher.workers[worker.id].idle_since >= spec.idle_timeout_s:
                self._log(worker, "idle, stopping")
                self.drain(worker, 10.0)
                count -= 1

    def _say_if_waiting_on_itself(self, name: str, spec: EndpointSpec, mine: list[Worker]) -> None:
        """Say once (until it ends) that endpoint ``name`` may be deadlocked: at workersMax,
        every worker busy for a while, and the oldest job waiting for one was called from a
        job of this endpoint (``a -> b -> a``). If the busy jobs wait on such calls, none
        ends: on RunPod too, where nothing says so."""
        if name in self._said_waiting_on_itself:
            return
        # Cheap looks first: this runs at every tick of a busy endpoint.
        if self.dispatcher.oldest_wait(name, time.time()) < WAITING_ON_ITSELF_S:
            return
        if not self._blocked(name, mine):
            return
        found = self.dispatcher.oldest_call_chain(name)
        if found is None or self._chain_looked_at.get(name) == found[0].id:
            return  # that job's chain was read before, and did not come back here
        job, chain = found
        self._chain_looked_at[name] = job.id
        if not set(chain[:-1]) & set(spec.functions):
            return
        self._said_waiting_on_itself.add(name)
        if self.echo is not None:
            self.echo(
                f"[platform] endpoint {name}: job {job.id} has waited "
                f"{time.time() - job.queued_since:.0f} s for a worker, and all "
                f"{len(mine)} of its workers (workersMax={spec.workers_max}) are busy; it was "
                f"called from a job of this endpoint ({' -> '.join(chain)}): if the busy jobs "
                "wait on such calls, none of them ends (deployed too). Raise workersMax, or "
                "make the calls not come back to the endpoint they started from"
            )

    def _total(self) -> int:
        return len(self.workers) + sum(self._starting.values())

    def _blocked(self, name: str, mine: list[Worker]) -> bool:
        """No worker of endpoint ``name`` can take a job now or soon: it has none, or none
        starting and each one ready and busy with jobs that all started at least
        ``BLOCKED_AFTER_S`` ago (one that keeps taking jobs works through the queue)."""
        if self._starting[name]:
            return False
        now = time.time()
        for worker in mine:
            state = self.dispatcher.workers.get(worker.id)
            if worker.ready_at is None or state is None or not state.assigned:
                return False
            for job_id in state.assigned:
                job = self.dispatcher.jobs.get(job_id)
                started = None if job is None else job.started_at
                if started is None or now - started < BLOCKED_AFTER_S:
                    return False
        return True

    def _free_a_slot(self, hungry: str) -> bool:
        """At the machine-wide cap, an endpoint with work that none of its workers can take
        (``_blocked``) takes an idle one's slot."""
        if any(w.draining for w in self.workers.values()):
            return True  # one is already on its way out
        for worker in self.workers.values():
            dep = self.deployments.get(worker.endpoint)
            others = [w for w in self.workers.values() if w.endpoint == worker.endpoint]
            if (
                worker.ready_at is not None
                and not self.dispatcher.active_jobs(worker.id)
                and dep is not None
                and len(others) > dep.spec.workers_min
            ):
                self._log(worker, f"stopping to make room for endpoint {hungry}")
                self.drain(worker, 10.0)
                return True
        return False

    # ------------------------------------------------------------------ processes

    def _spawn(self, dep: _Deployment) -> None:
        if self.follow_key_file(now=True):  # a new key: the worker is the new generation's
            dep = self.deployments.get(dep.spec.name, dep)
        worker_id = f"{dep.spec.name[:16]}-{uuid.uuid4().hex[:8]}"
        self.dispatcher.register_worker(worker_id, dep.spec.name)
        self._starting[dep.spec.name] += 1
        self._starting_in[worker_id] = dep.app_dir
        task = asyncio.get_running_loop().create_task(self._run_worker(worker_id, dep))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _env(self, worker_id: str, spec: EndpointSpec) -> dict[str, str]:
        v2 = f"{self.base_url}/v2/{spec.name}"
        env = {name: value for name, value in os.environ.items() if not _withheld(name)}
        env.update(self.extra_env)
        filled, unfilled = self._with_secrets(spec)
        env.update(filled)
        for name in unfilled:  # not even as this process's own variable of that name
            env.pop(name, None)
        env.update(
            {
                "RUNPOD_WEBHOOK_GET_JOB": f"{v2}/job-take/{worker_id}?gpu=none",
                "RUNPOD_WEBHOOK_POST_OUTPUT": f"{v2}/job-done/$RUNPOD_POD_ID/$ID?gpu=none",
                "RUNPOD_WEBHOOK_POST_STREAM": f"{v2}/job-stream/$RUNPOD_POD_ID/$ID?gpu=none",
                "RUNPOD_WEBHOOK_PING": f"{v2}/ping/$RUNPOD_POD_ID?gpu=none",
                "RUNPOD_POD_ID": worker_id,
                processes.TAG_ENV_VAR: self._tag(worker_id),
                "RUNPOD_ENDPOINT_ID": spec.name,
                "RUNPOD_AI_API_KEY": self.worker_token,
                # Heartbeats list running jobs: how a stopped job is seen to be gone.
                "RUNPOD_PING_INTERVAL": "1000",
                "FLASH_RESOURCE_NAME": spec.name,
                # Where a worker sends calls to other endpoints (flash.runtime.client).
                "FLASH_API_BASE": self.base_url,
                WORKER_CONCURRENCY_ENV_VAR: str(spec.concurrency),
                "PYTHONUNBUFFERED": "1",
                # The SDK's start-up checks probe 8.8.8.8 and GPUs: meaningless on one machine.
                "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
                "RUNPOD_SKIP_GPU_CHECK": "true",
            }
        )
        if spec.isolated:  # -S leaves site-packages out, but PYTHONPATH would bring them in
            env.pop("PYTHONPATH", None)
        if self.worker_loop is not None:
            env["FLASH_WORKER_LOOP"] = self.worker_loop
        if self.api_key is not None:
            env["FLASH_API_KEY"] = self.api_key
        return env

    def _with_secrets(self, spec: EndpointSpec) -> tuple[dict[str, str], list[str]]:
        """The endpoint's env with each ``{{ RUNPOD_SECRET_name }}`` filled in from this
        process's environment, and the variables whose secret is not there: those are left
        out (and said once, by name only: the values are secrets)."""
        filled = fill_secret_references(spec.env)
        for secret, variable in filled.secrets.items():
            self._add_secret(secret, variable)
            if len(secret) < MASKED_MIN_LENGTH and (spec.name, variable) not in self._short:
                self._short.add((spec.name, variable))
                if self.echo is not None:
                    self.echo(
                        f"[{spec.name}] env {variable}: its secret is under"
                        f" {MASKED_MIN_LENGTH} characters, too short to be masked in what"
                        " workers print and in their errors"
                    )
        for name, secret in filled.unfilled.items():
            if (spec.name, name) not in self._missing_secrets:
                self._missing_secrets.add((spec.name, name))
                if self.echo is not None:
                    self.echo(
                        f"[{spec.name}] env {name} names the secret {secret}, which is not"
                        f" set where the platform runs: its workers start without {name}"
                    )
        return filled.env, list(filled.unfilled)

    async def _run_worker(self, worker_id: str, dep: _Deployment) -> None:
        spawned = time.monotonic()
        name = dep.spec.name
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *(["-S"] if dep.spec.isolated else []),
                dep.spec.handler_file,
                cwd=str(dep.app_dir),
                env=self._env(worker_id, dep.spec),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as err:
            self._started(worker_id, name)
            self._polled_early.pop(worker_id, None)
            self.dispatcher.worker_exited(worker_id, f"could not start: {err}", blame=False)
            return
        worker = Worker(worker_id, name, dep.generation, proc, spawned, dep.app_dir)
        self._started(worker_id, name)
        self.workers[worker_id] = worker
        polled = self._polled_early.pop(worker_id, None)
        if polled is not None:  # it polled before it was added here: ready since then
            self._mark_ready(worker, polled)
        self.history.append(worker)
        current = self.deployments.get(name)
        if self._stopping:
            self.drain(worker, 1.0)
        elif current is None or current.generation != dep.generation:
            # Redeployed (or removed) while this process was starting: it runs the old build.
            self.drain(worker, math.inf)  # its jobs end by their limits: see _drained
            self.poke(name)  # the current build gets a worker of its own now
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            asyncio.ensure_future(self._pump(worker, proc.stdout, keep=False)),
            asyncio.ensure_future(self._pump(worker, proc.stderr, keep=True)),
        ]
        code = await proc.wait()
        # Grandchildren (the SDK's heartbeat process) must not outlive the worker, nor what
        # it started outside its process group.
        _signal(worker, signal.SIGKILL, group=True)
        try:
            self._kill_leftovers(worker)
        except Exception as exc:  # whatever it is, the worker's exit is still handled
            self._log(worker, f"could not look for processes it started: {exc!r}")
        await asyncio.wait(readers, timeout=2)
        for reader in readers:  # a process no sweep could kill yet still holds the pipe
            reader.cancel()
        reason = _exit_reason(code)
        if worker.kill_reason:
            reason = f"was killed: {worker.kill_reason}"
        blame = not worker.expected_exit and worker.kill_reason is None
        self.workers.pop(worker_id, None)
        worker.exited.set()
        tail = list(worker.tail)
        outcomes = self.dispatcher.worker_exited(worker_id, reason, blame=blame, stderr_tail=tail)
        if self._stopping and -code in (signal.SIGTERM, signal.SIGKILL) and not worker.kill_reason:
            # The platform's own stop signalled it: no crash, and its jobs stay in the store.
            said = [f"{o} at the next start" if o.endswith("runs again") else o for o in outcomes]
            self._log(worker, "; ".join(["worker stopped with the platform", *said]))
        elif blame or code:
            self._log(worker, "; ".join([f"worker {_exit_reason(code)}", *outcomes]))
        if blame and worker.ready_at is None:
            if tail:
                reason += "; last stderr lines:\n" + "\n".join(tail)
            self._start_failed(name, reason)
        self.poke(worker.endpoint)

    def _tag(self, worker_id: str) -> str:
        return f"{self._tag_prefix}-{worker_id}"

    def _kill_leftovers(self, worker: Worker) -> None:
        """Kill what the worker started outside its process group: whatever it was doing,
        it is gone, as its container would be. The processes seen in its tree now; those
        that carry its tag in their environment from a thread, while the worker's exit is
        handled (a stop sweeps once for all its workers instead)."""
        group = worker.proc.pid  # killed already
        killed = processes.kill(worker.descendants, spare_group=group)
        if self._stopping:
            self._report_leftovers(worker, killed)
            return
        tag = self._tag(worker.id)
        sweep = self._sweeper.submit(lambda: processes.kill_tagged(tag, spare_group=group))
        self._sweeps.add(sweep)
        sweep.add_done_callback(self._sweeps.discard)
        sweep.add_done_callback(lambda done: self._report_leftovers(worker, killed, done))

    def _report_leftovers(
        self, worker: Worker, killed: set[int], sweep: asyncio.Future[set[int]] | None = None
    ) -> None:
        if sweep is not None and not sweep.cancelled():
            if sweep.exception() is None:
                killed = killed | sweep.result()
            else:
                error = sweep.exception()
                self._log(worker, f"could not look for processes it started: {error!r}")
        if killed:
            self._log(worker, f"killed {len(killed)} process(es) it started that outlived it")

    def _started(self, worker_id: str, name: str) -> None:
        self._starting[name] -= 1
        self._starting_in.pop(worker_id, None)

    async def _pump(self, worker: Worker, stream: asyncio.StreamReader, keep: bool) -> None:
        while True:
            # Past the cut, as many bytes as the longest secret can take: one straddling the
            # cut is seen whole (_shown).
            longest = len(self._masks[0][0]) if self._masks else 0
            line = await _read_line(stream, _MAX_LINE + 4 * longest)
            if line is None:
                return
            text = self._shown(*line)
            if keep:
                worker.tail.append(text)
            self.dispatcher.log_line(worker.id, text)
            self._log(worker, text)

    def _shown(self, kept: bytes, length: int) -> str:
        """A worker's line, masked (``kept``: its first bytes; ``length``: all of it); a long
        one cut at about _MAX_LINE bytes, with a note of what is not shown."""
        text = kept.decode("utf-8", "replace")
        if length == len(kept):
            return self._masked(text)
        cut = len(kept[:_MAX_LINE].decode("utf-8", "replace"))
        cut = max(0, min(cut, len(text) - (len(self._masks[0][0]) if self._masks else 0)))
        # A secret straddling the cut would show its head unmasked: cut before it.
        moved = True
        while moved:
            moved = False
            for value, _ in self._masks:
                start = text.find(value, max(0, cut - len(value) + 1), cut + len(value) - 1)
                if start != -1:
                    cut, moved = start, True
        hidden = max(0, length - len(text[:cut].encode("utf-8", "replace")))
        return f"{self._masked(text[:cut])} ... [{hidden:,} more bytes of this line not shown]"

    def _masked(self, text: str) -> str:
        """A worker's line with the secrets the platform gave workers replaced: what a job
        prints reaches the console, the log and a crashed job's error (its caller)."""
        return mask_secrets(text, self._masks)

    def _add_secret(self, value: str | None, variable: str) -> None:
        """Mask ``value`` from now on, as ``<env variable>`` (the first variable it came in)."""
        if value and value not in self._secrets:  # masks_for leaves out the short ones
            self._secrets[value] = variable
            self._masks = masks_for(self._secrets)

    def _ready(self, worker_id: str) -> None:
        """Its first job-take: the worker is ready. Under load its process can poll before
        ``_run_worker`` has added it to ``self.workers`` (starting the process takes several
        turns of the loop): that poll is kept and applied when it is added, or the worker
        would stay initializing for good (no scaling past it, no idle stop)."""
        now = time.monotonic()
        worker = self.workers.get(worker_id)
        if worker is None:
            if worker_id in self._starting_in:
                self._polled_early.setdefault(worker_id, now)
            return
        self._mark_ready(worker, now)

    def _mark_ready(self, worker: Worker, at: float) -> None:
        if worker.ready_at is None:
            worker.ready_at = at
            self._start_failures[worker.endpoint] = 0

    def _start_failed(self, name: str, reason: str) -> None:
        self._start_failures[name] += 1
        if self._start_failures[name] >= _START_ATTEMPTS:
            self._paused_until[name] = time.monotonic() + _START_BACKOFF_S
            self.dispatcher.fail_queued(
                name,
                f"workers of endpoint {name} fail to start "
                f"({self._start_failures[name]} in a row): the last one {reason}",
            )

    def _stop_pod(self, worker_id: str) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None:
            # The handler asked for a fresh worker (refresh_worker): retire this one.
            self._log(worker, "refresh requested by the job, stopping")
            self.drain(worker, math.inf)  # its jobs end by their limits: see _drained

    def _drained(self, worker_id: str) -> None:
        """A drained worker's jobs have all ended: it is killed if it has not exited a
        grace after that (a thread it left running), not only at its drain's limit, which
        counted those jobs' limits (minutes) while they ran."""
        worker = self.workers.get(worker_id)
        if worker is not None and worker.draining and worker.proc.returncode is None:
            asyncio.get_running_loop().call_later(DRAIN_GRACE_S, self._kill_if_alive, worker_id)

    def _retire(self, worker_id: str, reason: str) -> None:
        """Drain a worker that runs on a job it was told to stop, beside others: those
        finish there, and the dispatcher kills it once they have (never this drain)."""
        worker = self.workers.get(worker_id)
        if worker is None:
            return
        self._log(worker, f"draining worker: {reason}")
        self.drain(worker, math.inf)
        self.poke(worker.endpoint)  # another may start in its place now

    def _kill_if_alive(self, worker_id: str) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None and worker.proc.returncode is None:
            self.kill(worker_id, "still running after being asked to stop")

    def _drain_limit(self, worker: Worker) -> float:
        """How long a worker drained for a new build (or key) may take to exit: as long as
        its running jobs may still run, each by its own limit from its start (its policy's,
        else its endpoint's when it started), plus a grace."""
        return self.dispatcher.time_left_s(worker.id) + DRAIN_GRACE_S

    def _log(self, worker: Worker, text: str) -> None:
        if self.echo is not None:
            self.echo(f"[{worker.endpoint} {worker.id}] {text}")


# Variables of the serving shell that no worker gets: a RunPod secret reaches a worker only
# as its endpoint's env names it (as on RunPod), the account's API key never, Flash's index
# URLs (tokens) are the build's; the platform sets the keys workers need itself, and allows
# unsigned pickles only when told (a leftover FLASH_ALLOW_UNSIGNED=1 must not), and names
# the project folder of what it serves itself (flash serve of an archive has none).
_WITHHELD = frozenset(
    {
        "RUNPOD_API_KEY",
        "FLASH_INDEX_URL",
        "FLASH_EXTRA_INDEX_URL",
        "FLASH_FIND_LINKS",
        "FLASH_API_KEY",
        KEY_ENV_VAR,
        ALLOW_UNSIGNED_ENV_VAR,
        SOURCE_DIR_ENV_VAR,
    }
)


def _withheld(name: str) -> bool:
    return name in _WITHHELD or name.startswith("RUNPOD_SECRET_")


def _removed(name: str) -> str:
    return f"endpoint {name} was removed by the new build: no worker will run this job"


def _die_with_parent() -> None:
    """In the child: get SIGKILL if the platform dies without stopping its workers (Linux)."""
    if sys.platform != "linux":
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


async def _read_line(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, int] | None:
    """The next line of ``stream``, without its newline: at most its first ``limit`` bytes,
    and its length; None at the end. Read in pieces: readline() drops a line longer than the
    stream's buffer, and what came before it on the line."""
    kept = bytearray()
    length = 0
    while True:
        end = True
        try:
            piece = (await stream.readuntil(b"\n"))[:-1]
        except asyncio.LimitOverrunError as exc:  # no newline yet within the buffer's size
            piece = await stream.readexactly(exc.consumed)
            end = False
        except asyncio.IncompleteReadError as exc:  # the output ended without a newline
            piece = exc.partial
            if not piece and not length:
                return None
        length += len(piece)
        kept += piece[: max(0, limit - len(kept))]
        if end:
            return bytes(kept), length


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"


def _note_descendants(workers: list[Worker]) -> None:
    """Remember the workers' descendants now, while they live: once one exits, those that
    left its process group and cleared their environment can no longer be told apart."""
    # A reaped worker's pid may be another process's already.
    live = {w.proc.pid: w for w in workers if w.proc.returncode is None}
    if not live:
        return
    for pid, found in processes.descendants(live).items():
        live[pid].descendants |= found


def _kill_trees(workers: list[Worker]) -> None:
    """SIGKILL the workers, their process groups and every descendant they have now."""
    _note_descendants(workers)
    for worker in workers:
        if worker.proc.returncode is None:  # a reaped one's group was killed as it exited
            _signal(worker, signal.SIGKILL, group=True)
        processes.kill(worker.descendants, spare_group=worker.proc.pid)


class _Sweeper:
    """One daemon thread that runs a supervisor's /proc sweeps one after another: a read
    stuck in the kernel holds up the sweeps queued behind it, not a new thread per worker
    exit. A daemon thread, not the loop's executor, whose threads the interpreter's exit
    joins."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, Any, Callable[[], Any]] | None]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], _T]) -> asyncio.Future[_T]:
        """``fn()`` on the sweeper's thread, as a future of the running loop (holding the
        error if no thread could be started)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._serve, name="flash-sweeper", daemon=True)
                try:
                    thread.start()
                except RuntimeError as exc:  # no thread to spare
                    future.set_exception(exc)
                    return future
                self._thread = thread
            self._jobs.put((loop, future, fn))
        return future

    def close(self) -> None:
        """End the thread once the sweeps queued before this are done."""
        with self._lock:
            if self._thread is not None:
                self._jobs.put(None)
                self._thread = None

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, fn = job
            value: Any = None
            error: BaseException | None = None
            try:
                value = fn()
            except BaseException as exc:  # handed to the future's reader
                error = exc
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, value, error)


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


def _signal(worker: Worker, sig: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(worker.proc.pid, sig)
        elif worker.proc.returncode is None:
            worker.proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass
