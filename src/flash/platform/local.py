"""``LocalPlatform``: the gateway, job store and worker supervisor in one object.

The platform runs its own event loop in a background thread, so ``flash serve``, ``flash
run`` and tests drive it with plain blocking calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import uvicorn

from flash.platform.archive import ServedCopy, copies_dir, prune_copies, target_mismatch
from flash.platform.console import print_line
from flash.platform.dispatch import EXECUTION_TIMEOUT_MS, TTL_MS, Dispatcher
from flash.platform.gateway import DEFAULT_MAX_QUEUE, Gateway
from flash.platform.jobs import Job
from flash.platform.listening import address_family, api_key_problem, http_url
from flash.platform.manifest import EndpointSpec, PlatformError, read_manifest
from flash.platform.store import JobStore
from flash.platform.supervisor import HEARTBEAT_TIMEOUT_S, Supervisor
from flash.sdk.keys import (
    KEY_ENV_VAR,
    ensure_signing_key,
    key_file,
    key_from_text,
    key_to_text,
    make_state_dir,
)

T = TypeVar("T")
_PRUNE_EVERY_S = 10.0
_HTTPX_LOG = logging.getLogger("httpx")
# How often copies no worker uses any more are released and unheld ones removed.
_TIDY_COPIES_EVERY_S = 1.0
# Webhook delivery as RunPod documents it: when the receiver does not answer 2xx, up to 2
# more attempts, 10 s apart. Failed attempts are stored with the job, so restarts add none: a
# receiver that is down for good gets 3 POSTs in all, and the job is logged once as given up.
WEBHOOK_ATTEMPTS = 3
WEBHOOK_RETRY_DELAY_S = 10.0
_WEBHOOK_TIMEOUT_S = 10.0
# POSTs in flight at once: a burst of finished jobs (a purge, a restart owing thousands)
# waits its turn instead of timing out in the HTTP client's connection pool unsent.
_WEBHOOK_CONCURRENCY = 16


class LocalPlatform:
    """Serve app directories (extracted build archives) behind RunPod's serverless API.

    Usage: ``platform = LocalPlatform(Path(".flash"), port=0)``, ``platform.start()``,
    ``platform.load_app(app_dir)``; endpoints are then under ``{platform.url}/v2/<resource>/``;
    ``platform.replace_app(new_dir)`` after a rebuild; ``platform.stop()`` at the end.
    ``load_copy`` serves an extracted archive instead, and removes older copies in
    ``state_dir/serve`` once no process serves them.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_workers: int | None = None,
        api_key: str | None = None,
        echo: Callable[[str], None] | None = print_line,
        worker_loop: str | None = None,
        recorder: Callable[[dict[str, Any]], None] | None = None,
        worker_env: Mapping[str, str] | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        webhook_retry_delay_s: float = WEBHOOK_RETRY_DELAY_S,
        default_execution_timeout_ms: int = EXECUTION_TIMEOUT_MS,
        default_ttl_ms: int = TTL_MS,
        heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S,
        signing_key_file: Path | None = None,
    ) -> None:
        problem = None if api_key is None else api_key_problem(api_key)
        if problem is not None:
            raise PlatformError(f"api_key {problem}")
        if max_workers is not None and max_workers < 1:  # `or cpu_count` would take 0 as all
            raise PlatformError(f"max_workers must be at least 1, got {max_workers}")
        for name, limit in (
            ("default_execution_timeout_ms", default_execution_timeout_ms),
            ("default_ttl_ms", default_ttl_ms),
        ):
            if limit < 1:  # 0 would end every job at once
                raise PlatformError(f"{name} must be at least 1 ms, got {limit}")
        self.max_queue = max_queue
        # How long a stopped worker with jobs goes without a heartbeat before it is killed.
        self.heartbeat_timeout_s = heartbeat_timeout_s
        # A job's limits when neither its policy nor its endpoint sets one (RunPod's).
        self.default_execution_timeout_ms = default_execution_timeout_ms
        self.default_ttl_ms = default_ttl_ms
        self.webhook_retry_delay_s = webhook_retry_delay_s
        self.recorder = recorder
        # Extra variables for every worker; the project's signing key (.flash/secrets/, made
        # once) unless given: workers refuse pickled calls without one. It is never logged.
        self.worker_env = dict(worker_env or {})
        # Whether the key is the state folder's (flash run keeps its file: keep_signing_key).
        self.key_from_state_dir = KEY_ENV_VAR not in self.worker_env
        if self.key_from_state_dir:
            self.worker_env[KEY_ENV_VAR] = key_to_text(ensure_signing_key(Path(state_dir)))
            signing_key_file = key_file(Path(state_dir))
        # The file the key was read from (None: given otherwise, $FLASH_SIGNING_KEY say),
        # followed while serving: a new key written there is given to the workers started
        # from then on (the supervisor's follow_key_file), as callers reading it sign with it.
        self.signing_key_file = None if signing_key_file is None else signing_key_file.resolve()
        self.state_dir = Path(state_dir).resolve()  # a later chdir must not move it
        self.host = host
        self.port = port
        self.max_workers = max_workers or os.cpu_count() or 1
        self.api_key = api_key
        self.echo = echo
        self.worker_loop = worker_loop
        # Never the API key: whoever holds that could take other callers' jobs as a worker.
        self.worker_token = secrets.token_urlsafe(24)
        self.requeued_at_start = 0
        self.app_dir: Path | None = None
        # Target warnings already printed: flash run deploys each rebuild, all for one target.
        self._target_warnings: set[str] = set()
        self.copies_root = copies_dir(self.state_dir)
        # Locks of the copies this platform may still run workers in (event loop only).
        self._held_copies: dict[Path, ServedCopy] = {}
        # Whether a copy may have become removable: copies left by an earlier run, at first.
        self._prune_due = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._abandoned = False  # start() gave up waiting
        self._state_lock = -1  # descriptor of the state folder's lock while running
        self._failure: BaseException | None = None
        self._sock: socket.socket | None = None
        self.store: JobStore | None = None
        self.dispatcher: Dispatcher | None = None
        self.supervisor: Supervisor | None = None
        # One task per webhook still owed by a finished job (event loop only).
        self._deliveries: set[asyncio.Future[None]] = set()
        # Webhook URLs being posted, as httpx writes them: cut in its log lines.
        self._webhook_urls: Counter[str] = Counter()
        # Set when the platform stops: no delivery starts another attempt after it.
        self._stopping_deliveries = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    def start(self, timeout: float = 30.0, *, state_lock: int | None = None) -> None:
        """Serve; ``state_lock``: the state folder's lock from ``lock_state_dir``, already
        held (the platform owns it from here), else taken now. Raises PlatformError."""
        self._state_lock = lock_state_dir(self.state_dir) if state_lock is None else state_lock
        self._sock = socket.socket(address_family(self.host), socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((self.host, self.port))
        except (OSError, OverflowError) as err:  # OverflowError: a port past 65535
            self._sock.close()
            self._release_state_dir()
            raise PlatformError(f"cannot listen on {self.host}:{self.port}: {err}") from None
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._thread_main, name="flash-platform", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            # Given up on: the thread stops serving as soon as it can (see _main).
            self._abandoned = True
            if self._server is not None:
                self._server.should_exit = True
            raise PlatformError(f"the platform did not start within {timeout:g} s")
        if self._failure is not None:
            raise PlatformError(f"the platform failed to start: {self._failure}")

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every worker; running jobs get ``grace_s`` to finish, else rerun at next start."""
        if self._loop is None or self._thread is None:
            return
        try:
            if self._thread.is_alive():
                self._call(self._shutdown(grace_s), timeout=grace_s + 30)
                self._thread.join(30)
        finally:
            self._loop = None
            flush = getattr(self.echo, "flush", None)
            if flush is not None:
                flush()  # the last lines say why workers ended

    def __enter__(self) -> LocalPlatform:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ apps

    def load_app(self, app_dir: Path) -> dict[str, EndpointSpec]:
        """Serve every endpoint of ``app_dir``'s manifest."""
        return self.replace_app(app_dir)

    def replace_app(self, app_dir: Path) -> dict[str, EndpointSpec]:
        """Switch to a new build: running jobs finish on old workers, new jobs go to new ones."""
        return self._deploy(Path(app_dir).resolve(), None)

    def load_copy(self, copy: ServedCopy) -> dict[str, EndpointSpec]:
        """``replace_app`` for a copy from ``extract_for_serving``; its lock is the platform's
        to release once no worker runs there any more."""
        try:
            return self._deploy(copy.path.resolve(), copy)
        except BaseException:
            copy.release_unless_adopted()  # still ours unless the deploy took it over
            self._prune_due = True
            raise

    def _deploy(self, app_dir: Path, copy: ServedCopy | None) -> dict[str, EndpointSpec]:
        specs = read_manifest(app_dir)

        async def deploy() -> None:
            assert self.supervisor is not None
            if copy is not None:
                if not copy.adopt():
                    return  # the caller gave up waiting and let the copy go: serve nothing
                self._hold_copy(app_dir, copy)
            # Endpoints with stored jobs count too: after a restart, a build without their
            # endpoint fails them rather than keeping them queued for good.
            assert self.dispatcher is not None
            known = set(self.supervisor.deployments) | set(self.dispatcher.queues)
            for name in known - specs.keys() - self.dispatcher.removed.keys():
                self.supervisor.undeploy(name)
            for spec in specs.values():
                self.supervisor.deploy(spec, app_dir)

        self._call(deploy())
        self.app_dir = app_dir
        self._warn_of_target(app_dir)
        return specs

    def _warn_of_target(self, app_dir: Path) -> None:
        """Say once when builds served are for another Python or platform (target_mismatch)."""
        warning = target_mismatch(app_dir)
        if warning is None or warning in self._target_warnings:
            return
        self._target_warnings.add(warning)
        if self.echo is not None:
            self.echo(f"Warning: {warning}")

    @property
    def signing_key(self) -> bytes:
        """The key the workers started now check pickled calls with (the app's, unless
        given); that of ``signing_key_file``, which is followed."""
        return key_from_text(self.worker_env[KEY_ENV_VAR])

    def follow_signing_key(self) -> None:
        """Take up a new key in ``signing_key_file`` now, not at the next look (it is
        looked at twice a second, and whenever a worker starts)."""
        if self._loop is None or self.signing_key_file is None:
            return

        async def follow() -> None:
            assert self.supervisor is not None
            self.supervisor.follow_key_file(now=True)

        self._call(follow())

    def client_env(self) -> dict[str, str]:
        """What a process on this machine needs to call the endpoints (``flash.connect``
        reads it): their address, the signing key the workers check, the API key if any."""
        env = {"FLASH_API_BASE": self.url, KEY_ENV_VAR: self.worker_env[KEY_ENV_VAR]}
        if self.api_key:
            env["FLASH_API_KEY"] = self.api_key
        return env

    def endpoints(self) -> list[dict[str, Any]]:
        assert self.supervisor is not None
        return [
            {
                "name": name,
                "url": f"{self.url}/v2/{name}",
                "functions": list(dep.spec.functions),
            }
            for name, dep in sorted(self.supervisor.deployments.items())
        ]

    def workers(self) -> list[dict[str, Any]]:
        """The workers started so far (the latest ``HISTORY_WORKERS``), with their cold
        start (spawn to first job-take) in ms."""

        async def snapshot() -> list[dict[str, Any]]:
            assert self.supervisor is not None
            return [
                {
                    "id": w.id,
                    "endpoint": w.endpoint,
                    "generation": w.generation,  # which load_app/replace_app started it
                    "pid": w.proc.pid,
                    "alive": w.id in self.supervisor.workers,
                    "draining": w.draining,
                    "cold_start_ms": w.cold_start_ms,
                    "returncode": w.proc.returncode,
                }
                for w in self.supervisor.history
            ]

        return self._call(snapshot())

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the platform's event loop (to inspect state safely); return its value."""

        async def run() -> T:
            return fn()

        return self._call(run())

    # ------------------------------------------------------------------ internals

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        if self._loop is None:
            coro.close()
            raise PlatformError("the platform is not running; call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _thread_main(self) -> None:
        loop: asyncio.AbstractEventLoop
        try:
            import uvloop

            loop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as err:  # reported to start() through _failure
            self._failure = err
            self._ready.set()
        finally:
            loop.close()
            if self._sock is not None:
                self._sock.close()  # also when _main failed before serving on it
            self._release_state_dir()

    def _release_state_dir(self) -> None:
        fd, self._state_lock = self._state_lock, -1
        if fd >= 0:
            os.close(fd)

    async def _main(self) -> None:
        self.store = JobStore(self.state_dir / "jobs.db")
        self.dispatcher = Dispatcher(
            self.store,
            execution_timeout_ms=self.default_execution_timeout_ms,
            ttl_ms=self.default_ttl_ms,
        )
        self.requeued_at_start = self.dispatcher.restore()
        self.supervisor = Supervisor(
            self.dispatcher,
            base_url=self.url,
            worker_token=self.worker_token,
            max_workers=self.max_workers,
            echo=self.echo,
            worker_loop=self.worker_loop,
            api_key=self.api_key,
            # The same dict: a new key the supervisor takes up is the platform's too.
            extra_env=self.worker_env,
            heartbeat_timeout_s=self.heartbeat_timeout_s,
            key_file=self.signing_key_file,
        )
        self.supervisor.start()
        self._webhooks = httpx.AsyncClient(
            timeout=_WEBHOOK_TIMEOUT_S,
            limits=httpx.Limits(max_connections=_WEBHOOK_CONCURRENCY),
        )
        # Of this loop: a platform may be started again.
        self._stopping_deliveries = asyncio.Event()
        self._webhook_slots = asyncio.Semaphore(_WEBHOOK_CONCURRENCY)
        _HTTPX_LOG.addFilter(self._webhook_log_filter)
        self._resume_deliveries()
        self.dispatcher.on_final = self._on_final
        gateway = Gateway(
            self.dispatcher,
            self.supervisor,
            api_key=self.api_key,
            worker_token=self.worker_token,
            recorder=self.recorder,
            max_queue=self.max_queue,
            host=self.host,
        )
        config = uvicorn.Config(
            gateway.app(),
            http="httptools",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=75,
            # Held requests were answered (Dispatcher.end_waits): what is left is requests
            # under way, and slow readers, which must not hold up a stop.
            timeout_graceful_shutdown=2,
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        prune = asyncio.ensure_future(self._prune_forever())
        tidy = asyncio.ensure_future(self._tidy_copies_forever())
        started = asyncio.ensure_future(self._announce_started())
        assert self._sock is not None
        if self._abandoned:
            self._server.should_exit = True
        try:
            await self._server.serve(sockets=[self._sock])
        finally:
            prune.cancel()
            tidy.cancel()
            started.cancel()
            for copy in self._held_copies.values():
                copy.release()
            self._held_copies.clear()
            await self._stop_deliveries(within_s=0)  # in case serving ended without a stop()
            await self._webhooks.aclose()
            _HTTPX_LOG.removeFilter(self._webhook_log_filter)
            self.store.close()

    async def _announce_started(self) -> None:
        assert self._server is not None
        while not self._server.started:
            await asyncio.sleep(0.005)
        self._ready.set()

    async def _shutdown(self, grace_s: float) -> None:
        assert self.supervisor is not None and self._server is not None
        assert self.dispatcher is not None
        deadline = time.monotonic() + grace_s
        await self.supervisor.stop(grace_s)
        # Then the requests still held, answered as in time (see end_waits): a /runsync
        # whose job ended within the grace got its result.
        self.dispatcher.end_waits()
        # Webhook POSTs under way get what is left of the grace period, no more.
        await self._stop_deliveries(within_s=deadline - time.monotonic())
        self._server.should_exit = True

    async def _prune_forever(self) -> None:
        assert self.dispatcher is not None
        while True:
            await asyncio.sleep(_PRUNE_EVERY_S)
            self.dispatcher.prune(time.time())

    def _hold_copy(self, app_dir: Path, copy: ServedCopy) -> None:
        if app_dir in self._held_copies:
            copy.release()  # the same build again: one lock is enough (the copy stays)
        else:
            self._held_copies[app_dir] = copy

    async def _tidy_copies_forever(self) -> None:
        assert self.supervisor is not None
        while True:
            in_use = self.supervisor.app_dirs()
            for app_dir in [d for d in self._held_copies if d not in in_use]:
                self._held_copies.pop(app_dir).release()
                self._prune_due = True
            # Only this platform serves from its state folder (see lock_state_dir): a copy
            # becomes removable only when it lets one go, so the folder is not listed and
            # every lock tried each second for nothing.
            if not self._prune_due:
                await asyncio.sleep(_TIDY_COPIES_EVERY_S)
                continue
            self._prune_due = False
            try:
                # Off the event loop: removing a copy can take a while.
                await asyncio.get_running_loop().run_in_executor(
                    None, prune_copies, self.copies_root
                )
            except Exception as exc:  # a folder removed by hand, a file system without flock
                if self.echo is not None:
                    self.echo(f"could not remove old copies in {self.copies_root}: {exc}")
            await asyncio.sleep(_TIDY_COPIES_EVERY_S)

    # ------------------------------------------------------------------ webhooks

    def _on_final(self, job: Job) -> None:
        if job.webhook_pending:
            self._start_delivery(job)

    def _resume_deliveries(self) -> None:
        """Deliver the webhooks an earlier run owed: it stopped or crashed before their
        receivers answered 2xx. Each is sent at once, then retried as a live one is."""
        assert self.dispatcher is not None
        # A job that expired meanwhile was dropped at load (Dispatcher.restore), and its owed
        # webhook with it: /status no longer knows the job, and as a live delivery ends within
        # a minute, it would come at least 30 minutes late (1 for /runsync) about a result no
        # one can fetch any more.
        for job in self.dispatcher.jobs.values():
            if job.final and job.webhook_pending:
                self._start_delivery(job)

    def _start_delivery(self, job: Job) -> None:
        task = asyncio.ensure_future(self._deliver(job))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, job: Job) -> None:
        """POST the job's final status to its webhook until the receiver answers 2xx or the
        attempts run out, storing each outcome. Left owed (for the next start) when the
        platform stops. Whatever goes wrong stays in this job's delivery."""
        assert job.webhook is not None
        end = job.finished_at
        try:
            while self._owes_webhook(job, end) and not self._stopping_deliveries.is_set():
                delivered = await self._post_webhook(job)
                if not self._owes_webhook(job, end):
                    return  # retried or expired during the POST: what it owes now is not this
                if delivered:
                    job.webhook_pending = False
                    self._save(job)  # not sent again after a restart
                    return
                if self._attempt_failed(job):
                    return
                if not await self._pause_before_retry():
                    return
        except Exception as exc:  # the store failing, say: say so, the platform goes on
            if self.echo is not None:
                self.echo(
                    f"[platform] webhook to {_origin(job.webhook)} for job {job.id} failed: "
                    f"{type(exc).__name__}"
                )

    def _attempt_failed(self, job: Job) -> bool:
        """Count a failed attempt and store it (a restart resumes with the attempts left,
        not a fresh count); True once the attempts ran out and the webhook was given up."""
        job.webhook_attempts += 1
        if job.webhook_attempts >= WEBHOOK_ATTEMPTS:
            self._give_up_webhook(job)
            return True
        self._save(job)
        return False

    def _owes_webhook(self, job: Job, end: float | None) -> bool:
        """Whether the webhook for the job's end at ``end`` is still to be delivered: not if
        it was delivered or given up, nor once the job expired or a /retry began a new run."""
        assert self.dispatcher is not None
        return (
            job.webhook_pending
            and job.finished_at == end
            and self.dispatcher.jobs.get(job.id) is job
        )

    async def _post_webhook(self, job: Job) -> bool:
        """One delivery attempt: whether the receiver answered 2xx. It waits for one of the
        slots first; the body, what /status answers for the job's end, is read then (a
        restart sends the same), so owed deliveries hold no output until their turn."""
        assert job.webhook is not None and self.dispatcher is not None
        async with self._webhook_slots:
            try:
                body = self.dispatcher.status_json(job)
            except OSError:  # its stored output unreadable for now: a failed attempt
                return False
            shown = _as_httpx_logs(job.webhook)
            self._webhook_urls[shown] += 1
            try:
                response = await self._webhooks.post(
                    job.webhook, content=body, headers={"content-type": "application/json"}
                )
            except asyncio.CancelledError:
                # Cut short by a stop: it counts, or a receiver that never answers would get
                # one more POST at every start.
                self._attempt_failed(job)
                raise
            except Exception:
                # Any error is a failed attempt (a URL httpx refuses too), so that every owed
                # webhook ends, delivered or given up, and is not tried at each start for good.
                return False
            finally:
                self._webhook_urls[shown] -= 1
                if not self._webhook_urls[shown]:
                    del self._webhook_urls[shown]
            return response.is_success

    def _webhook_log_filter(self, record: logging.LogRecord) -> bool:
        """httpx logs each request's whole URL at INFO (shown once a program, or the runpod
        package, turns INFO on): a webhook's is cut to its origin, as in the platform's own
        lines."""
        if isinstance(record.args, tuple) and any(
            str(arg) in self._webhook_urls for arg in record.args
        ):
            record.args = tuple(
                _origin(str(arg)) + "/****" if str(arg) in self._webhook_urls else arg
                for arg in record.args
            )
        return True

    async def _pause_before_retry(self) -> bool:
        """Wait the retry delay; False if the platform began to stop meanwhile (the webhook
        stays owed, for the next start)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping_deliveries.wait(), self.webhook_retry_delay_s)
        return not self._stopping_deliveries.is_set()

    def _give_up_webhook(self, job: Job) -> None:
        """Store that the job's webhook will not be sent again, and say so once. The log
        names the receiver's origin only: a URL's path, query or user part often holds a
        token."""
        assert job.webhook is not None
        job.webhook_pending = False
        self._save(job)
        if self.echo is not None:
            self.echo(
                f"[platform] webhook to {_origin(job.webhook)} for job {job.id}"
                f" failed {job.webhook_attempts} times; given up"
            )

    def _save(self, job: Job) -> None:
        assert self.store is not None
        self.store.save(job)  # its state only (the webhook's progress); the output is stored

    async def _stop_deliveries(self, within_s: float) -> None:
        """Start no more attempts, let POSTs under way finish for up to ``within_s``, then
        drop the rest: what was not delivered stays owed in the store, for the next start,
        so a slow receiver does not hold up a stop."""
        self._stopping_deliveries.set()
        if not self._deliveries:
            return
        tasks = list(self._deliveries)
        if within_s > 0:
            await asyncio.wait(tasks, timeout=within_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _as_httpx_logs(url: str) -> str:
    """``url`` as httpx writes it in its log lines (normalised)."""
    try:
        return str(httpx.URL(url))
    except Exception:  # httpx refuses it: no request, no log line
        return url


def _origin(url: str) -> str:
    """Scheme, host and port of ``url``: its path, query and user part often hold a token,
    which must not reach a log."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    host = parts.hostname or "?"
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}{port}"


def lock_state_dir(state_dir: Path) -> int:
    """A descriptor holding the state folder for one platform. Two platforms on one folder
    would share its job store, and each would rerun the jobs the other is running."""
    make_state_dir(state_dir)
    fd = os.open(state_dir / "platform.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PlatformError(
            f"another Flash platform (flash run or flash serve) is serving from {state_dir}: "
            "stop it first, or give a flash serve its own state folder with --state-dir"
        ) from None
    return fd
