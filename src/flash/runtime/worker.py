"""Worker loop: takes jobs from the platform and reports their results.

Speaks RunPod's worker-facing protocol (job-take, job-done, job-stream, job-stop, ping) with
the same result conventions as the official SDK loop, using the standard library only so a
worker is ready to take its first job in a few tens of milliseconds instead of paying the
~1.5 s that ``import runpod`` costs. ``FLASH_WORKER_LOOP=runpod`` selects the official loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import json
import os
import signal
import sys
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from flash.runtime.errors import (
    OwnCancelledError,
    cut_text,
    mask_secrets,
    masked_failure,
    run_sync_code,
    safe_str,
)
from flash.runtime.http import HttpClient, Response
from flash.runtime.protocol import worker_concurrency

LOOP_VERSION = "flash-1"
_TAKE_TIMEOUT_S = 120.0
# After that timeout, how long an answer may still take to be read: a handler that never
# awaits can hold the loop past the timeout while the answer waits, already sent, in the
# socket. Thrown away, the jobs it hands out would be lost.
_TAKE_GRACE_S = 5.0
_POST_ATTEMPTS = 3
# The pause after a refused job take (a 400, an empty answer) doubles from the first to the
# cap: a misconfigured worker would otherwise ask thousands of times a second.
_REFUSED_PAUSE_S = 0.1
_REFUSED_PAUSE_MAX_S = 1.0


def start(
    handler: Callable[..., Any],
    *,
    concurrency_modifier: Callable[[int], int] | None = None,
    return_aggregate_stream: bool = False,
) -> None:
    """Run ``handler`` for jobs of the platform named by the ``RUNPOD_WEBHOOK_*`` variables."""
    if os.environ.get("FLASH_WORKER_LOOP", "").lower() == "runpod" or not os.environ.get(
        "RUNPOD_WEBHOOK_GET_JOB"
    ):
        # Without a platform the SDK's local test modes (--test_input, --rp_serve_api) apply.
        _start_runpod(handler, concurrency_modifier, return_aggregate_stream)
        return
    asyncio.run(_WorkerLoop(handler, concurrency_modifier, return_aggregate_stream).run())


def _start_runpod(
    handler: Callable[..., Any],
    concurrency_modifier: Callable[[int], int] | None,
    return_aggregate_stream: bool,
) -> None:
    if sys.flags.no_site:
        # A worker that sees only its archive (-S): the SDK is the worker image's, which
        # here means the site-packages of the interpreter serving it.
        import site

        site.main()
    import runpod

    config: dict[str, Any] = {"handler": handler}
    fixed = worker_concurrency()
    if concurrency_modifier is None and fixed > 1:
        concurrency_modifier = lambda _current: fixed  # noqa: E731
    if concurrency_modifier is not None:
        config["concurrency_modifier"] = concurrency_modifier
    if return_aggregate_stream:
        config["return_aggregate_stream"] = True
    runpod.serverless.start(config)


# --------------------------------------------------------------------------- results


def _error_info(err: BaseException) -> str:
    """The job's error for an exception the handler raised, as the SDK reports it; its
    message and traceback cut as the generic handler cuts its own (a 50 MB message would
    otherwise be sent, stored and shown whole), and the worker's secrets masked (cut_text)."""
    info = {
        "error_type": str(type(err)),
        "error_message": cut_text(safe_str(err)),
        "error_traceback": cut_text(traceback.format_exc()),
        "hostname": os.environ.get("RUNPOD_POD_HOSTNAME", "unknown"),
        "worker_id": os.environ.get("RUNPOD_POD_ID", "unknown"),
        "runpod_version": LOOP_VERSION,
    }
    # Not ASCII-escaped: the cut text is 64 KiB of UTF-8, but an emoji escaped is 12 bytes
    # (and more, escaped again in the body). _json_body copes with lone surrogates.
    return json.dumps(info, ensure_ascii=False)


