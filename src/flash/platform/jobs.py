"""A job as the platform sees it, and the bodies the API answers with."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TIMED_OUT = "TIMED_OUT"
FINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMED_OUT})
# Only these can be retried: the input of a job that ended otherwise is never needed again.
RETRYABLE = frozenset({FAILED, TIMED_OUT})

# Production retention of finished results, by how the job was submitted.
RUN_RETENTION_S = 30 * 60
RUNSYNC_RETENTION_S = 60
JOB_LOG_LINES = 30


@dataclass
class Job:
    id: str
    endpoint: str
    # The input and the output as JSON text, encoded once (or cut from the request) and
    # then stored and sent as they are. The input is dropped once the job is final, and a
    # big one (a file of the store) waits there while the job is queued: None until taken.
    input_json: str | None
    status: str = IN_QUEUE
    seq: int = 0
    webhook: str | None = None
    execution_timeout_ms: int | None = None
    ttl_ms: int | None = None
    sync: bool = False
    idempotency_key: str | None = None
    # policy.lowPriority: the job starts no worker; it waits for one other jobs started.
    low_priority: bool = False
    created_at: float = 0.0
    # When its run's wait in the queue began, less the wait of an attempt a dead worker lost
    # (None: at created_at). A retry is a new run.
    queued_at: float | None = None
    # When its last /retry began a new run (None: never retried): its ttl counts from then.
    retried_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    attempts: int = 0
    crashes: int = 0
    # Takes that could not read its stored input (an OSError), this run of the platform.
    input_misses: int = 0
    output_json: str | None = None  # None: the job has no output, or it is in the store
    # A finished job's big output is kept in the store only (JobStore.load_output), so
    # finished results do not fill memory until they expire.
    output_in_store: bool = False
    error: Any = None
    expires_at: float | None = None
    # What a ``/status?ttl=`` asked while the job ran: its result is kept at most this long
    # once it ends (never longer than the usual retention).
    retention_ms: int | None = None
    # Whether the job's end is still to be POSTed to its webhook: set when it ends (stored
    # with that end), cleared once the receiver answered 2xx or the attempts ran out. Stored,
    # so a restart delivers what the run before it owed.
    webhook_pending: bool = False
    # Delivery attempts of this end that failed, across restarts (they are bounded).
    webhook_attempts: int = 0
    # The JSON texts of its stream chunks, as the worker sent them.
    stream: list[str] = field(default_factory=list)
    stream_sent: int = 0
    # Past the chunks handed to /stream readers, whose answers may still be on their way
    # (then ``stream_sent`` follows): not stored, a restart goes on from ``stream_sent``.
    stream_claimed: int = 0
    # Its output is the list of its stream chunks (a stream whose end reported none): built
    # from them when asked for, not stored a second time.
    output_is_stream: bool = False
    # The size of its chunks' JSON text, counted against the same memory budget as big
    # outputs once the job is final. Beyond it, a finished job's chunks are kept in the store
    # only (JobStore.load_stream): ``stream`` is then empty until they are asked for.
    stream_bytes: int = 0
    stream_in_store: bool = False
    # What its worker printed while running it (kept in memory for failure messages).
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=JOB_LOG_LINES))

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def queued_since(self) -> float:
        return self.created_at if self.queued_at is None else self.queued_at

    def body_json(self, output_json: str | None = None) -> str:
        """What ``GET /status`` answers (and what a webhook receives), as JSON text;
        ``output_json`` is the output read from the store when ``output_in_store``."""
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started_at is not None:
            out["delayTime"] = int((self.started_at - self.queued_since) * 1000)
            if self.finished_at is not None:
                out["executionTime"] = int((self.finished_at - self.started_at) * 1000)
        if self.error is not None:
            out["error"] = self.error
        if self.worker_id is not None:
            out["workerId"] = self.worker_id
        text = json.dumps(out)
        output = self.output_json if output_json is None else output_json
        if output is None:
            return text
        return f'{text[:-1]}, "output": {output}}}'  # spliced in, not re-encoded
