"""What a running call knows about its caller: deadline, nesting depth, call chain.

The generic handler sets it from the job; nested remote calls read it, so a deadline and
the depth travel from endpoint to endpoint. A context variable: the job's tasks and the
threads it runs its sync code in have it, and so (see :func:`follow_into_thread_pools`) does
the work it hands to a ThreadPoolExecutor; a thread the job starts itself does not, unless
it runs its work in a copy of the job's context (``contextvars.copy_context().run``).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "EXACT_KEY",
    "ITEM_TIMEOUT_KEY",
    "TIME_LIMIT_KEY",
    "CallContext",
    "current",
    "follow_into_thread_pools",
    "from_wire",
    "reset",
    "seconds",
    "use",
]


@dataclass(frozen=True)
class CallContext:
    deadline: float | None = None  # epoch seconds
    depth: int = 0
    chain: tuple[str, ...] = field(default_factory=tuple)
    # The job this call runs in (the generic handler's), and the job whose call made it (from
    # the wire): a platform that restarts runs the caller again, not its old calls.
    job: str | None = None
    parent: str | None = None

    def within(self, limit: float) -> CallContext:
        """This context, with a deadline no later than ``limit`` seconds from now."""
        return replace(self, deadline=_ending_within(self.deadline, limit))

    def remaining(self, now: float | None = None) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - (time.time() if now is None else now)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "deadline": self.deadline,
            "depth": self.depth,
            "chain": list(self.chain),
        }
        if self.parent is not None:
            wire["parent"] = self.parent
        return wire


# Set in a typed JSON call's context by a Python caller holding the app's key, in auto mode:
# where JSON cannot carry the result as it is, the worker answers with a signed pickle.
EXACT_KEY = "exact"
# Seconds the job may run from its start (its execution limit, which the platform enforces):
# read when the job starts, it makes the deadline of the calls the job makes, as the time the
# job waited for a worker does not count against it.
TIME_LIMIT_KEY = "time_limit"
# In a map job's input (beside "items"): seconds each of its calls may run, from its start.
ITEM_TIMEOUT_KEY = "item_timeout"

_ROOT = CallContext()
_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "flash_call_context", default=None
)


def current() -> CallContext:
    return _current.get() or _ROOT


def use(context: CallContext) -> contextvars.Token[CallContext | None]:
    return _current.set(context)


def reset(token: contextvars.Token[CallContext | None]) -> None:
    _current.reset(token)


def follow_into_thread_pools() -> None:
    """Make work submitted to a ThreadPoolExecutor (its ``map``, asyncio's
    ``run_in_executor``) run in the call context of the code that submitted it, as an asyncio
    task and ``asyncio.to_thread`` do: threads do not inherit context variables, and a pool's
    threads serve whoever submits, so a job's calls made there would have neither its
    deadline nor its depth and chain. Only this variable goes along, and only from code
    running in a call (a job); nothing else of the pool changes. For a worker: idempotent."""
    pool = concurrent.futures.ThreadPoolExecutor
    if getattr(pool.submit, _FOLLOWS, False):
        return
    submit: Any = pool.submit

    @functools.wraps(submit)
    def submit_in_context(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        context = _current.get()
        if context is None:  # not in a call: as before
            return submit(self, fn, *args, **kwargs)
        return submit(self, _run_in, context, fn, *args, **kwargs)

    setattr(submit_in_context, _FOLLOWS, True)
    pool.submit = submit_in_context  # type: ignore[method-assign]


_FOLLOWS = "_flash_follows_call_context"


def _run_in(context: CallContext, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    token = _current.set(context)
    try:
        return fn(*args, **kwargs)
    finally:
        _current.reset(token)


def from_wire(data: Any, *, job: str | None = None, function: str | None = None) -> CallContext:
    """Read the ``context`` field of a job input; anything malformed counts as absent.
    Read when the job starts: its time limit (``TIME_LIMIT_KEY``) counts from now.
    ``job``: the job the call runs in; ``function``: what starts the chain of a job no
    function called (from a script, curl), whose chain is empty."""
    start = (function,) if function else ()
    if not isinstance(data, dict):
        # The common case: a frozen dataclass costs a microsecond to make.
        return _ROOT if job is None and not start else CallContext(chain=start, job=job)
    deadline = _ending_within(seconds(data.get("deadline")), seconds(data.get(TIME_LIMIT_KEY)))
    depth = data.get("depth")
    chain = data.get("chain")
    parent = data.get("parent")
    return CallContext(
        deadline=deadline,
        depth=depth if isinstance(depth, int) and depth >= 0 else 0,
        chain=(tuple(str(c) for c in chain[:64]) if isinstance(chain, list) else ()) or start,
        job=job,
        parent=parent if isinstance(parent, str) and 0 < len(parent) <= _MAX_JOB_ID else None,
    )


_MAX_JOB_ID = 256


def _ending_within(deadline: float | None, limit: float | None) -> float | None:
    """``deadline`` (epoch seconds), no later than ``limit`` seconds from now (None, or not
    above 0: no limit)."""
    if limit is None or limit <= 0:
        return deadline
    ends = time.time() + limit
    return ends if deadline is None else min(deadline, ends)


def seconds(value: Any) -> float | None:
    """A number of seconds from JSON: None unless a finite number (a JSON integer can be
    longer than a float holds: OverflowError)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None