def _stream_error(err: BaseException) -> str:
    """The job's error for an exception a streaming handler raised, cut like _error_info's."""
    return cut_text(f"handler: {safe_str(err)} \ntraceback: {traceback.format_exc()}")


def _print_exc() -> None:
    """``traceback.print_exc()`` with the worker's secrets masked: the platform logs it."""
    print(mask_secrets(traceback.format_exc()), end="", file=sys.stderr, flush=True)


def _masked_result(result: dict[str, Any]) -> dict[str, Any]:
    """The job-done body of a failed job, the worker's secrets masked in its error and in
    the failure answer (the generic handler's) that is its output; a pickled exception that
    holds one is left out (masked_failure). A successful job's is left as it is: its output
    is the function's result, the caller's to have."""
    output = result.get("output")
    failed = isinstance(output, dict) and output.get("success") is False
    if not result.get("error") and not failed:
        return result
    masked = dict(result)
    if result.get("error"):
        masked["error"] = masked_failure(result["error"])
    if failed:
        masked["output"] = masked_failure(output)
    return masked


def _result_of(value: Any) -> dict[str, Any]:
    """The job-done body for a handler's return value, exactly as the SDK builds it."""
    result: dict[str, Any] = {}
    if isinstance(value, dict):
        error = value.pop("error", None)
        refresh = value.pop("refresh_worker", None)
        result["output"] = value
        if error:
            result["error"] = error
        if refresh:
            result["stopPod"] = True
    else:
        result["output"] = value
    if result.get("output") == {}:
        result.pop("output")
    return result


def _is_generator(handler: Callable[..., Any]) -> bool:
    return inspect.isgeneratorfunction(handler) or inspect.isasyncgenfunction(handler)


_DONE = object()


def _current_task() -> asyncio.Future[None]:
    """The task of the job attempt running this code."""
    task = asyncio.current_task()
    assert task is not None
    return task


def _json_body(data: dict[str, Any]) -> bytes:
    text = json.dumps(data, ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A str holding a lone surrogate has no UTF-8 form, but is valid JSON escaped
        # ("\\ud83d"): written so, the value still arrives as it is.
        return json.dumps(data).encode()


def _next_or_done(gen: Any) -> Any:
    try:
        return next(gen)
    except StopIteration:
        return _DONE


# --------------------------------------------------------------------------- the loop


class _WorkerLoop:
    def __init__(
        self,
        handler: Callable[..., Any],
        concurrency_modifier: Callable[[int], int] | None,
        return_aggregate_stream: bool,
    ) -> None:
        env = os.environ
        self.worker_id = env.get("RUNPOD_POD_ID") or str(uuid.uuid4())
        self.take_url = env["RUNPOD_WEBHOOK_GET_JOB"].replace("$ID", self.worker_id)
        self.done_url = env.get("RUNPOD_WEBHOOK_POST_OUTPUT", "").replace(
            "$RUNPOD_POD_ID", self.worker_id
        )
        self.stream_url = env.get("RUNPOD_WEBHOOK_POST_STREAM", "").replace(
            "$RUNPOD_POD_ID", self.worker_id
        )
        self.ping_url = env.get("RUNPOD_WEBHOOK_PING", "").replace("$RUNPOD_POD_ID", self.worker_id)
        self.ping_interval = int(env.get("RUNPOD_PING_INTERVAL", "10000")) / 1000
        # Settable so that tests need not hold a loop for minutes.
        self.take_timeout = float(env.get("FLASH_WORKER_TAKE_TIMEOUT_S", _TAKE_TIMEOUT_S))
        self.handler = handler
        self.modifier = concurrency_modifier or (lambda current: current)
        self.aggregate = return_aggregate_stream
        key = env.get("RUNPOD_AI_API_KEY", "")
        self.http = HttpClient({"Authorization": key} if key else {})
        self.concurrency = worker_concurrency()
        # Each attempt at a job occupying a slot (its task), with the job's id; a stopped sync
        # job keeps its slot until its thread returns. Keyed by attempt: a job the platform
        # hands out again (a retry) may come while its stopped attempt's thread runs on.
        self.busy: dict[asyncio.Future[None], str] = {}
        # Every job's task until it ends, reporting included: the loop holds tasks only
        # weakly, and one waiting for the answer to its job-done POST is referenced by
        # nothing else (its slot already freed), so it could be collected mid-report.
        self.tasks: set[asyncio.Future[None]] = set()
        # The attempts whose result is to be reported: not those the platform stopped.
        self.reportable: set[asyncio.Future[None]] = set()
        # Attempts whose result is being reported, with the job's id: the loop waits for
        # them before it ends, and heartbeats still list them (as the SDK's do), or the
        # platform would take a job it handed out and that is never listed for one it never
        # learnt of.
        self.reporting: dict[asyncio.Future[None], str] = {}
        self.alive = True
        self.closing = False
        self.slot_free: asyncio.Event | None = None

    async def run(self) -> None:
        self.slot_free = asyncio.Event()
        loop = asyncio.get_running_loop()
        if self.concurrency > 1:
            # A thread for each job's sync code, whatever the default pool's size here.
            loop.set_default_executor(
                concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.concurrency + 4, thread_name_prefix="flash-job"
                )
            )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._shutdown)
        helpers = [asyncio.create_task(self._stop_loop())]
        if self.ping_url:
            helpers.append(asyncio.create_task(self._ping_loop()))
        try:
            await self._take_loop()
            while self.busy or self.reporting:
                await self._wait_slot()
        finally:
            # A flag as well as cancel(): wait_for() can swallow a cancellation that
            # races with its own completion, and these loops would then run forever.
            self.closing = True
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def _shutdown(self) -> None:
        # Finish running jobs, take no new ones. The platform answers our pending
        # long-poll itself, so no job handed out on it can be abandoned.
        self.alive = False
        if self.slot_free is not None:
            self.slot_free.set()

    async def _wait_slot(self) -> None:
        assert self.slot_free is not None
        self.slot_free.clear()
        await self.slot_free.wait()

    async def _take_loop(self) -> None:
        refused = 0  # job takes refused in a row
        told = False  # said so once: RunPod's FlashBoot may answer an idle take with a 400
        while self.alive:
            try:
                self.concurrency = max(1, int(self.modifier(self.concurrency)))
            except Exception:
                _print_exc()
            needed = self.concurrency - len(self.busy)
            if needed <= 0:
                await self._wait_slot()
                continue
            url = self.take_url
            if needed > 1:
                url = url.replace("/job-take/", "/job-take-batch/") + f"&batch_size={needed}"
            url += f"&job_in_progress={1 if self.busy else 0}"
            try:
                response = await self._held_request(url)
                status, body = response.status, response.body
            except (OSError, asyncio.TimeoutError, ValueError) as err:
                print(f"flash worker: job-take failed: {err!r}", file=sys.stderr)
                await asyncio.sleep(1)
                continue
            if status == 429:
                await asyncio.sleep(5)
                continue
            if status == 204:
                refused = 0
                continue  # no job: the take is a long poll, so ask again at once
            if status == 400 or not body:
                if not told:
                    told = True
                    print(
                        f"flash worker: job-take answered {status} with no job; "
                        "asking again with pauses",
                        file=sys.stderr,
                    )
                refused += 1
                await asyncio.sleep(
                    min(_REFUSED_PAUSE_MAX_S, _REFUSED_PAUSE_S * 2 ** min(refused - 1, 10))
                )
                continue
            refused = 0
            if status >= 300:
                print(f"flash worker: job-take answered {status}", file=sys.stderr)
                await asyncio.sleep(1)
                continue
            try:
                jobs = json.loads(body)
            except ValueError:
                print("flash worker: job-take answered a body that is not JSON", file=sys.stderr)
                await asyncio.sleep(1)
                continue
            for job in jobs if isinstance(jobs, list) else [jobs]:
                if isinstance(job, dict) and isinstance(job.get("id"), str):
                    self._launch(job)
                else:
                    print(
                        f"flash worker: job-take answered a job without an id: {job!r:.200}",
                        file=sys.stderr,
                    )

    def _launch(self, job: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._run_job(job))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self.busy[task] = job["id"]
        self.reportable.add(task)

    async def _run_job(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        attempt = _current_task()
        try:
            if _is_generator(self.handler):
                result, is_stream = await self._run_generator(job), True
            else:
                result, is_stream = await self._run_plain(job), False
            if attempt in self.reportable:
                # The slot frees as soon as the handler is done, so taking the next job
                # overlaps with reporting this one. With "stopPod" in the result the
                # platform retires this worker, as production does.
                self._release(attempt)
                self.reporting[attempt] = job_id
                try:
                    await self._post(self.done_url, job_id, _masked_result(result), is_stream)
                finally:
                    self.reporting.pop(attempt, None)
                    self._wake()
        except asyncio.CancelledError:
            pass
        finally:
            self._release(attempt)

    def _stopped(self) -> bool:
        """Whether a CancelledError in the running attempt's task is its cancellation (the
        platform stopped the job, the loop shuts down) rather than one the handler raised
        itself."""
        task = _current_task()
        if task not in self.reportable:  # discarded before this loop cancels an attempt
            return True
        cancelling = getattr(task, "cancelling", None)  # Python 3.11+
        return cancelling is not None and cancelling() > 0

    def _release(self, attempt: asyncio.Future[None]) -> None:
        """Free the attempt's slot (its own only: another attempt at the job may run)."""
        if self.busy.pop(attempt, None) is not None:
            self.reportable.discard(attempt)
            self._wake()

    def _wake(self) -> None:
        assert self.slot_free is not None
        self.slot_free.set()

    async def _run_plain(self, job: dict[str, Any]) -> dict[str, Any]:
        try:
            if inspect.iscoroutinefunction(self.handler):
                value = await self.handler(job)
            else:
                value = await self._in_thread(self.handler, job)
                if inspect.isawaitable(value):
                    value = await value
            return _result_of(value)
        except asyncio.CancelledError as err:
            if self._stopped():
                raise
            # The handler's own: a failure like any other, or the job is never reported.
            _print_exc()
            return {"error": _error_info(err)}
        except Exception as err:
            _print_exc()
            return {"error": _error_info(err.exc if isinstance(err, OwnCancelledError) else err)}

    async def _run_generator(self, job: dict[str, Any]) -> dict[str, Any]:
        final: dict[str, Any] = {"output": []}
        gen = None
        try:
            gen = self.handler(job)
            while True:
                if inspect.isasyncgen(gen):
                    try:
                        chunk = await gen.__anext__()
                    except StopAsyncIteration:
                        break
                else:
                    chunk = await self._in_thread(_next_or_done, gen)
                    if chunk is _DONE:
                        break
                if isinstance(chunk, dict) and chunk.get("error"):
                    return {"error": str(chunk["error"])}
                try:
                    body = _json_body({"output": chunk})
                except (TypeError, ValueError) as err:
                    # The stream ends here: the job fails with why (closing the generator),
                    # rather than go on without this item.
                    return {"error": f"a stream item cannot be sent as JSON: {err}"}
                if self.aggregate:
                    final["output"].append(chunk)
                await self._send(self.stream_url, job["id"], body, False)
        except (asyncio.CancelledError, Exception) as err:
            if isinstance(err, asyncio.CancelledError) and self._stopped():
                raise
            _print_exc()
            return {"error": _stream_error(err)}
        finally:
            if inspect.isasyncgen(gen):
                # Closed here, in the job's task, however it ends (cancelled, or stopped at an
                # error item): left to the garbage collector, its cleanup would run in another
                # task, where it cannot undo what it set in this one.
                with contextlib.suppress(Exception):
                    await gen.aclose()
        return final

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.concurrency == 1:
            # One job at a time: nothing else needs the loop meanwhile, and a thread hop
            # per call would cost more than a trivial handler itself (as in the SDK loop).
            return fn(*args)
        future = asyncio.get_running_loop().run_in_executor(None, run_sync_code, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # A thread cannot be interrupted: the job stays unreported but keeps its slot
            # until the thread returns, so concurrency is never exceeded. If it never
            # returns, the platform kills and replaces this worker.
            self.reportable.discard(_current_task())
            await asyncio.wait([future])
            raise

    async def _post(self, template: str, job_id: str, data: dict[str, Any], stream: bool) -> None:
        try:
            body = _json_body(data)
        except (TypeError, ValueError) as err:
            # The job must still end: report why its answer could not be sent.
            body = _json_body({"error": f"the handler's answer cannot be sent as JSON: {err}"})
        await self._send(template, job_id, body, stream)

    async def _send(self, template: str, job_id: str, body: bytes, stream: bool) -> None:
        url = template.replace("$ID", job_id) + f"&isStream={'true' if stream else 'false'}"
        headers = {
            "charset": "utf-8",
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Request-ID": job_id,
        }
        delay = 1.0
        for attempt in range(_POST_ATTEMPTS):
            try:
                status = (
                    await self.http.request("POST", url, content=body, headers=headers)
                ).status
                if status < 500 and status != 429:
                    if status >= 400:
                        print(f"flash worker: {url} answered {status}", file=sys.stderr)
                    return
            except (OSError, ValueError) as err:
                print(f"flash worker: posting result failed: {err!r}", file=sys.stderr)
            if attempt + 1 < _POST_ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2

    async def _stop_loop(self) -> None:
        if "/job-take/" not in self.take_url:
            return
        url = self.take_url.replace("/job-take/", "/job-stop/")
        while not self.closing:
            try:
                response = await self._held_request(url)
                status, body = response.status, response.body
            except (OSError, asyncio.TimeoutError, ValueError):
                await asyncio.sleep(1)
                continue
            try:
                answer = json.loads(body) if status == 200 and body else {}
            except ValueError:
                print("flash worker: job-stop answered a body that is not JSON", file=sys.stderr)
                answer = {}
            listed = answer.get("jobsToStop") if isinstance(answer, dict) else "not an object"
            if listed is not None and not isinstance(listed, list):
                print("flash worker: job-stop answered no list of job ids", file=sys.stderr)
            # Anything but a job id stops nothing (and must not end this loop).
            ids = [i for i in listed if isinstance(i, str)] if isinstance(listed, list) else []
            for job_id in ids:
                # The attempt at it that runs (one stopped before may still hold a slot:
                # cancelled again, it would give up its slot with its thread running).
                for task, busy_id in list(self.busy.items()):
                    if busy_id == job_id and task in self.reportable:
                        self.reportable.discard(task)
                        task.cancel()
            if not ids:
                await asyncio.sleep(1 if status != 204 else 0.05)

    async def _held_request(self, url: str) -> Response:
        """GET a long-poll URL: no answer within ``take_timeout`` fails, unless it comes
        within ``_TAKE_GRACE_S`` more (it may have come while the loop was held)."""
        task = asyncio.ensure_future(self.http.request("GET", url))
        try:
            done, _ = await asyncio.wait([task], timeout=self.take_timeout)
            if not done:
                done, _ = await asyncio.wait([task], timeout=_TAKE_GRACE_S)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise asyncio.TimeoutError(f"no answer within {self.take_timeout + _TAKE_GRACE_S:g} s")
        return task.result()

    async def _ping_loop(self) -> None:
        while not self.closing:
            ids = ",".join(dict.fromkeys([*self.busy.values(), *self.reporting.values()]))
            url = self.ping_url + ("&" if "?" in self.ping_url else "?")
            url += (f"job_id={ids}&" if ids else "") + f"runpod_version={LOOP_VERSION}"
            with contextlib.suppress(OSError, ValueError):
                await self.http.request("GET", url)
            await asyncio.sleep(self.ping_interval)
